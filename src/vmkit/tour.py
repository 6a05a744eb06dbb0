"""A short tour of the layer on a real isolated child: map, write, protect, fault, lock, mincore, maps.

Every value printed comes from the kernel at run time; nothing is canned.
"""

from __future__ import annotations

import signal
from typing import TextIO

import vmkit
from vmkit import native
from vmkit.flags import PAGE_SIZE


def run(aslr: bool = False, out: TextIO | None = None) -> int:
    """Runs the tour in a fresh child, printing each step; returns the exit status (0)."""

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with native.spawn(aslr=aslr) as p:
        say(f"spawned child {p.pid} (ASLR {'on' if aslr else 'off'}); its address space:")
        say(p.maps())
        rw = vmkit.PROT_READ | vmkit.PROT_WRITE
        a = p.mmap(None, 4 * PAGE_SIZE, rw, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS)
        say(f"mmap(NULL, 4 pages, RW, PRIVATE|ANONYMOUS) = {a:#x}")
        say(f"mincore before any access:         {list(p.mincore(a, 4 * PAGE_SIZE))}")
        p.write(a, b"hello, kernel")
        p.read(a + 2 * PAGE_SIZE, 1)
        say(f"after a write to page 0, a read of page 2: {list(p.mincore(a, 4 * PAGE_SIZE))}"
            "  (the read mapped the shared zero page)")
        p.mprotect(a + PAGE_SIZE, PAGE_SIZE, vmkit.PROT_READ)
        say("mprotect(page 1, PROT_READ) splits the mapping:")
        say("".join(line + "\n" for line in p.maps().splitlines() if int(line.split("-")[0], 16) >= a
                    and int(line.split("-")[0], 16) < a + 4 * PAGE_SIZE))
        try:
            p.write(a + PAGE_SIZE, b"!")
        except vmkit.Fault as fault:
            say(f"a store to the read-only page faults: {fault}")
        try:
            p.read(0x10, 1)
        except vmkit.Fault as fault:
            say(f"a load from address 0x10 faults:      {fault}")
        p.mlock(a, 4 * PAGE_SIZE)
        say(f"mlock of the 4 pages: VmLck = {p.status()['VmLck']}, resident = "
            f"{list(p.mincore(a, 4 * PAGE_SIZE))}")
        child = p.fork()
        child.write(a, b"HELLO")
        say(f"fork; the child writes 'HELLO': parent reads {p.read(a, 5)!r}, child reads "
            f"{child.read(a, 5)!r} (copy-on-write)")
        child.kill(signal.SIGKILL)
        child.wait()
        try:
            p.mprotect(a, PAGE_SIZE, 0x10)
        except OSError as error:
            say(f"mprotect with an unknown prot bit: {type(error).__name__} errno {error.errno}")
        say(f"brk(0) = {p.brk(0):#x}")
    return 0
