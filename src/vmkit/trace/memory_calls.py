"""The memory calls of a trace, run in the model: each handler turns strace's arguments into the
model call and returns (value, errno name) for the replay to compare with the kernel's result."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vmkit.sim.process import SimProcess
from vmkit.trace import arguments
from vmkit.trace.strace import Syscall
from vmkit.trace.tasks import Tid, Unverifiable, errno_name, number

if TYPE_CHECKING:
    from vmkit.trace.replay import Replay

PAGE_SIZE = 4096
MAP_ANONYMOUS = 0x20


Outcome = tuple[int, str | None] | None


def _run(fn: Callable[[], Any]) -> tuple[int, str | None]:
    try:
        result = fn()
    except OSError as error:
        return -1, errno_name(error.errno or 0)
    if isinstance(result, bytes):  # mincore's vector: not compared (residency needs the accesses)
        return 0, None
    return (0 if result is None else int(result)), None


def _mmap(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    addr, length, prot, flags = (number(a, call) for a in call.args[:4])
    offset = number(call.args[5], call)
    fd = -1
    if not flags & MAP_ANONYMOUS:
        try:
            fd = r.model_fd(tid, model, call.args[4], call)
        except Unverifiable as why:
            if call.errno is None and call.result is not None:
                r.apply_kernel_result(tid, model, call)
            raise why
    else:
        fd = number(call.args[4], call)
    return _run(lambda: model.mmap(addr, length, prot, flags, fd, offset))


def _simple(method: str, count: int) -> Callable[[Replay, Tid, SimProcess, Syscall], Outcome]:
    def run(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
        args = [number(a, call) for a in call.args[:count]]
        return _run(lambda: getattr(model, method)(*args))
    return run


def _pkey_mprotect(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    addr, length, prot, pkey = (number(a, call) for a in call.args[:4])
    if pkey != -1:
        if call.errno is None:
            _run(lambda: model.mprotect(addr, length, prot))
        raise Unverifiable("protection keys are not modelled")
    return _run(lambda: model.mprotect(addr, length, prot))


def _mremap(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    args = [number(a, call) for a in call.args[:5]] if len(call.args) >= 5 else [
        number(a, call) for a in call.args[:4]] + [0]
    return _run(lambda: model.mremap(args[0], args[1], args[2], args[3], args[4]))


def _brk(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    addr = number(call.args[0], call)
    return model.brk(addr), None


def _iov(value: Any, call: Syscall) -> list[tuple[int, int]]:
    iov = arguments.iovec(value)
    if iov is None:
        raise Unverifiable("strace did not print the addresses of this iovec")
    return iov


def _process_vm(write: bool) -> Callable[[Replay, Tid, SimProcess, Syscall], Outcome]:
    def run(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
        pid = number(call.args[0], call)
        target = r.tids.get(pid)
        if target is None or target.space.model is None:
            raise Unverifiable("the target process is not in the trace")
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
            return _run(lambda: method(target_pid, local, remote, number(call.args[5], call)))
        finally:
            scratch.terminate()
    return run


def _process_madvise(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    pidfd = r.model_fd(tid, model, call.args[0], call)
    iov = _iov(call.args[1], call)
    advice, flags = number(call.args[3], call), number(call.args[4], call)
    return _run(lambda: model.process_madvise(pidfd, iov, advice, flags))


def _process_mrelease(r: Replay, tid: Tid, model: SimProcess, call: Syscall) -> Outcome:
    pidfd = r.model_fd(tid, model, call.args[0], call)
    flags = number(call.args[1], call)
    return _run(lambda: model.process_mrelease(pidfd, flags))


CALLS: dict[str, Callable[[Replay, Tid, SimProcess, Syscall], Outcome]] = {
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
