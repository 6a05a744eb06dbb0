"""getrlimit/setrlimit and the limits the mm layer enforces; capabilities and dumpability.

machine-facts.md §1 (identity, RLIMIT_MEMLOCK, RLIMIT_STACK), §2 (privilege rules), §11 (brk);
kernel-rules.md §4 (mm/mmap.c ``may_expand_vm``), §10 (brk, ``check_data_rlimit``), §19 (stack
growth).  Root on these machines has every capability except CAP_SYS_RESOURCE, so even root cannot
raise a hard limit.
"""

from __future__ import annotations

import errno
import resource

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW, SHARED_ANON
from helpers import kb, parse_maps, vmas_in

MiB = 1 << 20
INF = -1
FIXED = vmkit.MAP_FIXED
RESOURCES = {
    "MEMLOCK": resource.RLIMIT_MEMLOCK,
    "AS": resource.RLIMIT_AS,
    "DATA": resource.RLIMIT_DATA,
    "STACK": resource.RLIMIT_STACK,
}
#: Observed defaults on these machines (machine-facts §1), inherited by every process.
DEFAULTS = {
    "MEMLOCK": (8 * MiB, 8 * MiB),
    "AS": (INF, INF),
    "DATA": (INF, INF),
    "STACK": (8 * MiB, INF),
}


def status_bytes(p: Process, field: str) -> int:
    return kb(p.status()[field]) * 1024


def stack_of(p: Process) -> tuple[int, int]:
    m = next(m for m in parse_maps(p.maps()) if m.name == "[stack]")
    return m.start, m.end


# --- getrlimit / setrlimit ----------------------------------------------------------------------

class TestGetSetRlimit:
    @pytest.mark.parametrize("name", list(RESOURCES))
    def test_defaults(self, proc: Process, name: str) -> None:
        """A fresh process inherits the machine's limits (kernel/sys.c do_prlimit; machine-facts §1)."""
        assert proc.getrlimit(RESOURCES[name]) == DEFAULTS[name]

    @pytest.mark.parametrize("name", list(RESOURCES))
    def test_lower_soft_then_raise_back(self, proc: Process, name: str) -> None:
        """The soft limit may move freely up to the hard limit (kernel/sys.c do_prlimit)."""
        res = RESOURCES[name]
        soft, hard = proc.getrlimit(res)
        proc.setrlimit(res, (MiB, hard))
        assert proc.getrlimit(res) == (MiB, hard)
        proc.setrlimit(res, (soft, hard))
        assert proc.getrlimit(res) == (soft, hard)
        proc.setrlimit(res, (hard, hard))
        assert proc.getrlimit(res) == (hard, hard)

    @pytest.mark.parametrize("name", list(RESOURCES))
    def test_raising_hard_limit_as_root_eperm(self, proc: Process, name: str) -> None:
        """Raising rlim_max needs CAP_SYS_RESOURCE, which root lacks here: EPERM (kernel/sys.c do_prlimit)."""
        res = RESOURCES[name]
        assert "CAP_SYS_RESOURCE" not in proc.capabilities
        soft, hard = proc.getrlimit(res)
        if hard == INF:  # first lower it: lowering is always allowed
            proc.setrlimit(res, (64 * MiB, 64 * MiB))
            soft, hard = 64 * MiB, 64 * MiB
        with pytest.raises(OSError) as e:
            proc.setrlimit(res, (soft, hard + PAGE))
        assert e.value.errno == errno.EPERM
        with pytest.raises(OSError) as e:
            proc.setrlimit(res, (soft, INF))
        assert e.value.errno == errno.EPERM
        assert proc.getrlimit(res) == (soft, hard)

    @pytest.mark.parametrize("name", list(RESOURCES))
    def test_soft_above_hard_einval(self, proc: Process, name: str) -> None:
        """rlim_cur > rlim_max is EINVAL, checked before the privilege test (kernel/sys.c do_prlimit)."""
        res = RESOURCES[name]
        before = proc.getrlimit(res)
        with pytest.raises(OSError) as e:
            proc.setrlimit(res, (16 * MiB, 8 * MiB))
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            proc.setrlimit(res, (INF, 8 * MiB))
        assert e.value.errno == errno.EINVAL
        assert proc.getrlimit(res) == before

    def test_unknown_resource_einval(self, proc: Process) -> None:
        """A resource number >= RLIM_NLIMITS is EINVAL (kernel/sys.c getrlimit, do_prlimit)."""
        for call in (lambda: proc.getrlimit(99), lambda: proc.setrlimit(99, (1, 1))):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EINVAL

    def test_unprivileged_lower_hard_is_one_way(self, proc: Process) -> None:
        """Any process may lower its hard limit, none without CAP_SYS_RESOURCE may raise it (do_prlimit)."""
        proc.drop_privileges()
        proc.setrlimit(resource.RLIMIT_MEMLOCK, (MiB, MiB))
        assert proc.getrlimit(resource.RLIMIT_MEMLOCK) == (MiB, MiB)
        with pytest.raises(OSError) as e:
            proc.setrlimit(resource.RLIMIT_MEMLOCK, (MiB, 2 * MiB))
        assert e.value.errno == errno.EPERM

    def test_limits_inherited_by_fork(self, proc: Process) -> None:
        """fork copies the signal struct's rlimits (kernel/fork.c copy_signal)."""
        proc.setrlimit(resource.RLIMIT_AS, (256 * MiB, 512 * MiB))
        child = proc.fork()
        try:
            assert child.getrlimit(resource.RLIMIT_AS) == (256 * MiB, 512 * MiB)
        finally:
            child.terminate()


# --- RLIMIT_AS --------------------------------------------------------------------------------------

class TestRlimitAS:
    @pytest.fixture
    def limited(self, proc: Process) -> Process:
        """``proc`` with RLIMIT_AS = its VmSize + 8 pages."""
        proc.setrlimit(resource.RLIMIT_AS, (status_bytes(proc, "VmSize") + 8 * PAGE, INF))
        return proc

    @pytest.mark.parametrize("prot", [vmkit.PROT_NONE, vmkit.PROT_READ, RW])
    def test_mmap_beyond_enomem_up_to_ok(self, limited: Process, prot: int) -> None:
        """may_expand_vm: total_vm + pages > RLIMIT_AS is ENOMEM for any mapping, PROT_NONE too (mm/mmap.c)."""
        with pytest.raises(OSError) as e:
            limited.mmap(ARENA, 9 * PAGE, prot, PRIVATE_ANON | FIXED)
        assert e.value.errno == errno.ENOMEM
        assert vmas_in(limited, ARENA, ARENA + MiB) == []
        assert limited.mmap(ARENA, 8 * PAGE, prot, PRIVATE_ANON | FIXED) == ARENA
        with pytest.raises(OSError) as e:
            limited.mmap(None, PAGE, prot, PRIVATE_ANON)
        assert e.value.errno == errno.ENOMEM
        limited.munmap(ARENA, PAGE)
        assert limited.mmap(ARENA + MiB, PAGE, prot, PRIVATE_ANON | FIXED) == ARENA + MiB

    def test_mmap_noreserve_and_shared_count_too(self, limited: Process) -> None:
        """RLIMIT_AS counts every kind of mapping: shared and MAP_NORESERVE alike (mm/mmap.c may_expand_vm)."""
        for flags in (SHARED_ANON, PRIVATE_ANON | vmkit.MAP_NORESERVE):
            with pytest.raises(OSError) as e:
                limited.mmap(ARENA, 9 * PAGE, RW, flags | FIXED)
            assert e.value.errno == errno.ENOMEM

    def test_lowering_below_current_size_blocks_new_maps(self, proc: Process) -> None:
        """setrlimit may set RLIMIT_AS below total_vm; existing VMAs stay, new ones are ENOMEM (may_expand_vm)."""
        proc.mmap(ARENA, 16 * PAGE, RW, PRIVATE_ANON | FIXED)
        proc.setrlimit(resource.RLIMIT_AS, (MiB, INF))
        assert vmas_in(proc, ARENA, ARENA + MiB) == [(ARENA, ARENA + 16 * PAGE, "rw-p")]
        with pytest.raises(OSError) as e:
            proc.mmap(None, PAGE, vmkit.PROT_NONE, PRIVATE_ANON)
        assert e.value.errno == errno.ENOMEM
        proc.write(ARENA, b"still usable")
        assert proc.read(ARENA, 12) == b"still usable"

    def test_mremap_growth_enomem(self, limited: Process) -> None:
        """mremap growth past RLIMIT_AS is ENOMEM; up to it works (mm/mremap.c vma_to_resize, may_expand_vm)."""
        a = limited.mmap(ARENA, 4 * PAGE, RW, PRIVATE_ANON | FIXED)
        assert limited.mremap(a, 4 * PAGE, 8 * PAGE) == a
        for flags in (0, vmkit.MREMAP_MAYMOVE):
            with pytest.raises(OSError) as e:
                limited.mremap(a, 8 * PAGE, 12 * PAGE, flags)
            assert e.value.errno == errno.ENOMEM
        assert vmas_in(limited, ARENA, ARENA + MiB) == [(a, a + 8 * PAGE, "rw-p")]

    def test_brk_beyond_unchanged(self, limited: Process) -> None:
        """brk growth past RLIMIT_AS leaves the break unchanged (mm/mmap.c do_brk_flags, may_expand_vm)."""
        b = limited.brk(0)
        assert limited.brk(b + 9 * PAGE) == b
        assert limited.brk(b + 8 * PAGE) == b + 8 * PAGE

    def test_stack_growth_beyond_segv(self, proc: Process) -> None:
        """Stack growth that would pass RLIMIT_AS fails and the access faults SEGV_MAPERR (mm/mmap.c acct_stack_growth)."""
        start, _ = stack_of(proc)
        proc.setrlimit(resource.RLIMIT_AS, (status_bytes(proc, "VmSize") + PAGE, INF))
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(start - 2 * PAGE, 1)
        assert e.value.code == vmkit.SEGV_MAPERR
        assert stack_of(proc)[0] == start
        assert proc.read(start - PAGE, 1) == b"\x00"
        assert stack_of(proc)[0] == start - PAGE


# --- RLIMIT_DATA ------------------------------------------------------------------------------------

class TestRlimitData:
    @pytest.fixture
    def limited(self, proc: Process) -> Process:
        """``proc`` with RLIMIT_DATA = its VmData + 4 MiB."""
        proc.setrlimit(resource.RLIMIT_DATA, (status_bytes(proc, "VmData") + 4 * MiB, INF))
        return proc

    @pytest.mark.parametrize("extra", [0, vmkit.MAP_NORESERVE, vmkit.MAP_STACK])
    def test_private_writable_beyond_enomem(self, limited: Process, extra: int) -> None:
        """Private writable non-VM_STACK mappings are data: data_vm over RLIMIT_DATA is ENOMEM (may_expand_vm)."""
        before = limited.status()["VmData"]
        with pytest.raises(OSError) as e:
            limited.mmap(ARENA, 4 * MiB + PAGE, RW, PRIVATE_ANON | FIXED | extra)
        assert e.value.errno == errno.ENOMEM
        assert vmas_in(limited, ARENA, ARENA + 8 * MiB) == []
        assert limited.status()["VmData"] == before
        assert limited.mmap(ARENA, 4 * MiB, RW, PRIVATE_ANON | FIXED | extra) == ARENA
        with pytest.raises(OSError) as e:
            limited.mmap(ARENA + 8 * MiB, PAGE, RW, PRIVATE_ANON | FIXED | extra)
        assert e.value.errno == errno.ENOMEM

    @pytest.mark.parametrize(("prot", "flags"), [
        (vmkit.PROT_READ, PRIVATE_ANON),
        (vmkit.PROT_NONE, PRIVATE_ANON),
        (RW, SHARED_ANON),
        (RW, PRIVATE_ANON | vmkit.MAP_GROWSDOWN),
    ], ids=["private_read", "private_none", "shared_rw", "growsdown_rw"])
    def test_non_data_mappings_not_limited(self, limited: Process, prot: int, flags: int) -> None:
        """Read-only, shared and VM_STACK (GROWSDOWN) mappings are not data (include/linux/mm.h is_data_mapping)."""
        before = limited.status()["VmData"]
        assert limited.mmap(ARENA, 16 * MiB, prot, flags | FIXED) == ARENA
        assert limited.status()["VmData"] == before

    def test_mprotect_to_writable_enomem(self, limited: Process) -> None:
        """mprotect making a private mapping writable is charged to data_vm: ENOMEM (mm/mprotect.c mprotect_fixup)."""
        a = limited.mmap(ARENA, 16 * MiB, vmkit.PROT_READ, PRIVATE_ANON | FIXED)
        with pytest.raises(OSError) as e:
            limited.mprotect(a, 4 * MiB + PAGE, RW)
        assert e.value.errno == errno.ENOMEM
        assert vmas_in(limited, a, a + 16 * MiB) == [(a, a + 16 * MiB, "r--p")]
        limited.mprotect(a, 4 * MiB, RW)
        assert vmas_in(limited, a, a + 16 * MiB) == [(a, a + 4 * MiB, "rw-p"), (a + 4 * MiB, a + 16 * MiB, "r--p")]

    def test_mremap_growth_enomem(self, limited: Process) -> None:
        """mremap growth of a data mapping past RLIMIT_DATA is ENOMEM (mm/mremap.c vma_to_resize, may_expand_vm)."""
        a = limited.mmap(ARENA, 4 * MiB - PAGE, RW, PRIVATE_ANON | FIXED)
        assert limited.mremap(a, 4 * MiB - PAGE, 4 * MiB) == a
        with pytest.raises(OSError) as e:
            limited.mremap(a, 4 * MiB, 4 * MiB + PAGE)
        assert e.value.errno == errno.ENOMEM

    def test_brk_beyond_unchanged(self, proc: Process) -> None:
        """brk past RLIMIT_DATA leaves the break unchanged; up to it works (mm/mmap.c brk, may_expand_vm)."""
        proc.setrlimit(resource.RLIMIT_DATA, (status_bytes(proc, "VmData") + MiB, INF))
        b = proc.brk(0)
        assert proc.brk(b + MiB + PAGE) == b
        assert proc.brk(b + 64 * MiB) == b
        assert proc.brk(b + MiB) == b + MiB
        assert proc.brk(b + MiB + PAGE) == b + MiB

    def test_soft_zero_falls_back_to_hard(self, proc: Process) -> None:
        """With RLIMIT_DATA soft 0, data_vm is checked against the hard limit (may_expand_vm Valgrind workaround)."""
        proc.setrlimit(resource.RLIMIT_DATA, (0, status_bytes(proc, "VmData") + 8 * PAGE))
        with pytest.raises(OSError) as e:
            proc.mmap(ARENA, 9 * PAGE, RW, PRIVATE_ANON | FIXED)
        assert e.value.errno == errno.ENOMEM
        assert proc.mmap(ARENA, 8 * PAGE, RW, PRIVATE_ANON | FIXED) == ARENA


# --- RLIMIT_STACK ---------------------------------------------------------------------------------------

class TestRlimitStack:
    def test_stack_growth_stops_at_limit(self, proc: Process) -> None:
        """The stack VMA may grow to RLIMIT_STACK, one page more is SIGSEGV (mm/mmap.c acct_stack_growth)."""
        start, end = stack_of(proc)
        proc.setrlimit(resource.RLIMIT_STACK, (256 * 1024, INF))
        assert proc.read(end - 256 * 1024, 1) == b"\x00"
        assert stack_of(proc) == (end - 256 * 1024, end)
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(end - 256 * 1024 - PAGE, 1)
        assert e.value.code == vmkit.SEGV_MAPERR
        assert e.value.addr == end - 256 * 1024 - PAGE
        assert stack_of(proc) == (end - 256 * 1024, end)
        assert start > end - 256 * 1024


# --- capabilities and credentials ---------------------------------------------------------------------------

class TestCapabilities:
    @pytest.mark.parametrize("cap", ["CAP_IPC_LOCK", "CAP_SYS_RAWIO", "CAP_SYS_PTRACE", "CAP_SYS_NICE",
                                     "CAP_SYS_ADMIN", "CAP_SETUID"])
    def test_root_has(self, proc: Process, cap: str) -> None:
        """Root's effective set here is everything but CAP_SYS_RESOURCE (machine-facts §1, capget)."""
        assert cap in proc.capabilities

    def test_root_lacks_cap_sys_resource(self, proc: Process) -> None:
        """CAP_SYS_RESOURCE (bit 24) is missing from root's bounding set on these machines (machine-facts §1)."""
        assert "CAP_SYS_RESOURCE" not in proc.capabilities
        assert len(proc.capabilities) == 40

    def test_drop_privileges_empties_the_set(self, proc: Process) -> None:
        """setresuid to all-nonzero uids clears permitted and effective caps (kernel/capability.c, security/commoncap.c cap_emulate_setxuid)."""
        proc.drop_privileges()
        assert proc.capabilities == frozenset()
        for call in (lambda: proc.setresuid(0, 0, 0), lambda: proc.setresgid(0, 0, 0)):
            with pytest.raises(OSError) as e:
                call()
            assert e.value.errno == errno.EPERM
        with pytest.raises(OSError) as e:
            proc.capabilities = frozenset({"CAP_IPC_LOCK"})
        assert e.value.errno == errno.EPERM
        assert proc.capabilities == frozenset()

    def test_dropped_capability_cannot_come_back(self, proc: Process) -> None:
        """capset may shrink the permitted set but not grow it: EPERM (security/commoncap.c cap_capset)."""
        proc.capabilities = proc.capabilities - {"CAP_IPC_LOCK"}
        assert "CAP_IPC_LOCK" not in proc.capabilities
        assert "CAP_SYS_ADMIN" in proc.capabilities
        with pytest.raises(OSError) as e:
            proc.capabilities = proc.capabilities | {"CAP_IPC_LOCK"}
        assert e.value.errno == errno.EPERM
        assert "CAP_IPC_LOCK" not in proc.capabilities

    def test_saved_uid_root_keeps_permitted(self, proc: Process) -> None:
        """euid 0 -> nonzero clears only the effective set while suid is 0; setresuid(0,0,0) restores it (cap_emulate_setxuid)."""
        caps = proc.capabilities
        proc.setresuid(65534, 65534, 0)
        assert proc.capabilities == frozenset()
        proc.setresuid(0, 0, 0)
        assert proc.capabilities == caps


class TestDumpable:
    def test_dumpable_by_default(self, proc: Process) -> None:
        """A fresh process is dumpable (prctl PR_GET_DUMPABLE, fs/exec.c)."""
        assert proc.dumpable is True

    @pytest.mark.parametrize("change", ["setresuid", "setresgid"])
    def test_changing_ids_makes_non_dumpable(self, proc: Process, change: str) -> None:
        """commit_creds clears dumpability when euid or egid changes (kernel/cred.c commit_creds)."""
        if change == "setresuid":
            proc.setresuid(65534, 65534, 65534)
        else:
            proc.setresgid(65534, 65534, 65534)
        assert proc.dumpable is False
        proc.dumpable = True
        assert proc.dumpable is True

    def test_unchanged_ids_keep_dumpable(self, proc: Process) -> None:
        """setresuid/setresgid to the current ids change nothing, so dumpability stays (kernel/cred.c commit_creds)."""
        proc.setresuid(0, 0, 0)
        proc.setresgid(0, 0, 0)
        assert proc.dumpable is True

    @pytest.mark.parametrize("dumpable", [True, False])
    def test_drop_privileges_resets_dumpable(self, proc: Process, dumpable: bool) -> None:
        """drop_privileges ends with PR_SET_DUMPABLE(dumpable) (kernel/sys.c prctl)."""
        proc.drop_privileges(dumpable=dumpable)
        assert proc.dumpable is dumpable
        assert proc.capabilities == frozenset()

    def test_set_and_clear(self, proc: Process) -> None:
        """PR_SET_DUMPABLE 0/1 round trip (kernel/sys.c prctl)."""
        proc.dumpable = False
        assert proc.dumpable is False
        proc.dumpable = True
        assert proc.dumpable is True
