"""mincore(2): which pages count as resident, for anonymous and file mappings, and the errors.

machine-facts.md §8; kernel-rules.md §12 (mm/mincore.c ``SYSCALL_DEFINE3(mincore)``, ``do_mincore``,
``mincore_pte_range``, ``mincore_page``, ``can_do_mincore``).  The EFAULT case (a bad ``vec`` pointer)
cannot be expressed through the Process API, which owns the vector, so it is not tested here.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

import vmkit
from vmkit.process import Process

from conftest import PAGE, PRIVATE_ANON, RW, SHARED_ANON

O_RDWR_CREAT = os.O_RDWR | os.O_CREAT


def shared_file(p: Process, path: str, pages: int, size: int, prot: int = RW,
                flags: int = vmkit.MAP_SHARED) -> tuple[int, int]:
    """(address, fd): a ``pages``-page mapping of a fresh file of ``size`` bytes (sparse: no data)."""
    fd = p.open(path, O_RDWR_CREAT)
    p.ftruncate(fd, size)
    return p.mmap(None, pages * PAGE, prot, flags, fd, 0), fd


class TestAnonymous:
    def test_untouched_pages_are_not_resident(self, proc: Process) -> None:
        """No PTE in an anonymous VMA -> 0 (mm/mincore.c mincore_pte_range -> mincore_unmapped_range)."""
        addr = proc.mmap(None, 8 * PAGE, RW, PRIVATE_ANON)
        assert proc.mincore(addr, 8 * PAGE) == bytes(8)

    def test_written_pages_and_zero_page_reads_are_resident(self, proc: Process) -> None:
        """Written pages are 1, and so is a page only read (the shared zero page is mapped)
        (mm/mincore.c mincore_pte_range: pte_present)."""
        addr = proc.mmap(None, 8 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"a")
        proc.write(addr + 5 * PAGE + 100, b"b")
        assert proc.read(addr + 7 * PAGE, 1) == b"\x00"
        assert proc.mincore(addr, 8 * PAGE) == bytes([1, 0, 0, 0, 0, 1, 0, 1])

    def test_dontneed_makes_pages_non_resident(self, proc: Process) -> None:
        """MADV_DONTNEED zaps the PTEs: all 0 again (mm/madvise.c; mm/mincore.c)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"x" * 4 * PAGE)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01" * 4
        proc.madvise(addr, 4 * PAGE, vmkit.MADV_DONTNEED)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)

    def test_prot_none_mapping_is_not_resident(self, proc: Process) -> None:
        """A PROT_NONE anonymous mapping has no pages: 0 (mm/mincore.c)."""
        addr = proc.mmap(None, 4 * PAGE, vmkit.PROT_NONE, PRIVATE_ANON)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)

    def test_written_page_stays_resident_after_mprotect_none(self, proc: Process) -> None:
        """mprotect(PROT_NONE) keeps the page (a PROT_NONE PTE is still present): 1
        (mm/mprotect.c change_pte_range; mm/mincore.c pte_present)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"x")
        proc.mprotect(addr, 2 * PAGE, vmkit.PROT_NONE)
        assert proc.mincore(addr, 2 * PAGE) == b"\x01\x00"

    def test_shared_anon_reports_per_page(self, proc: Process) -> None:
        """Shared anonymous (shmem) memory is reported page by page: p0 touched -> [1,0,0,0]
        (mm/mincore.c mincore_page on the shmem mapping)."""
        addr = proc.mmap(None, 4 * PAGE, RW, SHARED_ANON)
        proc.write(addr, b"s")
        assert proc.mincore(addr, 4 * PAGE) == b"\x01\x00\x00\x00"

    def test_populated_and_locked_mappings_are_resident(self, proc: Process) -> None:
        """MAP_POPULATE and MAP_LOCKED fault every page in: all 1 (mm/gup.c __mm_populate)."""
        pop = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_POPULATE)
        locked = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        assert proc.mincore(pop, 4 * PAGE) == b"\x01" * 4
        assert proc.mincore(locked, 4 * PAGE) == b"\x01" * 4

    def test_vector_spans_several_vmas(self, proc: Process) -> None:
        """One call covers adjacent VMAs of different kinds, one byte per page, values only 0/1
        (mm/mincore.c do_mincore per VMA)."""
        addr = proc.mmap(None, 6 * PAGE, RW, PRIVATE_ANON)
        proc.mprotect(addr + 2 * PAGE, 2 * PAGE, vmkit.PROT_READ)
        proc.write(addr + PAGE, b"1")
        proc.read(addr + 2 * PAGE, 1)
        proc.write(addr + 5 * PAGE, b"5")
        vec = proc.mincore(addr, 6 * PAGE)
        assert vec == bytes([0, 1, 1, 0, 0, 1])
        assert set(vec) <= {0, 1}


class TestFile:
    def test_page_cache_state_shows_without_touching_the_mapping(self, proc: Process,
                                                                 file_path: str) -> None:
        """For a file VMA with no PTE, mincore reports the page cache: pwrite through the fd makes
        the pages 1 though the mapping was never touched (mm/mincore.c mincore_page)."""
        addr, fd = shared_file(proc, file_path, 4, 4 * PAGE)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)
        proc.pwrite(fd, b"w" * PAGE, PAGE)
        proc.pwrite(fd, b"w" * PAGE, 3 * PAGE)
        assert proc.mincore(addr, 4 * PAGE) == b"\x00\x01\x00\x01"

    def test_page_cache_state_shows_in_a_private_mapping(self, proc: Process, file_path: str) -> None:
        """A private file mapping also shows the file's page cache before any access
        (mm/mincore.c mincore_page)."""
        addr, fd = shared_file(proc, file_path, 4, 4 * PAGE, flags=vmkit.MAP_PRIVATE)
        proc.pwrite(fd, b"w" * 2 * PAGE, 0)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01\x01\x00\x00"

    def test_pages_past_eof_are_zero(self, proc: Process, file_path: str) -> None:
        """An 8-page mapping of a 4-page file: pages beyond EOF are 0 (mm/mincore.c mincore_page
        finds no folio)."""
        addr, fd = shared_file(proc, file_path, 8, 4 * PAGE)
        proc.pwrite(fd, b"e" * 4 * PAGE, 0)
        assert proc.mincore(addr, 8 * PAGE) == b"\x01" * 4 + bytes(4)

    def test_tmpfs_written_through_the_mapping(self, proc: Process, shm_path: str) -> None:
        """tmpfs: pages written through the mapping are 1, holes 0 (mm/mincore.c mincore_page)."""
        addr, _ = shared_file(proc, shm_path, 4, 4 * PAGE)
        proc.write(addr + 2 * PAGE, b"t")
        assert proc.mincore(addr, 4 * PAGE) == b"\x00\x00\x01\x00"

    def test_unprivileged_non_writer_sees_all_resident(self, spawn: Callable[[], Process],
                                                        file_path: str) -> None:
        """A file the caller could not open for writing is reported all 1, hiding its page cache;
        the owner sees the truth (mm/mincore.c can_do_mincore)."""
        owner = spawn()
        fd = owner.open(file_path, O_RDWR_CREAT, 0o644)
        owner.ftruncate(fd, 4 * PAGE)
        owner.pwrite(fd, b"o" * PAGE, 0)
        mine = owner.mmap(None, 4 * PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED, fd, 0)
        assert owner.mincore(mine, 4 * PAGE) == b"\x01\x00\x00\x00"
        other = spawn()
        other.drop_privileges()
        rfd = other.open(file_path, os.O_RDONLY)
        theirs = other.mmap(None, 4 * PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED, rfd, 0)
        assert other.mincore(theirs, 4 * PAGE) == b"\x01" * 4
        anon = other.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        assert other.mincore(anon, 2 * PAGE) == bytes(2)


class TestArguments:
    def test_unaligned_start_is_einval(self, proc: Process) -> None:
        """start not page-aligned -> EINVAL, checked first (mm/mincore.c SYSCALL_DEFINE3(mincore))."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        with pytest.raises(OSError) as e:
            proc.mincore(addr + 8, PAGE)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            proc.mincore(addr + 8, 0)
        assert e.value.errno == errno.EINVAL

    def test_zero_length_is_an_empty_vector_even_unmapped(self, proc: Process) -> None:
        """len 0 -> no pages, no walk, success even where nothing is mapped (mm/mincore.c)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        assert proc.mincore(addr, 0) == b""
        proc.munmap(addr, 2 * PAGE)
        assert proc.mincore(addr, 0) == b""

    def test_unaligned_length_is_rounded_up(self, proc: Process) -> None:
        """len is rounded up: PAGE + 1 bytes give two entries (mm/mincore.c pages += offset_in_page)."""
        addr = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr + PAGE, b"x")
        assert proc.mincore(addr, PAGE + 1) == b"\x00\x01"
        assert proc.mincore(addr, 1) == b"\x00"

    def test_unmapped_range_is_enomem(self, proc: Process) -> None:
        """No VMA at start -> ENOMEM (mm/mincore.c do_mincore)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr, 2 * PAGE)
        with pytest.raises(OSError) as e:
            proc.mincore(addr, 2 * PAGE)
        assert e.value.errno == errno.ENOMEM

    @pytest.mark.parametrize("hole", [0, 1, 2], ids=["first", "middle", "last"])
    def test_range_with_a_hole_is_enomem(self, proc: Process, hole: int) -> None:
        """The first page without a VMA ends the walk with ENOMEM (mm/mincore.c do_mincore)."""
        addr = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr + hole * PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.mincore(addr, 3 * PAGE)
        assert e.value.errno == errno.ENOMEM

    def test_range_beyond_task_size_is_enomem(self, proc: Process) -> None:
        """A range past the user address space fails access_ok -> ENOMEM (mm/mincore.c)."""
        with pytest.raises(OSError) as e:
            proc.mincore(vmkit.TASK_SIZE, PAGE)
        assert e.value.errno == errno.ENOMEM
        with pytest.raises(OSError) as e:
            proc.mincore(0xFFFFFFFFFF600000, PAGE)  # [vsyscall]: a maps line, but not user space
        assert e.value.errno == errno.ENOMEM
