"""mremap: resizing in place, moving, MREMAP_FIXED, MREMAP_DONTUNMAP, duplication (old_size 0),
the 6.17+ multi-VMA move, parameter and VMA checks, RLIMIT_MEMLOCK, and SIGBUS past EOF.

machine-facts.md §4, kernel-rules.md §8 (mm/mremap.c).  Every expected value below was observed on
the 6.18 kernel.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import parse_maps, vm_flags, vmas_in

R = vmkit.PROT_READ
FIXED = vmkit.MAP_FIXED
MAYMOVE = vmkit.MREMAP_MAYMOVE
MFIXED = vmkit.MREMAP_FIXED
DONTUNMAP = vmkit.MREMAP_DONTUNMAP
SRC = ARENA               # where sources go
DST = ARENA + 0x100000    # where MREMAP_FIXED destinations go
MiB = 1 << 20


def arena(proc: Process) -> list[tuple[int, int, str]]:
    """(start, end, perms) of every VMA in the first 4 MiB of the arena."""
    return vmas_in(proc, ARENA, ARENA + 4 * MiB)


def anon(proc: Process, addr: int, pages: int, prot: int = RW, flags: int = PRIVATE_ANON) -> int:
    """A MAP_FIXED anonymous mapping of ``pages`` pages at ``addr``."""
    return proc.mmap(addr, pages * PAGE, prot, flags | FIXED)


def top_down_slot(proc: Process, length: int) -> int:
    """Where the top-down allocator would place ``length`` bytes now (probe map, then unmap)."""
    probe = proc.mmap(None, length, vmkit.PROT_NONE, PRIVATE_ANON)
    proc.munmap(probe, length)
    return probe


def lines_in(proc: Process, lo: int, hi: int) -> list[tuple[int, int, str, int, str]]:
    """(start, end, perms, offset, name) of the maps lines overlapping [lo, hi)."""
    return [(m.start, m.end, m.perms, m.offset, m.name) for m in parse_maps(proc.maps())
            if m.end > lo and m.start < hi]


def assert_unmapped(proc: Process, addr: int) -> None:
    """A load at ``addr`` faults with SEGV_MAPERR: nothing is mapped there."""
    with pytest.raises(vmkit.SegmentationFault) as e:
        proc.read(addr, 1)
    assert (e.value.addr, e.value.code) == (addr, vmkit.SEGV_MAPERR)


def errno_of(call: Callable[..., object], *args: object) -> int:
    """The errno of the OSError that ``call(*args)`` raises."""
    with pytest.raises(OSError) as e:
        call(*args)
    return e.value.errno


def make_file(proc: Process, path: str, pages: int, fill: bytes = b"F") -> int:
    """Creates ``path`` with ``pages`` pages of ``fill``; returns an O_RDWR fd."""
    fd = proc.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    proc.pwrite(fd, fill * (pages * PAGE), 0)
    return fd


# --------------------------------------------------------------------------------------------
class TestResize:
    def test_grow_in_place_when_the_space_is_free(self, proc: Process) -> None:
        """Growth happens in place when nothing is mapped after the VMA (mm/mremap.c vma_expandable, vma_merge_extend)."""
        a = anon(proc, SRC, 2)
        proc.write(a, b"keep")
        assert proc.mremap(a, 2 * PAGE, 4 * PAGE) == a
        assert arena(proc) == [(a, a + 4 * PAGE, "rw-p")]
        assert proc.read(a, 4) == b"keep"
        assert proc.read(a + 3 * PAGE, 1) == b"\x00"

    def test_shrink_in_place_unmaps_the_tail(self, proc: Process) -> None:
        """A shrink always stays in place and unmaps [addr+new_len, addr+old_len) (mm/mremap.c SYSCALL_DEFINE5(mremap), mm/vma.c do_vmi_munmap)."""
        a = anon(proc, SRC, 4)
        proc.write(a, b"keep")
        assert proc.mremap(a, 4 * PAGE, PAGE) == a
        assert arena(proc) == [(a, a + PAGE, "rw-p")]
        assert proc.read(a, 4) == b"keep"
        assert_unmapped(proc, a + PAGE)

    def test_grow_blocked_by_the_next_vma_is_enomem(self, proc: Process) -> None:
        """Without MAYMOVE a growth that cannot happen in place is ENOMEM (mm/mremap.c SYSCALL_DEFINE5(mremap), vma_expandable)."""
        a = anon(proc, SRC, 1)
        anon(proc, SRC + 2 * PAGE, 1, prot=R)
        assert errno_of(proc.mremap, a, PAGE, 4 * PAGE) == errno.ENOMEM
        assert arena(proc) == [(a, a + PAGE, "rw-p"), (a + 2 * PAGE, a + 3 * PAGE, "r--p")]

    def test_grow_in_place_merges_with_an_equal_next_vma(self, proc: Process) -> None:
        """In-place growth up to an identical next VMA merges with it (mm/vma.c vma_merge_extend)."""
        a = anon(proc, SRC, 1)
        anon(proc, SRC + 2 * PAGE, 1)
        assert proc.mremap(a, PAGE, 2 * PAGE) == a
        assert arena(proc) == [(a, a + 3 * PAGE, "rw-p")]

    def test_blocked_grow_with_maymove_moves_keeps_data_and_unmaps_the_old_range(self, proc: Process) -> None:
        """MAYMOVE picks a new top-down address, moves the pages and unmaps the source (mm/mremap.c move_vma)."""
        a = anon(proc, SRC, 1)
        anon(proc, SRC + 2 * PAGE, 1, prot=R)
        proc.write(a, b"hello")
        expected = top_down_slot(proc, 4 * PAGE)
        r = proc.mremap(a, PAGE, 4 * PAGE, MAYMOVE)
        assert r == expected
        assert vmas_in(proc, r, r + 4 * PAGE) == [(r, r + 4 * PAGE, "rw-p")]
        assert proc.read(r, 5) == b"hello"
        assert arena(proc) == [(a + 2 * PAGE, a + 3 * PAGE, "r--p")]
        assert_unmapped(proc, a)

    @pytest.mark.parametrize("flags", [0, MAYMOVE], ids=["0", "MAYMOVE"])
    def test_same_size_without_fixed_is_a_noop_even_over_several_vmas(self, proc: Process, flags: int) -> None:
        """old_len == new_len without FIXED returns addr untouched, across VMAs and holes (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 4)
        proc.mprotect(a + PAGE, PAGE, R)
        proc.munmap(a + 2 * PAGE, PAGE)
        before = arena(proc)
        assert proc.mremap(a, 4 * PAGE, 4 * PAGE, flags) == a
        assert arena(proc) == before

    def test_shrinking_a_middle_sub_range_splits_the_vma(self, proc: Process) -> None:
        """A shrink of a sub-range unmaps its tail wherever it lies, splitting the VMA (mm/mremap.c SYSCALL_DEFINE5(mremap), mm/vma.c do_vmi_munmap)."""
        a = anon(proc, SRC, 8)
        r = proc.mremap(a + 2 * PAGE, 4 * PAGE, PAGE)
        assert r == a + 2 * PAGE
        assert arena(proc) == [(a, a + 3 * PAGE, "rw-p"), (a + 6 * PAGE, a + 8 * PAGE, "rw-p")]

    def test_moving_a_sub_range_splits_the_source(self, proc: Process) -> None:
        """MAYMOVE growth of a sub-range moves just that part; the source is split around the hole (mm/mremap.c move_vma)."""
        a = anon(proc, SRC, 4)
        proc.write(a + PAGE, b"mid")
        expected = top_down_slot(proc, 3 * PAGE)
        r = proc.mremap(a + PAGE, PAGE, 3 * PAGE, MAYMOVE)
        assert r == expected
        assert proc.read(r, 3) == b"mid"
        assert arena(proc) == [(a, a + PAGE, "rw-p"), (a + 2 * PAGE, a + 4 * PAGE, "rw-p")]


# --------------------------------------------------------------------------------------------
class TestParameters:
    def test_fixed_without_maymove_is_einval(self, proc: Process) -> None:
        """MREMAP_FIXED requires MREMAP_MAYMOVE (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 1)
        assert errno_of(proc.mremap, a, PAGE, PAGE, MFIXED, DST) == errno.EINVAL
        assert arena(proc) == [(a, a + PAGE, "rw-p")]

    def test_unaligned_old_address_is_einval(self, proc: Process) -> None:
        """old_address must be page-aligned (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a + 1, PAGE, 2 * PAGE, MAYMOVE) == errno.EINVAL

    def test_new_size_zero_is_einval(self, proc: Process) -> None:
        """PAGE_ALIGN(new_len) == 0 is EINVAL (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a, PAGE, 0, MAYMOVE) == errno.EINVAL
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    @pytest.mark.parametrize("flag", [0x8, 0x10, 0x80], ids=lambda f: f"{f:#x}")
    def test_unknown_flag_is_einval(self, proc: Process, flag: int) -> None:
        """Flags outside MAYMOVE|FIXED|DONTUNMAP are EINVAL (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a, PAGE, PAGE, flag) == errno.EINVAL

    def test_fixed_with_unaligned_new_address_is_einval(self, proc: Process) -> None:
        """MREMAP_FIXED needs a page-aligned new_addr (mm/mremap.c mremap_to)."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a, 2 * PAGE, 2 * PAGE, MAYMOVE | MFIXED, DST + 1) == errno.EINVAL
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    def test_fixed_destination_overlapping_the_source_is_einval(self, proc: Process) -> None:
        """The destination may not overlap the source (mm/mremap.c mremap_to)."""
        a = anon(proc, SRC, 4)
        assert errno_of(proc.mremap, a, 2 * PAGE, 2 * PAGE, MAYMOVE | MFIXED, a + PAGE) == errno.EINVAL
        assert arena(proc) == [(a, a + 4 * PAGE, "rw-p")]

    @pytest.mark.parametrize("flags", [0, MAYMOVE], ids=["0", "MAYMOVE"])
    def test_new_len_of_2_pow_48_is_einval(self, proc: Process, flags: int) -> None:
        """Growth to a new_len of 2^48 (> TASK_SIZE) is EINVAL on 6.18 (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a, 2 * PAGE, 1 << 48, flags) == errno.EINVAL
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    def test_unmapped_old_address_is_efault(self, proc: Process) -> None:
        """No VMA at old_address is EFAULT (mm/mremap.c vma_to_resize)."""
        assert errno_of(proc.mremap, SRC, PAGE, 2 * PAGE, MAYMOVE) == errno.EFAULT

    def test_old_size_beyond_the_vma_end_is_efault(self, proc: Process) -> None:
        """old_len crossing the VMA's end is EFAULT when growing (mm/mremap.c vma_to_resize)."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a, 3 * PAGE, 4 * PAGE, MAYMOVE) == errno.EFAULT
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    def test_growing_a_range_spanning_three_vmas_is_efault(self, proc: Process) -> None:
        """Growth may not span VMAs: old range over 3 VMAs gives EFAULT (mm/mremap.c vma_to_resize)."""
        a = anon(proc, SRC, 3)
        proc.mprotect(a + PAGE, PAGE, R)
        assert errno_of(proc.mremap, a, 3 * PAGE, 4 * PAGE, MAYMOVE) == errno.EFAULT
        assert errno_of(proc.mremap, a, 3 * PAGE, 4 * PAGE) == errno.EFAULT
        assert arena(proc) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"),
                               (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]


# --------------------------------------------------------------------------------------------
class TestFixed:
    def test_fixed_onto_an_existing_mapping_replaces_it(self, proc: Process) -> None:
        """MREMAP_FIXED unmaps the destination first (mm/mremap.c mremap_to, do_munmap)."""
        a = anon(proc, SRC, 2)
        proc.write(a, b"src0")
        proc.write(a + PAGE, b"src1")
        d = anon(proc, DST, 4, prot=R)
        assert proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | MFIXED, d) == d
        assert arena(proc) == [(d, d + 2 * PAGE, "rw-p"), (d + 2 * PAGE, d + 4 * PAGE, "r--p")]
        assert proc.read(d, 4) == b"src0" and proc.read(d + PAGE, 4) == b"src1"
        assert_unmapped(proc, a)

    def test_fixed_with_shrink(self, proc: Process) -> None:
        """With FIXED a shrink is done in place first, then the rest moves (mm/mremap.c mremap_to)."""
        a = anon(proc, SRC, 2)
        proc.write(a, b"first")
        proc.write(a + PAGE, b"second")
        assert proc.mremap(a, 2 * PAGE, PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(DST, DST + PAGE, "rw-p")]
        assert proc.read(DST, 5) == b"first"

    def test_fixed_with_grow(self, proc: Process) -> None:
        """FIXED growth moves to new_addr and the extra pages read zero (mm/mremap.c mremap_to, move_vma)."""
        a = anon(proc, SRC, 1)
        proc.write(a, b"grow")
        assert proc.mremap(a, PAGE, 3 * PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(DST, DST + 3 * PAGE, "rw-p")]
        assert proc.read(DST, 4) == b"grow"
        assert proc.read(DST + 2 * PAGE, 1) == b"\x00"


# --------------------------------------------------------------------------------------------
def _mapping(proc: Process, kind: str, path: str) -> tuple[int, int]:
    """A 2-page mapping of ``kind`` at SRC holding b"data" at its start; returns (addr, fd)."""
    if kind in ("private anon", "shared anon"):
        a = anon(proc, SRC, 2, flags=PRIVATE_ANON if kind == "private anon" else SHARED_ANON)
        proc.write(a, b"data")
        return a, -1
    fd = make_file(proc, path, 2)
    share = vmkit.MAP_SHARED if kind == "shared file" else vmkit.MAP_PRIVATE
    a = proc.mmap(SRC, 2 * PAGE, RW, share | FIXED, fd, 0)
    proc.write(a, b"data")
    return a, fd


KINDS = ["private anon", "shared anon", "shared file", "private file"]


class TestDontunmap:
    @pytest.mark.parametrize("kind", KINDS)
    def test_size_change_or_missing_maymove_is_einval(self, proc: Process, file_path: str, kind: str) -> None:
        """DONTUNMAP needs MAYMOVE and old_len == new_len (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a, _ = _mapping(proc, kind, file_path)
        assert errno_of(proc.mremap, a, 2 * PAGE, 4 * PAGE, MAYMOVE | DONTUNMAP) == errno.EINVAL
        assert errno_of(proc.mremap, a, 2 * PAGE, PAGE, MAYMOVE | DONTUNMAP) == errno.EINVAL
        assert errno_of(proc.mremap, a, 2 * PAGE, 2 * PAGE, DONTUNMAP) == errno.EINVAL
        assert len(arena(proc)) == 1

    def test_private_anon_old_range_stays_mapped_and_reads_zero(self, proc: Process) -> None:
        """DONTUNMAP moves the page tables; a private anon source stays mapped, now empty (mm/mremap.c move_vma)."""
        a, _ = _mapping(proc, "private anon", "")
        expected = top_down_slot(proc, 2 * PAGE)
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP)
        assert r == expected
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]
        assert vmas_in(proc, r, r + 2 * PAGE) == [(r, r + 2 * PAGE, "rw-p")]
        assert proc.read(r, 4) == b"data"
        assert proc.read(a, 4) == b"\x00" * 4

    def test_shared_anon_old_range_still_shows_the_data(self, proc: Process) -> None:
        """DONTUNMAP of shared anon: both VMAs map the same shmem object (mm/mremap.c move_vma)."""
        a, _ = _mapping(proc, "shared anon", "")
        expected = top_down_slot(proc, 2 * PAGE)
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP)
        assert r == expected
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-s")]
        assert vmas_in(proc, r, r + 2 * PAGE) == [(r, r + 2 * PAGE, "rw-s")]
        assert proc.read(a, 4) == b"data" and proc.read(r, 4) == b"data"
        proc.write(r + PAGE, b"new")
        assert proc.read(a + PAGE, 3) == b"new"

    def test_shared_file_old_range_still_shows_the_file(self, proc: Process, file_path: str) -> None:
        """DONTUNMAP of a shared file mapping: both ranges map the page cache (mm/mremap.c move_vma)."""
        a, fd = _mapping(proc, "shared file", file_path)
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP | MFIXED, DST)
        assert r == DST
        assert lines_in(proc, ARENA, ARENA + 4 * MiB) == [
            (a, a + 2 * PAGE, "rw-s", 0, file_path), (r, r + 2 * PAGE, "rw-s", 0, file_path)]
        assert proc.read(a, 6) == b"dataFF" and proc.read(r, 6) == b"dataFF"
        assert proc.pread(fd, 6, 0) == b"dataFF"

    def test_private_file_cow_data_moves_and_old_refaults_from_file(self, proc: Process, file_path: str) -> None:
        """DONTUNMAP of a private file mapping moves the COW pages; the source refaults the file (mm/mremap.c move_vma)."""
        a, fd = _mapping(proc, "private file", file_path)
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP | MFIXED, DST)
        assert r == DST
        assert lines_in(proc, ARENA, ARENA + 4 * MiB) == [
            (a, a + 2 * PAGE, "rw-p", 0, file_path), (r, r + 2 * PAGE, "rw-p", 0, file_path)]
        assert proc.read(r, 6) == b"dataFF"
        assert proc.read(a, 6) == b"FFFFFF"
        assert proc.pread(fd, 6, 0) == b"FFFFFF"

    def test_dontunmap_with_fixed_lands_at_the_destination(self, proc: Process) -> None:
        """MAYMOVE|DONTUNMAP|FIXED moves to new_addr and keeps the source VMA (mm/mremap.c mremap_to)."""
        a, _ = _mapping(proc, "private anon", "")
        assert proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP | MFIXED, DST) == DST
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p"), (DST, DST + 2 * PAGE, "rw-p")]
        assert proc.read(DST, 4) == b"data"
        assert proc.read(a, 4) == b"\x00" * 4

    def test_mlocked_new_vma_keeps_lo_old_loses_it(self, proc: Process) -> None:
        """DONTUNMAP clears VM_LOCKED on the source; the new VMA stays locked (mm/mremap.c move_vma)."""
        a = anon(proc, SRC, 2)
        proc.mlock(a, 2 * PAGE)
        proc.write(a, b"L")
        assert "lo" in vm_flags(proc, a)
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP | MFIXED, DST)
        assert r == DST
        assert "lo" in vm_flags(proc, r)
        assert "lo" not in vm_flags(proc, a)
        assert proc.read(r, 1) == b"L" and proc.read(a, 1) == b"\x00"

    def test_mlocked_dontunmap_counts_vmlck_twice(self, proc: Process) -> None:
        """On 6.18 DONTUNMAP of a locked VMA adds new_len to locked_vm without subtracting the source: VmLck stays inflated (mm/mremap.c move_vma)."""
        a = anon(proc, SRC, 2)
        proc.mlock(a, 2 * PAGE)
        assert proc.status()["VmLck"] == "8 kB"
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP | MFIXED, DST)
        assert proc.status()["VmLck"] == "16 kB"
        proc.munmap(a, 2 * PAGE)
        proc.munmap(r, 2 * PAGE)
        assert proc.status()["VmLck"] == "8 kB"

    def test_plain_move_of_a_locked_vma_keeps_vmlck(self, proc: Process) -> None:
        """A move (no DONTUNMAP) of a locked VMA keeps locked_vm unchanged and the VMA locked (mm/mremap.c move_vma)."""
        a = anon(proc, SRC, 2)
        proc.mlock(a, 2 * PAGE)
        r = proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | MFIXED, DST)
        assert proc.status()["VmLck"] == "8 kB"
        assert "lo" in vm_flags(proc, r)


# --------------------------------------------------------------------------------------------
class TestDuplicate:
    def test_old_size_zero_on_shared_anon_makes_an_alias(self, proc: Process) -> None:
        """old_len 0 on a shared mapping maps the same pages a second time (mm/mremap.c move_vma, mm/vma.c copy_vma)."""
        a = anon(proc, SRC, 2, flags=SHARED_ANON)
        expected = top_down_slot(proc, 2 * PAGE)
        r = proc.mremap(a, 0, 2 * PAGE, MAYMOVE)
        assert r == expected
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-s")]
        assert vmas_in(proc, r, r + 2 * PAGE) == [(r, r + 2 * PAGE, "rw-s")]
        proc.write(r + PAGE, b"via r")
        assert proc.read(a + PAGE, 5) == b"via r"
        proc.write(a, b"via a")
        assert proc.read(r, 5) == b"via a"

    def test_old_size_zero_with_fixed_aliases_at_the_destination(self, proc: Process) -> None:
        """old_len 0 with FIXED puts the alias at new_addr; new_len may be smaller (mm/mremap.c mremap_to)."""
        a = anon(proc, SRC, 2, flags=SHARED_ANON)
        proc.write(a, b"alias")
        assert proc.mremap(a, 0, PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-s"), (DST, DST + PAGE, "rw-s")]
        assert proc.read(DST, 5) == b"alias"

    def test_old_size_zero_on_shared_anon_without_maymove_is_enomem(self, proc: Process) -> None:
        """old_len 0 without MAYMOVE cannot grow in place: ENOMEM (mm/mremap.c SYSCALL_DEFINE5(mremap))."""
        a = anon(proc, SRC, 2, flags=SHARED_ANON)
        assert errno_of(proc.mremap, a, 0, 2 * PAGE) == errno.ENOMEM
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-s")]

    def test_old_size_zero_on_private_anon_is_einval(self, proc: Process) -> None:
        """old_len 0 on a private mapping is EINVAL (mm/mremap.c vma_to_resize)."""
        a = anon(proc, SRC, 2)
        assert errno_of(proc.mremap, a, 0, 2 * PAGE, MAYMOVE) == errno.EINVAL
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]


# --------------------------------------------------------------------------------------------
class TestMultiVmaMove:
    def test_fixed_move_of_three_vmas_keeps_three_vmas(self, proc: Process) -> None:
        """A same-size FIXED move may span VMAs (6.17+); each keeps its prot at the destination (mm/mremap.c remap_move)."""
        a = anon(proc, SRC, 3)
        proc.write(a, b"p0")
        proc.write(a + 2 * PAGE, b"p2")
        proc.mprotect(a + PAGE, PAGE, R)
        assert proc.mremap(a, 3 * PAGE, 3 * PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(DST, DST + PAGE, "rw-p"), (DST + PAGE, DST + 2 * PAGE, "r--p"),
                               (DST + 2 * PAGE, DST + 3 * PAGE, "rw-p")]
        assert proc.read(DST, 2) == b"p0" and proc.read(DST + 2 * PAGE, 2) == b"p2"

    def test_hole_in_the_middle_is_preserved(self, proc: Process) -> None:
        """Gaps between source VMAs are kept at the destination (mm/mremap.c remap_move)."""
        a = anon(proc, SRC, 3)
        proc.munmap(a + PAGE, PAGE)
        proc.write(a, b"a")
        proc.write(a + 2 * PAGE, b"c")
        assert proc.mremap(a, 3 * PAGE, 3 * PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(DST, DST + PAGE, "rw-p"), (DST + 2 * PAGE, DST + 3 * PAGE, "rw-p")]
        assert proc.read(DST, 1) == b"a" and proc.read(DST + 2 * PAGE, 1) == b"c"
        assert_unmapped(proc, DST + PAGE)

    def test_hole_at_the_end_is_allowed(self, proc: Process) -> None:
        """A gap at the end of a multi-VMA move range is allowed (mm/mremap.c remap_move)."""
        a = anon(proc, SRC, 1)
        proc.write(a, b"x")
        assert proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(DST, DST + PAGE, "rw-p")]
        assert proc.read(DST, 1) == b"x"

    def test_range_starting_in_a_hole_is_efault(self, proc: Process) -> None:
        """The move range must start inside a VMA, else EFAULT (mm/mremap.c vma_lookup)."""
        a = anon(proc, SRC, 3)
        proc.munmap(a, PAGE)
        assert errno_of(proc.mremap, a, 3 * PAGE, 3 * PAGE, MAYMOVE | MFIXED, DST) == errno.EFAULT
        assert arena(proc) == [(a + PAGE, a + 3 * PAGE, "rw-p")]

    def test_anon_and_shared_file_vmas_keep_their_types(self, proc: Process, file_path: str) -> None:
        """A multi-VMA move keeps each VMA's type: anon rw-p next to shared file rw-s (mm/mremap.c remap_move)."""
        fd = make_file(proc, file_path, 1)
        a = anon(proc, SRC, 1)
        proc.write(a, b"anon")
        proc.mmap(SRC + PAGE, PAGE, RW, vmkit.MAP_SHARED | FIXED, fd, 0)
        assert proc.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | MFIXED, DST) == DST
        assert lines_in(proc, ARENA, ARENA + 4 * MiB) == [
            (DST, DST + PAGE, "rw-p", 0, ""), (DST + PAGE, DST + 2 * PAGE, "rw-s", 0, file_path)]
        assert proc.read(DST, 4) == b"anon" and proc.read(DST + PAGE, 2) == b"FF"
        proc.write(DST + PAGE, b"SS")
        assert proc.pread(fd, 2, 0) == b"SS"

    def test_partial_coverage_of_two_vmas_splits_both_ends(self, proc: Process) -> None:
        """Partial VMAs at either end of a multi-VMA move are split off (mm/mremap.c remap_move)."""
        a = anon(proc, SRC, 4)
        anon(proc, SRC + 4 * PAGE, 4, prot=R)
        proc.write(a + 3 * PAGE, b"x3")
        assert proc.mremap(a + 2 * PAGE, 4 * PAGE, 4 * PAGE, MAYMOVE | MFIXED, DST) == DST
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p"), (a + 6 * PAGE, a + 8 * PAGE, "r--p"),
                               (DST, DST + 2 * PAGE, "rw-p"), (DST + 2 * PAGE, DST + 4 * PAGE, "r--p")]
        assert proc.read(DST + PAGE, 2) == b"x3"


# --------------------------------------------------------------------------------------------
class TestMemlockLimit:
    def test_unprivileged_grow_of_a_locked_vma_over_rlimit_is_eagain(self, proc: Process) -> None:
        """Growing a VM_LOCKED VMA beyond RLIMIT_MEMLOCK without CAP_IPC_LOCK is EAGAIN (mm/mremap.c vma_to_resize, mlock_future_ok)."""
        proc.drop_privileges()
        proc.mlockall(vmkit.MCL_FUTURE)
        a = proc.mmap(SRC, MiB, RW, PRIVATE_ANON | FIXED)
        assert "lo" in vm_flags(proc, a)
        assert proc.status()["VmLck"] == "1024 kB"
        assert errno_of(proc.mremap, a, MiB, 32 * MiB, MAYMOVE) == errno.EAGAIN
        assert arena(proc) == [(a, a + MiB, "rw-p")]
        assert proc.mremap(a, MiB, 2 * MiB, MAYMOVE) == a
        assert proc.status()["VmLck"] == "2048 kB"

    def test_grow_of_a_vma_locked_before_mlockall_is_not_limited(self, proc: Process) -> None:
        """MCL_FUTURE only locks later mappings; an older unlocked VMA grows freely (mm/mremap.c vma_to_resize)."""
        proc.drop_privileges()
        a = proc.mmap(SRC, MiB, RW, PRIVATE_ANON | FIXED)
        proc.mlockall(vmkit.MCL_FUTURE)
        assert proc.mremap(a, MiB, 32 * MiB, MAYMOVE) == a
        assert arena(proc) == [(a, a + 32 * MiB, "rw-p")]
        assert proc.status()["VmLck"] == "0 kB"


# --------------------------------------------------------------------------------------------
class TestFileBeyondEof:
    def test_grown_file_mapping_past_eof_is_sigbus(self, proc: Process, file_path: str) -> None:
        """Growing a file mapping past EOF succeeds; touching pages beyond EOF is SIGBUS/BUS_ADRERR (mm/filemap.c filemap_fault)."""
        fd = make_file(proc, file_path, 1)
        a = proc.mmap(SRC, PAGE, RW, vmkit.MAP_SHARED | FIXED, fd, 0)
        assert proc.mremap(a, PAGE, 3 * PAGE) == a
        assert lines_in(proc, a, a + 3 * PAGE) == [(a, a + 3 * PAGE, "rw-s", 0, file_path)]
        assert proc.read(a, 1) == b"F"
        with pytest.raises(vmkit.BusError) as e:
            proc.read(a + 2 * PAGE + 8, 1)
        assert (e.value.addr, e.value.code) == (a + 2 * PAGE + 8, vmkit.BUS_ADRERR)
        with pytest.raises(vmkit.BusError) as e2:
            proc.write(a + PAGE, b"z")
        assert (e2.value.addr, e2.value.code) == (a + PAGE, vmkit.BUS_ADRERR)
        proc.ftruncate(fd, 2 * PAGE)  # extending the file makes page 1 readable
        assert proc.read(a + PAGE, 1) == b"\x00"
