"""mlock(2), mlock2, munlock, mlockall, munlockall, MAP_LOCKED and RLIMIT_MEMLOCK.

machine-facts.md §10 (both tables), §2 (privilege rules), §3.1 (MAP_LOCKED rows); kernel-rules.md §11
(mm/mlock.c ``do_mlock``, ``apply_vma_lock_flags``, ``mlock_fixup``, ``apply_mlockall_flags``,
``can_do_mlock``), §4 (mm/mmap.c ``mlock_future_ok``) and §18 (kernel/fork.c ``dup_mmap``).

As root the process has CAP_IPC_LOCK, which bypasses RLIMIT_MEMLOCK (8 MiB soft = hard here); the
limit cases run after ``proc.drop_privileges()``.  VmLck counts the size of locked VMAs, not
resident pages.
"""

from __future__ import annotations

import errno
import resource

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW
from helpers import kb, parse_maps, smaps_of, vm_flags, vmas_in

MiB = 1 << 20
FIXED = PRIVATE_ANON | vmkit.MAP_FIXED
LIMIT = 8 * MiB  # RLIMIT_MEMLOCK soft = hard on these machines (machine-facts §1)
#: The kernel's special mappings: VM_PFNMAP/VM_IO/VM_DONTEXPAND, never locked (vma_supports_mlock).
SPECIALS = ("[vvar]", "[vvar_vclock]", "[vdso]")


def vmlck(p: Process) -> int:
    """VmLck of ``p`` in kB."""
    return kb(p.status()["VmLck"])


def locked(p: Process, addr: int) -> bool:
    return "lo" in vm_flags(p, addr)


def any_locked(p: Process) -> bool:
    """Whether any VMA of ``p`` has VM_LOCKED (``lo`` in its smaps VmFlags)."""
    return any(line.startswith("VmFlags:") and "lo" in line.split()[1:] for line in p.smaps().splitlines())


def special_sizes_kb(p: Process) -> int:
    return sum(m.end - m.start for m in parse_maps(p.maps()) if m.name in SPECIALS) // 1024


def fixed(p: Process, pages: int, offset: int = 0, prot: int = RW, flags: int = 0) -> int:
    """A private anonymous mapping of ``pages`` pages at ARENA + ``offset``."""
    return p.mmap(ARENA + offset, pages * PAGE, prot, FIXED | flags)


# --- as root (CAP_IPC_LOCK) --------------------------------------------------------------------

class TestMlockRoot:
    def test_mlock_one_page_locks_and_populates(self, proc: Process) -> None:
        """mlock sets VM_LOCKED, charges locked_vm and faults the page in (mm/mlock.c do_mlock, __mm_populate)."""
        a = fixed(proc, 1)
        assert proc.mincore(a, PAGE) == b"\x00"
        proc.mlock(a, PAGE)
        assert vmlck(proc) == 4
        assert proc.mincore(a, PAGE) == b"\x01"
        assert locked(proc, a)
        assert smaps_of(proc, a)["Locked"] == "4 kB"

    def test_mlock_over_rlimit_with_cap_ipc_lock(self, proc: Process) -> None:
        """CAP_IPC_LOCK bypasses RLIMIT_MEMLOCK in do_mlock: 16 MiB locked with an 8 MiB limit (mm/mlock.c)."""
        assert proc.getrlimit(resource.RLIMIT_MEMLOCK) == (LIMIT, LIMIT)
        a = fixed(proc, 16 * MiB // PAGE)
        proc.mlock(a, 16 * MiB)
        assert vmlck(proc) == 16384
        assert proc.mincore(a, 16 * MiB) == b"\x01" * (16 * MiB // PAGE)

    def test_soft_limit_zero_does_not_stop_root(self, proc: Process) -> None:
        """can_do_mlock passes with CAP_IPC_LOCK even when RLIMIT_MEMLOCK is 0 (mm/mlock.c can_do_mlock)."""
        proc.setrlimit(resource.RLIMIT_MEMLOCK, (0, LIMIT))
        a = fixed(proc, 4)
        proc.mlock(a, 4 * PAGE)
        proc.mmap(ARENA + MiB, PAGE, RW, FIXED | vmkit.MAP_LOCKED)
        assert vmlck(proc) == 20

    def test_munlock_clears_the_lock(self, proc: Process) -> None:
        """munlock clears VM_LOCKED and uncharges locked_vm; pages stay resident (mm/mlock.c mlock_fixup)."""
        a = fixed(proc, 4)
        proc.mlock(a, 4 * PAGE)
        assert vmlck(proc) == 16
        proc.munlock(a, 4 * PAGE)
        assert vmlck(proc) == 0
        assert not locked(proc, a)
        assert proc.mincore(a, 4 * PAGE) == b"\x01" * 4

    def test_mlock2_onfault_counts_whole_vma_untouched(self, proc: Process) -> None:
        """mlock2(MLOCK_ONFAULT) sets VM_LOCKONFAULT, skips population, charges the whole range (mm/mlock.c do_mlock)."""
        a = fixed(proc, 16 * MiB // PAGE)
        proc.mlock2(a, 16 * MiB, vmkit.MLOCK_ONFAULT)
        assert vmlck(proc) == 16384
        assert {"lo", "lf"} <= vm_flags(proc, a)
        assert proc.mincore(a, 16 * MiB) == b"\x00" * (16 * MiB // PAGE)
        proc.write(a + 5 * PAGE, b"x")
        assert proc.mincore(a, 8 * PAGE) == b"\x00" * 5 + b"\x01" + b"\x00" * 2
        assert vmlck(proc) == 16384

    def test_mlock2_flags_zero_is_mlock(self, proc: Process) -> None:
        """mlock2 with flags 0 behaves as mlock: locked, populated, no VM_LOCKONFAULT (mm/mlock.c sys_mlock2)."""
        a = fixed(proc, 4)
        proc.mlock2(a, 4 * PAGE, 0)
        flags = vm_flags(proc, a)
        assert "lo" in flags and "lf" not in flags
        assert proc.mincore(a, 4 * PAGE) == b"\x01" * 4

    @pytest.mark.parametrize("flags", [2, 3, 4, 0x80000000])
    def test_mlock2_unknown_flags_einval(self, proc: Process, flags: int) -> None:
        """mlock2 accepts only MLOCK_ONFAULT: any other bit is EINVAL, nothing locked (mm/mlock.c sys_mlock2)."""
        a = fixed(proc, 1)
        with pytest.raises(OSError) as e:
            proc.mlock2(a, PAGE, flags)
        assert e.value.errno == errno.EINVAL
        assert vmlck(proc) == 0
        assert not locked(proc, a)

    def test_mlock_unaligned_address_rounds_down(self, proc: Process) -> None:
        """mlock rounds start down and len up to pages: an unaligned start is fine (mm/mlock.c do_mlock)."""
        a = fixed(proc, 4)
        proc.mlock(a + 123, 10)
        assert vmlck(proc) == 4
        assert vmas_in(proc, a, a + 4 * PAGE) == [(a, a + PAGE, "rw-p"), (a + PAGE, a + 4 * PAGE, "rw-p")]
        assert locked(proc, a) and not locked(proc, a + PAGE)
        proc.mlock(a + 2 * PAGE - 1, 2)  # straddles pages 1 and 2
        assert vmlck(proc) == 12
        assert locked(proc, a + 2 * PAGE) and not locked(proc, a + 3 * PAGE)

    def test_munlock_unaligned_address_rounds_down(self, proc: Process) -> None:
        """munlock uses the same page rounding as mlock (mm/mlock.c sys_munlock)."""
        a = fixed(proc, 4)
        proc.mlock(a, 4 * PAGE)
        proc.munlock(a + PAGE + 1, 1)
        assert vmlck(proc) == 12
        assert not locked(proc, a + PAGE) and locked(proc, a) and locked(proc, a + 2 * PAGE)

    def test_mlock_length_zero(self, proc: Process) -> None:
        """mlock of length 0 returns 0 before any VMA lookup, even on an unmapped address (apply_vma_lock_flags)."""
        a = fixed(proc, 1)
        proc.mlock(a, 0)
        proc.mlock(ARENA + MiB, 0)  # unmapped
        proc.munlock(ARENA + MiB, 0)
        assert vmlck(proc) == 0
        assert not locked(proc, a)

    def test_mlock_over_hole_applied_up_to_it(self, proc: Process) -> None:
        """mlock locks VMAs up to a gap, then ENOMEM (mm/mlock.c apply_vma_lock_flags)."""
        fixed(proc, 8)
        proc.munmap(ARENA + 4 * PAGE, PAGE)
        with pytest.raises(OSError) as e:
            proc.mlock(ARENA + 2 * PAGE, 4 * PAGE)
        assert e.value.errno == errno.ENOMEM
        assert vmas_in(proc, ARENA, ARENA + 8 * PAGE) == [
            (ARENA, ARENA + 2 * PAGE, "rw-p"),
            (ARENA + 2 * PAGE, ARENA + 4 * PAGE, "rw-p"),
            (ARENA + 5 * PAGE, ARENA + 8 * PAGE, "rw-p"),
        ]
        assert vmlck(proc) == 8
        assert [locked(proc, ARENA + i * PAGE) for i in (0, 2, 5)] == [False, True, False]

    def test_mlock_starting_in_hole(self, proc: Process) -> None:
        """mlock whose start is unmapped is ENOMEM and locks nothing (mm/mlock.c apply_vma_lock_flags)."""
        fixed(proc, 4, offset=4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.mlock(ARENA, 8 * PAGE)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(proc) == 0
        assert not locked(proc, ARENA + 4 * PAGE)

    def test_munlock_over_hole_applied_up_to_it(self, proc: Process) -> None:
        """munlock unlocks up to a gap, then ENOMEM (mm/mlock.c apply_vma_lock_flags)."""
        fixed(proc, 8)
        proc.munmap(ARENA + 4 * PAGE, PAGE)
        proc.mlock(ARENA, 4 * PAGE)
        proc.mlock(ARENA + 5 * PAGE, 3 * PAGE)
        assert vmlck(proc) == 28
        with pytest.raises(OSError) as e:
            proc.munlock(ARENA + 3 * PAGE, 3 * PAGE)
        assert e.value.errno == errno.ENOMEM
        assert vmas_in(proc, ARENA, ARENA + 8 * PAGE) == [
            (ARENA, ARENA + 3 * PAGE, "rw-p"),
            (ARENA + 3 * PAGE, ARENA + 4 * PAGE, "rw-p"),
            (ARENA + 5 * PAGE, ARENA + 8 * PAGE, "rw-p"),
        ]
        assert vmlck(proc) == 24
        assert [locked(proc, ARENA + i * PAGE) for i in (0, 3, 5)] == [True, False, True]

    def test_mlock_prot_none_enomem_but_stays_locked(self, proc: Process) -> None:
        """mlock of PROT_NONE: VM_LOCKED set and charged, population fails EFAULT -> ENOMEM (mm/gup.c __mm_populate)."""
        a = fixed(proc, 4, prot=vmkit.PROT_NONE)
        with pytest.raises(OSError) as e:
            proc.mlock(a, 4 * PAGE)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(proc) == 16
        assert locked(proc, a)
        assert proc.mincore(a, 4 * PAGE) == b"\x00" * 4

    def test_mlock_over_guard_region_enomem_but_stays_locked(self, proc: Process) -> None:
        """A guard page stops population (EFAULT -> ENOMEM) after VM_LOCKED was set (mm/gup.c __mm_populate)."""
        a = fixed(proc, 4)
        proc.madvise(a + PAGE, PAGE, vmkit.MADV_GUARD_INSTALL)
        with pytest.raises(OSError) as e:
            proc.mlock(a, 4 * PAGE)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(proc) == 16
        assert {"lo", "gu"} <= vm_flags(proc, a)
        assert proc.mincore(a, 4 * PAGE) == b"\x01\x00\x00\x00"

    @pytest.mark.parametrize("name", SPECIALS)
    def test_special_mappings_skipped_silently(self, proc: Process, name: str) -> None:
        """VM_SPECIAL VMAs ([vvar], [vdso]) fail vma_supports_mlock: mlock succeeds, nothing locked (mm/mlock.c mlock_fixup)."""
        m = next(m for m in parse_maps(proc.maps()) if m.name == name)
        proc.mlock(m.start, m.end - m.start)
        assert vmlck(proc) == 0
        assert not locked(proc, m.start)

    def test_overlapping_mlocks_not_double_counted(self, proc: Process) -> None:
        """Relocking a locked page adds nothing; locks do not nest, one munlock undoes all (mm/mlock.c mlock_fixup)."""
        a = fixed(proc, 4)
        proc.mlock(a, 2 * PAGE)
        proc.mlock(a + PAGE, 3 * PAGE)
        proc.mlock(a, 4 * PAGE)
        assert vmlck(proc) == 16
        assert vmas_in(proc, a, a + 4 * PAGE) == [(a, a + 4 * PAGE, "rw-p")]
        proc.munlock(a, 4 * PAGE)
        assert vmlck(proc) == 0
        assert not locked(proc, a)

    def test_mprotect_split_keeps_lock_on_both_sides(self, proc: Process) -> None:
        """mprotect splitting a locked VMA keeps VM_LOCKED on every piece; VmLck unchanged (mm/mprotect.c mprotect_fixup)."""
        a = fixed(proc, 4)
        proc.mlock(a, 4 * PAGE)
        proc.mprotect(a + PAGE, PAGE, vmkit.PROT_READ)
        assert vmas_in(proc, a, a + 4 * PAGE) == [
            (a, a + PAGE, "rw-p"), (a + PAGE, a + 2 * PAGE, "r--p"), (a + 2 * PAGE, a + 4 * PAGE, "rw-p")]
        assert all(locked(proc, a + i * PAGE) for i in range(3))
        assert vmlck(proc) == 16

    def test_mlock_after_onfault_populates_and_clears_lf(self, proc: Process) -> None:
        """mlock over an ONFAULT range replaces VM_LOCKONFAULT, splits, populates; VmLck unchanged (mlock_fixup)."""
        a = fixed(proc, 4)
        proc.mlock2(a, 4 * PAGE, vmkit.MLOCK_ONFAULT)
        proc.write(a, b"x")
        proc.mlock(a + 2 * PAGE, 2 * PAGE)
        assert vmas_in(proc, a, a + 4 * PAGE) == [(a, a + 2 * PAGE, "rw-p"), (a + 2 * PAGE, a + 4 * PAGE, "rw-p")]
        assert {"lo", "lf"} <= vm_flags(proc, a)
        assert "lo" in vm_flags(proc, a + 2 * PAGE) and "lf" not in vm_flags(proc, a + 2 * PAGE)
        assert proc.mincore(a, 4 * PAGE) == b"\x01\x00\x01\x01"
        assert vmlck(proc) == 16
        proc.munlock(a, 4 * PAGE)
        assert vmas_in(proc, a, a + 4 * PAGE) == [(a, a + 4 * PAGE, "rw-p")]
        assert not {"lo", "lf"} & vm_flags(proc, a)
        assert vmlck(proc) == 0

    def test_map_locked_populates_and_charges(self, proc: Process) -> None:
        """MAP_LOCKED sets VM_LOCKED, charges locked_vm and populates (mm/mmap.c do_mmap, mm_populate)."""
        a = fixed(proc, 16, flags=vmkit.MAP_LOCKED)
        assert vmlck(proc) == 64
        assert locked(proc, a)
        assert proc.mincore(a, 16 * PAGE) == b"\x01" * 16

    def test_mremap_keeps_the_lock(self, proc: Process) -> None:
        """mremap of a locked VMA: growth is locked and populated, a move keeps VM_LOCKED (mm/mremap.c)."""
        a = fixed(proc, 4)
        proc.mlock(a, 4 * PAGE)
        assert proc.mremap(a, 4 * PAGE, 8 * PAGE) == a
        assert vmlck(proc) == 32
        assert proc.mincore(a, 8 * PAGE) == b"\x01" * 8
        new = ARENA + 64 * PAGE
        assert proc.mremap(a, 8 * PAGE, 8 * PAGE, vmkit.MREMAP_MAYMOVE | vmkit.MREMAP_FIXED, new) == new
        assert vmlck(proc) == 32
        assert locked(proc, new)
        proc.munmap(new, 2 * PAGE)
        assert vmlck(proc) == 24

    def test_msync_invalidate_on_locked_ebusy(self, proc: Process) -> None:
        """msync(MS_INVALIDATE) over a VM_LOCKED VMA is EBUSY; MS_SYNC is fine (mm/msync.c)."""
        a = fixed(proc, 4)
        proc.mlock(a, 4 * PAGE)
        with pytest.raises(OSError) as e:
            proc.msync(a, PAGE, vmkit.MS_INVALIDATE)
        assert e.value.errno == errno.EBUSY
        proc.msync(a, PAGE, vmkit.MS_SYNC)


class TestCapIpcLock:
    def test_root_without_cap_ipc_lock_is_limited(self, proc: Process) -> None:
        """Without CAP_IPC_LOCK even root is held to RLIMIT_MEMLOCK: ENOMEM (mm/mlock.c do_mlock, capable())."""
        proc.capabilities = proc.capabilities - {"CAP_IPC_LOCK"}
        assert "CAP_IPC_LOCK" not in proc.capabilities
        a = fixed(proc, 16 * MiB // PAGE)
        with pytest.raises(OSError) as e:
            proc.mlock(a, 16 * MiB)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(proc) == 0


# --- mlockall / munlockall -----------------------------------------------------------------------

class TestMlockall:
    @pytest.mark.parametrize("flags", [0, vmkit.MCL_ONFAULT, 8, 16, vmkit.MCL_ONFAULT | 8,
                                       vmkit.MCL_CURRENT | 8])
    def test_invalid_flags_einval(self, proc: Process, flags: int) -> None:
        """mlockall: flags 0, unknown bits, or MCL_ONFAULT alone are EINVAL (mm/mlock.c sys_mlockall)."""
        with pytest.raises(OSError) as e:
            proc.mlockall(flags)
        assert e.value.errno == errno.EINVAL
        assert vmlck(proc) == 0

    def test_mcl_current_locks_every_lockable_vma(self, proc: Process) -> None:
        """MCL_CURRENT locks and populates every VMA but the special ones; VmLck = VmSize - specials (apply_mlockall_flags)."""
        a = fixed(proc, 4)
        n = fixed(proc, 4, offset=8 * PAGE, prot=vmkit.PROT_NONE)
        proc.mlockall(vmkit.MCL_CURRENT)
        lines = parse_maps(proc.maps())
        status = proc.status()
        # VmSize is every VMA except the [vsyscall] gate page.
        assert kb(status["VmSize"]) == sum(m.end - m.start for m in lines if m.name != "[vsyscall]") // 1024
        assert kb(status["VmLck"]) == kb(status["VmSize"]) - special_sizes_kb(proc)
        stack = next(m for m in lines if m.name == "[stack]")
        assert locked(proc, stack.start) and locked(proc, a) and locked(proc, n)
        assert not any(locked(proc, m.start) for m in lines if m.name in SPECIALS)
        assert proc.mincore(a, 4 * PAGE) == b"\x01" * 4
        assert proc.mincore(n, 4 * PAGE) == b"\x00" * 4  # PROT_NONE: population error ignored

    def test_mcl_current_onfault_does_not_populate(self, proc: Process) -> None:
        """MCL_CURRENT|MCL_ONFAULT sets VM_LOCKED|VM_LOCKONFAULT without populating (apply_mlockall_flags)."""
        a = fixed(proc, 4)
        proc.mlockall(vmkit.MCL_CURRENT | vmkit.MCL_ONFAULT)
        assert {"lo", "lf"} <= vm_flags(proc, a)
        assert proc.mincore(a, 4 * PAGE) == b"\x00" * 4
        assert vmlck(proc) == kb(proc.status()["VmSize"]) - special_sizes_kb(proc)

    def test_mcl_future_locks_later_mappings(self, proc: Process) -> None:
        """MCL_FUTURE puts VM_LOCKED in def_flags: later mmaps are locked and populated (mm/mlock.c, do_mmap)."""
        before = fixed(proc, 4)
        proc.mlockall(vmkit.MCL_FUTURE)
        assert vmlck(proc) == 0
        assert not locked(proc, before)
        a = fixed(proc, 16, offset=MiB)
        assert vmlck(proc) == 64
        assert locked(proc, a) and "lf" not in vm_flags(proc, a)
        assert proc.mincore(a, 16 * PAGE) == b"\x01" * 16

    def test_mcl_future_onfault_later_mappings_not_populated(self, proc: Process) -> None:
        """MCL_FUTURE|MCL_ONFAULT: later mmaps get VM_LOCKED|VM_LOCKONFAULT, populated only on touch (apply_mlockall_flags)."""
        proc.mlockall(vmkit.MCL_FUTURE | vmkit.MCL_ONFAULT)
        a = fixed(proc, 16)
        assert vmlck(proc) == 64
        assert {"lo", "lf"} <= vm_flags(proc, a)
        assert proc.mincore(a, 16 * PAGE) == b"\x00" * 16
        proc.write(a + PAGE, b"1")
        assert proc.mincore(a, 4 * PAGE) == b"\x00\x01\x00\x00"

    def test_mcl_future_locks_brk_growth(self, proc: Process) -> None:
        """After MCL_FUTURE the heap grown by brk is VM_LOCKED and populated (mm/mmap.c do_brk_flags, def_flags)."""
        proc.mlockall(vmkit.MCL_FUTURE)
        b = proc.brk(0)
        assert proc.brk(b + 2 * PAGE) == b + 2 * PAGE
        assert locked(proc, b)
        assert vmlck(proc) == 8
        assert proc.mincore(b, 2 * PAGE) == b"\x01\x01"

    def test_munlockall_clears_locks_and_future(self, proc: Process) -> None:
        """munlockall unlocks every VMA and clears def_flags (mm/mlock.c apply_mlockall_flags(0))."""
        a = fixed(proc, 4)
        proc.mlockall(vmkit.MCL_CURRENT | vmkit.MCL_FUTURE)
        assert vmlck(proc) > 0 and locked(proc, a) and any_locked(proc)
        proc.munlockall()
        assert vmlck(proc) == 0
        assert not any_locked(proc)
        b = fixed(proc, 4, offset=MiB)
        assert vmlck(proc) == 0
        assert not locked(proc, b)
        assert proc.mincore(b, 4 * PAGE) == b"\x00" * 4

    def test_mlockall_replaces_def_flags(self, proc: Process) -> None:
        """Each mlockall replaces def_flags: MCL_CURRENT after MCL_FUTURE drops the future lock (apply_mlockall_flags)."""
        proc.mlockall(vmkit.MCL_FUTURE)
        proc.mlockall(vmkit.MCL_CURRENT)
        a = fixed(proc, 4)
        assert not locked(proc, a)
        assert proc.mincore(a, 4 * PAGE) == b"\x00" * 4


class TestFork:
    def test_locks_not_inherited(self, proc: Process) -> None:
        """dup_mmap clears VM_LOCKED/VM_LOCKONFAULT and resets locked_vm in the child (kernel/fork.c dup_mmap)."""
        a = fixed(proc, 4)
        proc.write(a, b"locked")
        proc.mlockall(vmkit.MCL_CURRENT)
        parent_lck = vmlck(proc)
        assert any_locked(proc)
        child = proc.fork()
        try:
            assert vmlck(child) == 0
            assert not any_locked(child)
            assert child.read(a, 6) == b"locked"
            assert vmlck(proc) == parent_lck
            assert locked(proc, a)
        finally:
            child.terminate()

    def test_mcl_future_not_inherited(self, proc: Process) -> None:
        """The child's def_flags keep only VM_NOHUGEPAGE: MCL_FUTURE does not pass to it (kernel/fork.c mm_init)."""
        proc.mlockall(vmkit.MCL_FUTURE)
        child = proc.fork()
        try:
            b = fixed(child, 4)
            assert not locked(child, b)
            assert vmlck(child) == 0
            assert child.mincore(b, 4 * PAGE) == b"\x00" * 4
        finally:
            child.terminate()
        a = fixed(proc, 4)
        assert locked(proc, a)


# --- unprivileged: RLIMIT_MEMLOCK applies ---------------------------------------------------------

@pytest.fixture
def user(proc: Process) -> Process:
    """``proc`` after drop_privileges(): uid/gid 65534, no capabilities, RLIMIT_MEMLOCK 8 MiB."""
    proc.drop_privileges()
    assert proc.capabilities == frozenset()
    assert proc.getrlimit(resource.RLIMIT_MEMLOCK) == (LIMIT, LIMIT)
    return proc


class TestMemlockLimit:
    @pytest.mark.parametrize(("length", "error"), [(4 * MiB, None), (LIMIT, None),
                                                   (LIMIT + PAGE, errno.ENOMEM),
                                                   (16 * MiB, errno.ENOMEM)])
    def test_mlock_against_limit(self, user: Process, length: int, error: int | None) -> None:
        """do_mlock: locked_vm + len over RLIMIT_MEMLOCK without CAP_IPC_LOCK is ENOMEM; exactly the limit is OK."""
        a = user.mmap(ARENA, 16 * MiB, RW, FIXED | vmkit.MAP_NORESERVE)
        if error is None:
            user.mlock(a, length)
            assert vmlck(user) == length // 1024
        else:
            with pytest.raises(OSError) as e:
                user.mlock(a, length)
            assert e.value.errno == error
            assert vmlck(user) == 0
            assert not locked(user, a)
            assert vmas_in(user, a, a + 16 * MiB) == [(a, a + 16 * MiB, "rw-p")]

    def test_mlock2_onfault_over_limit(self, user: Process) -> None:
        """MLOCK_ONFAULT is charged in full, so 16 MiB is over the limit: ENOMEM (mm/mlock.c do_mlock)."""
        a = user.mmap(ARENA, 16 * MiB, RW, FIXED)
        with pytest.raises(OSError) as e:
            user.mlock2(a, 16 * MiB, vmkit.MLOCK_ONFAULT)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(user) == 0
        assert not locked(user, a)

    def test_locked_vm_accumulates_across_calls(self, user: Process) -> None:
        """The limit test adds mm->locked_vm: separate calls add up until ENOMEM (mm/mlock.c do_mlock)."""
        a = user.mmap(ARENA, 16 * MiB, RW, FIXED)
        user.mlock2(a, 4 * MiB, vmkit.MLOCK_ONFAULT)
        user.mlock2(a + 4 * MiB, 4 * MiB, vmkit.MLOCK_ONFAULT)
        assert vmlck(user) == 8192
        with pytest.raises(OSError) as e:
            user.mlock2(a + 8 * MiB, PAGE, vmkit.MLOCK_ONFAULT)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(user) == 8192
        assert not locked(user, a + 8 * MiB)

    def test_locked_vm_accumulates_with_mlock(self, user: Process) -> None:
        """Two populating mlocks under a 1 MiB soft limit fill it; one more page is ENOMEM (mm/mlock.c do_mlock)."""
        user.setrlimit(resource.RLIMIT_MEMLOCK, (MiB, LIMIT))
        a = fixed(user, 2 * MiB // PAGE)
        user.mlock(a, MiB // 2)
        user.mlock(a + MiB // 2, MiB // 2)
        assert vmlck(user) == 1024
        with pytest.raises(OSError) as e:
            user.mlock(a + MiB, PAGE)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(user) == 1024

    def test_already_locked_pages_are_subtracted(self, user: Process) -> None:
        """Over the limit, do_mlock subtracts pages of the range already locked (count_mm_mlocked_page_nr)."""
        a = user.mmap(ARENA, 16 * MiB, RW, FIXED)
        user.mlock2(a, 4 * MiB, vmkit.MLOCK_ONFAULT)
        user.mlock2(a, 8 * MiB, vmkit.MLOCK_ONFAULT)  # 4 MiB new + 4 MiB already locked: at the limit
        assert vmlck(user) == 8192
        user.munlock(a, 8 * MiB)
        user.mlock2(a, 4 * MiB, vmkit.MLOCK_ONFAULT)
        with pytest.raises(OSError) as e:  # 8 MiB new + 4 MiB locked, only 0 of them in range
            user.mlock2(a + 4 * MiB, 8 * MiB, vmkit.MLOCK_ONFAULT)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(user) == 4096

    def test_mlockall_current_small_process_ok(self, user: Process) -> None:
        """MCL_CURRENT is refused only if total_vm exceeds the limit; a small process locks fine (apply_mlockall_flags)."""
        assert kb(user.status()["VmSize"]) * 1024 < LIMIT
        user.mlockall(vmkit.MCL_CURRENT)
        assert vmlck(user) == kb(user.status()["VmSize"]) - special_sizes_kb(user)

    @pytest.mark.parametrize("flags", [vmkit.MCL_CURRENT, vmkit.MCL_CURRENT | vmkit.MCL_ONFAULT,
                                       vmkit.MCL_CURRENT | vmkit.MCL_FUTURE])
    def test_mlockall_current_total_vm_boundary(self, user: Process, flags: int) -> None:
        """MCL_CURRENT: total_vm (VmSize, specials included) == limit OK, one page more ENOMEM (sys_mlockall)."""
        size = kb(user.status()["VmSize"]) * 1024
        user.mmap(ARENA, LIMIT - size, vmkit.PROT_READ, FIXED)
        assert kb(user.status()["VmSize"]) * 1024 == LIMIT
        user.mlockall(flags)
        assert vmlck(user) == LIMIT // 1024 - special_sizes_kb(user)
        user.munlockall()
        user.mmap(ARENA + 2 * LIMIT, PAGE, vmkit.PROT_READ, FIXED)
        with pytest.raises(OSError) as e:
            user.mlockall(flags)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(user) == 0

    def test_mlockall_current_over_limit_16mib(self, user: Process) -> None:
        """A 16 MiB PROT_READ mapping pushes total_vm past 8 MiB: MCL_CURRENT is ENOMEM, nothing locked (sys_mlockall)."""
        a = user.mmap(ARENA, 16 * MiB, vmkit.PROT_READ, FIXED)
        with pytest.raises(OSError) as e:
            user.mlockall(vmkit.MCL_CURRENT)
        assert e.value.errno == errno.ENOMEM
        assert vmlck(user) == 0
        assert not locked(user, a)

    def test_mcl_future_growth_eagain(self, user: Process) -> None:
        """After MCL_FUTURE, mmap/mremap growth beyond the limit is EAGAIN (mm/mmap.c mlock_future_ok)."""
        user.mlockall(vmkit.MCL_FUTURE)
        with pytest.raises(OSError) as e:
            user.mmap(ARENA, 16 * MiB, RW, FIXED)
        assert e.value.errno == errno.EAGAIN
        assert vmas_in(user, ARENA, ARENA + 64 * MiB) == []
        a = user.mmap(ARENA, MiB, RW, FIXED)
        assert locked(user, a)
        assert vmlck(user) == 1024
        assert user.mincore(a, MiB) == b"\x01" * (MiB // PAGE)
        for flags in (0, vmkit.MREMAP_MAYMOVE):
            with pytest.raises(OSError) as e:
                user.mremap(a, MiB, 32 * MiB, flags)
            assert e.value.errno == errno.EAGAIN
        assert vmas_in(user, ARENA, ARENA + 64 * MiB) == [(a, a + MiB, "rw-p")]
        assert user.mremap(a, MiB, 2 * MiB) == a
        assert vmlck(user) == 2048

    def test_mcl_future_brk_growth_over_limit_refused(self, user: Process) -> None:
        """brk growth after MCL_FUTURE over the limit leaves the break unchanged (check_brk_limits, mlock_future_ok)."""
        user.mlockall(vmkit.MCL_FUTURE)
        b = user.brk(0)
        assert user.brk(b + 16 * MiB) == b
        assert user.brk(b + PAGE) == b + PAGE
        assert vmlck(user) == 4

    def test_map_locked_over_limit_eagain(self, user: Process) -> None:
        """MAP_LOCKED beyond RLIMIT_MEMLOCK is EAGAIN, 1 MiB is fine (mm/mmap.c do_mmap, mlock_future_ok)."""
        with pytest.raises(OSError) as e:
            user.mmap(ARENA, 16 * MiB, RW, FIXED | vmkit.MAP_LOCKED)
        assert e.value.errno == errno.EAGAIN
        assert vmas_in(user, ARENA, ARENA + 16 * MiB) == []
        a = user.mmap(ARENA, MiB, RW, FIXED | vmkit.MAP_LOCKED)
        assert vmlck(user) == 1024
        assert user.mincore(a, MiB) == b"\x01" * (MiB // PAGE)

    @pytest.mark.parametrize("limits", [(16 * MiB, 16 * MiB), (LIMIT, 16 * MiB), (LIMIT, -1)])
    def test_raising_memlock_hard_limit_eperm(self, user: Process, limits: tuple[int, int]) -> None:
        """Raising the hard RLIMIT_MEMLOCK needs CAP_SYS_RESOURCE: EPERM (kernel/sys.c do_prlimit)."""
        with pytest.raises(OSError) as e:
            user.setrlimit(resource.RLIMIT_MEMLOCK, limits)
        assert e.value.errno == errno.EPERM
        assert user.getrlimit(resource.RLIMIT_MEMLOCK) == (LIMIT, LIMIT)


class TestMemlockZero:
    @pytest.fixture
    def zero(self, user: Process) -> Process:
        user.setrlimit(resource.RLIMIT_MEMLOCK, (0, LIMIT))
        return user

    @pytest.mark.parametrize("call", ["mlock", "mlock2", "mlock2_onfault", "mlockall_current",
                                      "mlockall_future", "map_locked"])
    def test_limit_zero_eperm(self, zero: Process, call: str) -> None:
        """can_do_mlock fails with RLIMIT_MEMLOCK 0 and no CAP_IPC_LOCK: EPERM (mm/mlock.c, mm/mmap.c do_mmap)."""
        a = fixed(zero, 4)
        with pytest.raises(OSError) as e:
            if call == "mlock":
                zero.mlock(a, PAGE)
            elif call == "mlock2":
                zero.mlock2(a, PAGE)
            elif call == "mlock2_onfault":
                zero.mlock2(a, PAGE, vmkit.MLOCK_ONFAULT)
            elif call == "mlockall_current":
                zero.mlockall(vmkit.MCL_CURRENT)
            elif call == "mlockall_future":
                zero.mlockall(vmkit.MCL_FUTURE)
            else:
                zero.mmap(ARENA + MiB, PAGE, RW, FIXED | vmkit.MAP_LOCKED)
        assert e.value.errno == errno.EPERM
        assert vmlck(zero) == 0
        assert vmas_in(zero, ARENA, ARENA + 2 * MiB) == [(a, a + 4 * PAGE, "rw-p")]

    def test_unlocking_needs_no_limit(self, zero: Process) -> None:
        """munlock and munlockall never check can_do_mlock (mm/mlock.c sys_munlock, sys_munlockall)."""
        a = fixed(zero, 4)
        zero.munlock(a, 4 * PAGE)
        zero.munlockall()
        assert vmlck(zero) == 0

    def test_mremap_growth_of_locked_vma_eagain(self, user: Process) -> None:
        """Growing a locked VMA with limit 0 is EAGAIN, not EPERM (mm/mremap.c vma_to_resize, mlock_future_ok)."""
        a = fixed(user, 4)
        user.mlock(a, 4 * PAGE)
        user.setrlimit(resource.RLIMIT_MEMLOCK, (0, LIMIT))
        with pytest.raises(OSError) as e:
            user.mremap(a, 4 * PAGE, 8 * PAGE)
        assert e.value.errno == errno.EAGAIN
        with pytest.raises(OSError) as e:
            user.mlock(a, 4 * PAGE)
        assert e.value.errno == errno.EPERM
        assert vmlck(user) == 16
        assert vmas_in(user, a, a + 8 * PAGE) == [(a, a + 4 * PAGE, "rw-p")]


def test_mlock_drains_the_lazyfree_batch(proc: Process) -> None:
    """``mlock_vma_pages_range`` drains the LRU batches (``lru_add_drain``): pages MADV_FREE left in
    the per-CPU lazyfree batch count as LazyFree once another VMA is mlocked or munlocked (found by a
    THP differential run)."""
    freed = proc.mmap(ARENA, 4 * PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED)
    proc.write(freed, b"\x01" * 4 * PAGE)
    proc.madvise(freed, 4 * PAGE, vmkit.MADV_FREE)
    assert kb(smaps_of(proc, freed)["LazyFree"]) == 0  # 4 pages: the batch of 31 is not full
    other = proc.mmap(ARENA + 16 * PAGE, PAGE, RW, PRIVATE_ANON | vmkit.MAP_FIXED)
    proc.mlock(other, PAGE)
    assert kb(smaps_of(proc, freed)["LazyFree"]) == 16
