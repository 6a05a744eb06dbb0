"""Real programs' system-call traces: reading strace logs (:mod:`vmkit.trace.strace`).

::

    import vmkit
    from vmkit.trace import Syscall, as_int, parse_file

    def constant(name: str) -> int:
        return int(getattr(vmkit, name))

    for event in parse_file("ls.log"):          # strace -f -y -o ls.log ls
        if isinstance(event, Syscall) and event.name == "mmap" and not event.unfinished:
            addr, length, prot, flags, fd, offset = event.args
            print(hex(event.result or 0), as_int(prot, constant), as_int(flags, constant), fd)

``python -m vmkit.trace LOG...`` checks that logs parse (the first error as ``FILE:LINE:COL``).
"""

from pathlib import Path

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


def shipped_traces() -> list[Path]:
    """The traces of real programs that ship with vmkit (``vmkit/trace/data/*.trace``), sorted."""

    return sorted((Path(__file__).parent / "data").glob("*.trace"))
