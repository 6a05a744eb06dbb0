"""The differential state machine: a native child and a model process driven in lockstep.

Every rule draws one operation, runs it on both sides (``vmkit.native.spawn()`` is the truth,
``vmkit.sim.Kernel(check_invariants=True).spawn()`` the model) and compares the outcome (value,
errno, or Fault class + address + code), then compares what both processes show: the normalised
``maps()`` (:mod:`vmkit.fuzz.compare`), the status figures VmSize/VmLck/VmRSS/VmData and
RssAnon/RssFile/RssShmem, the mincore vector of every VMA in the fuzzer's zones and the contents
of their resident anonymous pages.

Safety of the native child: destructive operations (MAP_FIXED, munmap, mprotect, mremap, madvise,
writes) only ever cover the fuzzer's zones — the arena at 0x200000000 (1 GiB), the heap above the
runtime (0x500000 + 64 MiB) and the top of the mmap area below [vvar] — or are rejected by the
kernel before acting (unaligned start, a length that wraps).  The runtime (0x400000-0x500000), the
stack and the vDSO are never targeted.  Lengths that could succeed are at most 4 MiB, so populate
and lock operations stay cheap.

A divergence raises :class:`DivergenceError`, whose message is a ready-to-paste pytest function
(:mod:`vmkit.fuzz.printer`).  A model path raising NotImplementedError halts the sequence (counted
in :data:`STATS`).  ``make_machine(excluded=...)`` leaves out operation kinds (see
``tests/test_differential.py``'s KNOWN_DIVERGENT).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import vmkit
from vmkit import native, sim
from vmkit.fuzz.compare import normalise_maps, outcome, parse_maps, status_subset
from vmkit.fuzz.printer import Divergence, PidOf, Step, render_test, shm_file_of

PAGE = vmkit.PAGE_SIZE
MASK64 = (1 << 64) - 1
TASK_SIZE = vmkit.TASK_SIZE
ARENA = 0x200000000
ARENA_END = ARENA + (1 << 30)
HEAP_ZONE = (0x500000, 0x500000 + (64 << 20))
MMAP_ZONE = (0x7FF000000000, 0x7FFFF7FF7000)
#: Where destructive operations may act.
ZONES = ((HEAP_ZONE[0], HEAP_ZONE[1]), (ARENA, ARENA_END), MMAP_ZONE)
MAX_LEN = 1024 * PAGE
#: The native child's argument scratch area (primed resident on both sides at the start).
SCRATCH, SCRATCH_SIZE = 0x401000, 0xFF000
#: Mincore and content checks look at most this many pages of each VMA.
OBSERVE_PAGES = 256

#: Counters over the whole run (sequences, operations, halts on NotImplementedError...).
STATS: Counter[str] = Counter()
UNIMPLEMENTED: Counter[str] = Counter()


class DivergenceError(AssertionError):
    """The model and the real kernel disagreed; the message is the regression test."""


def in_zone(lo: int, hi: int, zones: tuple[tuple[int, int], ...] = ZONES) -> bool:
    return any(z0 <= lo and hi <= z1 for z0, z1 in zones)


def rejected_early(addr: int, length: int) -> bool:
    """The kernel refuses this range before touching anything: unaligned start, zero length, or a
    page-aligned length that wraps (munmap/mprotect/madvise/mremap/mmap MAP_FIXED)."""
    aligned = (length + PAGE - 1) & MASK64 & ~(PAGE - 1)
    return bool(addr & (PAGE - 1)) or length == 0 or aligned == 0 or addr + aligned > MASK64


def destructive_ok(addr: int, length: int, zones: tuple[tuple[int, int], ...] = ZONES) -> bool:
    """May a destructive call cover [addr, addr + length) in the native child?"""
    if not 0 <= addr <= MASK64 or not 0 <= length <= MASK64:
        return False
    if rejected_early(addr, length):
        return True
    aligned = (length + PAGE - 1) & ~(PAGE - 1)
    return in_zone(addr, addr + aligned, zones)


# --- value strategies -----------------------------------------------------------------------------

WRAPPING = [MASK64, MASK64 - PAGE + 1, MASK64 - 2 * PAGE + 1, 1 << 63, (1 << 64) - (1 << 40)]
LENGTHS = st.one_of(
    st.sampled_from([PAGE, 2 * PAGE, 3 * PAGE, 4 * PAGE, 8 * PAGE, 16 * PAGE]),
    st.integers(1, 3 * PAGE),
    st.integers(1, 64).map(lambda n: n * PAGE),
    st.sampled_from([0, 1, PAGE - 1, PAGE + 1, MAX_LEN, 512 * PAGE, TASK_SIZE + PAGE, 1 << 47, *WRAPPING]),
)
OFFSETS = st.sampled_from([0, 0, 0, PAGE, 2 * PAGE, 1, 8 * PAGE, 1 << 46, MASK64 - PAGE + 1, 1 << 63])
DELTAS = st.sampled_from([0, 0, 0, 0, PAGE, 2 * PAGE, 4 * PAGE, 1, PAGE - 1, -PAGE, 16 * PAGE, -1])
WILD = st.sampled_from([0, 1, PAGE, 0x10000, 0x400000, 0x4FF000, 0x100000000, TASK_SIZE, 1 << 47,
                        MASK64 - PAGE + 1, MASK64])
PROT_BITS = [vmkit.PROT_READ, vmkit.PROT_WRITE, vmkit.PROT_EXEC, 0x8, 0x10, 0x01000000, 0x02000000,
             0x80000000]
PROTS = st.one_of(
    st.sampled_from([0, 1, 3, 5, 7, 3, 3, 1]),
    st.lists(st.sampled_from(PROT_BITS), max_size=3).map(lambda bits: sum(set(bits))),
)
MAP_TYPES = st.sampled_from([vmkit.MAP_PRIVATE] * 4 + [vmkit.MAP_SHARED] * 2
                            + [vmkit.MAP_SHARED_VALIDATE, 0, vmkit.MAP_DROPPABLE, 0x4, 0x5, 0xF])
MAP_EXTRA = [vmkit.MAP_32BIT, vmkit.MAP_ABOVE4G, vmkit.MAP_GROWSDOWN, vmkit.MAP_DENYWRITE,
             vmkit.MAP_EXECUTABLE, vmkit.MAP_LOCKED, vmkit.MAP_NORESERVE, vmkit.MAP_POPULATE,
             vmkit.MAP_NONBLOCK, vmkit.MAP_STACK, vmkit.MAP_HUGETLB, vmkit.MAP_SYNC,
             vmkit.MAP_UNINITIALIZED, 0x200, 0x400, 0x8000000, 21 << 26, 1 << 40]
ADVICE = sorted(int(a) for a in vmkit.Madv if a not in (vmkit.MADV_HWPOISON, vmkit.MADV_SOFT_OFFLINE))
BAD_ADVICE = [5, 6, 7, 26, 99, 104, 1 << 31, MASK64]
READ_SIZES = st.sampled_from([1, 7, 8, PAGE - 1, PAGE, PAGE + 1, 2 * PAGE, 3 * PAGE - 5])
FILE_SIZES = st.sampled_from([0, 1, PAGE - 1, PAGE, PAGE + 5, 2 * PAGE, 3 * PAGE + 100, 8 * PAGE, 64 * PAGE])
OPEN_FLAGS = st.sampled_from([os.O_RDWR | os.O_CREAT, os.O_RDWR | os.O_CREAT, os.O_RDONLY, os.O_WRONLY | os.O_CREAT,
                              os.O_RDWR | os.O_CREAT | os.O_TRUNC, os.O_RDWR, os.O_RDONLY | os.O_CREAT])
RLIMITS = [8, 9, 2, 3]  # MEMLOCK, AS, DATA, STACK
#: The other resources: CPU, FSIZE, CORE, RSS, NPROC, NOFILE, LOCKS, SIGPENDING, MSGQUEUE, NICE,
#: RTPRIO, RTTIME (stored by the model; NOFILE and NPROC act on open and fork).
OTHER_RLIMITS = [0, 1, 4, 5, 6, 7, 10, 11, 12, 13, 14, 15]
RLIMIT_VALUES = st.sampled_from([0, PAGE, 64 << 10, 1 << 20, 8 << 20, 16 << 20, 1 << 30, -1])
#: Soft limits that could act on the native child in ways the model does not run: a CPU limit
#: (SIGXCPU once the child has used that much CPU time; 0 means 1 s) and a file size limit the
#: fuzzer's files (< 1 MiB) could reach (SIGXFSZ).  Such soft values are raised to these floors.
RLIMIT_FLOORS = {0: 1 << 20, 1: 1 << 20}
#: Addresses outside the zones a process_vm_* iovec may name: unmapped in every process (never the
#: runtime, the stack or the vDSO, whose contents are the host's), or beyond the user range.
PVM_WILD = [0, 1, PAGE, 0x10000, 0x100000000, TASK_SIZE, 1 << 47, MASK64 - PAGE + 1]
#: A pid no process has (pid_max is 4194304).
NO_PID = 0x3FFFFFF0
#: process_madvise advice: the four it accepts for another process, and others (any is fine for
#: the caller itself on 6.18).
PMADV = [3, 20, 21, 25] * 3 + [4, 0, 14, 99]
MFD_FLAGS = [0, 1, 2, 3, 0x4, 0x4, 0x5, 0x4 | (21 << 26), 0x4 | (22 << 26), 0x4 | (30 << 26), 21 << 26, 0x18]
#: pipe2 flags: the valid ones, O_NOTIFICATION_PIPE (ENOPKG here) and an invalid one (EINVAL).
PIPE_FLAGS = [0, os.O_CLOEXEC, os.O_NONBLOCK, os.O_DIRECT, 0x80, os.O_RDWR]


class DifferentialMachine(RuleBasedStateMachine):
    """A native child and a model process, driven through the same operations; see the module doc."""

    #: Operation kinds left out ("mmap", "madvise", "madvise.MADV_FREE", "fork", "files"...).
    EXCLUDED: frozenset[str] = frozenset()
    #: Processes at most (the spawned one and forked ones).
    MAX_PROCS = 2

    def __init__(self) -> None:
        super().__init__()
        self.run_dir = f"/tmp/vmkit-fuzz-{uuid.uuid4().hex[:12]}"
        self.steps: list[Step] = []
        self.halted = False
        self.kernel = sim.Kernel(check_invariants=True)
        self.natives: list[Any] = []
        self.sims: list[Any] = []
        n = native.spawn()
        self.natives.append(n)
        self.sims.append(self.kernel.spawn())
        for p in (n, self.sims[0]):
            # The native harness passes arguments through the scratch pages of its runtime, which
            # makes them resident; make them all resident on both sides first so VmRSS compares.
            p.write(SCRATCH, bytes(SCRATCH_SIZE))
            p.mkdir(self.run_dir)
        #: Zone addresses worth targeting (arena points, results of successful calls).
        self.anchors: list[int] = [ARENA, ARENA + 16 * PAGE, ARENA + 256 * PAGE, ARENA + (1 << 29),
                                   ARENA_END - 4 * PAGE, 0x500000]
        self.fds: list[int] = [-1, 99]
        #: Descriptors pidfd_open returned (in some process: the number may mean another file).
        self.pidfds: list[int] = []
        self.privileged = True
        STATS["sequences"] += 1

    def teardown(self) -> None:
        for p in self.natives + self.sims:
            try:
                p.terminate()
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(self.run_dir, ignore_errors=True)
        try:
            os.unlink(shm_file_of(self.run_dir))
        except FileNotFoundError:
            pass

    # --- helpers ------------------------------------------------------------------------------

    def allowed(self, kind: str) -> bool:
        return kind not in self.EXCLUDED and kind.split(".")[0] not in self.EXCLUDED

    def draw_proc(self, data: st.DataObject) -> int:
        if len(self.natives) == 1:
            return 0
        return data.draw(st.integers(0, len(self.natives) - 1), label="proc")

    def draw_zone_addr(self, data: st.DataObject) -> int:
        """An address in a zone near an anchor (possibly unaligned)."""
        base = data.draw(st.sampled_from(self.anchors), label="anchor")
        addr = base + data.draw(DELTAS, label="delta")
        if not any(z0 <= addr < z1 for z0, z1 in ZONES):
            addr = base
        return addr

    def draw_any_addr(self, data: st.DataObject) -> int:
        if data.draw(st.integers(0, 5), label="wild?") == 0:
            return data.draw(WILD, label="wild")
        return self.draw_zone_addr(data)

    def draw_destructive_range(self, data: st.DataObject, zones: tuple[tuple[int, int], ...] = ZONES,
                               cap: int | None = None) -> tuple[int, int]:
        """A range a destructive call may cover; a length past its zone is cut at the zone's end, or
        at ``cap`` for calls that create memory (a locked or populated VMA of up to 1 GiB would be
        faulted in on both sides)."""
        addr = self.draw_zone_addr(data)
        length = data.draw(LENGTHS, label="length")
        if not destructive_ok(addr, length, zones):
            zone = next(((z0, z1) for z0, z1 in zones if z0 <= addr < z1), None)
            if zone is None:
                addr, zone = ARENA, (ARENA, ARENA_END)
            length = min(length, zone[1] - addr, cap if cap is not None else length)
        return addr, length

    def draw_fd(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(self.fds), label="fd")

    def note_address(self, value: Any, length: int = 0) -> None:
        if isinstance(value, int) and any(z0 <= value < z1 for z0, z1 in ZONES):
            for a in (value, value + ((length + PAGE - 1) & ~(PAGE - 1)) - PAGE):
                if a not in self.anchors and any(z0 <= a < z1 for z0, z1 in ZONES) and len(self.anchors) < 40:
                    self.anchors.append(a)

    # --- running and comparing ----------------------------------------------------------------

    def fail(self, divergence: Divergence) -> None:
        STATS["divergences"] += 1
        test = render_test(self.steps, divergence, self.run_dir)
        detail = (f"\n--- native:\n{divergence.native}\n--- sim:\n{divergence.sim}\n"
                  if divergence.what in ("maps", "status") else "")
        raise DivergenceError(f"vmkit.fuzz: {divergence.what} diverges after step "
                              f"{len(self.steps)}{detail}\n--- regression test:\n{test}")

    def execute(self, proc: int, method: str, *args: Any, observe: bool = False) -> Any:
        """Runs one call on both sides, records it and compares outcomes; returns the native value.
        A :class:`PidOf` argument becomes each side's own pid of that process."""
        n, s = self.natives[proc], self.sims[proc]
        STATS["operations"] += 1
        if method == "drop_privileges":
            n_out, n_val = outcome(n.drop_privileges)
            s_out, s_val = outcome(s.drop_privileges)
        else:
            n_out, n_val = outcome(getattr(n, method), *self._resolve(self.natives, args))
            s_out, s_val = outcome(getattr(s, method), *self._resolve(self.sims, args))
        step = Step(proc, method, args, n_out, observe=observe)
        self.steps.append(step)
        if n_out[0] == "exception":
            raise RuntimeError(f"harness error on the native side: {method}{args}: {n_out}")
        if s_out[0] == "unimplemented":
            UNIMPLEMENTED[s_out[1]] += 1
            STATS["halted_unimplemented"] += 1
            self.halted = True
            return None
        if n_out != s_out:
            self.fail(Divergence(proc, "result", step, n_out, s_out))
        if method == "fork" and n_out[0] == "ok":
            step.creates = len(self.natives)
            self.natives.append(n_val)
            self.sims.append(s_val)
        return n_val

    @staticmethod
    def _resolve(procs: list[Any], args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(procs[a.proc].pid if isinstance(a, PidOf) else a for a in args)

    def check(self) -> None:
        """Compares maps, status, mincore of the zone VMAs and contents of resident anon pages."""
        if self.halted:
            return
        # Observations change no state: the invariant checker already ran after the operation.
        self.kernel.check_invariants = False
        try:
            self._check()
        finally:
            self.kernel.check_invariants = True

    def _check(self) -> None:
        for proc in range(len(self.natives)):
            n, s = self.natives[proc], self.sims[proc]
            n_maps, s_maps = outcome(n.maps)[0], outcome(s.maps)[0]
            if s_maps[0] == "unimplemented":
                self.halted = True
                return
            if n_maps[0] != "ok" or s_maps[0] != "ok" or normalise_maps(n_maps[1]) != normalise_maps(s_maps[1]):
                self.fail(Divergence(proc, "maps", None, n_maps[1], s_maps[1]))
            n_st, s_st = outcome(n.status)[0], outcome(s.status)[0]
            n_st = status_subset(n_st[1]) if n_st[0] == "ok" else n_st
            s_st = status_subset(s_st[1]) if s_st[0] == "ok" else s_st
            if n_st != s_st:
                self.fail(Divergence(proc, "status", None, n_st, s_st))
            for line in parse_maps(n_maps[1]):
                if not in_zone(line.start, line.end):
                    continue
                length = min(line.end - line.start, OBSERVE_PAGES * PAGE)
                vec = self._observe(proc, "mincore", line.start, length)
                if (line.inode or line.name not in ("", "[heap]") or "r" not in line.perms
                        or not isinstance(vec, bytes)):
                    continue
                page = 0
                while page < len(vec):  # resident runs of anonymous memory: reads change nothing
                    if not vec[page] & 1:
                        page += 1
                        continue
                    end = page
                    while end < len(vec) and vec[end] & 1:
                        end += 1
                    self._observe(proc, "read", line.start + page * PAGE, (end - page) * PAGE)
                    page = end

    def _observe(self, proc: int, method: str, *args: Any) -> Any:
        n_out, value = outcome(getattr(self.natives[proc], method), *args)
        s_out, _ = outcome(getattr(self.sims[proc], method), *args)
        if n_out != s_out:
            step = Step(proc, method, args, n_out, observe=True)
            what = "contents" if method == "read" else method
            self.fail(Divergence(proc, what, step, n_out, s_out))
        return value

    def do(self, proc: int, method: str, *args: Any) -> Any:
        value = self.execute(proc, method, *args)
        self.check()
        return value

    # --- rules --------------------------------------------------------------------------------

    @precondition(lambda self: self.halted)
    @rule()
    def rest(self) -> None:
        """Once the model has reached a path it does not implement, the sequence has nothing left
        to compare; Hypothesis still needs a rule to draw until the sequence ends (without one it
        stops the whole run: "no available rule had a True precondition")."""

    @precondition(lambda self: not self.halted and self.allowed("mmap"))
    @rule(data=st.data())
    def mmap(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        kind = data.draw(st.sampled_from(["null", "null", "hint", "fixed", "fixed", "noreplace", "wild"]),
                         label="placement")
        prot = data.draw(PROTS, label="prot")
        flags = data.draw(MAP_TYPES, label="type")
        for bit in data.draw(st.lists(st.sampled_from(MAP_EXTRA), max_size=2), label="extra"):
            flags |= bit
        anonymous = data.draw(st.booleans(), label="anonymous") or len(self.fds) == 2
        if anonymous:
            flags |= vmkit.MAP_ANONYMOUS
        fd = -1 if anonymous and data.draw(st.booleans()) else self.draw_fd(data)
        offset = data.draw(OFFSETS, label="offset")
        if kind in ("fixed", "noreplace"):
            addr, length = self.draw_destructive_range(data, ((ARENA, ARENA_END),), cap=MAX_LEN)
            flags |= vmkit.MAP_FIXED if kind == "fixed" else vmkit.MAP_FIXED_NOREPLACE
        else:
            length = data.draw(LENGTHS, label="length")
            addr = {"null": 0, "hint": self.draw_zone_addr(data), "wild": data.draw(WILD)}[kind]
            if kind == "hint" and not (ARENA <= addr and addr + length <= ARENA_END):
                addr = 0
        if not self.allowed(f"mmap.{kind}") or (flags & vmkit.MAP_SHARED and not anonymous
                                                 and not self.allowed("mmap.shared_file")):
            return
        value = self.do(proc, "mmap", addr, length, prot, flags, fd, offset)
        self.note_address(value, length)

    @precondition(lambda self: not self.halted and self.allowed("munmap"))
    @rule(data=st.data())
    def munmap(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        addr, length = self.draw_destructive_range(data)
        self.do(proc, "munmap", addr, length)

    @precondition(lambda self: not self.halted and self.allowed("mprotect"))
    @rule(data=st.data())
    def mprotect(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        addr, length = self.draw_destructive_range(data)
        self.do(proc, "mprotect", addr, length, data.draw(PROTS, label="prot"))

    @precondition(lambda self: not self.halted and self.allowed("mremap"))
    @rule(data=st.data())
    def mremap(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        old, old_size = self.draw_destructive_range(data)
        new_size = data.draw(LENGTHS, label="new_size")
        flags = data.draw(st.sampled_from([0, 1, 1, 1, 3, 3, 5, 7, 2, 4, 8, 0x10]), label="mremap flags")
        new_address = 0
        if flags & 2:  # MREMAP_FIXED: the new range is destroyed too
            new_address, new_size = self.draw_destructive_range(data, ((ARENA, ARENA_END),), cap=MAX_LEN)
        kind = "mremap.fixed" if flags & 2 else "mremap.dontunmap" if flags & 4 else "mremap"
        if not self.allowed(kind):
            return
        value = self.do(proc, "mremap", old, old_size, new_size, flags, new_address)
        self.note_address(value, new_size)

    @precondition(lambda self: not self.halted and self.allowed("madvise"))
    @rule(data=st.data())
    def madvise(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        addr, length = self.draw_destructive_range(data)
        choices = [a for a in ADVICE if self.allowed(f"madvise.{vmkit.Madv(a).name}")]
        advice = data.draw(st.sampled_from(choices + BAD_ADVICE), label="advice")
        self.do(proc, "madvise", addr, length, advice)

    @precondition(lambda self: not self.halted and self.allowed("mlock"))
    @rule(data=st.data())
    def mlock(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        call = data.draw(st.sampled_from(["mlock", "mlock2", "munlock"]), label="call")
        addr = self.draw_any_addr(data)
        length = data.draw(LENGTHS, label="length")
        if call == "mlock2":
            self.do(proc, call, addr, length, data.draw(st.sampled_from([0, 1, 1, 2, 3, MASK64])))
        else:
            self.do(proc, call, addr, length)

    @precondition(lambda self: not self.halted and self.allowed("mlockall"))
    @rule(data=st.data())
    def mlockall(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        if data.draw(st.booleans(), label="unlock"):
            self.do(proc, "munlockall")
        else:
            flags = data.draw(st.sampled_from([1, 2, 3, 5, 6, 7, 4, 0, 8, MASK64]), label="flags")
            if flags & 1 and flags < 8 and not self.allowed("mlockall.current"):
                flags &= ~1
            self.do(proc, "mlockall", flags)

    @precondition(lambda self: not self.halted and self.allowed("msync"))
    @rule(data=st.data())
    def msync(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        addr = self.draw_any_addr(data)
        length = data.draw(LENGTHS, label="length")
        self.do(proc, "msync", addr, length, data.draw(st.sampled_from([1, 4, 2, 3, 6, 5, 0, 8, 7])))

    @precondition(lambda self: not self.halted and self.allowed("mincore"))
    @rule(data=st.data())
    def mincore(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        self.do(proc, "mincore", self.draw_any_addr(data), data.draw(LENGTHS, label="length"))

    @precondition(lambda self: not self.halted and self.allowed("brk"))
    @rule(data=st.data())
    def brk(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        value = data.draw(st.one_of(
            st.integers(0, 4096).map(lambda n: 0x500000 + n * PAGE),
            st.integers(0x500000, 0x500000 + 64 * PAGE),
            # Never far above the heap zone: under MCL_FUTURE a break of GiBs is faulted in.
            st.sampled_from([0, 1, 0x400000, 0x4FF000, 0x500000 + (16 << 20), MASK64]),
        ), label="brk")
        if value > TASK_SIZE and not self.allowed("brk.huge"):
            value = 0
        self.do(proc, "brk", value)
        self.note_address(value & ~(PAGE - 1))

    @precondition(lambda self: not self.halted and self.allowed("thp"))
    @rule(data=st.data())
    def huge_region(self, data: st.DataObject) -> None:
        """A 2 MiB-aligned private anonymous region in the arena with MADV_HUGEPAGE, then a store
        or a load in it: the transparent-huge-page fault paths, which random calls rarely line up
        (the later rules then split, fork, free and remap it)."""
        proc = self.draw_proc(data)
        block = ARENA + data.draw(st.integers(0, 7), label="block") * (2 << 20)
        size = data.draw(st.sampled_from([2 << 20, 4 << 20]), label="size")
        rw = vmkit.PROT_READ | vmkit.PROT_WRITE
        self.do(proc, "mmap", block, size, rw, vmkit.MAP_PRIVATE | vmkit.MAP_ANONYMOUS | vmkit.MAP_FIXED, -1, 0)
        self.do(proc, "madvise", block, size, vmkit.MADV_HUGEPAGE)
        address = block + data.draw(st.integers(0, size // PAGE - 1), label="page") * PAGE
        if data.draw(st.booleans(), label="store"):
            self.do(proc, "write", address, b"\x01")
        else:
            self.do(proc, "read", address, 1)
        self.note_address(block, size)

    @precondition(lambda self: not self.halted and self.allowed("read"))
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        addr = self.draw_any_addr(data)
        n = data.draw(READ_SIZES, label="n")
        zone = next(((z0, z1) for z0, z1 in ZONES if z0 <= addr < z1), None)
        if zone is not None:
            n = min(n, zone[1] - addr)
        elif addr >= MMAP_ZONE[1] and addr < TASK_SIZE or 0x400000 - 4 * PAGE <= addr < 0x500000:
            addr = 0  # never the runtime, the vDSO or the stack (their contents are the host's)
        if TASK_SIZE < addr + n and addr < (MASK64 - (1 << 47)) and not self.allowed("read.noncanonical"):
            addr = 0
        self.do(proc, "read", addr, n)

    @precondition(lambda self: not self.halted and self.allowed("write"))
    @rule(data=st.data())
    def write(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        addr = self.draw_zone_addr(data)
        n = data.draw(READ_SIZES, label="n")
        zone = next((z for z in ZONES if z[0] <= addr < z[1]))
        n = min(n, zone[1] - addr)
        byte = data.draw(st.integers(0, 255), label="byte")
        self.do(proc, "write", addr, bytes([byte]) * n)

    @precondition(lambda self: not self.halted and self.allowed("fork")
                  and len(self.natives) < self.MAX_PROCS)
    @rule(data=st.data())
    def fork(self, data: st.DataObject) -> None:
        self.do(self.draw_proc(data), "fork")

    @precondition(lambda self: not self.halted and self.allowed("files"))
    @rule(data=st.data())
    def open(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        if not self.privileged and not self.allowed("files.unprivileged"):
            return
        kind = data.draw(st.integers(0, 9), label="memfd/pipe/path")
        if kind <= 1:
            flags = MFD_FLAGS if self.allowed("files.hugetlb") else [0, 1, 2, 3]
            fd = self.do(proc, "memfd_create", "fz", data.draw(st.sampled_from(flags), label="memfd flags"))
        elif kind == 2:
            ends = self.do(proc, "pipe", data.draw(st.sampled_from(PIPE_FLAGS), label="pipe flags"))
            for fd in ends if isinstance(ends, tuple) else ():
                if fd not in self.fds:
                    self.fds.append(fd)
            return
        else:
            names = ["f0", "f1", "f2"] + (["shm", "zero"] if self.allowed("files.devices") else [])
            name = data.draw(st.sampled_from(names), label="name")
            path = {"shm": shm_file_of(self.run_dir), "zero": "/dev/zero"}.get(name, f"{self.run_dir}/{name}")
            fd = self.do(proc, "open", path, data.draw(OPEN_FLAGS, label="flags"))
        if isinstance(fd, int) and fd not in self.fds:
            self.fds.append(fd)

    @precondition(lambda self: not self.halted and self.allowed("files") and len(self.fds) > 2)
    @rule(data=st.data())
    def file_io(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        fd = self.draw_fd(data)
        call = data.draw(st.sampled_from(["pwrite", "pwrite", "ftruncate", "ftruncate", "pread", "close"]))
        if call == "pwrite":
            n = data.draw(READ_SIZES, label="n")
            self.do(proc, "pwrite", fd, bytes([data.draw(st.integers(1, 255))]) * n,
                    data.draw(FILE_SIZES, label="offset"))
        elif call == "ftruncate":
            self.do(proc, "ftruncate", fd, data.draw(FILE_SIZES, label="size"))
        elif call == "pread":
            self.do(proc, "pread", fd, data.draw(READ_SIZES, label="n"), data.draw(FILE_SIZES, label="offset"))
        else:
            self.do(proc, "close", fd)

    @precondition(lambda self: not self.halted and self.allowed("rlimit"))
    @rule(data=st.data())
    def rlimit(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        others = OTHER_RLIMITS if self.allowed("rlimit.other") else []
        res = data.draw(st.sampled_from(RLIMITS * 3 + others + [16, 99]), label="resource")
        if data.draw(st.booleans(), label="get"):
            self.do(proc, "getrlimit", res)
        else:
            soft, hard = data.draw(RLIMIT_VALUES, label="soft"), data.draw(RLIMIT_VALUES, label="hard")
            floor = RLIMIT_FLOORS.get(res)
            if floor is not None and 0 <= soft < floor:
                soft = floor
            self.do(proc, "setrlimit", res, (soft, hard))

    # --- calls on a process's memory from a process ---------------------------------------------

    def draw_pvm_iov(self, data: st.DataObject, label: str) -> list[tuple[int, int]]:
        """1-3 iovec elements in the zones (or at addresses unmapped everywhere)."""
        iov = []
        for _ in range(data.draw(st.integers(1, 3), label=f"{label} count")):
            if data.draw(st.integers(0, 7), label=f"{label} wild?") == 0:
                base = data.draw(st.sampled_from(PVM_WILD), label=f"{label} wild")
                length = data.draw(st.sampled_from([0, 1, PAGE, 2 * PAGE, MASK64]), label=f"{label} len")
            else:
                base = self.draw_zone_addr(data)
                zone = next(z for z in ZONES if z[0] <= base < z[1])
                length = min(data.draw(READ_SIZES | st.just(0), label=f"{label} len"), zone[1] - base)
            iov.append((base, length))
        return iov

    def draw_target(self, data: st.DataObject, proc: int) -> Any:
        """The pid of a lockstep process (itself or the other one) or of no process."""
        choice = data.draw(st.integers(0, 9), label="target")
        if choice == 0:
            return NO_PID
        return PidOf(choice % len(self.natives) if len(self.natives) > 1 else proc)

    @precondition(lambda self: not self.halted and self.allowed("process_vm"))
    @rule(data=st.data())
    def process_vm(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        call = data.draw(st.sampled_from(["process_vm_readv", "process_vm_writev"]), label="call")
        target = self.draw_target(data, proc)
        local, remote = self.draw_pvm_iov(data, "local"), self.draw_pvm_iov(data, "remote")
        flags = data.draw(st.sampled_from([0, 0, 0, 0, 0, 0, 1]), label="flags")
        self.do(proc, call, target, local, remote, flags)

    @precondition(lambda self: not self.halted and self.allowed("process_madvise"))
    @rule(data=st.data())
    def process_madvise(self, data: st.DataObject) -> None:
        proc = self.draw_proc(data)
        call = data.draw(st.sampled_from(["pidfd_open", "process_madvise", "process_madvise",
                                          "process_mrelease"]), label="call")
        if call == "pidfd_open" or not self.pidfds and data.draw(st.booleans(), label="open first"):
            fd = self.do(proc, "pidfd_open", self.draw_target(data, proc))
            if isinstance(fd, int) and fd not in self.fds:
                self.fds.append(fd)
            if isinstance(fd, int) and fd not in self.pidfds:
                self.pidfds.append(fd)
            return
        pidfd = data.draw(st.sampled_from(self.pidfds * 4 + self.fds + [-10000, -10001]), label="pidfd")
        if call == "process_mrelease":
            self.do(proc, "process_mrelease", pidfd, data.draw(st.sampled_from([0, 0, 1])))
            return
        iov = []
        for _ in range(data.draw(st.integers(1, 3), label="count")):
            if data.draw(st.booleans(), label="small"):  # likely within one VMA
                addr = self.draw_zone_addr(data) & ~(PAGE - 1)
                zone = next(z for z in ZONES if z[0] <= addr < z[1])
                iov.append((addr, min(data.draw(st.integers(1, 8), label="pages") * PAGE, zone[1] - addr)))
            else:
                iov.append(self.draw_destructive_range(data, cap=MAX_LEN))
        advice = data.draw(st.sampled_from(PMADV), label="advice")
        self.do(proc, "process_madvise", pidfd, iov, advice, data.draw(st.sampled_from([0] * 7 + [1])))

    @precondition(lambda self: not self.halted and self.allowed("drop_privileges"))
    @rule(data=st.data())
    def drop_privileges(self, data: st.DataObject) -> None:
        self.do(self.draw_proc(data), "drop_privileges")
        self.privileged = False


def make_machine(excluded: frozenset[str] | set[str] = frozenset(), name: str = "Differential",
                 max_procs: int = 2) -> type[DifferentialMachine]:
    """A DifferentialMachine subclass that leaves out the ``excluded`` operation kinds."""
    return type(name, (DifferentialMachine,), {"EXCLUDED": frozenset(excluded), "MAX_PROCS": max_procs})


__all__ = ["DifferentialMachine", "DivergenceError", "STATS", "UNIMPLEMENTED", "ZONES",
           "destructive_ok", "make_machine", "rejected_early"]
