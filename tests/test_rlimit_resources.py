"""getrlimit/setrlimit of every resource prlimit64 knows (kernel/sys.c do_prlimit), both backends.

The memory limits (MEMLOCK, AS, DATA, STACK) have their own tests (test_mlock, test_mmap,
test_brk); here: the stored values of the others, the EINVAL/EPERM rules, RLIMIT_NOFILE's EMFILE
and RLIMIT_NPROC's fork refusal.
"""

from __future__ import annotations

import errno
import os
import resource

import pytest

from vmkit.process import Process

#: What a fresh process has on our machines (INIT_RLIMITS, fork_init, the machine's NOFILE).
MACHINE = {
    resource.RLIMIT_CPU: (-1, -1), resource.RLIMIT_FSIZE: (-1, -1), resource.RLIMIT_CORE: (0, -1),
    resource.RLIMIT_RSS: (-1, -1), resource.RLIMIT_NPROC: (96364, 96364),
    resource.RLIMIT_NOFILE: (20000, 20000), 10: (-1, -1), resource.RLIMIT_SIGPENDING: (96364, 96364),
    resource.RLIMIT_MSGQUEUE: (819200, 819200), resource.RLIMIT_NICE: (0, 0),
    resource.RLIMIT_RTPRIO: (0, 0), resource.RLIMIT_RTTIME: (-1, -1),
}
STORED_ONLY = [resource.RLIMIT_RSS, 10, resource.RLIMIT_SIGPENDING, resource.RLIMIT_MSGQUEUE,
               resource.RLIMIT_NICE, resource.RLIMIT_RTPRIO, resource.RLIMIT_RTTIME]


def errno_of(call, *args) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(OSError) as e:
        call(*args)
    return e.value.errno


@pytest.mark.parametrize("res", sorted(MACHINE))
def test_a_fresh_process_has_the_machine_limits(proc: Process, res: int) -> None:
    assert proc.getrlimit(res) == MACHINE[res]


@pytest.mark.parametrize("res", [16, 99, 1 << 31, -1])
def test_a_resource_past_rlim_nlimits_is_einval(proc: Process, res: int) -> None:
    """do_prlimit: resource >= RLIM_NLIMITS (16) is EINVAL, for reading and for writing."""
    assert errno_of(proc.getrlimit, res) == errno.EINVAL
    assert errno_of(proc.setrlimit, res, (0, 0)) == errno.EINVAL


@pytest.mark.parametrize("res", STORED_ONLY + [resource.RLIMIT_CPU, resource.RLIMIT_FSIZE,
                                               resource.RLIMIT_CORE, resource.RLIMIT_NOFILE])
def test_lowering_is_stored_and_read_back(proc: Process, res: int) -> None:
    soft, hard = MACHINE[res]
    new_hard = 4096 if hard == -1 or hard > 4096 else hard
    proc.setrlimit(res, (min(new_hard, 1 << 30) if res != resource.RLIMIT_CPU else 4096, new_hard))
    assert proc.getrlimit(res) == (min(new_hard, 1 << 30) if res != resource.RLIMIT_CPU else 4096, new_hard)


@pytest.mark.parametrize("res", STORED_ONLY)
def test_soft_above_hard_is_einval(proc: Process, res: int) -> None:
    assert errno_of(proc.setrlimit, res, (2, 1)) == errno.EINVAL
    assert proc.getrlimit(res) == MACHINE[res]


@pytest.mark.parametrize("res", [resource.RLIMIT_MSGQUEUE, resource.RLIMIT_NICE, resource.RLIMIT_NPROC])
def test_raising_the_hard_limit_needs_cap_sys_resource(proc: Process, res: int) -> None:
    """Root on our machines lacks CAP_SYS_RESOURCE: a higher hard limit is EPERM; a lower one
    cannot be raised back."""
    soft, hard = MACHINE[res]
    assert errno_of(proc.setrlimit, res, (soft, hard + 1)) == errno.EPERM
    proc.setrlimit(res, (0, 0))
    assert errno_of(proc.setrlimit, res, (0, 1)) == errno.EPERM
    assert proc.getrlimit(res) == (0, 0)


def test_nofile_above_nr_open_is_eperm_even_when_lowering_soft(proc: Process) -> None:
    """A hard RLIMIT_NOFILE above fs.nr_open (1048576) is EPERM before the capability check."""
    assert errno_of(proc.setrlimit, resource.RLIMIT_NOFILE, (10, -1)) == errno.EPERM
    assert errno_of(proc.setrlimit, resource.RLIMIT_NOFILE, (10, (1 << 20) + 1)) == errno.EPERM
    assert proc.getrlimit(resource.RLIMIT_NOFILE) == (20000, 20000)


def test_nofile_limits_new_descriptors(proc: Process, file_path: str) -> None:
    """alloc_fd: a descriptor at or past the soft RLIMIT_NOFILE is EMFILE (fs/file.c); 0-2 are open."""
    proc.setrlimit(resource.RLIMIT_NOFILE, (4, 20000))
    assert proc.open(file_path, os.O_RDWR | os.O_CREAT) == 3
    assert errno_of(proc.open, file_path, os.O_RDWR) == errno.EMFILE
    assert errno_of(proc.memfd_create, "m") == errno.EMFILE
    proc.close(3)
    assert proc.memfd_create("m") == 3


def test_nproc_zero_refuses_an_unprivileged_fork(proc: Process) -> None:
    """copy_process: over RLIMIT_NPROC (the user's own process counts, 1 > 0), fork is EAGAIN for a
    user that is not root and lacks CAP_SYS_RESOURCE / CAP_SYS_ADMIN (kernel/fork.c)."""
    proc.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    child = proc.fork()  # root is exempt
    child.terminate()
    proc.drop_privileges()
    assert errno_of(proc.fork) == errno.EAGAIN


def test_limits_are_inherited_by_fork(proc: Process) -> None:
    proc.setrlimit(resource.RLIMIT_MSGQUEUE, (1000, 2000))
    assert proc.fork().getrlimit(resource.RLIMIT_MSGQUEUE) == (1000, 2000)


def test_fsize_cuts_a_write_that_starts_below_it(proc: Process, file_path: str) -> None:
    """generic_write_check_limits: a write starting below RLIMIT_FSIZE is cut at the limit."""
    fd = proc.open(file_path, os.O_RDWR | os.O_CREAT)
    proc.setrlimit(resource.RLIMIT_FSIZE, (4096, -1))
    assert proc.pwrite(fd, b"x" * 100, 4000) == 96
    assert proc.pread(fd, 200, 3990) == b"\0" * 10 + b"x" * 96
