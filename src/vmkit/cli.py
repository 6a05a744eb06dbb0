"""The ``vmkit`` command line (also ``python -m vmkit``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vmkit import tour


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vmkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser(
        "tour", help="run the same memory-management calls on a real isolated child and on the "
        "model kernel, and show where they agree (exit status 1 if they differ)"
    )
    replay = commands.add_parser(
        "replay", help="replay the memory calls of an strace log in the model kernel and report "
        "where the model disagrees with what the kernel returned (exit status 1 if it does)"
    )
    replay.add_argument("trace", metavar="TRACE", nargs="?",
                        help="a trace from `vmkit record` or `strace -f` (-y and -v make it checkable in full)")
    replay.add_argument("--shipped", metavar="NAME",
                        help="replay a trace that ships with vmkit instead (cat, memcalls, node, perl, sqlite3)")
    replay.add_argument("--json", action="store_true",
                        help='print {"calls": N, "agree": M, "disagreements": [...], ...}')
    replay.add_argument("--all", action="store_true", help="list every disagreement")
    replay.add_argument("--no-host-binaries", dest="host_binaries", action="store_false",
                        help="never read an executed binary from this machine (only the trace's images)")
    record = commands.add_parser(
        "record", help="run a command under strace with ASLR off and write a trace `vmkit replay` takes"
    )
    record.add_argument("-o", "--output", default="vmkit.trace", help="trace file (default: vmkit.trace)")
    record.add_argument("--aslr", action="store_true", help="leave ASLR on (the replay assumes it off)")
    record.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD ...")
    maps = commands.add_parser("maps", help="replay a trace and print the model's /proc/PID/maps at its end")
    maps.add_argument("trace", metavar="TRACE")
    maps.add_argument("--pid", type=int, help="the traced pid (default: every process)")
    maps.add_argument("--line", type=int, help="stop after the calls that completed up to this line of the trace")
    args = parser.parse_args(argv)
    if args.command == "tour":
        return tour.run(out=sys.stdout)
    if args.command == "replay":
        from vmkit.trace import cli_replay, shipped_traces

        if args.shipped:
            found = {p.stem: str(p) for p in shipped_traces()}
            if args.shipped not in found:
                replay.error(f"no shipped trace {args.shipped!r}; there are: {', '.join(sorted(found))}")
            args.trace = found[args.shipped]
        elif not args.trace:
            replay.error("give a TRACE file (or --shipped NAME)")
        return cli_replay.replay(args.trace, as_json=args.json, show_all=args.all,
                                 host_binaries=args.host_binaries)
    if args.command == "maps":
        from vmkit.trace import cli_replay

        return cli_replay.maps(args.trace, args.pid, args.line)
    if args.command == "record":
        from vmkit.trace import record as recorder

        command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not command:
            record.error("give the command to record after --, e.g. vmkit record -o ls.trace -- ls -l")
        return recorder.main(command, args.output, aslr=args.aslr)
    parser.error(f"unknown command {args.command}")
    return 2


def entry() -> int:
    """The console script: ``main`` with a closed pipe (``vmkit replay T | head``) ending quietly."""
    try:
        return main()
    except BrokenPipeError:
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(entry())
