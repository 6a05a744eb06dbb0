"""munmap: argument checks, rounding, splitting, holes, and the VMA-count limit.

machine-facts.md §5, §14 (max_map_count); kernel-rules.md §6, §7 (mm/mmap.c ``__vm_munmap``,
mm/vma.c ``do_vmi_munmap``, ``vms_gather_munmap_vmas``).  Every expected value below was observed on
the 6.18 kernel.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import Any

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, ARENA_SIZE, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import kb, parse_maps, vma_at, vmas_in

R = vmkit.PROT_READ
FIXED = vmkit.MAP_FIXED
TASK_SIZE = vmkit.TASK_SIZE
#: vm.max_map_count on our machines (a sysctl; the kernel default).
MAX_MAP_COUNT = 65530


def errno_of(call: Callable[..., Any], *args: Any) -> int:
    """The errno of the OSError that ``call(*args)`` raises (fails the test if it does not)."""
    with pytest.raises(OSError) as e:
        call(*args)
    return e.value.errno


def arena(proc: Process) -> list[tuple[int, int, str]]:
    return vmas_in(proc, ARENA, ARENA + ARENA_SIZE)


def anon(proc: Process, offset: int, pages: int, prot: int = RW, flags: int = PRIVATE_ANON) -> int:
    """A MAP_FIXED anonymous mapping of ``pages`` pages at ARENA + ``offset`` pages."""
    return proc.mmap(ARENA + offset * PAGE, pages * PAGE, prot, flags | FIXED)


def is_unmapped(proc: Process, addr: int) -> bool:
    """True if a load at ``addr`` faults with SEGV_MAPERR (nothing mapped there)."""
    try:
        proc.read(addr, 1)
    except vmkit.SegmentationFault as e:
        assert (e.addr, e.code) == (addr, vmkit.SEGV_MAPERR)
        return True
    return False


# --------------------------------------------------------------------------------------------
class TestArguments:
    @pytest.mark.parametrize("misalign", [1, 0x800, PAGE - 1])
    def test_unaligned_address_is_einval(self, proc: Process, misalign: int) -> None:
        """munmap's address must be page-aligned (mm/vma.c do_vmi_munmap: offset_in_page(start))."""
        anon(proc, 0, 4)
        assert errno_of(proc.munmap, ARENA + misalign, PAGE) == errno.EINVAL
        assert arena(proc) == [(ARENA, ARENA + 4 * PAGE, "rw-p")]

    @pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "unmapped"])
    def test_length_zero_is_einval(self, proc: Process, mapped: bool) -> None:
        """len 0 rounds to 0 and is EINVAL, mapped or not (mm/vma.c do_vmi_munmap: PAGE_ALIGN(len) == 0)."""
        if mapped:
            anon(proc, 0, 4)
        assert errno_of(proc.munmap, ARENA, 0) == errno.EINVAL

    @pytest.mark.parametrize(
        "addr, length",
        [
            (ARENA, (1 << 64) - ARENA),
            (ARENA, 1 << 63),
            (0x800000000000, PAGE),
            (TASK_SIZE, PAGE),
            (TASK_SIZE - PAGE, 2 * PAGE),
            (0xFFFF800000000000, PAGE),
            ((1 << 64) - PAGE, PAGE),
            (0, TASK_SIZE + PAGE),
            (0, (1 << 64) - 1),
        ],
        ids=["wraps", "len-2^63", "addr-2^47", "addr-TASK_SIZE", "crosses-TASK_SIZE",
             "kernel-half", "last-page-of-2^64", "0-to-past-TASK_SIZE", "len-2^64-1"],
    )
    def test_range_outside_user_space_is_einval(self, proc: Process, addr: int, length: int) -> None:
        """munmap refuses start > TASK_SIZE or len > TASK_SIZE - start (mm/vma.c do_vmi_munmap)."""
        anon(proc, 0, 4)
        before = proc.maps()
        assert errno_of(proc.munmap, addr, length) == errno.EINVAL
        assert proc.maps() == before


# --------------------------------------------------------------------------------------------
class TestRanges:
    @pytest.mark.parametrize("length, pages", [(PAGE + 1, 2), (PAGE - 1, 1), (1, 1), (3 * PAGE - 1, 3)])
    def test_unaligned_length_rounds_up(self, proc: Process, length: int, pages: int) -> None:
        """The length is rounded up to whole pages (mm/vma.c do_vmi_munmap: PAGE_ALIGN(len))."""
        anon(proc, 0, 8)
        proc.munmap(ARENA, length)
        assert arena(proc) == [(ARENA + pages * PAGE, ARENA + 8 * PAGE, "rw-p")]

    def test_middle_page_splits_the_vma_and_keeps_both_sides(self, proc: Process) -> None:
        """Unmapping inside a VMA splits it at start and end (mm/vma.c vms_gather_munmap_vmas, split_vma)."""
        anon(proc, 0, 8)
        proc.write(ARENA, b"L" * 4 * PAGE + b"R" * 4 * PAGE)
        proc.munmap(ARENA + 3 * PAGE, 2 * PAGE)
        assert arena(proc) == [(ARENA, ARENA + 3 * PAGE, "rw-p"), (ARENA + 5 * PAGE, ARENA + 8 * PAGE, "rw-p")]
        assert proc.read(ARENA + 3 * PAGE - 1, 1) == b"L"
        assert proc.read(ARENA + 5 * PAGE, 1) == b"R"
        assert is_unmapped(proc, ARENA + 3 * PAGE)
        assert is_unmapped(proc, ARENA + 4 * PAGE)

    @pytest.mark.parametrize("where", ["head", "tail"])
    def test_head_or_tail_shrinks_the_vma(self, proc: Process, where: str) -> None:
        """Unmapping an end of a VMA leaves one shorter VMA (mm/vma.c vms_gather_munmap_vmas)."""
        anon(proc, 0, 4)
        if where == "head":
            proc.munmap(ARENA, PAGE)
            assert arena(proc) == [(ARENA + PAGE, ARENA + 4 * PAGE, "rw-p")]
        else:
            proc.munmap(ARENA + 3 * PAGE, PAGE)
            assert arena(proc) == [(ARENA, ARENA + 3 * PAGE, "rw-p")]

    def test_range_with_a_hole_unmaps_both_sides(self, proc: Process) -> None:
        """Holes inside the range are skipped, not an error (mm/vma.c do_vmi_munmap)."""
        anon(proc, 0, 8)
        proc.munmap(ARENA + 4 * PAGE, PAGE)
        proc.munmap(ARENA + 3 * PAGE, 3 * PAGE)
        assert arena(proc) == [(ARENA, ARENA + 3 * PAGE, "rw-p"), (ARENA + 6 * PAGE, ARENA + 8 * PAGE, "rw-p")]

    def test_range_over_several_vmas_of_different_kinds(self, proc: Process, file_path: str) -> None:
        """One munmap removes and splits VMAs of any kind across the range (mm/vma.c vms_gather_munmap_vmas)."""
        fd = proc.open(file_path, os.O_RDWR | os.O_CREAT, 0o600)
        proc.ftruncate(fd, 4 * PAGE)
        anon(proc, 0, 4)
        anon(proc, 4, 4, R)
        proc.mmap(ARENA + 8 * PAGE, 4 * PAGE, RW, vmkit.MAP_SHARED | FIXED, fd)
        anon(proc, 12, 4, RW, SHARED_ANON)
        proc.munmap(ARENA + 2 * PAGE, 12 * PAGE)
        assert arena(proc) == [(ARENA, ARENA + 2 * PAGE, "rw-p"), (ARENA + 14 * PAGE, ARENA + 16 * PAGE, "rw-s")]

    @pytest.mark.parametrize("addr, length", [(ARENA + 64 * PAGE, 16 * PAGE), (0, PAGE), (ARENA, ARENA_SIZE)],
                             ids=["free-range", "page-0", "whole-arena"])
    def test_unmapped_range_is_ok(self, proc: Process, addr: int, length: int) -> None:
        """A range with no VMA at all returns 0 (mm/vma.c do_vmi_munmap)."""
        if addr != ARENA:
            anon(proc, 0, 4)
        before = proc.maps()
        proc.munmap(addr, length)
        assert proc.maps() == before

    def test_split_file_vma_keeps_the_file_offset_of_each_piece(self, proc: Process, file_path: str) -> None:
        """A split advances vm_pgoff of the upper piece; maps shows its offset (mm/vma.c __split_vma)."""
        fd = proc.open(file_path, os.O_RDWR | os.O_CREAT, 0o600)
        proc.pwrite(fd, b"0" * PAGE + b"1" * PAGE + b"2" * PAGE + b"3" * PAGE + b"4" * PAGE, 0)
        a = proc.mmap(ARENA, 4 * PAGE, R, vmkit.MAP_SHARED | FIXED, fd, PAGE)
        proc.munmap(a + PAGE, PAGE)
        lines = [(m.start, m.offset, m.name) for m in parse_maps(proc.maps()) if ARENA <= m.start < ARENA + 4 * PAGE]
        assert lines == [(ARENA, PAGE, file_path), (ARENA + 2 * PAGE, 3 * PAGE, file_path)]
        assert proc.read(a + 2 * PAGE, 1) == b"3"

    def test_unmapped_range_is_reused_by_mmap(self, proc: Process) -> None:
        """After munmap the freed gap is a candidate for the next mmap(NULL) (mm/mmap.c unmapped_area_topdown)."""
        a = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.mmap(None, PAGE, RW, PRIVATE_ANON)
        proc.munmap(a + PAGE, 2 * PAGE)
        assert proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON) == a + PAGE
        assert proc.read(a + PAGE, 4) == bytes(4)

    def test_accounting_follows(self, proc: Process) -> None:
        """munmap lowers total_vm and locked_vm (VmSize, VmLck) by the pages removed (mm/vma.c vms_complete_munmap_vmas)."""
        size = kb(proc.status()["VmSize"])
        a = proc.mmap(None, 16 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        assert (kb(proc.status()["VmSize"]), kb(proc.status()["VmLck"])) == (size + 64, 64)
        proc.munmap(a + 4 * PAGE, 4 * PAGE)
        assert (kb(proc.status()["VmSize"]), kb(proc.status()["VmLck"])) == (size + 48, 48)

    def test_shared_anon_survives_in_the_other_process(self, proc: Process) -> None:
        """munmap removes only this process's mapping; a fork child keeps the shared object (mm/vma.c, mm/shmem.c)."""
        a = proc.mmap(None, 2 * PAGE, RW, SHARED_ANON)
        child = proc.fork()
        proc.munmap(a, 2 * PAGE)
        assert vma_at(proc, a) is None
        child.write(a, b"still")
        assert child.read(a, 5) == b"still"


# --------------------------------------------------------------------------------------------
class TestMapCountLimit:
    def test_at_max_map_count_only_splitting_unmaps_fail(self, proc: Process) -> None:
        """At max_map_count + 1 VMAs mmap is ENOMEM and a 3-way split ENOMEM, while head, tail and whole-VMA unmaps work (mm/vma.c vms_gather_munmap_vmas)."""
        anon(proc, 0, 5)  # a 5-page VMA to split later
        addr = ARENA + 6 * PAGE
        last_errno = 0
        for _ in range(MAX_MAP_COUNT + 10):
            try:
                proc.mmap(addr, PAGE, RW, PRIVATE_ANON | FIXED)  # 1-page VMAs with 1-page gaps
            except OSError as e:
                last_errno = e.errno
                break
            addr += 2 * PAGE
        assert last_errno == errno.ENOMEM
        lines = parse_maps(proc.maps())
        assert len([m for m in lines if m.name != "[vsyscall]"]) == MAX_MAP_COUNT + 1
        last = addr - 2 * PAGE  # the last 1-page VMA created
        assert vma_at(proc, addr) is None
        # even a mapping that would merge, or one that replaces a VMA exactly, is refused
        assert errno_of(proc.mmap, last + PAGE, PAGE, RW, PRIVATE_ANON | FIXED) == errno.ENOMEM
        assert errno_of(proc.mmap, last, PAGE, RW, PRIVATE_ANON | FIXED) == errno.ENOMEM
        # a middle page needs a 3-way split: refused, nothing changes
        assert errno_of(proc.munmap, ARENA + 2 * PAGE, PAGE) == errno.ENOMEM
        assert proc.read(ARENA + 2 * PAGE, 1) == b"\0"
        # head and tail (2-way splits) work
        proc.munmap(ARENA, PAGE)
        proc.munmap(ARENA + 4 * PAGE, PAGE)
        assert is_unmapped(proc, ARENA) and is_unmapped(proc, ARENA + 4 * PAGE)
        assert errno_of(proc.munmap, ARENA + 2 * PAGE, PAGE) == errno.ENOMEM
        # removing a whole VMA frees one slot: one more mmap fits, the next does not
        proc.munmap(ARENA + 6 * PAGE, PAGE)
        assert is_unmapped(proc, ARENA + 6 * PAGE)
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) > 0
        assert errno_of(proc.mmap, None, PAGE, RW, PRIVATE_ANON) == errno.ENOMEM
        # a range covering whole VMAs only, across gaps, needs no split
        proc.munmap(ARENA + PAGE, 9 * PAGE)
        assert vmas_in(proc, ARENA, ARENA + 11 * PAGE) == [(ARENA + 10 * PAGE, ARENA + 11 * PAGE, "rw-p")]
