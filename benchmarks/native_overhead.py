"""What vmkit.native costs on top of the bare ctypes call, and how fast the isolated child answers.

Run: ``PYTHONPATH=src python3 benchmarks/native_overhead.py [--batches N] [--calls N]``

Part 1 times each in-process wrapper of :mod:`vmkit.native` against a raw baseline: a ctypes
function object of our own, taken from ``ctypes.CDLL(None, use_errno=True)[name]`` with exactly the
``argtypes`` / ``restype`` that vmkit's binding uses, called with the same arguments (buffers and
iovec arrays the raw call needs are built once, outside the timing, as C code would).  Each figure is
the median over >= 200 batches of 200 calls (``time.perf_counter_ns`` around each batch, wrapper and
raw batches interleaved), divided by the batch size.  A ratio above 1.1 is flagged.

Part 2 measures the round-trip rate of a :func:`vmkit.native.spawn` child (each call is a ptrace
stop/resume of another process): medians over batches, reported as µs per call and operations/s.

Timings on shared 2-vCPU machines are noisy (machine-facts §2, §16): read medians, not single runs.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import time
from collections.abc import Callable

import vmkit
from vmkit import native
from vmkit.native import _libc

PAGE = vmkit.PAGE_SIZE
RW = vmkit.PROT_READ | vmkit.PROT_WRITE
PRIVATE_ANON = vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS
FLAG_ABOVE = 1.1

_own_libc = ctypes.CDLL(None, use_errno=True)


def raw(name: str) -> Callable[..., int]:
    """Our own ctypes function for ``name``, typed exactly like vmkit's binding of it."""
    theirs = getattr(_libc, name)
    if not hasattr(theirs, "argtypes"):
        raise SystemExit(f"vmkit binds {name} through syscall(); no like-for-like ctypes baseline")
    fn = _own_libc[name]
    fn.argtypes = list(theirs.argtypes)
    fn.restype = theirs.restype
    assert fn is not theirs
    return fn  # type: ignore[no-any-return]


def batch_ns(body: Callable[[int], None], calls: int) -> int:
    t0 = time.perf_counter_ns()
    body(calls)
    return time.perf_counter_ns() - t0


def compare(wrapped: Callable[[int], None], bare: Callable[[int], None], batches: int,
            calls: int) -> tuple[float, float]:
    """Median ns per call of the two loop bodies, batches interleaved (after one warm-up each)."""
    wrapped(calls)
    bare(calls)
    w, b = [], []
    for _ in range(batches):
        w.append(batch_ns(wrapped, calls))
        b.append(batch_ns(bare, calls))
    return statistics.median(w) / calls, statistics.median(b) / calls


def in_process(batches: int, calls: int) -> list[tuple[str, float, float]]:
    m = native.Mapping(2 * PAGE)
    m[0:8] = b"vmkit!!!"
    addr = m.address
    pid = os.getpid()
    rows = []

    mprotect = raw("mprotect")
    nmprotect = native.mprotect

    def w_mprotect(n: int) -> None:
        for _ in range(n):
            nmprotect(addr, PAGE, RW)

    def r_mprotect(n: int) -> None:
        for _ in range(n):
            mprotect(addr, PAGE, RW)

    rows.append(("mprotect 1 page, prot unchanged", *compare(w_mprotect, r_mprotect, batches, calls)))

    mmap_, munmap = raw("mmap"), raw("munmap")
    nmmap, nmunmap = native.mmap, native.munmap

    def w_mmap(n: int) -> None:
        for _ in range(n):
            nmunmap(nmmap(None, PAGE, RW, PRIVATE_ANON), PAGE)

    def r_mmap(n: int) -> None:
        for _ in range(n):
            munmap(mmap_(None, PAGE, RW, PRIVATE_ANON, -1, 0), PAGE)

    rows.append(("mmap + munmap 1 page", *compare(w_mmap, r_mmap, batches, calls)))

    madvise = raw("madvise")
    nmadvise, normal = native.madvise, int(vmkit.MADV_NORMAL)

    def w_madvise(n: int) -> None:
        for _ in range(n):
            nmadvise(addr, PAGE, normal)

    def r_madvise(n: int) -> None:
        for _ in range(n):
            madvise(addr, PAGE, normal)

    rows.append(("madvise(MADV_NORMAL) 1 page", *compare(w_madvise, r_madvise, batches, calls)))

    mincore = raw("mincore")
    nmincore = native.mincore
    vec = ctypes.create_string_buffer(1)

    def w_mincore(n: int) -> None:
        for _ in range(n):
            nmincore(addr, PAGE)

    def r_mincore(n: int) -> None:
        for _ in range(n):
            mincore(addr, PAGE, vec)

    rows.append(("mincore 1 page", *compare(w_mincore, r_mincore, batches, calls)))

    readv = raw("process_vm_readv")
    nreadv = native.process_vm_readv
    local = ctypes.create_string_buffer(PAGE)
    local_addr = ctypes.addressof(local)
    liov = (ctypes.c_uint64 * 2)(local_addr, PAGE)
    riov = (ctypes.c_uint64 * 2)(addr, PAGE)
    local_pairs, remote_pairs = [(local_addr, PAGE)], [(addr, PAGE)]

    def w_readv(n: int) -> None:
        for _ in range(n):
            nreadv(pid, local_pairs, remote_pairs)

    def r_readv(n: int) -> None:
        for _ in range(n):
            readv(pid, liov, 1, riov, 1, 0)

    rows.append(("process_vm_readv 1 page, self", *compare(w_readv, r_readv, batches, calls)))

    nread = native.read

    def w_read(n: int) -> None:
        for _ in range(n):
            nread(addr, PAGE)

    rows.append(("read() 1 page vs raw readv", *compare(w_read, r_readv, batches, calls)))
    m.close()
    return rows


def child_rates(batches: int, calls: int) -> list[tuple[str, float]]:
    rows = []
    with native.spawn() as p:
        a = p.mmap(None, PAGE, RW, PRIVATE_ANON)
        data = b"12345678"
        ops: list[tuple[str, Callable[[], object]]] = [
            ("p.mprotect 1 page", lambda: p.mprotect(a, PAGE, RW)),
            ("p.brk(0)", lambda: p.brk(0)),
            ("p.read 8 bytes", lambda: p.read(a, 8)),
            ("p.write 8 bytes", lambda: p.write(a, data)),
        ]
        for name, op in ops:
            def body(n: int, op: Callable[[], object] = op) -> None:
                for _ in range(n):
                    op()

            body(calls)
            samples = [batch_ns(body, calls) / calls for _ in range(batches)]
            rows.append((name, statistics.median(samples)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per figure (default 200)")
    parser.add_argument("--calls", type=int, default=200, help="calls per batch (default 200)")
    parser.add_argument("--child-batches", type=int, default=100)
    parser.add_argument("--child-calls", type=int, default=100)
    args = parser.parse_args(argv)

    print(f"vmkit.native overhead — Python {sys.version.split()[0]}, "
          f"median of {args.batches} batches x {args.calls} calls\n")
    rows = in_process(args.batches, args.calls)
    width = max(len(r[0]) for r in rows)
    print(f"{'call':<{width}}  {'vmkit ns':>9}  {'raw ns':>9}  {'ratio':>6}")
    print(f"{'-' * width}  {'-' * 9}  {'-' * 9}  {'-' * 6}")
    flagged = []
    for name, wrapped, bare in rows:
        ratio = wrapped / bare
        mark = f"  > {FLAG_ABOVE}" if ratio > FLAG_ABOVE else ""
        if mark:
            flagged.append(name)
        print(f"{name:<{width}}  {wrapped:>9.0f}  {bare:>9.0f}  {ratio:>6.2f}{mark}")
    print(f"\n{len(flagged)} of {len(rows)} wrappers cost more than {FLAG_ABOVE}x the raw call"
          + (f": {', '.join(flagged)}" if flagged else ""))

    print(f"\nisolated child (vmkit.native.spawn) — median of {args.child_batches} batches x "
          f"{args.child_calls} calls\n")
    crow = child_rates(args.child_batches, args.child_calls)
    width = max(len(r[0]) for r in crow)
    print(f"{'operation':<{width}}  {'us/call':>8}  {'ops/s':>8}")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 8}")
    for name, ns in crow:
        print(f"{name:<{width}}  {ns / 1000:>8.1f}  {1e9 / ns:>8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
