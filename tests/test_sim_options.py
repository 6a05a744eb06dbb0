"""Model-kernel tunables our machines cannot exercise: ``Kernel(memory_failure=True)`` (a kernel built
with CONFIG_MEMORY_FAILURE: MADV_HWPOISON and MADV_SOFT_OFFLINE) and ``Kernel(swap=...)``.

The expected behaviour comes from the kernel source (mm/madvise.c ``madvise_inject_error``,
mm/memory-failure.c ``memory_failure``, ``soft_offline_page``; mm/vmscan.c for PAGEOUT), not from
the real machines, which have neither option; docs/model.md describes both.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import pytest

import vmkit
from vmkit import sim
from vmkit.errors import BusError
from vmkit.process import Process

from conftest import PAGE, PRIVATE_ANON, RW
from helpers import kb, smaps_of

pytestmark = pytest.mark.sim_only

HWPOISON, SOFT_OFFLINE = 100, 101
BUS_MCEERR_AR = 4


@pytest.fixture
def mf() -> Iterator[Process]:
    """A process of a model kernel with CONFIG_MEMORY_FAILURE."""
    p = sim.Kernel(check_invariants=True, memory_failure=True).spawn()
    yield p
    p.terminate()


def written(p: Process, pages: int) -> int:
    """``pages`` private anonymous pages, each filled with its own byte."""
    addr = p.mmap(None, pages * PAGE, RW, PRIVATE_ANON)
    for i in range(pages):
        p.write(addr + i * PAGE, bytes([0x41 + i]) * PAGE)
    return addr


def rss_kb(p: Process, addr: int) -> int:
    return kb(smaps_of(p, addr)["Rss"])


# --- the default kernel: like our machines ------------------------------------------------------------

class TestDefaultKernelSim:
    @pytest.mark.parametrize("advice", [HWPOISON, SOFT_OFFLINE])
    def test_memory_failure_advice_is_einval(self, advice: int) -> None:
        p = sim.Kernel(check_invariants=True).spawn()
        addr = written(p, 1)
        for length in (PAGE, 0):  # invalid advice comes before the empty-range shortcut
            with pytest.raises(OSError) as e:
                p.madvise(addr, length, advice)
            assert e.value.errno == errno.EINVAL
        assert p.read(addr, 1) == b"A"
        p.terminate()


# --- CONFIG_MEMORY_FAILURE ------------------------------------------------------------------------------

class TestMemoryFailureSim:
    @pytest.mark.parametrize("advice", [HWPOISON, SOFT_OFFLINE])
    def test_needs_cap_sys_admin(self, mf: Process, advice: int) -> None:
        addr = written(mf, 1)
        mf.capabilities = mf.capabilities - {"CAP_SYS_ADMIN"}
        with pytest.raises(OSError) as e:
            mf.madvise(addr, PAGE, advice)
        assert e.value.errno == errno.EPERM
        # the madvise_should_skip checks come first
        with pytest.raises(OSError) as e:
            mf.madvise(addr + 1, PAGE, advice)
        assert e.value.errno == errno.EINVAL
        mf.madvise(addr, 0, advice)

    def test_hwpoison_of_a_dirty_page_signals_the_caller_then_every_access_faults(self, mf: Process) -> None:
        addr = written(mf, 3)
        target = addr + PAGE
        with pytest.raises(BusError) as e:  # kill_procs: the dirty page force-kills the caller
            mf.madvise(target, PAGE, HWPOISON)
        assert (e.value.addr, e.value.code) == (target, BUS_MCEERR_AR)
        for access in (lambda: mf.read(target, 1), lambda: mf.write(target + 8, b"x")):
            with pytest.raises(BusError) as e:
                access()
            assert e.value.code == BUS_MCEERR_AR
        with pytest.raises(BusError) as e:  # an access running into it faults at its first byte
            mf.read(addr + PAGE - 2, 4)
        assert (e.value.addr, e.value.code) == (target, BUS_MCEERR_AR)
        assert mf.read(addr, 1) == b"A" and mf.read(addr + 2 * PAGE, 1) == b"C"
        assert mf.mincore(addr, 3 * PAGE) == b"\x01\x01\x01"  # a hwpoison entry counts as resident

    def test_hwpoison_of_a_clean_page_does_not_signal(self, mf: Process) -> None:
        addr = written(mf, 1)
        mf.madvise(addr, PAGE, vmkit.MADV_FREE)  # clean, lazily freed: no forced kill
        mf.madvise(addr, PAGE, HWPOISON)
        with pytest.raises(BusError) as e:
            mf.read(addr, 1)
        assert (e.value.addr, e.value.code) == (addr, BUS_MCEERR_AR)

    def test_length_is_not_rounded_and_each_page_is_poisoned(self, mf: Process) -> None:
        addr = written(mf, 3)
        with pytest.raises(BusError) as e:  # one signal, for the first page
            mf.madvise(addr, PAGE + 1, HWPOISON)  # start + len_in: pages 0 and 1
        assert e.value.addr == addr
        for page in (0, 1):
            with pytest.raises(BusError):
                mf.read(addr + page * PAGE, 1)
        assert mf.read(addr + 2 * PAGE, 1) == b"C"

    def test_a_poisoned_page_or_a_hole_is_efault(self, mf: Process) -> None:
        addr = written(mf, 1)
        with pytest.raises(BusError):
            mf.madvise(addr, PAGE, HWPOISON)
        with pytest.raises(OSError) as e:  # get_user_pages_fast faults on the hwpoison entry
            mf.madvise(addr, PAGE, HWPOISON)
        assert e.value.errno == errno.EFAULT
        with pytest.raises(OSError) as e:
            mf.madvise(addr, PAGE, SOFT_OFFLINE)
        assert e.value.errno == errno.EFAULT
        hole = mf.mmap(None, PAGE, RW, PRIVATE_ANON)
        mf.munmap(hole, PAGE)
        with pytest.raises(OSError) as e:
            mf.madvise(hole, PAGE, HWPOISON)
        assert e.value.errno == errno.EFAULT

    def test_an_error_after_a_poisoned_dirty_page_still_signals(self, mf: Process) -> None:
        addr = written(mf, 2)
        mf.munmap(addr + PAGE, PAGE)
        with pytest.raises(BusError) as e:  # EFAULT at the hole, but the SIGBUS is already pending
            mf.madvise(addr, 2 * PAGE, HWPOISON)
        assert e.value.addr == addr

    def test_zapping_the_entry_gives_a_fresh_page(self, mf: Process) -> None:
        addr = written(mf, 2)
        with pytest.raises(BusError):
            mf.madvise(addr, PAGE, HWPOISON)
        mf.madvise(addr, PAGE, vmkit.MADV_DONTNEED)
        assert mf.read(addr, 2) == b"\0\0"
        mf.munmap(addr, 2 * PAGE)
        again = written(mf, 2)  # the poisoned frame never comes back into use
        assert mf.read(again, 1) == b"A" and mf.read(again + PAGE, 1) == b"B"

    def test_a_fork_child_inherits_the_poison(self, mf: Process) -> None:
        addr = written(mf, 2)
        child = mf.fork()
        with pytest.raises(BusError):
            mf.madvise(addr, PAGE, HWPOISON)
        with pytest.raises(BusError) as e:  # its entry became a hwpoison entry too
            child.read(addr, 1)
        assert e.value.code == BUS_MCEERR_AR
        assert child.read(addr + PAGE, 1) == b"B"
        child.terminate()

    def test_soft_offline_keeps_contents_and_mappings(self, mf: Process) -> None:
        addr = written(mf, 4)
        before = rss_kb(mf, addr)
        mf.madvise(addr, 4 * PAGE, SOFT_OFFLINE)
        assert [mf.read(addr + i * PAGE, 1) for i in range(4)] == [b"A", b"B", b"C", b"D"]
        mf.write(addr, b"z")
        assert mf.read(addr, 1) == b"z"
        assert rss_kb(mf, addr) == before
        assert mf.mincore(addr, 4 * PAGE) == b"\x01" * 4

    def test_soft_offline_of_a_cow_shared_page_keeps_both_copies_apart(self, mf: Process) -> None:
        addr = written(mf, 1)
        child = mf.fork()
        mf.madvise(addr, PAGE, SOFT_OFFLINE)
        child.write(addr, b"c")
        assert mf.read(addr, 1) == b"A" and child.read(addr, 1) == b"c"
        mf.write(addr, b"p")
        assert mf.read(addr, 1) == b"p" and child.read(addr, 1) == b"c"
        child.terminate()

    @pytest.mark.parametrize("advice", [HWPOISON, SOFT_OFFLINE])
    def test_unmodelled_pages_say_so(self, mf: Process, advice: int) -> None:
        untouched = mf.mmap(None, PAGE, RW, PRIVATE_ANON)  # GUP maps the shared zero page
        with pytest.raises(NotImplementedError, match="zero page"):
            mf.madvise(untouched, PAGE, advice)


# --- swap -----------------------------------------------------------------------------------------------

class TestSwapSim:
    def test_without_swap_pageout_keeps_anonymous_pages(self) -> None:
        p = sim.Kernel(check_invariants=True).spawn()
        addr = written(p, 2)
        p.madvise(addr, 2 * PAGE, vmkit.MADV_PAGEOUT)
        assert p.mincore(addr, 2 * PAGE) == b"\x01\x01"
        assert p.read(addr + PAGE, 1) == b"B"
        p.terminate()

    def test_with_swap_pageout_of_anonymous_pages_is_not_modelled(self) -> None:
        p = sim.Kernel(check_invariants=True, swap=1 << 30).spawn()
        addr = written(p, 2)
        p.madvise(addr, 2 * PAGE, vmkit.MADV_COLD)  # only ages pages
        empty = p.mmap(None, 2 * PAGE, RW, PRIVATE_ANON)
        p.madvise(empty, 2 * PAGE, vmkit.MADV_PAGEOUT)  # nothing to swap out
        with pytest.raises(NotImplementedError, match="swap"):
            p.madvise(addr, 2 * PAGE, vmkit.MADV_PAGEOUT)
        p.terminate()

    def test_swap_raises_the_overcommit_limit(self) -> None:
        ram = 1 << 30
        small = sim.Kernel(check_invariants=True, total_ram=ram).spawn()
        with pytest.raises(OSError) as e:
            small.mmap(None, ram + (256 << 20), RW, PRIVATE_ANON)
        assert e.value.errno == errno.ENOMEM
        big = sim.Kernel(check_invariants=True, total_ram=ram, swap=ram).spawn()
        big.mmap(None, ram + (256 << 20), RW, PRIVATE_ANON)
        small.terminate()
        big.terminate()
