"""The in-process form of ``vmkit.native``: module-level calls and :class:`vmkit.native.Mapping`,
acting on the test process itself.

These have no model counterpart (the model has no "calling process"), so every test here is
native-only.  Everything destructive happens inside regions the test mapped itself, framed by
PROT_NONE guard pages so they never merge with the interpreter's own VMAs; mlockall/munlockall run in
an ``os.fork`` child only (they would lock the whole interpreter), and brk is only ever read
(``brk(0)``): moving the interpreter's break under glibc's malloc is not safe.
"""

from __future__ import annotations

import array
import ctypes
import errno
import json
import mmap as pymmap
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

import vmkit
from vmkit import native

from conftest import PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import parse_maps, smaps_of, vm_flags

pytestmark = pytest.mark.native_only

NONE = vmkit.PROT_NONE
RO = vmkit.PROT_READ
MAYMOVE = vmkit.MREMAP_MAYMOVE
FIXED = vmkit.MREMAP_FIXED
DONTUNMAP = vmkit.MREMAP_DONTUNMAP


class _Self:
    """This process seen through the two texts the helpers read (maps, smaps)."""

    def maps(self) -> str:
        return native.maps()

    def smaps(self) -> str:
        with open("/proc/self/smaps") as f:
            return f.read()


SELF = _Self()


def vmas(lo: int, hi: int) -> list[tuple[int, int, str]]:
    """(start, end, perms) of this process's VMAs overlapping [lo, hi), clipped to it.

    Clipped because the PROT_NONE guards of neighbouring test regions may merge into one VMA.
    """
    return [(max(m.start, lo), min(m.end, hi), m.perms) for m in parse_maps(native.maps())
            if m.end > lo and m.start < hi]


def errno_of(call: Callable[[], object]) -> int:
    with pytest.raises(OSError) as e:
        call()
    assert e.value.errno is not None
    return e.value.errno


class Regions:
    """Mappings made by a test, each between two PROT_NONE guard pages; all unmapped afterwards."""

    def __init__(self) -> None:
        self.made: list[tuple[int, int]] = []

    def reserve(self, length: int, flags: int = PRIVATE_ANON | vmkit.MAP_NORESERVE) -> int:
        base = native.mmap(None, length, NONE, flags)
        self.made.append((base, length))
        return base

    def new(self, pages: int, prot: int = RW, flags: int = PRIVATE_ANON, fd: int = -1,
            offset: int = 0) -> int:
        base = self.reserve((pages + 2) * PAGE)
        return native.mmap(base + PAGE, pages * PAGE, prot, flags | vmkit.MAP_FIXED, fd, offset)

    def track(self, addr: int, length: int) -> None:
        self.made.append((addr, length))

    def release(self) -> None:
        for base, length in reversed(self.made):
            native.munmap(base, length)


@pytest.fixture
def regions() -> Iterator[Regions]:
    r = Regions()
    yield r
    r.release()


@pytest.fixture
def memfd() -> Iterator[int]:
    """A 4-page memfd holding b'file' at offset 0."""
    fd = native.memfd_create("vmkit-inprocess")
    os.ftruncate(fd, 4 * PAGE)
    os.pwrite(fd, b"file", 0)
    yield fd
    os.close(fd)


_CHILD = r"""
import ctypes, sys
buf = bytearray(b"child-data" + bytes(3 * 4096 - 10))
print(ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf)), flush=True)
for _ in sys.stdin:
    print(bytes(buf[:16]).hex(), flush=True)
"""


class Child:
    """Another Python process holding a 3-page bytearray at ``addr`` (b'child-data' then zeros)."""

    def __init__(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True)
        assert self.popen.stdout is not None and self.popen.stdin is not None
        self.stdin, self.stdout = self.popen.stdin, self.popen.stdout
        self.pid = self.popen.pid
        self.addr = int(self.stdout.readline())

    def head(self) -> bytes:
        """The first 16 bytes of the buffer, as the child itself sees them."""
        self.stdin.write("?\n")
        self.stdin.flush()
        return bytes.fromhex(self.stdout.readline().strip())

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self.stdin.close()
        self.stdout.close()


@pytest.fixture
def child() -> Iterator[Child]:
    c = Child()
    yield c
    c.kill()


# --------------------------------------------------------------------------------------------------


class TestMmapMunmap:
    def test_private_anonymous_is_zeroed_and_exactly_placed(self, regions: Regions) -> None:
        """A MAP_FIXED private anonymous map lands at addr and reads zero (mm/mmap.c do_mmap)."""
        base = regions.reserve(6 * PAGE)
        a = native.mmap(base + PAGE, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED)
        assert a == base + PAGE
        assert native.read(a, 4 * PAGE) == bytes(4 * PAGE)
        assert vmas(base, base + 6 * PAGE) == [
            (base, a, "---p"), (a, a + 4 * PAGE, "rw-p"), (a + 4 * PAGE, base + 6 * PAGE, "---p"),
        ]

    def test_map_fixed_replaces_contents_with_zeros(self, regions: Regions) -> None:
        """MAP_FIXED over a mapping unmaps the old pages first (mm/mmap.c do_mmap -> mmap_region)."""
        a = regions.new(3)
        native.write(a, b"A" * 3 * PAGE)
        assert native.mmap(a + PAGE, PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED) == a + PAGE
        assert native.read(a, 3 * PAGE) == b"A" * PAGE + bytes(PAGE) + b"A" * PAGE

    def test_fixed_noreplace_on_occupied_range_is_eexist(self, regions: Regions) -> None:
        """MAP_FIXED_NOREPLACE over a mapped page fails with EEXIST (mm/mmap.c do_mmap)."""
        a = regions.new(2)
        with pytest.raises(FileExistsError) as e:
            native.mmap(a + PAGE, PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED_NOREPLACE)
        assert e.value.errno == errno.EEXIST

    def test_fixed_noreplace_in_a_hole_is_exact(self, regions: Regions) -> None:
        """MAP_FIXED_NOREPLACE into a free range returns exactly addr (mm/mmap.c do_mmap)."""
        a = regions.new(3)
        native.munmap(a + PAGE, PAGE)
        assert native.mmap(a + PAGE, PAGE, RO, PRIVATE_ANON | vmkit.MAP_FIXED_NOREPLACE) == a + PAGE
        assert vmas(a, a + 3 * PAGE) == [
            (a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"), (a + 2 * PAGE, a + 3 * PAGE, "rw-p"),
        ]

    def test_hint_in_a_free_range_is_honoured(self, regions: Regions) -> None:
        """A free, aligned hint is used as the address (mm/mmap.c __get_unmapped_area)."""
        base = regions.reserve(4 * PAGE)
        native.munmap(base + PAGE, 2 * PAGE)
        assert native.mmap(base + PAGE, 2 * PAGE, RW, PRIVATE_ANON) == base + PAGE

    def test_shared_anonymous_shows_rw_s_dev_zero(self, regions: Regions) -> None:
        """Shared anonymous memory is a shmem file named /dev/zero (mm/shmem.c shmem_zero_setup)."""
        a = regions.new(2, flags=SHARED_ANON)
        line = next(m for m in parse_maps(native.maps()) if m.start == a)
        assert (line.end, line.perms, line.name) == (a + 2 * PAGE, "rw-s", "/dev/zero (deleted)")

    def test_shared_file_mapping_stores_reach_the_file(self, regions: Regions, memfd: int) -> None:
        """A MAP_SHARED store goes to the page cache, seen by pread (mm/filemap.c)."""
        a = regions.new(4, flags=vmkit.MAP_SHARED, fd=memfd)
        assert native.read(a, 4) == b"file"
        native.write(a + PAGE, b"store")
        assert os.pread(memfd, 5, PAGE) == b"store"
        line = next(m for m in parse_maps(native.maps()) if m.start == a)
        assert (line.perms, line.name) == ("rw-s", "/memfd:vmkit-inprocess (deleted)")

    def test_private_file_mapping_stores_stay_private(self, regions: Regions, memfd: int) -> None:
        """MAP_PRIVATE file stores are copy-on-write and do not reach the file (mm/memory.c do_wp_page)."""
        a = regions.new(4, flags=vmkit.MAP_PRIVATE, fd=memfd)
        native.write(a, b"priv")
        assert native.read(a, 4) == b"priv"
        assert os.pread(memfd, 4, 0) == b"file"

    def test_map_populate_makes_every_page_resident(self, regions: Regions) -> None:
        """MAP_POPULATE prefaults the range (mm/util.c vm_mmap_pgoff -> mm_populate)."""
        a = regions.new(8, flags=PRIVATE_ANON | vmkit.MAP_POPULATE)
        assert native.mincore(a, 8 * PAGE) == b"\x01" * 8

    def test_map_32bit_lands_below_2gib(self) -> None:
        """MAP_32BIT places the mapping in the first 2 GiB (arch/x86/kernel/sys_x86_64.c find_start_end)."""
        a = native.mmap(None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_32BIT)
        try:
            assert 0 < a < 1 << 31
        finally:
            native.munmap(a, PAGE)

    @pytest.mark.parametrize(("length", "prot", "flags", "fd", "offset", "err"), [
        (0, RW, PRIVATE_ANON, -1, 0, errno.EINVAL),
        (PAGE, RW, vmkit.MAP_ANONYMOUS, -1, 0, errno.EINVAL),
        (PAGE, RW, vmkit.MAP_SHARED_VALIDATE | vmkit.MAP_ANONYMOUS, -1, 0, errno.EINVAL),
        (PAGE, RW, vmkit.MAP_PRIVATE, -1, 0, errno.EBADF),
        (PAGE, RW, vmkit.MAP_PRIVATE, 9999, 0, errno.EBADF),
        (PAGE, RW, PRIVATE_ANON, 5, 1, errno.EINVAL),
        (1 << 63, RW, PRIVATE_ANON, -1, 0, errno.ENOMEM),
        (-PAGE, RW, PRIVATE_ANON, -1, 0, errno.ENOMEM),
    ], ids=["len0", "no-type", "validate-anon", "fd-1-file", "bad-fd", "unaligned-off", "2^63", "wraps"])
    def test_mmap_errors(self, length: int, prot: int, flags: int, fd: int, offset: int, err: int) -> None:
        """mmap argument checks, in do_mmap order (mm/mmap.c do_mmap, mm/util.c vm_mmap_pgoff)."""
        assert errno_of(lambda: native.mmap(None, length, prot, flags, fd, offset)) == err

    def test_map_fixed_unaligned_is_einval(self) -> None:
        """MAP_FIXED needs a page-aligned address (mm/mmap.c __get_unmapped_area)."""
        assert errno_of(lambda: native.mmap(0x200000123, PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED)) == errno.EINVAL

    def test_shared_write_on_readonly_fd_is_permission_error(self, file_path: str) -> None:
        """PROT_WRITE|MAP_SHARED needs an fd opened for writing: EACCES (mm/mmap.c do_mmap)."""
        with open(file_path, "wb") as f:
            f.write(bytes(PAGE))
        fd = os.open(file_path, os.O_RDONLY)
        try:
            with pytest.raises(PermissionError) as e:
                native.mmap(None, PAGE, RW, vmkit.MAP_SHARED, fd)
            assert e.value.errno == errno.EACCES
        finally:
            os.close(fd)

    def test_munmap_middle_page_splits(self, regions: Regions) -> None:
        """munmap of a middle page splits the VMA in two (mm/vma.c do_vmi_munmap)."""
        a = regions.new(3)
        native.munmap(a + PAGE, PAGE)
        assert vmas(a, a + 3 * PAGE) == [(a, a + PAGE, "rw-p"), (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]

    def test_munmap_unaligned_length_rounds_up(self, regions: Regions) -> None:
        """munmap rounds the length up to whole pages (mm/vma.c do_vmi_munmap)."""
        a = regions.new(3)
        native.munmap(a, PAGE + 1)
        assert vmas(a, a + 3 * PAGE) == [(a + 2 * PAGE, a + 3 * PAGE, "rw-p")]

    def test_munmap_of_nothing_succeeds(self, regions: Regions) -> None:
        """munmap of an already empty range is not an error (mm/vma.c do_vmi_munmap)."""
        a = regions.new(2)
        native.munmap(a, 2 * PAGE)
        native.munmap(a, 2 * PAGE)
        assert vmas(a, a + 2 * PAGE) == []

    @pytest.mark.parametrize(("addr", "length"), [
        (1, PAGE), (0x200000000, 0), (0x200000000, -PAGE), (vmkit.TASK_SIZE, PAGE),
        (vmkit.TASK_SIZE - PAGE, 2 * PAGE), (0xFFFF800000000000, PAGE), (0x200000000, 1 << 63),
    ], ids=["unaligned", "len0", "wraps", "at-task-size", "crosses-task-size", "kernel-half", "2^63"])
    def test_munmap_einval(self, addr: int, length: int) -> None:
        """munmap rejects unaligned, empty and out-of-range ranges (mm/vma.c do_vmi_munmap)."""
        assert errno_of(lambda: native.munmap(addr, length)) == errno.EINVAL


class TestMprotect:
    def test_middle_page_splits_and_restoring_merges(self, regions: Regions) -> None:
        """mprotect splits a VMA in 3, and the old protection merges it back (mm/mprotect.c mprotect_fixup)."""
        a = regions.new(3)
        native.mprotect(a + PAGE, PAGE, RO)
        assert vmas(a, a + 3 * PAGE) == [
            (a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"), (a + 2 * PAGE, a + 3 * PAGE, "rw-p"),
        ]
        native.mprotect(a + PAGE, PAGE, RW)
        assert vmas(a, a + 3 * PAGE) == [(a, a + 3 * PAGE, "rw-p")]

    def test_read_only_page_refuses_writes_with_efault(self, regions: Regions) -> None:
        """A PROT_READ page is readable but process_vm_writev gets EFAULT (mm/gup.c check_vma_flags)."""
        a = regions.new(1)
        native.write(a, b"ro")
        native.mprotect(a, PAGE, RO)
        assert native.read(a, 2) == b"ro"
        assert errno_of(lambda: native.write(a, b"x")) == errno.EFAULT

    def test_hole_gives_enomem_after_applying_up_to_it(self, regions: Regions) -> None:
        """mprotect changes VMAs before a hole, then fails ENOMEM (mm/mprotect.c do_mprotect_pkey)."""
        a = regions.new(3)
        native.munmap(a + PAGE, PAGE)
        assert errno_of(lambda: native.mprotect(a, 3 * PAGE, RO)) == errno.ENOMEM
        assert vmas(a, a + 3 * PAGE) == [(a, a + PAGE, "r--p"), (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]

    def test_length_zero_and_unaligned_length(self, regions: Regions) -> None:
        """len 0 is a no-op and an unaligned len rounds up (mm/mprotect.c do_mprotect_pkey)."""
        a = regions.new(2)
        native.mprotect(a, 0, NONE)
        native.mprotect(a, 1, RO)
        assert vmas(a, a + 2 * PAGE) == [(a, a + PAGE, "r--p"), (a + PAGE, a + 2 * PAGE, "rw-p")]

    @pytest.mark.parametrize(("offset", "prot", "err"), [
        (1, RO, errno.EINVAL),
        (0, 0x10, errno.EINVAL),
        (0, vmkit.PROT_GROWSUP | RO, errno.EINVAL),
        (0, vmkit.PROT_GROWSDOWN | RO, errno.EINVAL),
        (0, vmkit.PROT_GROWSDOWN | vmkit.PROT_GROWSUP, errno.EINVAL),
        (-PAGE, RO, errno.ENOMEM),
    ], ids=["unaligned", "prot-0x10", "growsup", "growsdown-plain-vma", "both-grows", "unmapped"])
    def test_mprotect_errors(self, regions: Regions, offset: int, prot: int, err: int) -> None:
        """mprotect checks alignment, prot bits and GROWS* before the VMA walk (mm/mprotect.c do_mprotect_pkey)."""
        a = regions.new(1)
        if offset < 0:  # unmap the PROT_NONE guard page below so the range starts in a hole
            native.munmap(a + offset, PAGE)
        assert errno_of(lambda: native.mprotect(a + offset, PAGE, prot)) == err

    def test_prot_sem_is_accepted(self, regions: Regions) -> None:
        """x86 accepts PROT_SEM in mprotect (arch_validate_prot in include/linux/mman.h)."""
        a = regions.new(1)
        native.mprotect(a, PAGE, RO | vmkit.PROT_SEM)
        assert vmas(a, a + PAGE) == [(a, a + PAGE, "r--p")]


class TestMsync:
    @pytest.mark.parametrize("flags", [0, vmkit.MS_ASYNC, vmkit.MS_SYNC, vmkit.MS_INVALIDATE,
                                       vmkit.MS_SYNC | vmkit.MS_INVALIDATE])
    def test_valid_flags_on_a_shared_file(self, regions: Regions, memfd: int, flags: int) -> None:
        """msync accepts 0, ASYNC, SYNC, INVALIDATE combinations (mm/msync.c msync)."""
        a = regions.new(4, flags=vmkit.MAP_SHARED, fd=memfd)
        native.write(a, b"sync")
        native.msync(a, 4 * PAGE, flags)
        assert os.pread(memfd, 4, 0) == b"sync"

    @pytest.mark.parametrize(("offset", "flags", "err"), [
        (0, vmkit.MS_ASYNC | vmkit.MS_SYNC, errno.EINVAL),
        (0, 0x8, errno.EINVAL),
        (1, vmkit.MS_SYNC, errno.EINVAL),
    ], ids=["async+sync", "unknown-bit", "unaligned"])
    def test_msync_einval(self, regions: Regions, offset: int, flags: int, err: int) -> None:
        """msync rejects unknown bits, ASYNC|SYNC and unaligned starts (mm/msync.c msync)."""
        a = regions.new(1)
        assert errno_of(lambda: native.msync(a + offset, PAGE, flags)) == err

    def test_hole_is_enomem(self, regions: Regions) -> None:
        """msync over a hole reports ENOMEM (mm/msync.c msync)."""
        a = regions.new(3)
        native.munmap(a + PAGE, PAGE)
        assert errno_of(lambda: native.msync(a, 3 * PAGE, vmkit.MS_SYNC)) == errno.ENOMEM

    def test_invalidate_on_locked_range_is_ebusy(self, regions: Regions) -> None:
        """MS_INVALIDATE on a VM_LOCKED VMA is EBUSY, MS_SYNC is fine (mm/msync.c msync)."""
        a = regions.new(2)
        native.mlock(a, 2 * PAGE)
        native.msync(a, 2 * PAGE, vmkit.MS_SYNC)
        assert errno_of(lambda: native.msync(a, 2 * PAGE, vmkit.MS_INVALIDATE)) == errno.EBUSY


class TestMadvise:
    def test_dontneed_zeroes_private_anonymous(self, regions: Regions) -> None:
        """MADV_DONTNEED zaps private anonymous pages: they read zero (mm/madvise.c madvise_dontneed_free)."""
        a = regions.new(2)
        native.write(a, b"x" * 2 * PAGE)
        native.madvise(a, 2 * PAGE, vmkit.MADV_DONTNEED)
        assert native.mincore(a, 2 * PAGE) == b"\x00\x00"
        assert native.read(a, 2 * PAGE) == bytes(2 * PAGE)

    def test_dontneed_keeps_shared_anonymous(self, regions: Regions) -> None:
        """MADV_DONTNEED on shmem only unmaps: the data stays (mm/madvise.c madvise_dontneed_free)."""
        a = regions.new(1, flags=SHARED_ANON)
        native.write(a, b"kept")
        native.madvise(a, PAGE, vmkit.MADV_DONTNEED)
        assert native.read(a, 4) == b"kept"

    def test_free_keeps_data_without_memory_pressure(self, regions: Regions) -> None:
        """MADV_FREE pages stay readable until reclaim (mm/madvise.c madvise_free_single_vma)."""
        a = regions.new(1)
        native.write(a, b"lazy")
        native.madvise(a, PAGE, vmkit.MADV_FREE)
        assert native.read(a, 4) == b"lazy"

    def test_hole_applies_everywhere_then_enomem(self, regions: Regions) -> None:
        """madvise skips holes, applies to every VMA, then returns ENOMEM (mm/madvise.c madvise_walk_vmas)."""
        a = regions.new(3)
        native.write(a, b"y" * 3 * PAGE)
        native.munmap(a + PAGE, PAGE)
        assert errno_of(lambda: native.madvise(a, 3 * PAGE, vmkit.MADV_DONTNEED)) == errno.ENOMEM
        assert native.read(a, PAGE) == bytes(PAGE)
        assert native.read(a + 2 * PAGE, PAGE) == bytes(PAGE)

    @pytest.mark.parametrize("advice", [5, 6, 7, 26, 27, 99, 104, 200, -1])
    def test_unknown_advice_is_einval(self, regions: Regions, advice: int) -> None:
        """Advice outside the known set is EINVAL (mm/madvise.c madvise_behavior_valid)."""
        a = regions.new(1)
        assert errno_of(lambda: native.madvise(a, PAGE, advice)) == errno.EINVAL

    @pytest.mark.parametrize("advice", [vmkit.MADV_HWPOISON, vmkit.MADV_SOFT_OFFLINE])
    def test_memory_failure_advice_is_einval_here(self, regions: Regions, advice: int) -> None:
        """HWPOISON/SOFT_OFFLINE need CONFIG_MEMORY_FAILURE, unset here (mm/madvise.c madvise_behavior_valid)."""
        a = regions.new(1)
        assert errno_of(lambda: native.madvise(a, PAGE, advice)) == errno.EINVAL

    def test_unaligned_start_einval_and_length_zero_ok(self, regions: Regions) -> None:
        """madvise needs an aligned start; len 0 succeeds (mm/madvise.c do_madvise)."""
        a = regions.new(1)
        assert errno_of(lambda: native.madvise(a + 1, PAGE, vmkit.MADV_NORMAL)) == errno.EINVAL
        native.madvise(a, 0, vmkit.MADV_DONTNEED)

    @pytest.mark.parametrize(("advice", "flag", "undo"), [
        (vmkit.MADV_RANDOM, "rr", vmkit.MADV_NORMAL),
        (vmkit.MADV_SEQUENTIAL, "sr", vmkit.MADV_NORMAL),
        (vmkit.MADV_DONTFORK, "dc", vmkit.MADV_DOFORK),
        (vmkit.MADV_DONTDUMP, "dd", vmkit.MADV_DODUMP),
        (vmkit.MADV_WIPEONFORK, "wf", vmkit.MADV_KEEPONFORK),
        (vmkit.MADV_HUGEPAGE, "hg", vmkit.MADV_NOHUGEPAGE),
        (vmkit.MADV_NOHUGEPAGE, "nh", vmkit.MADV_HUGEPAGE),
        (vmkit.MADV_MERGEABLE, "mg", vmkit.MADV_UNMERGEABLE),
    ], ids=lambda v: v.name if isinstance(v, vmkit.Madv) else v)
    def test_attribute_advice_sets_and_clears_vmflags(self, regions: Regions, advice: int, flag: str,
                                                      undo: int) -> None:
        """Attribute advice toggles a VMA flag shown in smaps (mm/madvise.c madvise_update_vma)."""
        a = regions.new(2)
        native.madvise(a, 2 * PAGE, advice)
        assert flag in vm_flags(SELF, a)  # type: ignore[arg-type]
        native.madvise(a, 2 * PAGE, undo)
        assert flag not in vm_flags(SELF, a)  # type: ignore[arg-type]

    def test_guard_install_blocks_access_without_splitting(self, regions: Regions) -> None:
        """MADV_GUARD_INSTALL makes a page fault without a VMA split (mm/madvise.c madvise_guard_install)."""
        a = regions.new(3)
        native.write(a, b"g" * 3 * PAGE)
        native.madvise(a + PAGE, PAGE, vmkit.MADV_GUARD_INSTALL)
        assert vmas(a, a + 3 * PAGE) == [(a, a + 3 * PAGE, "rw-p")]
        assert "gu" in vm_flags(SELF, a)  # type: ignore[arg-type]
        assert native.mincore(a, 3 * PAGE) == b"\x01\x00\x01"
        assert errno_of(lambda: native.read(a + PAGE, 1)) == errno.EFAULT
        assert native.read(a + 2 * PAGE, 1) == b"g"
        native.madvise(a + PAGE, PAGE, vmkit.MADV_GUARD_REMOVE)
        assert native.read(a + PAGE, PAGE) == bytes(PAGE)

    def test_populate_write_on_read_only_is_einval(self, regions: Regions) -> None:
        """MADV_POPULATE_WRITE needs a writable VMA (mm/madvise.c madvise_populate)."""
        a = regions.new(2, prot=RO)
        assert errno_of(lambda: native.madvise(a, 2 * PAGE, vmkit.MADV_POPULATE_WRITE)) == errno.EINVAL
        native.madvise(a, 2 * PAGE, vmkit.MADV_POPULATE_READ)
        assert native.mincore(a, 2 * PAGE) == b"\x01\x01"

    def test_remove_on_private_anonymous_is_einval(self, regions: Regions) -> None:
        """MADV_REMOVE needs a shared file-backed VMA (mm/madvise.c madvise_remove)."""
        a = regions.new(1)
        assert errno_of(lambda: native.madvise(a, PAGE, vmkit.MADV_REMOVE)) == errno.EINVAL


class TestMincore:
    def test_written_and_read_pages_are_resident(self, regions: Regions) -> None:
        """mincore counts written pages and zero-page reads as resident (mm/mincore.c mincore_pte_range)."""
        a = regions.new(4)
        native.write(a, b"w")
        native.read(a + 2 * PAGE, 1)
        assert native.mincore(a, 4 * PAGE) == b"\x01\x00\x01\x00"

    def test_unaligned_length_rounds_up(self, regions: Regions) -> None:
        """The vector has one byte per page, the length rounded up (mm/mincore.c mincore)."""
        a = regions.new(4)
        assert native.mincore(a, 2 * PAGE + 1) == bytes(3)

    def test_length_zero_returns_empty_even_unmapped(self, regions: Regions) -> None:
        """len 0 returns 0 before any VMA lookup (mm/mincore.c mincore)."""
        a = regions.new(1)
        native.munmap(a, PAGE)
        assert native.mincore(a, 0) == b""

    @pytest.mark.parametrize(("offset", "length", "err"), [
        (1, PAGE, errno.EINVAL), (-PAGE, 3 * PAGE, errno.ENOMEM), (0, (1 << 64) - PAGE, errno.ENOMEM),
    ], ids=["unaligned", "hole", "huge"])
    def test_mincore_errors(self, regions: Regions, offset: int, length: int, err: int) -> None:
        """mincore: unaligned start EINVAL, a hole or beyond TASK_SIZE ENOMEM (mm/mincore.c mincore)."""
        a = regions.new(1)
        native.munmap(a - PAGE, PAGE)
        assert errno_of(lambda: native.mincore(a + offset, length)) == err

    def test_file_mapping_reports_page_cache(self, regions: Regions, memfd: int) -> None:
        """For a file VMA mincore reports page-cache state, touched or not (mm/mincore.c mincore_page)."""
        a = regions.new(4, prot=RO, flags=vmkit.MAP_SHARED, fd=memfd)
        assert native.mincore(a, 4 * PAGE) == b"\x01\x00\x00\x00"

    def test_8gib_prot_none_reservation_in_chunks(self, regions: Regions) -> None:
        """mincore over 8 GiB of PROT_NONE returns 2**21 zero bytes (mm/mincore.c do_mincore, chunked)."""
        a = regions.reserve(8 << 30)
        vec = native.mincore(a, 8 << 30)
        assert len(vec) == 2097152
        assert vec == bytes(2097152)

    def test_chunk_boundary_with_unaligned_tail(self, regions: Regions) -> None:
        """A length just past one 4 GiB chunk gives pages rounded up (mm/mincore.c mincore)."""
        a = regions.reserve(8 << 30)
        assert native.mincore(a, (4 << 30) + PAGE + 1) == bytes((1 << 20) + 2)

    def test_hole_in_a_later_chunk_is_enomem(self, regions: Regions) -> None:
        """A hole beyond the first chunk still gives ENOMEM (mm/mincore.c mincore)."""
        a = regions.reserve(8 << 30)
        native.munmap(a + (5 << 30), PAGE)
        assert errno_of(lambda: native.mincore(a, 8 << 30)) == errno.ENOMEM
        assert len(native.mincore(a, 5 << 30)) == 5 << 18


class TestMlock:
    def test_mlock_populates_and_sets_lo(self, regions: Regions) -> None:
        """mlock populates the range and sets VM_LOCKED (mm/mlock.c do_mlock, mm/gup.c __mm_populate)."""
        a = regions.new(4)
        native.mlock(a, 4 * PAGE)
        assert native.mincore(a, 4 * PAGE) == b"\x01" * 4
        assert "lo" in vm_flags(SELF, a)  # type: ignore[arg-type]
        assert smaps_of(SELF, a)["Locked"] == "16 kB"  # type: ignore[arg-type]
        native.munlock(a, 4 * PAGE)
        assert "lo" not in vm_flags(SELF, a)  # type: ignore[arg-type]

    def test_mlock2_onfault_does_not_populate(self, regions: Regions) -> None:
        """mlock2(MLOCK_ONFAULT) sets lo+lf and skips population (mm/mlock.c do_mlock)."""
        a = regions.new(4)
        native.mlock2(a, 4 * PAGE, vmkit.MLOCK_ONFAULT)
        assert native.mincore(a, 4 * PAGE) == bytes(4)
        assert {"lo", "lf"} <= vm_flags(SELF, a)  # type: ignore[arg-type]
        native.write(a + PAGE, b"z")
        assert smaps_of(SELF, a)["Locked"] == "4 kB"  # type: ignore[arg-type]

    def test_mlock2_flags_zero_is_mlock(self, regions: Regions) -> None:
        """mlock2 with flags 0 behaves as mlock (mm/mlock.c sys_mlock2)."""
        a = regions.new(2)
        native.mlock2(a, 2 * PAGE)
        assert native.mincore(a, 2 * PAGE) == b"\x01\x01"

    def test_mlock2_unknown_flag_is_einval(self, regions: Regions) -> None:
        """mlock2 accepts only MLOCK_ONFAULT (mm/mlock.c sys_mlock2)."""
        a = regions.new(1)
        assert errno_of(lambda: native.mlock2(a, PAGE, 2)) == errno.EINVAL

    def test_unaligned_start_is_rounded_down(self, regions: Regions) -> None:
        """mlock rounds the start down instead of failing (mm/mlock.c do_mlock)."""
        a = regions.new(2)
        native.mlock(a + 100, 10)
        assert vmas(a, a + 2 * PAGE) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "rw-p")]
        assert "lo" in vm_flags(SELF, a)  # type: ignore[arg-type]
        assert "lo" not in vm_flags(SELF, a + PAGE)  # type: ignore[arg-type]

    def test_hole_is_enomem_after_locking_up_to_it(self, regions: Regions) -> None:
        """mlock locks VMAs before a hole, then ENOMEM (mm/mlock.c apply_vma_lock_flags)."""
        a = regions.new(3)
        native.munmap(a + PAGE, PAGE)
        assert errno_of(lambda: native.mlock(a, 3 * PAGE)) == errno.ENOMEM
        assert "lo" in vm_flags(SELF, a)  # type: ignore[arg-type]
        assert "lo" not in vm_flags(SELF, a + 2 * PAGE)  # type: ignore[arg-type]
        assert errno_of(lambda: native.munlock(a, 3 * PAGE)) == errno.ENOMEM

    def test_prot_none_is_enomem_but_stays_locked(self, regions: Regions) -> None:
        """mlock of PROT_NONE fails to populate (ENOMEM) yet leaves VM_LOCKED (mm/gup.c __mm_populate)."""
        a = regions.new(2, prot=NONE)
        assert errno_of(lambda: native.mlock(a, 2 * PAGE)) == errno.ENOMEM
        assert "lo" in vm_flags(SELF, a)  # type: ignore[arg-type]

    def test_length_zero_is_ok(self, regions: Regions) -> None:
        """mlock of 0 bytes succeeds and locks nothing (mm/mlock.c do_mlock)."""
        a = regions.new(1)
        native.mlock(a, 0)
        assert "lo" not in vm_flags(SELF, a)  # type: ignore[arg-type]

    @pytest.mark.parametrize("flags", [0, vmkit.MCL_ONFAULT, 8, vmkit.MCL_CURRENT | 8])
    def test_mlockall_bad_flags_are_einval(self, flags: int) -> None:
        """mlockall rejects 0, MCL_ONFAULT alone and unknown bits before locking (mm/mlock.c sys_mlockall)."""
        assert errno_of(lambda: native.mlockall(flags)) == errno.EINVAL

    def test_mlockall_and_munlockall_in_a_forked_child(self) -> None:
        """MCL_CURRENT locks all but VM_SPECIAL VMAs; MCL_FUTURE locks new maps (mm/mlock.c apply_mlockall_flags)."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            out: dict[str, object] = {}
            try:
                def status() -> dict[str, int]:
                    with open("/proc/self/status") as f:
                        return {k: int(v.split()[0]) for k, _, v in (ln.partition(":") for ln in f)
                                if k in ("VmLck", "VmSize")}
                native.mlockall(vmkit.MCL_CURRENT | vmkit.MCL_ONFAULT)
                special = sum(m.end - m.start for m in parse_maps(native.maps())
                              if m.name in ("[vvar]", "[vvar_vclock]", "[vdso]")) // 1024
                s = status()
                out["current"] = s["VmSize"] - s["VmLck"] == special
                native.munlockall()
                out["after_munlockall"] = status()["VmLck"]
                native.mlockall(vmkit.MCL_FUTURE)
                a = native.mmap(None, 16 * PAGE, RW, PRIVATE_ANON)
                out["future"] = native.mincore(a, 16 * PAGE).hex()
                out["future_lck"] = status()["VmLck"]
                native.munlockall()
                b = native.mmap(None, 16 * PAGE, RW, PRIVATE_ANON)
                out["after"] = native.mincore(b, 16 * PAGE).hex()
                out["after_lck"] = status()["VmLck"]
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out["error"] = repr(e)
            os.write(w, json.dumps(out).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
        os.close(r)
        _, status_ = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status_) == 0
        assert json.loads(data) == {
            "current": True, "after_munlockall": 0, "future": "01" * 16, "future_lck": 64,
            "after": "00" * 16, "after_lck": 0,
        }


class TestMremap:
    def test_grow_in_place_into_free_space(self, regions: Regions) -> None:
        """Growth with free space after the VMA stays in place (mm/mremap.c vma_expandable)."""
        base = regions.reserve(8 * PAGE)
        native.munmap(base + 2 * PAGE, 6 * PAGE)
        a = native.mmap(base, 2 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED)
        native.write(a, b"grow")
        assert native.mremap(a, 2 * PAGE, 4 * PAGE) == a
        assert native.read(a, 4) == b"grow"
        assert vmas(a, a + 8 * PAGE) == [(a, a + 4 * PAGE, "rw-p")]

    def test_shrink_unmaps_the_tail(self, regions: Regions) -> None:
        """A shrink is done in place by unmapping the tail (mm/mremap.c mremap_to / do_vmi_munmap)."""
        a = regions.new(4)
        assert native.mremap(a, 4 * PAGE, PAGE) == a
        assert vmas(a, a + 4 * PAGE) == [(a, a + PAGE, "rw-p")]

    def test_blocked_growth_without_maymove_is_enomem(self, regions: Regions) -> None:
        """Growth blocked by the next VMA fails without MREMAP_MAYMOVE (mm/mremap.c)."""
        a = regions.new(2)
        assert errno_of(lambda: native.mremap(a, 2 * PAGE, 4 * PAGE)) == errno.ENOMEM

    def test_maymove_moves_data_and_unmaps_source(self, regions: Regions) -> None:
        """With MAYMOVE a blocked growth moves the pages (mm/mremap.c move_vma)."""
        a = regions.new(2)
        native.write(a, b"moved")
        b = native.mremap(a, 2 * PAGE, 4 * PAGE, MAYMOVE)
        regions.track(b, 4 * PAGE)
        assert b != a
        assert native.read(b, 5) == b"moved"
        assert vmas(a, a + 2 * PAGE) == []

    def test_fixed_maymove_to_a_free_hole(self, regions: Regions) -> None:
        """MREMAP_FIXED|MAYMOVE moves the pages exactly to new_address (mm/mremap.c mremap_to)."""
        a = regions.new(2)
        dest = regions.reserve(4 * PAGE)
        native.munmap(dest + PAGE, 2 * PAGE)
        native.write(a, b"fixed")
        assert native.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | FIXED, dest + PAGE) == dest + PAGE
        assert native.read(dest + PAGE, 5) == b"fixed"
        assert vmas(dest, dest + 4 * PAGE) == [
            (dest, dest + PAGE, "---p"), (dest + PAGE, dest + 3 * PAGE, "rw-p"),
            (dest + 3 * PAGE, dest + 4 * PAGE, "---p"),
        ]
        assert vmas(a, a + 2 * PAGE) == []

    def test_fixed_maymove_replaces_an_existing_mapping(self, regions: Regions) -> None:
        """MREMAP_FIXED unmaps whatever is at the destination first (mm/mremap.c mremap_to)."""
        a = regions.new(1)
        dest = regions.new(1, prot=RO)
        native.write(a, b"over")
        assert native.mremap(a, PAGE, PAGE, MAYMOVE | FIXED, dest) == dest
        assert vmas(dest, dest + PAGE) == [(dest, dest + PAGE, "rw-p")]
        assert native.read(dest, 4) == b"over"

    def test_dontunmap_leaves_a_zero_source(self, regions: Regions) -> None:
        """MREMAP_DONTUNMAP keeps the private source mapped, now empty (mm/mremap.c move_vma)."""
        a = regions.new(2)
        native.write(a, b"dont")
        b = native.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP)
        regions.track(b, 2 * PAGE)
        assert native.read(b, 4) == b"dont"
        assert native.read(a, 4) == bytes(4)
        assert vmas(a, a + 2 * PAGE) == [(a, a + 2 * PAGE, "rw-p")]

    def test_dontunmap_fixed_lands_at_destination(self, regions: Regions) -> None:
        """DONTUNMAP|FIXED moves to new_address and keeps the source (mm/mremap.c mremap_to)."""
        a = regions.new(1)
        dest = regions.new(1)
        native.write(a, b"both")
        assert native.mremap(a, PAGE, PAGE, MAYMOVE | FIXED | DONTUNMAP, dest) == dest
        assert (native.read(dest, 4), native.read(a, 4)) == (b"both", bytes(4))

    def test_old_size_zero_on_shared_anonymous_aliases(self, regions: Regions) -> None:
        """old_size 0 on a shared mapping makes a second view of the same pages (mm/mremap.c)."""
        a = regions.new(1, flags=SHARED_ANON)
        b = native.mremap(a, 0, PAGE, MAYMOVE)
        regions.track(b, PAGE)
        native.write(a, b"alias")
        assert b != a
        assert native.read(b, 5) == b"alias"

    @pytest.mark.parametrize(("offset", "old", "new", "flags", "err"), [
        (1, PAGE, PAGE, 0, errno.EINVAL),
        (0, PAGE, 0, 0, errno.EINVAL),
        (0, PAGE, PAGE, 0x80, errno.EINVAL),
        (0, PAGE, PAGE, FIXED, errno.EINVAL),
        (0, PAGE, PAGE, DONTUNMAP, errno.EINVAL),
        (0, PAGE, 2 * PAGE, MAYMOVE | DONTUNMAP, errno.EINVAL),
        (0, 0, PAGE, MAYMOVE, errno.EINVAL),
        (0, 4 * PAGE, 8 * PAGE, MAYMOVE, errno.EFAULT),
        (0, PAGE, 1 << 48, MAYMOVE, errno.EINVAL),
    ], ids=["unaligned", "new0", "unknown-flag", "fixed-alone", "dontunmap-alone", "dontunmap-resize",
            "old0-private", "crosses-vma-end", "2^48"])
    def test_mremap_errors(self, regions: Regions, offset: int, old: int, new: int, flags: int,
                           err: int) -> None:
        """mremap parameter and VMA checks (mm/mremap.c SYSCALL_DEFINE5(mremap), vma_to_resize)."""
        a = regions.new(1)
        assert errno_of(lambda: native.mremap(a + offset, old, new, flags)) == err

    def test_unmapped_source_is_efault(self, regions: Regions) -> None:
        """No VMA at old_address is EFAULT (mm/mremap.c vma_to_resize)."""
        a = regions.new(1)
        native.munmap(a, PAGE)
        assert errno_of(lambda: native.mremap(a, PAGE, 2 * PAGE, MAYMOVE)) == errno.EFAULT

    def test_fixed_overlapping_destination_is_einval(self, regions: Regions) -> None:
        """A FIXED destination overlapping the source is EINVAL (mm/mremap.c mremap_to)."""
        a = regions.new(2)
        assert errno_of(lambda: native.mremap(a, 2 * PAGE, 2 * PAGE, MAYMOVE | FIXED, a + PAGE)) == errno.EINVAL


class TestBrk:
    def test_brk_zero_reads_the_break(self) -> None:
        """brk(0) returns the current break, the end of [heap], glibc's sbrk(0) (mm/mmap.c brk)."""
        libc = ctypes.CDLL(None)
        libc.sbrk.restype = ctypes.c_void_p
        libc.sbrk.argtypes = [ctypes.c_ssize_t]
        cur = native.brk(0)
        assert cur == native.brk(0) == libc.sbrk(0)
        heap = [m for m in parse_maps(native.maps()) if m.name == "[heap]"]
        assert heap and heap[-1].end == (cur + PAGE - 1) & ~(PAGE - 1)


class TestReadWriteHelpers:
    def test_round_trip(self, regions: Regions) -> None:
        """read/write go through process_vm_readv/writev on self (mm/process_vm_access.c)."""
        a = regions.new(2)
        native.write(a + PAGE - 3, b"across")
        assert native.read(a + PAGE - 3, 6) == b"across"
        assert native.read(a, 0) == b""

    def test_prot_none_is_efault_not_a_crash(self, regions: Regions) -> None:
        """GUP refuses a PROT_NONE VMA, so read/write raise EFAULT (mm/gup.c check_vma_flags)."""
        a = regions.new(1, prot=NONE)
        assert errno_of(lambda: native.read(a, 8)) == errno.EFAULT
        assert errno_of(lambda: native.write(a, b"x")) == errno.EFAULT

    def test_write_only_page_is_unreadable_through_gup(self, regions: Regions) -> None:
        """A write-only VMA lacks VM_READ: GUP reads EFAULT though CPU loads work (mm/gup.c check_vma_flags)."""
        a = regions.new(1, prot=vmkit.PROT_WRITE)
        native.write(a, b"wo")
        assert vmas(a, a + PAGE) == [(a, a + PAGE, "-w-p")]
        assert errno_of(lambda: native.read(a, 2)) == errno.EFAULT
        assert ctypes.string_at(a, 2) == b"wo"  # a real CPU load: x86 write implies read

    def test_unmapped_is_efault(self, regions: Regions) -> None:
        """An unmapped address is EFAULT from process_vm_readv (mm/process_vm_access.c process_vm_rw_core)."""
        a = regions.new(1)
        native.munmap(a, PAGE)
        assert errno_of(lambda: native.read(a, 1)) == errno.EFAULT
        assert errno_of(lambda: native.write(a, b"x")) == errno.EFAULT

    def test_partial_read_names_the_first_bad_address(self, regions: Regions) -> None:
        """A transfer stops at the first bad page; the helper raises EFAULT naming it (mm/process_vm_access.c)."""
        a = regions.new(2)
        native.mprotect(a + PAGE, PAGE, NONE)
        with pytest.raises(OSError) as e:
            native.read(a + PAGE - 4, 8)
        assert e.value.errno == errno.EFAULT
        assert f"{a + PAGE:#x}" in str(e.value)
        with pytest.raises(OSError) as e:
            native.write(a + PAGE - 4, b"12345678")
        assert e.value.errno == errno.EFAULT
        assert native.read(a + PAGE - 4, 4) == b"1234"

    def test_read_and_write_process_by_pid_on_self(self, regions: Regions) -> None:
        """read_process/write_process on our own pid are read/write (mm/process_vm_access.c)."""
        a = regions.new(1)
        native.write_process(os.getpid(), a, b"self")
        assert native.read_process(os.getpid(), a, 4) == b"self"

    def test_read_and_write_process_on_a_child(self, child: Child) -> None:
        """process_vm_readv/writev reach another process's bytearray (mm/process_vm_access.c)."""
        assert native.read_process(child.pid, child.addr, 10) == b"child-data"
        native.write_process(child.pid, child.addr, b"PARENT")
        assert child.head() == b"PARENTdata" + bytes(6)

    def test_unmapped_address_in_child_is_efault(self, child: Child) -> None:
        """An unmapped remote address is EFAULT (mm/process_vm_access.c process_vm_rw_core)."""
        assert errno_of(lambda: native.read_process(child.pid, 0x1000, 8)) == errno.EFAULT


class TestProcessVm:
    def test_readv_scatter_gather_on_self(self) -> None:
        """Local 10+10 against remote 5+15 copies 20 bytes consecutively (mm/process_vm_access.c)."""
        src = bytearray(b"ABCDEFGHIJKLMNOPQRST" + bytes(12))
        dst = bytearray(32)
        s, d = native.address_of(src), native.address_of(dst)
        assert native.process_vm_readv(os.getpid(), [(d, 10), (d + 16, 10)], [(s, 5), (s + 5, 15)]) == 20
        assert bytes(dst) == b"ABCDEFGHIJ" + bytes(6) + b"KLMNOPQRST" + bytes(6)

    def test_writev_on_self(self) -> None:
        """process_vm_writev copies local bytes into the remote iovecs (mm/process_vm_access.c)."""
        src, dst = bytearray(b"payload"), bytearray(7)
        assert native.process_vm_writev(os.getpid(), [(native.address_of(src), 7)],
                                        [(native.address_of(dst), 7)]) == 7
        assert dst == src

    def test_stops_at_a_hole_inside_one_iovec(self, regions: Regions) -> None:
        """One remote iovec over [p0][p1][hole] copies 8192 bytes (mm/process_vm_access.c process_vm_rw_core)."""
        a = regions.new(3)
        native.munmap(a + 2 * PAGE, PAGE)
        buf = bytearray(3 * PAGE)
        assert native.process_vm_readv(os.getpid(), [(native.address_of(buf), 3 * PAGE)], [(a, 3 * PAGE)]) == 2 * PAGE
        assert errno_of(lambda: native.process_vm_readv(
            os.getpid(), [(native.address_of(buf), PAGE)], [(a + 2 * PAGE, PAGE)])) == errno.EFAULT

    def test_zero_iovecs_copy_nothing(self) -> None:
        """Empty iovecs return 0 without a pid lookup (mm/process_vm_access.c process_vm_rw)."""
        assert native.process_vm_readv(1 << 30, [], []) == 0
        assert native.process_vm_writev(os.getpid(), [], []) == 0

    def test_errors(self) -> None:
        """flags != 0 EINVAL, >1024 iovecs EINVAL, no such pid ESRCH (mm/process_vm_access.c process_vm_rw)."""
        buf = bytearray(8)
        iov = [(native.address_of(buf), 8)]
        assert errno_of(lambda: native.process_vm_readv(os.getpid(), iov, iov, 1)) == errno.EINVAL
        assert errno_of(lambda: native.process_vm_readv(os.getpid(), iov * 1025, iov)) == errno.EINVAL
        with pytest.raises(ProcessLookupError) as e:
            native.process_vm_readv(1 << 30, iov, iov)
        assert e.value.errno == errno.ESRCH

    def test_readv_from_a_child(self, child: Child) -> None:
        """process_vm_readv reads another process's memory (mm/process_vm_access.c process_vm_rw_core)."""
        buf = bytearray(16)
        assert native.process_vm_readv(child.pid, [(native.address_of(buf), 16)], [(child.addr, 16)]) == 16
        assert bytes(buf) == b"child-data" + bytes(6)

    def test_writev_into_a_child(self, child: Child) -> None:
        """process_vm_writev stores into another process (mm/process_vm_access.c process_vm_rw_core)."""
        data = bytearray(b"remote")
        assert native.process_vm_writev(child.pid, [(native.address_of(data), 6)], [(child.addr + 4, 6)]) == 6
        assert child.head() == b"chilremote" + bytes(6)


class TestPidfdProcessMadviseMrelease:
    def test_pidfd_open_self_is_cloexec(self) -> None:
        """pidfd_open returns an O_CLOEXEC pidfd (kernel/pid.c pidfd_create)."""
        fd = native.pidfd_open(os.getpid())
        try:
            assert fd >= 0
            assert not os.get_inheritable(fd)
        finally:
            os.close(fd)

    def test_pidfd_open_errors(self) -> None:
        """No such pid ESRCH; unknown flags EINVAL (kernel/pid.c sys_pidfd_open)."""
        with pytest.raises(ProcessLookupError):
            native.pidfd_open(1 << 30)
        assert errno_of(lambda: native.pidfd_open(os.getpid(), 1)) == errno.EINVAL

    @pytest.mark.parametrize("advice", [vmkit.MADV_COLD, vmkit.MADV_PAGEOUT, vmkit.MADV_WILLNEED])
    def test_self_non_destructive_advice(self, regions: Regions, advice: int) -> None:
        """process_madvise on our own pidfd returns the bytes advised (mm/madvise.c process_madvise)."""
        a = regions.new(4)
        native.write(a, b"c" * 4 * PAGE)
        fd = native.pidfd_open(os.getpid())
        try:
            assert native.process_madvise(fd, [(a, 2 * PAGE), (a + 3 * PAGE, PAGE)], advice) == 3 * PAGE
            assert native.read(a, 4 * PAGE) == b"c" * 4 * PAGE
        finally:
            os.close(fd)

    def test_self_dontneed_zeroes(self, regions: Regions) -> None:
        """Since 6.13 any advice is accepted on the caller's own mm (mm/madvise.c process_madvise)."""
        a = regions.new(4)
        native.write(a, b"d" * 4 * PAGE)
        fd = native.pidfd_open(os.getpid())
        try:
            assert native.process_madvise(fd, [(a, 4 * PAGE)], vmkit.MADV_DONTNEED) == 4 * PAGE
        finally:
            os.close(fd)
        assert native.read(a, 4 * PAGE) == bytes(4 * PAGE)

    def test_pidfd_self_pseudo_fds(self, regions: Regions) -> None:
        """PIDFD_SELF_THREAD(_GROUP) name the caller without a real fd (kernel/pid.c pidfd_get_task)."""
        a = regions.new(1)
        assert native.process_madvise(vmkit.PIDFD_SELF_THREAD, [(a, PAGE)], vmkit.MADV_COLD) == PAGE
        assert native.process_madvise(vmkit.PIDFD_SELF_THREAD_GROUP, [(a, PAGE)], vmkit.MADV_COLD) == PAGE

    def test_self_errors(self, regions: Regions) -> None:
        """flags EINVAL, non-pidfd EBADF, REMOVE on private anon EINVAL, hole ENOMEM (mm/madvise.c process_madvise)."""
        a = regions.new(1)
        fd = native.pidfd_open(os.getpid())
        mfd = native.memfd_create("not-a-pidfd")
        try:
            assert errno_of(lambda: native.process_madvise(fd, [(a, PAGE)], vmkit.MADV_COLD, 1)) == errno.EINVAL
            assert errno_of(lambda: native.process_madvise(mfd, [(a, PAGE)], vmkit.MADV_COLD)) == errno.EBADF
            assert errno_of(lambda: native.process_madvise(fd, [(a, PAGE)], vmkit.MADV_REMOVE)) == errno.EINVAL
            assert errno_of(lambda: native.process_madvise(fd, [(a, PAGE)] * 1025, vmkit.MADV_COLD)) == errno.EINVAL
            native.munmap(a, PAGE)
            assert errno_of(lambda: native.process_madvise(fd, [(a, PAGE)], vmkit.MADV_COLD)) == errno.ENOMEM
        finally:
            os.close(fd)
            os.close(mfd)

    @pytest.mark.parametrize(("advice", "result"), [
        (vmkit.MADV_COLD, PAGE), (vmkit.MADV_PAGEOUT, PAGE), (vmkit.MADV_WILLNEED, PAGE),
        (vmkit.MADV_DONTNEED, errno.EINVAL), (vmkit.MADV_NORMAL, errno.EINVAL),
    ], ids=lambda v: v.name if isinstance(v, vmkit.Madv) else str(v))
    def test_remote_child(self, child: Child, advice: int, result: int) -> None:
        """A remote target accepts only COLD/PAGEOUT/WILLNEED/COLLAPSE (mm/madvise.c process_madvise_remote_valid)."""
        fd = native.pidfd_open(child.pid)
        try:
            iov = [(child.addr & ~(PAGE - 1), PAGE)]
            if result == PAGE:
                assert native.process_madvise(fd, iov, advice) == PAGE
                assert child.head() == b"child-data" + bytes(6)
            else:
                assert errno_of(lambda: native.process_madvise(fd, iov, advice)) == result
        finally:
            os.close(fd)

    def test_mrelease_of_live_processes_is_einval(self, child: Child) -> None:
        """process_mrelease needs a dying target: live self or child is EINVAL (mm/oom_kill.c process_mrelease)."""
        for pid in (os.getpid(), child.pid):
            fd = native.pidfd_open(pid)
            try:
                assert errno_of(lambda: native.process_mrelease(fd)) == errno.EINVAL
                assert errno_of(lambda: native.process_mrelease(fd, 1)) == errno.EINVAL
            finally:
                os.close(fd)

    def test_mrelease_errors(self, child: Child) -> None:
        """Non-pidfd EBADF; a reaped target ESRCH for mrelease and process_madvise (mm/oom_kill.c process_mrelease)."""
        mfd = native.memfd_create("not-a-pidfd")
        fd = native.pidfd_open(child.pid)
        try:
            assert errno_of(lambda: native.process_mrelease(mfd)) == errno.EBADF
            child.popen.send_signal(signal.SIGKILL)
            child.popen.wait()
            assert errno_of(lambda: native.process_mrelease(fd)) == errno.ESRCH
            assert errno_of(lambda: native.process_madvise(fd, [(child.addr & ~(PAGE - 1), PAGE)],
                                                           vmkit.MADV_COLD)) == errno.ESRCH
            with pytest.raises(ProcessLookupError):
                native.read_process(child.pid, child.addr, 1)
        finally:
            os.close(fd)
            os.close(mfd)


class TestMemfd:
    def test_memfd_create_and_map(self, regions: Regions) -> None:
        """memfd_create makes an anonymous shmem file named /memfd:NAME (mm/memfd.c memfd_create)."""
        fd = native.memfd_create("vmkit-name")
        try:
            assert os.get_inheritable(fd)
            os.ftruncate(fd, PAGE)
            a = regions.new(1, flags=vmkit.MAP_SHARED, fd=fd)
            assert [m.name for m in parse_maps(native.maps()) if m.start == a] == ["/memfd:vmkit-name (deleted)"]
        finally:
            os.close(fd)

    def test_cloexec_flag(self) -> None:
        """MFD_CLOEXEC sets close-on-exec on the new fd (mm/memfd.c memfd_create)."""
        fd = native.memfd_create("x", vmkit.MFD_CLOEXEC)
        try:
            assert not os.get_inheritable(fd)
        finally:
            os.close(fd)

    @pytest.mark.parametrize(("name", "flags"), [
        ("x", 0x100), ("x", vmkit.MFD_EXEC | vmkit.MFD_NOEXEC_SEAL), ("n" * 250, 0),
    ], ids=["unknown-flag", "exec+noexec", "name-250"])
    def test_memfd_einval(self, name: str, flags: int) -> None:
        """Unknown flags, EXEC with NOEXEC_SEAL, or a name over 249 bytes are EINVAL (mm/memfd.c memfd_create)."""
        assert errno_of(lambda: native.memfd_create(name, flags)) == errno.EINVAL


class TestAddressOf:
    def test_bytearray(self) -> None:
        """address_of(bytearray) is where its bytes live (Objects/bytearrayobject.c buffer export)."""
        buf = bytearray(b"hello")
        a = native.address_of(buf)
        assert native.read(a, 5) == b"hello"
        native.write(a, b"J")
        assert buf == bytearray(b"Jello")
        assert native.address_of(memoryview(buf)[2:]) == a + 2

    def test_array(self) -> None:
        """address_of(array.array) matches buffer_info() (Modules/arraymodule.c)."""
        arr = array.array("i", [1, 2, 3])
        assert native.address_of(arr) == arr.buffer_info()[0]
        native.write(native.address_of(arr) + 4, (7).to_bytes(4, "little"))
        assert arr.tolist() == [1, 7, 3]

    def test_mmap_object(self) -> None:
        """Python's mmap.mmap(-1, n) is a shared anonymous mapping at a page boundary (mm/shmem.c)."""
        m = pymmap.mmap(-1, PAGE)
        try:
            a = native.address_of(m)
            assert a % PAGE == 0
            line = next(x for x in parse_maps(native.maps()) if x.start <= a < x.end)
            assert (line.perms, line.name) == ("rw-s", "/dev/zero (deleted)")
            native.write(a, b"mm")
            assert m[:2] == b"mm"
        finally:
            m.close()

    def test_ctypes_buffer(self) -> None:
        """address_of(ctypes array) is ctypes.addressof (Modules/_ctypes)."""
        buf = ctypes.create_string_buffer(b"ct", 8)
        assert native.address_of(buf) == ctypes.addressof(buf)
        assert native.read(native.address_of(buf), 2) == b"ct"

    def test_rejections(self) -> None:
        """Read-only or non-contiguous buffers are TypeError; empty ones ValueError (calls.address_of)."""
        with pytest.raises(TypeError):
            native.address_of(b"bytes")
        with pytest.raises(TypeError):
            native.address_of(memoryview(bytearray(8))[::2])
        with pytest.raises(ValueError):
            native.address_of(bytearray())


class TestMapping:
    def test_context_manager_maps_and_unmaps(self) -> None:
        """A Mapping is an mmap until the with block ends, then munmap (mm/vma.c do_vmi_munmap)."""
        with native.Mapping(3 * PAGE) as m:
            a = m.address
            assert a % PAGE == 0 and len(m) == 3 * PAGE
            assert any(x.start <= a and a + 3 * PAGE <= x.end and x.perms == "rw-p"
                       for x in parse_maps(native.maps()))
        assert m.closed
        assert all(x.end <= a or x.start >= a + 3 * PAGE for x in parse_maps(native.maps()))

    def test_fixed_address_and_flags(self, regions: Regions) -> None:
        """Every mmap argument can be given, MAP_FIXED_NOREPLACE included (mm/mmap.c do_mmap)."""
        base = regions.reserve(4 * PAGE)
        native.munmap(base + PAGE, 2 * PAGE)
        m = native.Mapping(2 * PAGE, RO, PRIVATE_ANON | vmkit.MAP_FIXED_NOREPLACE, address=base + PAGE)
        assert m.address == base + PAGE
        assert vmas(base + PAGE, base + 3 * PAGE) == [(base + PAGE, base + 3 * PAGE, "r--p")]
        with pytest.raises(FileExistsError):
            native.Mapping(PAGE, RO, PRIVATE_ANON | vmkit.MAP_FIXED_NOREPLACE, address=base + PAGE)
        m.close()
        assert vmas(base + PAGE, base + 3 * PAGE) == []

    def test_indexing_and_slicing(self) -> None:
        """Item and slice access read and write through process_vm_readv/writev (calls.read/write)."""
        with native.Mapping(PAGE + 100) as m:
            m[0] = 65
            m[1:4] = b"BCD"
            m[-1] = 0x7A
            assert m[0] == 65 and m[0:4] == b"ABCD" and m[-1] == 0x7A
            assert m[0:8:2] == b"AC\x00\x00"
            assert m[PAGE + 99] == 0x7A
            assert m.read(0, 4) == b"ABCD"
            m.write(b"xy", 10)
            assert m[10:12] == b"xy"

    def test_index_and_size_errors(self) -> None:
        """Out-of-range indexes raise IndexError, size-changing slices ValueError (Mapping.__setitem__)."""
        with native.Mapping(PAGE) as m:
            with pytest.raises(IndexError):
                m[PAGE]
            with pytest.raises(IndexError):
                m[-PAGE - 1] = 1
            with pytest.raises(ValueError):
                m[0:4] = b"toolong"
            with pytest.raises(ValueError):
                m.read(0, PAGE + 1)

    def test_protect_none_makes_access_efault(self) -> None:
        """After protect(PROT_NONE) every access is EFAULT, not a crash (mm/gup.c check_vma_flags)."""
        with native.Mapping(2 * PAGE) as m:
            m[0] = 1
            m.protect(NONE, PAGE, PAGE)
            assert m[0] == 1
            for access in (lambda: m[PAGE], lambda: m[PAGE:PAGE + 4], lambda: m.read(PAGE, 1)):
                assert errno_of(access) == errno.EFAULT
            with pytest.raises(OSError) as e:
                m[PAGE] = 2
            assert e.value.errno == errno.EFAULT
            m.protect(NONE)
            assert m.prot == NONE
            with pytest.raises(PermissionError) as e:
                m.buffer
            assert e.value.errno == errno.EACCES

    def test_protect_read_only_refuses_writes(self) -> None:
        """protect(PROT_READ): reads work, writes are EFAULT (mm/mprotect.c mprotect_fixup)."""
        with native.Mapping(PAGE) as m:
            m[0:2] = b"ok"
            m.protect(RO)
            assert m[0:2] == b"ok"
            assert errno_of(lambda: m.write(b"no")) == errno.EFAULT

    def test_protect_unaligned_offset_is_einval(self) -> None:
        """A part of the mapping must start on a page boundary (mm/mprotect.c do_mprotect_pkey)."""
        with native.Mapping(2 * PAGE) as m:
            assert errno_of(lambda: m.protect(RO, 1, PAGE)) == errno.EINVAL

    def test_advise_dontneed_and_residency(self) -> None:
        """advise() is madvise and residency() is mincore over the mapping (mm/madvise.c, mm/mincore.c)."""
        with native.Mapping(4 * PAGE) as m:
            m[PAGE] = 1
            m[3 * PAGE] = 1
            assert m.residency() == b"\x00\x01\x00\x01"
            assert m.residency(PAGE, PAGE) == b"\x01"
            m.advise(vmkit.MADV_DONTNEED)
            assert m.residency() == bytes(4)
            assert m[PAGE] == 0

    def test_lock_and_unlock(self) -> None:
        """lock() is mlock2 (ONFAULT on request) and unlock() munlock (mm/mlock.c)."""
        with native.Mapping(4 * PAGE) as m:
            m.lock(onfault=True)
            assert {"lo", "lf"} <= vm_flags(SELF, m.address)  # type: ignore[arg-type]
            assert m.residency() == bytes(4)
            m.unlock()
            m.lock()
            assert m.residency() == b"\x01" * 4
            assert "lf" not in vm_flags(SELF, m.address)  # type: ignore[arg-type]
            m.unlock()
            assert "lo" not in vm_flags(SELF, m.address)  # type: ignore[arg-type]

    def test_sync_on_a_shared_file(self, memfd: int) -> None:
        """sync() is msync; MS_ASYNC|MS_SYNC is EINVAL (mm/msync.c msync)."""
        with native.Mapping(4 * PAGE, RW, vmkit.MAP_SHARED, memfd) as m:
            assert m[0:4] == b"file"
            m[0:4] = b"FILE"
            m.sync()
            m.sync(vmkit.MS_ASYNC, 0, PAGE)
            assert os.pread(memfd, 4, 0) == b"FILE"
            assert errno_of(lambda: m.sync(vmkit.MS_ASYNC | vmkit.MS_SYNC)) == errno.EINVAL

    def test_remap_grows_and_follows(self) -> None:
        """remap() is mremap(MAYMOVE): the object follows the pages (mm/mremap.c move_vma)."""
        with native.Mapping(PAGE) as m:
            m[0:4] = b"keep"
            new = m.remap(64 * PAGE)
            assert new == m.address and len(m) == 64 * PAGE
            assert m[0:4] == b"keep"
            m[63 * PAGE] = 9
            assert m[63 * PAGE] == 9

    def test_remap_fixed_and_dontunmap(self, regions: Regions) -> None:
        """remap with FIXED moves to new_address; DONTUNMAP leaves the old range behind (mm/mremap.c)."""
        dest = regions.new(2)
        with native.Mapping(2 * PAGE) as m:
            old = m.address
            m[0:3] = b"fix"
            assert m.remap(2 * PAGE, MAYMOVE | FIXED | DONTUNMAP, dest) == dest
            regions.track(old, 2 * PAGE)
            assert m[0:3] == b"fix"
            assert native.read(old, 3) == bytes(3)

    def test_buffer_is_a_live_memoryview(self) -> None:
        """.buffer is a writable memoryview of the pages themselves (Mapping.buffer)."""
        with native.Mapping(256 * PAGE) as m:
            view = m.buffer
            assert (view.format, view.nbytes, view.readonly) == ("B", 256 * PAGE, False)
            view[:] = bytes(range(256)) * 4096
            assert m[PAGE:PAGE + 4] == b"\x00\x01\x02\x03"
            m[5] = 0xFF
            assert view[5] == 0xFF
            assert m.residency() == b"\x01" * 256
            view.release()

    def test_repr(self) -> None:
        """repr shows the range and the protection by name, then 'closed' (Mapping.__repr__)."""
        m = native.Mapping(2 * PAGE)
        a = m.address
        assert repr(m) == f"<vmkit.native.Mapping {a:#x}-{a + 2 * PAGE:#x} <Prot.PROT_READ|PROT_WRITE: 3>>"
        m.close()
        assert repr(m) == "<vmkit.native.Mapping closed <Prot.PROT_READ|PROT_WRITE: 3>>"

    def test_close_is_idempotent_and_closed_mapping_refuses_use(self) -> None:
        """close() unmaps once; later use raises ValueError (Mapping._check_open)."""
        m = native.Mapping(PAGE)
        m.close()
        m.close()
        for use in (lambda: m.address, lambda: m[0], lambda: m.read(), lambda: m.write(b"x"),
                    lambda: m.buffer, lambda: m.protect(RO), lambda: m.advise(vmkit.MADV_NORMAL),
                    lambda: m.lock(), lambda: m.unlock(), lambda: m.sync(), lambda: m.residency(),
                    lambda: m.remap(2 * PAGE)):
            with pytest.raises(ValueError, match="closed"):
                use()

    def test_adopt_wraps_existing_memory(self, regions: Regions) -> None:
        """Mapping.adopt wraps a mapping made elsewhere and unmaps it on close (Mapping.adopt)."""
        a = regions.new(2)
        native.write(a, b"adopted")
        m = native.Mapping.adopt(a, 2 * PAGE)
        assert (m.address, m[0:7]) == (a, b"adopted")
        m.close()
        assert vmas(a, a + 2 * PAGE) == []
