"""The ``vmkit`` command line (also ``python -m vmkit``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vmkit import tour


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vmkit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tour_cmd = commands.add_parser(
        "tour", help="walk through the memory-management calls on a real isolated child process"
    )
    tour_cmd.add_argument("--aslr", action="store_true", help="keep address randomisation on")
    args = parser.parse_args(argv)
    if args.command == "tour":
        return tour.run(aslr=args.aslr, out=sys.stdout)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
