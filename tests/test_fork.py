"""fork(2) and the address space it copies (kernel/fork.c dup_mmap; mm/memory.c copy_page_range,
do_wp_page; machine-facts §3.1, §9.2, §11; kernel-rules §18)."""

from __future__ import annotations

import errno
import os

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import parse_maps, smaps_of, vm_flags, vma_at, vmas_in

FIXED_ANON = PRIVATE_ANON | vmkit.MAP_FIXED
FIXED_SHARED_ANON = SHARED_ANON | vmkit.MAP_FIXED
O_RDWR_CREAT = os.O_RDWR | os.O_CREAT


def figures(p: Process, addr: int) -> dict[str, str]:
    s = smaps_of(p, addr)
    return {k: s[k] for k in ("Rss", "Pss", "Private_Dirty", "Shared_Dirty")}


class TestCopyOnWrite:
    def test_child_write_is_invisible_to_the_parent(self, proc: Process) -> None:
        """Private anon pages are COW-shared after fork; the child's store copies the page (mm/memory.c do_wp_page)."""
        a = proc.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"P" * (4 * PAGE))
        child = proc.fork()
        assert child.read(a, 4 * PAGE) == b"P" * (4 * PAGE)
        child.write(a + PAGE, b"child")
        assert proc.read(a + PAGE, 5) == b"PPPPP"
        assert child.read(a + PAGE, 6) == b"childP"

    def test_parent_write_is_invisible_to_the_child(self, proc: Process) -> None:
        """COW works both ways: the parent's store after fork copies too (mm/memory.c do_wp_page)."""
        a = proc.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"P" * (4 * PAGE))
        child = proc.fork()
        proc.write(a, b"parent")
        assert child.read(a, 6) == b"PPPPPP"
        assert proc.read(a, 6) == b"parent"

    def test_untouched_private_page_is_zero_in_both(self, proc: Process) -> None:
        """An unfaulted private page is faulted separately on each side after fork (mm/memory.c do_anonymous_page)."""
        a = proc.mmap(ARENA, 2 * PAGE, RW, FIXED_ANON)
        child = proc.fork()
        child.write(a, b"c")
        proc.write(a + PAGE, b"p")
        assert proc.read(a, 1) == b"\x00"
        assert child.read(a + PAGE, 1) == b"\x00"

    def test_cow_sharing_shows_in_pss(self, proc: Process) -> None:
        """After fork both processes map the same 4 pages (Pss halves); a child write makes one page private on each side (fs/proc/task_mmu.c smaps_account)."""
        a = proc.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"x" * (4 * PAGE))
        assert figures(proc, a) == {"Rss": "16 kB", "Pss": "16 kB", "Private_Dirty": "16 kB",
                                    "Shared_Dirty": "0 kB"}
        child = proc.fork()
        shared = {"Rss": "16 kB", "Pss": "8 kB", "Private_Dirty": "0 kB", "Shared_Dirty": "16 kB"}
        assert figures(proc, a) == shared
        assert figures(child, a) == shared
        child.write(a, b"c")
        split = {"Rss": "16 kB", "Pss": "10 kB", "Private_Dirty": "4 kB", "Shared_Dirty": "12 kB"}
        assert figures(proc, a) == split
        assert figures(child, a) == split

    def test_fork_of_a_fork(self, proc: Process) -> None:
        """A grandchild inherits the child's view, and its stores are private to it (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, 2 * PAGE, RW, FIXED_ANON)
        s = proc.mmap(ARENA + 0x100000, PAGE, RW, FIXED_SHARED_ANON)
        proc.write(a, b"gen0")
        child = proc.fork()
        child.write(a, b"gen1")
        grandchild = child.fork()
        assert grandchild.read(a, 4) == b"gen1"
        assert grandchild.maps() == child.maps()
        grandchild.write(a, b"gen2")
        grandchild.write(s, b"shared by three")
        assert (proc.read(a, 4), child.read(a, 4), grandchild.read(a, 4)) == (b"gen0", b"gen1", b"gen2")
        assert proc.read(s, 15) == child.read(s, 15) == b"shared by three"


class TestShared:
    def test_shared_anon_is_shared_both_ways(self, proc: Process) -> None:
        """MAP_SHARED|MAP_ANONYMOUS is one shmem object in both processes (mm/shmem.c shmem_zero_setup)."""
        s = proc.mmap(ARENA, 2 * PAGE, RW, FIXED_SHARED_ANON)
        proc.write(s, b"before")
        child = proc.fork()
        assert child.read(s, 6) == b"before"
        child.write(s, b"child!")
        assert proc.read(s, 6) == b"child!"
        proc.write(s + PAGE, b"parent")
        assert child.read(s + PAGE, 6) == b"parent"

    def test_shared_anon_page_faulted_after_fork_is_shared(self, proc: Process) -> None:
        """A shared page first touched after fork is still one page (mm/shmem.c shmem_fault)."""
        s = proc.mmap(ARENA, PAGE, RW, FIXED_SHARED_ANON)
        child = proc.fork()
        child.write(s + 8, b"late")
        assert proc.read(s + 8, 4) == b"late"


class TestForkFlags:
    def test_dontfork_range_is_absent_in_the_child(self, proc: Process) -> None:
        """MADV_DONTFORK sets VM_DONTCOPY; dup_mmap skips the VMA: absent in the child's maps, SIGSEGV there (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, 3 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"d" * (3 * PAGE))
        proc.madvise(a + PAGE, PAGE, vmkit.MADV_DONTFORK)
        assert "dc" in vm_flags(proc, a + PAGE)
        child = proc.fork()
        assert vmas_in(child, a, a + 3 * PAGE) == [(a, a + PAGE, "rw-p"),
                                                  (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]
        with pytest.raises(vmkit.SegmentationFault) as e:
            child.read(a + PAGE, 1)
        assert (e.value.addr, e.value.code) == (a + PAGE, vmkit.SEGV_MAPERR)
        assert child.read(a + 2 * PAGE, 1) == b"d"
        assert proc.read(a + PAGE, 1) == b"d"

    def test_dofork_undoes_dontfork(self, proc: Process) -> None:
        """MADV_DOFORK clears VM_DONTCOPY and the VMAs merge back; the child gets the range again (mm/madvise.c madvise_update_vma)."""
        a = proc.mmap(ARENA, 3 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"d" * (3 * PAGE))
        proc.madvise(a + PAGE, PAGE, vmkit.MADV_DONTFORK)
        proc.madvise(a + PAGE, PAGE, vmkit.MADV_DOFORK)
        assert vmas_in(proc, a, a + 3 * PAGE) == [(a, a + 3 * PAGE, "rw-p")]
        child = proc.fork()
        assert child.read(a + PAGE, 1) == b"d"

    def test_wipeonfork_child_reads_zeros(self, proc: Process) -> None:
        """VM_WIPEONFORK: the child gets an empty anonymous VMA (flag kept, nothing resident), the parent keeps its data (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"w" * (4 * PAGE))
        proc.madvise(a, 4 * PAGE, vmkit.MADV_WIPEONFORK)
        child = proc.fork()
        assert vmas_in(child, a, a + 4 * PAGE) == [(a, a + 4 * PAGE, "rw-p")]
        assert "wf" in vm_flags(child, a)
        assert child.mincore(a, 4 * PAGE) == bytes(4)
        assert smaps_of(child, a)["Rss"] == "0 kB"
        assert child.read(a, 4 * PAGE) == bytes(4 * PAGE)
        assert proc.read(a, 4 * PAGE) == b"w" * (4 * PAGE)

    def test_keeponfork_undoes_wipeonfork(self, proc: Process) -> None:
        """MADV_KEEPONFORK clears VM_WIPEONFORK: the child inherits the data again (mm/madvise.c madvise_behavior)."""
        a = proc.mmap(ARENA, PAGE, RW, FIXED_ANON)
        proc.write(a, b"keep")
        proc.madvise(a, PAGE, vmkit.MADV_WIPEONFORK)
        proc.madvise(a, PAGE, vmkit.MADV_KEEPONFORK)
        child = proc.fork()
        assert child.read(a, 4) == b"keep"

    def test_wipeonfork_grandchild_also_wipes(self, proc: Process) -> None:
        """The wiped child VMA keeps VM_WIPEONFORK, so the child's own child is wiped too (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, PAGE, RW, FIXED_ANON)
        proc.madvise(a, PAGE, vmkit.MADV_WIPEONFORK)
        child = proc.fork()
        child.write(a, b"child data")
        grandchild = child.fork()
        assert grandchild.read(a, 10) == bytes(10)
        assert child.read(a, 10) == b"child data"

    def test_guard_pages_are_inherited(self, proc: Process) -> None:
        """Guard markers are copied with the page tables: the child faults there too (mm/memory.c copy_nonpresent_pte)."""
        a = proc.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"g" * (4 * PAGE))
        proc.madvise(a + PAGE, PAGE, vmkit.MADV_GUARD_INSTALL)
        child = proc.fork()
        assert "gu" in vm_flags(child, a)
        with pytest.raises(vmkit.SegmentationFault) as e:
            child.read(a + PAGE, 1)
        assert e.value.addr == a + PAGE
        assert child.read(a + 2 * PAGE, 1) == b"g"


class TestLocks:
    def test_mlock_is_not_inherited(self, proc: Process) -> None:
        """dup_mmap clears VM_LOCKED in the child and resets locked_vm (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON)
        proc.mlock(a, 4 * PAGE)
        assert proc.status()["VmLck"] == "16 kB"
        child = proc.fork()
        assert child.status()["VmLck"] == "0 kB"
        assert "lo" not in vm_flags(child, a)
        assert "lo" in vm_flags(proc, a)
        assert proc.status()["VmLck"] == "16 kB"

    def test_map_locked_and_onfault_are_not_inherited(self, proc: Process) -> None:
        """VM_LOCKED and VM_LOCKONFAULT are both cleared in the child (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, 2 * PAGE, RW, FIXED_ANON | vmkit.MAP_LOCKED)
        b = proc.mmap(ARENA + 0x100000, 2 * PAGE, RW, FIXED_ANON)
        proc.mlock2(b, 2 * PAGE, vmkit.MLOCK_ONFAULT)
        assert {"lo", "lf"} <= vm_flags(proc, b)
        child = proc.fork()
        assert not {"lo", "lf"} & vm_flags(child, a)
        assert not {"lo", "lf"} & vm_flags(child, b)

    def test_mlockall_future_is_not_inherited(self, proc: Process) -> None:
        """mm->def_flags keeps only VM_NOHUGEPAGE across fork, so MCL_FUTURE does not apply in the child (kernel/fork.c mm_init)."""
        proc.mlockall(vmkit.MCL_FUTURE)
        child = proc.fork()
        a = child.mmap(ARENA, PAGE, RW, FIXED_ANON)
        assert "lo" not in vm_flags(child, a)
        assert child.status()["VmLck"] == "0 kB"
        b = proc.mmap(ARENA, PAGE, RW, FIXED_ANON)
        assert "lo" in vm_flags(proc, b)


class TestLayout:
    def test_maps_equal_right_after_fork(self, proc: Process, file_path: str) -> None:
        """The child's VMAs copy the parent's one for one, except VM_DONTCOPY ones (kernel/fork.c dup_mmap)."""
        a = proc.mmap(ARENA, 8 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"a" * (8 * PAGE))
        proc.mprotect(a + 2 * PAGE, 2 * PAGE, vmkit.PROT_READ)
        proc.madvise(a + 6 * PAGE, PAGE, vmkit.MADV_GUARD_INSTALL)
        proc.mmap(ARENA + 0x100000, 2 * PAGE, RW, FIXED_SHARED_ANON)
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.ftruncate(fd, 4 * PAGE)
        proc.mmap(ARENA + 0x200000, 4 * PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_FIXED, fd, 0)
        proc.mmap(ARENA + 0x300000, 2 * PAGE, vmkit.PROT_READ, vmkit.MAP_PRIVATE | vmkit.MAP_FIXED, fd, PAGE)
        top = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        proc.brk(proc.brk(0) + 2 * PAGE)
        d = proc.mmap(ARENA + 0x400000, PAGE, RW, FIXED_ANON)
        proc.madvise(d, PAGE, vmkit.MADV_DONTFORK)
        parent_maps = proc.maps()
        child = proc.fork()
        expected = [m for m in parse_maps(parent_maps) if m.start != d]
        assert parse_maps(child.maps()) == expected
        assert len(expected) == len(parse_maps(parent_maps)) - 1
        assert vma_at(child, top) is not None
        assert proc.maps() == parent_maps  # fork changes nothing in the parent

    def test_child_vmas_are_not_remerged(self, proc: Process) -> None:
        """A new anonymous mapping next to an inherited faulted VMA does not merge in the child, but does in the parent (mm/vma.c is_mergeable_anon_vma)."""
        a = proc.mmap(ARENA, 2 * PAGE, RW, FIXED_ANON)
        proc.write(a, b"x")
        child = proc.fork()
        child.mmap(a + 2 * PAGE, PAGE, RW, FIXED_ANON)
        assert vmas_in(child, a, a + 3 * PAGE) == [(a, a + 2 * PAGE, "rw-p"), (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]
        proc.mmap(a + 2 * PAGE, PAGE, RW, FIXED_ANON)
        assert vmas_in(proc, a, a + 3 * PAGE) == [(a, a + 3 * PAGE, "rw-p")]


class TestHeap:
    def test_heap_is_inherited(self, proc: Process) -> None:
        """The child has the same break and heap contents (kernel/fork.c dup_mmap copies mm->brk)."""
        start = proc.brk(0)
        end = proc.brk(start + 3 * PAGE)
        assert end == start + 3 * PAGE
        proc.write(start, b"heap data")
        child = proc.fork()
        assert child.brk(0) == end
        assert child.read(start, 9) == b"heap data"
        child.write(start, b"HEAP")
        assert proc.read(start, 4) == b"heap"

    def test_heap_growth_in_the_child_is_a_second_vma(self, proc: Process) -> None:
        """brk growth in a fork child cannot merge with the inherited heap (fork-child anon_vma): a second [heap] VMA (mm/vma.c is_mergeable_anon_vma)."""
        start = proc.brk(0)
        proc.brk(start + 2 * PAGE)
        proc.write(start, b"h")
        child = proc.fork()
        assert child.brk(start + 4 * PAGE) == start + 4 * PAGE
        heaps = [(m.start, m.end) for m in parse_maps(child.maps()) if m.name == "[heap]"]
        assert heaps == [(start, start + 2 * PAGE), (start + 2 * PAGE, start + 4 * PAGE)]
        child.write(start + 3 * PAGE, b"grown")
        assert child.read(start + 3 * PAGE, 5) == b"grown"
        # the parent's break is untouched, and its own growth merges into one VMA
        assert proc.brk(0) == start + 2 * PAGE
        proc.brk(start + 4 * PAGE)
        assert [(m.start, m.end) for m in parse_maps(proc.maps()) if m.name == "[heap]"] == [
            (start, start + 4 * PAGE)]

    def test_heap_shrink_in_the_child_leaves_the_parent(self, proc: Process) -> None:
        """brk shrink in the child unmaps only the child's pages (mm/mmap.c brk)."""
        start = proc.brk(0)
        proc.brk(start + 2 * PAGE)
        proc.write(start + PAGE, b"kept")
        child = proc.fork()
        assert child.brk(start) == start
        with pytest.raises(vmkit.SegmentationFault):
            child.read(start + PAGE, 1)
        assert proc.read(start + PAGE, 4) == b"kept"


class TestFileMappings:
    def test_private_file_page_written_before_fork_is_inherited(self, proc: Process, file_path: str) -> None:
        """A COWed private file page is anonymous and copied to the child; unwritten pages still show the file (mm/memory.c copy_page_range)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"F" * (2 * PAGE), 0)
        m = proc.mmap(ARENA, 2 * PAGE, RW, vmkit.MAP_PRIVATE | vmkit.MAP_FIXED, fd, 0)
        proc.write(m, b"private")
        child = proc.fork()
        assert child.read(m, 8) == b"privateF"
        proc.pwrite(fd, b"new file data", PAGE)
        assert child.read(m + PAGE, 13) == b"new file data"
        assert child.read(m, 7) == b"private"
        assert proc.pread(fd, 7, 0) == b"FFFFFFF"
        child.write(m, b"CHILD")
        assert proc.read(m, 7) == b"private"

    def test_shared_file_mapping_coherent_across_fork(self, proc: Process, file_path: str) -> None:
        """Both processes map the same page-cache pages: stores are visible to the other and to pread (mm/filemap.c filemap_fault)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.ftruncate(fd, 2 * PAGE)
        m = proc.mmap(ARENA, 2 * PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_FIXED, fd, 0)
        child = proc.fork()
        child.write(m + PAGE, b"from child")
        assert proc.read(m + PAGE, 10) == b"from child"
        proc.write(m, b"from parent")
        assert child.read(m, 11) == b"from parent"
        assert child.pread(fd, 11, 0) == b"from parent"

    def test_fds_are_inherited(self, proc: Process, file_path: str) -> None:
        """The child gets a copy of the descriptor table; a close in the child leaves the parent's fd (kernel/fork.c copy_files)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"inherited", 0)
        child = proc.fork()
        assert child.pread(fd, 9, 0) == b"inherited"
        child.close(fd)
        with pytest.raises(OSError) as e:
            child.pread(fd, 1, 0)
        assert e.value.errno == errno.EBADF
        assert proc.pread(fd, 9, 0) == b"inherited"
