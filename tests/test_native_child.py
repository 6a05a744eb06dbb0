"""The isolated native child itself: determinism, isolation, and reporting of its death.

These are properties of ``vmkit.native.spawn()``, not of the kernel, so they run on native only.
"""

from __future__ import annotations

import signal

import pytest

import vmkit
from vmkit import native
from vmkit.errors import ProcessGone
from vmkit.native import ChildRuntimeLost
from vmkit.native._runtime import RUNTIME_BASE, RUNTIME_SIZE

from conftest import PAGE, PRIVATE_ANON, RW
from helpers import parse_maps

pytestmark = pytest.mark.native_only


def _sequence(p: vmkit.Process) -> str:
    a = p.mmap(None, 5 * PAGE, RW, PRIVATE_ANON)
    p.write(a + PAGE, b"x" * 100)
    p.mprotect(a + 2 * PAGE, PAGE, vmkit.PROT_READ)
    b = p.mmap(None, 2 << 20, RW, PRIVATE_ANON)
    p.munmap(b + PAGE, PAGE)
    p.brk(p.brk(0) + 3 * PAGE)
    p.read(0x7FFFFFFDD000, 8)  # below [stack]: grows it
    return p.maps()


def test_same_calls_give_byte_identical_maps() -> None:
    with native.spawn() as p, native.spawn() as q:
        assert p.maps() == q.maps()
        assert _sequence(p) == _sequence(q)


def test_layout_is_the_runtime_and_the_kernel_specials_only() -> None:
    with native.spawn() as p:
        lines = parse_maps(p.maps())
        assert (lines[0].start, lines[0].end, lines[0].inode) == (RUNTIME_BASE, RUNTIME_BASE + RUNTIME_SIZE, 0)
        assert [m.name for m in lines[1:]] == ["[vvar]", "[vvar_vclock]", "[vdso]", "[stack]", "[vsyscall]"]
        stack = lines[-2]
        assert (stack.start, stack.end) == (0x7FFFFFFDE000, 0x7FFFFFFFF000)


def test_the_runtime_adds_no_mapping_between_calls() -> None:
    with native.spawn() as p:
        before = p.maps()
        for _ in range(50):
            p.brk(0)
            p.mincore(RUNTIME_BASE, PAGE)
            fd = p.memfd_create("x")
            p.close(fd)
        assert p.maps() == before


def test_aslr_on_moves_the_stack() -> None:
    with native.spawn(aslr=True) as p, native.spawn(aslr=True) as q:
        assert p.maps() != q.maps()


def test_unmapping_everything_harms_only_the_child() -> None:
    with native.spawn() as p:
        p.munmap(0, vmkit.TASK_SIZE)
        with pytest.raises(ChildRuntimeLost, match="spawn a new child"):
            p.brk(0)
    assert native.brk(0) > 0  # the caller is intact


def test_child_killed_from_outside_is_reported_with_the_signal() -> None:
    with native.spawn() as p:
        import os

        os.kill(p.pid, signal.SIGKILL)
        with pytest.raises(ProcessGone, match="SIGKILL"):
            p.brk(0)


def test_fatal_signal_through_kill_is_reported() -> None:
    with native.spawn() as p:
        p.kill(signal.SIGTERM)
        with pytest.raises(ProcessGone, match="SIGTERM"):
            p.brk(0)
        assert p.wait() == signal.SIGTERM


def test_ignored_signal_leaves_the_child_working() -> None:
    with native.spawn() as p:
        p.kill(signal.SIGCHLD)
        assert p.brk(0) > 0


def test_wait_on_a_live_child_refuses_instead_of_hanging() -> None:
    with native.spawn() as p:
        with pytest.raises(ChildProcessError, match="kill it"):
            p.wait()


def test_fork_child_is_reaped_through_its_real_parent() -> None:
    with native.spawn() as p:
        c = p.fork()
        c.kill(signal.SIGKILL)
        assert c.wait() == signal.SIGKILL
        assert p.brk(0) > 0


def test_large_pread_and_pwrite_go_through_the_scratch_in_pieces(file_path: str) -> None:
    with native.spawn() as p:
        fd = p.open(file_path, 0o102, 0o600)  # O_RDWR | O_CREAT
        data = bytes(range(256)) * 9000  # over 2 MiB, beyond the scratch area
        assert p.pwrite(fd, data, 0) == len(data)
        assert p.pread(fd, len(data) + 10, 0) == data


def test_vvar_is_readable_with_cpu_loads() -> None:
    with native.spawn() as p:
        vdso = next(m for m in parse_maps(p.maps()) if m.name == "[vdso]")
        assert p.read(vdso.start, 4) == b"\x7fELF"
