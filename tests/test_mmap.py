"""mmap: map types, flags, address placement, merging, errors and their order, file mappings.

machine-facts.md §3, §15; kernel-rules.md §2 (layout), §3 (choosing an address), §4 (checks in
order, mm/mmap.c ``do_mmap``).  Every expected value below was observed on the 6.18 kernel.
Big reservations are PROT_NONE or MAP_NORESERVE and are never touched.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable
from typing import Any

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, ARENA_SIZE, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import kb, parse_maps, smaps_of, vm_flags, vma_at, vmas_in

R = vmkit.PROT_READ
NONE = vmkit.PROT_NONE
FIXED = vmkit.MAP_FIXED
NOREPLACE = vmkit.MAP_FIXED_NOREPLACE
SHARED = vmkit.MAP_SHARED
PRIVATE = vmkit.MAP_PRIVATE
VALIDATE = vmkit.MAP_SHARED_VALIDATE
ANON = vmkit.MAP_ANONYMOUS
NORESERVE = vmkit.MAP_NORESERVE
HUGETLB = vmkit.MAP_HUGETLB
MiB = 1 << 20
GiB = 1 << 30
TiB = 1 << 40
THP = 2 * MiB
#: The stack guard gap: 256 pages (mm/mmap.c stack_guard_gap).
GUARD_GAP = 256 * PAGE
#: Plain anonymous VmFlags of a private read-write mapping.
ANON_RW_FLAGS = {"rd", "wr", "mr", "mw", "me", "ac"}


def errno_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    """The errno of the OSError that ``call(*args)`` raises (fails the test if it does not)."""
    with pytest.raises(OSError) as e:
        call(*args, **kwargs)
    return e.value.errno


def top(proc: Process) -> int:
    """Where a fresh process's first mmap(NULL) ends: the start of [vvar], just below mmap_base."""
    return next(m.start for m in parse_maps(proc.maps()) if m.name == "[vvar]")


def down2m(addr: int) -> int:
    return addr & ~(THP - 1)


def make_file(proc: Process, path: str, data: bytes = b"", size: int | None = None,
              flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Opens (creating) ``path`` in ``proc``, writes ``data``, optionally truncates to ``size``."""
    fd = proc.open(path, flags, 0o600)
    if data:
        proc.pwrite(fd, data, 0)
    if size is not None:
        proc.ftruncate(fd, size)
    return fd


@pytest.fixture(params=["ext4", "tmpfs"])
def any_path(request: pytest.FixtureRequest, file_path: str, shm_path: str) -> str:
    """A fresh path on ext4 (/tmp) or on tmpfs (/dev/shm)."""
    return file_path if request.param == "ext4" else shm_path


# --------------------------------------------------------------------------------------------
class TestMapTypes:
    def test_private_anon_is_zeroed_and_copy_on_write_across_fork(self, proc: Process) -> None:
        """MAP_PRIVATE anonymous memory is zero-filled and private to each process after fork (mm/memory.c do_wp_page)."""
        a = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        assert proc.read(a, 2 * PAGE) == bytes(2 * PAGE)
        proc.write(a, b"parent")
        child = proc.fork()
        child.write(a, b"child!")
        assert proc.read(a, 6) == b"parent"
        assert child.read(a, 6) == b"child!"

    def test_shared_anon_is_shared_across_fork(self, proc: Process) -> None:
        """MAP_SHARED anonymous memory is one shmem object: a fork child's store is visible to the parent (mm/shmem.c shmem_zero_setup)."""
        a = proc.mmap(None, 2 * PAGE, RW, SHARED_ANON)
        assert proc.read(a, 8) == bytes(8)
        child = proc.fork()
        child.write(a + PAGE, b"child!")
        assert proc.read(a + PAGE, 6) == b"child!"

    def test_shared_anon_shows_as_deleted_dev_zero(self, proc: Process) -> None:
        """A shared anonymous mapping is backed by a shmem file named /dev/zero (mm/shmem.c shmem_zero_setup)."""
        a = proc.mmap(None, PAGE, RW, SHARED_ANON)
        line = vma_at(proc, a)
        assert line is not None
        assert (line.start, line.end, line.perms, line.offset, line.name) == (
            a, a + PAGE, "rw-s", 0, "/dev/zero (deleted)")

    @pytest.mark.parametrize(
        "flags",
        [0x00 | ANON, VALIDATE | ANON, VALIDATE | ANON | vmkit.MAP_POPULATE,
         VALIDATE | ANON | vmkit.MAP_SYNC, 0x04 | ANON, 0x05 | ANON, 0x0F | ANON],
        ids=["type0", "SHARED_VALIDATE", "SHARED_VALIDATE|POPULATE", "SHARED_VALIDATE|SYNC",
             "type4", "type5", "type0xf"],
    )
    def test_bad_anonymous_map_types_are_einval(self, proc: Process, flags: int) -> None:
        """Anonymous maps accept only SHARED, PRIVATE and DROPPABLE; SHARED_VALIDATE has no anonymous case (mm/mmap.c do_mmap)."""
        assert errno_of(proc.mmap, None, PAGE, RW, flags) == errno.EINVAL

    def test_droppable_anon_is_noreserve_wipeonfork_dontdump(self, proc: Process) -> None:
        """MAP_DROPPABLE sets VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP and no VM_ACCOUNT (mm/mmap.c do_mmap)."""
        a = proc.mmap(None, PAGE, RW, vmkit.MAP_DROPPABLE | ANON)
        assert vm_flags(proc, a) == {"rd", "wr", "mr", "mw", "me", "nr", "wf", "dd", "dp"}
        assert vma_at(proc, a).perms == "rw-p"  # type: ignore[union-attr]
        assert proc.read(a, 4) == bytes(4)

    @pytest.mark.parametrize("extra", [vmkit.MAP_LOCKED, vmkit.MAP_GROWSDOWN], ids=["LOCKED", "GROWSDOWN"])
    def test_droppable_refuses_locked_and_growsdown(self, proc: Process, extra: int) -> None:
        """A droppable area cannot be locked or a stack (mm/mmap.c do_mmap, case MAP_DROPPABLE)."""
        assert errno_of(proc.mmap, None, PAGE, RW, vmkit.MAP_DROPPABLE | ANON | extra) == errno.EINVAL

    @pytest.mark.parametrize("mtype", [vmkit.MAP_DROPPABLE, VALIDATE | vmkit.MAP_DROPPABLE],
                             ids=["DROPPABLE", "SHARED_VALIDATE|0x08"])
    def test_droppable_file_is_einval(self, proc: Process, any_path: str, mtype: int) -> None:
        """Type 0x08 (and 0x0b) is not a file map type (mm/mmap.c do_mmap, file switch default)."""
        fd = make_file(proc, any_path, size=PAGE)
        assert errno_of(proc.mmap, None, PAGE, RW, mtype, fd) == errno.EINVAL

    def test_shared_validate_file_without_extra_flags(self, proc: Process, any_path: str) -> None:
        """MAP_SHARED_VALIDATE on a file behaves as MAP_SHARED (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        a = proc.mmap(None, PAGE, RW, VALIDATE, fd)
        proc.write(a, b"via-map")
        assert proc.pread(fd, 7, 0) == b"via-map"
        assert vma_at(proc, a).perms == "rw-s"  # type: ignore[union-attr]

    @pytest.mark.parametrize("bit", [0x200000, 0x400000, 0x800000, 0x1000000, 0x2000000], ids=hex)
    def test_shared_validate_unknown_flag_is_eopnotsupp(self, proc: Process, any_path: str, bit: int) -> None:
        """MAP_SHARED_VALIDATE rejects flags outside LEGACY_MAP_MASK (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        assert errno_of(proc.mmap, None, PAGE, RW, VALIDATE | bit, fd) == errno.EOPNOTSUPP

    @pytest.mark.parametrize("bit", [0x200000, 0x2000000], ids=hex)
    def test_plain_shared_ignores_unknown_flags(self, proc: Process, any_path: str, bit: int) -> None:
        """MAP_SHARED silently drops flags outside LEGACY_MAP_MASK (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        a = proc.mmap(None, PAGE, RW, SHARED | bit, fd)
        assert vma_at(proc, a).perms == "rw-s"  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "name",
        ["MAP_POPULATE", "MAP_NORESERVE", "MAP_LOCKED", "MAP_32BIT", "MAP_STACK", "MAP_NONBLOCK",
         "MAP_DENYWRITE", "MAP_EXECUTABLE", "MAP_UNINITIALIZED", "MAP_ABOVE4G"],
    )
    def test_shared_validate_accepts_legacy_flags(self, proc: Process, any_path: str, name: str) -> None:
        """The legacy flags are inside LEGACY_MAP_MASK and pass MAP_SHARED_VALIDATE (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        a = proc.mmap(None, PAGE, RW, VALIDATE | getattr(vmkit, name), fd)
        assert vma_at(proc, a).perms == "rw-s"  # type: ignore[union-attr]

    def test_shared_validate_fixed_noreplace_is_eopnotsupp_on_a_free_range(self, proc: Process,
                                                                           any_path: str) -> None:
        """MAP_FIXED_NOREPLACE is not in LEGACY_MAP_MASK, so MAP_SHARED_VALIDATE refuses it (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        assert errno_of(proc.mmap, ARENA, PAGE, RW, VALIDATE | NOREPLACE, fd) == errno.EOPNOTSUPP
        assert vma_at(proc, ARENA) is None

    def test_shared_validate_fixed_noreplace_overlap_is_eexist_first(self, proc: Process,
                                                                      any_path: str) -> None:
        """The NOREPLACE overlap test (EEXIST) runs before the file flag checks (EOPNOTSUPP) (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        proc.mmap(ARENA, PAGE, RW, PRIVATE_ANON | FIXED)
        assert errno_of(proc.mmap, ARENA, PAGE, RW, VALIDATE | NOREPLACE, fd) == errno.EEXIST


# --------------------------------------------------------------------------------------------
class TestMapSync:
    @pytest.mark.parametrize("mtype", [SHARED, PRIVATE, VALIDATE], ids=["SHARED", "PRIVATE", "SHARED_VALIDATE"])
    def test_map_sync_on_ext4_is_eopnotsupp(self, proc: Process, file_path: str, mtype: int) -> None:
        """ext4's ->mmap refuses VM_SYNC on a non-DAX file, even with plain SHARED or PRIVATE (fs/ext4/file.c ext4_file_mmap)."""
        fd = make_file(proc, file_path, size=PAGE)
        assert errno_of(proc.mmap, None, PAGE, RW, mtype | vmkit.MAP_SYNC, fd) == errno.EOPNOTSUPP

    @pytest.mark.parametrize("mtype", [SHARED, PRIVATE], ids=["SHARED", "PRIVATE"])
    def test_map_sync_on_tmpfs_is_ignored(self, proc: Process, shm_path: str, mtype: int) -> None:
        """tmpfs ignores VM_SYNC with SHARED or PRIVATE (mm/mmap.c do_mmap drops it from LEGACY flags; mm/shmem.c shmem_mmap)."""
        fd = make_file(proc, shm_path, size=PAGE)
        a = proc.mmap(None, PAGE, RW, mtype | vmkit.MAP_SYNC, fd)
        proc.write(a, b"ok")
        assert proc.read(a, 2) == b"ok"

    def test_map_sync_with_shared_validate_on_tmpfs_is_eopnotsupp(self, proc: Process, shm_path: str) -> None:
        """MAP_SYNC is allowed with SHARED_VALIDATE only for FOP_MMAP_SYNC files (DAX) (mm/mmap.c do_mmap)."""
        fd = make_file(proc, shm_path, size=PAGE)
        assert errno_of(proc.mmap, None, PAGE, RW, VALIDATE | vmkit.MAP_SYNC, fd) == errno.EOPNOTSUPP

    @pytest.mark.parametrize("flags", [SHARED_ANON, PRIVATE_ANON], ids=["SHARED", "PRIVATE"])
    def test_map_sync_anonymous_is_ignored(self, proc: Process, flags: int) -> None:
        """Anonymous maps ignore MAP_SYNC (mm/mmap.c do_mmap: the check is in the file branch only)."""
        a = proc.mmap(None, PAGE, RW, flags | vmkit.MAP_SYNC)
        assert proc.read(a, 4) == bytes(4)


# --------------------------------------------------------------------------------------------
class TestFixed:
    def test_fixed_over_existing_gives_zeros_and_merges(self, proc: Process) -> None:
        """MAP_FIXED unmaps what was there; the new range merges with compatible neighbours (mm/vma.c __mmap_region)."""
        proc.mmap(ARENA, 8 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.write(ARENA, b"A" * 8 * PAGE)
        assert proc.mmap(ARENA + 2 * PAGE, 2 * PAGE, RW, PRIVATE_ANON | FIXED) == ARENA + 2 * PAGE
        assert proc.read(ARENA + 2 * PAGE, 2 * PAGE) == bytes(2 * PAGE)
        assert proc.read(ARENA + PAGE, 1) == b"A"
        assert proc.read(ARENA + 4 * PAGE, 1) == b"A"
        assert vmas_in(proc, ARENA, ARENA + ARENA_SIZE) == [(ARENA, ARENA + 8 * PAGE, "rw-p")]

    def test_fixed_with_other_prot_splits_into_three(self, proc: Process) -> None:
        """MAP_FIXED with different flags over the middle of a VMA leaves three VMAs (mm/vma.c __mmap_region)."""
        proc.mmap(ARENA, 8 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.mmap(ARENA + 2 * PAGE, 2 * PAGE, R, PRIVATE_ANON | FIXED)
        assert vmas_in(proc, ARENA, ARENA + ARENA_SIZE) == [
            (ARENA, ARENA + 2 * PAGE, "rw-p"),
            (ARENA + 2 * PAGE, ARENA + 4 * PAGE, "r--p"),
            (ARENA + 4 * PAGE, ARENA + 8 * PAGE, "rw-p"),
        ]

    def test_fixed_file_over_anon_replaces_it(self, proc: Process, file_path: str) -> None:
        """MAP_FIXED of a file over anonymous memory: the file's bytes show, maps names the file (mm/vma.c __mmap_region)."""
        fd = make_file(proc, file_path, b"F" * PAGE)
        proc.mmap(ARENA, 3 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.mmap(ARENA + PAGE, PAGE, R, SHARED | FIXED, fd)
        assert proc.read(ARENA + PAGE, 2) == b"FF"
        lines = [m for m in parse_maps(proc.maps()) if ARENA <= m.start < ARENA + 3 * PAGE]
        assert [(m.start, m.perms, m.name) for m in lines] == [
            (ARENA, "rw-p", ""), (ARENA + PAGE, "r--s", file_path), (ARENA + 2 * PAGE, "rw-p", "")]

    @pytest.mark.parametrize("flag", [FIXED, NOREPLACE], ids=["FIXED", "FIXED_NOREPLACE"])
    @pytest.mark.parametrize("misalign", [1, 0x800, PAGE - 1])
    def test_fixed_unaligned_address_is_einval(self, proc: Process, flag: int, misalign: int) -> None:
        """A MAP_FIXED address must be page-aligned (mm/mmap.c __get_unmapped_area: offset_in_page)."""
        assert errno_of(proc.mmap, ARENA + misalign, PAGE, RW, PRIVATE_ANON | flag) == errno.EINVAL
        assert vma_at(proc, ARENA) is None

    @pytest.mark.parametrize(
        "start, pages",
        [(0, 4), (1, 1), (-1, 2), (3, 2), (-2, 8)],
        ids=["exact", "inside", "overlaps-start", "overlaps-end", "covers"],
    )
    def test_fixed_noreplace_overlap_is_eexist(self, proc: Process, start: int, pages: int) -> None:
        """MAP_FIXED_NOREPLACE fails with EEXIST if any page of the range is mapped (mm/mmap.c do_mmap)."""
        proc.mmap(ARENA + 4 * PAGE, 4 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.write(ARENA + 4 * PAGE, b"keep")
        addr = ARENA + (4 + start) * PAGE
        assert errno_of(proc.mmap, addr, pages * PAGE, RW, PRIVATE_ANON | NOREPLACE) == errno.EEXIST
        assert vmas_in(proc, ARENA, ARENA + ARENA_SIZE) == [(ARENA + 4 * PAGE, ARENA + 8 * PAGE, "rw-p")]
        assert proc.read(ARENA + 4 * PAGE, 4) == b"keep"

    def test_fixed_noreplace_free_range_is_exact_and_merges(self, proc: Process) -> None:
        """MAP_FIXED_NOREPLACE on a free range maps exactly there and merges with an adjacent VMA (mm/mmap.c do_mmap)."""
        proc.mmap(ARENA, 4 * PAGE, RW, PRIVATE_ANON | FIXED)
        assert proc.mmap(ARENA + 4 * PAGE, 2 * PAGE, RW, PRIVATE_ANON | NOREPLACE) == ARENA + 4 * PAGE
        assert vmas_in(proc, ARENA, ARENA + ARENA_SIZE) == [(ARENA, ARENA + 6 * PAGE, "rw-p")]

    def test_fixed_noreplace_ignores_the_stack_guard_gap(self, proc: Process) -> None:
        """The NOREPLACE test is a plain overlap test; the guard gap of a GROWSDOWN VMA does not count (mm/mmap.c do_mmap)."""
        g = ARENA + 512 * PAGE
        proc.mmap(g, 16 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN)
        assert proc.mmap(g - 4 * PAGE, PAGE, RW, PRIVATE_ANON | NOREPLACE) == g - 4 * PAGE


# --------------------------------------------------------------------------------------------
class TestHints:
    def test_free_hint_is_honoured(self, proc: Process) -> None:
        """A hint whose range is free (and clear of guard gaps) is used as is (arch/x86/kernel/sys_x86_64.c arch_get_unmapped_area_topdown)."""
        assert proc.mmap(ARENA, PAGE, RW, PRIVATE_ANON) == ARENA

    def test_unaligned_free_hint_is_rounded_down_and_honoured(self, proc: Process) -> None:
        """The hint is masked to a page boundary before it is tried (mm/mmap.c round_hint_to_min, x86 addr &= PAGE_MASK)."""
        assert proc.mmap(ARENA + 0x10123, PAGE, RW, PRIVATE_ANON) == ARENA + 0x10000

    def test_hint_is_not_thp_aligned(self, proc: Process) -> None:
        """The 2 MiB alignment applies only without a hint: a free 2 MiB hint is used as is (mm/mmap.c __get_unmapped_area)."""
        assert proc.mmap(ARENA + MiB, 2 * MiB, RW, PRIVATE_ANON) == ARENA + MiB

    @pytest.mark.parametrize(
        "hint, length",
        [(ARENA, PAGE), (ARENA - PAGE, 2 * PAGE), (ARENA + 5, PAGE), (0x100, PAGE),
         (0x800000000000, PAGE), (0x7FFFFFFFF000 - PAGE, 2 * PAGE)],
        ids=["occupied", "partly-occupied", "unaligned-in-occupied-page", "below-one-page",
             "above-TASK_SIZE", "crossing-TASK_SIZE"],
    )
    def test_unusable_hint_falls_back_to_top_down(self, proc: Process, hint: int, length: int) -> None:
        """A hint that cannot be used is ignored and the ordinary top-down search runs (arch_get_unmapped_area_topdown, round_hint_to_min)."""
        proc.mmap(ARENA, PAGE, RW, PRIVATE_ANON | FIXED)
        first = proc.mmap(None, PAGE, RW, PRIVATE_ANON)
        assert first == top(proc) - PAGE
        assert proc.mmap(hint, length, RW, PRIVATE_ANON) == first - length

    @pytest.mark.parametrize("hint", [0x1000, 0x5000, 0xF000, 0xFFFF, 0x10000, 0x10FFF], ids=hex)
    def test_low_hint_is_raised_to_mmap_min_addr(self, proc: Process, hint: int) -> None:
        """A nonzero hint below mmap_min_addr (max(vm.mmap_min_addr 4096, CONFIG_LSM_MMAP_MIN_ADDR 65536)) becomes 0x10000 (mm/mmap.c round_hint_to_min)."""
        assert proc.mmap(hint, PAGE, RW, PRIVATE_ANON) == 0x10000


# --------------------------------------------------------------------------------------------
class TestPlacement:
    def test_first_mapping_ends_at_the_vdso_and_later_ones_stack_downwards(self, proc: Process) -> None:
        """mmap(NULL) takes the highest free gap below mmap_base, top-down; adjacent equal VMAs merge (mm/mmap.c unmapped_area_topdown)."""
        t = top(proc)
        assert t == 0x7FFFF7FF7000
        a = proc.mmap(None, PAGE, RW, PRIVATE_ANON)
        b = proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON)
        c = proc.mmap(None, PAGE, RW, PRIVATE_ANON)
        assert (a, b, c) == (t - PAGE, t - 4 * PAGE, t - 5 * PAGE)
        assert vmas_in(proc, t - 5 * PAGE, t) == [(t - 5 * PAGE, t, "rw-p")]

    def test_a_freed_hole_is_reused_highest_first(self, proc: Process) -> None:
        """The search returns the top of the highest gap that is big enough (mm/mmap.c unmapped_area_topdown)."""
        t = top(proc)
        a = proc.mmap(None, 8 * PAGE, RW, PRIVATE_ANON)
        proc.mmap(None, 8 * PAGE, RW, PRIVATE_ANON)
        proc.munmap(a + 2 * PAGE, 2 * PAGE)  # hole of 2 pages at t-6..t-4
        proc.munmap(a - 6 * PAGE, 3 * PAGE)  # hole of 3 pages at t-14..t-11
        assert proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON) == t - 14 * PAGE
        assert proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON) == t - 6 * PAGE
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) == t - 17 * PAGE

    def test_thp_alignment_of_anonymous_lengths_that_are_2mib_multiples(self, proc: Process) -> None:
        """Anonymous mmap(NULL) of a 2 MiB multiple lands on the highest 2 MiB boundary that fits; 2 MiB + 4 KiB does not (mm/huge_memory.c __thp_get_unmapped_area)."""
        t = top(proc)
        got = [proc.mmap(None, n, RW, PRIVATE_ANON)
               for n in (PAGE, 3 * PAGE, 2 * MiB, 4 * MiB, 2 * MiB + PAGE, 6 * MiB, PAGE)]
        a3 = down2m(t - 4 * PAGE - 2 * MiB)
        a5 = a3 - 4 * MiB - (2 * MiB + PAGE)
        assert got == [t - PAGE, t - 4 * PAGE, a3, a3 - 4 * MiB, a5, down2m(a5 - 6 * MiB), t - 5 * PAGE]
        assert (a3, a5) == (0x7FFFF7C00000, 0x7FFFF75FF000)
        # the 2 MiB + 4 KiB mapping fits exactly under the 4 MiB one and they merge
        assert vmas_in(proc, a5, a3 + 2 * MiB) == [(a5, a3 + 2 * MiB, "rw-p")]

    def test_thp_alignment_also_for_prot_none_and_map_stack(self, proc: Process) -> None:
        """The 2 MiB alignment depends on length and hint only, not on prot or VM_NOHUGEPAGE (mm/mmap.c __get_unmapped_area)."""
        t = top(proc)
        a = proc.mmap(None, 2 * MiB, NONE, PRIVATE_ANON | NORESERVE)
        b = proc.mmap(None, 2 * MiB, RW, PRIVATE_ANON | vmkit.MAP_STACK)
        assert (a, b) == (down2m(t - 2 * MiB), down2m(t - 2 * MiB) - 2 * MiB)

    def test_shared_anonymous_is_not_thp_aligned(self, proc: Process) -> None:
        """Shared anonymous maps go through shmem_get_unmapped_area, which does not align with shmem_enabled=never (mm/shmem.c)."""
        t = top(proc)
        a = proc.mmap(None, PAGE, RW, SHARED_ANON)
        b = proc.mmap(None, 2 * MiB, RW, SHARED_ANON)
        assert (a, b) == (t - PAGE, t - PAGE - 2 * MiB)
        assert b % THP != 0

    def test_thp_search_skips_a_gap_that_holds_len_but_not_len_plus_2mib(self, proc: Process) -> None:
        """The aligned search asks for len + 2 MiB, so a 3 MiB gap is passed over for a 2 MiB map (mm/huge_memory.c __thp_get_unmapped_area)."""
        t = top(proc)
        proc.mmap(t - 16 * PAGE, 16 * PAGE, RW, PRIVATE_ANON | FIXED)
        low = t - 16 * PAGE - 3 * MiB - PAGE
        proc.mmap(low, PAGE, RW, PRIVATE_ANON | FIXED)
        assert proc.mmap(None, 2 * MiB, RW, PRIVATE_ANON) == down2m(low - 2 * MiB)
        # an ordinary length still uses the top of the 3 MiB gap
        assert proc.mmap(None, 3 * PAGE, RW, PRIVATE_ANON) == t - 19 * PAGE

    def test_top_down_search_leaves_the_guard_gap_below_a_growsdown_vma(self, proc: Process) -> None:
        """A gap directly below a GROWSDOWN VMA loses its top stack_guard_gap (256 pages) (mm/mmap.c unmapped_area_topdown, vm_start_gap)."""
        t = top(proc)
        g = proc.mmap(t - 16 * PAGE, 16 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN)
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) == g - GUARD_GAP - PAGE

    @pytest.mark.parametrize(
        "below, pages, honoured",
        [(4, 1, False), (255, 1, False), (256, 1, False), (257, 1, True), (300, 1, True),
         (258, 2, True), (257, 2, False)],
    )
    def test_hint_must_end_guard_gap_below_a_growsdown_vma(self, proc: Process, below: int, pages: int,
                                                            honoured: bool) -> None:
        """A hint is accepted iff addr + len <= vm_start_gap(next) = next->vm_start - 256 pages for GROWSDOWN (arch_get_unmapped_area_topdown)."""
        g = ARENA + 512 * PAGE
        proc.mmap(g, 16 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN)
        hint = g - below * PAGE
        got = proc.mmap(hint, pages * PAGE, RW, PRIVATE_ANON)
        assert got == (hint if honoured else top(proc) - pages * PAGE)

    def test_hint_right_below_a_plain_vma_or_right_above_a_growsdown_vma_is_honoured(self, proc: Process) -> None:
        """Only GROWSDOWN VMAs have a start gap, and x86 checks no end gap for hints (include/linux/mm.h vm_start_gap)."""
        g = ARENA + 512 * PAGE
        n = ARENA + 4096 * PAGE
        proc.mmap(g, 16 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN)
        proc.mmap(n, 16 * PAGE, RW, PRIVATE_ANON | FIXED)
        assert proc.mmap(n - PAGE, PAGE, R, PRIVATE_ANON) == n - PAGE
        assert proc.mmap(g + 16 * PAGE, PAGE, R, PRIVATE_ANON) == g + 16 * PAGE


# --------------------------------------------------------------------------------------------
class TestMerging:
    @pytest.mark.parametrize(
        "first, second, merged",
        [
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON), True),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | vmkit.MAP_POPULATE), True),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | 0x200000), True),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | vmkit.MAP_32BIT), True),
            ((RW, vmkit.MAP_DROPPABLE | ANON), (RW, vmkit.MAP_DROPPABLE | ANON), True),
            ((RW, PRIVATE_ANON), (R, PRIVATE_ANON), False),
            ((RW, PRIVATE_ANON), (RW | vmkit.PROT_EXEC, PRIVATE_ANON), False),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | NORESERVE), False),
            ((R, PRIVATE_ANON), (R, PRIVATE_ANON | NORESERVE), False),
            ((NONE, PRIVATE_ANON), (NONE, PRIVATE_ANON | NORESERVE), False),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | vmkit.MAP_STACK), False),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | vmkit.MAP_LOCKED), False),
            ((RW, PRIVATE_ANON), (RW, PRIVATE_ANON | vmkit.MAP_GROWSDOWN), False),
            ((RW, PRIVATE_ANON), (RW, vmkit.MAP_DROPPABLE | ANON), False),
            ((RW, PRIVATE_ANON), (RW, SHARED_ANON), False),
            ((RW, SHARED_ANON), (RW, SHARED_ANON), False),
        ],
        ids=["same", "POPULATE", "unknown-bit", "32BIT-ignored-with-FIXED", "DROPPABLE-pair",
             "prot", "exec", "NORESERVE", "READ+NORESERVE", "NONE+NORESERVE", "STACK", "LOCKED",
             "GROWSDOWN", "DROPPABLE", "private-vs-shared", "two-shared"],
    )
    @pytest.mark.parametrize("order", ["second-above", "second-below"])
    def test_adjacent_anonymous_mappings_merge_iff_flags_match(self, proc: Process, first: tuple[int, int],
                                                               second: tuple[int, int], merged: bool,
                                                               order: str) -> None:
        """A new range merges with a neighbour only with equal vm_flags, same file and linear pgoff (mm/vma.c is_mergeable_vma)."""
        lo, hi = (first, second) if order == "second-above" else (second, first)
        proc.mmap(ARENA, PAGE, lo[0], lo[1] | FIXED)
        proc.mmap(ARENA + PAGE, PAGE, hi[0], hi[1] | FIXED)
        assert len(vmas_in(proc, ARENA, ARENA + 2 * PAGE)) == (1 if merged else 2)

    def test_ignored_flags_do_not_change_the_vma(self, proc: Process) -> None:
        """MAP_UNINITIALIZED, MAP_DENYWRITE, MAP_EXECUTABLE and MAP_NONBLOCK are ignored: zeroed memory, plain flags, merge (mm/mmap.c calc_vm_flag_bits)."""
        t = top(proc)
        proc.mmap(None, PAGE, RW, PRIVATE_ANON)
        for flag in (vmkit.MAP_UNINITIALIZED, vmkit.MAP_DENYWRITE, vmkit.MAP_EXECUTABLE, vmkit.MAP_NONBLOCK):
            a = proc.mmap(None, PAGE, RW, PRIVATE_ANON | flag)
            assert proc.read(a, 8) == bytes(8)
            assert vm_flags(proc, a) == ANON_RW_FLAGS
        assert vmas_in(proc, t - 5 * PAGE, t) == [(t - 5 * PAGE, t, "rw-p")]


# --------------------------------------------------------------------------------------------
class TestFlags:
    def test_map_32bit_is_bottom_up_from_1gib(self, proc: Process) -> None:
        """MAP_32BIT searches bottom-up in [1 GiB, 2 GiB) (no randomisation with ASLR off) (arch/x86/kernel/sys_x86_64.c find_start_end)."""
        a = proc.mmap(None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_32BIT)
        b = proc.mmap(None, 2 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_32BIT)
        c = proc.mmap(None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_32BIT | vmkit.MAP_ABOVE4G)
        assert (a, b, c) == (0x40000000, 0x40001000, 0x40003000)
        assert vmas_in(proc, 0, 1 << 32)[-1] == (0x40000000, 0x40004000, "rw-p")

    def test_map_above4g_alone_is_an_ordinary_top_down_address(self, proc: Process) -> None:
        """MAP_ABOVE4G only raises the low limit of the search to 4 GiB (arch/x86/kernel/sys_x86_64.c)."""
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_ABOVE4G) == top(proc) - PAGE

    def test_growsdown_private_anon_grows_on_access_below(self, proc: Process) -> None:
        """MAP_GROWSDOWN sets VM_GROWSDOWN; a fault below the start extends the VMA to that page (mm/mmap.c expand_downwards)."""
        g = ARENA + 512 * PAGE
        assert proc.mmap(g, 4 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN) == g
        assert vm_flags(proc, g) == ANON_RW_FLAGS | {"gd"}
        proc.write(g - PAGE, b"x")
        assert vmas_in(proc, ARENA, ARENA + ARENA_SIZE) == [(g - PAGE, g + 4 * PAGE, "rw-p")]
        assert proc.read(g - 10 * PAGE, 1) == b"\0"
        assert vmas_in(proc, ARENA, ARENA + ARENA_SIZE) == [(g - 10 * PAGE, g + 4 * PAGE, "rw-p")]

    def test_growsdown_growth_stops_a_guard_gap_above_an_accessible_vma(self, proc: Process) -> None:
        """Stack growth fails (SIGSEGV) if the new start would be within stack_guard_gap of an accessible prev (mm/mmap.c acct_stack_growth/expand_downwards)."""
        g = ARENA + 512 * PAGE
        proc.mmap(g, 4 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_GROWSDOWN)
        proc.mmap(g - GUARD_GAP - PAGE, PAGE, R, PRIVATE_ANON | FIXED)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.write(g - PAGE, b"x")
        assert (e.value.addr, e.value.code) == (g - PAGE, vmkit.SEGV_MAPERR)
        assert vma_at(proc, g - PAGE) is None

    def test_growsdown_shared_anon_is_einval(self, proc: Process) -> None:
        """A shared anonymous map cannot grow down (mm/mmap.c do_mmap)."""
        assert errno_of(proc.mmap, None, PAGE, RW, SHARED_ANON | vmkit.MAP_GROWSDOWN) == errno.EINVAL

    @pytest.mark.parametrize("mtype", [PRIVATE, SHARED, VALIDATE], ids=["PRIVATE", "SHARED", "SHARED_VALIDATE"])
    def test_growsdown_file_is_einval(self, proc: Process, any_path: str, mtype: int) -> None:
        """A file map cannot carry VM_GROWSDOWN (mm/mmap.c do_mmap)."""
        fd = make_file(proc, any_path, size=PAGE)
        assert errno_of(proc.mmap, None, PAGE, RW, mtype | vmkit.MAP_GROWSDOWN, fd) == errno.EINVAL

    def test_map_stack_sets_nohugepage(self, proc: Process) -> None:
        """MAP_STACK becomes VM_NOHUGEPAGE (mm/mmap.c calc_vm_flag_bits)."""
        a = proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_STACK)
        assert vm_flags(proc, a) == ANON_RW_FLAGS | {"nh"}

    def test_map_stack_does_not_merge_with_plain_neighbours(self, proc: Process) -> None:
        """VM_NOHUGEPAGE makes the flags differ, so a MAP_STACK VMA stays separate (mm/vma.c is_mergeable_vma)."""
        proc.mmap(ARENA, 4 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.mmap(ARENA + 4 * PAGE, 4 * PAGE, RW, PRIVATE_ANON | FIXED | vmkit.MAP_STACK)
        proc.mmap(ARENA + 8 * PAGE, 4 * PAGE, RW, PRIVATE_ANON | FIXED)
        assert [v[:2] for v in vmas_in(proc, ARENA, ARENA + ARENA_SIZE)] == [
            (ARENA, ARENA + 4 * PAGE), (ARENA + 4 * PAGE, ARENA + 8 * PAGE), (ARENA + 8 * PAGE, ARENA + 12 * PAGE)]


# --------------------------------------------------------------------------------------------
class TestHugetlb:
    @pytest.mark.parametrize("size", [0, vmkit.MAP_HUGE_2MB, vmkit.MAP_HUGE_1GB], ids=["default", "2MB", "1GB"])
    @pytest.mark.parametrize("flags", [PRIVATE_ANON, SHARED_ANON], ids=["private", "shared"])
    def test_empty_pool_is_enomem(self, proc: Process, flags: int, size: int) -> None:
        """With no huge pages reserved the reservation fails (mm/hugetlb.c hugetlb_reserve_pages)."""
        assert errno_of(proc.mmap, None, 2 * MiB, RW, flags | HUGETLB | size) == errno.ENOMEM

    @pytest.mark.parametrize("size", [vmkit.MAP_HUGE_16KB, vmkit.MAP_HUGE_64KB], ids=["16KB", "64KB"])
    @pytest.mark.parametrize("flags", [PRIVATE_ANON, SHARED_ANON], ids=["private", "shared"])
    def test_unsupported_size_is_einval(self, proc: Process, flags: int, size: int) -> None:
        """x86 has no 16 KiB or 64 KiB huge pages (mm/mmap.c ksys_mmap_pgoff: hstate_sizelog)."""
        assert errno_of(proc.mmap, None, 2 * MiB, RW, flags | HUGETLB | size) == errno.EINVAL

    @pytest.mark.parametrize("flags", [PRIVATE_ANON, SHARED_ANON], ids=["private", "shared"])
    def test_noreserve_maps_and_first_touch_is_sigbus(self, proc: Process, flags: int) -> None:
        """MAP_NORESERVE skips the reservation; the fault then finds no page and raises SIGBUS (mm/hugetlb.c hugetlb_no_page)."""
        a = proc.mmap(None, 2 * MiB, RW, flags | HUGETLB | NORESERVE)
        assert a % THP == 0
        line = vma_at(proc, a)
        assert line is not None
        assert (line.end - line.start, line.name) == (2 * MiB, "/anon_hugepage (deleted)")
        assert {"ht", "de"} <= vm_flags(proc, a)
        with pytest.raises(vmkit.BusError) as e:
            proc.read(a, 1)
        assert (e.value.addr, e.value.code) == (a, vmkit.BUS_ADRERR)

    @pytest.mark.parametrize("mtype", [PRIVATE, SHARED], ids=["PRIVATE", "SHARED"])
    def test_hugetlb_on_an_ext4_fd_is_einval(self, proc: Process, file_path: str, mtype: int) -> None:
        """MAP_HUGETLB with a file requires a hugetlbfs file (mm/mmap.c ksys_mmap_pgoff)."""
        fd = make_file(proc, file_path, size=2 * MiB)
        assert errno_of(proc.mmap, None, 2 * MiB, RW, mtype | HUGETLB, fd) == errno.EINVAL


# --------------------------------------------------------------------------------------------
class TestLockedAndPopulate:
    def test_map_locked_populates_and_counts_in_vmlck(self, proc: Process) -> None:
        """MAP_LOCKED sets VM_LOCKED and populates the range; VmLck grows (mm/mmap.c do_mmap, mm/gup.c __mm_populate)."""
        assert kb(proc.status()["VmLck"]) == 0
        a = proc.mmap(None, 16 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        assert kb(proc.status()["VmLck"]) == 64
        assert proc.mincore(a, 16 * PAGE) == b"\1" * 16
        assert vm_flags(proc, a) == ANON_RW_FLAGS | {"lo"}
        assert (smaps_of(proc, a)["Rss"], smaps_of(proc, a)["Locked"]) == ("64 kB", "64 kB")

    def test_root_bypasses_rlimit_memlock_with_map_locked(self, proc: Process) -> None:
        """CAP_IPC_LOCK bypasses RLIMIT_MEMLOCK and can_do_mlock (mm/mlock.c can_do_mlock, mm/mmap.c mlock_future_ok)."""
        proc.setrlimit(resource.RLIMIT_MEMLOCK, (0, proc.getrlimit(resource.RLIMIT_MEMLOCK)[1]))
        a = proc.mmap(None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        b = proc.mmap(None, 16 * MiB, NONE, PRIVATE_ANON | vmkit.MAP_LOCKED)  # PROT_NONE: not populated
        assert "lo" in vm_flags(proc, a)
        assert kb(proc.status()["VmLck"]) == 4 + 16 * 1024
        assert proc.mincore(b, 4 * PAGE) == bytes(4)

    def test_unprivileged_map_locked_over_rlimit_memlock_is_eagain(self, proc: Process) -> None:
        """Without CAP_IPC_LOCK, a locked mapping past RLIMIT_MEMLOCK fails with EAGAIN (mm/mmap.c mlock_future_ok)."""
        hard = proc.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        proc.setrlimit(resource.RLIMIT_MEMLOCK, (1 * MiB, hard))
        proc.drop_privileges()
        a = proc.mmap(None, 1 * MiB, RW, PRIVATE_ANON | vmkit.MAP_LOCKED)
        assert kb(proc.status()["VmLck"]) == 1024
        assert errno_of(proc.mmap, None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED) == errno.EAGAIN
        proc.munmap(a, PAGE)
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED) > 0

    def test_unprivileged_map_locked_with_zero_limit_is_eperm(self, proc: Process) -> None:
        """RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK: can_do_mlock fails, MAP_LOCKED gives EPERM (mm/mmap.c do_mmap)."""
        hard = proc.getrlimit(resource.RLIMIT_MEMLOCK)[1]
        proc.setrlimit(resource.RLIMIT_MEMLOCK, (0, hard))
        proc.drop_privileges()
        assert errno_of(proc.mmap, None, PAGE, RW, PRIVATE_ANON | vmkit.MAP_LOCKED) == errno.EPERM
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) > 0

    @pytest.mark.parametrize(
        "prot, flags, resident, rss",
        [
            (RW, PRIVATE_ANON | vmkit.MAP_POPULATE, 1, "64 kB"),
            (RW, PRIVATE_ANON | vmkit.MAP_POPULATE | vmkit.MAP_NONBLOCK, 0, "0 kB"),
            (RW, PRIVATE_ANON | vmkit.MAP_NONBLOCK, 0, "0 kB"),
            (NONE, PRIVATE_ANON | vmkit.MAP_POPULATE, 0, "0 kB"),
            (R, PRIVATE_ANON | vmkit.MAP_POPULATE, 1, "0 kB"),
            (RW, SHARED_ANON | vmkit.MAP_POPULATE, 1, "64 kB"),
        ],
        ids=["POPULATE", "POPULATE|NONBLOCK", "NONBLOCK", "POPULATE-PROT_NONE", "POPULATE-READ-zero-page",
             "POPULATE-shared"],
    )
    def test_populate(self, proc: Process, prot: int, flags: int, resident: int, rss: str) -> None:
        """MAP_POPULATE without MAP_NONBLOCK faults the range in, errors ignored; a read-only populate maps the zero page (mm/gup.c __mm_populate)."""
        a = proc.mmap(None, 16 * PAGE, prot, flags)
        assert proc.mincore(a, 16 * PAGE) == bytes([resident]) * 16
        assert smaps_of(proc, a)["Rss"] == rss

    def test_populate_private_file(self, proc: Process, file_path: str) -> None:
        """MAP_POPULATE maps the file's pages into the process (Rss), not only the page cache (mm/gup.c __mm_populate)."""
        fd = make_file(proc, file_path, b"z" * 4 * PAGE)
        a = proc.mmap(None, 4 * PAGE, R, PRIVATE | vmkit.MAP_POPULATE, fd)
        b = proc.mmap(None, 4 * PAGE, R, PRIVATE, fd)
        assert smaps_of(proc, a)["Rss"] == "16 kB"
        assert smaps_of(proc, b)["Rss"] == "0 kB"
        assert proc.mincore(a, 4 * PAGE) == proc.mincore(b, 4 * PAGE) == b"\1" * 4


# --------------------------------------------------------------------------------------------
class TestOvercommit:
    @pytest.mark.parametrize(
        "length, prot, flags, ok",
        [
            (64 * GiB, RW, PRIVATE_ANON, False),
            (64 * GiB, RW, PRIVATE_ANON | NORESERVE, True),
            (64 * GiB, R, PRIVATE_ANON, True),
            (64 * TiB, NONE, PRIVATE_ANON | NORESERVE, True),
            (32 * GiB, RW, SHARED_ANON, False),
            (128 * TiB, NONE, PRIVATE_ANON, False),
            (128 * TiB, NONE, PRIVATE_ANON | NORESERVE, False),
        ],
        ids=["64G-RW", "64G-RW-NORESERVE", "64G-READ", "64T-NONE-NORESERVE", "32G-shared",
             "128T-NONE", "128T-NONE-NORESERVE"],
    )
    def test_big_virtual_reservations(self, proc: Process, length: int, prot: int, flags: int, ok: bool) -> None:
        """Heuristic overcommit refuses a single accountable request above RAM + swap; NORESERVE and read-only are not charged; >= TASK_SIZE is ENOMEM (mm/util.c __vm_enough_memory)."""
        if not ok:
            assert errno_of(proc.mmap, None, length, prot, flags) == errno.ENOMEM
            return
        a = proc.mmap(None, length, prot, flags)  # never touched
        assert a == down2m(top(proc) - length)
        assert vma_at(proc, a).end == a + length  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
class TestErrors:
    @pytest.mark.parametrize(
        "length, flags, fd, offset, err",
        [
            (PAGE, PRIVATE_ANON, -1, 100, errno.EINVAL),
            (PAGE, PRIVATE_ANON, 5, PAGE + 1, errno.EINVAL),
            (0, SHARED, 9999, 100, errno.EINVAL),
            (0, SHARED, 9999, 0, errno.EBADF),
            (PAGE, SHARED, 9999, 0, errno.EBADF),
            (PAGE, SHARED, -1, 0, errno.EBADF),
            (PAGE, 0x00, -1, 0, errno.EBADF),
            (0, PRIVATE_ANON, -1, 0, errno.EINVAL),
            (1 << 63, PRIVATE_ANON, -1, 0, errno.ENOMEM),
            ((1 << 64) - PAGE, PRIVATE_ANON, -1, 0, errno.ENOMEM),
            ((1 << 64) - 1, PRIVATE_ANON, -1, 0, errno.ENOMEM),
            (0x800000000000, PRIVATE_ANON | NORESERVE, -1, 0, errno.ENOMEM),
        ],
        ids=["anon-unaligned-offset", "anon-fd5-unaligned-offset", "unaligned-offset-before-EBADF",
             "EBADF-before-len0", "fd9999", "fd-1-without-ANON", "EBADF-before-bad-type", "len0",
             "len-2^63", "len-2^64-4096", "len-2^64-1", "len-TASK_SIZE+4096"],
    )
    def test_argument_errors_in_order(self, proc: Process, length: int, flags: int, fd: int, offset: int,
                                      err: int) -> None:
        """Offset alignment, then the fd, then len 0 (EINVAL) and len overflow/> TASK_SIZE (ENOMEM) (mm/mmap.c ksys_mmap_pgoff, do_mmap)."""
        before = proc.maps()
        assert errno_of(proc.mmap, None, length, RW, flags, fd, offset) == err
        assert proc.maps() == before

    def test_anonymous_aligned_nonzero_offset_is_accepted(self, proc: Process) -> None:
        """An anonymous map ignores an aligned offset (mm/mmap.c do_mmap sets pgoff from the address)."""
        a = proc.mmap(None, PAGE, RW, PRIVATE_ANON, -1, 16 * PAGE)
        assert vma_at(proc, a).offset == 0  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "prot",
        [R | 0x10, R | 0x100, R | vmkit.PROT_GROWSDOWN, R | vmkit.PROT_GROWSUP, R | vmkit.PROT_SEM],
        ids=["0x10", "0x100", "GROWSDOWN", "GROWSUP", "SEM"],
    )
    def test_unknown_prot_bits_are_ignored(self, proc: Process, prot: int) -> None:
        """mmap does not validate prot: only READ/WRITE/EXEC reach vm_flags (mm/mmap.c calc_vm_prot_bits)."""
        a = proc.mmap(None, PAGE, prot, PRIVATE_ANON)
        assert vma_at(proc, a).perms == "r--p"  # type: ignore[union-attr]
        assert vm_flags(proc, a) == {"rd", "mr", "mw", "me"}

    def test_rwx_anon(self, proc: Process) -> None:
        """PROT_READ|WRITE|EXEC anonymous memory is allowed (no MDWE) (mm/mmap.c do_mmap)."""
        a = proc.mmap(None, PAGE, RW | vmkit.PROT_EXEC, PRIVATE_ANON)
        assert vma_at(proc, a).perms == "rwxp"  # type: ignore[union-attr]


class TestFileErrors:
    def test_wronly_fd_is_eacces_for_any_mapping(self, proc: Process, file_path: str) -> None:
        """Every file map needs FMODE_READ (mm/mmap.c do_mmap, case MAP_PRIVATE)."""
        make_file(proc, file_path, size=PAGE)
        wo = proc.open(file_path, os.O_WRONLY)
        for prot, mtype in ((R, SHARED), (RW, SHARED), (R, PRIVATE), (NONE, PRIVATE)):
            assert errno_of(proc.mmap, None, PAGE, prot, mtype, wo) == errno.EACCES

    def test_shared_write_on_rdonly_fd_is_eacces(self, proc: Process, file_path: str) -> None:
        """MAP_SHARED + PROT_WRITE needs FMODE_WRITE (mm/mmap.c do_mmap)."""
        make_file(proc, file_path, size=PAGE)
        ro = proc.open(file_path, os.O_RDONLY)
        assert errno_of(proc.mmap, None, PAGE, RW, SHARED, ro) == errno.EACCES

    def test_shared_read_on_rdonly_fd_cannot_be_made_writable(self, proc: Process, file_path: str) -> None:
        """A shared map of a read-only fd loses VM_MAYWRITE, so mprotect(PROT_WRITE) is EACCES (mm/mmap.c do_mmap, mm/mprotect.c)."""
        make_file(proc, file_path, b"ro" * 8, size=PAGE)
        ro = proc.open(file_path, os.O_RDONLY)
        a = proc.mmap(None, PAGE, R, SHARED, ro)
        assert proc.read(a, 4) == b"roro"
        assert errno_of(proc.mprotect, a, PAGE, RW) == errno.EACCES

    def test_private_write_on_rdonly_fd_is_allowed(self, proc: Process, file_path: str) -> None:
        """A private writable map of a read-only fd is fine: writes go to COW copies (mm/mmap.c do_mmap)."""
        make_file(proc, file_path, b"orig", size=PAGE)
        ro = proc.open(file_path, os.O_RDONLY)
        a = proc.mmap(None, PAGE, RW, PRIVATE, ro)
        proc.write(a, b"mine")
        assert proc.read(a, 4) == b"mine"
        assert proc.pread(ro, 4, 0) == b"orig"

    @pytest.mark.parametrize(
        "prot, flags, err",
        [(R, PRIVATE, errno.ENODEV), (R, SHARED, errno.ENODEV), (RW, SHARED, errno.EACCES),
         (R, PRIVATE | vmkit.MAP_GROWSDOWN, errno.ENODEV)],
        ids=["private", "shared-read", "shared-write-EACCES-first", "GROWSDOWN-ENODEV-first"],
    )
    def test_directory_fd(self, proc: Process, prot: int, flags: int, err: int) -> None:
        """A directory has no ->mmap: ENODEV, after the write-permission check (mm/mmap.c do_mmap)."""
        d = proc.open("/tmp", os.O_RDONLY | os.O_DIRECTORY)
        assert errno_of(proc.mmap, None, PAGE, prot, flags, d) == err

    @pytest.mark.parametrize("offset", [(1 << 63) - PAGE, 1 << 63, (1 << 64) - PAGE], ids=hex)
    @pytest.mark.parametrize("mtype", [SHARED, PRIVATE], ids=["SHARED", "PRIVATE"])
    def test_offset_past_the_maximum_file_size_is_eoverflow(self, proc: Process, any_path: str, mtype: int,
                                                             offset: int) -> None:
        """An offset + length past the file system's maximum file size is EOVERFLOW (mm/mmap.c file_mmap_ok)."""
        fd = make_file(proc, any_path, size=PAGE)
        assert errno_of(proc.mmap, None, PAGE, R, mtype, fd, offset) == errno.EOVERFLOW

    def test_offset_far_past_eof_maps_but_faults(self, proc: Process, any_path: str) -> None:
        """mmap does not compare the offset with the file size; the access past EOF is SIGBUS (mm/filemap.c filemap_fault)."""
        fd = make_file(proc, any_path, size=PAGE)
        a = proc.mmap(None, PAGE, R, SHARED, fd, 1 << 40)
        assert vma_at(proc, a).offset == 1 << 40  # type: ignore[union-attr]
        with pytest.raises(vmkit.BusError) as e:
            proc.read(a, 1)
        assert (e.value.addr, e.value.code) == (a, vmkit.BUS_ADRERR)

    @pytest.mark.parametrize("offset", [1 << 63, (1 << 64) - PAGE], ids=hex)
    @pytest.mark.parametrize("flags", [PRIVATE_ANON, SHARED_ANON], ids=["private", "shared"])
    def test_anonymous_ignores_huge_aligned_offsets(self, proc: Process, flags: int, offset: int) -> None:
        """Anonymous maps replace pgoff (addr >> PAGE_SHIFT, or 0 for shared), so no overflow check bites (mm/mmap.c do_mmap)."""
        a = proc.mmap(None, 2 * PAGE, RW, flags, -1, offset)
        assert vma_at(proc, a).offset == 0  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "length, addr, flags, err",
        [
            (0, None, SHARED, errno.EINVAL),
            (1 << 63, None, SHARED, errno.ENOMEM),
            (PAGE, ARENA + 1, SHARED | FIXED, errno.EINVAL),
            (PAGE, ARENA, SHARED | NOREPLACE, errno.EEXIST),
            (PAGE, None, 0x00, errno.EINVAL),
            (PAGE, None, VALIDATE | 0x200000, errno.EOPNOTSUPP),
        ],
        ids=["len0", "len-2^63", "FIXED-unaligned", "NOREPLACE-EEXIST", "bad-type", "VALIDATE-unknown-bit"],
    )
    def test_checks_before_the_fd_access_check(self, proc: Process, file_path: str, length: int,
                                                addr: int | None, flags: int, err: int) -> None:
        """Length, address, NOREPLACE and map-type checks run before the fd's FMODE_READ check (mm/mmap.c do_mmap)."""
        make_file(proc, file_path, size=PAGE)
        wo = proc.open(file_path, os.O_WRONLY)
        proc.mmap(ARENA, PAGE, RW, PRIVATE_ANON | FIXED)
        assert errno_of(proc.mmap, addr, length, R, flags, wo) == err


# --------------------------------------------------------------------------------------------
class TestPageZeroAndLimits:
    @pytest.mark.parametrize("flag", [FIXED, NOREPLACE], ids=["FIXED", "FIXED_NOREPLACE"])
    def test_root_may_map_page_zero(self, proc: Process, flag: int) -> None:
        """CAP_SYS_RAWIO passes the mmap_min_addr check (security/commoncap.c cap_mmap_addr)."""
        assert proc.mmap(0, PAGE, RW, PRIVATE_ANON | flag) == 0
        assert proc.read(0, 4) == bytes(4)
        assert vmas_in(proc, 0, PAGE) == [(0, PAGE, "rw-p")]

    def test_unprivileged_page_zero_is_eperm_but_0x1000_is_allowed(self, proc: Process) -> None:
        """Below vm.mmap_min_addr (4096) MAP_FIXED needs CAP_SYS_RAWIO; 0x1000 and 0x10000 are allowed (security/commoncap.c cap_mmap_addr)."""
        proc.drop_privileges()
        assert proc.capabilities == frozenset()
        assert errno_of(proc.mmap, 0, PAGE, RW, PRIVATE_ANON | FIXED) == errno.EPERM
        assert errno_of(proc.mmap, 0, PAGE, RW, PRIVATE_ANON | NOREPLACE) == errno.EPERM
        assert proc.mmap(0x1000, PAGE, RW, PRIVATE_ANON | NOREPLACE) == 0x1000
        assert proc.mmap(0x10000, PAGE, RW, PRIVATE_ANON | FIXED) == 0x10000
        # the hint 0x2000 is raised to 0x10000, which is now taken: ordinary top-down placement
        assert proc.mmap(0x2000, PAGE, RW, PRIVATE_ANON) == top(proc) - PAGE

    def test_rlimit_as_counts_every_mapping(self, proc: Process) -> None:
        """may_expand_vm refuses a mapping that would take total_vm past RLIMIT_AS, whatever its prot (mm/mmap.c may_expand_vm)."""
        size = kb(proc.status()["VmSize"]) * 1024
        proc.setrlimit(resource.RLIMIT_AS, (size + 4 * MiB, -1))
        a = proc.mmap(None, 4 * MiB - PAGE, RW, PRIVATE_ANON)
        proc.mmap(None, PAGE, NONE, PRIVATE_ANON | NORESERVE)
        assert kb(proc.status()["VmSize"]) * 1024 == size + 4 * MiB
        assert errno_of(proc.mmap, None, PAGE, NONE, PRIVATE_ANON | NORESERVE) == errno.ENOMEM
        assert errno_of(proc.mmap, None, PAGE, R, SHARED_ANON) == errno.ENOMEM
        proc.munmap(a, PAGE)
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) > 0

    def test_fixed_over_existing_does_not_count_the_replaced_range_twice(self, proc: Process) -> None:
        """MAP_FIXED subtracts the pages it replaces before checking RLIMIT_AS (mm/vma.c __mmap_region, count_vma_pages_range)."""
        size = kb(proc.status()["VmSize"]) * 1024
        proc.mmap(ARENA, 4 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.setrlimit(resource.RLIMIT_AS, (size + 4 * PAGE, -1))
        assert proc.mmap(ARENA, 4 * PAGE, R, PRIVATE_ANON | FIXED) == ARENA
        assert errno_of(proc.mmap, ARENA, 5 * PAGE, R, PRIVATE_ANON | FIXED) == errno.ENOMEM

    @pytest.mark.parametrize(
        "prot, flags, counted",
        [
            (RW, PRIVATE_ANON, True),
            (RW, PRIVATE_ANON | NORESERVE, True),
            (RW, PRIVATE_ANON | vmkit.MAP_STACK, True),
            (R, PRIVATE_ANON, False),
            (RW, SHARED_ANON, False),
            (RW, PRIVATE_ANON | vmkit.MAP_GROWSDOWN, False),
        ],
        ids=["private-RW", "NORESERVE", "MAP_STACK", "read-only", "shared", "GROWSDOWN"],
    )
    def test_rlimit_data_counts_private_writable_non_stack(self, proc: Process, prot: int, flags: int,
                                                           counted: bool) -> None:
        """RLIMIT_DATA limits data_vm: private, writable, not VM_GROWSDOWN mappings (mm/mmap.c may_expand_vm, is_data_mapping)."""
        data = kb(proc.status()["VmData"]) * 1024
        proc.setrlimit(resource.RLIMIT_DATA, (data + 4 * PAGE, -1))
        proc.mmap(None, 4 * PAGE, RW, PRIVATE_ANON)
        if counted:
            assert errno_of(proc.mmap, None, PAGE, prot, flags) == errno.ENOMEM
        else:
            assert proc.mmap(None, PAGE, prot, flags) > 0
        assert kb(proc.status()["VmData"]) * 1024 == data + 4 * PAGE

    def test_rlimit_data_zero_soft_limit_is_ignored_below_the_hard_limit(self, proc: Process) -> None:
        """A soft RLIMIT_DATA of 0 is ignored while data_vm stays under the hard limit (Valgrind workaround, mm/mmap.c may_expand_vm)."""
        proc.setrlimit(resource.RLIMIT_DATA, (0, -1))
        assert proc.mmap(None, PAGE, RW, PRIVATE_ANON) > 0


# --------------------------------------------------------------------------------------------
class TestFileMappings:
    def test_reading_past_eof_is_sigbus(self, proc: Process, any_path: str) -> None:
        """A page of the mapping wholly beyond EOF has no file page: SIGBUS BUS_ADRERR (mm/filemap.c filemap_fault)."""
        fd = make_file(proc, any_path, b"a" * PAGE + b"b" * PAGE)
        a = proc.mmap(None, 4 * PAGE, R, SHARED, fd)
        assert proc.read(a, 1) == b"a"
        assert proc.read(a + 2 * PAGE - 1, 1) == b"b"
        for off in (2 * PAGE, 3 * PAGE + 5):
            with pytest.raises(vmkit.BusError) as e:
                proc.read(a + off, 1)
            assert (e.value.addr, e.value.code) == (a + off, vmkit.BUS_ADRERR)
        with pytest.raises(vmkit.BusError) as e:
            proc.read(a + 2 * PAGE - 1, 2)
        assert e.value.addr == a + 2 * PAGE

    def test_partial_last_page_reads_zeros_past_eof(self, proc: Process, any_path: str) -> None:
        """The tail of the last file page beyond EOF reads as zeros (mm/filemap.c, the page is zero-filled)."""
        fd = make_file(proc, any_path, b"x" * (PAGE + 10))
        a = proc.mmap(None, 2 * PAGE, R, PRIVATE, fd)
        assert proc.read(a + PAGE, 12) == b"x" * 10 + b"\0\0"

    def test_shared_mapping_and_pread_pwrite_see_each_other(self, proc: Process, any_path: str) -> None:
        """A shared file mapping is the page cache: stores show in pread, pwrite shows in loads (mm/filemap.c)."""
        fd = make_file(proc, any_path, b"a" * PAGE + b"b" * PAGE)
        a = proc.mmap(None, 2 * PAGE, RW, SHARED, fd)
        proc.write(a + PAGE, b"XYZ")
        assert proc.pread(fd, 4, PAGE) == b"XYZb"
        proc.pwrite(fd, b"from-fd", 10)
        assert proc.read(a + 10, 7) == b"from-fd"

    def test_private_write_does_not_reach_the_file(self, proc: Process, any_path: str) -> None:
        """A store to a MAP_PRIVATE file page copies it; the file and other maps keep the original (mm/memory.c do_cow_fault)."""
        fd = make_file(proc, any_path, b"a" * PAGE + b"b" * PAGE)
        shared = proc.mmap(None, 2 * PAGE, R, SHARED, fd)
        a = proc.mmap(None, 2 * PAGE, RW, PRIVATE, fd)
        proc.write(a, b"QQ")
        assert proc.read(a, 3) == b"QQa"
        assert proc.pread(fd, 3, 0) == b"aaa"
        assert proc.read(shared, 3) == b"aaa"

    def test_private_page_follows_the_file_until_written(self, proc: Process, any_path: str) -> None:
        """Before its first store a private page maps the page cache; after it, it is a private copy (mm/memory.c do_cow_fault)."""
        fd = make_file(proc, any_path, b"a" * 2 * PAGE)
        a = proc.mmap(None, 2 * PAGE, RW, PRIVATE, fd)
        assert proc.read(a + PAGE, 3) == b"aaa"
        proc.pwrite(fd, b"NEW", PAGE)
        assert proc.read(a + PAGE, 3) == b"NEW"
        proc.write(a + PAGE, b"mine")
        proc.pwrite(fd, b"LATER", PAGE)
        assert proc.read(a + PAGE, 5) == b"minea"
        assert proc.pread(fd, 5, PAGE) == b"LATER"

    def test_maps_line_shows_path_and_offset(self, proc: Process, any_path: str) -> None:
        """/proc/pid/maps prints the file offset in hex and the path of a file VMA (fs/proc/task_mmu.c show_map_vma)."""
        fd = make_file(proc, any_path, size=4 * PAGE)
        a = proc.mmap(None, 2 * PAGE, RW, SHARED, fd, PAGE)
        b = proc.mmap(None, PAGE, R, PRIVATE, fd, 3 * PAGE)
        la, lb = vma_at(proc, a), vma_at(proc, b)
        assert la is not None and lb is not None
        assert (la.start, la.end, la.perms, la.offset, la.name) == (a, a + 2 * PAGE, "rw-s", PAGE, any_path)
        assert (lb.start, lb.end, lb.perms, lb.offset, lb.name) == (b, b + PAGE, "r--p", 3 * PAGE, any_path)
        assert la.inode == lb.inode != 0
        line = next(x for x in proc.maps().splitlines() if x.startswith(f"{a:x}-"))
        assert line.split()[2] == "00001000"

    def test_adjacent_file_mappings_merge_only_with_contiguous_offsets(self, proc: Process, file_path: str) -> None:
        """Two maps of one file merge iff the pgoff continues and the struct file is the same (mm/vma.c can_vma_merge_after)."""
        fd = make_file(proc, file_path, size=4 * PAGE)
        proc.mmap(ARENA, PAGE, R, SHARED | FIXED, fd, 0)
        proc.mmap(ARENA + PAGE, PAGE, R, SHARED | FIXED, fd, PAGE)
        proc.mmap(ARENA + 2 * PAGE, PAGE, R, SHARED | FIXED, fd, 3 * PAGE)
        assert [v[:2] for v in vmas_in(proc, ARENA, ARENA + 3 * PAGE)] == [
            (ARENA, ARENA + 2 * PAGE), (ARENA + 2 * PAGE, ARENA + 3 * PAGE)]
