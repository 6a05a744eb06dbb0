"""``vmkit.native.spawn()``: a real child process that runs our calls, so they cannot harm the caller.

The child executes the runtime of :mod:`vmkit.native._runtime` (no C library, no allocator), stopped
under ptrace between calls.  A system call is injected by pointing the child at a ``syscall; int3``
gadget with the arguments in registers; memory accesses run a real load/store probe over the pages
first (the kernel's own faults) and move the bytes through ``/proc/<pid>/mem``.  The child's address
space therefore changes only through the calls we make: with ASLR off (the default) the same calls
give the same ``maps()`` byte for byte.
"""

from __future__ import annotations

import os
import signal
import struct
import threading
import weakref

from vmkit.errors import ProcessGone, fault_for, os_error
from vmkit.flags import IOV_MAX, mask_to_caps, caps_to_mask
from vmkit.native import _libc, _runtime
from vmkit.native._libc import SYS
from vmkit.native._ptrace import (
    PTRACE_O_EXITKILL, PTRACE_O_TRACEFORK, PTRACE_TRACEME, WALL, FaultStop, Tracee, describe_status,
)
from vmkit.native.calls import iovec_bytes, mincore_pages
from vmkit.process import Iov, Process

ADDR_NO_RANDOMIZE = 0x0040000
PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
AT_FDCWD = -100
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_MASK64 = (1 << 64) - 1
_ERRNO_FLOOR = (1 << 64) - 4095
_RLIM_INFINITY = _MASK64

_SCRATCH = _runtime.SCRATCH_BASE
_SYSCALL_INSN = _runtime.SYSCALL_INSN
_SCRATCH_SIZE = _runtime.SCRATCH_SIZE


class ChildRuntimeLost(RuntimeError):
    """An earlier call unmapped or protected the child's runtime page, so it cannot run calls."""


def _rlim_out(value: int) -> int:
    return -1 if value == _RLIM_INFINITY else value


def _kill_quietly(pid: int, state: dict[str, bool]) -> None:
    """Finaliser: kills a child that was never terminated (its tracer reaps it at exit)."""
    if not state["reaped"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class NativeProcess(Process):
    """A real process, stopped under ptrace between the calls it runs on our behalf."""

    def __init__(self, tracee: Tracee, parent: NativeProcess | None) -> None:
        self._t = tracee
        self.pid = tracee.pid
        self._parent = parent
        self._mem = os.open(f"/proc/{self.pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        self._state = {"reaped": False}
        self._dead_status: int | None = None
        self._lost: ChildRuntimeLost | None = None
        self._finalizer = weakref.finalize(self, _kill_quietly, self.pid, self._state)

    # --- plumbing --------------------------------------------------------------------------

    def _runtime_lost(self, fault: FaultStop) -> ChildRuntimeLost:
        return ChildRuntimeLost(
            f"child {self.pid} faulted at {fault.addr:#x} while running its own runtime at "
            f"{_runtime.RUNTIME_BASE:#x}-{_runtime.RUNTIME_BASE + _runtime.RUNTIME_SIZE:#x} "
            "(an earlier call unmapped or protected it); spawn a new child"
        )

    def _alive(self) -> None:
        if self._lost is not None:
            raise self._lost
        if self._dead_status is not None or self._t.exit_status is not None:
            status = self._dead_status if self._dead_status is not None else self._t.exit_status
            assert status is not None
            raise ProcessGone(f"process {self.pid} {describe_status(status)}")

    def syscall(self, number: int, a1: int = 0, a2: int = 0, a3: int = 0, a4: int = 0,
                a5: int = 0, a6: int = 0) -> int:
        """Runs system call ``number`` in the child; returns ``rax``, raising OSError for -errno."""
        tracee = self._t
        if self._lost is not None or self._dead_status is not None or tracee.exit_status is not None:
            self._alive()
        fault = tracee.run(_SYSCALL_INSN, number, a1, a2, a3, a4, a5, a6)  # raises if the child is gone
        if fault is not None:
            if fault.rip != _runtime.SYSCALL_TRAP:
                raise self._runtime_lost(fault)
            # The call itself completed and removed the runtime: its result stands, later calls fail.
            self._lost = self._runtime_lost(fault)
        rax: int = tracee.regs.rax
        if rax >= _ERRNO_FLOOR:
            raise os_error((1 << 64) - rax)
        return rax

    def _put(self, data: bytes, offset: int = 0) -> int:
        """Copies ``data`` into the scratch area at ``offset``; returns its child address."""
        if offset + len(data) > _SCRATCH_SIZE:
            raise ValueError(f"{len(data)} bytes of arguments do not fit the child's scratch area")
        os.pwrite(self._mem, data, _SCRATCH + offset)
        return _SCRATCH + offset

    def _get(self, n: int, offset: int = 0) -> bytes:
        return os.pread(self._mem, n, _SCRATCH + offset)

    def _put_iov(self, iov: Iov, offset: int) -> tuple[int, int]:
        """Writes a ``struct iovec[]`` to scratch; returns (address, bytes used).

        Arrays longer than IOV_MAX are passed with their true count but only IOV_MAX + 1 entries are
        copied: the kernel refuses the count (EINVAL) before reading any of them.
        """
        blob = iovec_bytes(list(iov)[: IOV_MAX + 1])
        return self._put(blob, offset), len(blob)

    def _put_path(self, path: str | bytes) -> int:
        return self._put(os.fsencode(path) + b"\0")

    # --- memory-management system calls ---------------------------------------------------

    def mmap(self, addr: int | None, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int:
        return self.syscall(SYS["mmap"], addr or 0, length, prot, flags, fd, offset)

    def mremap(self, old_address: int, old_size: int, new_size: int, flags: int = 0,
               new_address: int | None = None) -> int:
        return self.syscall(SYS["mremap"], old_address, old_size, new_size, flags, new_address or 0)

    def munmap(self, addr: int, length: int) -> None:
        self.syscall(SYS["munmap"], addr, length)

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        self.syscall(SYS["mprotect"], addr, length, prot)

    def msync(self, addr: int, length: int, flags: int) -> None:
        self.syscall(SYS["msync"], addr, length, flags)

    def madvise(self, addr: int, length: int, advice: int) -> None:
        self.syscall(SYS["madvise"], addr, length, advice)

    def mincore(self, addr: int, length: int) -> bytes:
        """mincore(2) into the scratch area, in chunks the scratch holds (as the kernel chunks)."""
        pages = mincore_pages(length)
        if pages <= _SCRATCH_SIZE:
            self.syscall(SYS["mincore"], addr, length, _SCRATCH)
            return self._get(pages) if pages else b""
        out = bytearray()
        start, remaining = addr, length & _MASK64
        while remaining:
            chunk = min(remaining, _SCRATCH_SIZE << 12)
            self.syscall(SYS["mincore"], start, chunk, _SCRATCH)
            out += self._get(mincore_pages(chunk))
            start += chunk
            remaining -= chunk
        return bytes(out)

    def mlock(self, addr: int, length: int) -> None:
        self.syscall(SYS["mlock"], addr, length)

    def mlock2(self, addr: int, length: int, flags: int = 0) -> None:
        self.syscall(SYS["mlock2"], addr, length, flags)

    def munlock(self, addr: int, length: int) -> None:
        self.syscall(SYS["munlock"], addr, length)

    def mlockall(self, flags: int) -> None:
        self.syscall(SYS["mlockall"], flags)

    def munlockall(self) -> None:
        self.syscall(SYS["munlockall"])

    def brk(self, addr: int) -> int:
        return self.syscall(SYS["brk"], addr)

    def _process_vm(self, name: str, pid: int, local_iov: Iov, remote_iov: Iov, flags: int) -> int:
        local, used = self._put_iov(local_iov, 0)
        remote, _ = self._put_iov(remote_iov, used)
        return self.syscall(SYS[name], pid, local, len(local_iov), remote, len(remote_iov), flags)

    def process_vm_readv(self, pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int:
        return self._process_vm("process_vm_readv", pid, local_iov, remote_iov, flags)

    def process_vm_writev(self, pid: int, local_iov: Iov, remote_iov: Iov, flags: int = 0) -> int:
        return self._process_vm("process_vm_writev", pid, local_iov, remote_iov, flags)

    def process_madvise(self, pidfd: int, iov: Iov, advice: int, flags: int = 0) -> int:
        address, _ = self._put_iov(iov, 0)
        return self.syscall(SYS["process_madvise"], pidfd, address, len(iov), advice, flags)

    def process_mrelease(self, pidfd: int, flags: int = 0) -> None:
        self.syscall(SYS["process_mrelease"], pidfd, flags)

    # --- CPU accesses ---------------------------------------------------------------------------

    def _probe(self, loop: int, addr: int, n: int) -> FaultStop | None:
        """Touches every page of [addr, addr + n) in order; returns the first fault, if any."""
        self._alive()
        fault = self._t.run(loop, 0, addr, addr + n)
        if fault is not None and fault.rip != loop:
            raise self._runtime_lost(fault)
        return fault

    def read(self, addr: int, n: int) -> bytes:
        """A CPU load of ``n`` bytes: each page is loaded from in order, so the faults are real."""
        if n <= 0:
            return b""
        fault = self._probe(_runtime.READ_PROBE_LOOP, addr, n)
        if fault is not None:
            raise fault_for(fault.signo, fault.addr, fault.code)
        try:
            data = os.pread(self._mem, n, addr)
        except OSError:
            data = b""
        if len(data) < n:  # memory /proc/<pid>/mem refuses (e.g. [vvar]): 8-byte loads instead
            data += self._load_words(addr + len(data), n - len(data))
        return data

    def _load_words(self, addr: int, n: int) -> bytes:
        out = bytearray()
        start = addr & ~7
        for word in range(start, addr + n, 8):
            fault = self._t.run(_runtime.LOAD8_INSN, 0, word)
            if fault is not None:
                raise fault_for(fault.signo, fault.addr, fault.code)
            out += struct.pack("<Q", self._t.regs.rax)
        return bytes(out[addr - start: addr - start + n])

    def write(self, addr: int, data: bytes | bytearray | memoryview) -> None:
        """A CPU store of ``data``: each page is written to in order; bytes before a fault land."""
        n = len(data)
        if n == 0:
            return
        fault = self._probe(_runtime.WRITE_PROBE_LOOP, addr, n)
        done = n if fault is None else fault.addr - addr
        if done > 0:
            os.pwrite(self._mem, bytes(data[:done]), addr)
        if fault is not None:
            raise fault_for(fault.signo, fault.addr, fault.code)

    # --- introspection --------------------------------------------------------------------------

    def _proc_text(self, name: str) -> str:
        self._alive()
        with open(f"/proc/{self.pid}/{name}") as f:
            return f.read()

    def maps(self) -> str:
        """The text of ``/proc/<pid>/maps``."""
        return self._proc_text("maps")

    def smaps(self) -> str:
        """The text of ``/proc/<pid>/smaps``."""
        return self._proc_text("smaps")

    def status(self) -> dict[str, str]:
        """``/proc/<pid>/status`` as a dict of field name to text (``"VmLck": "4 kB"``)."""
        fields = {}
        for line in self._proc_text("status").splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        return fields

    def fork(self) -> NativeProcess:
        """fork(2) in the child; the new process is traced too and returned stopped."""
        before = len(self._t.forked)
        child_pid = self.syscall(SYS["fork"])
        assert self._t.forked[before:] == [child_pid], "fork event and return value disagree"
        tracee = Tracee(child_pid, self._t.tracer_thread)
        tracee.wait_initial_stop()
        return NativeProcess(tracee, self)

    # --- files ------------------------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        return self.syscall(SYS["openat"], AT_FDCWD, self._put_path(path), flags, mode)

    def close(self, fd: int) -> None:
        self.syscall(SYS["close"], fd)

    def ftruncate(self, fd: int, length: int) -> None:
        self.syscall(SYS["ftruncate"], fd, length)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        """pread(2) into scratch; requests larger than the scratch area are read in pieces."""
        out = bytearray()
        while True:
            want = min(n - len(out), _SCRATCH_SIZE)
            got = self.syscall(SYS["pread64"], fd, _SCRATCH, want, offset + len(out))
            out += self._get(got)
            if got < want or len(out) >= n:
                return bytes(out)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        """pwrite(2) from scratch; returns the bytes written (pieces for data beyond the scratch)."""
        done = 0
        while True:
            piece = bytes(data[done:done + _SCRATCH_SIZE])
            self._put(piece)
            wrote = self.syscall(SYS["pwrite64"], fd, _SCRATCH, len(piece), offset + done)
            done += wrote
            if wrote < len(piece) or done >= len(data):
                return done

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        self.syscall(SYS["mkdir"], self._put_path(path), mode)

    def unlink(self, path: str) -> None:
        self.syscall(SYS["unlink"], self._put_path(path))

    def memfd_create(self, name: str, flags: int = 0) -> int:
        return self.syscall(SYS["memfd_create"], self._put_path(name), flags)

    def pidfd_open(self, pid: int) -> int:
        return self.syscall(SYS["pidfd_open"], pid, 0)

    def pipe(self, flags: int = 0) -> tuple[int, int]:
        self.syscall(SYS["pipe2"], _SCRATCH, flags)
        read_end, write_end = struct.unpack("<ii", self._get(8))
        return read_end, write_end

    # --- signals, limits, credentials -----------------------------------------------------------

    def kill(self, sig: int) -> None:
        """Sends ``sig`` to the process (kill(2) from outside); a fatal signal leaves it unreaped."""
        self._alive()
        if sig in (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU):
            raise NotImplementedError("job-control stop signals are not supported by vmkit processes")
        os.kill(self.pid, sig)
        if sig == 0:
            return
        if sig == signal.SIGKILL:
            self._dead_status = signal.SIGKILL
            return
        status = self._t.deliver_pending(_runtime.REST)
        if status is not None:
            self._dead_status = status

    def wait(self) -> int:
        """Reaps the process (it must have been killed); returns its wait status."""
        if self._state["reaped"]:
            raise ChildProcessError(f"process {self.pid} was already reaped")
        if self._dead_status is None and self._t.exit_status is None:
            raise ChildProcessError(
                f"process {self.pid} is alive and never exits by itself: kill it before wait()"
            )
        status = self._t.exit_status
        if status is None:
            _, status = os.waitpid(self.pid, WALL)
            self._t.exit_status = status
        self._state["reaped"] = True
        os.close(self._mem)
        parent = self._parent
        if parent is not None and parent._dead_status is None and parent._t.exit_status is None:
            # The tracer has seen the exit; the real parent reaps the zombie with wait4.
            parent.syscall(SYS["wait4"], self.pid, _SCRATCH, WALL, 0)
            status = struct.unpack("<i", parent._get(4))[0]
        return status

    def getrlimit(self, res: int) -> tuple[int, int]:
        self.syscall(SYS["prlimit64"], 0, res, 0, _SCRATCH)
        soft, hard = struct.unpack("<QQ", self._get(16))
        return _rlim_out(soft), _rlim_out(hard)

    def setrlimit(self, res: int, limits: tuple[int, int]) -> None:
        soft, hard = limits
        address = self._put(struct.pack("<QQ", soft & _MASK64, hard & _MASK64))
        self.syscall(SYS["prlimit64"], 0, res, address, 0)

    def setresuid(self, r: int, e: int, s: int) -> None:
        self.syscall(SYS["setresuid"], r, e, s)

    def setresgid(self, r: int, e: int, s: int) -> None:
        self.syscall(SYS["setresgid"], r, e, s)

    @property
    def capabilities(self) -> frozenset[str]:
        """The effective capability set, by name (capget(2))."""
        header = self._put(struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0))
        self.syscall(SYS["capget"], header, header + 8)
        eff0, _, _, eff1, _, _ = struct.unpack("<6I", self._get(24, 8))
        return mask_to_caps(eff0 | eff1 << 32)

    @capabilities.setter
    def capabilities(self, names: set[str] | frozenset[str]) -> None:
        """Sets the effective and permitted sets to ``names`` and clears the inheritable set."""
        mask = caps_to_mask(set(names))
        lo, hi = mask & 0xFFFFFFFF, mask >> 32
        header = self._put(struct.pack("<Ii", _LINUX_CAPABILITY_VERSION_3, 0) + struct.pack("<6I", lo, lo, 0, hi, hi, 0))
        self.syscall(SYS["capset"], header, header + 8)

    @property
    def dumpable(self) -> bool:
        return bool(self.syscall(SYS["prctl"], PR_GET_DUMPABLE))

    @dumpable.setter
    def dumpable(self, value: bool) -> None:
        self.syscall(SYS["prctl"], PR_SET_DUMPABLE, int(value))

    # --- life cycle -------------------------------------------------------------------------------

    def terminate(self) -> None:
        if self._state["reaped"]:
            return
        if self._dead_status is None and self._t.exit_status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._dead_status = signal.SIGKILL
        try:
            self.wait()
        except (ChildProcessError, OSError):
            self._state["reaped"] = True

    def __repr__(self) -> str:
        state = "alive" if self._dead_status is None and self._t.exit_status is None else "dead"
        return f"<vmkit.native process {self.pid} {state}>"


def spawn(aslr: bool = False) -> NativeProcess:
    """Starts an isolated child process, stopped and ready to run calls (ASLR off by default)."""
    path = os.fsencode(_runtime.executable_path())
    code = _runtime.code_page()
    pid = os.fork()
    if pid == 0:  # the child: become traceable, lose ASLR, and exec the runtime
        try:
            devnull = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            os.closerange(3, 1 << 20)
            if not aslr:
                current = _libc.personality(0xFFFFFFFF)
                _libc.personality(current | ADDR_NO_RANDOMIZE)
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _libc.ptrace(PTRACE_TRACEME, 0, None, None)
            os.execve(path, [b"vmkit-child"], {})
        finally:
            os._exit(127)
    tracee = Tracee(pid, threading.get_ident())
    try:
        tracee.wait_initial_stop()
        tracee.set_options(PTRACE_O_EXITKILL | PTRACE_O_TRACEFORK)
        process = NativeProcess(tracee, None)
        os.pwrite(process._mem, code, _runtime.RUNTIME_BASE)
    except BaseException:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
        raise
    return process


__all__ = ["ChildRuntimeLost", "NativeProcess", "spawn"]
