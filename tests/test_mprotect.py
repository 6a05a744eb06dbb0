"""mprotect: protection values, range rules, splitting and merging, file permissions, faults.

machine-facts.md §6, kernel-rules.md §9 (mm/mprotect.c ``do_mprotect_pkey``, ``mprotect_fixup``).
Every expected value below was observed on the 6.18 kernel.
"""

from __future__ import annotations

import errno
import os

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import parse_maps, vma_at, vmas_in

R = vmkit.PROT_READ
W = vmkit.PROT_WRITE
X = vmkit.PROT_EXEC
FIXED = vmkit.MAP_FIXED


def arena(proc: Process, pages: int = 64) -> list[tuple[int, int, str]]:
    """(start, end, perms) of the VMAs in the first ``pages`` pages of the arena."""
    return vmas_in(proc, ARENA, ARENA + pages * PAGE)


def anon(proc: Process, pages: int, prot: int = RW, offset: int = 0, flags: int = PRIVATE_ANON) -> int:
    """A MAP_FIXED anonymous mapping at ARENA + offset pages."""
    return proc.mmap(ARENA + offset * PAGE, pages * PAGE, prot, flags | FIXED)


def make_file(proc: Process, path: str, pages: int, fill: bytes = b"F") -> None:
    """Creates ``path`` holding ``pages`` pages of ``fill``."""
    fd = proc.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    proc.pwrite(fd, fill * (pages * PAGE), 0)
    proc.close(fd)


# --------------------------------------------------------------------------------------------
class TestProtValues:
    @pytest.mark.parametrize(
        "prot, perms",
        [
            (vmkit.PROT_NONE, "---p"),
            (R, "r--p"),
            (W, "-w-p"),
            (X, "--xp"),
            (R | X, "r-xp"),
            (R | W | X, "rwxp"),
            (vmkit.PROT_SEM | R, "r--p"),
        ],
        ids=["NONE", "READ", "WRITE", "EXEC", "READ|EXEC", "RWX", "SEM|READ"],
    )
    def test_valid_prot_changes_the_maps_perms(self, proc: Process, prot: int, perms: str) -> None:
        """READ/WRITE/EXEC/SEM are the valid prot bits; x86 accepts PROT_SEM (mm/mprotect.c do_mprotect_pkey, arch_validate_prot)."""
        a = anon(proc, 2)
        proc.mprotect(a, 2 * PAGE, prot)
        assert arena(proc) == [(a, a + 2 * PAGE, perms)]

    @pytest.mark.parametrize("bit", [0x10, 0x20, 0x40, 0x80, 0x100, 0x200],
                             ids=lambda b: f"{b:#x}")
    def test_unknown_prot_bit_is_einval_and_changes_nothing(self, proc: Process, bit: int) -> None:
        """prot bits outside READ|WRITE|EXEC|SEM (after GROWS*) are EINVAL (mm/mprotect.c do_mprotect_pkey, arch_validate_prot)."""
        a = anon(proc, 2)
        with pytest.raises(OSError) as e:
            proc.mprotect(a, 2 * PAGE, R | bit)
        assert e.value.errno == errno.EINVAL
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    @pytest.mark.parametrize("prot", [vmkit.PROT_GROWSUP | R,
                                      vmkit.PROT_GROWSUP | vmkit.PROT_GROWSDOWN | R],
                             ids=["GROWSUP", "GROWSUP|GROWSDOWN"])
    def test_growsup_is_einval_on_x86(self, proc: Process, prot: int) -> None:
        """PROT_GROWSUP (alone or with GROWSDOWN) is EINVAL on x86 (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 4, flags=PRIVATE_ANON | vmkit.MAP_GROWSDOWN)
        with pytest.raises(OSError) as e:
            proc.mprotect(a + 3 * PAGE, PAGE, prot)
        assert e.value.errno == errno.EINVAL
        assert arena(proc) == [(a, a + 4 * PAGE, "rw-p")]

    def test_growsdown_on_a_plain_vma_is_einval(self, proc: Process) -> None:
        """PROT_GROWSDOWN needs a VM_GROWSDOWN VMA, else EINVAL (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 4)
        with pytest.raises(OSError) as e:
            proc.mprotect(a + 3 * PAGE, PAGE, vmkit.PROT_GROWSDOWN | R)
        assert e.value.errno == errno.EINVAL
        assert arena(proc) == [(a, a + 4 * PAGE, "rw-p")]

    def test_growsdown_extends_the_range_down_to_the_vma_start(self, proc: Process) -> None:
        """PROT_GROWSDOWN moves start down to vma->vm_start: page 3 of 4 changes pages 0-3 (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 4, flags=PRIVATE_ANON | vmkit.MAP_GROWSDOWN)
        proc.mprotect(a + 3 * PAGE, PAGE, vmkit.PROT_GROWSDOWN | R)
        assert arena(proc) == [(a, a + 4 * PAGE, "r--p")]

    def test_without_growsdown_only_the_given_page_of_a_growsdown_vma_changes(self, proc: Process) -> None:
        """Without PROT_GROWSDOWN the range is exact and the VMA splits (mm/mprotect.c do_mprotect_pkey, mm/vma.c vma_modify)."""
        a = anon(proc, 4, flags=PRIVATE_ANON | vmkit.MAP_GROWSDOWN)
        proc.mprotect(a + 3 * PAGE, PAGE, R)
        assert arena(proc) == [(a, a + 3 * PAGE, "rw-p"), (a + 3 * PAGE, a + 4 * PAGE, "r--p")]


# --------------------------------------------------------------------------------------------
class TestRange:
    def test_unaligned_address_is_einval(self, proc: Process) -> None:
        """start must be page-aligned, else EINVAL (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 2)
        with pytest.raises(OSError) as e:
            proc.mprotect(a + 1, PAGE, R)
        assert e.value.errno == errno.EINVAL
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    def test_unaligned_length_rounds_up_to_a_page(self, proc: Process) -> None:
        """len is PAGE_ALIGNed: length 1 changes one whole page (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 3)
        proc.mprotect(a, 1, R)
        assert arena(proc) == [(a, a + PAGE, "r--p"), (a + PAGE, a + 3 * PAGE, "rw-p")]
        proc.mprotect(a, PAGE + 1, vmkit.PROT_NONE)
        assert arena(proc) == [(a, a + 2 * PAGE, "---p"), (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]

    def test_length_zero_is_ok_even_where_nothing_is_mapped(self, proc: Process) -> None:
        """len 0 returns 0 before any VMA lookup (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 2)
        proc.mprotect(a, 0, vmkit.PROT_NONE)
        proc.mprotect(ARENA + 0x100000, 0, R)  # unmapped
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p")]

    def test_middle_page_splits_into_three_and_restoring_merges_back(self, proc: Process) -> None:
        """mprotect of a middle page splits the VMA in 3; restoring the prot merges them into 1 (mm/vma.c vma_modify, vma_merge_existing_range)."""
        a = anon(proc, 3)
        proc.write(a, b"p0")
        proc.write(a + 2 * PAGE, b"p2")
        proc.mprotect(a + PAGE, PAGE, R)
        assert arena(proc) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"),
                               (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]
        proc.mprotect(a + PAGE, PAGE, RW)
        assert arena(proc) == [(a, a + 3 * PAGE, "rw-p")]
        assert proc.read(a, 2) == b"p0" and proc.read(a + 2 * PAGE, 2) == b"p2"

    def test_changing_a_whole_neighbour_merges_with_it(self, proc: Process) -> None:
        """A change that makes a VMA equal to its neighbour merges them (mm/vma.c vma_merge_existing_range)."""
        a = anon(proc, 2)
        anon(proc, 2, prot=R, offset=2)
        assert arena(proc) == [(a, a + 2 * PAGE, "rw-p"), (a + 2 * PAGE, a + 4 * PAGE, "r--p")]
        proc.mprotect(a + 2 * PAGE, 2 * PAGE, RW)
        assert arena(proc) == [(a, a + 4 * PAGE, "rw-p")]

    def test_range_with_a_hole_is_enomem_and_applied_up_to_the_hole(self, proc: Process) -> None:
        """A gap inside the range gives ENOMEM after the VMAs before it were changed (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 4)
        proc.munmap(a + PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.mprotect(a, 4 * PAGE, R)
        assert e.value.errno == errno.ENOMEM
        assert arena(proc) == [(a, a + PAGE, "r--p"), (a + 2 * PAGE, a + 4 * PAGE, "rw-p")]

    def test_range_starting_in_a_hole_is_enomem_and_changes_nothing(self, proc: Process) -> None:
        """Without GROWSDOWN, vma->vm_start > start gives ENOMEM before any change (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 4)
        proc.munmap(a + PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.mprotect(a + PAGE, 3 * PAGE, vmkit.PROT_NONE)
        assert e.value.errno == errno.ENOMEM
        assert arena(proc) == [(a, a + PAGE, "rw-p"), (a + 2 * PAGE, a + 4 * PAGE, "rw-p")]

    def test_range_running_past_the_last_vma_is_enomem_after_changing_it(self, proc: Process) -> None:
        """A range ending beyond the last VMA it covers is ENOMEM, with that VMA changed (mm/mprotect.c do_mprotect_pkey)."""
        a = anon(proc, 2)
        with pytest.raises(OSError) as e:
            proc.mprotect(a, 4 * PAGE, R)
        assert e.value.errno == errno.ENOMEM
        assert arena(proc) == [(a, a + 2 * PAGE, "r--p")]

    def test_unmapped_range_is_enomem(self, proc: Process) -> None:
        """No VMA in the range gives ENOMEM (mm/mprotect.c do_mprotect_pkey)."""
        with pytest.raises(OSError) as e:
            proc.mprotect(ARENA, 4 * PAGE, R)
        assert e.value.errno == errno.ENOMEM
        assert arena(proc) == []

    def test_range_over_several_vmas_changes_them_all(self, proc: Process) -> None:
        """The walk changes every VMA in the range and they then merge (mm/mprotect.c do_mprotect_pkey, mprotect_fixup)."""
        a = anon(proc, 6)
        proc.mprotect(a + PAGE, PAGE, vmkit.PROT_NONE)
        proc.mprotect(a + 3 * PAGE, PAGE, X)
        assert len(arena(proc)) == 5
        proc.mprotect(a, 6 * PAGE, R)
        assert arena(proc) == [(a, a + 6 * PAGE, "r--p")]


# --------------------------------------------------------------------------------------------
class TestFiles:
    def test_write_on_shared_mapping_of_readonly_fd_is_eacces(self, proc: Process, file_path: str) -> None:
        """PROT_WRITE needs VM_MAYWRITE, which a MAP_SHARED O_RDONLY mapping lacks: EACCES (mm/mprotect.c do_mprotect_pkey)."""
        make_file(proc, file_path, 2)
        fd = proc.open(file_path, os.O_RDONLY)
        a = proc.mmap(ARENA, 2 * PAGE, R, vmkit.MAP_SHARED | FIXED, fd, 0)
        with pytest.raises(OSError) as e:
            proc.mprotect(a, 2 * PAGE, RW)
        assert e.value.errno == errno.EACCES
        line = vma_at(proc, a)
        assert line is not None
        assert (line.start, line.end, line.perms, line.name) == (a, a + 2 * PAGE, "r--s", file_path)

    def test_write_on_private_mapping_of_readonly_fd_is_ok_and_stays_private(
            self, proc: Process, file_path: str) -> None:
        """A MAP_PRIVATE file mapping keeps VM_MAYWRITE, so PROT_WRITE is allowed; stores are COW (mm/mprotect.c do_mprotect_pkey)."""
        make_file(proc, file_path, 2)
        fd = proc.open(file_path, os.O_RDONLY)
        a = proc.mmap(ARENA, 2 * PAGE, R, vmkit.MAP_PRIVATE | FIXED, fd, 0)
        proc.mprotect(a, 2 * PAGE, RW)
        line = vma_at(proc, a)
        assert line is not None
        assert (line.start, line.end, line.perms, line.name) == (a, a + 2 * PAGE, "rw-p", file_path)
        proc.write(a, b"mine")
        assert proc.read(a, 6) == b"mineFF"
        assert proc.pread(fd, 6, 0) == b"FFFFFF"

    def test_write_on_shared_mapping_of_rdwr_fd_reaches_the_file(self, proc: Process, file_path: str) -> None:
        """A MAP_SHARED O_RDWR mapping mapped read-only may become writable (mm/mprotect.c do_mprotect_pkey)."""
        make_file(proc, file_path, 1)
        fd = proc.open(file_path, os.O_RDWR)
        a = proc.mmap(ARENA, PAGE, R, vmkit.MAP_SHARED | FIXED, fd, 0)
        proc.mprotect(a, PAGE, RW)
        assert arena(proc) == [(a, a + PAGE, "rw-s")]
        proc.write(a, b"shared")
        assert proc.pread(fd, 6, 0) == b"shared"

    def test_exec_on_shared_ext4_file_mapping_is_ok(self, proc: Process, file_path: str) -> None:
        """PROT_EXEC on a MAP_SHARED file of an exec-mounted fs is allowed (mm/mprotect.c do_mprotect_pkey)."""
        make_file(proc, file_path, 1)
        fd = proc.open(file_path, os.O_RDWR)
        a = proc.mmap(ARENA, PAGE, R, vmkit.MAP_SHARED | FIXED, fd, 0)
        proc.mprotect(a, PAGE, R | X)
        assert arena(proc) == [(a, a + PAGE, "r-xs")]


# --------------------------------------------------------------------------------------------
class TestFaults:
    def test_write_to_read_only_page_is_segv_accerr(self, proc: Process) -> None:
        """A store to a present VMA without VM_WRITE is SIGSEGV/SEGV_ACCERR (arch/x86/mm/fault.c access_error)."""
        a = anon(proc, 2)
        proc.write(a + PAGE, b"before")
        proc.mprotect(a + PAGE, PAGE, R)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.write(a + PAGE + 8, b"x")
        assert (e.value.addr, e.value.code) == (a + PAGE + 8, vmkit.SEGV_ACCERR)
        assert proc.read(a + PAGE, 6) == b"before"
        proc.write(a, b"ok")  # the other page is still writable
        assert proc.read(a, 2) == b"ok"

    def test_read_of_prot_none_page_is_segv_accerr(self, proc: Process) -> None:
        """A load from a PROT_NONE VMA is SIGSEGV/SEGV_ACCERR (arch/x86/mm/fault.c access_error)."""
        a = anon(proc, 2)
        proc.mprotect(a, PAGE, vmkit.PROT_NONE)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(a + 5, 1)
        assert (e.value.addr, e.value.code) == (a + 5, vmkit.SEGV_ACCERR)

    def test_contents_survive_prot_none_and_back(self, proc: Process) -> None:
        """mprotect changes PTE permissions only; the pages and their data stay (mm/mprotect.c change_protection)."""
        a = anon(proc, 2)
        proc.write(a, b"keep")
        proc.mprotect(a, 2 * PAGE, vmkit.PROT_NONE)
        proc.mprotect(a, 2 * PAGE, R)
        assert proc.read(a, 4) == b"keep"

    def test_shared_anon_data_kept_across_prot_changes(self, proc: Process) -> None:
        """Shared anonymous pages keep their data across PROT_NONE and back (mm/mprotect.c change_protection)."""
        a = anon(proc, 1, flags=SHARED_ANON)
        proc.write(a, b"shm")
        proc.mprotect(a, PAGE, vmkit.PROT_NONE)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(a, 1)
        assert e.value.code == vmkit.SEGV_ACCERR
        proc.mprotect(a, PAGE, R)
        assert proc.read(a, 3) == b"shm"

    @pytest.mark.parametrize("prot", [W, X], ids=["WRITE", "EXEC"])
    def test_write_only_and_exec_only_pages_are_readable_on_x86(self, proc: Process, prot: int) -> None:
        """x86 page tables cannot express write-only or (without PKU) exec-only: loads succeed (arch/x86/mm/fault.c access_error)."""
        a = anon(proc, 1)
        proc.write(a, b"z")
        proc.mprotect(a, PAGE, prot)
        assert proc.read(a, 1) == b"z"


# --------------------------------------------------------------------------------------------
class TestMapCountLimit:
    def test_split_at_max_map_count_is_enomem(self, proc: Process) -> None:
        """split_vma fails with ENOMEM when map_count >= max_map_count (65530); a failed 3-way split keeps its first split (mm/vma.c split_vma, vma_modify)."""
        base = sum(1 for m in parse_maps(proc.maps()) if m.name != "[vsyscall]")
        a = anon(proc, 3)
        # Fill with 1-page mappings separated by holes until do_mmap refuses (map_count > max).
        filler = ARENA + 4 * PAGE
        made = 0
        while True:
            try:
                proc.mmap(filler + 2 * made * PAGE, PAGE, R, PRIVATE_ANON | FIXED)
            except OSError as e:
                assert e.errno == errno.ENOMEM
                break
            made += 1
        assert base + 1 + made == 65531
        # Any split is refused; a change of the whole VMA needs no split and works.
        for start, pages in [(a + PAGE, 1), (a, 1), (a + 2 * PAGE, 1)]:
            with pytest.raises(OSError) as e:
                proc.mprotect(start, pages * PAGE, R)
            assert e.value.errno == errno.ENOMEM
        proc.mprotect(a, 3 * PAGE, R)
        proc.mprotect(a, 3 * PAGE, RW)
        # With room for one split only (map_count 65529), the middle page fails half-way: the
        # first split is kept, the two rw-p pieces do not merge.
        proc.munmap(filler, PAGE)
        proc.munmap(filler + 2 * PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.mprotect(a + PAGE, PAGE, R)
        assert e.value.errno == errno.ENOMEM
        assert vmas_in(proc, a, a + 3 * PAGE) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 3 * PAGE, "rw-p")]
        proc.munmap(filler + 4 * PAGE, PAGE)
        proc.mprotect(a + PAGE, PAGE, R)
        assert vmas_in(proc, a, a + 3 * PAGE) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"),
                                                  (a + 2 * PAGE, a + 3 * PAGE, "rw-p")]
