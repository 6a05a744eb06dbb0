"""Consistency checks of the model's state, run after every call when ``Kernel(check_invariants=True)``.

What must always hold (gVisor's mm tests check the same kind of thing):

* VMAs are sorted, non-empty, page-aligned, non-overlapping and inside the user address space;
* ``map_count`` is the number of VMAs; ``total_vm``, ``data_vm``, ``exec_vm``, ``stack_vm`` and
  ``locked_vm`` equal the figures recomputed from the VMAs (``vm_stat_account``);
* every page-table entry lies inside a VMA and names a live frame; a VMA's anon_vma is in its chain;
* every frame's map count equals the number of page-table entries, over all processes, that map it.

Not checked: "maximally merged".  Linux itself leaves mergeable neighbours apart (fork children,
moves of faulted VMAs), so only the differential tests against the real kernel can judge merging.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim.mm import GUARD, MemoryManager
from vmkit.sim.vmflags import VM_LOCKED

if TYPE_CHECKING:
    from vmkit.sim.kernel import Kernel


class InvariantError(AssertionError):
    """The model's state is inconsistent: a bug in vmkit.sim, with what was found."""


def check_mm(mm: MemoryManager) -> Counter[int]:
    """Checks one address space; returns how many entries map each frame."""
    recomputed = MemoryManager.__new__(MemoryManager)
    recomputed.total_vm = recomputed.data_vm = recomputed.exec_vm = recomputed.stack_vm = 0
    locked = 0
    previous_end = 0
    for vma in mm.vmas:
        if vma.start & 0xFFF or vma.end & 0xFFF or vma.start >= vma.end:
            raise InvariantError(f"malformed VMA {vma!r}")
        if vma.start < previous_end:
            raise InvariantError(f"VMA {vma!r} overlaps or is out of order")
        if vma.end > 1 << 47:
            raise InvariantError(f"VMA {vma!r} is beyond the user address space")
        if vma.anon_vma is not None and vma.anon_vma not in vma.chain:
            raise InvariantError(f"VMA {vma!r} has an anon_vma outside its chain")
        previous_end = vma.end
        MemoryManager.stat_account(recomputed, vma.flags, vma.pages)
        if vma.flags & VM_LOCKED:
            locked += vma.pages
    for name in ("total_vm", "data_vm", "exec_vm", "stack_vm"):
        if getattr(mm, name) != getattr(recomputed, name):
            raise InvariantError(f"{name} is {getattr(mm, name)}, recomputed {getattr(recomputed, name)}")
    if mm.locked_vm < locked:
        raise InvariantError(f"locked_vm {mm.locked_vm} is below the locked VMAs' {locked} pages")
    maps: Counter[int] = Counter()
    frames = pool()
    for vpn, pte in mm.pt.items():
        if mm.vma_lookup(vpn << 12) is None:
            raise InvariantError(f"page-table entry at {vpn << 12:#x} outside every VMA")
        if pte == GUARD:
            continue
        frame = pte >> 2
        if frame != ZERO_FRAME:
            if frames.refs[frame] <= 0:
                raise InvariantError(f"page at {vpn << 12:#x} maps freed frame {frame}")
            maps[frame] += 1
    return maps


def check_kernel(kernel: Kernel) -> None:
    """Checks every live address space and the frames' map counts."""
    maps: Counter[int] = Counter()
    for task in kernel.tasks.values():
        maps.update(check_mm(task.mm))
    frames = pool()
    for frame, count in maps.items():
        if frames.mapcount[frame] < count:
            raise InvariantError(f"frame {frame} is mapped {count} times but counts {frames.mapcount[frame]}")
