"""process_vm_readv / process_vm_writev between two processes (machine-facts §12).

The reader is ``proc``; the target is another process of the same backend.  The target maps pages
p0..p3 at ARENA and unmaps p2, leaving a hole.  Transfers stop at the first unmapped page, even
inside one iovec element, and fail with EFAULT only when nothing was copied (mm/process_vm_access.c).
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Callable

import pytest

import vmkit
from vmkit.process import Process

from conftest import ARENA, PAGE, PRIVATE_ANON, RW

NO_SUCH_PID = 4194303  # PID_MAX_LIMIT - 1: above pid_max, so no process can have it
FIXED_ANON = PRIVATE_ANON | vmkit.MAP_FIXED
LOCAL = ARENA + 0x1000000  # where the reader keeps its buffers


def pattern(i: int) -> bytes:
    """A page whose bytes differ from every other pattern page at the same offset."""
    return bytes((j + 37 * i + 1) & 0xFF for j in range(PAGE))


P = [ARENA + i * PAGE for i in range(4)]


def make_target(spawn: Callable[[], Process]) -> Process:
    """A target with p0, p1, p3 mapped and filled with pattern(i), and p2 a hole."""
    t = spawn()
    assert t.mmap(ARENA, 4 * PAGE, RW, FIXED_ANON) == ARENA
    for i in range(4):
        t.write(P[i], pattern(i))
    t.munmap(P[2], PAGE)
    return t


def local_buffer(proc: Process, pages: int = 4) -> int:
    buf = proc.mmap(LOCAL, pages * PAGE, RW, FIXED_ANON)
    assert buf == LOCAL
    return buf


@pytest.fixture
def target(spawn: Callable[[], Process]) -> Process:
    return make_target(spawn)


class TestReadv:
    def test_one_page(self, proc: Process, target: Process) -> None:
        """A readable remote page is copied whole (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        assert proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)]) == PAGE
        assert proc.read(buf, PAGE) == pattern(0)

    def test_one_remote_iovec_stops_at_the_hole(self, proc: Process, target: Process) -> None:
        """Inside one remote iovec the copy stops at the first unmapped page: partial count (mm/process_vm_access.c process_vm_rw_single_vec)."""
        buf = local_buffer(proc)
        assert proc.process_vm_readv(target.pid, [(buf, 4 * PAGE)], [(P[0], 4 * PAGE)]) == 2 * PAGE
        assert proc.read(buf, 2 * PAGE) == pattern(0) + pattern(1)
        assert proc.read(buf + 2 * PAGE, 2 * PAGE) == bytes(2 * PAGE)

    def test_remote_iovecs_stop_at_the_hole(self, proc: Process, target: Process) -> None:
        """With one iovec per page the copy stops at the hole and later iovecs are not tried (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        remote = [(P[i], PAGE) for i in range(4)]
        assert proc.process_vm_readv(target.pid, [(buf, 4 * PAGE)], remote) == 2 * PAGE
        assert proc.read(buf + 3 * PAGE, PAGE) == bytes(PAGE)

    def test_from_mid_page_into_the_hole(self, proc: Process, target: Process) -> None:
        """A range starting mid-p1 and running into the hole copies up to the hole (mm/process_vm_access.c process_vm_rw_pages)."""
        buf = local_buffer(proc)
        n = proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[1] + PAGE // 2, PAGE)])
        assert n == PAGE // 2
        assert proc.read(buf, PAGE // 2) == pattern(1)[PAGE // 2:]

    @pytest.mark.parametrize("remote", [
        pytest.param([(P[2], PAGE)], id="in-hole"),
        pytest.param([(P[2], PAGE), (P[3], PAGE)], id="hole-then-p3"),
    ])
    def test_nothing_copied_is_efault(self, proc: Process, target: Process,
                                      remote: list[tuple[int, int]]) -> None:
        """A transfer that copies nothing at the first page fails EFAULT, with no skipping (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(buf, 2 * PAGE)], remote)
        assert e.value.errno == errno.EFAULT

    def test_iovecs_of_different_shapes_are_laid_out_consecutively(self, proc: Process,
                                                                   target: Process) -> None:
        """Local 10+10 vs remote 5+15: 20 bytes, remote bytes streamed into local iovecs in order (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        local = [(buf, 10), (buf + 100, 10)]
        remote = [(P[0], 5), (P[1] + 50, 15)]
        assert proc.process_vm_readv(target.pid, local, remote) == 20
        stream = pattern(0)[:5] + pattern(1)[50:65]
        assert proc.read(buf, 10) == stream[:10]
        assert proc.read(buf + 100, 10) == stream[10:]
        assert proc.read(buf + 10, 90) == bytes(90)

    def test_remote_prot_none_page_is_efault(self, proc: Process, target: Process) -> None:
        """An inaccessible remote page cannot be pinned: EFAULT (mm/gup.c check_vma_flags)."""
        buf = local_buffer(proc)
        target.mprotect(P[0], PAGE, vmkit.PROT_NONE)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)])
        assert e.value.errno == errno.EFAULT
        # ...and a range starting on the readable p1 is unaffected
        assert proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[1], PAGE)]) == PAGE

    def test_remote_guard_page_is_efault(self, proc: Process, target: Process) -> None:
        """A guard-page marker is never faulted in by GUP: EFAULT (mm/memory.c handle_pte_marker)."""
        buf = local_buffer(proc)
        target.madvise(P[1], PAGE, vmkit.MADV_GUARD_INSTALL)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[1], PAGE)])
        assert e.value.errno == errno.EFAULT
        # p0 then the guard: partial
        assert proc.process_vm_readv(target.pid, [(buf, 2 * PAGE)], [(P[0], 2 * PAGE)]) == PAGE

    def test_read_of_own_pid(self, proc: Process) -> None:
        """A process may read itself: pid == self, mapped range copies (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        proc.write(buf + PAGE, b"self-copy")
        assert proc.process_vm_readv(proc.pid, [(buf, 9)], [(buf + PAGE, 9)]) == 9
        assert proc.read(buf, 9) == b"self-copy"

    def test_self_unmapped_remote_address_is_efault(self, proc: Process) -> None:
        """Reading itself at an address not mapped in itself: EFAULT (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(proc.pid, [(buf, PAGE)], [(ARENA + 0x2000000, PAGE)])
        assert e.value.errno == errno.EFAULT


class TestArguments:
    def test_flags_nonzero_is_einval(self, proc: Process, target: Process) -> None:
        """Any flag bit is EINVAL (mm/process_vm_access.c process_vm_rw)."""
        buf = local_buffer(proc)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)], flags=1)
        assert e.value.errno == errno.EINVAL

    def test_bad_local_buffer_is_efault(self, proc: Process, target: Process) -> None:
        """An unmapped local buffer faults in copy_page_to_iter: EFAULT (mm/process_vm_access.c process_vm_rw_pages)."""
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(ARENA + 0x3000000, PAGE)], [(P[0], PAGE)])
        assert e.value.errno == errno.EFAULT

    @pytest.mark.parametrize("local, remote", [
        pytest.param([(LOCAL, 0)], [(ARENA, 0)], id="zero-length-iovecs"),
        pytest.param([], [], id="empty-lists"),
        pytest.param([(LOCAL, PAGE)], [], id="no-remote-iovecs"),
        pytest.param([], [(ARENA, PAGE)], id="no-local-iovecs"),
    ])
    def test_nothing_to_copy_is_zero(self, proc: Process, target: Process,
                                     local: list[tuple[int, int]], remote: list[tuple[int, int]]) -> None:
        """Zero total length returns 0 before any lookup (mm/process_vm_access.c process_vm_rw)."""
        local_buffer(proc)
        assert proc.process_vm_readv(target.pid, local, remote) == 0
        assert proc.process_vm_writev(target.pid, local, remote) == 0

    def test_zero_lengths_return_zero_even_for_a_missing_pid(self, proc: Process) -> None:
        """Nothing to copy returns 0 before the pid is looked up (mm/process_vm_access.c process_vm_rw)."""
        assert proc.process_vm_readv(NO_SUCH_PID, [], []) == 0

    @pytest.mark.parametrize("side", ["local", "remote"])
    def test_iovcnt_over_iov_max_is_einval(self, proc: Process, target: Process, side: str) -> None:
        """1025 iovecs exceed UIO_MAXIOV: EINVAL (lib/iov_iter.c import_iovec / mm/process_vm_access.c)."""
        buf = local_buffer(proc)
        many = [(buf, 1)] * 1025
        one = [(P[0], 1025)]
        local, remote = (many, one) if side == "local" else ([(buf, 1025)], [(P[0], 1)] * 1025)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, local, remote)
        assert e.value.errno == errno.EINVAL

    def test_iov_max_iovecs_are_accepted(self, proc: Process, target: Process) -> None:
        """Exactly UIO_MAXIOV (1024) remote iovecs are fine (mm/process_vm_access.c process_vm_rw)."""
        buf = local_buffer(proc)
        assert proc.process_vm_readv(target.pid, [(buf, 1024)], [(P[0] + i, 1) for i in range(1024)]) == 1024
        assert proc.read(buf, 1024) == pattern(0)[:1024]

    def test_nonexistent_pid_is_esrch(self, proc: Process) -> None:
        """No task for the pid: ESRCH (mm/process_vm_access.c process_vm_rw_core find_get_task_by_vpid)."""
        buf = local_buffer(proc)
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(NO_SUCH_PID, [(buf, PAGE)], [(ARENA, PAGE)])
        assert e.value.errno == errno.ESRCH

    def test_reaped_target_is_esrch(self, proc: Process, target: Process) -> None:
        """A killed and reaped target no longer exists: ESRCH (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        pid = target.pid
        target.kill(signal.SIGKILL)
        target.wait()
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(pid, [(buf, PAGE)], [(ARENA, PAGE)])
        assert e.value.errno == errno.ESRCH


class TestWritev:
    def test_one_page_is_visible_to_the_target(self, proc: Process, target: Process) -> None:
        """writev stores into the target's page (mm/process_vm_access.c process_vm_rw_pages)."""
        buf = local_buffer(proc)
        proc.write(buf, pattern(9))
        assert proc.process_vm_writev(target.pid, [(buf, PAGE)], [(P[0], PAGE)]) == PAGE
        assert target.read(P[0], PAGE) == pattern(9)
        assert target.read(P[1], PAGE) == pattern(1)

    def test_into_the_hole_is_partial(self, proc: Process, target: Process) -> None:
        """writev from p1 over the hole writes p1 and stops: 4096 (mm/process_vm_access.c process_vm_rw_single_vec)."""
        buf = local_buffer(proc)
        proc.write(buf, pattern(7) + pattern(8))
        assert proc.process_vm_writev(target.pid, [(buf, 2 * PAGE)], [(P[1], 2 * PAGE)]) == PAGE
        assert target.read(P[1], PAGE) == pattern(7)
        assert target.read(P[3], PAGE) == pattern(3)

    def test_entirely_in_the_hole_is_efault(self, proc: Process, target: Process) -> None:
        """writev that copies nothing: EFAULT (mm/process_vm_access.c process_vm_rw_core)."""
        buf = local_buffer(proc)
        with pytest.raises(OSError) as e:
            proc.process_vm_writev(target.pid, [(buf, PAGE)], [(P[2], PAGE)])
        assert e.value.errno == errno.EFAULT

    def test_write_to_read_only_remote_page_is_efault(self, proc: Process, target: Process) -> None:
        """GUP for write without FOLL_FORCE refuses a read-only VMA: EFAULT (mm/gup.c check_vma_flags)."""
        buf = local_buffer(proc)
        target.mprotect(P[0], PAGE, vmkit.PROT_READ)
        with pytest.raises(OSError) as e:
            proc.process_vm_writev(target.pid, [(buf, PAGE)], [(P[0], PAGE)])
        assert e.value.errno == errno.EFAULT
        assert target.read(P[0], PAGE) == pattern(0)

    def test_write_populates_an_untouched_remote_page(self, proc: Process, target: Process) -> None:
        """writev faults in an untouched private page in the target (mm/gup.c faultin_page)."""
        buf = local_buffer(proc)
        fresh = target.mmap(ARENA + 0x100000, PAGE, RW, FIXED_ANON)
        assert target.mincore(fresh, PAGE) == b"\x00"
        proc.write(buf, b"hello")
        assert proc.process_vm_writev(target.pid, [(buf, 5)], [(fresh + 100, 5)]) == 5
        assert target.mincore(fresh, PAGE) == b"\x01"
        assert target.read(fresh + 98, 9) == b"\x00\x00hello\x00\x00"


class TestPermissions:
    def test_unprivileged_reader_on_root_target_is_eperm(self, proc: Process, target: Process) -> None:
        """Without CAP_SYS_PTRACE a different-uid target fails the access check: EPERM (kernel/ptrace.c __ptrace_may_access)."""
        buf = local_buffer(proc)
        proc.drop_privileges()
        assert proc.capabilities == frozenset()
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)])
        assert e.value.errno == errno.EPERM
        with pytest.raises(OSError) as e:
            proc.process_vm_writev(target.pid, [(buf, PAGE)], [(P[0], PAGE)])
        assert e.value.errno == errno.EPERM

    def test_same_uid_dumpable_target_is_allowed(self, proc: Process, target: Process) -> None:
        """Same uid/gid and a dumpable target pass the access check (kernel/ptrace.c __ptrace_may_access)."""
        buf = local_buffer(proc)
        proc.drop_privileges()
        target.drop_privileges()
        assert target.dumpable is True
        assert proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)]) == PAGE
        assert proc.read(buf, PAGE) == pattern(0)
        assert proc.process_vm_writev(target.pid, [(buf, 4)], [(P[3], 4)]) == 4
        assert target.read(P[3], 4) == pattern(0)[:4]

    def test_same_uid_non_dumpable_target_is_eperm(self, proc: Process, target: Process) -> None:
        """A target that setuid()s from root becomes non-dumpable: same-uid readers get EPERM (kernel/ptrace.c __ptrace_may_access get_dumpable)."""
        buf = local_buffer(proc)
        proc.drop_privileges()
        target.setresgid(65534, 65534, 65534)
        target.setresuid(65534, 65534, 65534)
        assert target.dumpable is False
        with pytest.raises(OSError) as e:
            proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)])
        assert e.value.errno == errno.EPERM
        target.dumpable = True
        assert proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)]) == PAGE

    def test_root_reader_on_unprivileged_non_dumpable_target_is_allowed(self, proc: Process,
                                                                         target: Process) -> None:
        """Root's CAP_SYS_PTRACE bypasses both the uid and the dumpable checks (kernel/ptrace.c ptrace_has_cap)."""
        buf = local_buffer(proc)
        target.drop_privileges(dumpable=False)
        assert proc.process_vm_readv(target.pid, [(buf, PAGE)], [(P[0], PAGE)]) == PAGE
