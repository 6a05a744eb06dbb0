"""Divergences the differential fuzzer found between the model and the kernel, kept as regressions.

Each test is the fuzzer's minimal sequence (tests/test_differential.py prints them), with the
kernel's answer asserted; they run on both backends.
"""

from __future__ import annotations

import errno
import os

import pytest

import vmkit
from vmkit.process import Process

from helpers import smaps_of, vmas_in


def test_mlockall_current_faults_in_the_vdso_pages(proc: Process) -> None:
    """mlockall(MCL_CURRENT) populates every VMA, [vdso] included (mm/gup.c __mm_populate); its
    pages count as file pages, while [vdso] itself is never VM_LOCKED (VM_SPECIAL)."""
    assert proc.status()["RssFile"] == "0 kB"
    proc.mlockall(vmkit.MCL_CURRENT)
    assert proc.status()["RssFile"] == "8 kB"
    vdso = smaps_of(proc, 0x7FFFF7FFD000)
    assert (vdso["Rss"], vdso["Locked"], vdso["Anonymous"]) == ("8 kB", "0 kB", "0 kB")


def test_brk_to_the_top_of_the_address_space_is_refused(proc: Process) -> None:
    """brk(2**64 - 1): PAGE_ALIGN wraps to 0, the length check in check_brk_limits fails, the break
    stays (mm/mmap.c brk)."""
    start = proc.brk(0)
    assert proc.brk((1 << 64) - 1) == start
    assert proc.brk(0) == start


def test_open_below_a_directory_without_search_permission_is_eacces(proc: Process, file_path: str) -> None:
    """Path lookup needs search permission on every directory (fs/namei.c may_lookup): after
    dropping root, a file below a 0700 root-owned directory is EACCES, not ENOENT."""
    proc.mkdir(file_path)
    try:
        proc.drop_privileges()
        with pytest.raises(OSError) as e:
            proc.open(file_path + "/f0", os.O_RDONLY)
        assert e.value.errno == errno.EACCES
    finally:
        os.rmdir(file_path) if os.path.isdir(file_path) else None


def test_access_to_a_non_canonical_address_is_a_general_protection_fault(proc: Process) -> None:
    """x86-64: an address between 2**47 and 2**64 - 2**47 is not canonical; the access raises #GP,
    delivered as SIGSEGV with si_code SI_KERNEL (0x80) and no address (arch/x86/kernel/traps.c)."""
    with pytest.raises(vmkit.SegmentationFault) as fault:
        proc.read(0x800000000000, 1)
    assert (fault.value.addr, fault.value.code) == (0, 0x80)


def test_hugetlb_offset_not_huge_page_aligned_is_einval_before_the_empty_pool(proc: Process) -> None:
    """hugetlbfs_file_mmap refuses a pgoff that is not huge-page aligned (EINVAL) before it tries
    to reserve pages from the (empty) pool (ENOMEM); anonymous MAP_HUGETLB keeps the offset as pgoff."""
    with pytest.raises(OSError) as e:
        proc.mmap(None, 0x26000, vmkit.PROT_NONE,
                  vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_HUGETLB, -1, 0x8000)
    assert e.value.errno == errno.EINVAL


def test_mremap_overlap_check_wraps_like_unsigned_long(proc: Process) -> None:
    """vrm_overlaps computes addr + old_len modulo 2**64: a huge old_len wraps below new_addr, so
    the unmapped old address is what fails, with EFAULT (mm/mremap.c)."""
    with pytest.raises(OSError) as e:
        proc.mremap(0x500000, 0xFFFFFFFFFFFFF000, 0x8000, vmkit.MREMAP_MAYMOVE | vmkit.MREMAP_FIXED,
                    0x200012000)
    assert e.value.errno == errno.EFAULT


def test_anonymous_hugetlb_offset_past_the_maximum_file_size_is_eoverflow(proc: Process) -> None:
    """Anonymous MAP_HUGETLB maps a hugetlbfs file, so file_mmap_ok's MAX_LFS_FILESIZE rule applies
    to its offset: EOVERFLOW (mm/mmap.c do_mmap)."""
    with pytest.raises(OSError) as e:
        proc.mmap(None, 2183, vmkit.PROT_NONE,
                  vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS | vmkit.MAP_HUGETLB, -1, 1 << 63)
    assert e.value.errno == errno.EOVERFLOW


def test_fork_copies_page_tables_only_of_vmas_with_anonymous_pages(proc: Process) -> None:
    """dup_mmap copies page tables only where vma_needs_copy (an anon_vma, or a PFN map): a VMA
    that only saw read faults (zero page, no anon_vma) starts empty in the child (mm/memory.c)."""
    page = vmkit.PAGE_SIZE
    a = proc.mmap(None, 4 * page, vmkit.PROT_READ | vmkit.PROT_WRITE,
                  vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS)
    proc.read(a, 1)
    assert proc.mincore(a, 4 * page) == b"\1\0\0\0"
    assert proc.fork().mincore(a, 4 * page) == b"\0\0\0\0"
    proc.write(a + page, b"x")
    assert proc.fork().mincore(a, 4 * page) == b"\1\1\0\0"


def test_mprotect_walk_continues_after_a_merge_covering_the_rest(proc: Process) -> None:
    """mprotect goes on from the end of the VMA the fixup left (vma_iter_end): when the first piece
    merges into a next VMA that already has the new protection, the rest of the range is done
    (mm/mprotect.c do_mprotect_pkey)."""
    page, rw = vmkit.PAGE_SIZE, vmkit.PROT_READ | vmkit.PROT_WRITE
    a = proc.mmap(None, 5 * page, vmkit.PROT_READ, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS)
    proc.mprotect(a, 2 * page, vmkit.PROT_READ | vmkit.PROT_EXEC)
    proc.mprotect(a + 2 * page, 3 * page, rw)
    proc.mprotect(a + page, 4 * page, rw)
    lines = [line.split()[:2] for line in proc.maps().splitlines()
             if a <= int(line.split("-")[0], 16) < a + 5 * page]
    assert lines == [[f"{a:x}-{a + page:x}", "r-xs"], [f"{a + page:x}-{a + 5 * page:x}", "rw-s"]]


def test_mcl_future_does_not_lock_droppable_mappings(proc: Process) -> None:
    """__mmap_region clears VM_LOCKED on VMAs that cannot be mlocked (vma_supports_mlock: VM_DROPPABLE,
    hugetlb, special mappings), so MCL_FUTURE charges nothing for them (mm/mmap.c)."""
    proc.mlockall(vmkit.MCL_FUTURE)
    before = proc.status()["VmLck"]
    a = proc.mmap(None, 16 * vmkit.PAGE_SIZE, vmkit.PROT_READ | vmkit.PROT_WRITE,
                  vmkit.MAP_DROPPABLE | vmkit.MAP_ANONYMOUS)
    assert proc.status()["VmLck"] == before
    assert "lo" not in smaps_of(proc, a)["VmFlags"].split()


def test_unprivileged_mincore_of_its_own_hugetlb_mapping_shows_real_state(proc: Process) -> None:
    """The hugetlbfs object behind an anonymous MAP_HUGETLB mapping (mode 0600) belongs to its
    creator, so can_do_mincore lets an unprivileged creator see the real, untouched state (all 0)
    instead of "all resident" (mm/mincore.c)."""
    proc.drop_privileges()
    a = proc.mmap(None, 2 << 20, vmkit.PROT_READ | vmkit.PROT_WRITE,
                  vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS | vmkit.MAP_HUGETLB | vmkit.MAP_NORESERVE)
    assert proc.mincore(a, 16 * vmkit.PAGE_SIZE) == bytes(16)


def test_failed_fixed_hugetlb_mapping_has_already_cleared_the_range(proc: Process) -> None:
    """MAP_FIXED clears the target before hugetlbfs_file_mmap reserves pages; when the empty pool
    refuses (ENOMEM), the old mappings are gone and the range is a hole (mm/vma.c
    vms_abort_munmap_vmas after vms_clean_up_area)."""
    page = vmkit.PAGE_SIZE
    base = 0x200000000
    proc.mmap(base, 4 * page, vmkit.PROT_READ | vmkit.PROT_WRITE,
              vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
    with pytest.raises(OSError) as e:
        proc.mmap(base, 4 * page, vmkit.PROT_NONE,
                  vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED | vmkit.MAP_HUGETLB)
    assert e.value.errno == errno.ENOMEM
    assert not any(line.startswith(f"{base:x}-") for line in proc.maps().splitlines())


def test_a_failed_map_fixed_leaves_the_old_vma_split(proc: Process) -> None:
    """__mmap_region splits the VMAs it replaces (vms_gather_munmap_vmas) before may_expand_vm;
    when RLIMIT_AS then refuses (ENOMEM), vms_abort_munmap_vmas puts them back, still split."""
    arena = 0x200000000
    proc.mmap(arena, 0x2E000, vmkit.PROT_READ, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
    proc.setrlimit(9, (0x1000, 0x40000000))  # RLIMIT_AS far below what the process has
    with pytest.raises(OSError) as e:
        proc.mmap(arena + 0x2D000, 0x27000, vmkit.PROT_READ | vmkit.PROT_WRITE,
                  vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
    assert e.value.errno == errno.ENOMEM
    assert vmas_in(proc, arena, arena + 0x100000) == [
        (arena, arena + 0x2D000, "r--p"), (arena + 0x2D000, arena + 0x2E000, "r--p")]


def test_stack_growth_gives_the_vma_an_anon_vma(proc: Process) -> None:
    """expand_downwards runs anon_vma_prepare, so a grown GROWSDOWN VMA whose pages were only read
    is copied by fork (vma_needs_copy): the child has the zero-page entry (mincore 1)."""
    arena = 0x200000000
    proc.mmap(arena + 0x10000, 0x2000, vmkit.PROT_READ | vmkit.PROT_WRITE,
              vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED | vmkit.MAP_GROWSDOWN)
    assert proc.read(arena + 0xF000, 7) == bytes(7)
    child = proc.fork()
    try:
        assert child.mincore(arena + 0xF000, 0x3000) == b"\x01\x00\x00"
    finally:
        child.terminate()
