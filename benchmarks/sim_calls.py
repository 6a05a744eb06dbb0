"""Per-call cost of the model kernel (vmkit.sim) with few and with many VMAs, next to the native child.

Run: ``PYTHONPATH=src python3 benchmarks/sim_calls.py [--batches N] [--calls N] [--many N] [--no-native]``

Each process gets its VMAs from 1-page ``MAP_FIXED`` anonymous mappings separated by 1-page gaps in
an arena at 0x200000000 (so none merge), on top of the fresh-child layout; the calls then work on a
few VMAs of their own at 0x300000000.  A figure is the median over batches of the time of one batch
(``time.perf_counter_ns``) divided by the calls in it.  The sim runs with
``Kernel(check_invariants=False)``.  The last column is sim / native for the same VMA count (each
native call is a ptrace round trip to another process).  The memory figure is what ``tracemalloc``
sees allocated while the sim's arena VMAs are made.

Timings on shared 2-vCPU machines are noisy: read medians, not single runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from collections.abc import Callable

import vmkit
from vmkit import native, sim
from vmkit.process import Process

PAGE = vmkit.PAGE_SIZE
R = vmkit.PROT_READ
RW = vmkit.PROT_READ | vmkit.PROT_WRITE
PRIVATE_ANON = vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS
FIXED = vmkit.MAP_FIXED
ARENA = 0x200000000
WORK = 0x300000000


def fill(p: Process, n: int) -> None:
    """``n`` 1-page VMAs with 1-page gaps from ARENA."""
    for i in range(n):
        p.mmap(ARENA + 2 * i * PAGE, PAGE, RW, PRIVATE_ANON | FIXED)


def cases(p: Process) -> list[tuple[str, Callable[[int], None]]]:
    """The timed loop bodies, each leaving the process as it found it."""
    fixed_at = WORK
    split = WORK + 4 * PAGE  # a 3-page VMA whose middle page is reprotected
    page = WORK + 10 * PAGE  # a faulted 1-page VMA
    p.mmap(fixed_at, PAGE, RW, PRIVATE_ANON | FIXED)
    p.mmap(split, 3 * PAGE, RW, PRIVATE_ANON | FIXED)
    p.mmap(page, PAGE, RW, PRIVATE_ANON | FIXED)
    p.write(page, b"vmkit!!!")
    data = b"12345678"
    normal = int(vmkit.MADV_NORMAL)

    def mmap_munmap(n: int) -> None:
        for _ in range(n):
            p.munmap(p.mmap(None, PAGE, RW, PRIVATE_ANON), PAGE)

    def mmap_fixed(n: int) -> None:
        for _ in range(n):
            p.mmap(fixed_at, PAGE, RW, PRIVATE_ANON | FIXED)

    def mprotect(n: int) -> None:
        for _ in range(n):
            p.mprotect(split + PAGE, PAGE, R)
            p.mprotect(split + PAGE, PAGE, RW)

    def madvise(n: int) -> None:
        for _ in range(n):
            p.madvise(page, PAGE, normal)

    def mincore(n: int) -> None:
        for _ in range(n):
            p.mincore(page, PAGE)

    def read(n: int) -> None:
        for _ in range(n):
            p.read(page, 8)

    def write(n: int) -> None:
        for _ in range(n):
            p.write(page, data)

    def brk(n: int) -> None:
        for _ in range(n):
            p.brk(0)

    return [
        ("mmap(NULL) 1 page + munmap", mmap_munmap),
        ("mmap MAP_FIXED 1 page (replaces)", mmap_fixed),
        ("mprotect mid page R + back RW", mprotect),
        ("madvise(MADV_NORMAL) 1 page", madvise),
        ("mincore 1 page", mincore),
        ("read 8 bytes", read),
        ("write 8 bytes", write),
        ("brk(0)", brk),
    ]


def measure(p: Process, batches: int, calls: int) -> dict[str, float]:
    """µs per call of each case: median over ``batches`` batches of ``calls`` (after a warm-up)."""
    out = {}
    for name, body in cases(p):
        body(calls)
        times = []
        for _ in range(batches):
            t0 = time.perf_counter_ns()
            body(calls)
            times.append(time.perf_counter_ns() - t0)
        out[name] = statistics.median(times) / calls / 1000
    return out


def sim_memory(n: int) -> tuple[int, int]:
    """(bytes traced while ``n`` VMAs were added to a sim process, the traced peak)."""
    kernel = sim.Kernel(check_invariants=False)
    p = kernel.spawn()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fill(p, n)
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    p.terminate()
    return after - before, peak - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=15)
    ap.add_argument("--calls", type=int, default=200, help="calls per batch on the sim")
    ap.add_argument("--native-calls", type=int, default=50, help="calls per batch on the native child")
    ap.add_argument("--few", type=int, default=10)
    ap.add_argument("--many", type=int, default=60_000)
    ap.add_argument("--no-native", action="store_true")
    args = ap.parse_args()

    results: dict[tuple[str, int], dict[str, float]] = {}
    for count in (args.few, args.many):
        p = sim.Kernel(check_invariants=False).spawn()
        t0 = time.perf_counter()
        fill(p, count)
        build = time.perf_counter() - t0
        print(f"sim: {count} VMAs made in {build:.2f} s ({build / count * 1e6:.1f} µs per mmap)", flush=True)
        results[("sim", count)] = measure(p, args.batches, args.calls)
        p.terminate()
        if not args.no_native:
            with native.spawn() as q:
                fill(q, count)
                results[("native", count)] = measure(q, args.batches, args.native_calls)

    few, many = args.few, args.many
    names = list(results[("sim", few)])
    native_cols = not args.no_native
    head = f"{'call':34} {'sim ' + str(few):>10} {'sim ' + str(many):>11} {'many/few':>8}"
    if native_cols:
        head += f" {'nat ' + str(few):>10} {'nat ' + str(many):>11} {'sim/nat ' + str(few):>10} {'sim/nat ' + str(many):>13}"
    print("\nµs per call (median of batches)")
    print(head)
    for name in names:
        s1, s2 = results[("sim", few)][name], results[("sim", many)][name]
        line = f"{name:34} {s1:10.1f} {s2:11.1f} {s2 / s1:8.2f}"
        if native_cols:
            n1, n2 = results[("native", few)][name], results[("native", many)][name]
            line += f" {n1:10.1f} {n2:11.1f} {s1 / n1:10.2f} {s2 / n2:13.2f}"
        print(line)
    size, peak = sim_memory(many)
    print(f"\nsim memory for {many} VMAs: {size / 2**20:.1f} MiB retained ({size / many:.0f} B per VMA), "
          f"peak {peak / 2**20:.1f} MiB (tracemalloc)")


if __name__ == "__main__":
    main()
