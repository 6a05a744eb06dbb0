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

from vmkit.errors import BusError, SegmentationFault, os_error
from vmkit.flags import PAGE_SIZE, BusCode, Map, SegvCode
from vmkit.sim import anon
from vmkit.sim.anon import is_mergeable_anon_vma
from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim.fs import Inode, OpenFile
from vmkit.sim.vma import Vma, VmaSet
from vmkit.sim.vmflags import (
    VM_ACCOUNT, VM_EXEC, VM_GROWSDOWN, VM_HUGETLB, VM_IGNORE_MERGE, VM_LOCKED, VM_LOCKED_MASK,
    VM_MAYSHARE, VM_NORESERVE, VM_READ, VM_SHARED, VM_SPECIAL, VM_STACK, VM_WRITE,
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


def pte_frame(pte: int) -> int:
    return pte >> 2


class MemoryManager:
    """``struct mm_struct`` of one process."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.vmas = VmaSet()
        self.pt: dict[int, int] = {}
        self.total_vm = 0
        self.locked_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        self.def_flags = 0
        self.start_brk = 0
        self.brk = 0
        self.start_stack = 0
        self.mmap_base = kernel.mmap_base()
        self.mmap_legacy_base = kernel.mmap_legacy_base()
        self.topdown = not kernel.legacy_va_layout
        #: ``[vsyscall]`` shown in maps (not a VMA).
        self.vsyscall = True
        #: The owning task's limits and credentials, consulted by may_expand_vm & co.
        self.task: object = None

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

    def _gaps_topdown(self, low: int, high: int) -> Iterator[tuple[int, int]]:
        """Free ranges [a, b) within [low, high), highest first."""
        top = high
        for vma in self.vmas.descending_from(high):
            if vma.end < top:
                a = max(vma.end, low)
                if a < top:
                    yield a, top
            top = min(top, vma.start)
            if top <= low:
                return
        if low < top:
            yield low, top

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
            for a, b in self._gaps_topdown(low, high):
                if b - a >= need:
                    break
            else:
                raise os_error(errno.ENOMEM)
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

    def arch_get_unmapped_area(self, addr: int, length: int, flags: int) -> int:
        """x86 ``arch_get_unmapped_area`` (bottom-up; MAP_32BIT's window)."""
        if flags & Map.MAP_FIXED:
            return addr
        if flags & Map.MAP_32BIT:
            begin, end = MMAP_32BIT_BASE, MMAP_32BIT_END
        else:
            begin, end = self.mmap_legacy_base, DEFAULT_MAP_WINDOW
        if length > end:
            raise os_error(errno.ENOMEM)
        if addr:
            addr = (addr + PAGE_SIZE - 1) & PAGE_MASK
            if end - length >= addr and self._hint_fits(addr, length):
                return addr
        return self.unmapped_area(length, begin, end)

    def arch_get_unmapped_area_topdown(self, addr: int, length: int, flags: int) -> int:
        """x86 ``arch_get_unmapped_area_topdown``: MAP_FIXED as given, a fitting hint, the highest
        gap below mmap_base, else bottom-up."""
        if length > DEFAULT_MAP_WINDOW:
            raise os_error(errno.ENOMEM)
        if flags & Map.MAP_FIXED:
            return addr
        addr0 = addr
        if flags & Map.MAP_32BIT:
            return self.arch_get_unmapped_area(addr0, length, flags)
        if addr:
            addr &= PAGE_MASK
            if DEFAULT_MAP_WINDOW - length >= addr and self._hint_fits(addr, length):
                return addr
        low = 1 << 32 if flags & Map.MAP_ABOVE4G else PAGE_SIZE
        try:
            return self.unmapped_area_topdown(length, low, self.mmap_base)
        except OSError:
            return self.arch_get_unmapped_area(addr0, length, flags)

    def mm_get_unmapped_area(self, addr: int, length: int, flags: int) -> int:
        if self.topdown:
            return self.arch_get_unmapped_area_topdown(addr, length, flags)
        return self.arch_get_unmapped_area(addr, length, flags)

    def thp_get_unmapped_area(self, addr: int, length: int, off: int, flags: int) -> int:
        """``thp_get_unmapped_area_vmflags``: pad by 2 MiB and align (mm/huge_memory.c)."""
        off_end = off + length
        off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
        if not (off_end <= off_align or off_end - off_align < PMD_SIZE):
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
        """``hugetlb_get_unmapped_area``: huge-page-aligned, top-down; MAP_FIXED must be aligned."""
        if length & (size - 1):
            raise os_error(errno.EINVAL)
        if flags & Map.MAP_FIXED:
            if addr & (size - 1):
                raise os_error(errno.EINVAL)
            return addr
        if addr:
            addr = (addr + size - 1) & ~(size - 1)
            if DEFAULT_MAP_WINDOW - length >= addr and self._hint_fits(addr, length):
                return addr
        return self.unmapped_area_topdown(length, PAGE_SIZE, self.mmap_base, align_mask=size - 1)

    def get_unmapped_area(self, file: OpenFile | None, addr: int, length: int, pgoff: int,
                          flags: int, huge_size: int = 0) -> int:
        """``__get_unmapped_area`` (mm/mmap.c); ``huge_size`` for hugetlbfs files."""
        if length > DEFAULT_MAP_WINDOW:
            raise os_error(errno.ENOMEM)
        if huge_size:
            result = self.hugetlb_get_unmapped_area(addr, length, flags, huge_size)
        elif file is not None and file.inode.mount.name == "ext4" and file.inode.kind == "reg":
            result = self.thp_get_unmapped_area(addr, length, pgoff << 12, flags)
        elif file is None and not flags & Map.MAP_SHARED and not addr and length % PMD_SIZE == 0:
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

    def _can_merge_after(self, prev: Vma, flags: int, file: OpenFile | None, anon_vma: object,
                         pgoff: int) -> bool:
        return (self._mergeable(prev, flags, file)
                and is_mergeable_anon_vma(anon_vma, prev.anon_vma, prev)  # type: ignore[arg-type]
                and prev.pgoff + prev.pages == pgoff)

    def _can_merge_before(self, nxt: Vma, flags: int, file: OpenFile | None, anon_vma: object,
                          pgoff: int, pages: int) -> bool:
        return (self._mergeable(nxt, flags, file)
                and is_mergeable_anon_vma(anon_vma, nxt.anon_vma, nxt)  # type: ignore[arg-type]
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
                        pgoff: int) -> Vma | None:
        """``vma_merge_new_range``: extend prev and/or next over [start, end) if Linux would."""
        if flags & VM_SPECIAL:
            return None
        prev = self.vmas.below(start)
        nxt = self.vmas.find(start)
        if nxt is not None and nxt.start < end:
            nxt = None
        pages = (end - start) >> 12
        left = (prev is not None and prev.end == start
                and self._can_merge_after(prev, flags, file, None, pgoff))
        right = (nxt is not None and nxt.start == end
                 and self._can_merge_before(nxt, flags, file, None, pgoff, pages))
        if right and left:
            assert prev is not None and nxt is not None
            right = is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None)
        if left:
            assert prev is not None
            if right:
                assert nxt is not None
                self._dup_anon_vma(prev, nxt)
                self._drop_vma(nxt)
                prev.end = nxt.end
                return prev
            prev.end = end
            return prev
        if right:
            assert nxt is not None
            self._set_start(nxt, start, nxt.pgoff - pages)
            return nxt
        return None

    def insert_vma(self, vma: Vma) -> None:
        self.vmas.add(vma)

    def split_vma(self, vma: Vma, addr: int, new_below: bool) -> Vma:
        """``split_vma``: ENOMEM at max_map_count; returns the new piece (below or above ``addr``)."""
        if self.map_count >= self.kernel.max_map_count:
            raise os_error(errno.ENOMEM)
        return self.__split_vma(vma, addr, new_below)

    def __split_vma(self, vma: Vma, addr: int, new_below: bool) -> Vma:
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
                      and self._can_merge_after(prev, flags, file, anon_vma, pgoff))
        merge_right = (nxt is not None and nxt.start == end
                       and self._can_merge_before(nxt, flags, file, anon_vma, pgoff, pages))
        if merge_left and merge_right:
            assert prev is not None and nxt is not None
            merge_right = is_mergeable_anon_vma(prev.anon_vma, nxt.anon_vma, None)
        if not merge_left and not merge_right:
            return None
        delete_vma = left_side and right_side
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
        vmas = self.vmas.overlapping(start, end)
        if not vmas:
            return 0
        first, last = vmas[0], vmas[-1]
        if first.start < start:
            if end < first.end and self.map_count >= self.kernel.max_map_count:
                raise os_error(errno.ENOMEM)
            self.__split_vma(first, start, new_below=True)
        if last.end > end:
            self.__split_vma(last, end, new_below=False)
        removed = 0
        for vma in self.vmas.overlapping(start, end):
            removed += vma.pages
            self.remove_vma(vma)
        return removed

    def remove_vma(self, vma: Vma) -> None:
        """Unmaps a whole VMA: its pages, counters, anon identity."""
        self.zap_range(vma.start, vma.end)
        self.account_vma(vma, -1)
        self.vmas.remove(vma)
        anon.unlink_anon_vmas(vma)

    # --- pages ----------------------------------------------------------------------------------

    def zap_pte(self, vpn: int, keep_guard: bool = True) -> None:
        pte = self.pt.get(vpn)
        if pte is None or (pte == GUARD and keep_guard):
            return
        del self.pt[vpn]
        if pte == GUARD:
            return
        frame = pte >> 2
        if frame != ZERO_FRAME:
            frames = pool()
            frames.mapcount[frame] -= 1
            frames.put(frame)

    def zap_range(self, start: int, end: int, keep_guard: bool = False) -> None:
        """Drops the page-table entries of [start, end) (``zap_page_range_single``)."""
        first, last = start >> 12, end >> 12
        pt = self.pt
        if last - first > len(pt):
            for vpn in [v for v in pt if first <= v < last]:
                self.zap_pte(vpn, keep_guard)
        else:
            for vpn in range(first, last):
                if vpn in pt:
                    self.zap_pte(vpn, keep_guard)

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
        if last - first > len(pt):
            for vpn in sorted(v for v in pt if first <= v < last):
                if pt[vpn] != GUARD:
                    yield vpn, pt[vpn]
        else:
            for vpn in range(first, last):
                pte = pt.get(vpn)
                if pte is not None and pte != GUARD:
                    yield vpn, pte

    def neighbours(self, vma: Vma) -> tuple[Vma | None, Vma | None]:
        return self.vmas.prev(vma), self.vmas.next(vma)

    def anon_vma_prepare(self, vma: Vma) -> None:
        if vma.anon_vma is None:
            prev, nxt = self.neighbours(vma)
            anon.anon_vma_prepare(vma, prev, nxt)

    def file_page_limit(self, vma: Vma) -> int:
        assert vma.file is not None
        return vma.file.inode.pages()

    def fault(self, vma: Vma, addr: int, write: bool) -> int:
        """``handle_mm_fault`` for a permitted access: returns the frame now mapped at ``addr``.

        Raises BusError past the end of a file (``filemap_fault``: VM_FAULT_SIGBUS) and for hugetlb
        memory the empty pool cannot back.
        """
        vpn = addr >> 12
        pte = self.pt.get(vpn)
        if pte is not None and pte != GUARD:
            if not write or pte & PTE_WRITE:
                return pte >> 2
            return self._wp_fault(vma, vpn, pte)
        if vma.flags & VM_HUGETLB:
            raise BusError(addr, BusCode.BUS_ADRERR)
        if vma.anonymous:
            if not write:
                self.install(vpn, ZERO_FRAME, False, False)
                return ZERO_FRAME
            self.anon_vma_prepare(vma)
            frame = pool().alloc()
            pool().dirty[frame] = 1
            self.install(vpn, frame, True, True)
            return frame
        inode = vma.file.inode if vma.file is not None else None
        assert inode is not None
        index = vma.pgoff_at(addr)
        if index >= inode.pages():
            raise BusError(addr, BusCode.BUS_ADRERR)
        cache_frame = inode.get_page(index)
        if vma.flags & VM_SHARED:
            self.install(vpn, cache_frame, bool(vma.flags & VM_WRITE), False)
            if write:
                inode.mark_dirty(index)
                pool().dirty[cache_frame] = 1
            return cache_frame
        if not write:
            self.install(vpn, cache_frame, False, False)
            return cache_frame
        self.anon_vma_prepare(vma)
        frame = pool().alloc()
        pool().copy(frame, cache_frame)
        pool().dirty[frame] = 1
        self.install(vpn, frame, True, True)
        return frame

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
        if pte & PTE_ANON and frames.refs[frame] == 1:
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
            vma = self.find_vma(pos)
            if vma is None:
                raise SegmentationFault(pos, SegvCode.SEGV_MAPERR)
            if vma.start > pos:
                if not (vma.flags & VM_GROWSDOWN) or not self.expand_stack(vma, pos):
                    raise SegmentationFault(pos, SegvCode.SEGV_MAPERR)
            if write and not vma.flags & VM_WRITE or not write and not vma.flags & (VM_READ | VM_WRITE | VM_EXEC):
                raise SegmentationFault(pos, SegvCode.SEGV_ACCERR)
            if self.pt.get(pos >> 12) == GUARD:
                raise SegmentationFault(pos, SegvCode.SEGV_MAPERR)
            frame = self.fault(vma, pos, write)
            inpage = pos & (PAGE_SIZE - 1)
            take = min(PAGE_SIZE - inpage, end - pos)
            visit(frame, inpage, done, take)
            done += take
            pos += take

    # --- stack (mm/mmap.c expand_downwards, acct_stack_growth) -----------------------------------

    def expand_stack(self, vma: Vma, addr: int) -> bool:
        """``expand_downwards``: grow a GROWSDOWN VMA down to ``addr``'s page, keeping the guard gap
        from an accessible previous VMA and the stack rlimit."""
        address = addr & PAGE_MASK
        if address < self.kernel.min_addr:
            return False
        prev = self.vmas.below(vma.start)
        if prev is not None and prev is not vma and prev.end > address:
            return False
        if prev is not None and prev is not vma and prev.flags & (VM_READ | VM_WRITE | VM_EXEC):
            if address - prev.end < self.kernel.stack_guard_gap:
                return False
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

        for attr in ("start_brk", "brk", "start_stack", "mmap_base", "mmap_legacy_base", "topdown",
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
            for vpn, pte in list(self.present_pages(vma.start, vma.end)):
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
            for vpn in range(vma.start >> 12, vma.end >> 12):
                if self.pt.get(vpn) == GUARD:
                    child.pt[vpn] = GUARD

    # --- tear-down ------------------------------------------------------------------------------

    def exit_mmap(self) -> None:
        """``exit_mmap``: every VMA and page goes."""
        for vma in list(self.vmas):
            self.remove_vma(vma)
        self.pt.clear()

    # --- views ----------------------------------------------------------------------------------

    def file_vmas(self, inode: Inode) -> list[Vma]:
        return [v for v in self.vmas if v.file is not None and v.file.inode is inode]

    def rss(self, vma: Vma) -> int:
        """Resident pages of a VMA (the zero page does not count, ``vm_normal_page``)."""
        return sum(1 for _, pte in self.present_pages(vma.start, vma.end) if pte >> 2 != ZERO_FRAME)

    def anon_pages(self, vma: Vma) -> int:
        return sum(1 for _, pte in self.present_pages(vma.start, vma.end) if pte & PTE_ANON)


__all__ = ["GUARD", "MemoryManager", "PTE_ANON", "PTE_WRITE", "VM_ACCOUNT", "VM_MAYSHARE", "VM_NORESERVE"]
