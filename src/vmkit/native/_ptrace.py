"""ptrace plumbing for the isolated child: set registers, continue, wait for the trap or the fault.

A :class:`Tracee` is a process stopped in a ptrace signal-delivery-stop.  :meth:`Tracee.run` points its
instruction pointer at a gadget of :mod:`vmkit.native._runtime`, continues it without the pending
signal, and waits until it traps again (``int3``) or faults (SIGSEGV/SIGBUS, whose ``siginfo`` gives
the kernel's address and ``si_code``).  Signals whose default action is to be ignored are suppressed
(exactly what delivery would do); any other signal is delivered, so the child dies the way it would.

ptrace requests are accepted only from the thread that became the tracer (the one that spawned the
child); calls from another thread are refused with a clear error rather than an ESRCH from the kernel.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import threading
from dataclasses import dataclass

from vmkit.errors import ProcessGone, os_error
from vmkit.native import _libc

PTRACE_TRACEME = 0
PTRACE_CONT = 7
PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SETOPTIONS = 0x4200
PTRACE_GETEVENTMSG = 0x4201
PTRACE_GETSIGINFO = 0x4202
PTRACE_O_TRACEFORK = 0x2
PTRACE_O_EXITKILL = 0x100000
PTRACE_EVENT_FORK = 1
WALL = 0x40000000

_IGNORED_BY_DEFAULT = frozenset({signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT})
_FAULTS = frozenset({signal.SIGSEGV, signal.SIGBUS})
# Plain ints and bound functions for Tracee.run's hot path (one gadget per call of the child).
_SIGTRAP = int(signal.SIGTRAP)
_SKIPPED = frozenset(int(s) for s in (*_IGNORED_BY_DEFAULT, signal.SIGSTOP))
_FAULT_SIGNALS = frozenset(int(s) for s in _FAULTS)
_NO_SYSCALL = (1 << 64) - 1
_c_ptrace = _libc.ptrace
_waitpid = os.waitpid
_get_ident = threading.get_ident

_REG_NAMES = (
    "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs eflags rsp ss "
    "fs_base gs_base ds es fs gs"
).split()


class Regs(ctypes.Structure):
    """``struct user_regs_struct`` of x86-64 (``arch/x86/include/asm/user_64.h``)."""

    _fields_ = [(name, ctypes.c_uint64) for name in _REG_NAMES]


class SigInfo(ctypes.Structure):
    """The head of ``siginfo_t`` that a fault fills: signo, errno, code, then ``si_addr``."""

    _fields_ = [
        ("si_signo", ctypes.c_int), ("si_errno", ctypes.c_int), ("si_code", ctypes.c_int),
        ("_pad", ctypes.c_int), ("si_addr", ctypes.c_uint64), ("_rest", ctypes.c_byte * 104),
    ]


@dataclass(frozen=True, slots=True)
class FaultStop:
    """The tracee stopped on a fault signal instead of reaching its trap."""

    signo: int
    code: int
    addr: int
    rip: int


def _ptrace(request: int, pid: int, addr: int = 0, data: int = 0) -> int:
    _libc.set_errno(0)
    result: int = _libc.ptrace(request, pid, addr, data)
    if result == -1 and _libc.get_errno():
        raise os_error(_libc.get_errno(), f"ptrace request {request:#x} on pid {pid}")
    return result


def describe_status(status: int) -> str:
    """Words for a wait status: 'exited with status 3', 'killed by SIGSEGV'..."""
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"wait status {status:#x}"


class Tracee:
    """A traced process stopped at a trap, driven one gadget at a time."""

    def __init__(self, pid: int, tracer_thread: int) -> None:
        self.pid = pid
        self.tracer_thread = tracer_thread
        self.regs = Regs()
        self._regs_addr = ctypes.addressof(self.regs)
        self._siginfo = SigInfo()
        #: The wait status once the process is gone (exited, or killed and reaped by us).
        self.exit_status: int | None = None
        #: Pids of children created by fork, in order, reported by PTRACE_EVENT_FORK.
        self.forked: list[int] = []

    # --- life cycle -------------------------------------------------------------------------

    def check_thread(self) -> None:
        if threading.get_ident() != self.tracer_thread:
            raise RuntimeError(
                "vmkit.native child processes can only be driven from the thread that spawned them "
                "(ptrace accepts requests only from the tracing thread)"
            )

    def wait_initial_stop(self) -> None:
        """Waits for the stop a new tracee starts in (exec trap or fork SIGSTOP) and loads registers."""
        _, status = os.waitpid(self.pid, WALL)
        if not os.WIFSTOPPED(status):
            self.exit_status = status
            raise ProcessGone(f"child {self.pid} {describe_status(status)} before it could be traced")
        self.get_regs()

    def set_options(self, options: int) -> None:
        _ptrace(PTRACE_SETOPTIONS, self.pid, 0, options)

    def get_regs(self) -> None:
        _ptrace(PTRACE_GETREGS, self.pid, 0, self._regs_addr)

    # --- running gadgets --------------------------------------------------------------------

    def run(self, rip: int, rax: int = 0, rdi: int = 0, rsi: int = 0, rdx: int = 0,
            r10: int = 0, r8: int = 0, r9: int = 0) -> FaultStop | None:
        """Runs from ``rip`` with these registers until the next trap; returns the fault, if any.

        After it returns, ``self.regs`` holds the registers at the stop.
        """
        if self.exit_status is not None:
            raise ProcessGone(f"process {self.pid} is gone: {describe_status(self.exit_status)}")
        if _get_ident() != self.tracer_thread:
            self.check_thread()
        regs = self.regs
        regs.rip, regs.rax, regs.orig_rax = rip, rax, _NO_SYSCALL
        regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9 = rdi, rsi, rdx, r10, r8, r9
        pid, regs_addr, ptrace, waitpid = self.pid, self._regs_addr, _c_ptrace, _waitpid
        if ptrace(PTRACE_SETREGS, pid, 0, regs_addr) == -1:
            raise self._vanished("PTRACE_SETREGS")
        deliver = 0
        while True:
            if ptrace(PTRACE_CONT, pid, 0, deliver) == -1:
                raise self._vanished("PTRACE_CONT")
            status = waitpid(pid, WALL)[1]
            deliver = 0
            if status & 0xFF != 0x7F:  # not WIFSTOPPED: exited or killed
                self.exit_status = status
                raise ProcessGone(f"process {pid} {describe_status(status)}")
            sig = (status >> 8) & 0xFF  # WSTOPSIG
            if sig == _SIGTRAP:
                if status >> 16 == PTRACE_EVENT_FORK:
                    message = ctypes.c_ulong()
                    _ptrace(PTRACE_GETEVENTMSG, pid, 0, ctypes.addressof(message))
                    self.forked.append(message.value)
                    continue
                ptrace(PTRACE_GETREGS, pid, 0, regs_addr)
                return None
            if sig in _FAULT_SIGNALS:
                info = self._siginfo
                _ptrace(PTRACE_GETSIGINFO, pid, 0, ctypes.addressof(info))
                self.get_regs()
                return FaultStop(info.si_signo, info.si_code, info.si_addr, regs.rip)
            if sig in _SKIPPED:
                continue
            deliver = sig

    def _vanished(self, request: str) -> Exception:
        """The error for a failed ptrace request: ProcessGone if the tracee died under us."""
        err = _libc.get_errno()
        if err != errno.ESRCH:
            return os_error(err, f"{request} on pid {self.pid}")
        _, status = os.waitpid(self.pid, WALL)  # killed from outside: collect how it ended
        if os.WIFSTOPPED(status):
            return os_error(err, f"{request} on pid {self.pid}")
        self.exit_status = status
        return ProcessGone(f"process {self.pid} {describe_status(status)}")

    def deliver_pending(self, rest: int) -> int | None:
        """Lets pending signals take effect from the rest point; returns the wait status if it died.

        A terminated process is left unreaped (``WNOWAIT``), as a killed process is until its parent
        waits for it.
        """
        regs = self.regs
        regs.rip, regs.orig_rax = rest, (1 << 64) - 1
        _ptrace(PTRACE_SETREGS, self.pid, 0, self._regs_addr)
        deliver = 0
        while True:
            try:
                _ptrace(PTRACE_CONT, self.pid, 0, deliver)
            except ProcessLookupError:
                pass  # already dying: only the exit remains to be seen
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WSTOPPED | WALL | os.WNOWAIT)
            if info is None:
                continue
            if info.si_code == os.CLD_EXITED:
                return (info.si_status & 0xFF) << 8
            if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED):
                return info.si_status | (0x80 if info.si_code == os.CLD_DUMPED else 0)
            _, status = os.waitpid(self.pid, WALL)  # consume the stop we just saw
            sig = os.WSTOPSIG(status)
            if sig == signal.SIGTRAP and status >> 16 == 0:
                self.get_regs()
                return None
            deliver = 0 if sig in _IGNORED_BY_DEFAULT or sig == signal.SIGSTOP else sig
