"""``python -m vmkit.trace LOG...``: check that strace logs parse."""

from __future__ import annotations

import sys
from collections import Counter

from vmkit.trace.strace import TraceError, parse_file


def main(argv: list[str] | None = None) -> int:
    """``python -m vmkit.trace LOG...``: checks that logs parse; prints the events of each
    kind, or the first error (``FILE:LINE:COL: what: line``) and exits 1."""
    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m vmkit.trace LOG...", file=sys.stderr)
        return 2
    status = 0
    for path in paths:
        kinds: Counter[str] = Counter()
        try:
            for event in parse_file(path):
                kinds[type(event).__name__] += 1
        except (TraceError, OSError) as e:
            print(e, file=sys.stderr)
            status = 1
            continue
        print(f"{path}: " + ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items())))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
