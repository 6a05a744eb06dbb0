"""The address-space engine: one ``mm_struct`` — VMAs, page table, counters — and the rules that move them.

It never sees raw syscall flags or checks arguments (that is the syscall layer's job); it offers the
kernel's internal operations: choose an address (``get_unmapped_area``), create a VMA merging with its
neighbours (``vma_merge_new_range``), change attributes of a range splitting and merging
(``vma_modify``), unmap a range (``do_vmi_munmap``), fault pages in (``handle_mm_fault``), grow the
stack, and duplicate itself for fork (``dup_mmap``).  Page contents live in the frames of
:mod:`vmkit.sim.frames`; the page table maps page numbers to page-table entries:

* ``(frame << 2) | PTE_WRITE? | PTE_ANON?``: a present page; PTE_ANON marks a frame owned by
  page tables (anonymous or a private copy), otherwise the frame is a page-cache page;
* frame 0 is the shared zero page;
* :data:`GUARD`: a guard marker (MADV_GUARD_INSTALL).
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from vmkit.errors import BusError, SegmentationFault, os_error
from vmkit.flags import PAGE_SIZE
from vmkit.sim import abi
from vmkit.sim import anon
from vmkit.sim.anon import AnonVma, anon_vmas_mergeable, is_mergeable_anon_vma
from vmkit.sim.filemap import file_fault
from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim.fs import Inode, OpenFile
from vmkit.sim.pagetable import PageTable
from vmkit.sim import thp
from vmkit.sim.vma import Vma, VmaSet
from vmkit.sim.vmflags import (
    VM_MAYBE_GUARD, VM_MIXEDMAP, VM_PFNMAP,
    VM_EXEC, VM_GROWSDOWN, VM_HUGETLB, VM_IGNORE_MERGE, VM_LOCKED, VM_LOCKED_MASK,
    VM_READ, VM_SHARED, VM_SPECIAL, VM_STACK, VM_WRITE,
)

if TYPE_CHECKING:
    from vmkit.sim.kernel import Kernel

PTE_WRITE = 1
PTE_ANON = 2
GUARD = -1
PAGE_MASK = ~(PAGE_SIZE - 1)
PMD_SIZE = 2 << 20
DEFAULT_MAP_WINDOW = (1 << 47) - PAGE_SIZE
VM_STARTGAP_FLAGS = VM_GROWSDOWN
MMAP_32BIT_BASE, MMAP_32BIT_END = 0x40000000, 0x80000000
#: Addresses that are not canonical with 4-level paging: an access is a #GP (SIGSEGV, SI_KERNEL).
NON_CANONICAL_START, NON_CANONICAL_END = 1 << 47, (1 << 64) - (1 << 47)
SI_KERNEL = 0x80


def pte_frame(pte: int) -> int:
    return pte >> 2


class MemoryManager:
    """``struct mm_struct`` of one process."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.vmas = VmaSet()
        self.pt: dict[int, int] = PageTable()
        self.total_vm = 0
        self.locked_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        self.def_flags = 0
        self.start_brk = 0
        self.brk = 0
        self.start_stack = 0
        #: ``start_code``/``end_code``: the executable's text (set by exec; VmExe in status).
        self.start_code = 0
        self.end_code = 0
        self.mmap_base = kernel.mmap_base()
        self.mmap_legacy_base = kernel.mmap_legacy_base()
        self.topdown = not kernel.legacy_va_layout
        #: ``[vsyscall]`` shown in maps (not a VMA).
        self.vsyscall = True
        #: The owning task's limits and credentials, consulted by may_expand_vm & co.
        self.task: object = None
        #: Blocks of 512 pages (one PTE table each) whose table exists but holds no entry: Linux
        #: keeps a table that zapping emptied until ``free_pgtables`` (munmap) or the PT_RECLAIM
        #: of a MADV_DONTNEED covering the whole block frees it.
        self.empty_tables: set[int] = set()
        #: Blocks mapped by one PMD of an anonymous THP (its folio in :data:`HUGE_PMDS`), and blocks
        #: mapped by the huge zero page (512 zero-page entries): see :mod:`vmkit.sim.thp`.
        self.pmd_mapped: set[int] = set()
        self.huge_zero: set[int] = set()

    @property
    def map_count(self) -> int:
        return len(self.vmas)

    # --- accounting (vm_stat_account) ---------------------------------------------------------

    def stat_account(self, flags: int, npages: int) -> None:
        """``vm_stat_account`` (mm/mmap.c): total, exec, stack and data counters."""
        self.total_vm += npages
        if flags & (VM_EXEC | VM_WRITE | VM_STACK) == VM_EXEC:
            self.exec_vm += npages
        elif flags & VM_STACK:
            self.stack_vm += npages
        elif flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE:
            self.data_vm += npages

    def account_vma(self, vma: Vma, sign: int) -> None:
        self.stat_account(vma.flags, sign * vma.pages)
        if vma.flags & VM_LOCKED:
            self.locked_vm += sign * vma.pages

    # --- lookup ---------------------------------------------------------------------------------

    def find_vma(self, addr: int) -> Vma | None:
        return self.vmas.find(addr)

    def vma_lookup(self, addr: int) -> Vma | None:
        return self.vmas.lookup(addr)

    def vm_start_gap(self, vma: Vma) -> int:
        """``vm_start_gap``: a GROWSDOWN VMA reserves ``stack_guard_gap`` below itself."""
        start = vma.start
        if vma.flags & VM_GROWSDOWN:
            start -= self.kernel.stack_guard_gap
            if start > vma.start:
                start = 0
        return max(start, 0)

    # --- placement (mm/mmap.c, arch/x86/kernel/sys_x86_64.c) -----------------------------------

    def _gaps_bottomup(self, low: int, high: int) -> Iterator[tuple[int, int]]:
        """Free ranges [a, b) within [low, high), lowest first."""
        bottom = low
        for vma in self.vmas.ascending_from(low):
            if vma.start > bottom:
                b = min(vma.start, high)
                if bottom < b:
                    yield bottom, b
            bottom = max(bottom, vma.end)
            if bottom >= high:
                return
        if bottom < high:
            yield bottom, high

    def unmapped_area_topdown(self, length: int, low: int, high: int, align_mask: int = 0,
                              align_offset: int = 0) -> int:
        """``unmapped_area_topdown``: the highest fit below ``high``, keeping guard gaps."""
        need = length + align_mask
        low = max(low, self.kernel.min_addr)
        while True:
            # the highest free range that fits (the top-down walk), from the gap index
            found = self.vmas.highest_gap(low, high, max(need, 1))
            if found is None:
                raise os_error(errno.ENOMEM)
            a, b = found
            gap = b - length
            gap -= (gap - align_offset) & align_mask
            nxt = self.vmas.find(b)
            if nxt is not None and nxt.flags & VM_STARTGAP_FLAGS:
                if self.vm_start_gap(nxt) < b:
                    high = self.vm_start_gap(nxt)
                    continue
            return gap

    def unmapped_area(self, length: int, low: int, high: int, align_mask: int = 0,
                      align_offset: int = 0) -> int:
        """``unmapped_area``: the lowest fit above ``low``, keeping guard gaps."""
        need = length + align_mask
        low = max(low, self.kernel.min_addr)
        while True:
            for a, b in self._gaps_bottomup(low, high):
                if b - a >= need:
                    break
            else:
                raise os_error(errno.ENOMEM)
            gap = a + ((align_offset - a) & align_mask)
            nxt = self.vmas.find(a)
            if nxt is not None and nxt.flags & VM_STARTGAP_FLAGS:
                if self.vm_start_gap(nxt) < gap + need - 1:
                    low = nxt.end
                    continue
            return gap

    def _hint_fits(self, addr: int, length: int) -> bool:
        vma = self.find_vma(addr)
        return vma is None or addr + length <= self.vm_start_gap(vma)

    def arch_get_unmapped_area(self, addr: int, length: int, flags: int, align_mask: int = 0) -> int:
        """x86 ``arch_get_unmapped_area`` (bottom-up; MAP_32BIT's window); ``align_mask`` is
        ``get_align_mask`` of a hugetlbfs file (its huge page size - 1)."""
        if flags & abi.MAP_FIXED:
            return addr
        if flags & abi.MAP_32BIT:
            begin, end = MMAP_32BIT_BASE, MMAP_32BIT_END
        else:
            begin, end = self.mmap_legacy_base, DEFAULT_MAP_WINDOW
        if length > end:
            raise os_error(errno.ENOMEM)
        if addr:
            addr = (addr + PAGE_SIZE - 1) & PAGE_MASK
            if end - length >= addr and self._hint_fits(addr, length):
                return addr
        return self.unmapped_area(length, begin, end, align_mask=align_mask)

    def arch_get_unmapped_area_topdown(self, addr: int, length: int, flags: int, align_mask: int = 0) -> int:
        """x86 ``arch_get_unmapped_area_topdown``: MAP_FIXED as given, a fitting hint, the highest
        gap below mmap_base, else bottom-up."""
        if length > DEFAULT_MAP_WINDOW:
            raise os_error(errno.ENOMEM)
        if flags & abi.MAP_FIXED:
            return addr
        addr0 = addr
        if flags & abi.MAP_32BIT:
            return self.arch_get_unmapped_area(addr0, length, flags, align_mask)
        if addr:
            addr &= PAGE_MASK
            if DEFAULT_MAP_WINDOW - length >= addr and self._hint_fits(addr, length):
                return addr
        low = 1 << 32 if flags & abi.MAP_ABOVE4G else PAGE_SIZE
        try:
            return self.unmapped_area_topdown(length, low, self.mmap_base, align_mask=align_mask)
        except OSError:
            return self.arch_get_unmapped_area(addr0, length, flags, align_mask)

    def mm_get_unmapped_area(self, addr: int, length: int, flags: int, align_mask: int = 0) -> int:
        if self.topdown:
            return self.arch_get_unmapped_area_topdown(addr, length, flags, align_mask)
        return self.arch_get_unmapped_area(addr, length, flags, align_mask)

    def thp_get_unmapped_area(self, addr: int, length: int, off: int, flags: int) -> int:
        """``thp_get_unmapped_area_vmflags``: pad by 2 MiB and align (mm/huge_memory.c)."""
        off_end = off + length
        off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
        wraps = off + length + PMD_SIZE >= 1 << 64  # loff_t overflow: (off + len_pad) < off
        if not (off_end <= off_align or off_end - off_align < PMD_SIZE or wraps):
            try:
                ret = self.mm_get_unmapped_area(addr, length + PMD_SIZE, flags)
            except OSError:
                ret = None
            if ret is not None:
                if ret == addr:
                    return addr
                off_sub = (off - ret) & (PMD_SIZE - 1)
                if self.topdown and not off_sub:
                    return ret + PMD_SIZE
                return ret + off_sub
        return self.mm_get_unmapped_area(addr, length, flags)

    def hugetlb_get_unmapped_area(self, addr: int, length: int, flags: int, size: int) -> int:
        """``hugetlb_get_unmapped_area`` of 6.18 (fs/hugetlbfs/inode.c): whole huge pages, an aligned
        MAP_FIXED address, a hint rounded up to the huge page size, then the ordinary x86 search
        (``mm_get_unmapped_area_vmflags``: MAP_32BIT's window, MAP_ABOVE4G, bottom-up fallback) with
        ``get_align_mask`` = the huge page size."""
        if length & (size - 1):
            raise os_error(errno.EINVAL)
        if flags & abi.MAP_FIXED and addr & (size - 1):
            raise os_error(errno.EINVAL)
        addr0 = (addr + size - 1) & ~(size - 1) & ((1 << 64) - 1) if addr else 0
        return self.mm_get_unmapped_area(addr0, length, flags, align_mask=size - 1)

    def get_unmapped_area(self, file: OpenFile | None, addr: int, length: int, pgoff: int,
                          flags: int, huge_size: int = 0) -> int:
        """``__get_unmapped_area`` (mm/mmap.c); ``huge_size`` for hugetlbfs files."""
        if length > DEFAULT_MAP_WINDOW:
            raise os_error(errno.ENOMEM)
        if huge_size:
            result = self.hugetlb_get_unmapped_area(addr, length, flags, huge_size)
        elif file is not None and (file.inode.mount.name == "ext4" and file.inode.kind == "reg" or
                                   file.inode.kind == "zero" and not flags & abi.MAP_SHARED):
            # ext4's thp_get_unmapped_area; /dev/zero's get_unmapped_area_zero sends MAP_PRIVATE there
            # (drivers/char/mem.c) and MAP_SHARED to shmem's, which does not align (shmem_huge never).
            result = self.thp_get_unmapped_area(addr, length, pgoff << 12, flags)
        elif file is None and not flags & abi.MAP_SHARED and not addr and length % PMD_SIZE == 0:
            result = self.thp_get_unmapped_area(addr, length, 0, flags)
        else:
            result = self.mm_get_unmapped_area(addr, length, flags)
        if result > DEFAULT_MAP_WINDOW - length:
            raise os_error(errno.ENOMEM)
        if result & (PAGE_SIZE - 1):
            raise os_error(errno.EINVAL)
        if result < self.kernel.mmap_min_addr and not self.task_has("CAP_SYS_RAWIO"):
            raise os_error(errno.EPERM)
        return result

    def task_has(self, cap: str) -> bool:
        return bool(self.task is not None and self.task.capable(cap))  # type: ignore[attr-defined]

    # --- merging (mm/vma.c) ----------------------------------------------------------------------

    @staticmethod
    def _mergeable(vma: Vma, flags: int, file: OpenFile | None) -> bool:
        """``is_mergeable_vma``: flags equal but for the ignored ones, same file, no special ops."""
        return (not ((vma.flags ^ flags) & ~VM_IGNORE_MERGE) and vma.file is file
                and vma.special is None)

    def _can_merge_after(self, prev: Vma, flags: int, file: OpenFile | None, pgoff: int,
                         anon_vma: AnonVma | None = None, middle: Vma | None = None,
                         copied_from: Vma | None = None) -> bool:
        """``can_vma_merge_after``: the range starting at ``prev``'s end may extend ``prev``."""
        return (self._mergeable(prev, flags, file)
                and is_mergeable_anon_vma(prev, anon_vma, middle, copied_from)
                and prev.pgoff + prev.pages == pgoff)

    def _can_merge_before(self, nxt: Vma, flags: int, file: OpenFile | None, pgoff: int, pages: int,
                          anon_vma: AnonVma | None = None, middle: Vma | None = None,
                          copied_from: Vma | None = None) -> bool:
        """``can_vma_merge_before``: the range of ``pages`` ending at ``nxt``'s start may join it."""
        return (self._mergeable(nxt, flags, file)
                and is_mergeable_anon_vma(nxt, anon_vma, middle, copied_from)
                and nxt.pgoff == pgoff + pages)

    def _dup_anon_vma(self, dst: Vma, src: Vma) -> None:
        """``dup_anon_vma``: a VMA absorbing another takes its anon_vma if it has none."""
        if src.anon_vma is not None and dst.anon_vma is None:
            dst.anon_vma = src.anon_vma
            anon.anon_vma_clone(dst, src)

    def _set_start(self, vma: Vma, start: int, pgoff: int) -> None:
        self.vmas.remove(vma)
        vma.start, vma.pgoff = start, pgoff
        self.vmas.add(vma)

    def _drop_vma(self, vma: Vma) -> None:
        """Removes a VMA absorbed by a merge (its pages already belong to the survivor)."""
        self.vmas.remove(vma)
        anon.unlink_anon_vmas(vma)

    def merge_new_range(self, start: int, end: int, flags: int, file: OpenFile | None,
                        pgoff: int, anon_vma: AnonVma | None = None,
                        copied_from: Vma | None = None, just_expand: bool = False) -> Vma | None:
        """``vma_merge_new_range`` (mm/vma.c, 6.18): extend the previous and/or next VMA over the
        free range [start, end) if Linux would; returns the VMA now covering it, or None (VM_SPECIAL
        never merges).  The ``vma_merge_struct`` fields: ``anon_vma`` the range carries (None for
        mmap and brk; the moved VMA's for mremap), ``copied_from`` the VMA ``copy_vma`` copies (its
        anon_vma is then duplicated into the target), ``just_expand`` (brk's VMG_FLAG_JUST_EXPAND:
        only ``prev`` may grow, never merging ``next``).  The anon_vma rule is
        :func:`anon.is_mergeable_anon_vma`; with both sides mergeable, prev and next must also be
        compatible with each other (:func:`anon.anon_vmas_mergeable`), else only prev merges."""
        if flags & VM_SPECIAL:
            return None
        prev = self.vmas.below(start)
        nxt = None if just_expand else self.vmas.find(start)
        pages = (end - start) >> 12
        left = (prev is not None and prev.end == start
                and self._can_merge_after(prev, flags, file, pgoff, anon_vma, None, copied_from))
        right = (nxt is not None and nxt.start == end
                 and self._can_merge_before(nxt, flags, file, pgoff, pages, anon_vma, None,
                                            copied_from))
        if right and left:
            assert prev is not None and nxt is not None
            right = anon_vmas_mergeable(prev, nxt)
        target: Vma | None = None
        if left:
            assert prev is not None
            target = prev
            if right:
                assert nxt is not None
                self._dup_anon_vma(prev, nxt)
                self._drop_vma(nxt)
                prev.end = nxt.end
            else:
                prev.end = end
        elif right:
            assert nxt is not None
            target = nxt
            self._set_start(nxt, start, nxt.pgoff - pages)
        if target is not None and copied_from is not None and copied_from is not target:
            self._dup_anon_vma(target, copied_from)
        return target

    def insert_vma(self, vma: Vma) -> None:
        self.vmas.add(vma)

    def split_vma(self, vma: Vma, addr: int, new_below: bool) -> Vma:
        """``split_vma``: ENOMEM at max_map_count; returns the new piece (below or above ``addr``)."""
        if self.map_count >= self.kernel.max_map_count:
            raise os_error(errno.ENOMEM)
        return self.__split_vma(vma, addr, new_below)

    def __split_vma(self, vma: Vma, addr: int, new_below: bool) -> Vma:
        # vm_ops->may_split: special mappings refuse (special_mapping_split), hugetlb needs a
        # huge-page boundary (hugetlb_vm_op_split).
        if vma.special is not None or vma.flags & VM_HUGETLB and addr & (PMD_SIZE - 1):
            raise os_error(errno.EINVAL)
        thp.split_huge_pmd_address(self, addr)  # vma_adjust_trans_huge
        new = vma.duplicate()
        new.chain = []
        if new_below:
            new.end = addr
            anon.anon_vma_clone(new, vma)
            self._set_start(vma, addr, vma.pgoff + ((addr - vma.start) >> 12))
        else:
            new.start = addr
            new.pgoff = vma.pgoff + ((addr - vma.start) >> 12)
            anon.anon_vma_clone(new, vma)
            vma.end = addr
        self.vmas.add(new)
        return new

    def vma_modify(self, vma: Vma, start: int, end: int, new_flags: int) -> Vma:
        """``vma_modify_flags``: merge [start, end) with a neighbour under ``new_flags`` if Linux would
        (``vma_merge_existing_range``), else split it out of ``vma``.  Returns the VMA now covering
        [start, end) (a merged one covers more, with the new flags already); no counter changes:
        the caller sets the flags and accounts (:meth:`reflag`)."""
        merged = self._merge_existing(vma, start, end, new_flags)
        if merged is not None:
            return merged
        if vma.start < start:
            self.split_vma(vma, start, new_below=True)
        if vma.end > end:
            self.split_vma(vma, end, new_below=False)
        return vma

    def _merge_existing(self, vma: Vma, start: int, end: int, flags: int) -> Vma | None:
        """``vma_merge_existing_range`` (mm/vma.c, 6.18): [start, end) of ``vma`` (touching its left
        and/or right edge) merges into prev and/or next under ``flags``; ``vma`` is the merge's
        ``middle``, so :func:`anon.is_mergeable_anon_vma` refuses giving a fork child's anon_vma
        to an unfaulted neighbour."""
        if flags & VM_SPECIAL or vma.special is not None:
            return None
        left_side, right_side = start == vma.start, end == vma.end
        if not left_side and not right_side:
            return None
        file, anon_vma = vma.file, vma.anon_vma
        pgoff = vma.pgoff_at(start)
        pages = (end - start) >> 12
        prev = self.vmas.prev(vma) if left_side else None
        nxt = self.vmas.next(vma) if right_side else None
        merge_left = (prev is not None and prev.end == start
                      and self._can_merge_after(prev, flags, file, pgoff, anon_vma, vma))
        merge_right = (nxt is not None and nxt.start == end
                       and self._can_merge_before(nxt, flags, file, pgoff, pages, anon_vma, vma))
        if merge_left and merge_right:
            assert prev is not None and nxt is not None
            merge_right = anon_vmas_mergeable(prev, nxt)
        if not merge_left and not merge_right:
            return None
        delete_vma = left_side and right_side
        thp.split_huge_pmd_address(self, start)  # vma_adjust_trans_huge (commit_merge)
        thp.split_huge_pmd_address(self, end)
        if merge_left and merge_right:
            assert prev is not None and nxt is not None
            self._dup_anon_vma(prev, nxt if nxt.anon_vma is not None else vma)
            self._drop_vma(vma)
            self._drop_vma(nxt)
            prev.end = nxt.end
            return prev
        if merge_left:
            assert prev is not None
            self._dup_anon_vma(prev, vma)
            if delete_vma:
                self._drop_vma(vma)
            else:
                self._set_start(vma, end, vma.pgoff_at(end))
            prev.end = end
            return prev
        assert nxt is not None
        self._dup_anon_vma(nxt, vma)
        if delete_vma:
            self._drop_vma(vma)
        else:
            vma.end = start
        self._set_start(nxt, start, nxt.pgoff - pages)
        return nxt

    # --- unmapping (mm/vma.c do_vmi_munmap) -------------------------------------------------------

    def munmap_range(self, start: int, end: int) -> int:
        """Removes [start, end): splits the end VMAs, zaps pages, fixes counters.  Returns the pages
        removed.  ENOMEM if a VMA must split in three at the map-count limit
        (``vms_gather_munmap_vmas``)."""
        if not self.split_range_ends(start, end):
            return 0
        removed = 0
        for vma in self.vmas.overlapping(start, end):
            removed += vma.pages
            self.remove_vma(vma)
        self.free_pgtables(start, end)
        return removed

    def split_range_ends(self, start: int, end: int) -> bool:
        """The splits of ``vms_gather_munmap_vmas``: the VMAs across ``start`` and ``end`` are cut
        there (ENOMEM if one must split in three at the map-count limit).  A caller that fails
        later (``vms_abort_munmap_vmas``) leaves them split.  False if nothing overlaps."""
        vmas = self.vmas.overlapping(start, end)
        if not vmas:
            return False
        first, last = vmas[0], vmas[-1]
        if first.start < start:
            if end < first.end and self.map_count >= self.kernel.max_map_count:
                raise os_error(errno.ENOMEM)
            self.__split_vma(first, start, new_below=True)
        if last.end > end:
            self.__split_vma(last, end, new_below=False)
        return True

    def remove_vma(self, vma: Vma) -> None:
        """Unmaps a whole VMA: its pages, counters, anon identity."""
        self.zap_range(vma.start, vma.end)
        self.account_vma(vma, -1)
        self.vmas.remove(vma)
        anon.unlink_anon_vmas(vma)

    # --- mremap support (mm/vma.c copy_vma, vma_merge_extend; mm/mremap.c move_page_tables) -----

    def vma_merge_extend(self, vma: Vma, delta: int) -> Vma | None:
        """``vma_merge_extend`` (mm/vma.c): grow ``vma`` by ``delta`` bytes in place, merging with the
        next VMA when it becomes adjacent and compatible.  None if Linux refuses (VM_SPECIAL)."""
        start, end = vma.end, vma.end + delta
        nxt = self.vmas.find(start)
        if nxt is not None and nxt.start < end:
            return None
        return self.merge_new_range(start, end, vma.flags, vma.file, vma.pgoff_at(start),
                                    vma.anon_vma)

    def copy_vma(self, vma: Vma, addr: int, length: int, pgoff: int) -> tuple[Vma, Vma]:
        """``copy_vma`` (mm/vma.c, 6.18): a VMA like ``vma`` over the free range [addr, addr+length),
        merged with its neighbours when possible (even with ``vma`` itself, DONTUNMAP included: 6.18
        has no self-merge exclusion), else a duplicate with a cloned anon_vma chain and the same
        open file.  An unfaulted anonymous VMA gets ``pgoff = addr >> 12``.  Returns (new VMA,
        source VMA) — the source may have been merged into the new one."""
        vma_start = vma.start
        faulted = True
        if vma.anonymous and vma.anon_vma is None:
            pgoff = addr >> 12
            faulted = False
        nxt = self.vmas.find(addr)
        if nxt is not None and nxt.start < addr + length:
            raise os_error(errno.ENOMEM)  # "should never get here"
        new = self.merge_new_range(addr, addr + length, vma.flags, vma.file, pgoff, vma.anon_vma,
                                   copied_from=vma)
        if new is not None:
            if new.start <= vma_start < new.end:
                assert not faulted  # only an unfaulted VMA can merge with itself
                vma = new
            return new, vma
        new = vma.duplicate()
        new.chain = []
        new.start, new.end, new.pgoff = addr, addr + length, pgoff
        anon.anon_vma_clone(new, vma)
        self.vmas.add(new)
        return new, vma

    def move_page_tables(self, old_addr: int, new_addr: int, length: int) -> int:
        """``move_page_tables`` (mm/mremap.c): the entries of [old_addr, old_addr+length) move to
        new_addr — the same frames, no copy (guard markers move too).  Returns the bytes moved."""
        first, last = old_addr >> 12, (old_addr + length) >> 12
        shift = (new_addr - old_addr) >> 12
        pt = self.pt
        tables = self._moved_tables(old_addr, new_addr, length)
        huge = {old_block: (old_block in self.huge_zero, thp.is_huge_block(self, old_block))
                for old_block, _, _ in tables}
        for old_block, _, _ in tables:  # move_huge_pmd moves a whole PMD; any other extent splits it
            thp.split_huge_pmd(self, old_block)
        vpns = pt.vpns(first, last)  # type: ignore[attr-defined]
        moved = {vpn + shift: pt.pop(vpn) for vpn in vpns}
        pt.update(moved)
        for old_block, new_block, whole in tables:
            if whole:  # move_normal_pmd: the table itself moved
                self.empty_tables.discard(old_block)
            elif old_block not in pt.blocks:  # type: ignore[attr-defined]
                self.empty_tables.add(old_block)  # move_ptes left the source table, maybe empty
            if new_block not in pt.blocks:  # type: ignore[attr-defined]
                self.empty_tables.add(new_block)
            zero, pmd = huge[old_block]
            if whole and pmd:
                (self.huge_zero if zero else self.pmd_mapped).add(new_block)
        return length

    def _moved_tables(self, old_addr: int, new_addr: int, length: int) -> list[tuple[int, int, bool]]:
        """The extents of ``move_page_tables`` (``get_extent``: cut at both sides' PMD boundaries)
        whose source block has a PTE table: (source block, destination block, whether the whole
        table moves, as ``move_normal_pmd`` does for a PMD-sized extent into an empty PMD).  Every
        other such extent gets a destination table (``pte_alloc``) and keeps its source table."""
        out: list[tuple[int, int, bool]] = []
        pos = 0
        while pos < length:
            old, new = old_addr + pos, new_addr + pos
            extent = min(PMD_SIZE - (old & (PMD_SIZE - 1)), PMD_SIZE - (new & (PMD_SIZE - 1)),
                         length - pos)
            if not self.pmd_none(old >> 21):
                out.append((old >> 21, new >> 21, extent == PMD_SIZE and self.pmd_none(new >> 21)))
            pos += extent
        return out

    # --- pages ----------------------------------------------------------------------------------

    def zap_pte(self, vpn: int, keep_guard: bool = True) -> None:
        pte = self.pt.get(vpn)
        if pte is None or (pte == GUARD and keep_guard):
            return
        del self.pt[vpn]
        if self.pmd_mapped or self.huge_zero:
            thp.split_huge_pmd(self, vpn >> 9)  # a zap of part of a huge PMD splits it first
        if vpn >> 9 not in self.pt.blocks:  # type: ignore[attr-defined]
            self.empty_tables.add(vpn >> 9)
        if pte == GUARD:
            return
        frame = pte >> 2
        if frame != ZERO_FRAME:
            frames = pool()
            frames.mapcount[frame] -= 1
            frames.put(frame)
            if not frames.refs[frame] and frame in thp.FOLIO_HEAD:
                thp.folio_page_freed(frame)

    def pmd_none(self, block: int) -> bool:
        """Whether the 2 MiB block ``block`` has no PTE table (``pmd_none``)."""
        return block not in self.pt.blocks and block not in self.empty_tables  # type: ignore[attr-defined]

    def free_pgtables(self, start: int, end: int) -> None:
        """``free_pgtables`` after unmapping [start, end): the empty PTE tables of blocks that no
        VMA overlaps any more are freed."""
        first, last = start >> 21, (end - 1) >> 21
        for block in [b for b in self.empty_tables if first <= b <= last]:
            if not self.vmas.overlapping(block << 21, (block + 1) << 21):
                self.empty_tables.discard(block)

    def reclaim_pt(self, start: int, end: int) -> None:
        """PT_RECLAIM of a MADV_DONTNEED zap (``reclaim_pt_is_enabled``: at least PMD_SIZE): the
        tables of blocks wholly inside [start, end) that the zap left empty are freed."""
        if end - start < PMD_SIZE:
            return
        first, last = (start + PMD_SIZE - 1) >> 21, (end >> 21) - 1
        for block in [b for b in self.empty_tables if first <= b <= last]:
            self.empty_tables.discard(block)

    def zap_range(self, start: int, end: int, keep_guard: bool = False) -> None:
        """Drops the page-table entries of [start, end) (``zap_page_range_single``)."""
        first, last = start >> 12, end >> 12
        huge = thp.huge_blocks_covered(self, start, end) if self.pmd_mapped or self.huge_zero else []
        for vpn in self.pt.vpns(first, last):  # type: ignore[attr-defined]
            self.zap_pte(vpn, keep_guard)
        for block in huge:  # zap_huge_pmd: the PMD goes with its deposited table
            self.empty_tables.discard(block)

    def install(self, vpn: int, frame: int, writable: bool, owned: bool) -> None:
        """Maps ``frame`` at ``vpn``; ``owned`` frames (anonymous) already carry our reference."""
        frames = pool()
        if frame != ZERO_FRAME:
            frames.mapcount[frame] += 1
            if not owned:
                frames.get(frame)
        self.pt[vpn] = (frame << 2) | (PTE_WRITE if writable else 0) | (PTE_ANON if owned else 0)

    def present_pages(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        """(vpn, pte) of present entries in [start, end), guards excluded."""
        first, last = start >> 12, end >> 12
        pt = self.pt
        for vpn in pt.vpns(first, last):  # type: ignore[attr-defined]
            pte = pt.get(vpn)
            if pte is not None and pte != GUARD:
                yield vpn, pte

    def neighbours(self, vma: Vma) -> tuple[Vma | None, Vma | None]:
        return self.vmas.prev(vma), self.vmas.next(vma)

    def anon_vma_prepare(self, vma: Vma) -> None:
        if vma.anon_vma is None:
            prev, nxt = self.neighbours(vma)
            anon.anon_vma_prepare(vma, prev, nxt)

    def fault(self, vma: Vma, addr: int, write: bool) -> int:
        """``handle_mm_fault`` for a permitted access: returns the frame now mapped at ``addr``.

        Raises BusError past the end of a file (``filemap_fault``: VM_FAULT_SIGBUS), for hugetlb
        memory the empty pool cannot back, and BUS_MCEERR_AR on a hardware-poisoned page
        (``do_swap_page`` on a hwpoison entry: VM_FAULT_HWPOISON).
        """
        vpn = addr >> 12
        pte = self.pt.get(vpn)
        if pte is not None and pte != GUARD:
            if pool().poisoned and pte >> 2 in pool().poisoned:
                raise BusError(addr, abi.BUS_MCEERR_AR)
            if not write or pte & PTE_WRITE:
                return pte >> 2
            if pte >> 2 == ZERO_FRAME and vpn >> 9 in self.huge_zero:
                return thp.do_huge_zero_wp_pmd(self, vma, addr)
            return self._wp_fault(vma, vpn, pte)
        if vma.flags & VM_HUGETLB:
            raise BusError(addr, abi.BUS_ADRERR)
        if vma.special is not None:
            # special_mapping_fault: the kernel's own pages ([vdso]); [vvar] pages are PFN maps
            frame = self.kernel.special_frame(vma.special, (addr - vma.start) >> 12)
            self.install(vpn, frame, False, False)
            return frame
        if vma.anonymous:
            if thp.thp_fault_allowed(self, vma, addr):
                return thp.do_huge_pmd_anonymous_page(self, vma, addr, write)
            if not write:
                self.install(vpn, ZERO_FRAME, False, False)
                return ZERO_FRAME
            self.anon_vma_prepare(vma)
            frame = pool().alloc()
            pool().dirty[frame] = 1
            self.install(vpn, frame, True, True)
            return frame
        return file_fault(self, vma, addr, write)

    def _wp_fault(self, vma: Vma, vpn: int, pte: int) -> int:
        """``do_wp_page``: write to a present read-only entry — reuse an exclusive anonymous page,
        make a shared file page writable, or copy."""
        frame = pte >> 2
        frames = pool()
        if vma.flags & VM_SHARED:
            self.pt[vpn] = pte | PTE_WRITE
            if vma.file is not None:
                vma.file.inode.mark_dirty(vma.pgoff_at(vpn << 12))
            frames.dirty[frame] = 1
            return frame
        verdict = thp.wp_large_folio(self, vpn, frame) if frame in thp.FOLIO_HEAD else "page"
        if verdict == "pmd":
            return frame
        if verdict == "page" and pte & PTE_ANON and frames.refs[frame] == 1:
            self.pt[vpn] = pte | PTE_WRITE
            frames.dirty[frame] = 1
            return frame
        self.anon_vma_prepare(vma)
        new = frames.alloc()
        if frame != ZERO_FRAME:
            frames.copy(new, frame)
        frames.dirty[new] = 1
        self.zap_pte(vpn)
        self.install(vpn, new, True, True)
        return new

    def access(self, addr: int, n: int, write: bool, visit: Callable[[int, int, int, int], None]) -> None:
        """A CPU access of ``n`` bytes, page by page in address order, like the native child's probe.

        ``visit(frame, offset_in_page, done, take)`` moves the bytes of each page; a fault raises
        :class:`SegmentationFault` / :class:`BusError` at the first byte of the faulting page that
        the access touches, after the earlier pages were done.
        """
        done = 0
        pos = addr
        end = addr + n
        while pos < end:
            if NON_CANONICAL_START <= pos < NON_CANONICAL_END:
                # a general-protection fault, not a page fault: SI_KERNEL, no address
                raise SegmentationFault(0, SI_KERNEL)
            vma = self.find_vma(pos)
            if vma is None:
                raise SegmentationFault(pos, abi.SEGV_MAPERR)
            if vma.start > pos:
                if not (vma.flags & VM_GROWSDOWN) or not self.expand_stack(vma, pos):
                    raise SegmentationFault(pos, abi.SEGV_MAPERR)
            if write and not vma.flags & VM_WRITE or not write and not vma.flags & (VM_READ | VM_WRITE | VM_EXEC):
                raise SegmentationFault(pos, abi.SEGV_ACCERR)
            if self.pt.get(pos >> 12) == GUARD:
                raise SegmentationFault(pos, abi.SEGV_MAPERR)
            frame = self.fault(vma, pos, write)
            inpage = pos & (PAGE_SIZE - 1)
            take = min(PAGE_SIZE - inpage, end - pos)
            visit(frame, inpage, done, take)
            done += take
            pos += take

    # --- get_user_pages (mm/gup.c) ------------------------------------------------------------------

    @staticmethod
    def check_vma_flags(vma: Vma, write: bool, force: bool) -> int:
        """``check_vma_flags`` (mm/gup.c): 0 if GUP may take pages of ``vma``, else the errno
        (EFAULT): never VM_IO/VM_PFNMAP; a write needs VM_WRITE (or FOLL_FORCE on a COW mapping);
        a read needs VM_READ (or FOLL_FORCE and VM_MAYREAD)."""
        from vmkit.sim.vmflags import VM_IO, VM_MAYREAD, VM_MAYWRITE, VM_PFNMAP

        flags = vma.flags
        if flags & (VM_IO | VM_PFNMAP):
            return errno.EFAULT
        if write:
            if not flags & VM_WRITE:
                cow = flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE  # is_cow_mapping
                if not force or flags & VM_HUGETLB or not cow:
                    return errno.EFAULT
        elif not flags & VM_READ:
            if not force or not flags & VM_MAYREAD:
                return errno.EFAULT
        return 0

    def get_user_pages(self, start: int, nr_pages: int, write: bool,
                       force: bool = False) -> tuple[list[tuple[Vma, int]], int]:
        """``__get_user_pages`` (mm/gup.c) for FOLL_TOUCH [| FOLL_WRITE] [| FOLL_FORCE]: faults in
        and returns ``(vma, frame)`` of each page from ``start`` until the first failure, and that
        failure's errno (0 if every page was taken).  Like the kernel, the caller sees an error only
        when no page was taken.

        The VMA is looked up without growing a stack (``gup_vma_lookup``: "GUP no longer grows the
        stack"); a guard marker faults with VM_FAULT_SIGSEGV (``handle_pte_marker``) and SIGBUS past
        EOF, both EFAULT (``vm_fault_to_errno``)."""
        out: list[tuple[Vma, int]] = []
        addr = start & PAGE_MASK
        vma: Vma | None = None
        for _ in range(nr_pages):
            if vma is None or addr >= vma.end:
                vma = self.vma_lookup(addr)
                if vma is None:
                    return out, errno.EFAULT
                err = self.check_vma_flags(vma, write, force)
                if err:
                    return out, err
            if self.pt.get(addr >> 12) == GUARD:
                return out, errno.EFAULT
            if write and not vma.flags & VM_WRITE:
                raise NotImplementedError("vmkit.sim does not model FOLL_FORCE writes (forced COW)")
            try:
                frame = self.fault(vma, addr, write)
            except (BusError, SegmentationFault):
                return out, errno.EFAULT
            out.append((vma, frame))
            addr += PAGE_SIZE
        return out, 0

    def populate_vma_page_range(self, vma: Vma, start: int, end: int) -> tuple[int, int]:
        """``populate_vma_page_range`` (mm/gup.c): (pages done, errno).  VM_LOCKONFAULT: nothing
        to do, all counted done; PROT_NONE: EFAULT; a write fault for private writable memory (to
        break COW), else a forced read fault."""
        from vmkit.sim.vmflags import VM_LOCKONFAULT

        nr_pages = (end - start) >> 12
        if vma.flags & VM_LOCKONFAULT:
            return nr_pages, 0
        if not vma.flags & (VM_READ | VM_WRITE | VM_EXEC):  # vma_is_accessible
            return 0, errno.EFAULT
        write = vma.flags & (VM_WRITE | VM_SHARED) == VM_WRITE
        pages, err = self.get_user_pages(start, nr_pages, write, force=not write)
        return (len(pages), 0) if pages or not err else (0, err)

    def populate(self, start: int, end: int, ignore_errors: bool) -> int:
        """``__mm_populate`` (mm/gup.c): fault in [start, end) VMA by VMA, skipping VM_IO/VM_PFNMAP
        and holes; returns 0 or the errno that stopped it (errors are skipped per VMA with
        ``ignore_errors``, as ``mm_populate`` does).  [vdso] pages are faulted in like any others."""
        from vmkit.sim.vmflags import VM_IO, VM_PFNMAP

        nstart = start
        while nstart < end:
            vma = self.find_vma(nstart)
            if vma is None or vma.start >= end:
                break
            nend = min(end, vma.end)
            if vma.flags & (VM_IO | VM_PFNMAP):
                nstart = nend
                continue
            nstart = max(nstart, vma.start)
            done, err = self.populate_vma_page_range(vma, nstart, nend)
            if err:
                if ignore_errors:
                    nstart = nend
                    continue
                return err
            nstart += done << 12
        return 0

    # --- stack (mm/mmap.c expand_downwards, acct_stack_growth) -----------------------------------

    def expand_stack(self, vma: Vma, addr: int) -> bool:
        """``expand_downwards``: grow a GROWSDOWN VMA down to ``addr``'s page, keeping the guard gap
        from an accessible previous VMA and the stack rlimit.  Past the guard-gap check the VMA gets
        its anon_vma (``anon_vma_prepare``) before ``acct_stack_growth`` decides, so even a refused
        growth leaves it with one (fork then copies its page table: ``vma_needs_copy``)."""
        address = addr & PAGE_MASK
        if address < self.kernel.min_addr:
            return False
        prev = self.vmas.below(vma.start)
        if prev is not None and prev is not vma and prev.end > address:
            return False
        if prev is not None and prev is not vma and prev.flags & (VM_READ | VM_WRITE | VM_EXEC):
            if address - prev.end < self.kernel.stack_guard_gap:
                return False
        self.anon_vma_prepare(vma)
        grow = (vma.start - address) >> 12
        size = vma.end - address
        task = self.task
        if task is not None:
            if size > task.rlimit_cur("RLIMIT_STACK"):  # type: ignore[attr-defined]
                return False
            if not self.may_expand_vm(vma.flags, grow):
                return False
            if vma.flags & VM_LOCKED and not task.mlock_ok(self, grow):  # type: ignore[attr-defined]
                return False
        self._set_start(vma, address, vma.pgoff - grow)
        self.stat_account(vma.flags, grow)
        if vma.flags & VM_LOCKED:
            self.locked_vm += grow
        return True

    def may_expand_vm(self, flags: int, npages: int) -> bool:
        """``may_expand_vm``: RLIMIT_AS for everything, RLIMIT_DATA for private writable data."""
        task = self.task
        if task is None:
            return True
        if (self.total_vm + npages) << 12 > task.rlimit_cur("RLIMIT_AS"):  # type: ignore[attr-defined]
            return False
        if flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE:
            soft, hard = task.rlimits["RLIMIT_DATA"]  # type: ignore[attr-defined]
            if (self.data_vm + npages) << 12 > soft:
                # the Valgrind workaround: a soft limit of 0 defers to the hard one
                return soft == 0 and (self.data_vm + npages) << 12 <= hard
        return True

    # --- fork (kernel/fork.c dup_mmap) ------------------------------------------------------------

    def dup(self, child: MemoryManager) -> None:
        """``dup_mmap``: the child gets every VMA but DONTCOPY ones, without VM_LOCKED; private pages
        become copy-on-write in both; WIPEONFORK ranges start empty."""
        from vmkit.sim.vmflags import VM_DONTCOPY, VM_WIPEONFORK

        for attr in ("start_brk", "brk", "start_stack", "start_code", "end_code", "mmap_base", "mmap_legacy_base", "topdown",
                     "vsyscall"):
            setattr(child, attr, getattr(self, attr))
        frames = pool()
        for vma in self.vmas:
            if vma.flags & VM_DONTCOPY:
                continue
            new = vma.duplicate()
            new.flags &= ~VM_LOCKED_MASK
            new.chain = []
            if vma.flags & VM_WIPEONFORK:
                new.anon_vma = None
            else:
                anon.anon_vma_fork(new, vma)
            child.vmas.add(new)
            child.stat_account(new.flags, new.pages)
            if vma.flags & VM_WIPEONFORK and vma.anonymous:
                continue
            # vma_needs_copy: page tables are copied only where the child could not refault the
            # same pages: VMAs with anonymous pages (anon_vma), and VM_COPY_ON_FORK ones (PFN maps,
            # VMAs that may hold guard markers); others refault later
            needs_copy = vma.anon_vma is not None or vma.flags & (VM_PFNMAP | VM_MIXEDMAP | VM_MAYBE_GUARD)
            vpns = self.pt.vpns(vma.start >> 12, vma.end >> 12)  # type: ignore[attr-defined]
            if needs_copy:  # copy_pte_range makes the child a table wherever the parent has one
                lo, hi = vma.start >> 21, (vma.end - 1) >> 21
                for block in {v >> 9 for v in vpns} | {b for b in self.empty_tables if lo <= b <= hi}:
                    child.empty_tables.add(block)
                    if block in self.huge_zero:  # copy_huge_pmd: the child maps the same PMD
                        child.huge_zero.add(block)
                    elif block in self.pmd_mapped:
                        child.pmd_mapped.add(block)
            for vpn in vpns:
                pte = self.pt.get(vpn)
                if pte == GUARD:  # guard markers are always inherited
                    child.pt[vpn] = GUARD
                    continue
                if pte is None or not needs_copy:
                    continue
                frame = pte >> 2
                if pte & PTE_ANON:
                    if not vma.flags & VM_SHARED:
                        pte &= ~PTE_WRITE
                        self.pt[vpn] = pte
                    frames.get(frame)
                    frames.mapcount[frame] += 1
                    child.pt[vpn] = pte
                elif frame == ZERO_FRAME or not vma.flags & VM_SHARED:
                    child.install(vpn, frame, False, False)
                else:  # copy_present_pte: a shared page keeps its write permission
                    child.install(vpn, frame, bool(pte & PTE_WRITE), False)

    # --- tear-down ------------------------------------------------------------------------------

    def exit_mmap(self) -> None:
        """``exit_mmap``: every VMA and page goes."""
        for vma in list(self.vmas):
            self.remove_vma(vma)
        self.pt.clear()
        self.empty_tables.clear()
        self.pmd_mapped.clear()
        self.huge_zero.clear()

    # --- views ----------------------------------------------------------------------------------

    def file_vmas(self, inode: Inode) -> list[Vma]:
        return [v for v in self.vmas if v.file is not None and v.file.inode is inode]

    # --- madvise support (mm/madvise.c, mm/khugepaged.c, mm/vmscan.c) ---------------------------

    def install_guards(self, vma: Vma, start: int, end: int) -> None:
        """``madvise_guard_install``: zaps [start, end) (``zap_page_range_single``, existing markers
        kept) and puts a guard marker in every entry; VM_MAYBE_GUARD goes on the whole VMA without
        a split (``vm_flags_set``), an anonymous VMA gets its anon_vma first."""
        from vmkit.sim.vmflags import VM_MAYBE_GUARD

        if vma.anonymous:
            self.anon_vma_prepare(vma)
        vma.flags |= VM_MAYBE_GUARD
        self.zap_range(start, end, keep_guard=True)
        for vpn in range(start >> 12, end >> 12):
            self.pt[vpn] = GUARD

    def remove_guards(self, start: int, end: int) -> None:
        """``madvise_guard_remove``: clears the guard markers of [start, end); nothing else."""
        pt = self.pt
        first, last = start >> 12, end >> 12
        for vpn in pt.vpns(first, last):  # type: ignore[attr-defined]
            if pt.get(vpn) == GUARD:
                del pt[vpn]
                if vpn >> 9 not in pt.blocks:  # type: ignore[attr-defined]
                    self.empty_tables.add(vpn >> 9)

    def unmap_file_pages(self, vma: Vma, start: int, end: int) -> None:
        """``unmap_mapping_range(..., even_cows=0)`` within one VMA: page-cache pages leave the page
        table, private copies (PTE_ANON) and guard markers stay."""
        for vpn, pte in list(self.present_pages(start, end)):
            if not pte & PTE_ANON and pte >> 2 != ZERO_FRAME:
                self.zap_pte(vpn)

    def lazyfree_range(self, start: int, end: int) -> None:
        """``madvise_free_pte_range``: every exclusive anonymous page of [start, end) becomes clean
        and goes to the per-CPU lazyfree batch (``folio_mark_lazyfree``); pages shared with another
        process and the zero page are skipped.  Lazily freed pages are reclaimed only under memory
        pressure, which the model never has.  The model has no hardware dirty bit: the entry is
        write-protected so that the next store goes through ``do_wp_page``, which reuses the
        exclusive page and dirties it again, as the CPU setting the dirty bit would."""
        frames = pool()
        for vpn, pte in list(self.present_pages(start, end)):
            frame = pte >> 2
            if not pte & PTE_ANON or frame == ZERO_FRAME or frames.mapcount[frame] != 1:
                continue
            frames.dirty[frame] = 0
            self.pt[vpn] = pte & ~PTE_WRITE
            LAZYFREE.discard(frame)
            batch = LAZYFREE_BATCHES.setdefault(self.kernel, [])
            batch.append(frame)
            if len(batch) == FOLIO_BATCH_SIZE:  # the batch is full: lru_lazyfree drains it
                lru_add_drain(self.kernel)

    def lazyfree_pages(self, vma: Vma) -> int:
        """Pages of ``vma`` counted by smaps ``LazyFree``: lazily freed anonymous pages whose batch
        was drained (no longer swap-backed) and that are still clean."""
        frames = pool()
        return sum(1 for _, pte in self.present_pages(vma.start, vma.end)
                   if pte & PTE_ANON and pte >> 2 in LAZYFREE and not frames.dirty[pte >> 2])

    def pageout_range(self, vma: Vma, start: int, end: int, file_pages: bool) -> None:
        """MADV_PAGEOUT (``madvise_cold_or_pageout_pte_range`` → ``reclaim_pages`` →
        ``shrink_folio_list``) without swap: anonymous pages cannot go anywhere and stay; page-cache
        pages (shmem included) mapped by this entry alone leave the page table (``try_to_unmap``),
        and clean ones also leave the page cache (``__remove_mapping``): a disk file's written-back
        pages, and shmem pages never written (a read fault allocates a clean zeroed folio); dirty
        pages stay cached (shmem's are never cleaned: ``shmem_writeout`` without swap redirties;
        :meth:`_reclaim_cache_page`; large folios: :meth:`_pageout_large_folio`).
        ``file_pages`` False (``pageout_anon_only_filter``) leaves page-cache pages
        alone.  Pages mapped elsewhere too are skipped (``folio_maybe_mapped_shared``)."""
        lru_add_drain(self.kernel)
        if vma.file is None or not file_pages:
            return
        inode = vma.file.inode
        frames = pool()
        first, last = vma.pgoff_at(start), vma.pgoff_at(end - 1)
        for vpn, pte in self.present_pages(start, end):  # try_to_unmap moves dirty bits first
            if not pte & PTE_ANON and pte >> 2 != ZERO_FRAME and frames.dirty[pte >> 2]:
                inode.mark_dirty(vma.pgoff_at(vpn << 12))
        done: set[int] = set()
        for vpn in [v for v, _ in self.present_pages(start, end)]:
            entry = self.pt.get(vpn)
            if entry is None or entry == GUARD:
                continue  # unmapped by a split earlier in the walk
            pte = entry
            frame = pte >> 2
            if pte & PTE_ANON or frame == ZERO_FRAME:
                continue
            index = vma.pgoff_at(vpn << 12)
            head, nr = inode.folio_of(index)
            if nr > 1:
                if head not in done:
                    done.add(head)
                    self._pageout_large_folio(vma, inode, head, nr, first, last)
                continue
            if frames.mapcount[frame] != 1:
                continue
            self.zap_pte(vpn)
            self._reclaim_cache_page(inode, index, frame)

    def _reclaim_cache_page(self, inode: Inode, index: int, frame: int) -> None:
        """``shrink_folio_list`` for an unmapped page-cache page: a clean one (a disk file's written
        back page, a shmem page never written) leaves the cache; a dirty one stays, for a disk file
        with PG_reclaim set (``folio_set_reclaim``, the bit PG_readahead shares: fault-around then
        skips the page)."""
        frames = pool()
        if frames.dirty[frame]:
            inode.mark_dirty(index)  # the PTE's dirty bit passes to the folio
        if not inode.folio_dirty(index) and not frames.dirty[frame]:
            if inode.cache.get(index) == frame and frames.refs[frame] == 1:
                del inode.cache[index]
                inode.split_folio(index)
                inode.ra_marks.discard(index)
                frames.put(frame)
        elif inode.folio_dirty(index) and inode.mount.has_disk:
            inode.ra_marks.add(inode.folio_of(index)[0])

    def _pageout_large_folio(self, vma: Vma, inode: Inode, head: int, nr: int, first: int,
                             last: int) -> None:
        """MADV_PAGEOUT of a large page-cache folio: one that the range and this VMA's entries
        cover whole is reclaimed as a unit (all its entries unmapped; evicted if clean, PG_reclaim
        if dirty), unless it is mapped more than once (``folio_mapcount != folio_nr_pages``).  One
        covered in part is split (``split_folio``): a dirty ext4 folio cannot be (its buffers
        cannot be released) and is left alone; a clean one is split into order-0 folios, and the
        split unmaps it everywhere (``remap_page`` does not map file folios back), so nothing is
        paged out, unless another process maps it too (``folio_maybe_mapped_shared``): then it is
        skipped."""
        frames = pool()
        base = (vma.start >> 12) - vma.pgoff
        cache = {inode.cache[i] for i in range(head, head + nr)}
        whole = head >= first and head + nr - 1 <= last and all(
            (self.pt.get(base + i, GUARD) >> 2) == inode.cache.get(i) and self.pt.get(base + i) != GUARD
            for i in range(head, head + nr))
        if whole and any(frames.mapcount[f] != 1 for f in cache):
            return
        if not whole:
            for task in self.kernel.tasks.values():
                mm = task.mm
                if mm is not self and any(not pte & PTE_ANON and pte >> 2 in cache
                                          for v in mm.file_vmas(inode)
                                          for _, pte in mm.present_pages(v.start, v.end)):
                    return
            if inode.folio_dirty(head) and inode.mount.has_disk:
                return
            for task in self.kernel.tasks.values():
                mm = task.mm
                for other in mm.file_vmas(inode):
                    for v, pte in list(mm.present_pages(other.start, other.end)):
                        if not pte & PTE_ANON and pte >> 2 in cache:
                            mm.zap_pte(v)
            inode.split_folio(head)
            return
        for i in range(head, head + nr):
            self.zap_pte(base + i)
        if not inode.mount.has_disk:
            return
        if inode.folio_dirty(head):
            inode.ra_marks.add(head)
        elif all(frames.refs[inode.cache[i]] == 1 for i in range(head, head + nr)):
            for i in range(head, head + nr):
                frames.put(inode.cache.pop(i))
            inode.split_folio(head)
            inode.ra_marks.discard(head)

    def collapse_scan_pmd(self, vma: Vma, haddr: int) -> int:
        """``hpage_collapse_scan_pmd`` + ``__collapse_huge_page_isolate`` for MADV_COLLAPSE
        (``cc->is_khugepaged`` false: no limit on empty, zero-page or shared entries, and 6.18 no
        longer wants a writable one).  Returns 0 if the 2 MiB block at ``haddr`` can collapse, else
        the errno ``madvise_collapse_errno`` gives: EINVAL for a block without a page table
        (SCAN_PMD_NULL) or with a page that is not anonymous.  A table that zapping emptied still
        exists (:attr:`empty_tables`), and its empty block collapses."""
        present = False
        pt = self.pt
        for vpn in range(haddr >> 12, (haddr + PMD_SIZE) >> 12):
            pte = pt.get(vpn)
            if pte is None:
                continue
            if pte == GUARD:
                raise NotImplementedError("vmkit.sim does not model MADV_COLLAPSE over guard markers")
            present = True
            if pte >> 2 != ZERO_FRAME and not pte & PTE_ANON:
                return errno.EINVAL  # SCAN_PAGE_ANON
        return 0 if present or not self.pmd_none(haddr >> 21) else errno.EINVAL

    def collapse_huge_pmd(self, vma: Vma, haddr: int) -> None:
        """``collapse_huge_page``: a new 2 MiB anonymous folio replaces the block at ``haddr``: every
        page is copied (empty and zero-page entries become zero-filled pages), the old pages are
        released, and the block is mapped by one PMD, dirty and writable if the VMA is
        (``maybe_pmd_mkwrite(pmd_mkdirty())``).  The PMD mapping is recorded in :data:`HUGE_PMDS`."""
        frames = pool()
        self.anon_vma_prepare(vma)
        writable = bool(vma.flags & VM_WRITE)
        new: list[int] = []
        for vpn in range(haddr >> 12, (haddr + PMD_SIZE) >> 12):
            frame = frames.alloc()
            pte = self.pt.get(vpn)
            if pte is not None and pte >> 2 != ZERO_FRAME:
                frames.copy(frame, pte >> 2)
            frames.dirty[frame] = 1
            self.zap_pte(vpn)
            self.install(vpn, frame, writable, True)
            new.append(frame)
        thp.register_folio(tuple(new))
        self.pmd_mapped.add(haddr >> 21)

    def huge_pmd_at(self, haddr: int) -> bool:
        """Whether the aligned 2 MiB block at ``haddr`` is mapped by a PMD-mapped anonymous THP: its
        entries are still exactly the frames of one collapsed folio.  Anything that splits the PMD
        in Linux (a partial zap, a COW copy of one page) changes an entry, and the block stops
        counting."""
        if haddr >> 21 not in self.pmd_mapped:
            return False
        pt = self.pt
        base = haddr >> 12
        pte = pt.get(base)
        if pte is None or pte == GUARD:
            return False
        folio = HUGE_PMDS.get(pte >> 2)
        if folio is None:
            return False
        frames = pool()
        if any(frames.refs[f] <= 0 for f in folio):
            del HUGE_PMDS[pte >> 2]  # the folio was freed: a stale record
            return False
        for i, f in enumerate(folio):
            pte = pt.get(base + i)
            if pte is None or pte == GUARD or pte >> 2 != f:
                return False
        return True

    def anon_huge_pages(self, vma: Vma) -> int:
        """Pages of ``vma`` in PMD-mapped anonymous THPs (smaps ``AnonHugePages``): the aligned
        2 MiB blocks wholly inside the VMA (a VMA split inside a block splits its PMD) that are
        :meth:`huge_pmd_at`."""
        first = (vma.start + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
        return sum(PMD_SIZE >> 12 for haddr in range(first, vma.end - PMD_SIZE + 1, PMD_SIZE)
                   if self.huge_pmd_at(haddr))

    # --- memory failure (mm/memory-failure.c; only with Kernel(memory_failure=True)) ------------

    def _failure_page(self, addr: int, what: str) -> int:
        """The frame mapped at ``addr`` (just faulted in by GUP) if the model can poison or migrate
        it: an anonymous page (a private copy included), not the zero page, not in a THP."""
        pte = self.pt[addr >> 12]
        frame = pte >> 2
        if frame == ZERO_FRAME:
            raise NotImplementedError(f"vmkit.sim does not model {what} of the shared zero page "
                                      "(an unwritten anonymous page)")
        if not pte & PTE_ANON:
            raise NotImplementedError(f"vmkit.sim does not model {what} of page-cache pages "
                                      "(file or shared memory)")
        if self.huge_pmd_at(addr & ~(PMD_SIZE - 1)) or thp.large_folio_of(frame) is not None:
            raise NotImplementedError(f"vmkit.sim does not model {what} of a transparent huge page")
        return frame

    def memory_failure(self, addr: int) -> bool:
        """``memory_failure(pfn, MF_ACTION_REQUIRED | MF_COUNT_INCREASED | MF_SW_SIMULATED)`` for
        the anonymous page mapped at ``addr``: the frame is marked poisoned (``PageHWPoison``) and
        leaves service for good; ``hwpoison_user_mappings`` turns every mapping of it into a
        hwpoison entry, on which any later access faults with SIGBUS BUS_MCEERR_AR (the model keeps
        the entries and checks the frame in :meth:`fault`).  Anonymous pages always recover
        (``me_pagecache_clean``: MF_RECOVERED, the call returns 0).  Returns True when the page was
        dirty: ``kill_procs`` then force-kills the tasks that mapped it, and with
        MF_ACTION_REQUIRED the caller gets SIGBUS BUS_MCEERR_AR at ``addr`` as the call returns
        (other processes only with early kill, which is off by default)."""
        frame = self._failure_page(addr, "MADV_HWPOISON")
        lru_add_drain(self.kernel)  # shake_folio: lru_add_drain_all
        frames = pool()
        frames.poison(frame)
        return bool(frames.dirty[frame])

    def soft_offline(self, addr: int) -> None:
        """``soft_offline_page(pfn, MF_COUNT_INCREASED)`` for the anonymous page mapped at ``addr``:
        ``soft_offline_in_use_page`` migrates it (``migrate_pages``: a new frame with the same
        contents and state replaces it in every page table that maps it) and the old frame is
        poisoned, out of service (``page_handle_poison``).  No signal, nothing visible but the
        physical page."""
        frame = self._failure_page(addr, "MADV_SOFT_OFFLINE")
        frames = pool()
        if frame in frames.poisoned:  # "page already poisoned" (unreachable: GUP faults first)
            return
        lru_add_drain(self.kernel)  # get_any_page: shake_page until the folio is on the LRU
        new = frames.alloc()
        frames.copy(new, frame)
        frames.dirty[new] = frames.dirty[frame]
        if frame in LAZYFREE:
            LAZYFREE.discard(frame)
            LAZYFREE.add(new)
        moved = 0
        for task in self.kernel.tasks.values():  # remove_migration_ptes over the rmap
            pt = task.mm.pt
            for vpn, pte in list(pt.items()):
                if pte != GUARD and pte >> 2 == frame:
                    pt[vpn] = (new << 2) | (pte & (PTE_WRITE | PTE_ANON))
                    moved += 1
        frames.refs[new] = moved
        frames.mapcount[new] = moved
        frames.mapcount[frame] -= moved
        frames.poison(frame)
        for _ in range(moved):
            frames.put(frame)


def lru_add_drain(kernel: Kernel) -> None:
    """``lru_add_drain``: the pending lazyfree batch drains; its pages stop being swap-backed and
    count as ``LazyFree`` in smaps."""
    batch = LAZYFREE_BATCHES.pop(kernel, [])
    LAZYFREE.update(batch)


#: ``PAGEVEC_SIZE``/``FOLIO_BATCH_SIZE``: the per-CPU LRU batches drain when they hold this many.
FOLIO_BATCH_SIZE = 31
#: Each model machine's per-CPU ``lru_lazyfree`` batch (one CPU): frames marked lazyfree, not drained.
LAZYFREE_BATCHES: WeakKeyDictionary[Kernel, list[int]] = WeakKeyDictionary()
#: Frames whose lazyfree batch was drained (``!folio_test_swapbacked``); a frame leaves the set when it
#: is marked lazyfree again.  Membership counts only while the frame is a clean anonymous page.
LAZYFREE: set[int] = set()

#: PMD-mapped anonymous THPs made by MADV_COLLAPSE: head frame -> the folio's 512 frames in order.
#: Frames are global (one pool per Python process), so fork children, which map the same frames
#: (``copy_huge_pmd``), see the same huge mappings.
HUGE_PMDS: dict[int, tuple[int, ...]] = {}


__all__ = ["GUARD", "MemoryManager", "PTE_ANON", "PTE_WRITE"]
