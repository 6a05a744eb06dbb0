"""memfd_create(MFD_HUGETLB) with the machine's empty hugetlb pool, on both backends.

mm/memfd.c makes the file with ``hugetlb_file_setup``; fs/hugetlbfs/inode.c serves it: sizes in whole
huge pages, no write(2), mappings refused by ``hugetlb_reserve_pages`` (ENOMEM) unless MAP_NORESERVE,
and a fault on a page the pool cannot back is SIGBUS.
"""

from __future__ import annotations

import errno

import pytest

import vmkit
from vmkit.process import Process

MFD_HUGETLB = 0x4
HUGE = 2 << 20
PAGE = vmkit.PAGE_SIZE
RW = vmkit.PROT_READ | vmkit.PROT_WRITE


def errno_of(call, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as e:
        call(*args)
    return e.value.errno


def test_page_sizes_the_machine_has_are_accepted_others_are_enodev(proc: Process) -> None:
    """hstate_sizelog: 2 MiB (default, 21) and 1 GiB (30) exist; 4 MiB (22) does not: ENODEV."""
    assert proc.memfd_create("h", MFD_HUGETLB) == 3
    assert proc.memfd_create("h", MFD_HUGETLB | (21 << 26)) == 4
    assert proc.memfd_create("h", MFD_HUGETLB | (30 << 26)) == 5
    assert errno_of(proc.memfd_create, "h", MFD_HUGETLB | (22 << 26)) == errno.ENODEV
    assert errno_of(proc.memfd_create, "h", 21 << 26) == errno.EINVAL  # a size needs MFD_HUGETLB
    assert errno_of(proc.memfd_create, "h", MFD_HUGETLB | 0x20) == errno.EINVAL
    assert errno_of(proc.memfd_create, "h", 0x18) == errno.EINVAL  # MFD_EXEC | MFD_NOEXEC_SEAL
    assert proc.memfd_create("h", 0) == 6  # the ENODEV released its descriptor


def test_size_in_whole_huge_pages_and_no_write(proc: Process) -> None:
    """hugetlbfs_setattr refuses a size that is not a multiple of the huge page; hugetlbfs has no
    write_iter (EINVAL); read_iter returns zeros for holes."""
    fd = proc.memfd_create("h", MFD_HUGETLB)
    assert errno_of(proc.ftruncate, fd, PAGE) == errno.EINVAL
    proc.ftruncate(fd, HUGE)
    assert errno_of(proc.pwrite, fd, b"x", 0) == errno.EINVAL
    assert proc.pread(fd, 10, 0) == bytes(10)
    assert proc.pread(fd, 10, HUGE - 4) == bytes(4)


@pytest.mark.parametrize("map_type", [vmkit.MAP_SHARED, vmkit.MAP_PRIVATE])
def test_mapping_is_enomem_with_the_empty_pool(proc: Process, map_type: int) -> None:
    fd = proc.memfd_create("h", MFD_HUGETLB)
    proc.ftruncate(fd, HUGE)
    assert errno_of(proc.mmap, None, PAGE, RW, map_type, fd, 0) == errno.ENOMEM
    assert errno_of(proc.mmap, None, PAGE, vmkit.PROT_READ, map_type, fd, 0) == errno.ENOMEM


def test_offset_must_be_huge_page_aligned(proc: Process) -> None:
    fd = proc.memfd_create("h", MFD_HUGETLB)
    assert errno_of(proc.mmap, None, PAGE, vmkit.PROT_READ, vmkit.MAP_SHARED | vmkit.MAP_NORESERVE,
                    fd, PAGE) == errno.EINVAL


def test_a_noreserve_mapping_is_huge_aligned_and_faults_sigbus(proc: Process) -> None:
    """The length rounds to the huge page (ksys_mmap_pgoff); the address is huge-page aligned; the
    empty pool cannot back a fault: SIGBUS (BUS_ADRERR); mincore shows nothing resident."""
    fd = proc.memfd_create("h", MFD_HUGETLB)
    a = proc.mmap(None, PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_NORESERVE, fd, 0)
    assert a % HUGE == 0
    line = next(x for x in proc.maps().splitlines() if x.startswith(f"{a:x}-"))
    assert line.split()[0] == f"{a:x}-{a + HUGE:x}"
    assert line.split()[1] == "rw-s" and line.endswith("/memfd:h (deleted)")
    assert proc.mincore(a, 2 * PAGE) == b"\0\0"
    with pytest.raises(vmkit.BusError) as fault:
        proc.read(a, 1)
    assert (fault.value.addr, fault.value.code) == (a, 2)


def test_a_writable_mapping_extends_the_file(proc: Process) -> None:
    """hugetlbfs_file_mmap: a VM_WRITE mapping longer than the file sets i_size to its end."""
    fd = proc.memfd_create("h", MFD_HUGETLB)
    proc.mmap(None, 3 << 20, RW, vmkit.MAP_SHARED | vmkit.MAP_NORESERVE | vmkit.MAP_HUGETLB, fd, 0)
    assert proc.pread(fd, 1, (4 << 20) - 1) == b"\0"
    assert proc.pread(fd, 1, 4 << 20) == b""
    fd2 = proc.memfd_create("r", MFD_HUGETLB)
    proc.mmap(None, HUGE, vmkit.PROT_READ, vmkit.MAP_SHARED | vmkit.MAP_NORESERVE, fd2, 0)
    assert proc.pread(fd2, 1, 0) == b""


def test_map_fixed_needs_a_huge_page_aligned_address(proc: Process) -> None:
    fd = proc.memfd_create("h", MFD_HUGETLB)
    flags = vmkit.MAP_SHARED | vmkit.MAP_NORESERVE | vmkit.MAP_FIXED
    assert errno_of(proc.mmap, 0x200001000, PAGE, RW, flags, fd, 0) == errno.EINVAL
    assert proc.mmap(0x200000000, PAGE, RW, flags, fd, 0) == 0x200000000
