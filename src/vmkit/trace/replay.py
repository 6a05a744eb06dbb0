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
:meth:`Replay._apply_kernel_result`) so the address spaces stay those of the real program.
After a disagreement the model is brought back to the kernel's result where that is possible
(mmap and brk), so one difference does not hide the calls after it.
"""

from __future__ import annotations

import base64
import errno as errno_module
import json
import os
import resource
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vmkit.errors import Fault, ProcessGone
from vmkit.sim.kernel import Kernel
from vmkit.sim.process import SimProcess
from vmkit.trace import arguments
from vmkit.trace.images import interpreter
from vmkit.trace.strace import Comment, Event, Exit, Syscall, TraceError

PAGE_SIZE = 4096
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_SHARED = 0x01
MAP_FIXED_NOREPLACE = 0x100000
CLONE_VM = 0x100
CLONE_FILES = 0x400
CLONE_THREAD = 0x10000
CLONE_VFORK = 0x4000
O_CLOEXEC = os.O_CLOEXEC
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


class ReplayError(ValueError):
    """The trace cannot be replayed as written (names the line)."""


@dataclass
class Disagreement:
    line: int
    pid: int
    call: str
    kernel: str
    model: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "pid": self.pid, "call": self.call, "kernel": self.kernel,
                "model": self.model}


@dataclass
class Report:
    """What a replay found.  ``calls`` counts the calls compared, ``agree`` those that agreed."""

    calls: int = 0
    agree: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    unverified: Counter[str] = field(default_factory=Counter)
    per_syscall: dict[str, list[int]] = field(default_factory=dict)  # name -> [calls, agree]
    other_calls: int = 0
    processes: int = 0
    threads: int = 0  # tasks beyond each process's first (clone with CLONE_THREAD)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    command: list[str] | None = None  # from the trace's ``# vmkit-command`` header

    @property
    def unverified_total(self) -> int:
        return sum(self.unverified.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "agree": self.agree,
            "disagreements": [d.as_dict() for d in self.disagreements],
            "unverified": self.unverified_total,
            "unverified_reasons": dict(self.unverified.most_common()),
            "per_syscall": {name: {"calls": c, "agree": a} for name, (c, a) in sorted(self.per_syscall.items())},
            "other_calls": self.other_calls, "processes": self.processes, "threads": self.threads, "notes": self.notes,
            "seconds": round(self.seconds, 3), "command": self.command,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


@dataclass
class FdInfo:
    """What an fd stands for: a path and open flags (None when the trace does not say)."""

    path: str | None
    flags: int | None
    kind: str = "file"  # file, memfd, pidfd
    target: int | None = None  # the traced pid of a pidfd
    opened: Any = None  # the model's OpenFile, made once: dups share it like a struct file


@dataclass
class Space:
    """An address space: the model process that holds it and the traced tids using it."""

    model: SimProcess | None
    why_unknown: str = ""
    users: set[int] = field(default_factory=set)


@dataclass
class Tid:
    tid: int
    tgid: int
    space: Space
    fds: dict[int, FdInfo]


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
        try:
            data = json.loads(value) if key != "vmkit-kernel" else value.strip()
        except json.JSONDecodeError as error:
            raise ReplayError(f"{path or '<trace>'}:{comment.lineno}: bad {key} header: {error}") from None
        if key == "vmkit-trace":
            self.version = int(data)
        elif key == "vmkit-command":
            self.command = list(data)
        elif key == "vmkit-kernel":
            self.kernel = data
        elif key == "vmkit-rlimits":
            self.rlimits = dict(data)
        elif key == "vmkit-cred":
            self.cred = dict(data)
        elif key == "vmkit-image":
            self.images[_normal(data["path"])] = data


def _normal(path: str) -> str:
    return os.path.normpath(os.path.join("/", path))


def _errno_name(code: int) -> str:
    return errno_module.errorcode.get(code, str(code))


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
            base, name = arguments.fd_path(args[0]), _text(args[1], call)
            path = name if name.startswith("/") else os.path.join(base or "/", name) if name else (base or "")
            args = args[1:]
        else:
            path = _text(args[0], call)
        argv = _strings(args[1], call)
        envp = _strings(args[2], call)
        if envp is None:
            envp = [b""] * arguments.comment_count(args[2])
            self._note("an execve's environment was abbreviated by strace (record with -v): "
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
                self._compare(call, -1, _errno_name(error.errno or 0))
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
        process = self.kernel.spawn()
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
            self._note(f"{path} was read from this machine (the trace carries no image of it)")
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
        handler = _FILE_HANDLERS.get(name)
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
            outcome = _CALLS[name](self, tid, model, call)
        except _Unverifiable as why:
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
        if not _matches(call, value, err) and name == "mmap":
            value, err = self._reorder_concurrent(tid, model, call, value, err)
        if not self._compare(call, value, err):
            self._resync(tid, model, call, value, err)

    def _reorder_concurrent(self, tid: Tid, model: SimProcess, call: Syscall, value: int,
                            err: str | None) -> tuple[int, str | None]:
        """A placement that disagrees while other threads' calls on the same address space were in
        flight (started before it returned, returned after it): strace's order of completion is not
        necessarily the order the kernel took mmap_lock in.  Undo the mmap, run those calls first,
        and place again; if the kernel's result is reachable that way, it was that order."""
        flags = _int(call.args[3], call)
        if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            return value, err
        concurrent = []
        for later in range(self._index + 1, min(len(self._events), self._index + CONCURRENCY_WINDOW)):
            other = self._events[later]
            if (isinstance(other, Syscall) and other.start_lineno < call.lineno
                    and later not in self._applied_early and other.name in _CALLS
                    and other.pid in self.tids and self.tids[other.pid].space is tid.space):
                concurrent.append(later)
        if not concurrent:
            return value, err
        if err is None:
            model.munmap(value, _int(call.args[1], call))
        for later in concurrent:
            self._applied_early.add(later)
            self._syscall(self._events[later])
        outcome = _mmap(self, tid, model, call)
        return outcome if outcome is not None else (value, err)

    def _compare(self, call: Syscall, value: int, err: str | None) -> bool:
        counts = self.report.per_syscall.setdefault(call.name, [0, 0])
        counts[0] += 1
        self.report.calls += 1
        kernel_err = call.errno
        kernel_value = call.result if kernel_err is None else -1
        if _matches(call, value, err):
            counts[1] += 1
            self.report.agree += 1
            return True
        if call.name == "brk" and call.lineno == self._first_brk_line:
            self._note("the kernel's first program break is not the exec layout's: was the trace recorded with ASLR on? "
                       "(vmkit record turns it off, as setarch -R does; the model places as with ASLR off)")
        self.report.disagreements.append(Disagreement(
            call.lineno, call.pid, call.text, _show(kernel_value, kernel_err), _show(value, err)))
        return False

    def _unverified(self, call: Syscall, why: str) -> None:
        self.report.unverified[f"{call.name}: {why}"] += 1

    def _note(self, text: str) -> None:
        if text not in self.report.notes:
            self.report.notes.append(text)

    # --- keeping the model on the kernel's track ---------------------------------------------------

    def _resync(self, tid: Tid, model: SimProcess, call: Syscall, value: int, err: str | None) -> None:
        """After a disagreement, make the model's state what the kernel's result implies where one
        call can do it: an mmap moves to the kernel's address, brk to the kernel's break."""
        try:
            if call.name == "mmap":
                length = _int(call.args[1], call)
                if err is None:
                    model.munmap(value, length)
                if call.errno is None and call.result is not None:
                    self._apply_kernel_result(tid, model, call)
            elif call.name == "brk" and call.result is not None:
                model.brk(call.result)
        except (OSError, Fault):
            self._note("the model could not be brought back to the kernel's state after a disagreement")

    def _apply_kernel_result(self, tid: Tid, model: SimProcess, call: Syscall) -> None:
        """Repeats a successful mmap at the kernel's address (MAP_FIXED), with the file when the
        model has it and as anonymous memory when not."""
        addr, length, prot, flags = (_int(a, call) for a in call.args[:4])
        fixed = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED
        try:
            fd = self._model_fd(tid, model, call.args[4], call) if not flags & MAP_ANONYMOUS else -1
        except _Unverifiable:
            fd = -1
        if fd == -1:
            fixed |= MAP_ANONYMOUS
        model.mmap(call.result, length, prot, fixed, fd, _int(call.args[5], call) if fd != -1 else 0)

    # --- files -------------------------------------------------------------------------------------

    def _model_fd(self, tid: Tid, model: SimProcess, value: Any, call: Syscall) -> int:
        """Installs in the model process, at the same number, the open file the trace's fd stands
        for, and returns the number."""
        fd = _int(value, call)
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
                raise _Unverifiable("pidfd of a process the model does not have")
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
            raise _Unverifiable("an fd the trace never says the file of (record with -y)")
        if info.flags is None:
            raise _Unverifiable("an fd opened before the trace began (its access mode is unknown)")
        path = info.path.removesuffix(" (deleted)")
        if not path.startswith("/") or path.startswith(("/proc/", "/sys/", "/dev/")) and path not in (
                "/dev/zero", "/dev/null") and not path.startswith("/dev/shm/"):
            raise _Unverifiable(f"mapping of {info.path}, which the model has no counterpart for")
        inode = self.kernel.fs.entries.get(path)
        if inode is None:
            size, dev, ino = self._stats.get(path, (0, None, None))
            inode = self.kernel.fs.add_file(path, size)
            if dev is not None and ino is not None:  # maps then shows the real device and inode
                inode.dev, inode.ino = f"{dev[0]:02x}:{dev[1]:02x}", ino
            self._files_made.add(path)
        return OpenFile(inode, info.flags)

    def _open(self, tid: Tid, call: Syscall, path_arg: Any, flags_arg: Any) -> None:
        fd = call.result or 0
        path = arguments.result_path(call) or _text(path_arg, call)
        tid.fds[fd] = FdInfo(path, arguments.open_flags(flags_arg))

    def _stat(self, path: str | None, size: int, dev: tuple[int, int] | None = None,
              ino: int | None = None) -> None:
        """What a stat line (or ftruncate) says of a file: the model's stand-in gets its size, and
        its device and inode for maps."""
        if not path:
            return
        _, old_dev, old_ino = self._stats.get(path, (0, None, None))
        self._stats[path] = (size, dev or old_dev, ino or old_ino)
        if path in self._files_made:
            self.kernel.fs.entries[path].size = size


class _Unverifiable(Exception):
    """Raised by a call handler: the trace does not say enough to check this call."""


def _matches(call: Syscall, value: int, err: str | None) -> bool:
    """The model's outcome is the kernel's: the same errno, or the same value when both succeed."""
    if err is None and call.errno is None:
        return value == call.result
    return err == call.errno


def _show(value: int | None, err: str | None) -> str:
    if err is not None:
        return f"-1 {err}"
    if value is None:
        return "?"
    return hex(value) if value > 4096 else str(value)


def _int(value: Any, call: Syscall) -> int:
    try:
        return arguments.to_int(value)
    except ValueError as error:
        raise ReplayError(f"line {call.lineno}: {error}: {call.text}") from None


def _text(value: Any, call: Syscall) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    raise ReplayError(f"line {call.lineno}: expected a string argument, got {value!r}: {call.text}")


def _strings(value: Any, call: Syscall) -> list[bytes] | None:
    if isinstance(value, list):
        return [bytes(v) for v in value if isinstance(v, bytes)]
    return None


def _clone_flags(call: Syscall) -> int:
    if call.name == "fork":
        return 0
    if call.name == "vfork":
        return CLONE_VM | CLONE_VFORK
    return arguments.clone_flags(call)


# --- the memory calls --------------------------------------------------------------------------------

Outcome = tuple[int, str | None] | None


def _run(fn: Callable[[], Any]) -> tuple[int, str | None]:
    try:
        result = fn()
    except OSError as error:
        return -1, _errno_name(error.errno or 0)
    if isinstance(result, bytes):  # mincore's vector: not compared (residency needs the accesses)
        return 0, None
    return (0 if result is None else int(result)), None


def _mmap(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    addr, length, prot, flags = (_int(a, call) for a in call.args[:4])
    offset = _int(call.args[5], call)
    fd = -1
    if not flags & MAP_ANONYMOUS:
        try:
            fd = r._model_fd(tid, model, call.args[4], call)
        except _Unverifiable as why:
            if call.errno is None and call.result is not None:
                r._apply_kernel_result(tid, model, call)
            raise why
    else:
        fd = _int(call.args[4], call)
    return _run(lambda: model.mmap(addr, length, prot, flags, fd, offset))


def _simple(method: str, count: int) -> Callable[[Replay, Tid, SimProcess, Syscall], Outcome]:
    def run(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
        args = [_int(a, call) for a in call.args[:count]]
        return _run(lambda: getattr(model, method)(*args))
    return run


def _pkey_mprotect(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    addr, length, prot, pkey = (_int(a, call) for a in call.args[:4])
    if pkey != -1:
        if call.errno is None:
            _run(lambda: model.mprotect(addr, length, prot))
        raise _Unverifiable("protection keys are not modelled")
    return _run(lambda: model.mprotect(addr, length, prot))


def _mremap(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    args = [_int(a, call) for a in call.args[:5]] if len(call.args) >= 5 else [
        _int(a, call) for a in call.args[:4]] + [0]
    return _run(lambda: model.mremap(args[0], args[1], args[2], args[3], args[4]))


def _brk(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    addr = _int(call.args[0], call)
    return model.brk(addr), None


def _iov(value: Any, call: Syscall) -> list[tuple[int, int]]:
    iov = arguments.iovec(value)
    if iov is None:
        raise _Unverifiable("strace did not print the addresses of this iovec")
    return iov


def _process_vm(write: bool) -> Callable[[Replay, Tid, SimProcess, Syscall], Outcome]:
    def run(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
        pid = _int(call.args[0], call)
        target = r.tids.get(pid)
        if target is None or target.space.model is None:
            raise _Unverifiable("the target process is not in the trace")
        remote = _iov(call.args[3], call)
        total = sum(length for _, length in remote)
        # The local buffers are the caller's; strace prints their contents, not their addresses,
        # so the transfer is checked from a scratch model process with valid local memory.
        scratch = r.kernel.spawn()
        try:
            local_len = max(PAGE_SIZE, -(-total // PAGE_SIZE) * PAGE_SIZE)
            buf = scratch.mmap(None, local_len, 3, 0x22)
            local = [(buf, total)] if total else []
            target_pid = target.space.model.pid
            method = scratch.process_vm_writev if write else scratch.process_vm_readv
            return _run(lambda: method(target_pid, local, remote, _int(call.args[5], call)))
        finally:
            scratch.terminate()
    return run


def _process_madvise(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    pidfd = r._model_fd(tid, model, call.args[0], call)
    iov = _iov(call.args[1], call)
    advice, flags = _int(call.args[3], call), _int(call.args[4], call)
    return _run(lambda: model.process_madvise(pidfd, iov, advice, flags))


def _process_mrelease(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    pidfd = r._model_fd(tid, model, call.args[0], call)
    flags = _int(call.args[1], call)
    return _run(lambda: model.process_mrelease(pidfd, flags))


_CALLS: dict[str, Callable[[Replay, Tid, SimProcess, Syscall], Outcome]] = {
    "mmap": _mmap,
    "munmap": _simple("munmap", 2),
    "mprotect": _simple("mprotect", 3),
    "pkey_mprotect": _pkey_mprotect,
    "mremap": _mremap,
    "msync": _simple("msync", 3),
    "mincore": _simple("mincore", 2),
    "madvise": _simple("madvise", 3),
    "mlock": _simple("mlock", 2),
    "mlock2": _simple("mlock2", 3),
    "munlock": _simple("munlock", 2),
    "mlockall": _simple("mlockall", 1),
    "munlockall": _simple("munlockall", 0),
    "brk": _brk,
    "process_vm_readv": _process_vm(False),
    "process_vm_writev": _process_vm(True),
    "process_madvise": _process_madvise,
    "process_mrelease": _process_mrelease,
}


# --- the calls that say what fds are -------------------------------------------------------------------

def _on_openat(r: Replay, tid: Tid, call: Syscall) -> None:
    r._open(tid, call, call.args[1], call.args[2])


def _on_open(r: Replay, tid: Tid, call: Syscall) -> None:
    r._open(tid, call, call.args[0], call.args[1])


def _on_creat(r: Replay, tid: Tid, call: Syscall) -> None:
    fd = call.result or 0
    tid.fds[fd] = FdInfo(arguments.result_path(call) or _text(call.args[0], call),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def _on_openat2(r: Replay, tid: Tid, call: Syscall) -> None:
    how = call.args[2]
    flags = how.get("flags") if isinstance(how, dict) else None
    r._open(tid, call, call.args[1], flags)


def _on_close(r: Replay, tid: Tid, call: Syscall) -> None:
    tid.fds.pop(_int(call.args[0], call), None)


def _on_close_range(r: Replay, tid: Tid, call: Syscall) -> None:
    first, last = _int(call.args[0], call), _int(call.args[1], call)
    flags = _int(call.args[2], call) if len(call.args) > 2 else 0
    for fd in [fd for fd in tid.fds if first <= fd <= last]:
        if flags & 4:  # CLOSE_RANGE_CLOEXEC
            info = tid.fds[fd]
            tid.fds[fd] = FdInfo(info.path, None if info.flags is None else info.flags | O_CLOEXEC,
                                 info.kind, info.target, info.opened)
        else:
            del tid.fds[fd]


def _dup_to(tid: Tid, old: int, new: int, cloexec: bool) -> None:
    info = tid.fds.get(old)
    if info is None:
        tid.fds.pop(new, None)
        return
    flags = None if info.flags is None else (info.flags & ~O_CLOEXEC) | (O_CLOEXEC if cloexec else 0)
    tid.fds[new] = FdInfo(info.path, flags, info.kind, info.target, info.opened)


def _on_dup(r: Replay, tid: Tid, call: Syscall) -> None:
    _dup_to(tid, _int(call.args[0], call), call.result or 0, False)


def _on_dup2(r: Replay, tid: Tid, call: Syscall) -> None:
    _dup_to(tid, _int(call.args[0], call), _int(call.args[1], call), False)


def _on_dup3(r: Replay, tid: Tid, call: Syscall) -> None:
    flags = _int(call.args[2], call) if len(call.args) > 2 else 0
    _dup_to(tid, _int(call.args[0], call), call.result or 0, bool(flags & O_CLOEXEC))


def _on_fcntl(r: Replay, tid: Tid, call: Syscall) -> None:
    fd, command = _int(call.args[0], call), arguments.symbol_name(call.args[1])
    if command in ("F_DUPFD", "F_DUPFD_CLOEXEC"):
        _dup_to(tid, fd, call.result or 0, command == "F_DUPFD_CLOEXEC")
    elif command == "F_SETFD" and fd in tid.fds:
        info = tid.fds[fd]
        if info.flags is not None:
            cloexec = _int(call.args[2], call) & 1
            info.flags = (info.flags & ~O_CLOEXEC) | (O_CLOEXEC if cloexec else 0)


def _on_memfd_create(r: Replay, tid: Tid, call: Syscall) -> None:
    name = os.fsdecode(call.args[0]) if isinstance(call.args[0], bytes) else ""
    flags = _int(call.args[1], call)
    tid.fds[call.result or 0] = FdInfo(name, os.O_RDWR | (O_CLOEXEC if flags & 1 else 0), "memfd")


def _on_pidfd_open(r: Replay, tid: Tid, call: Syscall) -> None:
    tid.fds[call.result or 0] = FdInfo(None, O_CLOEXEC, "pidfd", _int(call.args[0], call))


def _on_stat(r: Replay, tid: Tid, call: Syscall) -> None:
    """fstat/newfstatat/statx print st_size, st_dev and st_ino: the model's file gets them."""
    for arg in call.args:
        facts = arguments.stat_facts(arg)
        if facts is None:
            continue
        base = arguments.fd_path(call.args[0])
        name = call.args[1] if call.name != "fstat" and len(call.args) > 1 else b""
        if isinstance(name, bytes) and name:
            name_text = os.fsdecode(name)
            path = name_text if name_text.startswith("/") or base is None else os.path.join(base, name_text)
        else:
            path = base
        r._stat(path and os.path.normpath(path), *facts)
        return


def _on_ftruncate(r: Replay, tid: Tid, call: Syscall) -> None:
    r._stat(arguments.fd_path(call.args[0]), _int(call.args[1], call))


def _on_prlimit64(r: Replay, tid: Tid, call: Syscall) -> None:
    pid, resource_name = _int(call.args[0], call), arguments.symbol_name(call.args[1])
    limits = arguments.rlimit(call.args[2])
    if limits is None:
        return
    target = tid if pid in (0, tid.tid) else r.tids.get(pid)
    _set_rlimit(target, resource_name, limits)


def _on_setrlimit(r: Replay, tid: Tid, call: Syscall) -> None:
    limits = arguments.rlimit(call.args[1])
    if limits is not None:
        _set_rlimit(tid, arguments.symbol_name(call.args[0]), limits)


def _set_rlimit(tid: Tid | None, name: str | None, limits: tuple[int, int]) -> None:
    if tid is None or tid.space.model is None or not name or not hasattr(resource, name):
        return
    try:
        tid.space.model.setrlimit(getattr(resource, name), limits)
    except (OSError, NotImplementedError):
        pass  # the kernel said 0; a limit the model keeps no record of changes no memory rule


def _on_setresuid(r: Replay, tid: Tid, call: Syscall) -> None:
    if tid.space.model is not None:
        ids = [_int(a, call) for a in call.args[:3]]
        tid.space.model.setresuid(*ids)


_FILE_HANDLERS: dict[str, Callable[[Replay, Tid, Syscall], None]] = {
    "openat": _on_openat, "open": _on_open, "creat": _on_creat, "openat2": _on_openat2,
    "close": _on_close, "close_range": _on_close_range, "dup": _on_dup, "dup2": _on_dup2,
    "dup3": _on_dup3, "fcntl": _on_fcntl, "memfd_create": _on_memfd_create,
    "pidfd_open": _on_pidfd_open, "fstat": _on_stat, "newfstatat": _on_stat, "statx": _on_stat,
    "ftruncate": _on_ftruncate, "prlimit64": _on_prlimit64, "setrlimit": _on_setrlimit,
    "setresuid": _on_setresuid,
}


# --- entry points -----------------------------------------------------------------------------------

def replay_events(events: Iterable[Event], *, kernel: Kernel | None = None, host_binaries: bool = True,
                  path: str | None = None, progress: Callable[[int], None] | None = None) -> Report:
    return Replay(kernel=kernel, host_binaries=host_binaries, path=path).run(list(events), progress)


def replay_file(path: str, **options: Any) -> Report:
    from vmkit.trace.strace import parse_file

    return replay_events(parse_file(path), path=path, **options)


__all__ = ["Report", "Disagreement", "Replay", "ReplayError", "TraceError", "replay_events",
           "replay_file", "COMPARED"]
