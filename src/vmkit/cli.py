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
    args = parser.parse_args(argv)
    if args.command == "tour":
        return tour.run(out=sys.stdout)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
