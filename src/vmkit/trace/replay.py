"""``vmkit replay``: re-run the memory calls of a real program's strace log in the model kernel and
check every result against what the real kernel returned.

Processes follow the trace: ``execve`` builds the exec layout in the model (``SimProcess.execve``)
from the binary's headers (carried by the trace's ``# vmkit-image`` lines, or taken from this
machine), ``clone``/``clone3``/``fork``/``vfork`` copy or share the address space as their flags say
(CLONE_VM shares it, CLONE_FILES the fd table, CLONE_THREAD makes a thread), exits end them.
``openat``/``dup``/``fcntl``/``close``/``memfd_create`` lines (and strace's ``-y`` fd paths) tell
which file and access mode each fd stands for, so file mappings use the right file in the model.

Every memory call (:data:`COMPARED`) of a process whose address space is known is run in the model
and its return value or errno compared with the kernel's.  A call that needs something the trace
does not say (a process whose start the trace does not show, an fd opened before the trace began,
a file the model has no counterpart for, a call the model does not implement) is counted as
*unverified* with the reason — never as agreement — and its effect is still applied (see
:meth:`Replay.apply_kernel_result`) so the address spaces stay those of the real program.
After a disagreement the model is brought back to the kernel's result where that is possible
(mmap and brk), so one difference does not hide the calls after it.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import time
from collections.abc import Callable, Iterable
from typing import Any

from vmkit.errors import Fault, ProcessGone
from vmkit.sim.kernel import Kernel
from vmkit.sim.process import SimProcess
from vmkit.trace import arguments
from vmkit.trace.images import interpreter
from vmkit.trace.fd_calls import FD_CALLS
from vmkit.trace.memory_calls import CALLS
from vmkit.trace.report import Disagreement, Report
from vmkit.trace.strace import Comment, Event, Exit, Syscall, TraceError
from vmkit.trace.tasks import (
    FdInfo, ReplayError, Space, Tid, Unverifiable, errno_name, matches, number, show, strings, text,
)

MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_FIXED_NOREPLACE = 0x100000
CLONE_VM = 0x100
CLONE_FILES = 0x400
CLONE_THREAD = 0x10000
CLONE_VFORK = 0x4000
O_CLOEXEC = os.O_CLOEXEC
#: The ``# vmkit-trace:`` format this replay reads (vmkit.trace.record writes it).
TRACE_FORMAT = 1
#: How many events after a disagreeing mmap are searched for calls that were in flight with it.
CONCURRENCY_WINDOW = 64

#: The calls whose results the replay compares (the memory-management calls, and execve).
COMPARED = frozenset({
    "mmap", "munmap", "mprotect", "pkey_mprotect", "mremap", "msync", "mincore", "madvise",
    "mlock", "mlock2", "munlock", "mlockall", "munlockall", "brk", "process_vm_readv",
    "process_vm_writev", "process_madvise", "process_mrelease", "execve",
})

#: Memory calls outside the model (counted as unverified when they appear).
NOT_MODELLED = frozenset({
    "remap_file_pages", "mbind", "get_mempolicy", "set_mempolicy", "migrate_pages", "move_pages",
    "set_mempolicy_home_node", "shmat", "shmdt", "memfd_secret", "userfaultfd",
    "syscall_0x1ce",  # mseal, unknown to strace 6.1
    "syscall_0x1c5",  # map_shadow_stack
})


class Header:
    """The ``# vmkit-...`` lines of a recorded trace (all optional)."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.command: list[str] | None = None
        self.kernel: str | None = None
        self.rlimits: dict[str, list[int]] = {}
        self.cred: dict[str, int] = {}
        self.images: dict[str, dict[str, Any]] = {}

    def take(self, comment: Comment, path: str | None) -> None:
        text = comment.text.lstrip("#").strip()
        if not text.startswith("vmkit-"):
            return
        key, _, value = text.partition(":")
        where = f"{path or '<trace>'}:{comment.lineno}"
        try:
            data: Any = json.loads(value) if key != "vmkit-kernel" else value.strip()
            if key == "vmkit-trace":
                self.version = int(data)
                if self.version != TRACE_FORMAT:
                    raise ValueError(f"format {self.version}; this vmkit reads format {TRACE_FORMAT}")
            elif key == "vmkit-command":
                self.command = [str(word) for word in data]
            elif key == "vmkit-kernel":
                self.kernel = str(data)
            elif key == "vmkit-rlimits":
                self.rlimits = {str(name): [int(soft), int(hard)] for name, (soft, hard) in data.items()}
                unknown = [name for name in self.rlimits if not hasattr(resource, f"RLIMIT_{name}")]
                if unknown:
                    raise ValueError(f"unknown resource {unknown[0]}")
            elif key == "vmkit-cred":
                self.cred = {str(name): int(number) for name, number in data.items()}
            elif key == "vmkit-image":
                for field_name in ("path", "size", "dev", "ino", "mode", "head"):
                    if field_name not in data:
                        raise ValueError(f"no {field_name!r}")
                self.images[_normal(str(data["path"]))] = dict(data)
        except (ValueError, TypeError, AttributeError) as error:
            raise ReplayError(f"{where}: bad {key} header: {error}") from None


def _normal(path: str) -> str:
    return os.path.normpath(os.path.join("/", path))


class Replay:
    """Replays one trace; feed it events in order (``run``) and read ``report``."""

    def __init__(self, *, kernel: Kernel | None = None, host_binaries: bool = True,
                 path: str | None = None, keep_exited: bool = False) -> None:
        self.kernel = kernel or Kernel()
        #: Keep the address spaces of exited processes (for ``vmkit maps``) instead of freeing them.
        self.keep_exited = keep_exited
        self.exited: dict[int, SimProcess] = {}
        self.host_binaries = host_binaries
        self.path = path
        self.header = Header()
        self.report = Report()
        self.tids: dict[int, Tid] = {}
        #: child tid -> (parent tid, clone flags), from a first pass over the trace.
        self.origins: dict[int, tuple[int, int]] = {}
        self.first_pid: int | None = None
        #: The line of the trace's first brk: a different break there means a randomized layout.
        self._first_brk_line = -1
        self._events: list[Event] = []
        self._index = 0
        #: Events already replayed ahead of their place (see :meth:`_reorder_concurrent`).
        self._applied_early: set[int] = set()
        #: The trace was made with ``strace -y`` (fds carry their paths).
        self.fd_paths_shown = False
        self._images_loaded: set[str] = set()
        #: path -> (size, (major, minor), inode) from the trace's stat lines.
        self._stats: dict[str, tuple[int, tuple[int, int] | None, int | None]] = {}
        #: Paths of the stand-in files the replay made (their size follows the trace).
        self._files_made: set[str] = set()

    # --- driving -----------------------------------------------------------------------------------

    def run(self, events: list[Event], progress: Callable[[int], None] | None = None,
            stop_after: int | None = None) -> Report:
        """Replays ``events`` (all of them, or those that completed up to line ``stop_after``)."""
        started = time.perf_counter()
        self._prescan(events)
        self._events = events
        for index, event in enumerate(events):
            if index in self._applied_early:
                continue
            if stop_after is not None and getattr(event, "lineno", 0) > stop_after:
                break
            self._index = index
            if isinstance(event, Syscall):
                self._syscall(event)
            elif isinstance(event, Exit):
                self._exit(event.pid)
            elif isinstance(event, Comment):
                self.header.take(event, self.path)
            if progress is not None and index % 1024 == 0:
                progress(index)
        self.report.seconds = time.perf_counter() - started
        self.report.command = self.header.command
        return self.report

    def _prescan(self, events: list[Event]) -> None:
        """Which process made which (clone results), read before replaying because a child's first
        lines may come before its parent's clone returns."""
        for event in events:
            if isinstance(event, Comment):
                self.header.take(event, self.path)
            elif isinstance(event, Syscall):
                if self.first_pid is None:
                    self.first_pid = event.pid
                if self._first_brk_line < 0 and event.name == "brk":
                    self._first_brk_line = event.lineno
                if not self.fd_paths_shown and (event.result_note or "").startswith("<"):
                    self.fd_paths_shown = True
                if event.name in ("clone", "clone3", "fork", "vfork") and event.result and event.result > 0:
                    self.origins[event.result] = (event.pid, _clone_flags(event))
        self.header = Header()  # the replay pass reads the comments again, in order

    def last_models(self) -> dict[int, SimProcess]:
        """Each traced process's model at its end (exited ones only with ``keep_exited``)."""
        found = dict(self.exited)
        for tid in self.tids.values():
            if tid.space.model is not None and tid.tid == tid.tgid:
                found[tid.tgid] = tid.space.model
        return dict(sorted(found.items()))

    # --- processes ---------------------------------------------------------------------------------

    def _tid(self, pid: int) -> Tid:
        found = self.tids.get(pid)
        if found is not None:
            return found
        origin = self.origins.get(pid)
        if origin is not None and origin[0] != pid:
            parent = self._tid(origin[0])
            flags = origin[1]
            if flags & CLONE_VM:
                space = parent.space
            else:
                child = None
                if parent.space.model is not None:
                    child = parent.space.model.fork()
                space = Space(child, parent.space.why_unknown)
            fds = parent.fds if flags & CLONE_FILES else {fd: info for fd, info in parent.fds.items()}
            tid = Tid(pid, parent.tgid if flags & CLONE_THREAD else pid, space, fds)
        elif pid == self.first_pid:
            tid = Tid(pid, pid, Space(None, "the trace does not show how its first process started"), {})
        else:
            tid = Tid(pid, pid, Space(None, f"the trace does not show where process {pid} came from"), {})
        tid.space.users.add(pid)
        self.tids[pid] = tid
        if tid.tgid == pid:
            self.report.processes += 1
        else:
            self.report.threads += 1
        return tid

    def _exit(self, pid: int) -> None:
        tid = self.tids.pop(pid, None)
        if tid is None:
            return
        space = tid.space
        space.users.discard(pid)
        if not space.users and space.model is not None:
            if self.keep_exited:
                self.exited[tid.tgid] = space.model
            else:
                space.model.terminate()
            space.model = None
            space.why_unknown = "the process has exited"

    def _execve(self, tid: Tid, call: Syscall) -> None:
        if call.result != 0:
            return  # a failed execve changes nothing; its errno depends on the file system
        args = call.args
        if call.name == "execveat":  # execveat(dirfd, path, argv, envp, flags)
            base, name = arguments.fd_path(args[0]), text(args[1], call)
            path = name if name.startswith("/") else os.path.join(base or "/", name) if name else (base or "")
            args = args[1:]
        else:
            path = text(args[0], call)
        argv = strings(args[1], call)
        envp = strings(args[2], call)
        if envp is None:
            envp = [b""] * arguments.comment_count(args[2])
            self.note("an execve's environment was abbreviated by strace (record with -v): "
                       "the stack size of the exec layout may differ")
        model_path = _normal(path)
        why = self._load_image(model_path)
        # The thread group leaves its address space for a new one; a vfork parent keeps the old.
        old = tid.space
        group = [t for t in self.tids.values() if t.space is old and t.tgid == tid.tgid]
        for member in group:
            old.users.discard(member.tid)
        new_space = Space(None, why)
        if why:
            self._unverified(call, why)
        else:
            model = self._process_to_exec_in(old)
            try:
                model.execve(model_path, argv or [], envp)
            except NotImplementedError as error:
                self._unverified(call, f"not modelled: {error}")
                new_space.why_unknown = f"its exec is not modelled ({error})"
                if model is not old.model:
                    model.terminate()
            except OSError as error:
                self._compare(call, -1, errno_name(error.errno or 0))
                new_space.why_unknown = f"execve of {path} failed in the model"
                if model is not old.model:
                    model.terminate()
            else:
                self._compare(call, 0, None)
                new_space.model = model
        if old.model is not None and not old.users and old.model is not new_space.model:
            old.model.terminate()
        for member in group:
            member.space = new_space
            new_space.users.add(member.tid)
            member.fds = {fd: info for fd, info in member.fds.items() if not (info.flags or 0) & O_CLOEXEC}

    def _process_to_exec_in(self, old: Space) -> SimProcess:
        """The model process an execve replaces the image of: the old one when nobody else uses its
        address space, else a fork of it (a vfork child: limits and credentials carry over), or for
        the trace's first exec a new process with the trace's limits and credentials."""
        if old.model is not None:
            return old.model if not old.users else old.model.fork()
        process: SimProcess = self.kernel.spawn()
        for name, (soft, hard) in self.header.rlimits.items():
            process.setrlimit(getattr(resource, f"RLIMIT_{name}"), (soft, hard))
        uid, gid = self.header.cred.get("uid", 0), self.header.cred.get("gid", 0)
        if gid:
            process.setresgid(gid, gid, gid)
        if uid:
            process.setresuid(uid, uid, uid)
        return process

    def _load_image(self, path: str) -> str:
        """Puts the binary at ``path`` (and its interpreters) into the model's file system; returns
        why it cannot ('' when it could)."""
        if path in self._images_loaded or self.kernel.fs.entries.get(path) is not None:
            self._images_loaded.add(path)
            return ""
        image = self.header.images.get(path)
        if image is not None:
            head = base64.b64decode(image["head"])
            major, minor = image["dev"]
            real = _normal(image.get("realpath") or path)
            if real not in self.kernel.fs.entries:
                self.kernel.fs.add_image(real, image["size"], head, dev=(major, minor), ino=image["ino"],
                                         mode=image["mode"] & 0o7777)
            if real != path:  # /lib64/ld-linux-x86-64.so.2 -> /usr/lib/...: maps shows the target
                self.kernel.fs.symlink(real, path)
            self._images_loaded.add(path)
            interp = interpreter(head)
            return self._load_image(_normal(interp)) if interp else ""
        if self.host_binaries and os.path.isfile(path):
            real = os.path.realpath(path)
            if real not in self.kernel.fs.entries:
                self.kernel.fs.import_host(real)
            if real != path:
                self.kernel.fs.symlink(real, path)
            self.note(f"{path} was read from this machine (the trace carries no image of it)")
            self._images_loaded.add(path)
            with open(path, "rb") as f:
                interp = interpreter(f.read(65536))
            return self._load_image(_normal(interp)) if interp else ""
        return f"the binary {path} is neither in the trace nor on this machine"

    # --- one call ----------------------------------------------------------------------------------

    def _syscall(self, call: Syscall) -> None:
        tid = self._tid(call.pid)
        name = call.name
        if getattr(call, "unfinished", False):
            if name in COMPARED:
                self._unverified(call, "the call never returned in the trace")
            return
        handler = FD_CALLS.get(name)
        if handler is not None:
            if call.result is not None and call.errno is None:
                handler(self, tid, call)
            self.report.other_calls += 1
            return
        if name == "execve" or name == "execveat":
            self._execve(tid, call)
            return
        if name in NOT_MODELLED:
            self._unverified(call, f"{name} is not modelled")
            return
        if name not in COMPARED:
            self.report.other_calls += 1
            return
        model = tid.space.model
        if model is None:
            self._unverified(call, tid.space.why_unknown or "unknown address space")
            return
        if call.result is None and call.errno is None:
            self._unverified(call, "strace printed no result")
            return
        if call.errno is not None and call.errno.startswith("ERESTART") or call.errno == "EINTR":
            self._unverified(call, "interrupted by a signal")
            return
        try:
            outcome = CALLS[name](self, tid, model, call)
        except Unverifiable as why:
            self._unverified(call, str(why))
            return
        except NotImplementedError as error:
            self._unverified(call, f"not modelled: {error}")
            return
        except ProcessGone:
            self._unverified(call, "the model process is gone")
            return
        if outcome is None:
            return
        value, err = outcome
        if not matches(call, value, err) and name == "mmap":
            value, err = self._reorder_concurrent(tid, model, call, value, err)
        if not self._compare(call, value, err):
            self._resync(tid, model, call, value, err)

    def _reorder_concurrent(self, tid: Tid, model: SimProcess, call: Syscall, value: int,
                            err: str | None) -> tuple[int, str | None]:
        """A placement that disagrees while other threads' calls on the same address space were in
        flight (started before it returned, returned after it): strace's order of completion is not
        necessarily the order the kernel took mmap_lock in.  Undo the mmap, run those calls first,
        and place again; if the kernel's result is reachable that way, it was that order."""
        flags = number(call.args[3], call)
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            return value, err
        concurrent = []
        for later in range(self._index + 1, min(len(self._events), self._index + CONCURRENCY_WINDOW)):
            other = self._events[later]
            if (isinstance(other, Syscall) and other.start_lineno < call.lineno
                    and later not in self._applied_early and other.name in CALLS
                    and other.pid in self.tids and self.tids[other.pid].space is tid.space):
                concurrent.append(later)
        if not concurrent:
            return value, err
        if err is None:
            model.munmap(value, number(call.args[1], call))
        for later in concurrent:
            self._applied_early.add(later)
            self._syscall(self._events[later])  # type: ignore[arg-type]  # chosen as Syscalls above
        outcome = CALLS["mmap"](self, tid, model, call)
        return outcome if outcome is not None else (value, err)

    def _compare(self, call: Syscall, value: int, err: str | None) -> bool:
        counts = self.report.per_syscall.setdefault(call.name, [0, 0])
        counts[0] += 1
        self.report.calls += 1
        kernel_err = call.errno
        kernel_value = call.result if kernel_err is None else -1
        if matches(call, value, err):
            counts[1] += 1
            self.report.agree += 1
            return True
        if call.name == "brk" and call.lineno == self._first_brk_line:
            self.note("the kernel's first program break is not the exec layout's: was the trace recorded with ASLR on? "
                       "(vmkit record turns it off, as setarch -R does; the model places as with ASLR off)")
        self.report.disagreements.append(Disagreement(
            call.lineno, call.pid, call.text, show(kernel_value, kernel_err), show(value, err)))
        return False

    def _unverified(self, call: Syscall, why: str) -> None:
        self.report.unverified[f"{call.name}: {why}"] += 1

    def note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)

    # --- keeping the model on the kernel's track ---------------------------------------------------

    def _resync(self, tid: Tid, model: SimProcess, call: Syscall, value: int, err: str | None) -> None:
        """After a disagreement, make the model's state what the kernel's result implies where one
        call can do it: an mmap moves to the kernel's address, brk to the kernel's break."""
        try:
            if call.name == "mmap":
                length = number(call.args[1], call)
                if err is None:
                    model.munmap(value, length)
                if call.errno is None and call.result is not None:
                    self.apply_kernel_result(tid, model, call)
            elif call.name == "brk" and call.result is not None:
                model.brk(call.result)
        except (OSError, Fault):
            self.note("the model could not be brought back to the kernel's state after a disagreement")

    def apply_kernel_result(self, tid: Tid, model: SimProcess, call: Syscall) -> None:
        """Repeats a successful mmap at the kernel's address (MAP_FIXED), with the file when the
        model has it and as anonymous memory when not."""
        addr, length, prot, flags = (number(a, call) for a in call.args[:4])
        fixed = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED
        try:
            fd = self.model_fd(tid, model, call.args[4], call) if not flags & MAP_ANONYMOUS else -1
        except Unverifiable:
            fd = -1
        if fd == -1:
            fixed |= MAP_ANONYMOUS
        model.mmap(call.result, length, prot, fixed, fd, number(call.args[5], call) if fd != -1 else 0)

    # --- files -------------------------------------------------------------------------------------

    def model_fd(self, tid: Tid, model: SimProcess, value: Any, call: Syscall) -> int:
        """Installs in the model process, at the same number, the open file the trace's fd stands
        for, and returns the number."""
        fd = number(value, call)
        if fd < 0:
            return fd
        info = tid.fds.get(fd)
        annotated = arguments.fd_path(value)
        if annotated is None and self.fd_paths_shown:
            # strace -y names the file of every open fd: a bare number is an fd that is not open.
            tid.fds.pop(fd, None)
            model.task.fds.pop(fd, None)
            return fd
        if info is None or info.path is None and annotated:
            info = FdInfo(annotated, None) if info is None else info
            info.path = info.path or annotated
            tid.fds[fd] = info
        if info.kind == "pidfd":
            target = self.tids.get(info.target or -1)
            if target is None or target.space.model is None:
                raise Unverifiable("pidfd of a process the model does not have")
            if info.opened is None:
                from vmkit.sim.fs import OpenFile

                info.opened = OpenFile(self.kernel.fs.pidfd(target.space.model.task), 0)
        elif info.opened is None:
            info.opened = self._open_file(info)
        model.task.fds[fd] = info.opened
        return fd

    def _open_file(self, info: FdInfo) -> Any:
        from vmkit.sim.fs import OpenFile

        if info.kind == "memfd":
            return OpenFile(self.kernel.fs.memfd(info.path or "", 0), os.O_RDWR)
        if info.path is None:
            raise Unverifiable("an fd the trace never says the file of (record with -y)")
        if info.flags is None:
            raise Unverifiable("an fd opened before the trace began (its access mode is unknown)")
        path = info.path.removesuffix(" (deleted)")
        if not path.startswith("/") or path.startswith(("/proc/", "/sys/", "/dev/")) and path not in (
                "/dev/zero", "/dev/null") and not path.startswith("/dev/shm/"):
            raise Unverifiable(f"mapping of {info.path}, which the model has no counterpart for")
        inode = self.kernel.fs.entries.get(path)
        if inode is None:
            size, dev, ino = self._stats.get(path, (0, None, None))
            inode = self.kernel.fs.add_file(path, size)
            if dev is not None and ino is not None:  # maps then shows the real device and inode
                inode.dev, inode.ino = f"{dev[0]:02x}:{dev[1]:02x}", ino
            self._files_made.add(path)
        return OpenFile(inode, info.flags)

    def note_open(self, tid: Tid, call: Syscall, path_arg: Any, flags_arg: Any) -> None:
        fd = call.result or 0
        path = arguments.result_path(call) or text(path_arg, call)
        tid.fds[fd] = FdInfo(path, arguments.open_flags(flags_arg))

    def note_stat(self, path: str | None, size: int, dev: tuple[int, int] | None = None,
              ino: int | None = None) -> None:
        """What a stat line (or ftruncate) says of a file: the model's stand-in gets its size, and
        its device and inode for maps."""
        if not path:
            return
        _, old_dev, old_ino = self._stats.get(path, (0, None, None))
        self._stats[path] = (size, dev or old_dev, ino or old_ino)
        if path in self._files_made:
            self.kernel.fs.entries[path].size = size


def _clone_flags(call: Syscall) -> int:
    if call.name == "fork":
        return 0
    if call.name == "vfork":
        return CLONE_VM | CLONE_VFORK
    return arguments.clone_flags(call)


# --- entry points -----------------------------------------------------------------------------------

def replay_events(events: Iterable[Event], *, kernel: Kernel | None = None, host_binaries: bool = True,
                  path: str | None = None, progress: Callable[[int], None] | None = None) -> Report:
    return Replay(kernel=kernel, host_binaries=host_binaries, path=path).run(list(events), progress)


def replay_file(path: str, **options: Any) -> Report:
    from vmkit.trace.strace import parse_file

    return replay_events(parse_file(path), path=path, **options)


__all__ = ["Report", "Disagreement", "Replay", "ReplayError", "TraceError", "replay_events",
           "replay_file", "COMPARED"]
