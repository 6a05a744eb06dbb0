"""How fast vmkit.trace.strace reads a log, in lines per second of CPU time.

Run: ``PYTHONPATH=src python3 benchmarks/strace_parse.py [LOG ...] [--calls N] [--runs N]``

Without LOG, records one with strace (``-f -y``, ASLR off): a Python loop of anonymous mmap /
madvise / munmap, the shape of a memory-heavy program, ``--calls`` iterations. Each log is parsed
``--runs`` times with the fast path (one regex for the common one-line call) and once with every line
through the full grammar; the figures are the medians of ``time.process_time`` (CPU, so other jobs
on the shared machine count less than in wall time). The first line prints how long
``sum(range(1000))`` takes, to compare machines and Python builds (a pyenv build without
``--enable-optimizations`` runs this parser about 1.5x slower than Debian's python3).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit

from vmkit.trace.strace import Trace, _file_blocks

LOOP = """
import mmap
for i in range({calls}):
    m = mmap.mmap(-1, 65536 + 4096 * (i % 7))
    m.madvise(mmap.MADV_DONTNEED)
    m.close()
"""


def record(calls: int, directory: str) -> str:
    """A real log of ``calls`` loop iterations (about 3 lines each, plus Python's start-up)."""
    strace = shutil.which("strace")
    if strace is None:
        sys.exit("strace is not installed: pass a LOG to parse")
    path = os.path.join(directory, "loop.log")
    subprocess.run(["setarch", "-R", strace, "-f", "-y", "-o", path, sys.executable, "-c",
                    LOOP.format(calls=calls)], check=True)
    return path


def lines_per_second(path: str, fast: bool) -> tuple[int, float]:
    start = time.process_time()
    n = 0
    for _ in Trace(path=path, blocks=_file_blocks(path), fast=fast):
        n += 1
    return n, time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("logs", nargs="*")
    ap.add_argument("--calls", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ref = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    print(f"Python {sys.version.split()[0]} ({sys.executable}); sum(range(1000)) takes {ref:.1f} us here")
    with tempfile.TemporaryDirectory() as tmp:
        logs = args.logs or [record(args.calls, tmp)]
        for log in logs:
            with open(log, "rb") as f:
                nlines = sum(1 for _ in f)
            fast = [lines_per_second(log, True)[1] for _ in range(args.runs)]
            events, _ = lines_per_second(log, True)
            slow = lines_per_second(log, False)[1]
            print(f"{os.path.basename(log)}: {nlines} lines, {events} events")
            print(f"  fast path    {nlines / statistics.median(fast):>10,.0f} lines/s (CPU)")
            print(f"  full grammar {nlines / slow:>10,.0f} lines/s (CPU)")


if __name__ == "__main__":
    main()
