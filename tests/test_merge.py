"""VMA merging and the anon_vma rule of Linux 6.18 (mm/vma.c ``is_mergeable_anon_vma``,
``vma_merge_new_range``, ``vma_merge_existing_range``; mm/mmap.c ``do_brk_flags``).

One rule decides, for every merge path (mmap, brk, mremap, mprotect/mlock/madvise), whether a range
carrying ``src_anon`` (None for a new mmap/brk range, the VMA's own anon_vma for an existing range)
may merge into the neighbour ``tgt`` (commit 879bca0a2c4f "fix incorrectly disallowed anonymous VMA
merges" and the copied_from fix):

1. ``tgt`` unfaulted, range faulted: allowed unless the modified VMA (``vmg->middle``) or the VMA
   mremap copies (``vmg->copied_from``) is a fork child.  6.12 refused this case outright.
2. ``tgt`` faulted, range unfaulted: allowed unless ``tgt`` is a fork child.
3. otherwise the anon_vmas must be the same.

A *fork child* is a faulted VMA whose anon_vma chain is not singular: inherited faulted across
fork (or split from such a VMA).  When both sides can merge, prev's and next's anon_vmas must also
be compatible with each other (one missing, or equal), else only prev merges
(``can_vma_merge_right``).  Flags must also match: making an unfaulted private anonymous VMA
read-only drops its VM_ACCOUNT (``mprotect_fixup``), a faulted one keeps it.
"""

from __future__ import annotations

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, ARENA_SIZE, PAGE, PRIVATE_ANON, RW

FIXED = PRIVATE_ANON | vmkit.MAP_FIXED
RWX = RW | vmkit.PROT_EXEC
R = vmkit.PROT_READ


def at(i: int) -> int:
    """The address of page ``i`` of the arena."""
    return ARENA + i * PAGE


def line(lo: int, hi: int, perms: str = "rw-p") -> str:
    """The maps line of an anonymous VMA over arena pages [lo, hi)."""
    return f"{at(lo):08x}-{at(hi):08x} {perms} 00000000 00:00 0 "


def arena(p: Process) -> list[str]:
    """The maps lines inside the arena."""
    return [ln for ln in p.maps().splitlines()
            if ARENA <= int(ln.split("-", 1)[0], 16) < ARENA + ARENA_SIZE]


def heap_line(start: int, end: int) -> str:
    return f"{start:08x}-{end:08x} rw-p 00000000 00:00 0 ".ljust(73) + "[heap]"


def heap(p: Process) -> list[str]:
    return [ln for ln in p.maps().splitlines() if ln.endswith("[heap]")]


def faulted(p: Process, page: int, npages: int = 1, prot: int = RW) -> None:
    """A fresh VMA of ``npages`` at arena ``page``, written (so it has its own anon_vma)."""
    p.mmap(at(page), npages * PAGE, prot, FIXED)
    p.write(at(page), b"x")


class TestNewRange:
    """``vma_merge_new_range`` for mmap: the range has no anon_vma, so only rule 2 can refuse."""

    def test_after_a_faulted_vma_merges(self, proc: Process) -> None:
        """Rule 2: a faulted prev that is no fork child absorbs the new range (mm/vma.c is_mergeable_anon_vma)."""
        faulted(proc, 0)
        proc.mmap(at(1), PAGE, RW, FIXED)
        assert arena(proc) == [line(0, 2)]

    def test_before_a_faulted_vma_merges(self, proc: Process) -> None:
        """Rule 2 on the right: a faulted next absorbs the new range (mm/vma.c can_vma_merge_before)."""
        faulted(proc, 1)
        proc.mmap(at(0), PAGE, RW, FIXED)
        assert arena(proc) == [line(0, 2)]

    @pytest.mark.parametrize("faulted_side", ["prev", "next"])
    def test_between_faulted_and_unfaulted_merges_all_three(self, proc: Process,
                                                            faulted_side: str) -> None:
        """prev and next both merge when one of them has no anon_vma (mm/vma.c can_vma_merge_right)."""
        proc.mmap(at(0), PAGE, RW, FIXED)
        proc.mmap(at(2), PAGE, RW, FIXED)
        proc.write(at(0 if faulted_side == "prev" else 2), b"x")
        proc.mmap(at(1), PAGE, RW, FIXED)
        assert arena(proc) == [line(0, 3)]

    def test_between_two_different_anon_vmas_merges_only_prev(self, proc: Process) -> None:
        """prev and next with different anon_vmas each accept the range but not each other: only prev merges (mm/vma.c can_vma_merge_right)."""
        faulted(proc, 0)
        faulted(proc, 2)
        proc.mmap(at(1), PAGE, RW, FIXED)
        assert arena(proc) == [line(0, 2), line(2, 3)]

    def test_next_to_fork_child_vmas_does_not_merge_in_the_child(self, proc: Process) -> None:
        """Rule 2: an inherited faulted VMA is a fork child (chain not singular): no merge on either side in the child, merges in the parent (mm/vma.c vma_is_fork_child)."""
        faulted(proc, 0)
        faulted(proc, 4)
        child = proc.fork()
        child.mmap(at(1), PAGE, RW, FIXED)
        child.mmap(at(3), PAGE, RW, FIXED)
        assert arena(child) == [line(0, 1), line(1, 2), line(3, 4), line(4, 5)]
        proc.mmap(at(1), PAGE, RW, FIXED)
        proc.mmap(at(3), PAGE, RW, FIXED)
        assert arena(proc) == [line(0, 2), line(3, 5)]

    def test_next_to_a_vma_unfaulted_at_fork_merges_in_the_child(self, proc: Process) -> None:
        """A VMA without anon_vma at fork has an empty chain in the child: no fork child, merges (mm/rmap.c anon_vma_fork)."""
        proc.mmap(at(0), PAGE, RW, FIXED)
        child = proc.fork()
        child.mmap(at(1), PAGE, RW, FIXED)
        assert arena(child) == [line(0, 2)]

    def test_between_fork_child_and_unfaulted_merges_only_next(self, proc: Process) -> None:
        """In the child, a fork-child prev refuses the range (rule 2) while an unfaulted next takes it (mm/vma.c vma_merge_new_range)."""
        faulted(proc, 0)
        child = proc.fork()
        child.mmap(at(2), PAGE, RW, FIXED)
        child.mmap(at(1), PAGE, RW, FIXED)
        assert arena(child) == [line(0, 1), line(1, 3)]

    def test_vma_faulted_after_fork_merges_in_the_child(self, proc: Process) -> None:
        """A VMA first faulted in the child gets its own anon_vma with a singular chain: no fork child, merges (mm/rmap.c anon_vma_prepare)."""
        proc.mmap(at(0), PAGE, RW, FIXED)
        child = proc.fork()
        child.write(at(0), b"c")
        child.mmap(at(1), PAGE, RW, FIXED)
        assert arena(child) == [line(0, 2)]


class TestExistingRange:
    """``vma_merge_existing_range`` (mprotect, madvise): the range carries the modified VMA's
    anon_vma and the modified VMA is ``vmg->middle``."""

    def test_faulted_vma_merges_into_unfaulted_prev(self, proc: Process) -> None:
        """Rule 1 (new in 6.18, 6.12 refused): restoring the prot of a faulted VMA merges it into its unfaulted prev (mm/vma.c is_mergeable_anon_vma)."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(1), b"x")
        assert arena(proc) == [line(0, 1), line(1, 2, "rwxp")]
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 2)]
        assert proc.read(at(1), 1) == b"x"

    def test_faulted_vma_merges_into_unfaulted_next(self, proc: Process) -> None:
        """Rule 1 on the right: a faulted VMA merges into its unfaulted next (mm/vma.c can_vma_merge_before)."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(0), PAGE, RWX)
        proc.write(at(0), b"x")
        proc.mprotect(at(0), PAGE, RW)
        assert arena(proc) == [line(0, 2)]

    def test_unfaulted_vma_merges_into_faulted_prev(self, proc: Process) -> None:
        """Rule 2: an unfaulted VMA merges into a faulted prev that is no fork child (mm/vma.c is_mergeable_anon_vma)."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(0), b"x")
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 2)]

    def test_faulted_middle_merges_with_unfaulted_prev_and_next(self, proc: Process) -> None:
        """Rule 1 on both sides: a faulted middle page merges back with its two unfaulted neighbours into one VMA (mm/vma.c vma_merge_existing_range)."""
        proc.mmap(at(0), 3 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(1), b"x")
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 3)]

    def test_unfaulted_middle_between_different_anon_vmas_merges_left_only(self, proc: Process) -> None:
        """prev and next both accept the unfaulted middle (rule 2) but have different anon_vmas: it merges into prev only (mm/vma.c can_vma_merge_right)."""
        proc.mmap(at(0), 3 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(0), b"a")
        proc.write(at(2), b"b")
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 2), line(2, 3)]

    def test_middle_with_another_anon_vma_merges_into_unfaulted_next(self, proc: Process) -> None:
        """A faulted middle whose anon_vma differs from its faulted prev's (rule 3 refuses) merges into the unfaulted next (rule 1) (mm/vma.c is_mergeable_anon_vma)."""
        proc.mmap(at(0), 3 * PAGE, RW, FIXED)
        proc.madvise(at(0), PAGE, vmkit.MADV_RANDOM)
        proc.write(at(0), b"a")
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(1), b"m")  # prev differs in VM_RAND_READ: no anon_vma reuse
        proc.madvise(at(0), PAGE, vmkit.MADV_NORMAL)
        assert arena(proc) == [line(0, 1), line(1, 2, "rwxp"), line(2, 3)]
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 1), line(1, 3)]

    def test_madvise_merges_faulted_vma_into_unfaulted_prev(self, proc: Process) -> None:
        """Rule 1 holds for every vma_modify user: MADV_NORMAL after MADV_RANDOM merges a faulted VMA into its unfaulted prev (mm/madvise.c madvise_update_vma)."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.madvise(at(1), PAGE, vmkit.MADV_RANDOM)
        proc.write(at(1), b"x")
        assert arena(proc) == [line(0, 1), line(1, 2)]
        proc.madvise(at(1), PAGE, vmkit.MADV_NORMAL)
        assert arena(proc) == [line(0, 2)]

    def test_readonly_unfaulted_and_faulted_differ_in_vm_account(self, proc: Process) -> None:
        """Not an anon_vma refusal: read-only drops VM_ACCOUNT from the unfaulted VMA only, so the flags differ and nothing merges (mm/mprotect.c mprotect_fixup)."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(0), PAGE, R)
        proc.write(at(1), b"x")
        proc.mprotect(at(1), PAGE, R)
        assert arena(proc) == [line(0, 1, "r--p"), line(1, 2, "r--p")]

    def test_fork_child_faulted_vma_does_not_merge_into_unfaulted_neighbour(self, proc: Process) -> None:
        """Rule 1 exception: the modified VMA is a fork child, so the child refuses; the parent merges (mm/vma.c vma_is_fork_child(src))."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(1), b"x")
        child = proc.fork()
        child.mprotect(at(1), PAGE, RW)
        assert arena(child) == [line(0, 1), line(1, 2)]
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 2)]

    def test_unfaulted_vma_does_not_merge_into_fork_child_neighbour(self, proc: Process) -> None:
        """Rule 2 exception: the faulted neighbour is a fork child, so the child refuses; the parent merges (mm/vma.c vma_is_fork_child(tgt))."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        proc.write(at(0), b"x")
        child = proc.fork()
        child.mprotect(at(1), PAGE, RW)
        assert arena(child) == [line(0, 1), line(1, 2)]
        proc.mprotect(at(1), PAGE, RW)
        assert arena(proc) == [line(0, 2)]

    def test_vma_faulted_in_the_child_merges_into_unfaulted_neighbour(self, proc: Process) -> None:
        """A VMA first faulted after fork is no fork child: rule 1 merges it in the child (mm/rmap.c anon_vma_prepare)."""
        proc.mmap(at(0), 2 * PAGE, RW, FIXED)
        proc.mprotect(at(1), PAGE, RWX)
        child = proc.fork()
        child.write(at(1), b"c")
        child.mprotect(at(1), PAGE, RW)
        assert arena(child) == [line(0, 2)]


class TestBrk:
    """``do_brk_flags``: a new range with VMG_FLAG_JUST_EXPAND into the heap VMA (rule 2)."""

    def test_growth_of_a_touched_heap_extends_it(self, proc: Process) -> None:
        """The faulted heap is no fork child in its own process: growth extends it (mm/vma.c vma_merge_new_range)."""
        b = proc.brk(0)
        proc.brk(b + 2 * PAGE)
        proc.write(b, b"h")
        proc.brk(b + 4 * PAGE)
        assert heap(proc) == [heap_line(b, b + 4 * PAGE)]

    def test_child_growth_of_an_inherited_touched_heap_is_a_second_vma(self, proc: Process) -> None:
        """Rule 2 exception: the inherited faulted heap is a fork child: two [heap] VMAs in the child, one in the parent (mm/vma.c vma_is_fork_child)."""
        b = proc.brk(0)
        proc.brk(b + 2 * PAGE)
        proc.write(b, b"h")
        child = proc.fork()
        child.brk(b + 4 * PAGE)
        assert heap(child) == [heap_line(b, b + 2 * PAGE), heap_line(b + 2 * PAGE, b + 4 * PAGE)]
        proc.brk(b + 4 * PAGE)
        assert heap(proc) == [heap_line(b, b + 4 * PAGE)]

    def test_child_growth_of_an_untouched_heap_extends_it(self, proc: Process) -> None:
        """A heap unfaulted at fork has no anon_vma in the child (rule 3: both None): one VMA (mm/rmap.c anon_vma_fork)."""
        b = proc.brk(0)
        proc.brk(b + 2 * PAGE)
        child = proc.fork()
        child.brk(b + 4 * PAGE)
        assert heap(child) == [heap_line(b, b + 4 * PAGE)]

    def test_child_growth_of_a_heap_first_touched_in_the_child_extends_it(self, proc: Process) -> None:
        """A heap first faulted in the child has a singular chain: no fork child, growth extends it (mm/rmap.c anon_vma_prepare)."""
        b = proc.brk(0)
        proc.brk(b + 2 * PAGE)
        child = proc.fork()
        child.write(b, b"c")
        child.brk(b + 4 * PAGE)
        assert heap(child) == [heap_line(b, b + 4 * PAGE)]
