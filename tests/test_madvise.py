"""madvise(2): the advice x mapping-kind matrix, the argument checks, and what each advice does.

machine-facts.md §9 (9.1 matrix, 9.2 effects); kernel-rules.md §14 (mm/madvise.c ``do_madvise``,
``madvise_walk_vmas``, ``madvise_update_vma``).  Every case runs in a fresh process.
"""

from __future__ import annotations

import errno
import os
import pytest

import vmkit
from vmkit.process import Process

from conftest import PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import kb, smaps_of, vm_flags, vmas_in

PMD = 2 << 20
O_RDWR_CREAT = os.O_RDWR | os.O_CREAT
FILE_PAGES = 8
ANON_PAGES = 16


# --- building the regions --------------------------------------------------------------------

def pmd_aligned(p: Process, length: int, flags: int, prot: int = RW) -> int:
    """A mapping of ``length`` bytes that starts on a 2 MiB boundary: reserve 4 MiB, trim both ends."""
    big = p.mmap(None, 2 * PMD, prot, flags)
    start = (big + PMD - 1) & ~(PMD - 1)
    if start > big:
        p.munmap(big, start - big)
    p.munmap(start + length, big + 2 * PMD - (start + length))
    return start


def file_mapping(p: Process, path: str, flags: int, pages: int = FILE_PAGES, size: int | None = None,
                 prot: int = RW) -> tuple[int, int]:
    """(address, fd) of a ``pages``-page mapping of the file at ``path``, sized ``size`` (default: the mapping)."""
    fd = p.open(path, O_RDWR_CREAT)
    p.ftruncate(fd, pages * PAGE if size is None else size)
    return p.mmap(None, pages * PAGE, prot, flags, fd, 0), fd


KINDS = ["private_anon", "shared_anon", "shared_file_ext4", "private_file_ext4", "shared_file_tmpfs",
         "private_anon_mlocked"]


def make_region(p: Process, kind: str, file_path: str, shm_path: str, anon_pages: int = ANON_PAGES
                ) -> tuple[int, int]:
    """(address, length) of a fully written region of ``kind`` (anon ones 2 MiB-aligned)."""
    if kind in ("private_anon", "shared_anon", "private_anon_mlocked"):
        length = anon_pages * PAGE
        addr = pmd_aligned(p, length, SHARED_ANON if kind == "shared_anon" else PRIVATE_ANON)
        p.write(addr, b"\x11" * length)
        if kind == "private_anon_mlocked":
            p.mlock(addr, length)
        return addr, length
    path = shm_path if kind == "shared_file_tmpfs" else file_path
    flags = vmkit.MAP_PRIVATE if kind == "private_file_ext4" else vmkit.MAP_SHARED
    addr, _ = file_mapping(p, path, flags)
    p.write(addr, b"\x22" * FILE_PAGES * PAGE)
    return addr, FILE_PAGES * PAGE


M = vmkit.Madv
OK = 0
EINVAL, EACCES = errno.EINVAL, errno.EACCES

#: machine-facts.md §9.1, one row per advice: the outcome on each of KINDS (0 = success).
MATRIX: dict[int, tuple[int, int, int, int, int, int]] = {
    M.MADV_NORMAL: (OK, OK, OK, OK, OK, OK),
    M.MADV_RANDOM: (OK, OK, OK, OK, OK, OK),
    M.MADV_SEQUENTIAL: (OK, OK, OK, OK, OK, OK),
    M.MADV_WILLNEED: (OK, OK, OK, OK, OK, OK),
    M.MADV_DONTNEED: (OK, OK, OK, OK, OK, EINVAL),
    M.MADV_FREE: (OK, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL),
    M.MADV_REMOVE: (EINVAL, OK, OK, EACCES, OK, EINVAL),
    M.MADV_DONTFORK: (OK, OK, OK, OK, OK, OK),
    M.MADV_DOFORK: (OK, OK, OK, OK, OK, OK),
    M.MADV_MERGEABLE: (OK, OK, OK, OK, OK, OK),
    M.MADV_UNMERGEABLE: (OK, OK, OK, OK, OK, OK),
    M.MADV_HUGEPAGE: (OK, OK, OK, OK, OK, OK),
    M.MADV_NOHUGEPAGE: (OK, OK, OK, OK, OK, OK),
    M.MADV_DONTDUMP: (OK, OK, OK, OK, OK, OK),
    M.MADV_DODUMP: (OK, OK, OK, OK, OK, OK),
    M.MADV_WIPEONFORK: (OK, EINVAL, EINVAL, EINVAL, EINVAL, OK),
    M.MADV_KEEPONFORK: (OK, OK, OK, OK, OK, OK),
    M.MADV_COLD: (OK, OK, OK, OK, OK, EINVAL),
    M.MADV_PAGEOUT: (OK, OK, OK, OK, OK, EINVAL),
    M.MADV_POPULATE_READ: (OK, OK, OK, OK, OK, OK),
    M.MADV_POPULATE_WRITE: (OK, OK, OK, OK, OK, OK),
    M.MADV_DONTNEED_LOCKED: (OK, OK, OK, OK, OK, OK),
    # mlocked: OK on a whole 2 MiB VMA (machine-facts' EINVAL came from a 64-page region, below a PMD).
    M.MADV_COLLAPSE: (OK, EINVAL, EINVAL, EINVAL, EINVAL, OK),
    M.MADV_HWPOISON: (EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL),
    M.MADV_SOFT_OFFLINE: (EINVAL, EINVAL, EINVAL, EINVAL, EINVAL, EINVAL),
    M.MADV_GUARD_INSTALL: (OK, OK, OK, OK, OK, EINVAL),
    M.MADV_GUARD_REMOVE: (OK, OK, OK, OK, OK, OK),
}

MATRIX_CASES = [pytest.param(advice, kind, row[i], id=f"{advice.name}-{kind}")
                for advice, row in MATRIX.items() for i, kind in enumerate(KINDS)]


class TestMatrix:
    @pytest.mark.parametrize(("advice", "kind", "expected"), MATRIX_CASES)
    def test_advice_on_mapping_kind(self, proc: Process, file_path: str, shm_path: str, advice: int,
                                    kind: str, expected: int) -> None:
        """Each advice's per-VMA validity: FREE/WIPEONFORK/COLLAPSE private anon only, REMOVE needs a
        shared writable file, locked VMAs refuse the zapping advice (mm/madvise.c madvise_vma_behavior)."""
        # COLLAPSE needs a VMA covering a whole PMD; 512 pages only for that advice keeps the rest small.
        pages = 512 if advice == M.MADV_COLLAPSE else ANON_PAGES
        addr, length = make_region(proc, kind, file_path, shm_path, anon_pages=pages)
        if expected == OK:
            proc.madvise(addr, length, advice)
        else:
            with pytest.raises(OSError) as e:
                proc.madvise(addr, length, advice)
            assert e.value.errno == expected

    def test_collapse_refuses_a_vma_smaller_than_a_pmd(self, proc: Process) -> None:
        """COLLAPSE on a 16-page private anon VMA: EINVAL, no PMD-sized huge page fits
        (mm/khugepaged.c madvise_collapse -> thp_vma_allowable_order)."""
        addr = pmd_aligned(proc, 16 * PAGE, PRIVATE_ANON)
        proc.write(addr, b"\x11" * 16 * PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 16 * PAGE, M.MADV_COLLAPSE)
        assert e.value.errno == errno.EINVAL


class TestArguments:
    @pytest.mark.parametrize("advice", [5, 6, 7, 26, 27, 99, 104, 200, -1])
    def test_unknown_advice_is_einval(self, proc: Process, advice: int) -> None:
        """Values outside the accepted set fail before any VMA is looked at (mm/madvise.c
        madvise_behavior_valid)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, advice)
        assert e.value.errno == errno.EINVAL

    def test_unaligned_start_is_einval(self, proc: Process) -> None:
        """start not page-aligned -> EINVAL (mm/madvise.c do_madvise)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        with pytest.raises(OSError) as e:
            proc.madvise(addr + 1, PAGE, M.MADV_DONTNEED)
        assert e.value.errno == errno.EINVAL

    def test_zero_length_succeeds_even_unmapped(self, proc: Process) -> None:
        """len 0 returns 0 before the walk, even where nothing is mapped (mm/madvise.c do_madvise)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.madvise(addr, 0, M.MADV_DONTNEED)
        proc.munmap(addr, 4 * PAGE)
        proc.madvise(addr, 0, M.MADV_DONTNEED)

    def test_unaligned_length_is_rounded_up(self, proc: Process) -> None:
        """len is rounded up to whole pages: DONTNEED of PAGE+1 bytes zeroes two pages
        (mm/madvise.c do_madvise PAGE_ALIGN)."""
        addr = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x33" * 3 * PAGE)
        proc.madvise(addr, PAGE + 1, M.MADV_DONTNEED)
        assert proc.read(addr, 3 * PAGE) == bytes(2 * PAGE) + b"\x33" * PAGE

    def test_unmapped_range_is_enomem(self, proc: Process) -> None:
        """No VMA at all in the range -> ENOMEM (mm/madvise.c madvise_walk_vmas)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr, 4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, M.MADV_NORMAL)
        assert e.value.errno == errno.ENOMEM

    def test_dontneed_over_a_hole_applies_around_it_then_enomem(self, proc: Process) -> None:
        """Holes are skipped, every present VMA is advised, ENOMEM comes at the end
        (mm/madvise.c madvise_walk_vmas unmapped_error)."""
        addr = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x44" * 3 * PAGE)
        proc.munmap(addr + PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 3 * PAGE, M.MADV_DONTNEED)
        assert e.value.errno == errno.ENOMEM
        assert proc.read(addr, PAGE) == bytes(PAGE)
        assert proc.read(addr + 2 * PAGE, PAGE) == bytes(PAGE)

    def test_random_over_a_hole_sets_the_flag_on_both_sides(self, proc: Process) -> None:
        """An attribute advice over a hole still updates each VMA present, then ENOMEM
        (mm/madvise.c madvise_walk_vmas -> madvise_update_vma)."""
        addr = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr + PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 3 * PAGE, M.MADV_RANDOM)
        assert e.value.errno == errno.ENOMEM
        assert "rr" in vm_flags(proc, addr)
        assert "rr" in vm_flags(proc, addr + 2 * PAGE)

    def test_hole_before_the_range_start_is_enomem_with_advice_applied(self, proc: Process) -> None:
        """A range starting in a hole: the VMA after it is advised, the call returns ENOMEM
        (mm/madvise.c madvise_walk_vmas)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr + PAGE, b"\x55" * PAGE)
        proc.munmap(addr, PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 2 * PAGE, M.MADV_DONTNEED)
        assert e.value.errno == errno.ENOMEM
        assert proc.read(addr + PAGE, PAGE) == bytes(PAGE)

    def test_first_per_vma_error_stops_the_walk(self, proc: Process) -> None:
        """The walk stops at the first VMA that refuses: the VMA before it is advised, the one after
        is not (mm/madvise.c madvise_walk_vmas)."""
        addr = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x5a" * 3 * PAGE)
        proc.mlock(addr + PAGE, PAGE)
        assert len(vmas_in(proc, addr, addr + 3 * PAGE)) == 3
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 3 * PAGE, M.MADV_DONTNEED)
        assert e.value.errno == errno.EINVAL
        assert proc.read(addr, 3 * PAGE) == bytes(PAGE) + b"\x5a" * 2 * PAGE


class TestDontneed:
    def test_private_anon_reads_zero_and_is_not_resident(self, proc: Process) -> None:
        """DONTNEED zaps private anonymous pages: they read zero and mincore shows 0
        (mm/madvise.c madvise_dontneed_single_vma -> zap_page_range_single)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x66" * 4 * PAGE)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01" * 4
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTNEED)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)
        assert proc.read(addr, 4 * PAGE) == bytes(4 * PAGE)

    def test_shared_anon_keeps_its_data(self, proc: Process) -> None:
        """DONTNEED on shared anonymous (shmem) only drops PTEs; the data stays in the shmem file
        (mm/madvise.c madvise_dontneed_single_vma)."""
        addr = proc.mmap(None, 4 * PAGE, RW, SHARED_ANON)
        proc.write(addr, b"\x66" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTNEED)
        assert proc.read(addr, 4 * PAGE) == b"\x66" * 4 * PAGE

    def test_private_file_reverts_to_file_contents(self, proc: Process, file_path: str) -> None:
        """DONTNEED drops a private file mapping's COW copies: it reads the file again
        (mm/madvise.c madvise_dontneed_single_vma)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"F" * 4 * PAGE, 0)
        addr = proc.mmap(None, 4 * PAGE, RW, vmkit.MAP_PRIVATE, fd, 0)
        proc.write(addr, b"p" * 4 * PAGE)
        assert proc.read(addr, PAGE) == b"p" * PAGE
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTNEED)
        assert proc.read(addr, 4 * PAGE) == b"F" * 4 * PAGE
        assert proc.pread(fd, 4 * PAGE, 0) == b"F" * 4 * PAGE

    def test_shared_file_keeps_its_data(self, proc: Process, file_path: str) -> None:
        """DONTNEED on a shared file mapping drops PTEs only; the page cache keeps the writes
        (mm/madvise.c madvise_dontneed_single_vma)."""
        addr, fd = file_mapping(proc, file_path, vmkit.MAP_SHARED, pages=4)
        proc.write(addr, b"s" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTNEED)
        assert proc.read(addr, 4 * PAGE) == b"s" * 4 * PAGE
        assert proc.pread(fd, 4 * PAGE, 0) == b"s" * 4 * PAGE


class TestFree:
    def test_free_keeps_data_readable_and_resident_without_pressure(self, proc: Process) -> None:
        """FREE only marks pages lazily freeable; with no memory pressure they stay (mm/madvise.c
        madvise_free_single_vma)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x77" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_FREE)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01" * 4
        assert proc.read(addr, 4 * PAGE) == b"\x77" * 4 * PAGE


class TestRemove:
    def test_remove_punches_a_hole_in_a_shared_ext4_file(self, proc: Process, file_path: str) -> None:
        """REMOVE on a shared file mapping punches a hole: the mapping and pread read zero
        (mm/madvise.c madvise_remove -> vfs_fallocate PUNCH_HOLE)."""
        addr, fd = file_mapping(proc, file_path, vmkit.MAP_SHARED, pages=4)
        proc.write(addr, b"r" * 4 * PAGE)
        proc.madvise(addr + PAGE, 2 * PAGE, M.MADV_REMOVE)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01\x00\x00\x01"
        assert proc.read(addr, 4 * PAGE) == b"r" * PAGE + bytes(2 * PAGE) + b"r" * PAGE
        assert proc.pread(fd, 4 * PAGE, 0) == b"r" * PAGE + bytes(2 * PAGE) + b"r" * PAGE

    def test_remove_frees_tmpfs_pages(self, proc: Process, shm_path: str) -> None:
        """REMOVE on a shared tmpfs mapping frees the pages: they read zero, and only what is read
        back becomes resident again (mm/madvise.c madvise_remove -> shmem_fallocate)."""
        addr, fd = file_mapping(proc, shm_path, vmkit.MAP_SHARED, pages=4)
        proc.write(addr, b"t" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_REMOVE)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)
        assert proc.read(addr, 1) == b"\x00"
        assert proc.mincore(addr, 4 * PAGE) == b"\x01\x00\x00\x00"
        assert proc.pread(fd, 4 * PAGE, 0) == bytes(4 * PAGE)

    def test_remove_on_shared_anon_zeroes_it(self, proc: Process) -> None:
        """REMOVE on shared anonymous memory punches the shmem object: it reads zero
        (mm/madvise.c madvise_remove)."""
        addr = proc.mmap(None, 4 * PAGE, RW, SHARED_ANON)
        proc.write(addr, b"u" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_REMOVE)
        assert proc.read(addr, 4 * PAGE) == bytes(4 * PAGE)

    def test_remove_on_a_private_file_is_eacces_and_changes_nothing(self, proc: Process,
                                                                    file_path: str) -> None:
        """REMOVE needs a shared writable mapping: private file -> EACCES, contents untouched
        (mm/madvise.c madvise_remove)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"F" * 4 * PAGE, 0)
        addr = proc.mmap(None, 4 * PAGE, RW, vmkit.MAP_PRIVATE, fd, 0)
        proc.write(addr, b"p" * PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, M.MADV_REMOVE)
        assert e.value.errno == errno.EACCES
        assert proc.read(addr, 2 * PAGE) == b"p" * PAGE + b"F" * PAGE
        assert proc.pread(fd, 4 * PAGE, 0) == b"F" * 4 * PAGE


SETS_FLAG = [
    (M.MADV_RANDOM, "rr"), (M.MADV_SEQUENTIAL, "sr"), (M.MADV_DONTFORK, "dc"), (M.MADV_MERGEABLE, "mg"),
    (M.MADV_HUGEPAGE, "hg"), (M.MADV_NOHUGEPAGE, "nh"), (M.MADV_DONTDUMP, "dd"), (M.MADV_WIPEONFORK, "wf"),
    (M.MADV_GUARD_INSTALL, "gu"),
]

REVERSES = [
    (M.MADV_RANDOM, M.MADV_NORMAL, "rr"), (M.MADV_SEQUENTIAL, M.MADV_NORMAL, "sr"),
    (M.MADV_DONTFORK, M.MADV_DOFORK, "dc"), (M.MADV_MERGEABLE, M.MADV_UNMERGEABLE, "mg"),
    (M.MADV_DONTDUMP, M.MADV_DODUMP, "dd"), (M.MADV_WIPEONFORK, M.MADV_KEEPONFORK, "wf"),
    (M.MADV_HUGEPAGE, M.MADV_NOHUGEPAGE, "hg"), (M.MADV_NOHUGEPAGE, M.MADV_HUGEPAGE, "nh"),
    (M.MADV_RANDOM, M.MADV_SEQUENTIAL, "rr"), (M.MADV_SEQUENTIAL, M.MADV_RANDOM, "sr"),
]


class TestVmFlags:
    @pytest.mark.parametrize(("advice", "flag"), SETS_FLAG, ids=[a.name for a, _ in SETS_FLAG])
    def test_advice_sets_its_vmflag(self, proc: Process, advice: int, flag: str) -> None:
        """Attribute advice sets its VM_* flag on the VMA (mm/madvise.c madvise_vma_behavior ->
        madvise_update_vma; fs/proc/task_mmu.c show_smap_vma_flags)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        assert flag not in vm_flags(proc, addr)
        proc.madvise(addr, 4 * PAGE, advice)
        assert flag in vm_flags(proc, addr)

    @pytest.mark.parametrize(("advice", "reverse", "flag"), REVERSES,
                             ids=[f"{a.name}-{r.name}" for a, r, _ in REVERSES])
    def test_reverse_advice_clears_the_vmflag(self, proc: Process, advice: int, reverse: int,
                                              flag: str) -> None:
        """The opposite advice clears the flag again (mm/madvise.c madvise_vma_behavior)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.madvise(addr, 4 * PAGE, advice)
        proc.madvise(addr, 4 * PAGE, reverse)
        assert flag not in vm_flags(proc, addr)

    def test_mergeable_on_shared_mappings_sets_nothing(self, proc: Process, shm_path: str) -> None:
        """MERGEABLE is accepted on shared mappings but sets mg only on private ones
        (mm/ksm.c ksm_madvise: VM_SHARED returns 0 early)."""
        anon = proc.mmap(None, 4 * PAGE, RW, SHARED_ANON)
        tmpfs, _ = file_mapping(proc, shm_path, vmkit.MAP_SHARED, pages=4)
        proc.madvise(anon, 4 * PAGE, M.MADV_MERGEABLE)
        proc.madvise(tmpfs, 4 * PAGE, M.MADV_MERGEABLE)
        assert "mg" not in vm_flags(proc, anon)
        assert "mg" not in vm_flags(proc, tmpfs)

    def test_advice_on_the_middle_splits_and_the_reversal_merges(self, proc: Process) -> None:
        """An attribute change on part of a VMA splits it; undoing it merges the pieces back
        (mm/madvise.c madvise_update_vma -> vma_modify_flags; mm/vma.c)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.madvise(addr + PAGE, 2 * PAGE, M.MADV_DONTDUMP)
        assert vmas_in(proc, addr, addr + 4 * PAGE) == [
            (addr, addr + PAGE, "rw-p"), (addr + PAGE, addr + 3 * PAGE, "rw-p"),
            (addr + 3 * PAGE, addr + 4 * PAGE, "rw-p")]
        assert "dd" in vm_flags(proc, addr + PAGE)
        assert "dd" not in vm_flags(proc, addr)
        proc.madvise(addr + PAGE, 2 * PAGE, M.MADV_DODUMP)
        assert vmas_in(proc, addr, addr + 4 * PAGE) == [(addr, addr + 4 * PAGE, "rw-p")]

    def test_behaviour_only_advice_leaves_the_vma_alone(self, proc: Process) -> None:
        """WILLNEED, COLD, PAGEOUT, POPULATE and DONTNEED on part of a VMA change no attribute and
        split nothing (mm/madvise.c madvise_vma_behavior)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        before = vm_flags(proc, addr)
        for advice in (M.MADV_WILLNEED, M.MADV_COLD, M.MADV_PAGEOUT, M.MADV_POPULATE_READ,
                       M.MADV_POPULATE_WRITE, M.MADV_DONTNEED, M.MADV_FREE):
            proc.madvise(addr + PAGE, PAGE, advice)
        assert vmas_in(proc, addr, addr + 4 * PAGE) == [(addr, addr + 4 * PAGE, "rw-p")]
        assert vm_flags(proc, addr) == before


class TestFork:
    def test_wipeonfork_child_reads_zero_parent_keeps(self, proc: Process) -> None:
        """A WIPEONFORK VMA is empty in the child and intact in the parent (kernel/fork.c dup_mmap:
        VM_WIPEONFORK skips copy_page_range)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x88" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_WIPEONFORK)
        with proc.fork() as child:
            assert child.read(addr, 4 * PAGE) == bytes(4 * PAGE)
            assert "wf" in vm_flags(child, addr)
        assert proc.read(addr, 4 * PAGE) == b"\x88" * 4 * PAGE

    def test_keeponfork_restores_copying(self, proc: Process) -> None:
        """KEEPONFORK clears VM_WIPEONFORK: the child inherits the data again (kernel/fork.c dup_mmap)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x88" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_WIPEONFORK)
        proc.madvise(addr, 4 * PAGE, M.MADV_KEEPONFORK)
        with proc.fork() as child:
            assert child.read(addr, 4 * PAGE) == b"\x88" * 4 * PAGE

    def test_dontfork_range_is_absent_in_the_child(self, proc: Process) -> None:
        """A DONTFORK VMA is not copied: the child faults SEGV_MAPERR there (kernel/fork.c dup_mmap:
        VM_DONTCOPY)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x99" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTFORK)
        with proc.fork() as child:
            assert vmas_in(child, addr, addr + 4 * PAGE) == []
            with pytest.raises(vmkit.SegmentationFault) as e:
                child.read(addr, 1)
            assert (e.value.addr, e.value.code) == (addr, vmkit.SEGV_MAPERR)
        assert proc.read(addr, 1) == b"\x99"

    def test_dofork_restores_inheritance(self, proc: Process) -> None:
        """DOFORK clears VM_DONTCOPY: the child gets the range again (kernel/fork.c dup_mmap)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\x99" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTFORK)
        proc.madvise(addr, 4 * PAGE, M.MADV_DOFORK)
        with proc.fork() as child:
            assert child.read(addr, 4 * PAGE) == b"\x99" * 4 * PAGE


class TestGuard:
    def _guarded(self, proc: Process) -> int:
        """A written 4-page private anon VMA with a guard on its second page."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"\xaa" * 4 * PAGE)
        proc.madvise(addr + PAGE, PAGE, M.MADV_GUARD_INSTALL)
        return addr

    def test_install_does_not_split_and_sets_gu(self, proc: Process) -> None:
        """Guard regions live in the page tables: no VMA split, only VM flag ``gu`` on the VMA
        (mm/madvise.c madvise_guard_install)."""
        addr = self._guarded(proc)
        assert vmas_in(proc, addr, addr + 4 * PAGE) == [(addr, addr + 4 * PAGE, "rw-p")]
        assert "gu" in vm_flags(proc, addr)

    def test_guard_page_is_not_resident(self, proc: Process) -> None:
        """mincore reports a guard entry as 0 (mm/mincore.c mincore_pte_range)."""
        addr = self._guarded(proc)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01\x00\x01\x01"

    def test_access_faults_segv(self, proc: Process) -> None:
        """A load or store on a guard page raises SIGSEGV with SEGV_MAPERR (mm/memory.c do_swap_page:
        guard marker -> VM_FAULT_SIGSEGV; arch/x86/mm/fault.c bad_area_nosemaphore)."""
        addr = self._guarded(proc)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(addr + PAGE + 8, 1)
        assert (e.value.addr, e.value.code) == (addr + PAGE + 8, vmkit.SEGV_MAPERR)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.write(addr + PAGE, b"x")
        assert (e.value.addr, e.value.code) == (addr + PAGE, vmkit.SEGV_MAPERR)
        assert proc.read(addr, 1) == b"\xaa"
        assert proc.read(addr + 2 * PAGE, 1) == b"\xaa"

    def test_guard_survives_dontneed(self, proc: Process) -> None:
        """DONTNEED zaps the other pages but keeps guard markers (mm/madvise.c
        madvise_dontneed_single_vma keeps guard markers)."""
        addr = self._guarded(proc)
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTNEED)
        assert proc.read(addr, 1) == b"\x00"
        with pytest.raises(vmkit.SegmentationFault):
            proc.read(addr + PAGE, 1)

    def test_guard_is_inherited_across_fork(self, proc: Process) -> None:
        """fork copies guard markers with the page tables (mm/memory.c copy_nonpresent_pte)."""
        addr = self._guarded(proc)
        with proc.fork() as child:
            assert child.read(addr, 1) == b"\xaa"
            with pytest.raises(vmkit.SegmentationFault) as e:
                child.read(addr + PAGE, 1)
            assert e.value.addr == addr + PAGE

    def test_mlock_over_a_guard_is_enomem_but_leaves_vm_locked(self, proc: Process) -> None:
        """mlock populates after setting VM_LOCKED; the guard page fails population -> ENOMEM, the
        flag stays (mm/mlock.c do_mlock -> __mm_populate)."""
        addr = self._guarded(proc)
        with pytest.raises(OSError) as e:
            proc.mlock(addr, 4 * PAGE)
        assert e.value.errno == errno.ENOMEM
        assert "lo" in vm_flags(proc, addr)
        assert proc.status()["VmLck"] == "16 kB"

    def test_guard_remove_leaves_a_zero_page(self, proc: Process) -> None:
        """GUARD_REMOVE clears the marker; the old contents were discarded at install, so the page
        reads zero (mm/madvise.c madvise_guard_remove)."""
        addr = self._guarded(proc)
        proc.madvise(addr, 4 * PAGE, M.MADV_GUARD_REMOVE)
        assert proc.read(addr, 3 * PAGE) == b"\xaa" * PAGE + bytes(PAGE) + b"\xaa" * PAGE
        assert "gu" in vm_flags(proc, addr)

    def test_install_on_prot_none_and_mprotect_over_it(self, proc: Process) -> None:
        """Guards install on PROT_NONE memory, and mprotect over a guard keeps it faulting
        (mm/madvise.c madvise_guard_install; mm/mprotect.c change_pte_range skips markers)."""
        addr = proc.mmap(None, 4 * PAGE, vmkit.PROT_NONE, PRIVATE_ANON)
        proc.madvise(addr, PAGE, M.MADV_GUARD_INSTALL)
        proc.mprotect(addr, 4 * PAGE, RW)
        proc.write(addr + PAGE, b"ok")
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(addr, 1)
        assert e.value.addr == addr


class TestLocked:
    @pytest.mark.parametrize("advice", [M.MADV_DONTNEED, M.MADV_FREE, M.MADV_PAGEOUT, M.MADV_COLD,
                                        M.MADV_REMOVE, M.MADV_GUARD_INSTALL],
                             ids=lambda a: a.name)
    def test_zapping_advice_on_map_locked_is_einval(self, proc: Process, advice: int) -> None:
        """VM_LOCKED refuses the advice that would drop or age pages (mm/madvise.c
        madvise_dontneed_free_valid_vma, can_madv_lru_vma, madvise_remove)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        proc.write(addr, b"\xbb" * 4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, advice)
        assert e.value.errno == errno.EINVAL
        assert proc.read(addr, 4 * PAGE) == b"\xbb" * 4 * PAGE

    def test_remove_on_a_locked_shared_file_is_einval(self, proc: Process, file_path: str) -> None:
        """REMOVE checks VM_LOCKED before the file: a locked shared file mapping -> EINVAL
        (mm/madvise.c madvise_remove)."""
        addr, fd = file_mapping(proc, file_path, vmkit.MAP_SHARED, pages=4)
        proc.write(addr, b"L" * 4 * PAGE)
        proc.mlock(addr, 4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, M.MADV_REMOVE)
        assert e.value.errno == errno.EINVAL
        assert proc.pread(fd, 4 * PAGE, 0) == b"L" * 4 * PAGE

    def test_dontneed_locked_zeroes_a_locked_region(self, proc: Process) -> None:
        """DONTNEED_LOCKED is DONTNEED allowed on VM_LOCKED: the pages read zero, the VMA stays locked
        (mm/madvise.c madvise_dontneed_free_valid_vma)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        proc.write(addr, b"\xbb" * 4 * PAGE)
        proc.madvise(addr, 4 * PAGE, M.MADV_DONTNEED_LOCKED)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)
        assert proc.read(addr, 4 * PAGE) == bytes(4 * PAGE)
        assert "lo" in vm_flags(proc, addr)


class TestPopulate:
    @pytest.mark.parametrize("advice", [M.MADV_POPULATE_READ, M.MADV_POPULATE_WRITE], ids=lambda a: a.name)
    def test_prot_none_is_einval(self, proc: Process, advice: int) -> None:
        """POPULATE on an inaccessible VMA -> EINVAL (mm/madvise.c madvise_populate ->
        faultin_page_range; mm/gup.c check_vma_flags)."""
        addr = proc.mmap(None, 4 * PAGE, vmkit.PROT_NONE, PRIVATE_ANON)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, advice)
        assert e.value.errno == errno.EINVAL

    def test_populate_write_on_read_only_is_einval(self, proc: Process) -> None:
        """POPULATE_WRITE needs write permission -> EINVAL on PROT_READ (mm/gup.c check_vma_flags)."""
        addr = proc.mmap(None, 4 * PAGE, vmkit.PROT_READ, PRIVATE_ANON)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 4 * PAGE, M.MADV_POPULATE_WRITE)
        assert e.value.errno == errno.EINVAL
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)

    def test_populate_read_on_read_only_maps_every_page(self, proc: Process) -> None:
        """POPULATE_READ read-faults every page (zero page for anon): mincore all 1
        (mm/madvise.c madvise_populate)."""
        addr = proc.mmap(None, 4 * PAGE, vmkit.PROT_READ, PRIVATE_ANON)
        assert proc.mincore(addr, 4 * PAGE) == bytes(4)
        proc.madvise(addr, 4 * PAGE, M.MADV_POPULATE_READ)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01" * 4

    def test_populate_write_makes_private_anon_resident(self, proc: Process) -> None:
        """POPULATE_WRITE write-faults every page: all resident, reading zero (mm/madvise.c madvise_populate)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.madvise(addr, 4 * PAGE, M.MADV_POPULATE_WRITE)
        assert proc.mincore(addr, 4 * PAGE) == b"\x01" * 4
        assert proc.read(addr, 4 * PAGE) == bytes(4 * PAGE)

    def test_populate_write_past_eof_is_efault(self, proc: Process, file_path: str) -> None:
        """An 8-page shared mapping of a 4-page file: the fault past EOF is SIGBUS -> EFAULT
        (mm/madvise.c madvise_populate; mm/gup.c faultin_page)."""
        addr, _ = file_mapping(proc, file_path, vmkit.MAP_SHARED, pages=8, size=4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.madvise(addr, 8 * PAGE, M.MADV_POPULATE_WRITE)
        assert e.value.errno == errno.EFAULT
        assert proc.mincore(addr, 8 * PAGE) == b"\x01" * 4 + bytes(4)


class TestCollapseAndReclaim:
    def test_collapse_makes_a_2mib_huge_page(self, proc: Process) -> None:
        """COLLAPSE on a written, 2 MiB-aligned private anon region builds one THP: AnonHugePages
        0 -> 2048 kB (mm/khugepaged.c madvise_collapse)."""
        addr = pmd_aligned(proc, PMD, PRIVATE_ANON)
        proc.write(addr, b"\xcc" * PMD)
        assert kb(smaps_of(proc, addr)["AnonHugePages"]) == 0
        proc.madvise(addr, PMD, M.MADV_COLLAPSE)
        assert kb(smaps_of(proc, addr)["AnonHugePages"]) == 2048
        assert proc.read(addr + PMD - PAGE, PAGE) == b"\xcc" * PAGE

    def test_collapse_works_on_an_mlocked_region(self, proc: Process) -> None:
        """VM_LOCKED does not stop COLLAPSE on a whole 2 MiB private anon VMA: AnonHugePages 2048 kB,
        still locked (mm/khugepaged.c madvise_collapse; contradicts machine-facts §9.1's mlocked EINVAL)."""
        addr = pmd_aligned(proc, PMD, PRIVATE_ANON)
        proc.write(addr, b"\xcc" * PMD)
        proc.mlock(addr, PMD)
        proc.madvise(addr, PMD, M.MADV_COLLAPSE)
        fields = smaps_of(proc, addr)
        assert (kb(fields["AnonHugePages"]), kb(fields["Locked"])) == (2048, 2048)
        assert "lo" in fields["VmFlags"].split()

    @pytest.mark.parametrize("advice", [M.MADV_COLD, M.MADV_PAGEOUT], ids=lambda a: a.name)
    def test_cold_and_pageout_change_no_residency_without_swap(self, proc: Process, file_path: str,
                                                               advice: int) -> None:
        """COLD/PAGEOUT only age or try to reclaim; without swap, anon and dirty file pages stay
        (mm/madvise.c madvise_cold / madvise_pageout)."""
        anon = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(anon, b"\xdd" * 4 * PAGE)
        shared, _ = file_mapping(proc, file_path, vmkit.MAP_SHARED, pages=4)
        proc.write(shared, b"\xee" * 4 * PAGE)
        proc.madvise(anon, 4 * PAGE, advice)
        proc.madvise(shared, 4 * PAGE, advice)
        assert proc.mincore(anon, 4 * PAGE) == b"\x01" * 4
        assert proc.mincore(shared, 4 * PAGE) == b"\x01" * 4
        assert proc.read(anon, 4 * PAGE) == b"\xdd" * 4 * PAGE
        assert proc.read(shared, 4 * PAGE) == b"\xee" * 4 * PAGE


def test_free_drains_the_earlier_lazyfree_batch(proc: Process) -> None:
    """``madvise_free_single_vma`` drains the LRU batches before its walk: pages an earlier
    MADV_FREE left in the lazyfree batch count as LazyFree after the next MADV_FREE (found by a THP
    differential run)."""
    first = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
    proc.write(first, b"\x01" * 4 * PAGE)
    proc.madvise(first, 4 * PAGE, vmkit.MADV_FREE)
    assert kb(smaps_of(proc, first)["LazyFree"]) == 0  # 4 pages: the batch of 31 is not full
    second = proc.mmap(None, PAGE, vmkit.PROT_READ, PRIVATE_ANON)
    proc.madvise(second, PAGE, vmkit.MADV_FREE)
    assert kb(smaps_of(proc, first)["LazyFree"]) == 16
