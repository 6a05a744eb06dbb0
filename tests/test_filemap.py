"""Faults on file mappings: fault-around, mmap readahead, large page-cache folios, page-cache dirt.

mm/memory.c ``do_read_fault``/``do_fault_around``/``finish_fault``; mm/filemap.c ``filemap_fault``,
``do_sync_mmap_readahead``, ``filemap_map_pages``; mm/readahead.c ``page_cache_sync_ra``;
mm/truncate.c ``truncate_inode_partial_folio``; fs/proc/task_mmu.c ``smaps_page_accumulate``.

Figures are those of our machines (Linux 6.18, ``fault_around_bytes`` 64 KiB, ``read_ahead_kb``
8192 on the ext4 disk, tmpfs without ``huge=``).  Mappings are placed with MAP_FIXED at ARENA, which
is 2 MiB-aligned, so that the page-table position of each page is known.  Files written with
``pwrite`` are in the page cache; files only sized with ``ftruncate`` are not.
"""

from __future__ import annotations

import errno
import os

import pytest

import vmkit
from vmkit.errors import BusError
from vmkit.process import Process

from conftest import ARENA, PAGE, RW
from helpers import kb, smaps_of

O_RDWR_CREAT = os.O_RDWR | os.O_CREAT
PRIVATE_FIXED = vmkit.MAP_PRIVATE | vmkit.MAP_FIXED
SHARED_FIXED = vmkit.MAP_SHARED | vmkit.MAP_FIXED
PMD = 2 << 20


def written(p: Process, path: str, pages: int, at: int = 0) -> int:
    """A file holding ``pages`` written pages from page ``at`` (one pwrite); returns the fd."""
    fd = p.open(path, O_RDWR_CREAT)
    assert p.pwrite(fd, b"\x5a" * (pages * PAGE), at * PAGE) == pages * PAGE
    return fd


def sparse(p: Process, path: str, pages: int) -> int:
    """A file of ``pages`` pages that has nothing in the page cache; returns the fd."""
    fd = p.open(path, O_RDWR_CREAT)
    p.ftruncate(fd, pages * PAGE)
    return fd


def rss(p: Process, addr: int) -> int:
    """The Rss of the VMA at ``addr``, in pages."""
    return kb(smaps_of(p, addr)["Rss"]) // 4


def read_page(p: Process, addr: int, page: int) -> None:
    p.read(addr + page * PAGE, 1)


def cached(p: Process, addr: int, pages: int) -> list[int]:
    """The pages of the mapping that mincore reports resident."""
    return [i for i, v in enumerate(p.mincore(addr, pages * PAGE)) if v]


class TestFaultAround:
    @pytest.mark.parametrize("kind", ["ext4-sparse", "tmpfs-written"])
    def test_a_read_fault_maps_the_aligned_16_page_window(self, proc: Process, file_path: str,
                                                          shm_path: str, kind: str) -> None:
        """A read fault maps the cached pages of the 64 KiB window (16 entries, aligned) around it
        (mm/memory.c do_fault_around -> filemap_map_pages); order-0 folios: readahead of an
        uncached ext4 file, pwrite on tmpfs."""
        fd = sparse(proc, file_path, 40) if kind == "ext4-sparse" else written(proc, shm_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 20)
        assert rss(proc, addr) == 16
        read_page(proc, addr, 3)
        assert rss(proc, addr) == 32
        field = "RssFile" if kind == "ext4-sparse" else "RssShmem"
        assert kb(proc.status()[field]) == 32 * 4

    def test_the_window_moves_up_to_the_vma_start(self, proc: Process, shm_path: str) -> None:
        """A window that would begin before the VMA starts at the VMA and keeps its 16 pages
        (do_fault_around: from_pte clamped to the VMA, to_pte = from_pte + 16)."""
        fd = written(proc, shm_path, 40)
        addr = proc.mmap(ARENA + 3 * PAGE, 40 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 2)
        assert rss(proc, addr) == 16

    def test_the_window_stops_at_the_vma_end_and_the_page_table(self, proc: Process,
                                                                shm_path: str) -> None:
        """The window is cut at the VMA's end and at the end of the PTE table (512 entries)."""
        fd = written(proc, shm_path, 40)
        addr = proc.mmap(ARENA, 30 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 20)
        assert rss(proc, addr) == 14  # pages 16..29
        high = proc.mmap(ARENA + PMD - 8 * PAGE, 40 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        read_page(proc, high, 2)
        assert rss(proc, high) == 8  # the 8 entries left in the table

    def test_write_faults_and_anonymous_memory_do_not_fault_around(self, proc: Process,
                                                                   shm_path: str) -> None:
        """Shared and private write faults map one page (do_shared_fault, do_cow_fault); anonymous
        memory has no page cache to map from."""
        fd = written(proc, shm_path, 40)
        shared = proc.mmap(ARENA, 40 * PAGE, RW, SHARED_FIXED, fd, 0)
        proc.write(shared + 20 * PAGE, b"w")
        assert rss(proc, shared) == 1
        private = proc.mmap(ARENA + PMD, 40 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        proc.write(private + 20 * PAGE, b"w")
        fields = smaps_of(proc, private)
        assert (kb(fields["Rss"]), kb(fields["Anonymous"])) == (4, 4)
        anon = proc.mmap(ARENA + 2 * PMD, 40 * PAGE, RW, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS
                         | vmkit.MAP_FIXED)
        read_page(proc, anon, 20)
        assert rss(proc, anon) == 0  # the zero page is not counted

    def test_only_empty_entries_are_filled(self, proc: Process, shm_path: str) -> None:
        """A private copy and a guard marker in the window stay as they are (filemap_map_pages maps
        only pte_none entries)."""
        fd = written(proc, shm_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        proc.write(addr + 18 * PAGE, b"c")
        proc.madvise(addr + 25 * PAGE, PAGE, vmkit.MADV_GUARD_INSTALL)
        read_page(proc, addr, 20)
        fields = smaps_of(proc, addr)
        assert (kb(fields["Rss"]), kb(fields["Anonymous"])) == (15 * 4, 4)
        assert proc.read(addr + 18 * PAGE, 1) == b"c"

    def test_pages_at_or_past_eof_are_not_mapped(self, proc: Process, shm_path: str) -> None:
        """The window is cut at the last page below EOF; a fault past EOF raises SIGBUS after the
        window below EOF was mapped (filemap_map_pages end_pgoff, filemap_fault VM_FAULT_SIGBUS)."""
        fd = written(proc, shm_path, 18)
        addr = proc.mmap(ARENA, 32 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        with pytest.raises(BusError):
            read_page(proc, addr, 20)
        assert rss(proc, addr) == 2  # pages 16 and 17
        read_page(proc, addr, 5)
        assert rss(proc, addr) == 18


class TestLargeFolios:
    """ext4 creates page-cache folios sized by each write (``write_begin``: ``fgf_set_order``), and
    6.18 maps a whole large folio that lies inside the VMA and one page table."""

    def test_fault_around_maps_whole_folios(self, proc: Process, file_path: str) -> None:
        """40 pages written at once are folios [0, 32) and [32, 40): a fault at page 20 maps all of
        the first; the second ends on the file's last page, so only its part in a window is
        mapped (filemap_map_pages can_map_large)."""
        fd = written(proc, file_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 20)
        assert rss(proc, addr) == 32
        read_page(proc, addr, 35)
        assert rss(proc, addr) == 40
        odd = proc.mmap(ARENA + PMD + 15 * PAGE, 40 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, odd, 20)  # window: pages 17..32
        assert rss(proc, odd) == 33

    @pytest.mark.parametrize(("where", "offset_pages", "pages", "expected"), [
        (ARENA, 4, 36, 16),          # the folio starts before the VMA
        (ARENA, 0, 30, 14),          # the folio ends after the VMA
        (ARENA + PMD - 16 * PAGE, 0, 40, 16),  # the folio crosses a page table
    ], ids=["before-vma", "after-vma", "across-pmd"])
    def test_a_folio_that_does_not_fit_is_mapped_in_the_window_only(
            self, proc: Process, file_path: str, where: int, offset_pages: int, pages: int,
            expected: int) -> None:
        """filemap_map_folio_range maps the whole folio only inside the VMA and one PTE table."""
        fd = written(proc, file_path, 40)
        addr = proc.mmap(where, pages * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, offset_pages * PAGE)
        read_page(proc, addr, 20)
        assert rss(proc, addr) == expected

    def test_folio_sizes_follow_the_write(self, proc: Process, file_path: str) -> None:
        """100 pages written at page 3 make folios 3, 4-7, 8-15, 16-31, 32-63, 64-95, 96-99
        (the order of the rest of the write, lowered to the index's alignment)."""
        fd = written(proc, file_path, 100, at=3)
        addr = proc.mmap(ARENA, 103 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        seen = []
        for page in (3, 20, 40, 70, 97):
            read_page(proc, addr, page)
            seen.append(rss(proc, addr))
        assert seen == [13, 29, 61, 93, 100]

    @pytest.mark.parametrize(("pages", "expected"), [(48, 47), (49, 48)])
    def test_a_folio_ending_on_the_last_page_is_not_mapped_whole(
            self, proc: Process, file_path: str, pages: int, expected: int) -> None:
        """can_map_large needs the file to go on past the folio: folio [32, 48) of a 48-page file
        is mapped in the window only, of a 49-page file whole."""
        fd = written(proc, file_path, 48)
        if pages == 49:
            proc.pwrite(fd, b"\x5a" * PAGE, 48 * PAGE)
        addr = proc.mmap(ARENA + PAGE, pages * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 31)  # window: pages 31..46
        assert rss(proc, addr) == expected

    def test_a_new_page_table_is_not_filled_from_a_folio_reaching_eof(self, proc: Process,
                                                                      file_path: str) -> None:
        """With no PTE table yet, fault-around maps nothing when the window's first folio reaches
        the last page (only filemap_map_pmd installs the table, for a folio it may map large)."""
        fd = written(proc, file_path, 18)  # folios [0, 16) and [16, 18)
        addr = proc.mmap(ARENA, 32 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        with pytest.raises(BusError):
            read_page(proc, addr, 18)
        assert rss(proc, addr) == 0
        read_page(proc, addr, 3)
        with pytest.raises(BusError):
            read_page(proc, addr, 20)
        assert rss(proc, addr) == 18

    def test_a_shared_write_fault_maps_the_whole_folio(self, proc: Process, file_path: str) -> None:
        """finish_fault maps the whole folio of the faulting page when it fits the VMA and the page
        table and does not pass EOF; else only that page."""
        fd = written(proc, file_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, RW, SHARED_FIXED, fd, 0)
        proc.write(addr + 35 * PAGE, b"w")
        assert rss(proc, addr) == 8
        proc.write(addr + 3 * PAGE, b"w")
        assert rss(proc, addr) == 40
        offset = proc.mmap(ARENA + PMD, 36 * PAGE, RW, SHARED_FIXED, fd, 4 * PAGE)
        proc.write(offset + 10 * PAGE, b"w")
        assert rss(proc, offset) == 1

    def test_the_model_cuts_io_where_the_native_backend_does(self) -> None:
        """SimProcess issues its pwrite/pread calls in the pieces of the native child's scratch
        area, so both backends make the same system calls."""
        from vmkit.native import _runtime
        from vmkit.sim import process

        assert process.IO_PIECE == _runtime.SCRATCH_SIZE

    def test_pwrite_of_a_mebibyte_is_two_writes(self, proc: Process, file_path: str) -> None:
        """The Process pwrite passes 1 MiB in two pwrite(2) calls (1020 KiB, then 4 KiB), so the
        folio at page 128 has 64 pages and is mapped whole; a single 1 MiB write would have made
        one 256-page folio ending on the last page, mapped in the window only."""
        fd = written(proc, file_path, 256)
        addr = proc.mmap(ARENA, 256 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 130)
        assert rss(proc, addr) == 64


class TestTruncatedFolios:
    @pytest.mark.parametrize(("sync", "after"), [(False, [1, 17, 25]), (True, [32, 32, 40])],
                             ids=["dirty", "clean"])
    def test_truncation_splits_a_clean_folio_and_keeps_a_dirty_one(
            self, proc: Process, file_path: str, sync: bool, after: list[int]) -> None:
        """Shrinking a 64-page file to 40 pages: a clean folio is split (pieces [0, 32), [32, 40)),
        a dirty one cannot be and stays whole past EOF, so it is mapped one page at a time, then
        in the window only (mm/truncate.c truncate_inode_partial_folio)."""
        fd = written(proc, file_path, 64)
        if sync:
            whole = proc.mmap(None, 64 * PAGE, RW, vmkit.MAP_SHARED, fd, 0)
            proc.msync(whole, 64 * PAGE, vmkit.MS_SYNC)
            proc.munmap(whole, 64 * PAGE)
        proc.ftruncate(fd, 40 * PAGE)
        addr = proc.mmap(ARENA, 40 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        seen = []
        for page in (2, 17, 37):
            read_page(proc, addr, page)
            seen.append(rss(proc, addr))
        assert seen == after

    @pytest.mark.parametrize(("sync", "after"), [(False, [64, 64]), (True, [32, 40])],
                             ids=["dirty", "clean"])
    def test_hole_punching_a_folio(self, proc: Process, file_path: str, sync: bool,
                                   after: list[int]) -> None:
        """MADV_REMOVE of pages 40..47 of a 64-page folio: a dirty folio keeps them cached
        (zeroed); a clean one is split and loses them."""
        fd = written(proc, file_path, 64)
        whole = proc.mmap(None, 64 * PAGE, RW, vmkit.MAP_SHARED, fd, 0)
        if sync:
            proc.msync(whole, 64 * PAGE, vmkit.MS_SYNC)
        proc.madvise(whole + 40 * PAGE, 8 * PAGE, vmkit.MADV_REMOVE)
        proc.munmap(whole, 64 * PAGE)
        addr = proc.mmap(ARENA, 64 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        seen = []
        for page in (2, 36):
            read_page(proc, addr, page)
            seen.append(rss(proc, addr))
        assert seen == after
        assert len(cached(proc, addr, 64)) == (64 if not sync else 56)
        assert proc.read(addr + 40 * PAGE, 8) == bytes(8)


class TestPageTables:
    """Linux keeps a PTE table that zapping emptied: munmap frees it (free_pgtables) when no VMA is
    left in its 2 MiB, and MADV_DONTNEED frees it only when the zap covers the whole 2 MiB
    (PT_RECLAIM).  Fault-around and MADV_COLLAPSE see the difference."""

    def test_fault_around_fills_a_table_emptied_by_dontneed(self, proc: Process,
                                                            file_path: str) -> None:
        """After MADV_DONTNEED of 32 pages the table stays, so fault-around maps from the folio
        that reaches EOF (which it would not do into a missing table)."""
        fd = written(proc, file_path, 18)
        addr = proc.mmap(ARENA, 32 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 3)
        proc.madvise(addr, 32 * PAGE, vmkit.MADV_DONTNEED)
        assert rss(proc, addr) == 0
        with pytest.raises(BusError):
            read_page(proc, addr, 20)
        assert rss(proc, addr) == 2

    @pytest.mark.parametrize(("start", "length", "collapses"), [
        (0, 2 * PMD, [False, False]),     # both tables reclaimed
        (PAGE, PMD, [True, True]),        # no block wholly zapped: tables stay
        (PMD, PAGE, [True, True]),
    ], ids=["whole-blocks", "across", "one-page"])
    def test_collapse_of_a_block_emptied_by_dontneed(self, proc: Process, start: int, length: int,
                                                     collapses: list[bool]) -> None:
        """MADV_COLLAPSE of an empty block succeeds while its table exists (hpage_collapse_scan_pmd
        finds a PMD), fails with EINVAL once it was freed (SCAN_PMD_NULL)."""
        addr = proc.mmap(ARENA, 2 * PMD, RW, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
        proc.write(addr, b"x" * PMD)
        proc.write(addr + PMD, b"y")
        proc.madvise(addr + start, length, vmkit.MADV_DONTNEED)
        seen = []
        for block in (0, 1):
            try:
                proc.madvise(addr + block * PMD, PMD, vmkit.MADV_COLLAPSE)
                seen.append(True)
            except OSError as e:
                assert e.errno == errno.EINVAL
                seen.append(False)
        assert seen == collapses

    def test_munmap_keeps_a_table_another_vma_uses(self, proc: Process) -> None:
        """Unmapping all but the last page of a block keeps its table; a new mapping merged into
        the rest can collapse the (empty) block."""
        addr = proc.mmap(ARENA, PMD, RW, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
        proc.write(addr, b"x")
        proc.munmap(addr, PMD - PAGE)
        proc.mmap(ARENA, PMD - PAGE, RW, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
        proc.madvise(addr, PMD, vmkit.MADV_COLLAPSE)
        assert kb(smaps_of(proc, addr)["AnonHugePages"]) == 2048


    @pytest.mark.parametrize(("offset", "length", "reclaim", "collapses"), [
        (0, PMD, False, [True]),                # the table itself moves (move_normal_pmd)
        (PMD // 2, 2 * PMD, False, [True, True]),  # the destination gets tables (pte_alloc)
        (0, PMD, True, [False]),                # no table left to move
    ], ids=["aligned", "unaligned", "none"])
    def test_mremap_carries_empty_tables(self, proc: Process, offset: int, length: int,
                                         reclaim: bool, collapses: list[bool]) -> None:
        """move_page_tables gives the destination a table for every source extent that has one,
        empty or not: the moved blocks collapse exactly when the source had tables."""
        addr = proc.mmap(ARENA + offset, length, RW, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS
                         | vmkit.MAP_FIXED)
        for off in range(0, length, PMD // 2):  # one page in every half block, then zapped
            proc.write(addr + off, b"x")
            proc.madvise(addr + off, PAGE, vmkit.MADV_DONTNEED)
        if reclaim:
            proc.madvise(addr, length, vmkit.MADV_DONTNEED)  # whole blocks: PT_RECLAIM
        new = proc.mremap(addr, length, length, vmkit.MREMAP_MAYMOVE | vmkit.MREMAP_FIXED,
                          ARENA + 8 * PMD)
        seen = []
        for block in range(len(collapses)):
            try:
                proc.madvise(new + block * PMD, PMD, vmkit.MADV_COLLAPSE)
                seen.append(True)
            except OSError as e:
                assert e.errno == errno.EINVAL
                seen.append(False)
        assert seen == collapses


    @pytest.mark.parametrize("with_anon_vma", [False, True])
    def test_fork_copies_tables_where_it_copies_entries(self, proc: Process, file_path: str,
                                                        with_anon_vma: bool) -> None:
        """copy_page_range runs only for VMAs with an anon_vma (vma_needs_copy), and then gives
        the child a table wherever the parent has one, empty or not: fault-around in the child
        then maps from a folio reaching EOF."""
        fd = written(proc, file_path, 18)
        addr = proc.mmap(ARENA, 32 * PAGE, RW, PRIVATE_FIXED, fd, 0)
        if with_anon_vma:
            proc.write(addr + PAGE, b"c")
        read_page(proc, addr, 3)
        proc.madvise(addr, 32 * PAGE, vmkit.MADV_DONTNEED)
        child = proc.fork()
        try:
            with pytest.raises(BusError):
                read_page(child, addr, 20)
            assert rss(child, addr) == (2 if with_anon_vma else 0)
        finally:
            child.terminate()


class TestPageout:
    """MADV_PAGEOUT of page-cache folios (mm/madvise.c madvise_cold_or_pageout_pte_range,
    mm/vmscan.c shrink_folio_list), without swap."""

    @staticmethod
    def mapped_file(proc: Process, path: str, whole_write: bool, clean: bool) -> int:
        fd = proc.open(path, O_RDWR_CREAT)
        if whole_write:
            proc.pwrite(fd, b"x" * 64 * PAGE, 0)  # one 64-page folio
        else:
            for page in range(64):
                proc.pwrite(fd, b"x" * PAGE, page * PAGE)  # order-0 folios
        if clean:
            whole = proc.mmap(None, 64 * PAGE, RW, vmkit.MAP_SHARED, fd, 0)
            proc.msync(whole, 64 * PAGE, vmkit.MS_SYNC)
            proc.munmap(whole, 64 * PAGE)
        addr = proc.mmap(ARENA, 64 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        for page in (2, 20, 40, 60):
            read_page(proc, addr, page)
        assert rss(proc, addr) == 64
        return addr

    @pytest.mark.parametrize(("whole_write", "clean", "rss_after", "cached_after"), [
        (False, True, 54, 54),   # order 0, clean: pages 10..19 unmapped and evicted
        (False, False, 54, 64),  # order 0, dirty: unmapped, kept
        (True, True, 0, 64),     # a clean folio in part: split, which unmaps all of it
        (True, False, 64, 64),   # a dirty folio in part: cannot be split, left alone
    ], ids=["order0-clean", "order0-dirty", "large-clean", "large-dirty"])
    def test_part_of_a_file(self, proc: Process, file_path: str, whole_write: bool, clean: bool,
                            rss_after: int, cached_after: int) -> None:
        """PAGEOUT of pages 10..19 of a 64-page private file mapping."""
        addr = self.mapped_file(proc, file_path, whole_write, clean)
        proc.madvise(addr + 10 * PAGE, 10 * PAGE, vmkit.MADV_PAGEOUT)
        assert (rss(proc, addr), len(cached(proc, addr, 64))) == (rss_after, cached_after)

    @pytest.mark.parametrize("clean", [True, False], ids=["clean", "dirty"])
    def test_a_whole_folio(self, proc: Process, file_path: str, clean: bool) -> None:
        """A folio the range covers whole is unmapped and, if clean, evicted."""
        addr = self.mapped_file(proc, file_path, True, clean)
        proc.madvise(addr, 64 * PAGE, vmkit.MADV_PAGEOUT)
        assert (rss(proc, addr), len(cached(proc, addr, 64))) == (0, 0 if clean else 64)

    def test_a_folio_another_process_maps_is_skipped(self, proc: Process, file_path: str) -> None:
        """A folio a fork child also maps is left alone, covered whole (folio_mapcount !=
        folio_nr_pages) or in part (folio_maybe_mapped_shared); the next folio is paged out."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"x" * 64 * PAGE, 0)
        proc.pwrite(fd, b"x" * 16 * PAGE, 64 * PAGE)  # folios [0, 64) and [64, 80)
        whole = proc.mmap(None, 80 * PAGE, RW, vmkit.MAP_SHARED, fd, 0)
        proc.msync(whole, 80 * PAGE, vmkit.MS_SYNC)
        proc.munmap(whole, 80 * PAGE)
        addr = proc.mmap(ARENA, 80 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        for page in (2, 70):
            read_page(proc, addr, page)
        child = proc.fork()
        try:
            read_page(child, addr, 2)
            proc.madvise(addr + 10 * PAGE, 70 * PAGE, vmkit.MADV_PAGEOUT)
            assert (rss(proc, addr), rss(child, addr)) == (64, 64)
            assert cached(proc, addr, 80) == list(range(64))
        finally:
            child.terminate()

    def test_a_split_unmaps_every_mapping(self, proc: Process, file_path: str) -> None:
        """Two mappings of the folio in one process do not make it shared: PAGEOUT of part of it
        splits it, which unmaps it from both."""
        addr = self.mapped_file(proc, file_path, True, True)
        fd = proc.open(file_path, os.O_RDONLY)
        other = proc.mmap(ARENA + PMD, 64 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, other, 50)
        assert rss(proc, other) == 64
        proc.madvise(addr + 10 * PAGE, 10 * PAGE, vmkit.MADV_PAGEOUT)
        assert (rss(proc, addr), rss(proc, other), len(cached(proc, addr, 64))) == (0, 0, 64)

    def test_dirty_pages_kept_get_pg_reclaim(self, proc: Process, file_path: str) -> None:
        """A dirty page PAGEOUT could not evict gets PG_reclaim, the bit PG_readahead shares, so
        fault-around skips it: a fault at page 12 maps page 12 alone."""
        addr = self.mapped_file(proc, file_path, False, False)
        proc.madvise(addr + 10 * PAGE, 10 * PAGE, vmkit.MADV_PAGEOUT)
        read_page(proc, addr, 12)
        assert rss(proc, addr) == 55


class TestReadahead:
    def test_read_around_on_a_miss(self, proc: Process, file_path: str) -> None:
        """A miss reads ra_pages (2048) around the page, from ra_pages/2 before it and not below 0
        nor past EOF (do_sync_mmap_readahead: mmap read-around); the retried fault maps 16."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 2000)
        assert cached(proc, addr, 3000) == list(range(976, 3000))
        assert rss(proc, addr) == 16
        other = proc.mmap(ARENA + 8 * PMD, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED,
                          sparse(proc, file_path + "-2", 3000), 0)
        try:
            read_page(proc, other, 100)
            assert cached(proc, other, 3000) == list(range(2048))
        finally:
            proc.unlink(file_path + "-2")

    @pytest.mark.parametrize(("advice", "page", "expected"), [
        (vmkit.MADV_RANDOM, 2000, [2000]),
        (vmkit.MADV_SEQUENTIAL, 2000, list(range(2000, 3000))),
        (vmkit.MADV_SEQUENTIAL, 0, list(range(2048))),
    ], ids=["random", "sequential", "sequential-at-0"])
    def test_madvise_hints(self, proc: Process, file_path: str, advice: int, page: int,
                           expected: list[int]) -> None:
        """VM_RAND_READ reads only the page; VM_SEQ_READ reads ra_pages from it
        (page_cache_sync_ra)."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        proc.madvise(addr, 3000 * PAGE, advice)
        read_page(proc, addr, page)
        assert cached(proc, addr, 3000) == expected
        assert rss(proc, addr) == len(set(expected) & set(range(page & ~15, (page & ~15) + 16)))

    def test_fault_around_skips_the_readahead_mark(self, proc: Process, file_path: str) -> None:
        """The page carrying PG_readahead (page 1024 after a sequential fault at 0) is not mapped
        by fault-around (next_uptodate_folio)."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        proc.madvise(addr, 3000 * PAGE, vmkit.MADV_SEQUENTIAL)
        read_page(proc, addr, 0)
        read_page(proc, addr, 1030)
        assert rss(proc, addr) == 16 + 15

    def test_a_fault_on_the_mark_reads_the_next_window_ahead(self, proc: Process,
                                                             file_path: str) -> None:
        """Read-around [0, 2048) marks page 1536; fault-around skips it; a fault on it starts
        asynchronous readahead of the next window (page_cache_async_ra), then maps its window."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 100)
        read_page(proc, addr, 1540)
        assert rss(proc, addr) == 16 + 15
        assert cached(proc, addr, 3000) == list(range(2048))
        read_page(proc, addr, 1536)
        assert rss(proc, addr) == 32
        assert cached(proc, addr, 3000) == list(range(3000))

    def test_sequential_windows_move_on_with_larger_folios(self, proc: Process,
                                                           file_path: str) -> None:
        """MADV_SEQUENTIAL: each fault on a mark reads the next 2048 pages, in folios 4 times
        larger each step (order 0, then 2, then 4): a window that cuts a folio of the second
        step maps it whole."""
        fd = sparse(proc, file_path, 6000)
        addr = proc.mmap(ARENA, 6000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        proc.madvise(addr, 6000 * PAGE, vmkit.MADV_SEQUENTIAL)
        read_page(proc, addr, 0)
        assert cached(proc, addr, 6000) == list(range(2048))
        read_page(proc, addr, 1024)
        assert cached(proc, addr, 6000) == list(range(4096))
        view = proc.mmap(ARENA + 2 * PMD + 2 * PAGE, 64 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd,
                         2048 * PAGE)
        read_page(proc, view, 20)  # window: file pages 2062..2077, in folios 2060..2079
        assert rss(proc, view) == 20
        read_page(proc, addr, 2048)
        assert cached(proc, addr, 6000) == list(range(6000))

    def test_write_faults_read_ahead_too(self, proc: Process, file_path: str) -> None:
        """A shared write fault on an uncached page reads around as a read fault does, then maps
        only its page."""
        fd = sparse(proc, file_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, RW, SHARED_FIXED, fd, 0)
        proc.write(addr + 20 * PAGE, b"w")
        assert cached(proc, addr, 40) == list(range(40))
        assert rss(proc, addr) == 1

    def test_willneed_reads_at_most_2048_pages(self, proc: Process, file_path: str) -> None:
        """MADV_WILLNEED on a disk file reads the range below EOF, at most max(io_pages,
        ra_pages) = 2048 pages (mm/readahead.c force_page_cache_ra), and maps nothing."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        proc.madvise(addr + 100 * PAGE, 2900 * PAGE, vmkit.MADV_WILLNEED)
        assert cached(proc, addr, 3000) == list(range(100, 2148))
        assert rss(proc, addr) == 0

    def test_tmpfs_has_no_readahead(self, proc: Process, shm_path: str) -> None:
        """shmem_fault allocates the faulting page only."""
        fd = sparse(proc, shm_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 20)
        assert cached(proc, addr, 40) == [20]
        assert rss(proc, addr) == 1


class TestReadReadahead:
    """read(2) reads ahead too (mm/filemap.c filemap_get_pages, mm/readahead.c page_cache_sync_ra,
    page_cache_async_ra); the Process pread issues the native backend's pread(2) calls."""

    def test_reads_of_a_tmpfs_hole_allocate_nothing(self, proc: Process, shm_path: str) -> None:
        """shmem_file_read_iter reads a hole as zeros without adding a page (SGP_READ)."""
        fd = sparse(proc, shm_path, 40)
        assert proc.pread(fd, 10, 5 * PAGE) == bytes(10)
        addr = proc.mmap(ARENA, 40 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        assert cached(proc, addr, 40) == []

    def test_windows_ramp_up_and_align(self, proc: Process, file_path: str) -> None:
        """A read at page 0 opens a 4-page window marked at page 1; each read of the mark moves
        the window on, 4 times larger (then 2 times), its end aligned down to the new folio order:
        [0, 4), [4, 20), [20, 80), [80, 320)."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        seen = []
        for page in (0, 1, 4, 20):
            proc.pread(fd, 1, page * PAGE)
            seen.append(len(cached(proc, addr, 3000)))
        assert seen == [4, 20, 80, 320]
        assert cached(proc, addr, 3000) == list(range(320))

    def test_a_small_random_read_reads_only_itself(self, proc: Process, file_path: str) -> None:
        """Away from page 0 and from the previous read, a small read is standalone; the read
        right after it opens a window (index - prev_index <= 1)."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        proc.pread(fd, 10, 100 * PAGE)
        assert cached(proc, addr, 3000) == [100]
        proc.pread(fd, 10, 101 * PAGE)
        assert cached(proc, addr, 3000) == list(range(100, 105))
        proc.pread(fd, 40 * PAGE, 1000 * PAGE)
        assert cached(proc, addr, 3000) == list(range(100, 105)) + list(range(1000, 1040))

    @pytest.mark.parametrize(("pages", "expected"), [(40, 256), (300, 1536)])
    def test_a_large_first_read(self, proc: Process, file_path: str, pages: int,
                                expected: int) -> None:
        """A read of 40 pages at 0 opens a 256-page window (get_init_ra_size); 300 pages are two
        pread(2) calls (255 + 45 pages), the second reaching the first window's mark."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        assert len(proc.pread(fd, pages * PAGE, 0)) == pages * PAGE
        assert cached(proc, addr, 3000) == list(range(expected))

    def test_a_sequential_fault_after_a_read_opens_a_window(self, proc: Process,
                                                           file_path: str) -> None:
        """f_ra.prev_pos is shared with mmap: a MADV_SEQUENTIAL fault on the page after the last
        read opens a window with PG_readahead half-way (page 1124), which fault-around skips."""
        fd = sparse(proc, file_path, 3000)
        addr = proc.mmap(ARENA, 3000 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        proc.madvise(addr, 3000 * PAGE, vmkit.MADV_SEQUENTIAL)
        proc.pread(fd, PAGE, 99 * PAGE)
        read_page(proc, addr, 100)
        assert cached(proc, addr, 3000) == list(range(99, 2148))
        read_page(proc, addr, 1130)
        assert rss(proc, addr) == 13 + 15  # pages 99..111, then 1120..1135 but 1124


class TestPageCacheDirt:
    @pytest.mark.parametrize("fs", ["ext4", "tmpfs"])
    def test_pages_written_with_pwrite_are_dirty_when_mapped(self, proc: Process, file_path: str,
                                                             shm_path: str, fs: str) -> None:
        """smaps counts a page dirty when its entry or its folio is (smaps_page_accumulate:
        folio_test_dirty): pwrite dirties the page cache."""
        fd = written(proc, file_path if fs == "ext4" else shm_path, 16)
        addr = proc.mmap(ARENA, 16 * PAGE, vmkit.PROT_READ, PRIVATE_FIXED, fd, 0)
        read_page(proc, addr, 0)
        fields = smaps_of(proc, addr)
        assert (kb(fields["Private_Dirty"]), kb(fields["Private_Clean"])) == (64, 0)
        assert kb(fields["Pss_Dirty"]) == 64

    def test_writeback_cleans_and_a_store_dirties_the_whole_folio(self, proc: Process,
                                                                  file_path: str) -> None:
        """After msync(MS_SYNC) the folio is clean; one store, or one pwrite, dirties all 32 pages
        of its folio."""
        fd = written(proc, file_path, 40)
        addr = proc.mmap(ARENA, 40 * PAGE, RW, SHARED_FIXED, fd, 0)
        proc.msync(addr, 40 * PAGE, vmkit.MS_SYNC)
        read_page(proc, addr, 3)
        fields = smaps_of(proc, addr)
        assert (kb(fields["Private_Dirty"]), kb(fields["Private_Clean"])) == (0, 128)
        proc.write(addr + 3 * PAGE, b"w")
        fields = smaps_of(proc, addr)
        assert (kb(fields["Private_Dirty"]), kb(fields["Private_Clean"])) == (128, 0)
        proc.msync(addr, 40 * PAGE, vmkit.MS_SYNC)
        proc.pwrite(fd, b"p", 5 * PAGE)
        fields = smaps_of(proc, addr)
        assert (kb(fields["Private_Dirty"]), kb(fields["Private_Clean"])) == (128, 0)

    def test_shared_anonymous_memory_faults_around(self, proc: Process) -> None:
        """Shared anonymous memory is shmem: after MADV_DONTNEED its pages stay in the cache, and a
        read maps 16 of them back, dirty."""
        addr = proc.mmap(ARENA, 40 * PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
        proc.write(addr, b"x" * 40 * PAGE)
        proc.madvise(addr, 40 * PAGE, vmkit.MADV_DONTNEED)
        read_page(proc, addr, 20)
        fields = smaps_of(proc, addr)
        assert (kb(fields["Rss"]), kb(fields["Private_Dirty"])) == (64, 64)
        assert kb(proc.status()["RssShmem"]) == 64
