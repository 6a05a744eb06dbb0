"""``vmkit.sim.Kernel``: a model machine — tunables, processes, credentials, limits, files.

The tunables default to our machines (Linux 6.18 x86-64: ``vm.max_map_count`` 65530,
``vm.mmap_min_addr`` 4096, heuristic overcommit, 24 GiB of RAM and no swap, an 8 MiB stack limit,
a 256-page stack guard gap, no hugetlb pool, ASLR off unless asked for, no CONFIG_MEMORY_FAILURE).
docs/model.md describes every tunable.
"""

from __future__ import annotations

import errno
import itertools
import random
import resource
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vmkit.errors import ProcessGone, os_error
from vmkit.flags import CAPABILITIES, PAGE_SIZE, TASK_SIZE, page_align
from vmkit.sim.fs import FileSystem, OpenFile
from vmkit.sim.mm import MemoryManager

if TYPE_CHECKING:
    from vmkit.sim.process import SimProcess

RLIM_INFINITY = (1 << 64) - 1
#: Every resource prlimit64 knows (``RLIM_NLIMITS`` is 16; include/uapi/asm-generic/resource.h).
_RLIMIT_NAMES = {
    0: "RLIMIT_CPU", 1: "RLIMIT_FSIZE", 2: "RLIMIT_DATA", 3: "RLIMIT_STACK", 4: "RLIMIT_CORE",
    5: "RLIMIT_RSS", 6: "RLIMIT_NPROC", 7: "RLIMIT_NOFILE", 8: "RLIMIT_MEMLOCK", 9: "RLIMIT_AS",
    10: "RLIMIT_LOCKS", 11: "RLIMIT_SIGPENDING", 12: "RLIMIT_MSGQUEUE", 13: "RLIMIT_NICE",
    14: "RLIMIT_RTPRIO", 15: "RLIMIT_RTTIME",
}
assert all(getattr(resource, name, number) == number for number, name in _RLIMIT_NAMES.items())
#: The limits a process has on our machines: ``INIT_RLIMITS`` (include/asm-generic/resource.h),
#: with RLIMIT_NPROC and RLIMIT_SIGPENDING set by ``fork_init`` to max_threads / 2 (from the RAM
#: at boot: 96364) and RLIMIT_NOFILE raised to 20000 by the machine's init.  MEMLOCK and STACK
#: come from the ``memlock_rlimit`` / ``stack_rlimit`` tunables; ``Kernel(rlimits=...)`` overrides.
MACHINE_RLIMITS: dict[str, tuple[int, int]] = {
    "RLIMIT_CPU": (RLIM_INFINITY, RLIM_INFINITY), "RLIMIT_FSIZE": (RLIM_INFINITY, RLIM_INFINITY),
    "RLIMIT_DATA": (RLIM_INFINITY, RLIM_INFINITY), "RLIMIT_STACK": (8 << 20, RLIM_INFINITY),
    "RLIMIT_CORE": (0, RLIM_INFINITY), "RLIMIT_RSS": (RLIM_INFINITY, RLIM_INFINITY),
    "RLIMIT_NPROC": (96364, 96364), "RLIMIT_NOFILE": (20000, 20000),
    "RLIMIT_MEMLOCK": (8 << 20, 8 << 20), "RLIMIT_AS": (RLIM_INFINITY, RLIM_INFINITY),
    "RLIMIT_LOCKS": (RLIM_INFINITY, RLIM_INFINITY), "RLIMIT_SIGPENDING": (96364, 96364),
    "RLIMIT_MSGQUEUE": (819200, 819200), "RLIMIT_NICE": (0, 0), "RLIMIT_RTPRIO": (0, 0),
    "RLIMIT_RTTIME": (RLIM_INFINITY, RLIM_INFINITY),
}
#: Signals whose default action dumps core (``SIG_KERNEL_COREDUMP_MASK``, kernel/signal.c).
_CORE_SIGNALS = frozenset({signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGFPE,
                           signal.SIGSEGV, signal.SIGBUS, signal.SIGSYS, signal.SIGXCPU, signal.SIGXFSZ})
#: Every capability of root on our machines: all but CAP_SYS_RESOURCE (machine-facts §1).
ROOT_CAPS = frozenset(CAPABILITIES) - {"CAP_SYS_RESOURCE"}


@dataclass
class Credentials:
    """``struct cred``: ids and capability sets."""

    ruid: int = 0
    euid: int = 0
    suid: int = 0
    rgid: int = 0
    egid: int = 0
    sgid: int = 0
    effective: frozenset[str] = ROOT_CAPS
    permitted: frozenset[str] = ROOT_CAPS


@dataclass
class Task:
    """A model process's kernel side: pid, credentials, limits, fds, its mm and life state."""

    kernel: Kernel
    pid: int
    mm: MemoryManager
    cred: Credentials = field(default_factory=Credentials)
    rlimits: dict[str, list[int]] = field(default_factory=dict)
    fds: dict[int, OpenFile] = field(default_factory=dict)
    dumpable: bool = True
    parent: Task | None = None
    #: None while alive; the wait status once it died (a zombie until reaped).
    exit_status: int | None = None
    reaped: bool = False

    @property
    def alive(self) -> bool:
        return self.exit_status is None

    def capable(self, cap: str) -> bool:
        return cap in self.cred.effective

    def rlimit_cur(self, name: str) -> int:
        return self.rlimits[name][0]

    def mlock_ok(self, mm: MemoryManager, pages: int) -> bool:
        """``mlock_future_ok``: locked_vm + pages within RLIMIT_MEMLOCK, or CAP_IPC_LOCK."""
        if self.capable("CAP_IPC_LOCK"):
            return True
        return (mm.locked_vm + pages) << 12 <= self.rlimit_cur("RLIMIT_MEMLOCK")

    def can_do_mlock(self) -> bool:
        """``can_do_mlock``: a nonzero RLIMIT_MEMLOCK or CAP_IPC_LOCK."""
        return self.capable("CAP_IPC_LOCK") or self.rlimit_cur("RLIMIT_MEMLOCK") != 0

    def unused_fd(self) -> int:
        """``alloc_fd``: the lowest free descriptor, EMFILE at or past the soft RLIMIT_NOFILE
        (fs/file.c)."""
        fd = next(i for i in itertools.count() if i not in self.fds)
        if fd >= self.rlimit_cur("RLIMIT_NOFILE"):
            raise os_error(errno.EMFILE)
        return fd

    def install_fd(self, file: OpenFile) -> int:
        fd = self.unused_fd()
        self.fds[fd] = file
        return fd

    def nproc_overlimit(self) -> bool:
        """``copy_process``: fork is refused (EAGAIN) when the processes of the real uid exceed the
        soft RLIMIT_NPROC (``is_rlimit_overlimit``: count > limit), unless the user is root (INIT_USER)
        or has CAP_SYS_RESOURCE or CAP_SYS_ADMIN (kernel/fork.c).  The model counts its own processes
        of that uid; unreaped zombies still count (``dec_rlimit_ucounts`` runs in release_task)."""
        if self.cred.ruid == 0 or self.capable("CAP_SYS_RESOURCE") or self.capable("CAP_SYS_ADMIN"):
            return False
        count = sum(1 for t in self.kernel.tasks.values() if t.cred.ruid == self.cred.ruid)
        return count > self.rlimit_cur("RLIMIT_NPROC")

    def file(self, fd: int) -> OpenFile:
        file = self.fds.get(fd)
        if file is None:
            raise os_error(errno.EBADF)
        return file


def host_vdso_page(index: int) -> bytes:
    """Page ``index`` of this Python process's own [vdso] (zeros if there is none to read)."""
    import ctypes

    try:
        with open("/proc/self/maps") as f:
            line = next(x for x in f if x.rstrip().endswith("[vdso]"))
    except (OSError, StopIteration):
        return bytes(PAGE_SIZE)
    start, end = (int(x, 16) for x in line.split()[0].split("-"))
    if start + (index + 1) * PAGE_SIZE > end:
        return bytes(PAGE_SIZE)
    return ctypes.string_at(start + index * PAGE_SIZE, PAGE_SIZE)


#: The layout of a fresh ``vmkit.native.spawn()`` child, which ``Kernel.spawn()`` reproduces.
NATIVE_CHILD_MAPS = """\
00400000-00500000 rwxp 00000000 00:00 0 
7ffff7ff7000-7ffff7ffb000 r--p 00000000 00:00 0                          [vvar]
7ffff7ffb000-7ffff7ffd000 r--p 00000000 00:00 0                          [vvar_vclock]
7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0                          [vdso]
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
"""
NATIVE_CHILD_BRK = 0x500000


class Kernel:
    """A model machine.  ``kernel.spawn()`` gives a process; ``kernel.fs`` is its file system."""

    def __init__(self, *, max_map_count: int = 65530, mmap_min_addr: int = PAGE_SIZE,
                 stack_rlimit: int = 8 << 20, memlock_rlimit: int = 8 << 20,
                 overcommit_memory: int = 0, overcommit_ratio: int = 50,
                 total_ram: int = 24684084 * 1024, swap: int = 0, aslr: bool = False,
                 seed: int | None = None, legacy_va_layout: bool = False,
                 stack_guard_gap: int = 256 * PAGE_SIZE, hugetlb_pages: int = 0,
                 lsm_mmap_min_addr: int = 65536, check_invariants: bool = False,
                 memory_failure: bool = False, host_files: bool = False,
                 read_ahead_kb: int = 8192, rlimits: dict[str, tuple[int, int]] | None = None,
                 nr_open: int = 1 << 20) -> None:
        self.max_map_count = max_map_count
        #: ``read_ahead_kb`` of the disk behind ext4 (``/sys/block/vda/queue/read_ahead_kb``):
        #: the readahead window of page-cache misses in file faults (``bdi->ra_pages``).
        self.read_ahead_kb = read_ahead_kb
        #: ``CONFIG_MEMORY_FAILURE``: off on our machines (MADV_HWPOISON/SOFT_OFFLINE give EINVAL);
        #: on, they inject memory errors (:func:`vmkit.sim.sys_madvise.madvise_inject_error`).
        self.memory_failure = memory_failure
        #: Run :mod:`vmkit.sim.invariants` after every call (tests turn this on).
        self.check_invariants = check_invariants
        #: ``vm.mmap_min_addr`` (``dac_mmap_min_addr``): MAP_FIXED below it needs CAP_SYS_RAWIO.
        self.mmap_min_addr = mmap_min_addr
        #: ``CONFIG_LSM_MMAP_MIN_ADDR``; hints and searches stay above the larger of the two.
        self.lsm_mmap_min_addr = lsm_mmap_min_addr
        self.stack_rlimit = stack_rlimit
        self.memlock_rlimit = memlock_rlimit
        #: The limits of a new process (:data:`MACHINE_RLIMITS`, with these overrides by name).
        self.rlimits = {**MACHINE_RLIMITS, **(rlimits or {})}
        unknown = set(self.rlimits) - set(_RLIMIT_NAMES.values())
        if unknown:
            raise ValueError(f"Kernel(rlimits=...): unknown resource {sorted(unknown)[0]!r}")
        #: ``fs.nr_open``: the largest hard RLIMIT_NOFILE setrlimit accepts.
        self.nr_open = nr_open
        self.overcommit_memory = overcommit_memory
        self.overcommit_ratio = overcommit_ratio
        self.total_ram = total_ram
        self.swap = swap
        self.aslr = aslr
        self.random = random.Random(seed)
        self.legacy_va_layout = legacy_va_layout
        self.stack_guard_gap = stack_guard_gap
        self.hugetlb_pages = hugetlb_pages
        #: exec of a path the model's file system lacks imports it from the host (lazily).
        self.host_files = host_files
        self.fs = FileSystem()
        self.fs.on_truncate = self._unmap_truncated
        self.tasks: dict[int, Task] = {}
        self._pids = itertools.count(1000)
        self._special_frames: dict[tuple[str, int], int] = {}

    # --- layout ---------------------------------------------------------------------------------

    def mmap_base(self, stack_rlimit: int | None = None) -> int:
        """``mmap_base`` (arch/x86/mm/mmap.c): below the stack's gap, which is clamped to
        [128 MiB, 5/6 of the address space].  ``stack_rlimit`` is the soft RLIMIT_STACK to use
        (an exec's ``bprm->rlim_stack``); by default the kernel's ``stack_rlimit``."""
        if stack_rlimit is None:
            stack_rlimit = self.stack_rlimit
        gap = stack_rlimit if stack_rlimit != RLIM_INFINITY else TASK_SIZE
        gap += self.stack_guard_gap + ((0x3FFFFF << 12) if self.aslr else 0)
        gap = min(max(gap, 128 << 20), TASK_SIZE // 6 * 5)
        rnd = (self.random.getrandbits(28) << 12) if self.aslr else 0
        return page_align(TASK_SIZE - gap - rnd)

    def mmap_legacy_base(self) -> int:
        rnd = (self.random.getrandbits(28) << 12) if self.aslr else 0
        return page_align(TASK_SIZE // 3) + rnd

    @property
    def min_addr(self) -> int:
        """The kernel's ``mmap_min_addr``: max(vm.mmap_min_addr, CONFIG_LSM_MMAP_MIN_ADDR)."""
        return max(self.mmap_min_addr, self.lsm_mmap_min_addr)

    def vm_enough_memory(self, pages: int) -> bool:
        """``__vm_enough_memory`` (mm/util.c): mode 0 refuses one request beyond RAM + swap, mode 1
        never refuses, mode 2 keeps the commit limit."""
        if self.overcommit_memory == 1:
            return True
        if self.overcommit_memory == 0:
            return pages << 12 <= self.total_ram + self.swap
        raise NotImplementedError("overcommit mode 2 (strict commit accounting) is not modelled")

    def special_frame(self, name: str, index: int) -> int:
        """The frame behind page ``index`` of a special mapping.  [vdso] pages hold the host's own
        vDSO image (the same kernel's, so reads match a native child); the kernel itself holds one
        mapping of each, so a process's mapping counts as shared in smaps.  [vvar] pages are PFN
        maps of live clock data the model cannot reproduce."""
        if name != "[vdso]":
            raise NotImplementedError(f"vmkit.sim does not model the contents of {name}")
        frames = self._special_frames.get((name, index))
        if frames is None:
            from vmkit.sim.frames import pool

            frames = pool().alloc()
            pool().write(frames, 0, host_vdso_page(index))
            pool().mapcount[frames] += 1
            self._special_frames[(name, index)] = frames
        return frames

    # --- processes ------------------------------------------------------------------------------

    def _new_task(self, parent: Task | None) -> Task:
        pid = next(self._pids)
        task = Task(self, pid, MemoryManager(self), parent=parent)
        task.mm.task = task
        task.rlimits = {name: list(limits) for name, limits in self.rlimits.items()}
        task.rlimits["RLIMIT_MEMLOCK"] = [self.memlock_rlimit, self.memlock_rlimit]
        task.rlimits["RLIMIT_STACK"] = [self.stack_rlimit, RLIM_INFINITY]
        self.tasks[pid] = task
        return task

    def spawn(self, maps: str | None = None, brk: int | None = None):  # type: ignore[no-untyped-def]
        """A new process.  Without ``maps`` its layout is that of a fresh ``vmkit.native.spawn()``
        child; with a ``/proc/<pid>/maps`` text it copies that layout (``brk`` gives its break)."""
        from vmkit.sim.layout import build_layout
        from vmkit.sim.process import SimProcess

        task = self._new_task(None)
        null = self.fs.lookup("/dev/null")
        for fd in (0, 1, 2):  # like the native child: stdin, stdout, stderr on /dev/null
            task.fds[fd] = OpenFile(null, 2)
        if maps is None:
            maps, brk = NATIVE_CHILD_MAPS, NATIVE_CHILD_BRK
        build_layout(task, maps, brk)
        return SimProcess(task)

    def exec(self, path: str | bytes, argv: Sequence[str | bytes],
             envp: Sequence[str | bytes]) -> SimProcess:
        """A new process (stdin, stdout, stderr on /dev/null, like :meth:`spawn`) whose address
        space is that of ``path`` executed with ``argv`` and ``envp`` (:mod:`vmkit.sim.exec`).
        Raises OSError with execve's errno, leaving no process behind."""
        from vmkit.sim.exec import do_execve
        from vmkit.sim.process import SimProcess

        task = self._new_task(None)
        null = self.fs.lookup("/dev/null")
        for fd in (0, 1, 2):
            task.fds[fd] = OpenFile(null, 2)
        try:
            do_execve(task, path, argv, envp)
        except BaseException:
            if task.alive:
                self.exit_task(task, 9)
            self.tasks.pop(task.pid, None)
            raise
        return SimProcess(task)

    def fork(self, parent: Task) -> Task:
        if parent.nproc_overlimit():
            raise os_error(errno.EAGAIN)
        child = self._new_task(parent)
        child.cred = Credentials(**vars(parent.cred))
        child.rlimits = {k: list(v) for k, v in parent.rlimits.items()}
        child.fds = dict(parent.fds)
        child.dumpable = parent.dumpable
        parent.mm.dup(child.mm)
        return child

    def find_task(self, pid: int) -> Task:
        task = self.tasks.get(pid)
        if task is None or task.reaped:
            raise os_error(errno.ESRCH)
        return task

    def exit_task(self, task: Task, status: int) -> None:
        """The process dies: its memory goes, it stays a zombie until reaped."""
        if task.exit_status is not None:
            return
        task.exit_status = status
        task.mm.exit_mmap()
        task.fds.clear()

    def reap(self, task: Task) -> int:
        if task.reaped:
            raise ChildProcessError(f"process {task.pid} was already reaped")
        if task.exit_status is None:
            raise ChildProcessError(f"process {task.pid} is alive and never exits by itself: kill it before wait()")
        task.reaped = True
        del self.tasks[task.pid]
        return task.exit_status

    def _unmap_truncated(self, inode: object, first_index: int) -> None:
        """``unmap_mapping_range(..., even_cows=1)``: pages at or past ``first_index`` of the file
        leave every mapping, private copies included."""
        for task in self.tasks.values():
            mm = task.mm
            for vma in mm.file_vmas(inode):  # type: ignore[arg-type]
                if vma.anonymous:
                    continue
                first_addr = vma.start + max(0, first_index - vma.pgoff) * PAGE_SIZE
                if first_addr < vma.end:
                    mm.zap_range(first_addr, vma.end)

    def signal(self, task: Task, sig: int) -> None:
        """Delivers ``sig`` with its default action (the model runs no handlers)."""
        if not task.alive:
            raise ProcessGone(f"process {task.pid} is gone")
        if sig == 0:
            return
        if sig in (signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT):
            return
        if sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            raise NotImplementedError("job-control stop signals are not supported by vmkit processes")
        if sig in _CORE_SIGNALS and task.rlimit_cur("RLIMIT_CORE") != 0:
            raise NotImplementedError("core dumps (a fatal signal under a nonzero RLIMIT_CORE) are not modelled")
        self.exit_task(task, sig)


__all__ = ["Credentials", "Kernel", "MACHINE_RLIMITS", "NATIVE_CHILD_BRK", "NATIVE_CHILD_MAPS", "Task",
           "_RLIMIT_NAMES"]
