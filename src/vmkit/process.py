"""The one interface both backends implement: a :class:`Process` (``spec/api.md``, "Processes").

``vmkit.native.spawn()`` returns a real process driven over ptrace; ``vmkit.sim.Kernel().spawn()``
returns a model process.  Test suites written against this class run on either.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import TracebackType

Iov = Sequence[tuple[int, int]]


class Process(abc.ABC):
    """A process whose memory-management system calls we can issue and whose memory we can touch.

    Failing calls raise ``OSError`` with the kernel's errno; CPU accesses that fault raise
    :class:`vmkit.Fault`.  Leaving the ``with`` block kills the process.
    """

    pid: int

    # --- memory-management system calls ---------------------------------------------------
    @abc.abstractmethod
    def mmap(self, addr: int | None, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int: ...

    @abc.abstractmethod
    def mremap(self, old_address: int, old_size: int, new_size: int, flags: int = 0,
               new_address: int | None = None) -> int: ...

    @abc.abstractmethod
    def munmap(self, addr: int, length: int) -> None: ...

    @abc.abstractmethod
    def mprotect(self, addr: int, length: int, prot: int) -> None: ...

    @abc.abstractmethod
    def msync(self, addr: int, length: int, flags: int) -> None: ...

    @abc.abstractmethod
    def madvise(self, addr: int, length: int, advice: int) -> None: ...

    @abc.abstractmethod
    def mincore(self, addr: int, length: int) -> bytes: ...

    @abc.abstractmethod
    def mlock(self, addr: int, length: int) -> None: ...

    @abc.abstractmethod
    def mlock2(self, addr: int, length: int, flags: int = 0) -> None: ...

    @abc.abstractmethod
    def munlock(self, addr: int, length: int) -> None: ...

    @abc.abstractmethod
    def mlockall(self, flags: int) -> None: ...

    @abc.abstractmethod
    def munlockall(self) -> None: ...

    @abc.abstractmethod
    def brk(self, addr: int) -> int: ...

    @abc.abstractmethod
    def process_vm_readv(self, pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int: ...

    @abc.abstractmethod
    def process_vm_writev(self, pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int: ...

    @abc.abstractmethod
    def process_madvise(self, pidfd: int, iov: Iov, advice: int, flags: int = 0) -> int: ...

    @abc.abstractmethod
    def process_mrelease(self, pidfd: int, flags: int = 0) -> None: ...

    # --- CPU accesses and introspection ---------------------------------------------------
    @abc.abstractmethod
    def read(self, addr: int, n: int) -> bytes: ...

    @abc.abstractmethod
    def write(self, addr: int, data: bytes) -> None: ...

    @abc.abstractmethod
    def maps(self) -> str: ...

    @abc.abstractmethod
    def smaps(self) -> str:
        """The text of ``/proc/<pid>/smaps``: per-VMA figures (Rss, Pss, Locked...) and VmFlags."""

    @abc.abstractmethod
    def status(self) -> dict[str, str]:
        """``/proc/<pid>/status`` as a dict of field to text (``{"VmLck": "4 kB", ...}``)."""

    @abc.abstractmethod
    def fork(self) -> Process: ...

    # --- files ------------------------------------------------------------------------------
    @abc.abstractmethod
    def open(self, path: str, flags: int, mode: int = 0o600) -> int: ...

    @abc.abstractmethod
    def close(self, fd: int) -> None: ...

    @abc.abstractmethod
    def ftruncate(self, fd: int, length: int) -> None: ...

    @abc.abstractmethod
    def pread(self, fd: int, n: int, offset: int) -> bytes: ...

    @abc.abstractmethod
    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...

    @abc.abstractmethod
    def mkdir(self, path: str, mode: int = 0o700) -> None: ...

    @abc.abstractmethod
    def unlink(self, path: str) -> None: ...

    @abc.abstractmethod
    def memfd_create(self, name: str, flags: int = 0) -> int: ...

    @abc.abstractmethod
    def pidfd_open(self, pid: int) -> int: ...

    @abc.abstractmethod
    def pipe(self, flags: int = 0) -> tuple[int, int]:
        """pipe2(2): (read end, write end), as ``os.pipe2`` returns them."""

    # --- signals, limits, credentials -----------------------------------------------------
    @abc.abstractmethod
    def kill(self, sig: int) -> None: ...

    @abc.abstractmethod
    def wait(self) -> int: ...

    @abc.abstractmethod
    def getrlimit(self, res: int) -> tuple[int, int]: ...

    @abc.abstractmethod
    def setrlimit(self, res: int, limits: tuple[int, int]) -> None: ...

    @abc.abstractmethod
    def setresuid(self, r: int, e: int, s: int) -> None: ...

    @abc.abstractmethod
    def setresgid(self, r: int, e: int, s: int) -> None: ...

    @property
    @abc.abstractmethod
    def capabilities(self) -> frozenset[str]: ...

    @capabilities.setter
    @abc.abstractmethod
    def capabilities(self, names: set[str] | frozenset[str]) -> None: ...

    @property
    @abc.abstractmethod
    def dumpable(self) -> bool:
        """``prctl(PR_GET_DUMPABLE)``; a process that changed uid from root is not dumpable."""

    @dumpable.setter
    @abc.abstractmethod
    def dumpable(self, value: bool) -> None: ...

    def drop_privileges(self, uid: int = 65534, gid: int = 65534, dumpable: bool = True) -> None:
        """Becomes an unprivileged user for real: setresgid, setresuid (which clears every
        capability, capabilities(7)), then makes the process dumpable again so same-uid processes
        can still reach it (``PR_SET_DUMPABLE``)."""
        self.setresgid(gid, gid, gid)
        self.setresuid(uid, uid, uid)
        if self.capabilities:
            self.capabilities = frozenset()
        self.dumpable = dumpable

    # --- life cycle ---------------------------------------------------------------------------
    @abc.abstractmethod
    def terminate(self) -> None:
        """Kills the process (if alive) and reaps it; safe to call more than once."""

    def __enter__(self) -> Process:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.terminate()
