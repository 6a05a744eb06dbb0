"""Small readers of what a process shows: maps lines, smaps VmFlags, status figures."""

from __future__ import annotations

import pytest

from vmkit.maps import MapsLine, parse_maps  # noqa: F401  (re-exported for the tests)

from vmkit.process import Process


def vmas_in(proc: Process, lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(start, end, perms) of the VMAs overlapping [lo, hi)."""
    return [(m.start, m.end, m.perms) for m in parse_maps(proc.maps()) if m.end > lo and m.start < hi]


def vma_at(proc: Process, addr: int) -> MapsLine | None:
    """The maps line containing ``addr``, or None."""
    for m in parse_maps(proc.maps()):
        if m.start <= addr < m.end:
            return m
    return None


def smaps_of(proc: Process, addr: int) -> dict[str, str]:
    """The smaps fields of the VMA containing ``addr`` (``VmFlags`` as its text)."""
    current: dict[str, str] | None = None
    found: dict[str, str] | None = None
    for line in proc.smaps().splitlines():
        head = line.split(None, 1)[0]
        if "-" in head and ":" not in head:
            start, end = (int(x, 16) for x in head.split("-"))
            current = {}
            if start <= addr < end:
                found = current
            continue
        key, _, value = line.partition(":")
        if current is not None:
            current[key.strip()] = value.strip()
    if found is None:
        pytest.fail(f"no VMA contains {addr:#x}")
    return found


def vm_flags(proc: Process, addr: int) -> set[str]:
    """The VmFlags mnemonics (``rd wr mr ... lo``) of the VMA containing ``addr``."""
    return set(smaps_of(proc, addr)["VmFlags"].split())


def kb(text: str) -> int:
    """'1234 kB' -> 1234."""
    value, unit = text.split()
    assert unit == "kB", text
    return int(value)
