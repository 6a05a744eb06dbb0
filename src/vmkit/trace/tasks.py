"""What the replay keeps per traced task: its address space (a model process shared by the tids
that share it), its fd table, and the small helpers that read a call's arguments."""

from __future__ import annotations

import errno as errno_module
import os
from dataclasses import dataclass, field
from typing import Any

from vmkit.sim.process import SimProcess
from vmkit.trace import arguments
from vmkit.trace.strace import Syscall


class ReplayError(ValueError):
    """The trace cannot be replayed as written (names the line)."""


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


class Unverifiable(Exception):
    """Raised by a call handler: the trace does not say enough to check this call."""


def matches(call: Syscall, value: int, err: str | None) -> bool:
    """The model's outcome is the kernel's: the same errno, or the same value when both succeed."""
    if err is None and call.errno is None:
        return value == call.result
    return err == call.errno


def show(value: int | None, err: str | None) -> str:
    if err is not None:
        return f"-1 {err}"
    if value is None:
        return "?"
    return hex(value) if value > 4096 else str(value)


def number(value: Any, call: Syscall) -> int:
    try:
        return arguments.to_int(value)
    except ValueError as error:
        raise ReplayError(f"line {call.lineno}: {error}: {call.text}") from None


def text(value: Any, call: Syscall) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    raise ReplayError(f"line {call.lineno}: expected a string argument, got {value!r}: {call.text}")


def strings(value: Any, call: Syscall) -> list[bytes] | None:
    if isinstance(value, list):
        return [bytes(v) for v in value if isinstance(v, bytes)]
    return None


def errno_name(code: int) -> str:
    return errno_module.errorcode.get(code, str(code))
