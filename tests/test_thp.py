"""Transparent huge pages on anonymous faults, and what becomes of them.

Our machines: THP ``enabled`` madvise, ``hugepages-2048kB`` inherit, ``shmem_enabled`` never,
``use_zero_page`` 1.  A fault in a VM_HUGEPAGE private anonymous VMA whose aligned 2 MiB block lies
wholly inside the VMA and has no page table yet maps a PMD THP (write) or the huge zero page (read)
(mm/memory.c ``__handle_mm_fault`` → ``create_huge_pmd``; mm/huge_memory.c
``do_huge_pmd_anonymous_page``).  Every number here was seen on the real kernel (6.18).
"""

from __future__ import annotations

import os
import signal

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import kb, smaps_of

PMD = 2 << 20
FIXED = vmkit.MAP_FIXED
M = vmkit


def huge(p: Process, length: int = PMD, flags: int = PRIVATE_ANON, advise: bool = True,
         prot: int = RW) -> int:
    """A MAP_FIXED mapping at ARENA (2 MiB-aligned), with MADV_HUGEPAGE unless ``advise`` is False."""
    addr = p.mmap(ARENA, length, prot, flags | FIXED)
    if advise:
        p.madvise(addr, length, M.MADV_HUGEPAGE)
    return addr


def figures(p: Process, addr: int) -> tuple[int, int]:
    """(Rss, AnonHugePages) in kB of the VMA holding ``addr``."""
    fields = smaps_of(p, addr)
    return kb(fields["Rss"]), kb(fields["AnonHugePages"])


def resident(p: Process, addr: int, length: int = PMD) -> int:
    return sum(p.mincore(addr, length))


class TestFault:
    def test_write_fault_maps_a_pmd_thp(self, proc: Process) -> None:
        """One byte written in a VM_HUGEPAGE block: Rss and AnonHugePages 2048 kB, mincore 1 for the
        512 pages, the rest reads zeros (``__do_huge_pmd_anonymous_page``)."""
        addr = huge(proc, 2 * PMD)
        proc.write(addr + 5, b"x")
        assert figures(proc, addr) == (2048, 2048)
        assert resident(proc, addr, 2 * PMD) == 512
        assert proc.read(addr + PMD - PAGE, 8) == bytes(8)
        assert kb(smaps_of(proc, addr)["Private_Dirty"]) == 2048

    def test_read_fault_maps_the_huge_zero_page(self, proc: Process) -> None:
        """A read fault maps the huge zero page: mincore 1 for the 512 pages, Rss 0 (not a normal
        page), and the VMA gets its anon_vma (``vmf_anon_prepare``)."""
        addr = huge(proc)
        rss = kb(proc.status()["VmRSS"])
        assert proc.read(addr + 3 * PAGE, 4) == bytes(4)
        assert resident(proc, addr) == 512
        assert figures(proc, addr) == (0, 0)
        assert kb(proc.status()["VmRSS"]) - rss < 16  # the huge zero page is not counted

    def test_write_to_the_huge_zero_page_maps_a_new_thp(self, proc: Process) -> None:
        """6.18 (``do_huge_zero_wp_pmd``): a write to the huge zero page replaces it with a whole new
        THP, not a single-page copy."""
        addr = huge(proc)
        proc.read(addr, 1)
        proc.write(addr + PAGE, b"y")
        assert figures(proc, addr) == (2048, 2048)
        assert proc.read(addr + PAGE, 1) == b"y"

    def test_read_only_vma_reads_the_huge_zero_page(self, proc: Process) -> None:
        addr = huge(proc, prot=vmkit.PROT_READ)
        proc.read(addr, 1)
        assert (resident(proc, addr), figures(proc, addr)) == (512, (0, 0))

    def test_without_madv_hugepage_a_fault_maps_one_page(self, proc: Process) -> None:
        """sysfs ``enabled`` is madvise: no VM_HUGEPAGE, no THP."""
        addr = huge(proc, advise=False)
        proc.write(addr, b"x")
        assert figures(proc, addr) == (4, 0)
        assert resident(proc, addr) == 1

    def test_nohugepage_and_map_stack(self, proc: Process) -> None:
        """MADV_NOHUGEPAGE after MADV_HUGEPAGE clears it: no THP.  MAP_STACK sets VM_NOHUGEPAGE, and a
        later MADV_HUGEPAGE replaces it: THP."""
        addr = huge(proc)
        proc.madvise(addr, PMD, M.MADV_NOHUGEPAGE)
        proc.write(addr, b"x")
        assert figures(proc, addr) == (4, 0)
        proc.munmap(addr, PMD)
        addr = huge(proc, flags=PRIVATE_ANON | vmkit.MAP_STACK)
        proc.write(addr, b"x")
        assert figures(proc, addr) == (2048, 2048)

    def test_block_partly_outside_the_vma_gets_small_pages(self, proc: Process) -> None:
        """A 3 MiB VMA starting 1 MiB into a block: a fault in the first (partial) block maps one page,
        one in the second (whole) block a THP (``thp_vma_suitable_order``)."""
        addr = proc.mmap(ARENA + PMD // 2, 3 * PMD // 2, RW, PRIVATE_ANON | FIXED)
        proc.madvise(addr, 3 * PMD // 2, M.MADV_HUGEPAGE)
        proc.write(addr, b"x")
        assert figures(proc, addr) == (4, 0)
        proc.write(ARENA + PMD, b"x")
        assert figures(proc, addr) == (2052, 2048)

    def test_existing_page_table_means_small_pages(self, proc: Process) -> None:
        """A block that already has a PTE table (a small fault before MADV_HUGEPAGE, or a table kept
        after a zap) is not ``pmd_none``: later faults map single pages."""
        addr = huge(proc, advise=False)
        proc.write(addr, b"x")
        proc.madvise(addr, PMD, M.MADV_HUGEPAGE)
        proc.write(addr + 3 * PAGE, b"x")
        assert figures(proc, addr) == (8, 0)
        proc.munmap(addr, PMD)
        addr = huge(proc, advise=False)
        proc.write(addr, b"x")
        proc.madvise(addr, PAGE, M.MADV_DONTNEED)  # the table stays
        proc.madvise(addr, PMD, M.MADV_HUGEPAGE)
        proc.write(addr + 3 * PAGE, b"x")
        assert figures(proc, addr) == (4, 0)

    def test_shared_anonymous_memory_gets_no_thp(self, proc: Process) -> None:
        """``shmem_enabled`` never: shared anonymous memory faults page by page."""
        addr = huge(proc, flags=SHARED_ANON)
        proc.write(addr, b"x")
        assert figures(proc, addr) == (4, 0)
        assert smaps_of(proc, addr)["THPeligible"] == "0"

    def test_populate_and_mlock_fault_thps(self, proc: Process) -> None:
        """MADV_POPULATE_WRITE and mlock fault through the same path: one THP per block."""
        addr = huge(proc, 2 * PMD)
        proc.madvise(addr, PMD, M.MADV_POPULATE_WRITE)
        proc.mlock(addr + PMD, PMD)
        assert figures(proc, addr) == (2048, 2048)
        assert figures(proc, addr + PMD) == (2048, 2048)
        assert kb(smaps_of(proc, addr + PMD)["Locked"]) == 2048

    def test_map_populate_before_madv_hugepage(self, proc: Process) -> None:
        """MAP_POPULATE faults the pages first (no VM_HUGEPAGE yet): small pages stay small."""
        addr = proc.mmap(ARENA, PMD, RW, PRIVATE_ANON | FIXED | vmkit.MAP_POPULATE)
        proc.madvise(addr, PMD, M.MADV_HUGEPAGE)
        proc.write(addr, b"x")
        assert figures(proc, addr) == (2048, 0)


class TestSplit:
    def test_dontneed_of_the_whole_thp_frees_the_table(self, proc: Process) -> None:
        """``zap_huge_pmd`` frees the PMD with its deposited table: the next write faults a THP."""
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.madvise(addr, PMD, M.MADV_DONTNEED)
        assert resident(proc, addr) == 0
        proc.write(addr + PAGE, b"y")
        assert figures(proc, addr) == (2048, 2048)

    def test_dontneed_of_one_page_splits_the_pmd(self, proc: Process) -> None:
        """A partial zap splits the PMD (``split_huge_pmd``): 511 pages stay mapped, AnonHugePages 0,
        and refaulting the hole maps one page."""
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.madvise(addr, PAGE, M.MADV_DONTNEED)
        assert figures(proc, addr) == (2044, 0)
        assert resident(proc, addr) == 511
        proc.write(addr, b"z")
        assert figures(proc, addr) == (2048, 0)

    def test_mprotect_of_part_splits_for_good(self, proc: Process) -> None:
        """mprotect of one page splits the VMA and the PMD (``vma_adjust_trans_huge``); restoring
        the protection merges the VMAs back but the PMD stays split.  mprotect of the whole block
        keeps it huge (``change_huge_pmd``)."""
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.mprotect(addr, PMD, vmkit.PROT_READ)
        assert figures(proc, addr) == (2048, 2048)
        proc.mprotect(addr, PMD, RW)
        proc.mprotect(addr, PAGE, vmkit.PROT_READ)
        assert figures(proc, addr + PAGE) == (2044, 0)
        proc.mprotect(addr, PAGE, RW)
        assert figures(proc, addr) == (2048, 0)

    def test_munmap_of_one_page_and_mlock_of_one_page_split(self, proc: Process) -> None:
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.munmap(addr + PMD - PAGE, PAGE)
        assert figures(proc, addr) == (2044, 0)
        proc.munmap(addr, PMD)
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.mlock(addr, PAGE)
        assert figures(proc, addr + PAGE) == (2044, 0)

    def test_whole_pmd_mlock_and_nohugepage_keep_it(self, proc: Process) -> None:
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.madvise(addr, PMD, M.MADV_NOHUGEPAGE)
        proc.mlock(addr, PMD)
        assert figures(proc, addr) == (2048, 2048)

    def test_mremap_moves_an_aligned_pmd_and_splits_otherwise(self, proc: Process) -> None:
        """``move_huge_pmd`` for an aligned whole-PMD extent; an unaligned destination splits it,
        and moving it back to an aligned place does not make it huge again."""
        addr = huge(proc)
        proc.write(addr, b"x")
        new = proc.mremap(addr, PMD, PMD, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, ARENA + 4 * PMD)
        assert figures(proc, new) == (2048, 2048)
        new = proc.mremap(new, PMD, PMD, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, ARENA + PAGE)
        assert figures(proc, new) == (2048, 0)
        new = proc.mremap(new, PMD, PMD, M.MREMAP_MAYMOVE | M.MREMAP_FIXED, ARENA + 8 * PMD)
        assert figures(proc, new) == (2048, 0)

    def test_huge_zero_page_split(self, proc: Process) -> None:
        """A split huge zero page becomes 512 zero-page entries: a write then copies one page."""
        addr = huge(proc)
        proc.read(addr, 1)
        proc.madvise(addr, PAGE, M.MADV_DONTNEED)
        proc.write(addr + PAGE, b"z")
        assert figures(proc, addr) == (4, 0)
        assert resident(proc, addr) == 511
        proc.munmap(addr, PMD)
        addr = huge(proc)
        proc.read(addr, 1)
        proc.mprotect(addr, PAGE, vmkit.PROT_READ)
        proc.mprotect(addr, PAGE, RW)
        proc.write(addr + 2 * PAGE, b"z")
        assert figures(proc, addr) == (4, 0)

    def test_huge_zero_page_dontneed_whole_then_write(self, proc: Process) -> None:
        addr = huge(proc)
        proc.read(addr, 1)
        proc.madvise(addr, PMD, M.MADV_DONTNEED)
        proc.write(addr + 2 * PAGE, b"z")
        assert figures(proc, addr) == (2048, 2048)

    def test_collapse_of_the_huge_zero_page_leaves_it(self, proc: Process) -> None:
        """MADV_COLLAPSE counts a huge zero PMD as already mapped (SCAN_PMD_MAPPED): success, Rss 0."""
        addr = huge(proc)
        proc.read(addr, 1)
        proc.madvise(addr, PMD, M.MADV_COLLAPSE)
        assert figures(proc, addr) == (0, 0)


class TestFork:
    def test_fork_shares_the_pmd_and_a_write_splits_it(self, proc: Process) -> None:
        """``copy_huge_pmd``: the child maps the same THP.  A write in either process splits its PMD
        and copies one page (``do_huge_pmd_wp_page`` falls back: the folio is shared)."""
        addr = huge(proc)
        proc.write(addr, b"x")
        child = proc.fork()
        try:
            assert figures(child, addr) == (2048, 2048)
            child.write(addr, b"c")
            assert figures(child, addr) == (2048, 0)
            assert figures(proc, addr) == (2048, 2048)
            proc.write(addr + 2 * PAGE, b"p")
            fields = smaps_of(proc, addr)
            assert (kb(fields["AnonHugePages"]), kb(fields["Private_Dirty"]),
                    kb(fields["Shared_Dirty"])) == (0, 8, 2040)
        finally:
            child.kill(signal.SIGKILL)
            child.wait()

    def test_write_after_the_child_is_gone_reuses_the_thp(self, proc: Process) -> None:
        addr = huge(proc)
        proc.write(addr, b"x")
        child = proc.fork()
        child.kill(signal.SIGKILL)
        child.wait()
        proc.write(addr + 2 * PAGE, b"p")
        assert figures(proc, addr) == (2048, 2048)

    def test_fork_copies_the_huge_zero_page(self, proc: Process) -> None:
        addr = huge(proc)
        proc.read(addr, 1)
        child = proc.fork()
        try:
            assert (figures(child, addr), resident(child, addr)) == ((0, 0), 512)
            child.write(addr, b"c")
            assert figures(child, addr) == (2048, 2048)
        finally:
            child.kill(signal.SIGKILL)
            child.wait()


class TestReclaimAdvice:
    @pytest.mark.parametrize("advice", [M.MADV_FREE, M.MADV_COLD, M.MADV_PAGEOUT],
                             ids=lambda a: a.name)
    def test_advice_on_one_page_splits_the_folio(self, proc: Process, advice: int) -> None:
        """FREE/COLD/PAGEOUT of part of a THP split the folio (``split_folio``), and the split maps
        every all-zero subpage to the shared zero page (``try_to_map_unused_to_zeropage``): of a
        THP with one written page, Rss 4 kB remains, mincore still 512."""
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.madvise(addr, PAGE, advice)
        assert figures(proc, addr) == (4, 0)
        assert resident(proc, addr) == 512

    def test_pageout_of_the_whole_thp_splits_it_without_swap(self, proc: Process) -> None:
        """PAGEOUT of a whole THP: no swap, so ``shrink_folio_list`` splits it; zero subpages go to the
        zero page, written ones stay."""
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.write(addr + 7 * PAGE, b"x")
        proc.madvise(addr, PMD, M.MADV_PAGEOUT)
        assert figures(proc, addr) == (8, 0)
        assert proc.read(addr + 7 * PAGE, 1) == b"x"

    def test_free_and_cold_of_the_whole_thp(self, proc: Process) -> None:
        """FREE of a whole THP keeps it and lazyfrees it as a unit (LazyFree 2048 kB at once: a large
        folio drains the batch); COLD of the whole THP only ages it."""
        addr = huge(proc)
        proc.write(addr, b"x")
        proc.madvise(addr, PMD, M.MADV_COLD)
        assert figures(proc, addr) == (2048, 2048)
        proc.madvise(addr, PMD, M.MADV_FREE)
        fields = smaps_of(proc, addr)
        assert (kb(fields["AnonHugePages"]), kb(fields["LazyFree"])) == (2048, 2048)

    def test_shared_thp_is_left_alone_by_cold(self, proc: Process) -> None:
        """A THP that a fork child maps too is not split by COLD of part of it."""
        addr = huge(proc)
        proc.write(addr, b"x")
        child = proc.fork()
        try:
            proc.madvise(addr, PAGE, M.MADV_COLD)
            assert figures(proc, addr) == (2048, 2048)
        finally:
            child.kill(signal.SIGKILL)
            child.wait()

    def test_written_thp_pageout_keeps_every_page(self, proc: Process) -> None:
        """Subpages that hold data stay mapped after the split: a fully written THP keeps Rss 2048."""
        addr = huge(proc)
        proc.write(addr, b"\x01" * PMD)
        proc.madvise(addr, PMD, M.MADV_PAGEOUT)
        assert figures(proc, addr) == (2048, 0)


def test_private_file_mapping_gets_no_thp(proc: Process, file_path: str) -> None:
    """Only anonymous VMAs get THPs on a fault: a write to a private file mapping copies one page."""
    fd = proc.open(file_path, os.O_RDWR | os.O_CREAT)
    proc.ftruncate(fd, PMD)
    proc.pwrite(fd, b"\x01", 0)
    addr = proc.mmap(ARENA, PMD, RW, vmkit.MAP_PRIVATE | FIXED, fd, 0)
    proc.read(addr, 1)  # cached: no readahead
    proc.madvise(addr, PMD, M.MADV_HUGEPAGE)
    proc.write(addr, b"x")
    assert kb(smaps_of(proc, addr)["AnonHugePages"]) == 0
    assert kb(smaps_of(proc, addr)["Anonymous"]) == 4


def test_private_dev_zero_is_anonymous_memory(proc: Process) -> None:
    """A private mapping of /dev/zero is anonymous (``vma_set_anonymous``): it gets a THP.  A shared
    one is shmem (``shmem_enabled`` never): one page."""
    fd = proc.open("/dev/zero", os.O_RDWR)
    addr = proc.mmap(ARENA, PMD, RW, vmkit.MAP_PRIVATE | FIXED, fd, 0)
    proc.madvise(addr, PMD, M.MADV_HUGEPAGE)
    proc.write(addr, b"x")
    assert figures(proc, addr) == (2048, 2048)
    shared = proc.mmap(ARENA + 2 * PMD, PMD, RW, vmkit.MAP_SHARED | FIXED, fd, 0)
    proc.madvise(shared, PMD, M.MADV_HUGEPAGE)
    proc.write(shared, b"x")
    assert figures(proc, shared) == (4, 0)


def test_partly_unmapped_thp_is_still_one_folio(proc: Process) -> None:
    """After a partial zap the THP is PTE-mapped but still one large folio (511 pages mapped): COLD
    of another page splits it, and its unwritten pages go to the zero page."""
    addr = huge(proc)
    proc.write(addr, b"x")
    proc.write(addr + 5 * PAGE, b"x")
    proc.madvise(addr, PAGE, M.MADV_DONTNEED)
    assert figures(proc, addr) == (2044, 0)
    proc.madvise(addr + PAGE, PAGE, M.MADV_COLD)
    assert figures(proc, addr) == (4, 0)
    assert resident(proc, addr) == 511


def test_free_of_a_shared_thp_leaves_it(proc: Process) -> None:
    """MADV_FREE skips a THP that a fork child maps too (``folio_maybe_mapped_shared``)."""
    addr = huge(proc)
    proc.write(addr, b"x")
    child = proc.fork()
    try:
        proc.madvise(addr, PAGE, M.MADV_FREE)
        proc.madvise(addr, PMD, M.MADV_FREE)
        fields = smaps_of(proc, addr)
        assert (kb(fields["AnonHugePages"]), kb(fields["LazyFree"]), kb(fields["Rss"])) == (2048, 0, 2048)
    finally:
        child.kill(signal.SIGKILL)
        child.wait()


def test_huge_zero_page_of_a_read_only_vma_then_written(proc: Process) -> None:
    """The huge zero page of a PROT_READ VMA, after mprotect to RW, turns into a THP on a write."""
    addr = huge(proc, prot=vmkit.PROT_READ)
    proc.read(addr, 1)
    proc.mprotect(addr, PMD, RW)
    proc.write(addr + PAGE, b"x")
    assert figures(proc, addr) == (2048, 2048)


def test_guard_markers_in_a_thp(proc: Process) -> None:
    """A guard page inside a THP splits it; guards over the whole block zap the PMD, and after their
    removal the block keeps the markers' page table, so a write maps one page."""
    addr = huge(proc)
    proc.write(addr, b"x")
    proc.madvise(addr + 2 * PAGE, PAGE, M.MADV_GUARD_INSTALL)
    assert (figures(proc, addr), resident(proc, addr)) == ((2044, 0), 511)
    proc.munmap(addr, PMD)
    addr = huge(proc)
    proc.write(addr, b"x")
    proc.madvise(addr, PMD, M.MADV_GUARD_INSTALL)
    proc.madvise(addr, PMD, M.MADV_GUARD_REMOVE)
    proc.write(addr + 2 * PAGE, b"y")
    assert figures(proc, addr) == (4, 0)
