"""brk: reading, growing, shrinking, refusals (which leave the break unchanged), and fork.

machine-facts.md §11; kernel-rules.md §5 (fork), §10 (mm/mmap.c ``SYSCALL_DEFINE1(brk)``,
``check_brk_limits``, ``do_brk_flags``).  brk never raises: a refused move returns the old break.
Every expected value below was observed on the 6.18 kernel.
"""

from __future__ import annotations

import resource

import pytest

import vmkit
from vmkit.process import Process

from conftest import PAGE, PRIVATE_ANON, RW
from helpers import kb, parse_maps, vm_flags

R = vmkit.PROT_READ
FIXED = vmkit.MAP_FIXED
MiB = 1 << 20
TiB = 1 << 40
GUARD_GAP = 256 * PAGE


def heap(proc: Process) -> list[tuple[int, int, str]]:
    """(start, end, perms) of the VMAs maps labels [heap]."""
    return [(m.start, m.end, m.perms) for m in parse_maps(proc.maps()) if m.name == "[heap]"]


# --------------------------------------------------------------------------------------------
class TestGrowAndShrink:
    def test_fresh_process_has_no_heap_vma(self, proc: Process) -> None:
        """brk(0) reads the break; before any growth start_brk == brk and there is no [heap] VMA (mm/mmap.c brk)."""
        b = proc.brk(0)
        assert b % PAGE == 0
        assert proc.brk(0) == b
        assert heap(proc) == []

    def test_unaligned_growth_returns_exactly_the_request(self, proc: Process) -> None:
        """brk stores and returns the unaligned value; the VMA is page-rounded (mm/mmap.c brk, do_brk_flags)."""
        b = proc.brk(0)
        want = b + 5 * PAGE + 123
        assert proc.brk(want) == want
        assert proc.brk(0) == want
        assert heap(proc) == [(b, b + 6 * PAGE, "rw-p")]
        assert proc.read(b, 6 * PAGE) == bytes(6 * PAGE)
        proc.write(b + 6 * PAGE - 1, b"z")
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(b + 6 * PAGE, 1)
        assert (e.value.addr, e.value.code) == (b + 6 * PAGE, vmkit.SEGV_MAPERR)

    def test_move_within_the_same_page_changes_only_the_value(self, proc: Process) -> None:
        """If PAGE_ALIGN(new) == PAGE_ALIGN(old) only mm->brk is set (mm/mmap.c brk)."""
        b = proc.brk(0)
        proc.brk(b + 2 * PAGE + 1)
        maps = proc.maps()
        assert proc.brk(b + 3 * PAGE) == b + 3 * PAGE
        assert proc.brk(b + 2 * PAGE + 7) == b + 2 * PAGE + 7
        assert proc.maps() == maps

    def test_heap_vma_flags(self, proc: Process) -> None:
        """The heap is private anonymous VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT (mm/mmap.c do_brk_flags)."""
        b = proc.brk(0)
        proc.brk(b + PAGE)
        assert vm_flags(proc, b) == {"rd", "wr", "mr", "mw", "me", "ac"}

    def test_successive_growth_extends_one_vma(self, proc: Process) -> None:
        """Growth extends the brk VMA ending at the old break (mm/mmap.c do_brk_flags, VMG_FLAG_JUST_EXPAND)."""
        b = proc.brk(0)
        proc.brk(b + PAGE)
        proc.write(b, b"first")
        proc.brk(b + 4 * PAGE)
        proc.brk(b + 9 * PAGE)
        assert heap(proc) == [(b, b + 9 * PAGE, "rw-p")]
        assert proc.read(b, 5) == b"first"

    def test_shrink_unmaps_and_regrowth_reads_zeros(self, proc: Process) -> None:
        """Shrinking unmaps [PAGE_ALIGN(new), PAGE_ALIGN(old)); grown again, the pages are fresh zeros (mm/mmap.c brk)."""
        b = proc.brk(0)
        proc.brk(b + 4 * PAGE)
        proc.write(b + 5, b"keep")
        proc.write(b + 2 * PAGE, b"gone")
        assert proc.brk(b + PAGE + 1) == b + PAGE + 1
        assert heap(proc) == [(b, b + 2 * PAGE, "rw-p")]
        with pytest.raises(vmkit.SegmentationFault):
            proc.read(b + 2 * PAGE, 1)
        assert proc.brk(b + 3 * PAGE) == b + 3 * PAGE
        assert proc.read(b + 5, 4) == b"keep"
        assert proc.read(b + 2 * PAGE, 4) == bytes(4)

    def test_shrink_to_the_start_removes_the_heap(self, proc: Process) -> None:
        """brk(start_brk) unmaps the whole heap (mm/mmap.c brk)."""
        b = proc.brk(0)
        proc.brk(b + 3 * PAGE)
        assert proc.brk(b) == b
        assert heap(proc) == []

    def test_heap_label_covers_every_vma_in_the_brk_range(self, proc: Process) -> None:
        """maps labels [heap] each VMA inside [start_brk, brk]; growth after an mprotect split is a new VMA (fs/proc/task_mmu.c, mm/mmap.c do_brk_flags)."""
        b = proc.brk(0)
        proc.brk(b + 4 * PAGE)
        proc.mprotect(b + 2 * PAGE, 2 * PAGE, R)
        assert proc.brk(b + 8 * PAGE) == b + 8 * PAGE
        assert heap(proc) == [(b, b + 2 * PAGE, "rw-p"), (b + 2 * PAGE, b + 4 * PAGE, "r--p"),
                              (b + 4 * PAGE, b + 8 * PAGE, "rw-p")]
        assert proc.brk(b + PAGE) == b + PAGE  # a shrink may cross VMAs
        assert heap(proc) == [(b, b + PAGE, "rw-p")]

    def test_growth_after_mlockall_future_is_locked_and_populated(self, proc: Process) -> None:
        """With VM_LOCKED in def_flags the new heap is locked and populated (mm/mmap.c brk: mm_populate)."""
        b = proc.brk(0)
        proc.mlockall(vmkit.MCL_FUTURE)
        assert proc.brk(b + 4 * PAGE) == b + 4 * PAGE
        assert kb(proc.status()["VmLck"]) == 16
        assert proc.mincore(b, 4 * PAGE) == b"\1" * 4
        assert "lo" in vm_flags(proc, b)


# --------------------------------------------------------------------------------------------
class TestRefusals:
    @pytest.mark.parametrize("below", [1, PAGE, 0x100000, 0x4FF000], ids=hex)
    def test_below_start_brk_is_unchanged(self, proc: Process, below: int) -> None:
        """brk < start_brk fails (no CONFIG_COMPAT_BRK) and returns the old break (mm/mmap.c brk)."""
        b = proc.brk(0)
        proc.brk(b + PAGE)
        maps = proc.maps()
        target = below if below < b else b - PAGE
        assert proc.brk(target) == b + PAGE
        assert proc.maps() == maps

    @pytest.mark.parametrize("delta", [32 * TiB, 1 << 46], ids=["+32TiB", "+2^46"])
    def test_huge_growth_is_unchanged(self, proc: Process, delta: int) -> None:
        """Growth the address space or overcommit cannot take fails; the break stays (mm/mmap.c check_brk_limits, do_brk_flags)."""
        b = proc.brk(0)
        assert proc.brk(b + delta) == b
        assert heap(proc) == []

    @pytest.mark.parametrize("target", [vmkit.TASK_SIZE, (1 << 64) - PAGE], ids=["TASK_SIZE", "2^64-4096"])
    def test_target_beyond_user_space_is_unchanged(self, proc: Process, target: int) -> None:
        """A break above TASK_SIZE fails in check_brk_limits' unmapped-area check (mm/mmap.c check_brk_limits)."""
        b = proc.brk(0)
        assert proc.brk(target) == b

    def test_growth_must_stop_one_page_below_the_next_mapping(self, proc: Process) -> None:
        """Growth fails if newbrk + PAGE_SIZE > vm_start_gap(next): the heap ends at least a page below (mm/mmap.c brk)."""
        b = proc.brk(0)
        x = b + 16 * PAGE
        proc.mmap(x, PAGE, R, PRIVATE_ANON | FIXED)
        assert proc.brk(x + PAGE) == b
        assert proc.brk(x) == b
        assert proc.brk(x - PAGE + 1) == b
        assert proc.brk(x - PAGE) == x - PAGE
        assert heap(proc) == [(b, x - PAGE, "rw-p")]

    def test_growth_must_stop_a_guard_gap_below_a_growsdown_mapping(self, proc: Process) -> None:
        """Against a GROWSDOWN VMA the heap must end stack_guard_gap + a page below it (mm/mmap.c brk, vm_start_gap)."""
        b = proc.brk(0)
        g = b + 2048 * PAGE
        proc.mmap(g, 4 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN)
        assert proc.brk(g - GUARD_GAP) == b
        assert proc.brk(g - GUARD_GAP - PAGE + 1) == b
        assert proc.brk(g - GUARD_GAP - PAGE) == g - GUARD_GAP - PAGE

    def test_growth_into_an_existing_mapping_is_unchanged(self, proc: Process) -> None:
        """brk never maps over another VMA, even one merged into the heap (mm/mmap.c brk: vma_find(oldbrk, ...))."""
        b = proc.brk(0)
        proc.brk(b + PAGE)
        proc.mmap(b + PAGE, PAGE, RW, PRIVATE_ANON | FIXED)  # merges with the heap VMA
        assert heap(proc) == [(b, b + 2 * PAGE, "rw-p")]
        proc.write(b + PAGE, b"mine")
        assert proc.brk(b + 2 * PAGE) == b + PAGE
        assert proc.brk(b + 64 * PAGE) == b + PAGE
        assert proc.read(b + PAGE, 4) == b"mine"

    def test_shrink_over_an_unmapped_heap_is_unchanged(self, proc: Process) -> None:
        """A shrink needs a VMA in [newbrk, oldbrk); with the heap munmapped it fails (mm/mmap.c brk)."""
        b = proc.brk(0)
        proc.brk(b + 4 * PAGE)
        proc.munmap(b, 4 * PAGE)
        assert proc.brk(b) == b + 4 * PAGE
        assert proc.brk(b + 2 * PAGE) == b + 4 * PAGE
        # growth starts again from the old break, as a new VMA
        assert proc.brk(b + 5 * PAGE) == b + 5 * PAGE
        assert heap(proc) == [(b + 4 * PAGE, b + 5 * PAGE, "rw-p")]

    def test_rlimit_data_limits_growth_through_data_vm(self, proc: Process) -> None:
        """Growth is refused once data_vm would pass RLIMIT_DATA (mm/mmap.c do_brk_flags: may_expand_vm)."""
        b = proc.brk(0)
        data = kb(proc.status()["VmData"]) * 1024
        proc.setrlimit(resource.RLIMIT_DATA, (data + 16 * PAGE, -1))
        assert proc.brk(b + 16 * PAGE) == b + 16 * PAGE
        assert proc.brk(b + 17 * PAGE) == b + 16 * PAGE
        assert proc.brk(b + 64 * MiB) == b + 16 * PAGE
        assert kb(proc.status()["VmData"]) * 1024 == data + 16 * PAGE

    def test_rlimit_data_below_the_heap_size_also_blocks_shrinks(self, proc: Process) -> None:
        """check_data_rlimit(brk - start_brk) runs before the shrink path: only targets within the limit pass (mm/mmap.c brk)."""
        b = proc.brk(0)
        proc.brk(b + 4 * PAGE)
        proc.setrlimit(resource.RLIMIT_DATA, (2 * PAGE, -1))
        assert proc.brk(b + 3 * PAGE) == b + 4 * PAGE
        assert proc.brk(b + 4 * PAGE - 5) == b + 4 * PAGE
        assert proc.brk(b + 2 * PAGE) == b + 2 * PAGE
        assert proc.brk(b) == b

    def test_rlimit_data_zero_refuses_brk(self, proc: Process) -> None:
        """Unlike mmap, brk has no exception for a soft RLIMIT_DATA of 0 (include/linux/mm.h check_data_rlimit)."""
        b = proc.brk(0)
        proc.setrlimit(resource.RLIMIT_DATA, (0, -1))
        assert proc.brk(b + PAGE) == b
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) > 0

    def test_rlimit_as_limits_growth(self, proc: Process) -> None:
        """Growth is refused once total_vm would pass RLIMIT_AS (mm/mmap.c do_brk_flags: may_expand_vm)."""
        b = proc.brk(0)
        size = kb(proc.status()["VmSize"]) * 1024
        proc.setrlimit(resource.RLIMIT_AS, (size + 4 * PAGE, -1))
        assert proc.brk(b + 4 * PAGE) == b + 4 * PAGE
        assert proc.brk(b + 5 * PAGE) == b + 4 * PAGE


# --------------------------------------------------------------------------------------------
class TestFork:
    def test_child_growth_of_a_faulted_heap_is_a_second_heap_vma(self, proc: Process) -> None:
        """In a fork child the faulted heap's anon_vma chain is not singular, so growth cannot merge: two [heap] VMAs (mm/vma.c is_mergeable_anon_vma)."""
        b = proc.brk(0)
        proc.brk(b + 3 * PAGE)
        proc.write(b, b"hi")
        child = proc.fork()
        assert child.brk(0) == b + 3 * PAGE
        assert child.brk(b + 6 * PAGE) == b + 6 * PAGE
        assert heap(child) == [(b, b + 3 * PAGE, "rw-p"), (b + 3 * PAGE, b + 6 * PAGE, "rw-p")]
        assert vm_flags(child, b) == vm_flags(child, b + 3 * PAGE)
        assert child.read(b, 2) == b"hi"
        # the parent's own growth extends its single VMA
        assert proc.brk(b + 6 * PAGE) == b + 6 * PAGE
        assert heap(proc) == [(b, b + 6 * PAGE, "rw-p")]

    def test_child_growth_of_an_untouched_heap_stays_one_vma(self, proc: Process) -> None:
        """A heap never faulted has no anon_vma, so the child's growth merges as usual (mm/vma.c is_mergeable_anon_vma)."""
        b = proc.brk(0)
        proc.brk(b + 3 * PAGE)
        child = proc.fork()
        assert child.brk(b + 6 * PAGE) == b + 6 * PAGE
        assert heap(child) == [(b, b + 6 * PAGE, "rw-p")]

    def test_child_break_is_independent_of_the_parent(self, proc: Process) -> None:
        """fork copies mm->brk; afterwards each process moves its own break (kernel/fork.c dup_mm)."""
        b = proc.brk(0)
        proc.brk(b + 2 * PAGE)
        child = proc.fork()
        child.brk(b + 8 * PAGE)
        assert proc.brk(0) == b + 2 * PAGE
        assert heap(proc) == [(b, b + 2 * PAGE, "rw-p")]
        child.brk(b)
        assert heap(child) == []
        assert proc.brk(0) == b + 2 * PAGE
