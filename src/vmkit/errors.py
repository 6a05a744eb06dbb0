"""Errors and faults, shared by every backend.

A failing system call raises :class:`OSError` built the way :mod:`os` builds it, so Python picks the
usual subclass (``PermissionError`` for EPERM/EACCES, ``FileExistsError`` for EEXIST,
``ProcessLookupError`` for ESRCH...) and ``.errno`` is exactly the kernel's value.

A memory access the CPU would fault on raises a :class:`Fault`: :class:`SegmentationFault` (SIGSEGV) or
:class:`BusError` (SIGBUS), carrying the faulting address and the kernel's ``si_code``.
"""

from __future__ import annotations

import errno as _errno
import os
import signal

from vmkit.flags import BusCode, SegvCode


def os_error(err: int, detail: str | None = None) -> OSError:
    """Builds the OSError subclass Python uses for ``err``, with ``os.strerror`` as its message."""
    message = os.strerror(err)
    if detail:
        message = f"{message} ({detail})"
    return OSError(err, message)


class Fault(Exception):
    """A CPU access that faulted: the signal the kernel would deliver, its address and ``si_code``."""

    signo: int = 0

    def __init__(self, addr: int, code: int, message: str | None = None) -> None:
        self.addr = addr
        self.code = code
        super().__init__(message or f"{self._describe()} at {addr:#x}")

    def _describe(self) -> str:
        return f"{signal.Signals(self.signo).name} code {self.code}"

    def __reduce__(self) -> tuple[type[Fault], tuple[int, int]]:
        return (type(self), (self.addr, self.code))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and (self.addr, self.code) == (other.addr, other.code)  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.addr, self.code))


class SegmentationFault(Fault):
    """SIGSEGV: ``code`` is SEGV_MAPERR (nothing mapped) or SEGV_ACCERR (protection)."""

    signo = signal.SIGSEGV

    def _describe(self) -> str:
        try:
            return f"SIGSEGV {SegvCode(self.code).name}"
        except ValueError:
            return f"SIGSEGV code {self.code}"


class BusError(Fault):
    """SIGBUS: ``code`` is BUS_ADRERR (e.g. past the end of a mapped file), BUS_OBJERR..."""

    signo = signal.SIGBUS

    def _describe(self) -> str:
        try:
            return f"SIGBUS {BusCode(self.code).name}"
        except ValueError:
            return f"SIGBUS code {self.code}"


def fault_for(signo: int, addr: int, code: int) -> Fault:
    """The Fault subclass for a fault signal number."""
    if signo == signal.SIGSEGV:
        return SegmentationFault(addr, code)
    if signo == signal.SIGBUS:
        return BusError(addr, code)
    raise ValueError(f"signal {signo} is not a memory fault")


class ProcessGone(ChildProcessError):
    """The process behind a :class:`Process` object died or was reaped; names the cause."""

    def __init__(self, message: str) -> None:
        super().__init__(_errno.ESRCH, message)


__all__ = ["BusError", "Fault", "ProcessGone", "SegmentationFault", "fault_for", "os_error"]
