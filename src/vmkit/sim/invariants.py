"""Consistency checks of the model's state, run after calls when ``Kernel(check_invariants=True)``.

After every call while address spaces are small; once they are large, :func:`check_counters` (O(1))
after every call and the full :func:`check_kernel` periodically (``vmkit.sim.process._checked``).

What must always hold (gVisor's mm tests check the same kind of thing):

* VMAs are sorted, non-empty, page-aligned, non-overlapping and inside the user address space;
* ``map_count`` is the number of VMAs; ``total_vm``, ``data_vm``, ``exec_vm``, ``stack_vm`` and
  ``locked_vm`` equal the figures recomputed from the VMAs (``vm_stat_account``);
* every page-table entry lies inside a VMA and names a live frame; a VMA's anon_vma is in its chain;
* every frame's map count equals the number of page-table entries, over all processes, that map it;
* the indexes are sound: the VMA set's gap bounds cover its gaps, the page table's per-block
  entry counts are exact;
* each page cache's large folios and PG_readahead marks are consistent with its pages.

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
    from vmkit.sim.fs import Inode
    from vmkit.sim.kernel import Kernel


class InvariantError(AssertionError):
    """The model's state is inconsistent: a bug in vmkit.sim, with what was found."""


def check_mm(mm: MemoryManager) -> Counter[int]:
    """Checks one address space; returns how many entries map each frame."""
    recomputed = MemoryManager.__new__(MemoryManager)
    recomputed.total_vm = recomputed.data_vm = recomputed.exec_vm = recomputed.stack_vm = 0
    locked = 0
    previous_end = 0
    # pages per distinct flags value: the engine's own vm_stat_account runs once per value, not
    # once per VMA (this walk is the checker's cost with 65,530 VMAs)
    pages_by_flags: dict[int, int] = {}
    for vma in mm.vmas:
        start, end, flags = vma.start, vma.end, vma.flags
        if start & 0xFFF or end & 0xFFF or start >= end:
            raise InvariantError(f"malformed VMA {vma!r}")
        if start < previous_end:
            raise InvariantError(f"VMA {vma!r} overlaps or is out of order")
        if end > 1 << 47:
            raise InvariantError(f"VMA {vma!r} is beyond the user address space")
        if vma.anon_vma is not None and vma.anon_vma not in vma.chain:
            raise InvariantError(f"VMA {vma!r} has an anon_vma outside its chain")
        previous_end = end
        pages_by_flags[flags] = pages_by_flags.get(flags, 0) + ((end - start) >> 12)
    for flags, pages in pages_by_flags.items():
        MemoryManager.stat_account(recomputed, flags, pages)
        if flags & VM_LOCKED:
            locked += pages
    for name in ("total_vm", "data_vm", "exec_vm", "stack_vm"):
        if getattr(mm, name) != getattr(recomputed, name):
            raise InvariantError(f"{name} is {getattr(mm, name)}, recomputed {getattr(recomputed, name)}")
    if mm.locked_vm < locked:
        raise InvariantError(f"locked_vm {mm.locked_vm} is below the locked VMAs' {locked} pages")
    stale = mm.vmas.stale_index()
    if stale:
        raise InvariantError(f"the VMA gap index understates the gaps of sublists {stale}")
    if hasattr(mm.pt, "blocks_exact") and not mm.pt.blocks_exact():
        raise InvariantError("the page table's per-block entry counts are wrong")
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


def check_counters(mm: MemoryManager) -> None:
    """The O(1) part of :func:`check_mm`, cheap enough for every call however many VMAs there are:
    no counter is negative, and the exec, stack and data pages (disjoint classes of
    ``vm_stat_account``) fit in ``total_vm``."""
    total, data, exec_, stack = mm.total_vm, mm.data_vm, mm.exec_vm, mm.stack_vm
    if min(total, data, exec_, stack, mm.locked_vm) < 0:
        raise InvariantError(f"negative counter: total_vm {total} data_vm {data} exec_vm {exec_} "
                             f"stack_vm {stack} locked_vm {mm.locked_vm}")
    if data + exec_ + stack > total:
        raise InvariantError(f"data_vm {data} + exec_vm {exec_} + stack_vm {stack} exceed total_vm {total}")
    if not len(mm.vmas) and total:
        raise InvariantError(f"total_vm is {total} without any VMA")


def check_page_cache(inode: Inode) -> None:
    """The page cache's folio records: each large folio covers cached pages that all name it as
    their head, no page names a head that is not a folio, and PG_readahead marks sit on cached
    folio heads."""
    for head, nr in inode.folios.items():
        for index in range(head, head + nr):
            if inode.folio_head.get(index) != head or index not in inode.cache:
                raise InvariantError(f"{inode.path}: page {index} of folio {head}+{nr} is not part of it")
    for index, head in inode.folio_head.items():
        if head not in inode.folios:
            raise InvariantError(f"{inode.path}: page {index} names folio {head}, which is not one")
    for index in inode.ra_marks:
        if index not in inode.cache or inode.folio_of(index)[0] != index:
            raise InvariantError(f"{inode.path}: PG_readahead on {index}, not a cached folio head")


def check_kernel(kernel: Kernel) -> None:
    """Checks every live address space, the page caches and the frames' map counts."""
    maps: Counter[int] = Counter()
    inodes = {id(inode): inode for inode in kernel.fs.entries.values()}
    for task in kernel.tasks.values():
        inodes.update((id(v.file.inode), v.file.inode) for v in task.mm.vmas if v.file is not None)
    for inode in inodes.values():
        check_page_cache(inode)
    for task in kernel.tasks.values():
        maps.update(check_mm(task.mm))
    frames = pool()
    for frame, count in maps.items():
        if frames.mapcount[frame] < count:
            raise InvariantError(f"frame {frame} is mapped {count} times but counts {frames.mapcount[frame]}")
