"""mremap: resize, move, duplicate and multi-VMA moves of mappings (mm/mremap.c, Linux 6.18 shape).

The syscall layer of the model follows the 6.17+ ``mm/mremap.c`` (``do_mremap`` threading a
``vma_remap_struct``), with the 6.18 behaviour verified on our machines (kernel-rules.md §8, §8.1):

* ``check_mremap_params``: flags, alignment, ``new_len == 0`` and ``new_len > TASK_SIZE`` are EINVAL
  before any VMA is looked at; with FIXED/DONTUNMAP also a bad or overlapping ``new_addr``, a missing
  MAYMOVE, or DONTUNMAP with a size change.
* ``vrm_move_only`` (FIXED with ``old_len == new_len``): ``remap_move`` moves every VMA of the range,
  keeping the gaps between them; a gap at the start is EFAULT.
* otherwise ``check_prep_vma`` then ``mremap_to`` (FIXED/DONTUNMAP) or ``mremap_at`` (no-op, shrink in
  place, grow in place via ``vma_merge_extend``, or move to a ``get_unmapped_area`` address).
* ``move_vma``: ``copy_vma`` + ``move_page_tables`` (the page-table entries move, contents are never
  copied), ``vrm_stat_account(new_len)`` — which on 6.18 also adds to ``locked_vm`` for DONTUNMAP,
  leaving VmLck counted twice — then the source is unmapped, or with DONTUNMAP loses VM_LOCKED and
  (when wholly moved) its anon_vma.

VMA placement, merging, copying and page-table moves are engine operations of
:class:`vmkit.sim.mm.MemoryManager`; this module only decides which to call, in the kernel's order.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vmkit.errors import os_error
from vmkit.flags import PAGE_SIZE, TASK_SIZE
from vmkit.sim import abi
from vmkit.sim.sys_mmap import MASK64, page_align, populate
from vmkit.sim.vma import Vma
from vmkit.sim.vmflags import (
    VM_ACCOUNT, VM_DONTEXPAND, VM_HUGETLB, VM_LOCKED, VM_LOCKED_MASK, VM_MAYSHARE, VM_PFNMAP,
    VM_SEALED, VM_SHARED, VM_UFFD_MISSING, VM_UFFD_WP,
)
from vmkit.sim import anon

if TYPE_CHECKING:
    from vmkit.sim.kernel import Task

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4
#: The only huge page size of our machines' hugetlb VMAs (the model backs none).
HPAGE_SIZE = 2 << 20


@dataclass
class RemapState:
    """``struct vma_remap_struct``: the state threaded through one mremap call."""

    addr: int
    old_len: int
    new_len: int
    flags: int
    new_addr: int
    vma: Vma | None = None
    delta: int = 0
    #: "no_resize", "shrink" or "expand" (``enum mremap_type``).
    remap_type: str = ""
    populate_expand: bool = False

    @property
    def implies_new_addr(self) -> bool:
        """``vrm_implies_new_addr``: FIXED or DONTUNMAP always pick a target address."""
        return bool(self.flags & (MREMAP_FIXED | MREMAP_DONTUNMAP))

    @property
    def move_only(self) -> bool:
        """``vrm_move_only``: a FIXED move without resize, which may span several VMAs."""
        return bool(self.flags & MREMAP_FIXED) and self.old_len == self.new_len

    @property
    def overlaps(self) -> bool:
        """``vrm_overlaps``: do [addr, addr+old_len) and [new_addr, new_addr+new_len) intersect?
        The ends are unsigned longs: they wrap modulo 2**64, as in the kernel."""
        return (((self.addr + self.old_len) & MASK64) > self.new_addr
                and ((self.new_addr + self.new_len) & MASK64) > self.addr)


def sys_mremap(task: Task, addr: int, old_len: int, new_len: int, flags: int,
               new_addr: int) -> int:
    """``SYSCALL_DEFINE5(mremap)`` → ``do_mremap``: the new address of the mapping, or OSError."""
    vrm = RemapState(addr & MASK64, page_align(old_len & MASK64), page_align(new_len & MASK64),
                     flags & MASK64, new_addr & MASK64)
    check_mremap_params(task, vrm)
    if vrm.move_only:
        return remap_move(task, vrm)
    vrm.vma = task.mm.vma_lookup(vrm.addr)
    check_prep_vma(task, vrm)
    if vrm.implies_new_addr:
        res = mremap_to(task, vrm)
    else:
        res = mremap_at(task, vrm)
    if vrm.populate_expand:
        populate(task, vrm.new_addr + vrm.old_len, vrm.new_addr + vrm.old_len + vrm.delta)
    return res


def check_mremap_params(task: Task, vrm: RemapState) -> None:
    """``check_mremap_params``: checks made before any VMA is looked at, in the kernel's order —
    EINVAL for the arguments, then for FIXED/DONTUNMAP ENOMEM when ``map_count + 2 >=
    max_map_count - 3`` (observed on 6.18: an unmapped ``addr`` gets ENOMEM, not EFAULT, at that
    count; 6.12 made this check in ``mremap_to``)."""
    if vrm.flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        raise os_error(errno.EINVAL)
    if vrm.addr & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    if not vrm.new_len:
        raise os_error(errno.EINVAL)
    if vrm.new_len > TASK_SIZE:
        raise os_error(errno.EINVAL)
    if not vrm.implies_new_addr:
        return
    if vrm.new_addr > TASK_SIZE - vrm.new_len:
        raise os_error(errno.EINVAL)
    if vrm.new_addr & (PAGE_SIZE - 1):
        raise os_error(errno.EINVAL)
    if not vrm.flags & MREMAP_MAYMOVE:
        raise os_error(errno.EINVAL)
    if vrm.flags & MREMAP_DONTUNMAP and vrm.old_len != vrm.new_len:
        raise os_error(errno.EINVAL)
    if vrm.overlaps:
        raise os_error(errno.EINVAL)
    if task.mm.map_count + 2 >= task.kernel.max_map_count - 3:
        raise os_error(errno.ENOMEM)


def check_prep_vma(task: Task, vrm: RemapState) -> None:
    """``check_prep_vma``: the checks on the VMA at ``addr``.  Those after the first few apply only
    when the call maps new address space (growth, FIXED or DONTUNMAP)."""
    mm = task.mm
    vma = vrm.vma
    if vma is None:
        raise os_error(errno.EFAULT)
    if vma.flags & VM_SEALED:
        raise os_error(errno.EPERM)
    if vma.flags & VM_HUGETLB:
        align_hugetlb(vrm)
    vrm.delta = abs(vrm.old_len - vrm.new_len)
    vrm.remap_type = ("no_resize" if not vrm.delta
                      else "shrink" if vrm.old_len > vrm.new_len else "expand")
    if not vrm.implies_new_addr:
        vrm.new_addr = vrm.addr
    if vrm.remap_type != "expand" and not vrm.implies_new_addr:
        return
    old_len, new_len = vrm.old_len, vrm.new_len
    if not old_len and not vma.flags & (VM_SHARED | VM_MAYSHARE):
        raise os_error(errno.EINVAL)
    if vrm.flags & MREMAP_DONTUNMAP and vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise os_error(errno.EINVAL)
    if vrm.remap_type == "shrink":
        old_len = new_len
    if old_len > vma.end - vrm.addr:
        raise os_error(errno.EFAULT)
    if new_len == old_len:
        return
    if vma.flags & VM_LOCKED:
        vrm.populate_expand = True
    pgoff = vma.pgoff_at(vrm.addr)
    if pgoff + (new_len >> 12) > MASK64:
        raise os_error(errno.EINVAL)
    if vma.flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise os_error(errno.EFAULT)
    if vma.flags & VM_LOCKED and not task.mlock_ok(mm, vrm.delta >> 12):
        raise os_error(errno.EAGAIN)
    if not mm.may_expand_vm(vma.flags, vrm.delta >> 12):
        raise os_error(errno.ENOMEM)


def align_hugetlb(vrm: RemapState) -> None:
    """``align_hugetlb``: huge-page lengths and addresses; a hugetlb mapping never grows (EINVAL)."""
    mask = HPAGE_SIZE - 1
    vrm.old_len = (vrm.old_len + mask) & ~mask
    vrm.new_len = (vrm.new_len + mask) & ~mask
    if vrm.addr & mask or vrm.new_addr & mask or vrm.new_len > vrm.old_len:
        raise os_error(errno.EINVAL)


def mremap_at(task: Task, vrm: RemapState) -> int:
    """``mremap_at``: same size → nothing; shrink → unmap the tail in place; grow → ``expand_vma``."""
    if vrm.remap_type == "no_resize":
        return vrm.addr
    if vrm.remap_type == "shrink":
        do_munmap(task, vrm.addr + vrm.new_len, vrm.delta)
        return vrm.addr
    return expand_vma(task, vrm)


def expand_vma(task: Task, vrm: RemapState) -> int:
    """``expand_vma``: grow in place when [addr, addr+old_len) ends the VMA and the space after it
    is free (``vrm_can_expand_in_place``), else move with MAYMOVE, else ENOMEM."""
    vma = vrm.vma
    assert vma is not None
    if vma.end - vrm.addr == vrm.old_len and vma_expandable(task, vma, vrm.delta):
        expand_vma_in_place(task, vrm)
        return vrm.addr
    if not vrm.flags & MREMAP_MAYMOVE:
        raise os_error(errno.ENOMEM)
    set_new_addr(task, vrm)
    return move_vma(task, vrm)


def vma_expandable(task: Task, vma: Vma, delta: int) -> bool:
    """``vma_expandable``: nothing mapped in [vm_end, vm_end+delta) and ``get_unmapped_area`` with
    MAP_FIXED accepts the grown range (guard gaps are not checked)."""
    mm = task.mm
    end = vma.end + delta
    if end > MASK64:
        return False
    if mm.vmas.overlapping(vma.end, end):
        return False
    try:
        mm.get_unmapped_area(None, vma.start, end - vma.start, 0, abi.MAP_FIXED)
    except OSError:
        return False
    return True


def expand_vma_in_place(task: Task, vrm: RemapState) -> None:
    """``expand_vma_in_place``: charge, ``vma_merge_extend`` (ENOMEM if it refuses), account."""
    mm = task.mm
    vma = vrm.vma
    assert vma is not None
    calc_charge(task, vrm)
    merged = mm.vma_merge_extend(vma, vrm.delta)
    if merged is None:
        raise os_error(errno.ENOMEM)
    vrm.vma = merged
    stat_account(task, vrm, vrm.delta)


def mremap_to(task: Task, vrm: RemapState) -> int:
    """``mremap_to``: FIXED clears the target first; a shrink is done in place; then the (re-looked
    up) VMA moves to the chosen address.  (Its 6.12 map-count check is in check_mremap_params.)"""
    mm = task.mm
    if vrm.flags & MREMAP_FIXED:
        do_munmap(task, vrm.new_addr, vrm.new_len)
        vrm.vma = mm.vma_lookup(vrm.addr)
        if vrm.vma is None:
            raise os_error(errno.EFAULT)
    if vrm.remap_type == "shrink":
        do_munmap(task, vrm.addr + vrm.new_len, vrm.delta)
        vrm.vma = mm.vma_lookup(vrm.addr)
        if vrm.vma is None:
            raise os_error(errno.EFAULT)
        vrm.old_len = vrm.new_len
    if vrm.flags & MREMAP_DONTUNMAP and not mm.may_expand_vm(vrm.vma.flags, vrm.old_len >> 12):
        raise os_error(errno.ENOMEM)
    set_new_addr(task, vrm)
    return move_vma(task, vrm)


def set_new_addr(task: Task, vrm: RemapState) -> None:
    """``vrm_set_new_addr``: ``get_unmapped_area(file, hint, new_len, pgoff, flags)`` — MAP_FIXED
    for FIXED, MAP_SHARED for VM_MAYSHARE, the user's new_addr as hint only with FIXED/DONTUNMAP."""
    vma = vrm.vma
    assert vma is not None
    map_flags = 0
    if vrm.flags & MREMAP_FIXED:
        map_flags |= abi.MAP_FIXED
    if vma.flags & VM_MAYSHARE:
        map_flags |= abi.MAP_SHARED
    hint = vrm.new_addr if vrm.implies_new_addr else 0
    vrm.new_addr = task.mm.get_unmapped_area(vma.file, hint, vrm.new_len, vma.pgoff_at(vrm.addr),
                                             map_flags)


def calc_charge(task: Task, vrm: RemapState) -> None:
    """``vrm_calc_charge``: a VM_ACCOUNT mapping commits the growth (all of new_len with DONTUNMAP);
    ENOMEM when the overcommit policy refuses."""
    vma = vrm.vma
    assert vma is not None
    if not vma.flags & VM_ACCOUNT:
        return
    charged = vrm.new_len if vrm.flags & MREMAP_DONTUNMAP else vrm.delta
    if not task.kernel.vm_enough_memory(charged >> 12):
        raise os_error(errno.ENOMEM)


def stat_account(task: Task, vrm: RemapState, nbytes: int) -> None:
    """``vrm_stat_account``: total/data/exec/stack counters, and locked_vm for a VM_LOCKED VMA."""
    vma = vrm.vma
    assert vma is not None
    pages = nbytes >> 12
    task.mm.stat_account(vma.flags, pages)
    if vma.flags & VM_LOCKED:
        task.mm.locked_vm += pages


def move_vma(task: Task, vrm: RemapState) -> int:
    """``move_vma``: ``prep_move_vma``, charge, ``copy_vma`` + ``move_page_tables``, account
    new_len, then ``dontunmap_complete`` or ``unmap_source_vma``."""
    mm = task.mm
    vma = vrm.vma
    assert vma is not None
    # prep_move_vma
    if mm.map_count >= task.kernel.max_map_count - 3:
        raise os_error(errno.ENOMEM)
    if vma.special is not None and (vma.start != vrm.addr or vma.end != vrm.addr + vrm.old_len):
        raise os_error(errno.EINVAL)  # special_mapping_split: special mappings never split
    if vma.flags & (VM_UFFD_MISSING | VM_UFFD_WP):
        raise NotImplementedError("vmkit.sim does not model mremap of userfaultfd-registered VMAs")
    calc_charge(task, vrm)
    new_pgoff = vma.pgoff_at(vrm.addr)
    new_vma, vma = mm.copy_vma(vma, vrm.new_addr, vrm.new_len, new_pgoff)
    vrm.vma = vma
    mm.move_page_tables(vrm.addr, vrm.new_addr, vrm.old_len)
    stat_account(task, vrm, vrm.new_len)
    if vrm.flags & MREMAP_DONTUNMAP:
        dontunmap_complete(task, vrm, new_vma)
    elif vrm.old_len:
        # unmap_source_vma (old_len 0: do_vmi_munmap refuses an empty range; nothing to unmap)
        mm.munmap_range(vrm.addr, vrm.addr + vrm.old_len)
    return vrm.new_addr


def dontunmap_complete(task: Task, vrm: RemapState, new_vma: Vma) -> None:
    """``dontunmap_complete``: the kept source loses VM_LOCKED/VM_LOCKONFAULT (locked_vm is left
    as is); a wholly moved source drops its anon_vma and, if purely anonymous, its pgoff becomes
    ``vm_start >> 12`` (an unfaulted VMA's invariant)."""
    vma = vrm.vma
    assert vma is not None
    vma.flags &= ~VM_LOCKED_MASK
    if new_vma is not vma and vma.start == vrm.addr and vma.end == vrm.addr + vrm.old_len:
        anon.unlink_anon_vmas(vma)
        if vma.anonymous and vma.file is None:
            vma.pgoff = vma.start >> 12


def do_munmap(task: Task, start: int, length: int) -> None:
    """``do_munmap`` as mremap uses it: EINVAL for a bad range, EPERM over a sealed VMA, then
    ``do_vmi_munmap`` (holes ignored)."""
    if start & (PAGE_SIZE - 1) or start > TASK_SIZE or length > TASK_SIZE - start:
        raise os_error(errno.EINVAL)
    length = page_align(length)
    if not length:
        raise os_error(errno.EINVAL)
    mm = task.mm
    if any(v.flags & VM_SEALED for v in mm.vmas.overlapping(start, start + length)):
        raise os_error(errno.EPERM)
    mm.munmap_range(start, start + length)


def remap_move(task: Task, vrm: RemapState) -> int:
    """``remap_move`` (6.17+): a FIXED same-size move of every VMA in [addr, addr+old_len), partial
    ones split, the gaps between them kept at the destination.  A gap at the start is EFAULT; VMAs
    that forbid multi-VMA moves (userfaultfd-armed) are EFAULT unless alone in the range."""
    mm = task.mm
    start, end = vrm.addr, vrm.addr + vrm.old_len
    target = vrm.new_addr
    res: int | None = None
    last_end = 0
    cursor = start
    while True:
        vma = mm.vmas.find(cursor)
        if vma is None or vma.start >= end:
            break
        addr = max(vma.start, start)
        length = min(end, vma.end) - addr
        if res is None and start < vma.start:
            raise os_error(errno.EFAULT)
        offset = vma.start - last_end if res is not None else 0
        last_end = vma.end
        sub = RemapState(addr, length, length, vrm.flags, target + offset, vma)
        if vma.flags & (VM_UFFD_MISSING | VM_UFFD_WP):  # vma_multi_allowed
            if res is not None or vma.end < end:
                raise os_error(errno.EFAULT)
        check_prep_vma(task, sub)
        moved = mremap_to(task, sub)
        if res is None:
            res = moved
        target = moved + sub.new_len
        cursor = last_end
    if res is None:
        raise os_error(errno.EFAULT)
    return res


__all__ = ["MREMAP_DONTUNMAP", "MREMAP_FIXED", "MREMAP_MAYMOVE", "sys_mremap"]
