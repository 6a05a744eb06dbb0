"""Divergences the differential fuzzer found between the model and the kernel, kept as regressions.

Each test is the fuzzer's minimal sequence (tests/test_differential.py prints them), with the
kernel's answer asserted; they run on both backends.
"""

from __future__ import annotations

import errno
import os
import resource

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
    """The hugetlbfs object behind an anonymous MAP_HUGETLB mapping belongs to its creator, so
    can_do_mincore lets an unprivileged creator see the real, untouched state (all 0) instead of
    "all resident" (mm/mincore.c)."""
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


def test_map_shared_validate_refuses_flag_bits_above_31(proc: Process) -> None:
    """mmap's flags are an unsigned long down to do_mmap: MAP_SHARED_VALIDATE refuses a bit above 31
    with EOPNOTSUPP (``flags & ~flags_mask``) before the hugetlb pool's ENOMEM; MAP_SHARED ignores
    it (mm/mmap.c)."""
    with pytest.raises(OSError) as e:
        proc.mmap(None, 2 << 20, vmkit.PROT_NONE, vmkit.MAP_SHARED_VALIDATE | vmkit.MAP_ANONYMOUS
                  | vmkit.MAP_HUGETLB | (1 << 40))
    assert e.value.errno == errno.EOPNOTSUPP
    assert proc.mmap(None, 4096, vmkit.PROT_NONE, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS | (1 << 40)) > 0


def test_a_pidfd_is_an_o_rdwr_regular_pidfs_file(proc: Process) -> None:
    """pidfd_prepare opens the pidfs file O_RDWR and on 6.18 its inode is S_IFREG: ftruncate gets to
    pidfs_setattr (EOPNOTSUPP), pread/pwrite find no read_iter/write_iter (EINVAL), and a shared
    writable mmap is refused for the missing ->mmap (ENODEV), not for the access mode."""
    fd = proc.pidfd_open(proc.pid)
    for call, args, expected in ((proc.ftruncate, (fd, 4095), errno.EOPNOTSUPP),
                                 (proc.pread, (fd, 4, 0), errno.EINVAL),
                                 (proc.pwrite, (fd, b"x", 0), errno.EINVAL),
                                 (proc.mmap, (None, 4096, vmkit.PROT_READ | vmkit.PROT_WRITE,
                                              vmkit.MAP_SHARED, fd, 0), errno.ENODEV)):
        with pytest.raises(OSError) as e:
            call(*args)
        assert e.value.errno == expected


def test_mapping_a_pidfd_executable_is_eperm_on_the_noexec_pidfs(proc: Process) -> None:
    """pidfs is SB_I_NOEXEC: do_mmap refuses VM_EXEC on it (path_noexec, EPERM) before it finds the
    missing ->mmap (ENODEV) (mm/mmap.c)."""
    fd = proc.pidfd_open(proc.pid)
    with pytest.raises(OSError) as e:
        proc.mmap(None, 4096, vmkit.PROT_READ | vmkit.PROT_EXEC, vmkit.MAP_PRIVATE, fd, 0)
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        proc.mmap(None, 4096, vmkit.PROT_READ, vmkit.MAP_PRIVATE, fd, 0)
    assert e.value.errno == errno.ENODEV


def test_file_mmap_ok_limits_every_file_type(proc: Process) -> None:
    """file_mmap_ok runs for every file before the map type is looked at: a regular file (a 6.18
    pidfd is one) ends within MAX_LFS_FILESIZE, anything else within ULONG_MAX (/dev/zero with an
    offset of 2**64 - 4096) — EOVERFLOW (mm/mmap.c file_mmap_size_max)."""
    pidfd = proc.pidfd_open(proc.pid)
    zero = proc.open("/dev/zero", os.O_RDWR)
    for fd, offset in ((pidfd, 1 << 63), (zero, (1 << 64) - 4096)):
        for map_type in (0, vmkit.MAP_PRIVATE):
            with pytest.raises(OSError) as e:
                proc.mmap(None, 0x27000, vmkit.PROT_READ, map_type, fd, offset)
            assert e.value.errno == errno.EOVERFLOW
    assert proc.mmap(None, 0x27000, vmkit.PROT_READ, vmkit.MAP_PRIVATE, zero, (1 << 64) - (2 << 20)) > 0


def test_pageout_drops_clean_shmem_pages(proc: Process) -> None:
    """Without swap MADV_PAGEOUT still reclaims a shmem page that was never written (a read fault
    or MAP_POPULATE of a shared mapping allocates a clean zeroed folio: shrink_folio_list removes
    it); written pages stay (shmem_writeout redirties them) (mm/vmscan.c, mm/shmem.c)."""
    page = vmkit.PAGE_SIZE
    rw = vmkit.PROT_READ | vmkit.PROT_WRITE
    a = proc.mmap(None, 3 * page, rw, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS)
    proc.read(a, 1)
    proc.write(a + page, b"x")
    b = proc.mmap(None, 2 * page, rw, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS | vmkit.MAP_POPULATE)
    assert (proc.mincore(a, 3 * page), proc.mincore(b, 2 * page)) == (b"\1\1\0", b"\1\1")
    proc.madvise(a, 3 * page, vmkit.MADV_PAGEOUT)
    proc.madvise(b, 2 * page, vmkit.MADV_PAGEOUT)
    assert (proc.mincore(a, 3 * page), proc.mincore(b, 2 * page)) == (b"\0\1\0", b"\0\0")
    assert proc.read(a, 2 * page) == bytes(page) + b"x" + bytes(page - 1)


def test_pread_of_a_shmem_hole_allocates_no_page(proc: Process) -> None:
    """shmem_file_read_iter reads a hole as zeros without allocating a folio (SGP_READ), so the page
    is not resident for mincore afterwards (mm/shmem.c)."""
    page = vmkit.PAGE_SIZE
    fd = proc.memfd_create("m")
    proc.ftruncate(fd, 2 * page)
    proc.pwrite(fd, b"a", 0)
    assert proc.pread(fd, 2 * page, 0) == b"a" + bytes(2 * page - 1)
    a = proc.mmap(None, 2 * page, vmkit.PROT_READ, vmkit.MAP_SHARED, fd, 0)
    assert proc.mincore(a, 2 * page) == b"\1\0"


def test_dev_zero_reads_zeros_and_dev_null_eof_both_swallow_writes(proc: Process) -> None:
    """drivers/char/mem.c: /dev/zero's read_iter_zero fills the buffer with zeros at any offset,
    /dev/null reads end-of-file, and both take every write (write_null)."""
    zero, null = proc.open("/dev/zero", os.O_RDWR), proc.open("/dev/null", os.O_RDWR)
    assert proc.pread(zero, 4095, 0) == bytes(4095)
    assert proc.pread(zero, 5, 1 << 40) == bytes(5)
    assert proc.pread(null, 5, 0) == b""
    assert proc.pwrite(zero, b"abc", 7) == 3
    assert proc.pwrite(null, b"abc", 7) == 3
    assert proc.pread(zero, 16, 0) == bytes(16)


def test_anonymous_hugetlb_file_is_writable_by_all_so_mincore_shows_real_state(proc: Process) -> None:
    """hugetlb_file_setup makes the object behind MAP_HUGETLB with mode 0777 (S_IRWXUGO): a forked
    child that dropped root passes can_do_mincore's file_permission(MAY_WRITE) on root's object and
    sees the real state (all 0), not "all resident" (fs/hugetlbfs/inode.c, mm/mincore.c)."""
    a = proc.mmap(None, 1921, vmkit.PROT_NONE,
                  vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_NORESERVE | vmkit.MAP_HUGETLB)
    child = proc.fork()
    child.drop_privileges()
    assert child.mincore(a, 16 * vmkit.PAGE_SIZE) == bytes(16)


def test_private_dev_zero_mappings_are_placed_for_huge_pages(proc: Process) -> None:
    """/dev/zero's get_unmapped_area_zero (drivers/char/mem.c): a MAP_PRIVATE mapping goes through
    thp_get_unmapped_area with the file offset, so a 4 MiB one lands 2 MiB-aligned (plus the
    offset's misalignment); MAP_SHARED uses shmem's, which does not align here (shmem_huge never)."""
    fd = proc.open("/dev/zero", os.O_RDWR)
    rw = vmkit.PROT_READ | vmkit.PROT_WRITE
    private = proc.mmap(None, 4 << 20, rw, vmkit.MAP_PRIVATE, fd, 0)
    assert private % (2 << 20) == 0
    shifted = proc.mmap(None, 4 << 20, rw, vmkit.MAP_PRIVATE, fd, 0x1000)
    assert shifted % (2 << 20) == 0x1000
    shared = proc.mmap(None, 4 << 20, rw, vmkit.MAP_SHARED, fd, 0)
    assert shared == shifted - (4 << 20)


def test_hugetlb_placement_is_the_ordinary_search_with_huge_alignment(proc: Process) -> None:
    """6.18's hugetlb_get_unmapped_area rounds the length to whole huge pages and then runs the
    ordinary x86 search with the huge page size as alignment, so MAP_32BIT's 1 GiB window cannot
    hold a 1 GiB-aligned 1 GiB mapping (ENOMEM, before hugetlbfs_file_mmap's offset check), while a
    2 MiB one fits and then fails that check (EINVAL)."""
    mfd_hugetlb, mfd_huge_shift = 0x4, 26
    giant = proc.memfd_create("g", mfd_hugetlb | (30 << mfd_huge_shift))
    huge = proc.memfd_create("h", mfd_hugetlb | (21 << mfd_huge_shift))
    shared_32bit = vmkit.MAP_SHARED | vmkit.MAP_32BIT
    with pytest.raises(OSError) as e:
        proc.mmap(None, 0x2000, vmkit.PROT_READ, shared_32bit, giant, 0x8000)
    assert e.value.errno == errno.ENOMEM
    with pytest.raises(OSError) as e:
        proc.mmap(None, 0x2000, vmkit.PROT_READ, shared_32bit, huge, 0x8000)
    assert e.value.errno == errno.EINVAL


def test_a_refused_stack_growth_still_gives_the_vma_an_anon_vma(proc: Process) -> None:
    """expand_downwards (mm/mmap.c) calls anon_vma_prepare before acct_stack_growth refuses a
    growth: after a fault far below a read-faulted GROWSDOWN mapping (SIGSEGV: beyond RLIMIT_STACK),
    the mapping has an anon_vma, so fork copies its page table (vma_needs_copy) and the child sees
    the page resident; before the fault the child's table starts empty."""
    flags = vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_GROWSDOWN
    stack = proc.mmap(None, 4096, vmkit.PROT_READ, flags)
    proc.read(stack, 1)  # the zero page
    child = proc.fork()
    assert child.mincore(stack, 4096) == b"\x00"
    child.kill(9)
    child.wait()
    with pytest.raises(vmkit.SegmentationFault):
        proc.read(stack - (64 << 20), 1)
    child = proc.fork()
    assert child.mincore(stack, 4096) == b"\x01"


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


def test_open_reserves_the_descriptor_before_the_lookup(proc: Process, shm_path: str) -> None:
    """do_sys_openat2 takes a descriptor (get_unused_fd_flags: EMFILE at RLIMIT_NOFILE) before
    do_filp_open looks the path up, so a missing file is EMFILE, not ENOENT, when no fd is free."""
    proc.setrlimit(resource.RLIMIT_NOFILE, (3, 3))  # 0, 1 and 2 are open
    with pytest.raises(OSError) as e:
        proc.open(shm_path, os.O_RDONLY)
    assert e.value.errno == errno.EMFILE


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


def test_fork_copies_the_page_table_of_a_vma_that_may_hold_guard_markers(proc: Process) -> None:
    """MADV_GUARD_INSTALL sets VM_MAYBE_GUARD, which is in VM_COPY_ON_FORK: vma_needs_copy then
    copies the VMA's whole page table, so a forked child maps the shared anonymous pages the
    parent had (RssShmem), where without markers it would refault them (kernel/fork.c, mm/memory.c)."""
    page = vmkit.PAGE_SIZE
    a = proc.mmap(None, 4 * page, vmkit.PROT_READ | vmkit.PROT_WRITE, vmkit.MAP_SHARED | vmkit.MAP_ANONYMOUS)
    proc.write(a, b"x" * 3 * page)
    child = proc.fork()
    assert child.status()["RssShmem"] == "0 kB"
    child.kill(9)
    child.wait()
    proc.madvise(a + 3 * page, page, vmkit.MADV_GUARD_INSTALL)
    child = proc.fork()
    assert child.status()["RssShmem"] == "12 kB"


def test_ext4_refusing_map_sync_has_already_cleared_a_fixed_range(proc: Process, file_path: str) -> None:
    """ext4_file_mmap refuses VM_SYNC without DAX (EOPNOTSUPP; MAP_SYNC sets VM_SYNC even under plain
    MAP_SHARED, calc_vm_flag_bits runs before the legacy mask) — but the hook runs after
    __mmap_region cleared the MAP_FIXED range, so the old mapping is gone (vms_abort_munmap_vmas
    leaves a gap once page tables were cleared)."""
    arena = 0x200000000
    fd = proc.open(file_path, os.O_RDWR | os.O_CREAT)
    proc.mmap(arena, 0x4000, vmkit.PROT_READ, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED)
    with pytest.raises(OSError) as e:
        proc.mmap(arena, 0x2000, vmkit.PROT_READ, vmkit.MAP_SHARED | vmkit.MAP_FIXED | vmkit.MAP_SYNC, fd, 0)
    assert e.value.errno == errno.EOPNOTSUPP
    assert vmas_in(proc, arena, arena + 0x100000) == [(arena + 0x2000, arena + 0x4000, "r--p")]
