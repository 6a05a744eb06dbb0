"""process_madvise(2) and process_mrelease(2) through pidfds (machine-facts §13).

The caller is ``proc``; remote targets are other processes of the same backend.  On this kernel a
remote target accepts only COLD, PAGEOUT, WILLNEED and COLLAPSE (and needs CAP_SYS_NICE); the
caller's own mm accepts any madvise advice (mm/madvise.c process_madvise).
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW
from helpers import smaps_of, vm_flags

FIXED_ANON = PRIVATE_ANON | vmkit.MAP_FIXED
HUGE = 2 << 20
NO_SUCH_PID = 4194303


def populated(p: Process, pages: int = 4, addr: int = ARENA, fill: bytes = b"\xaa") -> int:
    """``pages`` private anonymous pages at ``addr``, every page written with ``fill``."""
    assert p.mmap(addr, pages * PAGE, RW, FIXED_ANON) == addr
    p.write(addr, fill * (pages * PAGE))
    return addr


@pytest.fixture
def target(spawn: Callable[[], Process]) -> Process:
    t = spawn()
    populated(t)
    return t


class TestPidfd:
    def test_pidfd_open_of_another_process(self, proc: Process, target: Process) -> None:
        """pidfd_open gives the lowest free descriptor (kernel/pid.c pidfd_open, fs/file.c alloc_fd)."""
        assert proc.pidfd_open(target.pid) == 3
        assert proc.pidfd_open(target.pid) == 4

    def test_pidfd_open_of_missing_pid_is_esrch(self, proc: Process) -> None:
        """No such process: ESRCH (kernel/pid.c pidfd_open)."""
        with pytest.raises(OSError) as e:
            proc.pidfd_open(NO_SUCH_PID)
        assert e.value.errno == errno.ESRCH


class TestRemote:
    @pytest.mark.parametrize("advice", [vmkit.MADV_COLD, vmkit.MADV_PAGEOUT, vmkit.MADV_WILLNEED])
    def test_non_destructive_advice_returns_the_length(self, proc: Process, target: Process,
                                                       advice: int) -> None:
        """COLD/PAGEOUT/WILLNEED are allowed remotely and return the bytes advised; data intact (mm/madvise.c process_madvise_remote_valid)."""
        fd = proc.pidfd_open(target.pid)
        assert proc.process_madvise(fd, [(ARENA, 4 * PAGE)], advice) == 4 * PAGE
        assert target.read(ARENA, 4 * PAGE) == b"\xaa" * (4 * PAGE)

    def test_several_iovecs_add_up(self, proc: Process, target: Process) -> None:
        """The return is the total length of all iovecs processed (mm/madvise.c vector_madvise)."""
        fd = proc.pidfd_open(target.pid)
        iov = [(ARENA, PAGE), (ARENA + 2 * PAGE, 2 * PAGE), (ARENA + PAGE, 0)]
        assert proc.process_madvise(fd, iov, vmkit.MADV_COLD) == 3 * PAGE

    def test_collapse_makes_a_huge_page_in_the_target(self, proc: Process,
                                                      spawn: Callable[[], Process]) -> None:
        """Remote MADV_COLLAPSE on a 2 MiB-aligned populated private anon range gives the target a THP (mm/khugepaged.c madvise_collapse)."""
        t = spawn()
        populated(t, HUGE // PAGE)
        assert smaps_of(t, ARENA)["AnonHugePages"] == "0 kB"
        fd = proc.pidfd_open(t.pid)
        assert proc.process_madvise(fd, [(ARENA, HUGE)], vmkit.MADV_COLLAPSE) == HUGE
        assert smaps_of(t, ARENA)["AnonHugePages"] == "2048 kB"
        assert t.read(ARENA + HUGE - 4, 4) == b"\xaa" * 4

    @pytest.mark.parametrize("advice", [
        vmkit.MADV_DONTNEED, vmkit.MADV_FREE, vmkit.MADV_NORMAL, vmkit.MADV_POPULATE_READ,
        vmkit.MADV_HUGEPAGE, vmkit.MADV_GUARD_INSTALL, vmkit.MADV_REMOVE, vmkit.MADV_DONTFORK,
    ])
    def test_other_advice_remotely_is_einval(self, proc: Process, target: Process, advice: int) -> None:
        """A remote target accepts only COLD/PAGEOUT/WILLNEED/COLLAPSE; anything else EINVAL (mm/madvise.c process_madvise_remote_valid)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, 4 * PAGE)], advice)
        assert e.value.errno == errno.EINVAL
        assert target.read(ARENA, 1) == b"\xaa"

    def test_remote_range_in_a_hole_is_enomem(self, proc: Process, target: Process) -> None:
        """An iovec over unmapped memory fails as madvise does: ENOMEM (mm/madvise.c madvise_walk_vmas)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA + 16 * PAGE, PAGE)], vmkit.MADV_COLD)
        assert e.value.errno == errno.ENOMEM

    def test_iovec_running_into_a_hole_is_enomem(self, proc: Process, target: Process) -> None:
        """One iovec over a VMA then a hole: do_madvise reports ENOMEM for the element (mm/madvise.c madvise_walk_vmas)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, 8 * PAGE)], vmkit.MADV_COLD)
        assert e.value.errno == errno.ENOMEM

    def test_later_iovec_in_a_hole_gives_the_partial_count(self, proc: Process, target: Process) -> None:
        """Bytes advised before the failing iovec are returned instead of the error (mm/madvise.c vector_madvise)."""
        fd = proc.pidfd_open(target.pid)
        iov = [(ARENA, 2 * PAGE), (ARENA + 16 * PAGE, PAGE), (ARENA + 2 * PAGE, PAGE)]
        assert proc.process_madvise(fd, iov, vmkit.MADV_COLD) == 2 * PAGE

    def test_flags_nonzero_is_einval(self, proc: Process, target: Process) -> None:
        """flags must be 0 (mm/madvise.c process_madvise)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_COLD, flags=1)
        assert e.value.errno == errno.EINVAL

    def test_vlen_over_iov_max_is_einval(self, proc: Process, target: Process) -> None:
        """More than UIO_MAXIOV (1024) iovecs: EINVAL (lib/iov_iter.c import_iovec)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)] * 1025, vmkit.MADV_COLD)
        assert e.value.errno == errno.EINVAL
        assert proc.process_madvise(fd, [(ARENA, 1)] * 1024, vmkit.MADV_COLD) == 1024

    def test_fd_that_is_not_a_pidfd_is_ebadf(self, proc: Process, target: Process) -> None:
        """fd 1 (/dev/null in a fresh process) is not a pidfd: EBADF (kernel/pid.c pidfd_get_task)."""
        with pytest.raises(OSError) as e:
            proc.process_madvise(1, [(ARENA, PAGE)], vmkit.MADV_COLD)
        assert e.value.errno == errno.EBADF

    def test_closed_fd_is_ebadf(self, proc: Process, target: Process) -> None:
        """A closed descriptor: EBADF (kernel/pid.c pidfd_get_task)."""
        fd = proc.pidfd_open(target.pid)
        proc.close(fd)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_COLD)
        assert e.value.errno == errno.EBADF

    def test_reaped_target_is_esrch(self, proc: Process, target: Process) -> None:
        """A pidfd whose process is gone: ESRCH (kernel/pid.c pidfd_get_task)."""
        fd = proc.pidfd_open(target.pid)
        target.kill(signal.SIGKILL)
        target.wait()
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_COLD)
        assert e.value.errno == errno.ESRCH


class TestSelf:
    def test_dontneed_on_self_zeroes(self, proc: Process) -> None:
        """On the caller's own mm any advice is accepted; DONTNEED zeroes private anon (mm/madvise.c process_madvise, madvise_dontneed_free)."""
        populated(proc)
        fd = proc.pidfd_open(proc.pid)
        assert proc.process_madvise(fd, [(ARENA, 4 * PAGE)], vmkit.MADV_DONTNEED) == 4 * PAGE
        assert proc.read(ARENA, 4 * PAGE) == bytes(4 * PAGE)

    @pytest.mark.parametrize("advice, flag", [
        (vmkit.MADV_FREE, None), (vmkit.MADV_WILLNEED, None), (vmkit.MADV_COLD, None),
        (vmkit.MADV_PAGEOUT, None), (vmkit.MADV_POPULATE_WRITE, None), (vmkit.MADV_NORMAL, None),
        (vmkit.MADV_HUGEPAGE, "hg"), (vmkit.MADV_DONTFORK, "dc"), (vmkit.MADV_DOFORK, None),
        (vmkit.MADV_WIPEONFORK, "wf"), (vmkit.MADV_RANDOM, "rr"), (vmkit.MADV_GUARD_INSTALL, "gu"),
        (vmkit.MADV_GUARD_REMOVE, None),
    ])
    def test_any_advice_on_self(self, proc: Process, advice: int, flag: str | None) -> None:
        """Self-advice runs do_madvise like madvise(2): returns the length, sets the VmFlag (mm/madvise.c process_madvise)."""
        populated(proc)
        fd = proc.pidfd_open(proc.pid)
        assert proc.process_madvise(fd, [(ARENA, 4 * PAGE)], advice) == 4 * PAGE
        if flag is not None:
            assert flag in vm_flags(proc, ARENA)

    def test_guard_install_on_self_faults(self, proc: Process) -> None:
        """GUARD_INSTALL through process_madvise on self makes the page fault (mm/madvise.c madvise_guard_install)."""
        populated(proc)
        fd = proc.pidfd_open(proc.pid)
        assert proc.process_madvise(fd, [(ARENA + PAGE, PAGE)], vmkit.MADV_GUARD_INSTALL) == PAGE
        with pytest.raises(vmkit.SegmentationFault) as e:
            proc.read(ARENA + PAGE, 1)
        assert e.value.addr == ARENA + PAGE
        assert proc.read(ARENA, 1) == b"\xaa"

    def test_remove_on_self_private_anon_is_einval(self, proc: Process) -> None:
        """Self-advice keeps madvise's per-VMA rules: REMOVE on private anon EINVAL (mm/madvise.c madvise_remove)."""
        populated(proc)
        fd = proc.pidfd_open(proc.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_REMOVE)
        assert e.value.errno == errno.EINVAL

    @pytest.mark.parametrize("fd", [vmkit.PIDFD_SELF_THREAD_GROUP, vmkit.PIDFD_SELF_THREAD])
    def test_pidfd_self_sentinels(self, proc: Process, fd: int) -> None:
        """PIDFD_SELF_THREAD_GROUP (-10001) / PIDFD_SELF_THREAD (-10000) name the caller without a pidfd (kernel/pid.c pidfd_get_task)."""
        assert (vmkit.PIDFD_SELF_THREAD, vmkit.PIDFD_SELF_THREAD_GROUP) == (-10000, -10001)
        populated(proc)
        assert proc.process_madvise(fd, [(ARENA, 2 * PAGE)], vmkit.MADV_DONTNEED) == 2 * PAGE
        assert proc.read(ARENA, 2 * PAGE + 1) == bytes(2 * PAGE) + b"\xaa"


class TestPermissions:
    def test_unprivileged_on_root_target_is_eacces(self, proc: Process, target: Process) -> None:
        """pidfd_open needs no permission, but mm_access's ptrace check fails: EACCES (mm/madvise.c process_madvise, kernel/fork.c mm_access)."""
        proc.drop_privileges()
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_COLD)
        assert e.value.errno == errno.EACCES

    def test_unprivileged_root_target_checks_access_before_advice(self, proc: Process,
                                                                   target: Process) -> None:
        """6.18 runs mm_access before the remote-advice check: DONTNEED on a root target is EACCES, not EINVAL (mm/madvise.c process_madvise)."""
        proc.drop_privileges()
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_DONTNEED)
        assert e.value.errno == errno.EACCES

    @pytest.mark.parametrize("advice", [vmkit.MADV_COLD, vmkit.MADV_PAGEOUT, vmkit.MADV_WILLNEED,
                                        vmkit.MADV_COLLAPSE])
    def test_unprivileged_on_same_uid_target_is_eperm(self, proc: Process, target: Process,
                                                      advice: int) -> None:
        """Access passes (same uid, dumpable) but a remote mm needs CAP_SYS_NICE: EPERM (mm/madvise.c process_madvise)."""
        proc.drop_privileges()
        target.drop_privileges()
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, 4 * PAGE)], advice)
        assert e.value.errno == errno.EPERM

    def test_unprivileged_same_uid_target_invalid_advice(self, proc: Process, target: Process) -> None:
        """6.18 order: mm_access, then the remote-advice check (EINVAL) before CAP_SYS_NICE (EPERM) (mm/madvise.c process_madvise)."""
        proc.drop_privileges()
        target.drop_privileges()
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_DONTNEED)
        assert e.value.errno == errno.EINVAL

    def test_unprivileged_on_self_needs_no_capability(self, proc: Process) -> None:
        """The CAP_SYS_NICE check applies only to another mm (mm/madvise.c process_madvise)."""
        populated(proc)
        proc.drop_privileges()
        fd = proc.pidfd_open(proc.pid)
        assert proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_COLD) == PAGE
        assert proc.process_madvise(fd, [(ARENA, PAGE)], vmkit.MADV_DONTNEED) == PAGE
        assert proc.read(ARENA, PAGE) == bytes(PAGE)

    def test_root_on_unprivileged_target_is_allowed(self, proc: Process, target: Process) -> None:
        """Root has CAP_SYS_PTRACE and CAP_SYS_NICE: remote COLD on a uid-65534 target works (kernel/ptrace.c ptrace_has_cap)."""
        target.drop_privileges(dumpable=False)
        fd = proc.pidfd_open(target.pid)
        assert proc.process_madvise(fd, [(ARENA, 4 * PAGE)], vmkit.MADV_COLD) == 4 * PAGE


class TestMrelease:
    def test_live_process_is_einval(self, proc: Process, target: Process) -> None:
        """A process that is not exiting cannot be reaped: EINVAL (mm/oom_kill.c process_mrelease task_will_free_mem)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_mrelease(fd)
        assert e.value.errno == errno.EINVAL
        assert target.read(ARENA, 1) == b"\xaa"

    def test_self_is_einval(self, proc: Process) -> None:
        """The caller is alive, so releasing its own mm is EINVAL (mm/oom_kill.c process_mrelease)."""
        fd = proc.pidfd_open(proc.pid)
        with pytest.raises(OSError) as e:
            proc.process_mrelease(fd)
        assert e.value.errno == errno.EINVAL

    def test_flags_nonzero_is_einval(self, proc: Process, target: Process) -> None:
        """flags must be 0 (mm/oom_kill.c process_mrelease)."""
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_mrelease(fd, flags=1)
        assert e.value.errno == errno.EINVAL

    def test_fd_that_is_not_a_pidfd_is_ebadf(self, proc: Process) -> None:
        """fd 1 (/dev/null) is not a pidfd: EBADF (kernel/pid.c pidfd_get_task)."""
        with pytest.raises(OSError) as e:
            proc.process_mrelease(1)
        assert e.value.errno == errno.EBADF

    def test_no_permission_check_beyond_the_pidfd(self, proc: Process, target: Process) -> None:
        """An unprivileged holder of a pidfd to a root process gets EINVAL (alive), not EPERM (mm/oom_kill.c process_mrelease)."""
        proc.drop_privileges()
        fd = proc.pidfd_open(target.pid)
        with pytest.raises(OSError) as e:
            proc.process_mrelease(fd)
        assert e.value.errno == errno.EINVAL

    def test_after_sigkill_is_ok_or_esrch(self, proc: Process, target: Process) -> None:
        """Right after SIGKILL the mm is reaped (0) or already gone (ESRCH): a real race (mm/oom_kill.c process_mrelease)."""
        fd = proc.pidfd_open(target.pid)
        target.kill(signal.SIGKILL)
        try:
            proc.process_mrelease(fd)
        except OSError as e:
            assert e.errno == errno.ESRCH
        assert target.wait() == signal.SIGKILL

    def test_after_wait_is_esrch(self, proc: Process, target: Process) -> None:
        """A reaped process has no task: ESRCH (kernel/pid.c pidfd_get_task)."""
        fd = proc.pidfd_open(target.pid)
        target.kill(signal.SIGKILL)
        assert target.wait() == signal.SIGKILL
        with pytest.raises(OSError) as e:
            proc.process_mrelease(fd)
        assert e.value.errno == errno.ESRCH
