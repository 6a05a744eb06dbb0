"""Transparent huge pages of private anonymous memory: PMD-sized faults, the huge zero page, and the
splits that turn a PMD mapping back into page-table entries (mm/huge_memory.c, mm/memory.c).

Our machines' sysfs settings (``/sys/kernel/mm/transparent_hugepage``): ``enabled`` madvise,
``hugepages-2048kB/enabled`` inherit (every other mTHP size never), ``shmem_enabled`` never,
``use_zero_page`` 1.  So only a VM_HUGEPAGE private anonymous VMA gets huge pages on a fault, only of
PMD size (2 MiB), and shared anonymous memory, shmem and files never do.

The model keeps a PMD-mapped THP as the 512 page-table entries of its frames (one folio recorded in
:data:`vmkit.sim.mm.HUGE_PMDS`) plus, per address space, the set of blocks that are PMD-mapped
(``MemoryManager.pmd_mapped``); a block mapped by the huge zero page holds 512 zero-page entries
and is in ``MemoryManager.huge_zero``.  Splitting the PMD (``split_huge_pmd``) only drops the block
from those sets: the entries, hence Rss and mincore, stay as they are, and the folio stays large
(PTE-mapped) until something splits the folio itself (:func:`split_folio`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vmkit.flags import PAGE_SIZE
from vmkit.sim.frames import ZERO_FRAME, pool
from vmkit.sim.vmflags import (
    VM_HUGEPAGE, VM_HUGETLB, VM_LOCKED, VM_NOHUGEPAGE, VM_SPECIAL, VM_WRITE,
)

if TYPE_CHECKING:
    from vmkit.sim.mm import MemoryManager
    from vmkit.sim.vma import Vma

PMD_SIZE = 2 << 20
HPAGE_PMD_NR = PMD_SIZE // PAGE_SIZE


def thp_fault_allowed(mm: MemoryManager, vma: Vma, addr: int) -> bool:
    """The ``create_huge_pmd`` gate of ``__handle_mm_fault`` (mm/memory.c): the PMD is none (no PTE
    table: ``pmd_none``), ``thp_vma_allowable_order(vma, TVA_IN_PF | TVA_ENFORCE_SYSFS, PMD_ORDER)``
    allows it (``__thp_vma_allowable_orders``: anonymous, not VM_NOHUGEPAGE, not hugetlb or special;
    sysfs ``madvise`` wants VM_HUGEPAGE; no anon_vma needed in a fault), and then
    ``do_huge_pmd_anonymous_page``'s ``thp_vma_suitable_order``: the aligned 2 MiB block holding
    ``addr`` lies wholly inside the VMA."""
    if not vma.anonymous or vma.special is not None:
        return False
    flags = vma.flags
    if not flags & VM_HUGEPAGE or flags & (VM_NOHUGEPAGE | VM_HUGETLB | VM_SPECIAL):
        return False
    haddr = addr & ~(PMD_SIZE - 1)
    if haddr < vma.start or haddr + PMD_SIZE > vma.end:
        return False
    return mm.pmd_none(haddr >> 21)


def do_huge_pmd_anonymous_page(mm: MemoryManager, vma: Vma, addr: int, write: bool) -> int:
    """``do_huge_pmd_anonymous_page`` (mm/huge_memory.c): the VMA gets its anon_vma first
    (``vmf_anon_prepare``, also for a read fault), then a read fault maps the huge zero page
    (``use_zero_page`` 1: ``set_huge_zero_folio``; Rss does not count it, mincore shows the 512
    pages) and a write fault a new zeroed 2 MiB folio, dirty and writable
    (``__do_huge_pmd_anonymous_page``: Rss and AnonHugePages +2048 kB).  Returns the frame now
    mapped at ``addr``."""
    mm.anon_vma_prepare(vma)
    haddr = addr & ~(PMD_SIZE - 1)
    base = haddr >> 12
    if not write:
        for vpn in range(base, base + HPAGE_PMD_NR):
            mm.install(vpn, ZERO_FRAME, False, False)
        mm.huge_zero.add(haddr >> 21)
        return ZERO_FRAME
    return _map_new_thp(mm, vma, haddr)[(addr - haddr) >> 12]


def _map_new_thp(mm: MemoryManager, vma: Vma, haddr: int) -> tuple[int, ...]:
    """A new zeroed, dirty 2 MiB anonymous folio mapped by one PMD at ``haddr``
    (``maybe_pmd_mkwrite(pmd_mkdirty())``), recorded in ``HUGE_PMDS`` and ``mm.pmd_mapped``."""
    frames = pool()
    writable = bool(vma.flags & VM_WRITE)
    base = haddr >> 12
    new: list[int] = []
    for vpn in range(base, base + HPAGE_PMD_NR):
        frame = frames.alloc()
        frames.dirty[frame] = 1
        mm.install(vpn, frame, writable, True)
        new.append(frame)
    folio = tuple(new)
    register_folio(folio)
    mm.pmd_mapped.add(haddr >> 21)
    return folio


def do_huge_zero_wp_pmd(mm: MemoryManager, vma: Vma, addr: int) -> int:
    """A write to the huge zero page (``do_huge_pmd_wp_page`` → ``do_huge_zero_wp_pmd``, 6.13+):
    a new zeroed 2 MiB folio replaces it, PMD-mapped (Rss and AnonHugePages +2048 kB), instead of
    the split and single-page copy of older kernels.  Returns the frame now mapped at ``addr``."""
    haddr = addr & ~(PMD_SIZE - 1)
    block = haddr >> 21
    mm.huge_zero.discard(block)
    pt = mm.pt
    for vpn in range(haddr >> 12, (haddr >> 12) + HPAGE_PMD_NR):
        del pt[vpn]  # zero-page entries hold no frame reference
    return _map_new_thp(mm, vma, haddr)[(addr - haddr) >> 12]


def is_huge_block(mm: MemoryManager, block: int) -> bool:
    """Whether the 2 MiB block ``block`` is PMD-mapped (a THP or the huge zero page)."""
    return block in mm.huge_zero or mm.huge_pmd_at(block << 21)


def split_huge_pmd(mm: MemoryManager, block: int) -> None:
    """``split_huge_pmd``/``__split_huge_zero_page_pmd``: the block's PMD becomes a PTE table
    mapping the same pages (the folio stays large, PTE-mapped; AnonHugePages no longer counts it)."""
    mm.huge_zero.discard(block)
    mm.pmd_mapped.discard(block)


def split_huge_pmd_address(mm: MemoryManager, addr: int) -> None:
    """``split_huge_pmd_if_needed`` of ``vma_adjust_trans_huge``: a VMA boundary set inside a
    2 MiB block splits a huge PMD there (a huge PMD lies wholly inside one VMA, so a boundary in its
    block always cuts it); merging the VMAs back never makes it huge again."""
    if addr & (PMD_SIZE - 1):
        split_huge_pmd(mm, addr >> 21)


def huge_blocks_covered(mm: MemoryManager, start: int, end: int) -> list[int]:
    """The PMD-mapped blocks wholly inside [start, end): zapping them (``zap_huge_pmd``) clears the
    PMD and frees the deposited page table, so the block is ``pmd_none`` afterwards and the next
    fault may map a huge page again; a block zapped in part is split first and keeps its table."""
    first, last = (start + PMD_SIZE - 1) >> 21, end >> 21
    return [b for b in range(first, last) if is_huge_block(mm, b)] if last - first < 4096 else [
        b for b in set(mm.huge_zero) | set(mm.pmd_mapped) if first <= b < last and is_huge_block(mm, b)]


def register_folio(folio: tuple[int, ...]) -> None:
    """Records a new 2 MiB anonymous folio (a fault's or MADV_COLLAPSE's) in ``HUGE_PMDS``."""
    from vmkit.sim.mm import HUGE_PMDS

    HUGE_PMDS[folio[0]] = folio
    for frame in folio:
        FOLIO_HEAD[frame] = folio[0]


def large_folio_of(frame: int) -> tuple[int, ...] | None:
    """The frames of the large anonymous folio ``frame`` belongs to (a THP, PMD- or PTE-mapped), or
    None for an order-0 page."""
    from vmkit.sim.mm import HUGE_PMDS

    head = FOLIO_HEAD.get(frame)
    if head is None:
        return None
    folio = HUGE_PMDS.get(head)
    if folio is None or frame not in folio:
        del FOLIO_HEAD[frame]  # a stale record: the folio was split
        return None
    return folio


def folio_page_freed(frame: int) -> None:
    """A page of a large folio was freed (its last mapping zapped): it no longer belongs to the
    folio, so a reused frame is never taken for part of it.  The folio stays large (partially
    mapped) while other pages live, as Linux keeps it until a split."""
    FOLIO_HEAD.pop(frame, None)


def split_folio(mm: MemoryManager, folio: tuple[int, ...]) -> None:
    """``split_folio`` of an anonymous THP mapped only by ``mm`` (the callers skip shared ones):
    the folio becomes 512 order-0 pages, the PMD (if any) is split, and ``remap_page`` with
    RMP_USE_SHARED_ZEROPAGE maps every subpage that holds only zeros to the shared zero page
    (``try_to_map_unused_to_zeropage``: not in an mlocked folio or a VM_LOCKED VMA), freeing it:
    Rss drops, mincore still shows the pages."""
    from vmkit.sim.mm import HUGE_PMDS

    HUGE_PMDS.pop(folio[0], None)
    for frame in folio:
        FOLIO_HEAD.pop(frame, None)
    frames = pool()
    members = set(folio)
    zero = bytes(PAGE_SIZE)
    for vma in list(mm.vmas):
        if not vma.anonymous:
            continue
        for vpn, pte in list(mm.present_pages(vma.start, vma.end)):
            frame = pte >> 2
            if frame not in members:
                continue
            split_huge_pmd(mm, vpn >> 9)
            if vma.flags & VM_LOCKED or frames.read(frame, 0, PAGE_SIZE) != zero:
                continue
            mm.zap_pte(vpn)
            mm.install(vpn, ZERO_FRAME, False, False)


#: frame -> head frame of the 2 MiB anonymous folio it belongs to (see :func:`large_folio_of`).
FOLIO_HEAD: dict[int, int] = {}


def _large_folios_in(mm: MemoryManager, start: int, end: int) -> dict[tuple[int, ...], bool]:
    """The large anonymous folios mapped in [start, end), each with whether the range maps it whole
    (all its pages, in order: ``next - addr == HPAGE_PMD_SIZE`` for a PMD, ``nr ==
    folio_nr_pages`` of ``madvise_folio_pte_batch`` for PTEs)."""
    seen: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for vpn, pte in mm.present_pages(start, end):
        folio = large_folio_of(pte >> 2)
        if folio is not None:
            seen.setdefault(folio, []).append((vpn, pte >> 2))
    out: dict[tuple[int, ...], bool] = {}
    for folio, entries in seen.items():
        base = entries[0][0]
        out[folio] = len(entries) == len(folio) and all(
            vpn == base + i and frame == folio[i] for i, (vpn, frame) in enumerate(entries))
    return out


def _maybe_mapped_shared(folio: tuple[int, ...]) -> bool:
    """``folio_maybe_mapped_shared``: a page of the folio (one still in it) is mapped more than
    once (a fork child maps it too)."""
    frames = pool()
    head = folio[0]
    return any(frames.mapcount[f] > 1 and FOLIO_HEAD.get(f) == head for f in folio)


def wp_large_folio(mm: MemoryManager, vpn: int, frame: int) -> str:
    """A write to a read-only entry of a large anonymous folio (``do_huge_pmd_wp_page``,
    ``wp_can_reuse_anon_folio``): a folio another process maps too is never reused ("copy": the
    PMD, if any, is split and the page copied); an exclusive PMD-mapped one is reused whole
    ("pmd": the PMD becomes writable and dirty, ``maybe_pmd_mkwrite(pmd_mkdirty())``, so every
    page is dirty again, e.g. after MADV_FREE); an exclusive PTE-mapped one reuses the page
    ("page")."""
    folio = large_folio_of(frame)
    if folio is None:
        return "page"
    block = vpn >> 9
    if _maybe_mapped_shared(folio):
        split_huge_pmd(mm, block)
        return "copy"
    if not mm.huge_pmd_at(block << 21):
        return "page"
    frames = pool()
    pt = mm.pt
    base = block << 9
    for i, f in enumerate(folio):
        pt[base + i] |= 1  # PTE_WRITE
        frames.dirty[f] = 1
    return "pmd"


def madvise_cold_pageout_thp(mm: MemoryManager, start: int, end: int, pageout: bool) -> None:
    """The large anonymous folios of ``madvise_cold_or_pageout_pte_range`` without swap: a folio
    mapped elsewhere too is left alone; one the range covers in part is split (``split_folio``);
    one covered whole is only aged by COLD, and PAGEOUT hands it to ``shrink_folio_list``, where
    ``add_to_swap`` fails (no swap) and the large folio is split
    (``split_folio_to_list``).  Each split maps the all-zero subpages to the zero page
    (:func:`split_folio`)."""
    for folio, whole in _large_folios_in(mm, start, end).items():
        if _maybe_mapped_shared(folio):
            continue
        if pageout or not whole:
            split_folio(mm, folio)


def madvise_free_thp(mm: MemoryManager, start: int, end: int) -> bool:
    """The large anonymous folios of MADV_FREE (``madvise_free_huge_pmd``,
    ``madvise_free_pte_range``): one covered in part and mapped only here is split first
    (``split_folio``; then its pages in the range are freed lazily one by one); one covered whole
    is freed lazily as a unit, and a large folio drains its lazyfree batch at once
    (``folio_batch_add`` → ``folio_test_large``).  Returns whether such a whole folio was met (the
    caller drains the batch)."""
    drain = False
    frames = pool()
    for folio, whole in _large_folios_in(mm, start, end).items():
        if _maybe_mapped_shared(folio):
            # Linux skips the whole folio; the model's page walk skips only the pages mapped twice
            if any(frames.mapcount[pte >> 2] == 1 and pte >> 2 in folio
                   for _, pte in mm.present_pages(start, end)):
                raise NotImplementedError("vmkit.sim does not model MADV_FREE of a transparent huge "
                                          "page that another process maps in part")
            continue
        if whole:
            drain = True
            continue
        split_folio(mm, folio)
    return drain
