"""Real programs' system-call traces: reading strace logs (:mod:`vmkit.trace.strace`)."""

from pathlib import Path

from vmkit.trace.strace import Comment, Event, Exit, Signal, Syscall, Trace, TraceError, parse, parse_file
from vmkit.trace.strace_values import (
    Call, Changed, Commented, Complement, Expr, Fd, Flags, Indexed, Interrupted, Named, Shift, Struct, Symbol,
    TruncatedBytes, Value,
)

__all__ = [
    "Call", "Changed", "Comment", "Commented", "Complement", "Event", "Exit", "Expr", "Fd", "Flags",
    "Indexed", "Interrupted", "Named", "Shift", "Signal", "Struct", "Symbol", "Syscall", "Trace", "TraceError",
    "TruncatedBytes", "Value", "parse", "parse_file",
]


def shipped_traces() -> list[Path]:
    """The traces of real programs that ship with vmkit (``vmkit/trace/data/*.trace``), sorted."""

    return sorted((Path(__file__).parent / "data").glob("*.trace"))
