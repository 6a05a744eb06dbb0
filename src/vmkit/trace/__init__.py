"""Real programs' system-call traces: reading strace logs (:mod:`vmkit.trace.strace`)."""

from vmkit.trace.strace import Comment, Event, Exit, Signal, Syscall, Trace, TraceError, parse, parse_file
from vmkit.trace.strace_values import (
    Call, Changed, Commented, Complement, Expr, Fd, Flags, Indexed, Interrupted, Named, Shift, Struct, Symbol,
    TruncatedBytes, Value, as_int,
)

__all__ = [
    "Call", "Changed", "Comment", "Commented", "Complement", "Event", "Exit", "Expr", "Fd", "Flags",
    "Indexed", "Interrupted", "Named", "Shift", "Signal", "Struct", "Symbol", "Syscall", "Trace", "TraceError",
    "TruncatedBytes", "Value", "as_int", "parse", "parse_file",
]
