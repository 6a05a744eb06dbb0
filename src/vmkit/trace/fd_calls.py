"""The calls that tell the replay what each fd is (open, dup, fcntl, close, memfd_create,
pidfd_open), what size, device and inode a file has (stat), and the limits and credentials the
memory calls depend on (prlimit64, setrlimit, setresuid)."""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import TYPE_CHECKING

from vmkit.trace import arguments
from vmkit.trace.strace import Syscall
from vmkit.trace.tasks import FdInfo, Tid, number, text

if TYPE_CHECKING:
    from vmkit.trace.replay import Replay

O_CLOEXEC = os.O_CLOEXEC


def _on_openat(r: Replay, tid: Tid, call: Syscall) -> None:
    r.note_open(tid, call, call.args[1], call.args[2])


def _on_open(r: Replay, tid: Tid, call: Syscall) -> None:
    r.note_open(tid, call, call.args[0], call.args[1])


def _on_creat(r: Replay, tid: Tid, call: Syscall) -> None:
    fd = call.result or 0
    tid.fds[fd] = FdInfo(arguments.result_path(call) or text(call.args[0], call),
                         os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def _on_openat2(r: Replay, tid: Tid, call: Syscall) -> None:
    how = call.args[2]
    flags = how.get("flags") if isinstance(how, dict) else None
    r.note_open(tid, call, call.args[1], flags)


def _on_close(r: Replay, tid: Tid, call: Syscall) -> None:
    tid.fds.pop(number(call.args[0], call), None)


def _on_close_range(r: Replay, tid: Tid, call: Syscall) -> None:
    first, last = number(call.args[0], call), number(call.args[1], call)
    flags = number(call.args[2], call) if len(call.args) > 2 else 0
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
    _dup_to(tid, number(call.args[0], call), call.result or 0, False)


def _on_dup2(r: Replay, tid: Tid, call: Syscall) -> None:
    _dup_to(tid, number(call.args[0], call), number(call.args[1], call), False)


def _on_dup3(r: Replay, tid: Tid, call: Syscall) -> None:
    flags = number(call.args[2], call) if len(call.args) > 2 else 0
    _dup_to(tid, number(call.args[0], call), call.result or 0, bool(flags & O_CLOEXEC))


def _on_fcntl(r: Replay, tid: Tid, call: Syscall) -> None:
    fd, command = number(call.args[0], call), arguments.symbol_name(call.args[1])
    if command in ("F_DUPFD", "F_DUPFD_CLOEXEC"):
        _dup_to(tid, fd, call.result or 0, command == "F_DUPFD_CLOEXEC")
    elif command == "F_SETFD" and fd in tid.fds:
        info = tid.fds[fd]
        if info.flags is not None:
            cloexec = number(call.args[2], call) & 1
            info.flags = (info.flags & ~O_CLOEXEC) | (O_CLOEXEC if cloexec else 0)


def _on_memfd_create(r: Replay, tid: Tid, call: Syscall) -> None:
    name = os.fsdecode(call.args[0]) if isinstance(call.args[0], bytes) else ""
    flags = number(call.args[1], call)
    tid.fds[call.result or 0] = FdInfo(name, os.O_RDWR | (O_CLOEXEC if flags & 1 else 0), "memfd")


def _on_pidfd_open(r: Replay, tid: Tid, call: Syscall) -> None:
    tid.fds[call.result or 0] = FdInfo(None, O_CLOEXEC, "pidfd", number(call.args[0], call))


def _on_stat(r: Replay, tid: Tid, call: Syscall) -> None:
    """fstat/newfstatat/statx print st_size, st_dev and st_ino: the model's file gets them."""
    for arg in call.args:
        facts = arguments.stat_facts(arg)
        if facts is None:
            continue
        base = arguments.fd_path(call.args[0])
        name = call.args[1] if call.name != "fstat" and len(call.args) > 1 else b""
        path: str | None
        if isinstance(name, bytes) and name:
            name_text = os.fsdecode(name)
            path = name_text if name_text.startswith("/") or base is None else os.path.join(base, name_text)
        else:
            path = base
        r.note_stat(path and os.path.normpath(path), *facts)
        return


def _on_ftruncate(r: Replay, tid: Tid, call: Syscall) -> None:
    r.note_stat(arguments.fd_path(call.args[0]), number(call.args[1], call))


def _on_prlimit64(r: Replay, tid: Tid, call: Syscall) -> None:
    pid, resource_name = number(call.args[0], call), arguments.symbol_name(call.args[1])
    limits = arguments.rlimit(call.args[2])
    if limits is None:
        return
    _set_rlimit(r, tid if pid in (0, tid.tid) else r.tids.get(pid), resource_name, limits)


def _on_setrlimit(r: Replay, tid: Tid, call: Syscall) -> None:
    limits = arguments.rlimit(call.args[1])
    if limits is not None:
        _set_rlimit(r, tid, arguments.symbol_name(call.args[0]), limits)


def _set_rlimit(r: Replay, tid: Tid | None, name: str | None, limits: tuple[int, int]) -> None:
    """The kernel accepted the limit: the model process takes it too; if the model refuses it, the
    report says so (the calls after it may then differ)."""
    if tid is None or tid.space.model is None or not name or not hasattr(resource, name):
        return
    try:
        tid.space.model.setrlimit(getattr(resource, name), limits)
    except OSError as error:
        r.note(f"the model refused a {name} the kernel accepted ({os.strerror(error.errno or 0)})")


def _on_setresuid(r: Replay, tid: Tid, call: Syscall) -> None:
    if tid.space.model is not None:
        ids = [number(a, call) for a in call.args[:3]]
        tid.space.model.setresuid(*ids)


FD_CALLS: dict[str, Callable[[Replay, Tid, Syscall], None]] = {
    "openat": _on_openat, "open": _on_open, "creat": _on_creat, "openat2": _on_openat2,
    "close": _on_close, "close_range": _on_close_range, "dup": _on_dup, "dup2": _on_dup2,
    "dup3": _on_dup3, "fcntl": _on_fcntl, "memfd_create": _on_memfd_create,
    "pidfd_open": _on_pidfd_open, "fstat": _on_stat, "newfstatat": _on_stat, "statx": _on_stat,
    "ftruncate": _on_ftruncate, "prlimit64": _on_prlimit64, "setrlimit": _on_setrlimit,
    "setresuid": _on_setresuid,
}
