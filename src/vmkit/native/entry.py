"""The real address space of a program at its first instruction: the oracle of ``vmkit.sim`` exec.

:func:`entry_state` forks, sets the child's personality (``ADDR_NO_RANDOMIZE`` unless ``aslr``) and
``RLIMIT_STACK`` if asked, requests ``PTRACE_TRACEME`` and calls ``execve``.  A traced process that
execs successfully stops with SIGTRAP before its first user instruction (``ptrace_event(PTRACE_EVENT_EXEC)``
sends it when no PTRACE_O_TRACEEXEC is set), so its ``/proc/<pid>/maps`` is exactly what
``load_elf_binary`` built.  The child is then killed and reaped, whatever happens: nothing stopped
or zombie is left behind.  A failed ``execve`` reports its errno through a close-on-exec pipe and
is raised as ``OSError`` with that errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from vmkit.native import _libc
from vmkit.native._ptrace import PTRACE_TRACEME, WALL, describe_status

ADDR_NO_RANDOMIZE = 0x0040000
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class EntryState:
    """What the kernel left at the first instruction: maps text and the mm's layout fields."""

    maps: str
    #: ``mm->start_brk`` (/proc/<pid>/stat field 47); at entry ``brk(0)`` returns it too.
    start_brk: int
    #: ``mm->start_stack`` (field 28), the initial stack pointer.
    start_stack: int
    #: ``mm->arg_start`` .. ``mm->env_end`` (fields 48-51).
    arg_start: int
    env_end: int
    #: The bytes from ``start_stack`` to the end of ``[stack]``: argc, argv, envp, auxv, strings.
    stack: bytes
    #: The auxiliary vector (/proc/<pid>/auxv) as (type, value) pairs, AT_NULL excluded.
    auxv: tuple[tuple[int, int], ...]
    #: /proc/<pid>/smaps, and the memory fields of /proc/<pid>/status (``VmRSS`` -> ``"1234 kB"``).
    smaps: str
    status: dict[str, str]


def _encode(items: Sequence[str | bytes]) -> list[bytes]:
    return [os.fsencode(x) for x in items]


def _execve(path: bytes, argv: list[bytes], envp: list[bytes]) -> None:
    """execve(2) through the C library with the exact argv and envp arrays (os.execve takes a
    mapping, which would reorder or drop environment strings)."""
    arrays = [(ctypes.c_char_p * (len(x) + 1))(*x, None) for x in (argv, envp)]
    ctypes.set_errno(0)
    _libc.libc.execve(path, arrays[0], arrays[1])
    raise OSError(ctypes.get_errno(), "execve")


def _child(path: bytes, argv: list[bytes], envp: list[bytes], aslr: bool, stack_limit: int | None,
           report: int) -> None:
    """In the forked child: never returns (execs, or writes its errno to ``report`` and exits)."""
    try:
        devnull = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, report)
        os.closerange(report + 1, 1 << 20)
        if stack_limit is not None:
            hard = resource.getrlimit(resource.RLIMIT_STACK)[1]
            resource.setrlimit(resource.RLIMIT_STACK, (stack_limit, hard))
        current = _libc.personality(0xFFFFFFFF)
        _libc.personality((current | ADDR_NO_RANDOMIZE) if not aslr else (current & ~ADDR_NO_RANDOMIZE))
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _libc.ptrace(PTRACE_TRACEME, 0, None, None)
        _execve(path, argv, envp)
    except OSError as e:
        os.write(report, struct.pack("i", e.errno or errno.EIO))
    except BaseException:
        os.write(report, struct.pack("i", errno.EIO))
    finally:
        os._exit(127)


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # the command name (field 2) is in parentheses and may hold spaces: split after its last ')'
    return ["", "", ""] + text[text.rindex(")") + 2:].split()  # index i is field i (1-based)


def entry_state(path: str | bytes, argv: Sequence[str | bytes], envp: Sequence[str | bytes], *,
                aslr: bool = False, stack_limit: int | None = None) -> EntryState:
    """Starts ``path`` stopped at its first instruction and returns its layout (see module doc).

    ``stack_limit`` sets the soft RLIMIT_STACK before the exec (``resource.RLIM_INFINITY`` for
    unlimited); None keeps ours.  Raises OSError with execve's errno if the exec fails.
    """
    bpath, bargv, benvp = os.fsencode(path), _encode(argv), _encode(envp)
    if any(b"\0" in x for x in (bpath, *bargv, *benvp)):
        raise ValueError("execve arguments cannot contain NUL bytes")
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(bpath, bargv, benvp, aslr, stack_limit, write_end)
    os.close(write_end)
    try:
        try:
            report = os.read(read_end, 4)
        finally:
            os.close(read_end)
        if report:
            _, status = os.waitpid(pid, WALL)
            pid = 0
            code = struct.unpack("i", report)[0]
            raise OSError(code, os.strerror(code), os.fsdecode(bpath))
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status) or os.WSTOPSIG(status) != signal.SIGTRAP:
            if not os.WIFSTOPPED(status):
                pid = 0
            raise RuntimeError(f"{os.fsdecode(bpath)} did not stop at its first instruction: "
                               f"{describe_status(status)}")
        with open(f"/proc/{pid}/maps") as f:
            maps = f.read()
        with open(f"/proc/{pid}/smaps") as f:
            smaps = f.read()
        with open(f"/proc/{pid}/status") as f:
            memory = {k: v.strip() for k, _, v in (line.partition(":") for line in f)
                      if k.startswith(("Vm", "Rss"))}
        fields = _stat_fields(pid)
        start_stack = int(fields[28])
        stack_end = next(int(line.split()[0].split("-")[1], 16) for line in maps.splitlines()
                         if line.endswith("[stack]"))
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(start_stack)
            stack = mem.read(stack_end - start_stack)
        with open(f"/proc/{pid}/auxv", "rb") as f:
            raw = f.read()
        auxv = tuple((int.from_bytes(raw[i:i + 8], "little"), int.from_bytes(raw[i + 8:i + 16], "little"))
                     for i in range(0, len(raw) - 15, 16))
        return EntryState(maps=maps, start_brk=int(fields[47]), start_stack=start_stack,
                          arg_start=int(fields[48]), env_end=int(fields[51]), stack=stack,
                          auxv=tuple(a for a in auxv if a[0] != 0), smaps=smaps, status=memory)
    finally:
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, WALL)


def maps_at_entry(path: str | bytes, argv: Sequence[str | bytes], envp: Sequence[str | bytes], *,
                  aslr: bool = False, stack_limit: int | None = None) -> str:
    """``/proc/<pid>/maps`` of ``path`` executed with ``argv``/``envp``, at its first instruction.

    The real ``start_brk`` (and more) is in :func:`entry_state`, which this wraps.
    """
    return entry_state(path, argv, envp, aslr=aslr, stack_limit=stack_limit).maps


__all__ = ["EntryState", "entry_state", "maps_at_entry"]
