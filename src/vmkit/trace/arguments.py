"""Turning strace's parsed argument values (:mod:`vmkit.trace.strace_values`) into the numbers the
model's calls take: flag names through :mod:`vmkit.flags` and the C headers' other constants."""

from __future__ import annotations

import os
import resource
import signal
from typing import Any

from vmkit import flags as vmflags
from vmkit.trace.strace_values import Call, Changed, Commented, Fd, Flags, Named, Shift, Struct, Symbol

_CLONE = {
    "CLONE_VM": 0x100, "CLONE_FS": 0x200, "CLONE_FILES": 0x400, "CLONE_SIGHAND": 0x800,
    "CLONE_PIDFD": 0x1000, "CLONE_PTRACE": 0x2000, "CLONE_VFORK": 0x4000, "CLONE_PARENT": 0x8000,
    "CLONE_THREAD": 0x10000, "CLONE_NEWNS": 0x20000, "CLONE_SYSVSEM": 0x40000,
    "CLONE_SETTLS": 0x80000, "CLONE_PARENT_SETTID": 0x100000, "CLONE_CHILD_CLEARTID": 0x200000,
    "CLONE_DETACHED": 0x400000, "CLONE_UNTRACED": 0x800000, "CLONE_CHILD_SETTID": 0x1000000,
    "CLONE_NEWCGROUP": 0x2000000, "CLONE_NEWUTS": 0x4000000, "CLONE_NEWIPC": 0x8000000,
    "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000,
    "CLONE_IO": 0x80000000, "CLONE_CLEAR_SIGHAND": 0x100000000, "CLONE_INTO_CGROUP": 0x200000000,
}


def _names() -> dict[str, int]:
    names: dict[str, int] = {}
    for enum in vmflags.EXPORTED_ENUMS:
        for member in enum:
            if member.name:
                names[member.name] = int(member.value)
    names.update({
        "PROT_NONE": 0, "MAP_FILE": 0, "MAP_HUGE_SHIFT": 26, "MREMAP_NONE": 0,
        "AT_FDCWD": -100, "AT_EMPTY_PATH": 0x1000, "FD_CLOEXEC": 1, "CLOSE_RANGE_UNSHARE": 2,
        "CLOSE_RANGE_CLOEXEC": 4, "RLIM_INFINITY": -1, "RLIM64_INFINITY": -1,
        "PIDFD_NONBLOCK": os.O_NONBLOCK, "PIDFD_SELF_THREAD": -10000, "PIDFD_SELF_THREAD_GROUP": -10001,
        "F_DUPFD": 0, "F_GETFD": 1, "F_SETFD": 2, "F_GETFL": 3, "F_SETFL": 4, "F_DUPFD_CLOEXEC": 1030,
    })
    names.update(_CLONE)
    for name in dir(os):
        if name.startswith("O_"):
            names[name] = getattr(os, name)
    for name in dir(resource):
        if name.startswith("RLIMIT_"):
            names[name] = getattr(resource, name)
    for sig in signal.Signals:
        names[sig.name] = int(sig)
    return names


#: Every constant name a memory-call trace may print, to its Linux x86-64 value.
NAMES = _names()


def to_int(value: Any) -> int:
    """The number an argument stands for; ValueError naming what is not a number."""
    if isinstance(value, int):
        return value
    if isinstance(value, Flags):
        total = 0
        for part in value.parts:
            if isinstance(part, int):
                total |= part
            elif isinstance(part, Shift):
                total |= part.value << _name(part.name)
            else:
                total |= _name(part)
        return total
    if isinstance(value, Symbol):
        return _name(value.name)
    if isinstance(value, Fd):
        return value.fd if isinstance(value.fd, int) else _name(value.fd.name)
    if isinstance(value, (Commented, Named)):
        return to_int(value.value)
    raise ValueError(f"expected a number, got {value!r}")


def _name(name: str) -> int:
    found = NAMES.get(name)
    if found is None:
        raise ValueError(f"unknown constant {name}")
    return found


def fd_path(value: Any) -> str | None:
    """The path strace's ``-y`` printed with an fd (``3</usr/lib/libc.so.6>``), else None."""
    if isinstance(value, Fd):
        return value.path
    return None


def result_path(call: Any) -> str | None:
    """The path strace's ``-y`` printed with an fd result (``= 3</etc/passwd>``), else None."""
    note: str | None = call.result_note
    if note and note.startswith("<"):
        end = note.rfind(">")
        path = note[1:end]
        return path + " (deleted)" if note[end + 1:].strip() == "(deleted)" else path
    return None


def open_flags(value: Any) -> int | None:
    return None if value is None else to_int(value)


def symbol_name(value: Any) -> str | None:
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, Flags) and len(value.parts) == 1 and isinstance(value.parts[0], str):
        return value.parts[0]
    return None


def stat_facts(value: Any) -> tuple[int, tuple[int, int] | None, int | None] | None:
    """(size, (major, minor), inode) of a printed stat (``st_*``) or statx (``stx_*``) structure."""
    if not isinstance(value, Struct):
        return None
    if "st_size" in value:
        dev = value.get("st_dev")
        device = tuple(to_int(a) for a in dev.args) if isinstance(dev, Call) and dev.name == "makedev" else None
        ino = value.get("st_ino")
        return to_int(value["st_size"]), device, None if ino is None else to_int(ino)  # type: ignore[return-value]
    if "stx_size" in value:
        major, minor = value.get("stx_dev_major"), value.get("stx_dev_minor")
        ino = value.get("stx_ino")
        device = (to_int(major), to_int(minor)) if major is not None and minor is not None else None
        return to_int(value["stx_size"]), device, None if ino is None else to_int(ino)
    return None


def rlimit(value: Any) -> tuple[int, int] | None:
    """``{rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}`` -> (soft, hard); None for NULL."""
    if isinstance(value, Struct) and "rlim_cur" in value:
        return to_int(value["rlim_cur"]), to_int(value["rlim_max"])
    return None


def iovec(value: Any) -> list[tuple[int, int]] | None:
    """``[{iov_base=0x..., iov_len=N}, ...]`` -> [(base, len)]; None when strace printed contents."""
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if not isinstance(item, Struct):
            return None
        base = item.get("iov_base")
        if isinstance(base, bytes):
            return None
        out.append((to_int(base), to_int(item["iov_len"])))
    return out


def clone_flags(call: Any) -> int:
    """The CLONE_* flags of a clone (``flags=...`` argument) or clone3 (``{flags=...}``) call."""
    for arg in call.args:
        if isinstance(arg, Changed):  # clone3({flags=...} => {parent_tid=[N]}, 88)
            arg = arg.before
        if isinstance(arg, Named) and arg.name == "flags":
            return to_int(arg.value) & ~0xFF  # the low byte is the exit signal
        if isinstance(arg, Struct) and "flags" in arg:
            return to_int(arg["flags"])
    return 0


def comment_count(value: Any) -> int:
    """``0x7ffe... /* 20 vars */`` -> 20 (an abbreviated execve environment)."""
    if isinstance(value, Commented):
        words = value.comment.split()
        if words and words[0].isdigit():
            return int(words[0])
    return 0
