"""msync(2): the flag checks, the walk over VMAs and holes, locked ranges, and write-back visibility.

machine-facts.md §7 (a MAP_SHARED ext4 file unless stated); kernel-rules.md §13
(mm/msync.c ``SYSCALL_DEFINE3(msync)``).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

import vmkit
from vmkit.process import Process

from conftest import PAGE, PRIVATE_ANON, RW
from helpers import vmas_in

O_RDWR_CREAT = os.O_RDWR | os.O_CREAT
MS_ASYNC, MS_SYNC, MS_INVALIDATE = vmkit.MS_ASYNC, vmkit.MS_SYNC, vmkit.MS_INVALIDATE


def shared_file(p: Process, path: str, pages: int = 4, flags: int = vmkit.MAP_SHARED) -> tuple[int, int]:
    """(address, fd): a ``pages``-page mapping of a fresh file of the same size, written through it."""
    fd = p.open(path, O_RDWR_CREAT)
    p.ftruncate(fd, pages * PAGE)
    addr = p.mmap(None, pages * PAGE, RW, flags, fd, 0)
    p.write(addr, b"m" * pages * PAGE)
    return addr, fd


VALID = [MS_ASYNC, MS_SYNC, MS_INVALIDATE, MS_ASYNC | MS_INVALIDATE, MS_SYNC | MS_INVALIDATE, 0]


class TestFlags:
    @pytest.mark.parametrize("flags", VALID, ids=lambda f: str(vmkit.MS(f)))
    def test_valid_flags_on_a_shared_file(self, proc: Process, file_path: str, flags: int) -> None:
        """ASYNC, SYNC, INVALIDATE, their legal combinations and 0 succeed (mm/msync.c)."""
        addr, fd = shared_file(proc, file_path)
        proc.msync(addr, 4 * PAGE, flags)
        assert proc.read(addr, 4 * PAGE) == b"m" * 4 * PAGE
        assert proc.pread(fd, 4 * PAGE, 0) == b"m" * 4 * PAGE

    def test_async_with_sync_is_einval(self, proc: Process, file_path: str) -> None:
        """MS_ASYNC | MS_SYNC -> EINVAL, even with MS_INVALIDATE (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        for flags in (MS_ASYNC | MS_SYNC, MS_ASYNC | MS_SYNC | MS_INVALIDATE):
            with pytest.raises(OSError) as e:
                proc.msync(addr, 4 * PAGE, flags)
            assert e.value.errno == errno.EINVAL

    @pytest.mark.parametrize("bit", [0x8, 0x10, 0x100])
    @pytest.mark.parametrize("base", [0, MS_SYNC], ids=["alone", "with_MS_SYNC"])
    def test_unknown_bits_are_einval(self, proc: Process, file_path: str, bit: int, base: int) -> None:
        """Any bit outside ASYNC|INVALIDATE|SYNC -> EINVAL (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, base | bit)
        assert e.value.errno == errno.EINVAL

    def test_flag_checks_come_before_the_walk(self, proc: Process) -> None:
        """Bad flags on an unmapped range give EINVAL, not ENOMEM: checked before any VMA lookup
        (mm/msync.c)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr, 2 * PAGE)
        for flags in (MS_ASYNC | MS_SYNC, 0x8):
            with pytest.raises(OSError) as e:
                proc.msync(addr, 2 * PAGE, flags)
            assert e.value.errno == errno.EINVAL


class TestRange:
    def test_unaligned_start_is_einval(self, proc: Process, file_path: str) -> None:
        """start not page-aligned -> EINVAL, even with len 0 (mm/msync.c offset_in_page)."""
        addr, _ = shared_file(proc, file_path)
        for length in (PAGE, 0):
            with pytest.raises(OSError) as e:
                proc.msync(addr + 1, length, MS_SYNC)
            assert e.value.errno == errno.EINVAL

    def test_unaligned_length_is_rounded_up(self, proc: Process, file_path: str) -> None:
        """len is rounded up to whole pages; an odd length is fine (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        proc.msync(addr, PAGE + 1, MS_SYNC)
        proc.msync(addr, 1, MS_ASYNC)

    def test_rounded_length_reaching_a_hole_is_enomem(self, proc: Process, file_path: str) -> None:
        """Rounding up can pull the range into a hole: 4 pages + 1 byte over a 4-page mapping with
        nothing after it -> ENOMEM (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        proc.munmap(addr + 3 * PAGE, PAGE)
        proc.msync(addr, 3 * PAGE, MS_SYNC)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 3 * PAGE + 1, MS_SYNC)
        assert e.value.errno == errno.ENOMEM

    def test_zero_length_succeeds_even_unmapped(self, proc: Process) -> None:
        """len 0 returns 0 before the walk (mm/msync.c end == start)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr, 2 * PAGE)
        proc.msync(addr, 0, MS_SYNC)
        proc.msync(addr, 0, MS_INVALIDATE)

    def test_wrapping_range_is_enomem(self, proc: Process, file_path: str) -> None:
        """start + rounded len wrapping past 2**64 -> ENOMEM (mm/msync.c end < start)."""
        addr, _ = shared_file(proc, file_path)
        with pytest.raises(OSError) as e:
            proc.msync(addr, (1 << 64) - PAGE, MS_SYNC)
        assert e.value.errno == errno.ENOMEM

    @pytest.mark.parametrize("flags", [MS_ASYNC, MS_SYNC, MS_INVALIDATE, 0], ids=lambda f: str(vmkit.MS(f)))
    def test_unmapped_range_is_enomem(self, proc: Process, flags: int) -> None:
        """No VMA in the range -> ENOMEM (mm/msync.c: find_vma is NULL or starts past end)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(addr, 2 * PAGE)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 2 * PAGE, flags)
        assert e.value.errno == errno.ENOMEM

    @pytest.mark.parametrize("flags", [MS_ASYNC, MS_SYNC, MS_INVALIDATE, 0], ids=lambda f: str(vmkit.MS(f)))
    def test_range_with_a_hole_is_enomem(self, proc: Process, file_path: str, flags: int) -> None:
        """A hole inside the range -> ENOMEM (mm/msync.c unmapped_error)."""
        addr, _ = shared_file(proc, file_path)
        proc.munmap(addr + PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, flags)
        assert e.value.errno == errno.ENOMEM

    def test_walk_goes_past_a_hole_unless_flags_are_exactly_async(self, proc: Process,
                                                                  file_path: str) -> None:
        """After a hole the walk goes on (only flags == MS_ASYNC stops at once): a locked VMA behind
        the hole turns MS_INVALIDATE into EBUSY, MS_SYNC ends with the remembered ENOMEM (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        proc.munmap(addr + PAGE, PAGE)
        proc.mlock(addr + 2 * PAGE, 2 * PAGE)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, MS_ASYNC | MS_INVALIDATE)
        assert e.value.errno == errno.EBUSY
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, MS_INVALIDATE)
        assert e.value.errno == errno.EBUSY
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, MS_SYNC)
        assert e.value.errno == errno.ENOMEM
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, MS_ASYNC)
        assert e.value.errno == errno.ENOMEM


class TestLocked:
    @pytest.mark.parametrize("flags", [MS_INVALIDATE, MS_ASYNC | MS_INVALIDATE, MS_SYNC | MS_INVALIDATE],
                             ids=lambda f: str(vmkit.MS(f)))
    def test_invalidate_on_an_mlocked_range_is_ebusy(self, proc: Process, file_path: str,
                                                     flags: int) -> None:
        """MS_INVALIDATE on a VM_LOCKED VMA -> EBUSY (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        proc.mlock(addr, 4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 4 * PAGE, flags)
        assert e.value.errno == errno.EBUSY

    @pytest.mark.parametrize("flags", [MS_SYNC, MS_ASYNC, 0], ids=lambda f: str(vmkit.MS(f)))
    def test_sync_on_an_mlocked_range_is_fine(self, proc: Process, file_path: str, flags: int) -> None:
        """Without MS_INVALIDATE a locked range syncs normally (mm/msync.c)."""
        addr, fd = shared_file(proc, file_path)
        proc.mlock(addr, 4 * PAGE)
        proc.msync(addr, 4 * PAGE, flags)
        assert proc.pread(fd, PAGE, 0) == b"m" * PAGE

    def test_invalidate_on_locked_private_anon_is_ebusy(self, proc: Process) -> None:
        """The VM_LOCKED check does not look at the VMA kind: locked private anon -> EBUSY too
        (mm/msync.c)."""
        addr = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 2 * PAGE, MS_INVALIDATE)
        assert e.value.errno == errno.EBUSY

    def test_invalidate_stops_at_the_first_locked_vma(self, proc: Process, file_path: str) -> None:
        """EBUSY only when the range reaches a locked VMA: the unlocked part alone is fine
        (mm/msync.c)."""
        addr, _ = shared_file(proc, file_path)
        proc.mlock(addr + 2 * PAGE, 2 * PAGE)
        proc.msync(addr, 2 * PAGE, MS_INVALIDATE)
        with pytest.raises(OSError) as e:
            proc.msync(addr, 3 * PAGE, MS_INVALIDATE)
        assert e.value.errno == errno.EBUSY


class TestMappingKinds:
    @pytest.mark.parametrize("flags", VALID, ids=lambda f: str(vmkit.MS(f)))
    def test_private_anon_accepts_every_valid_flag(self, proc: Process, flags: int) -> None:
        """Private anonymous memory has nothing to write back; any valid flags succeed (mm/msync.c)."""
        addr = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        proc.write(addr, b"a" * 4 * PAGE)
        proc.msync(addr, 4 * PAGE, flags)
        assert proc.read(addr, 4 * PAGE) == b"a" * 4 * PAGE

    @pytest.mark.parametrize("flags", VALID, ids=lambda f: str(vmkit.MS(f)))
    def test_private_file_accepts_and_never_writes_back(self, proc: Process, file_path: str,
                                                        flags: int) -> None:
        """A private file mapping is never written back: msync succeeds, the file keeps its data
        (mm/msync.c: vfs_fsync_range only for VM_SHARED)."""
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.pwrite(fd, b"F" * 4 * PAGE, 0)
        addr = proc.mmap(None, 4 * PAGE, RW, vmkit.MAP_PRIVATE, fd, 0)
        proc.write(addr, b"p" * 4 * PAGE)
        proc.msync(addr, 4 * PAGE, flags)
        assert proc.read(addr, PAGE) == b"p" * PAGE
        assert proc.pread(fd, 4 * PAGE, 0) == b"F" * 4 * PAGE

    def test_sync_spans_several_vmas(self, proc: Process, file_path: str) -> None:
        """One call walks adjacent VMAs of different kinds (shared file, private anon) (mm/msync.c)."""
        addr = proc.mmap(None, 6 * PAGE, RW, PRIVATE_ANON)
        fd = proc.open(file_path, O_RDWR_CREAT)
        proc.ftruncate(fd, 4 * PAGE)
        assert proc.mmap(addr, 4 * PAGE, RW, vmkit.MAP_SHARED | vmkit.MAP_FIXED, fd, 0) == addr
        proc.mprotect(addr + PAGE, PAGE, vmkit.PROT_READ)
        proc.write(addr + 3 * PAGE, b"z" * 3 * PAGE)
        assert len(vmas_in(proc, addr, addr + 6 * PAGE)) == 4
        for flags in VALID:
            proc.msync(addr, 6 * PAGE, flags)
        assert proc.pread(fd, PAGE, 3 * PAGE) == b"z" * PAGE


class TestVisibility:
    def test_shared_writes_reach_the_file_before_and_after_ms_sync(self, proc: Process,
                                                                  file_path: str) -> None:
        """A shared file mapping and read() share the page cache: a store is visible to pread at once,
        and still after MS_SYNC (mm/filemap.c; mm/msync.c vfs_fsync_range)."""
        addr, fd = shared_file(proc, file_path)
        proc.write(addr + PAGE, b"visible")
        assert proc.pread(fd, 7, PAGE) == b"visible"
        proc.msync(addr, 4 * PAGE, MS_SYNC)
        assert proc.pread(fd, 7, PAGE) == b"visible"
        assert proc.pread(fd, 4 * PAGE, 0) == b"m" * PAGE + b"visible" + b"m" * (3 * PAGE - 7)

    def test_file_writes_show_in_the_mapping_after_invalidate(self, proc: Process, file_path: str) -> None:
        """pwrite to the file is seen through the shared mapping (one page cache); MS_INVALIDATE
        changes nothing there (mm/msync.c)."""
        addr, fd = shared_file(proc, file_path)
        proc.pwrite(fd, b"fromfd", 2 * PAGE)
        assert proc.read(addr + 2 * PAGE, 6) == b"fromfd"
        proc.msync(addr, 4 * PAGE, MS_INVALIDATE)
        assert proc.read(addr + 2 * PAGE, 6) == b"fromfd"

    def test_second_process_sees_the_data_through_its_own_mapping(self, spawn: Callable[[], Process],
                                                                  file_path: str) -> None:
        """Two processes' shared mappings of one file see each other's stores with or without msync
        (mm/filemap.c: one page cache)."""
        a, b = spawn(), spawn()
        addr_a, _ = shared_file(a, file_path)
        fd_b = b.open(file_path, os.O_RDWR)
        addr_b = b.mmap(None, 4 * PAGE, RW, vmkit.MAP_SHARED, fd_b, 0)
        a.write(addr_a + 3 * PAGE, b"hello")
        assert b.read(addr_b + 3 * PAGE, 5) == b"hello"
        a.msync(addr_a, 4 * PAGE, MS_SYNC)
        assert b.read(addr_b + 3 * PAGE, 5) == b"hello"
