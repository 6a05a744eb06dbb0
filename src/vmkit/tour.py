"""A short tour of the layer: the same calls on a real isolated child and on the model kernel.

Map, write, read, protect, fault, lock, fork, mincore and maps — each step prints what the real
kernel answered and whether the model (``vmkit.sim``) answered exactly the same.  Every value comes
from the two backends at run time; nothing is canned.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TextIO

import vmkit
from vmkit import native, sim
from vmkit.flags import PAGE_SIZE
from vmkit.process import Process

RW = vmkit.PROT_READ | vmkit.PROT_WRITE
PRIVATE_ANON = vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS


def _outcome(call: Callable[[], object]) -> str:
    """A call's result as text: its value, its errno, or its fault."""
    try:
        value = call()
    except vmkit.Fault as fault:
        return f"{type(fault).__name__}: {fault}"
    except OSError as error:
        return f"OSError errno {error.errno} ({error.strerror})"
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes):
        return repr(list(value)) if len(value) <= 8 and set(value) <= {0, 1} else repr(value)
    return "ok" if value is None else str(value)


def steps(p: Process) -> list[tuple[str, str]]:
    """The tour's calls on one process: (what was done, what came back)."""
    out: list[tuple[str, str]] = []

    def step(what: str, call: Callable[[], object]) -> object:
        out.append((what, _outcome(call)))
        return None

    a = p.mmap(None, 4 * PAGE_SIZE, RW, PRIVATE_ANON)
    out.append(("mmap(NULL, 4 pages, RW, PRIVATE|ANONYMOUS)", hex(a)))
    step("mincore before any access", lambda: p.mincore(a, 4 * PAGE_SIZE))
    step("write b'hello, kernel' at page 0", lambda: p.write(a, b"hello, kernel"))
    step("read 1 byte of page 2 (maps the zero page)", lambda: p.read(a + 2 * PAGE_SIZE, 1))
    step("mincore after the write and the read", lambda: p.mincore(a, 4 * PAGE_SIZE))
    step("mprotect(page 1, PROT_READ)", lambda: p.mprotect(a + PAGE_SIZE, PAGE_SIZE, vmkit.PROT_READ))
    step("store to the read-only page", lambda: p.write(a + PAGE_SIZE, b"!"))
    step("load from address 0x10", lambda: p.read(0x10, 1))
    step("mprotect with an unknown prot bit (0x10)", lambda: p.mprotect(a, PAGE_SIZE, 0x10))
    step("mlock of the 4 pages", lambda: p.mlock(a, 4 * PAGE_SIZE))
    step("VmLck", lambda: p.status()["VmLck"])
    step("mincore after mlock (populated)", lambda: p.mincore(a, 4 * PAGE_SIZE))
    child = p.fork()
    step("fork; the child writes 'HELLO'", lambda: child.write(a, b"HELLO"))
    step("parent reads (copy-on-write)", lambda: p.read(a, 5))
    step("child reads", lambda: child.read(a, 5))
    child.kill(signal.SIGKILL)
    child.wait()
    step("munmap of page 2 (splits the mapping)", lambda: p.munmap(a + 2 * PAGE_SIZE, PAGE_SIZE))
    step("mremap page 3 to 2 pages, MAYMOVE",
         lambda: p.mremap(a + 3 * PAGE_SIZE, PAGE_SIZE, 2 * PAGE_SIZE, vmkit.MREMAP_MAYMOVE))
    step("brk(0)", lambda: p.brk(0))
    step("brk(+5 pages + 7)", lambda: p.brk(p.brk(0) + 5 * PAGE_SIZE + 7))
    out.append(("maps", "\n" + p.maps()))
    return out


def run(out: TextIO | None = None) -> int:
    """Runs the tour on both backends, printing the kernel's answers and the model's agreement.

    Returns 0 when the model agreed on every step, 1 otherwise.
    """

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with native.spawn() as real:
        say(f"A real child process ({real.pid}, ASLR off) and a model process (vmkit.sim) with the "
            "same starting layout run the same calls.\n")
        real_steps = steps(real)
    model = sim.Kernel().spawn()
    with model:
        model_steps = steps(model)
    agreed = 0
    for (what, answer), (_, modelled) in zip(real_steps, model_steps):
        same = answer == modelled
        agreed += same
        mark = "model agrees" if same else f"MODEL DIFFERS: {modelled}"
        say(f"{what:<48} {answer}   [{mark}]")
    say(f"\nThe model matched the kernel on {agreed} of {len(real_steps)} steps.")
    return 0 if agreed == len(real_steps) else 1
