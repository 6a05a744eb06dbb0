"""``vmkit record``: run a command under strace, ASLR off, and write a trace ``vmkit replay`` takes.

The trace is strace's own text (``strace -f -y -v -s 4096``, see :data:`TRACE_SET` for the calls),
preceded by ``# vmkit-...`` header lines that make it replayable on another machine:

* ``# vmkit-trace: 1`` — the format version;
* ``# vmkit-command: [...]`` — the command, as JSON;
* ``# vmkit-kernel: 6.18.44`` — ``uname -r`` of the recording machine;
* ``# vmkit-rlimits: {...}`` — the command's starting RLIMIT_STACK/MEMLOCK/AS/DATA (they decide
  mmap_base, the stack and mlock's limits), ``-1`` for unlimited;
* ``# vmkit-cred: {...}`` — its uid and gid;
* ``# vmkit-image: {...}`` — for every program the trace executes and its ELF interpreter: path,
  size, device, inode, mode and the first bytes of the file (ELF header, program headers and the
  PT_INTERP string: all that ``execve`` reads), so the model can build the exec layout without the
  binary itself.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

from vmkit.trace.images import exec_head, interpreter

#: The calls a recording traces: every memory call and every call that tells the replay which
#: process shares what (process class), which file an fd is and how it was opened (file class,
#: close/dup/fcntl, memfd_create), and the limits and credentials the memory calls depend on.
TRACE_SET = ",".join([
    "%memory", "%process", "%file",
    "fstat", "close", "close_range", "dup", "dup2", "dup3", "fcntl", "ftruncate", "fallocate",
    "memfd_create", "memfd_secret", "pidfd_open",
    "process_vm_readv", "process_vm_writev", "process_madvise", "process_mrelease",
    "prlimit64", "setrlimit", "setuid", "setgid", "setresuid", "setresgid", "setreuid", "setregid",
    "capset", "personality", "shmget", "shmat", "shmdt", "pkey_alloc", "pkey_free", "userfaultfd",
])

STRACE_OPTIONS = ("-f", "-y", "-v", "-s", "4096")

#: The resources whose starting values the header records (names as in ``resource``).
RECORDED_RLIMITS = ("STACK", "MEMLOCK", "AS", "DATA")

ADDR_NO_RANDOMIZE = 0x0040000


class RecordError(RuntimeError):
    """The recording could not be made (strace missing, command not found, ...)."""


def strace_path() -> str:
    found = shutil.which("strace")
    if found is None:
        raise RecordError(
            "strace is not installed: install it (Debian/Ubuntu: `apt-get install strace`, "
            "Fedora: `dnf install strace`, Alpine: `apk add strace`) and run vmkit record again"
        )
    return found


def _no_aslr() -> None:
    """Runs in the forked child before strace starts: personality(ADDR_NO_RANDOMIZE) is inherited
    across fork and exec, so strace and everything it traces run with ASLR off (as ``setarch -R``)."""
    from vmkit.native import _libc

    current = _libc.personality(0xFFFFFFFF)
    _libc.personality((current & 0xFFFFFFFF) | ADDR_NO_RANDOMIZE)


def record(command: Sequence[str], output: str | os.PathLike[str], *, aslr: bool = False,
           stdout: IO[bytes] | int | None = None, stderr: IO[bytes] | int | None = None) -> int:
    """Runs ``command`` under strace and writes the trace to ``output``; returns the command's exit
    status (strace passes it on)."""
    if not command:
        raise RecordError("no command to record")
    strace = strace_path()
    out = Path(output)
    with tempfile.TemporaryDirectory(prefix="vmkit-record-") as tmp:
        raw = Path(tmp) / "strace.txt"
        argv = [strace, *STRACE_OPTIONS, "-e", f"trace={TRACE_SET}", "-o", str(raw), "--", *command]
        try:
            status = subprocess.run(argv, preexec_fn=None if aslr else _no_aslr, stdout=stdout,
                                    stderr=stderr, check=False).returncode
        except OSError as error:
            raise RecordError(f"could not start strace: {error}") from error
        if not raw.exists():
            raise RecordError(f"strace wrote no trace (exit status {status})")
        text = raw.read_text(errors="surrogateescape")
    header = header_lines(command, text)
    with out.open("w", errors="surrogateescape") as f:
        f.writelines(line + "\n" for line in header)
        f.write(text)
    return status


def header_lines(command: Sequence[str], trace_text: str, cwd: str | None = None) -> list[str]:
    """The ``# vmkit-...`` lines for a trace of ``command`` (see the module docstring)."""
    cwd = cwd or os.getcwd()
    limits = {}
    for name in RECORDED_RLIMITS:
        soft, hard = resource.getrlimit(getattr(resource, f"RLIMIT_{name}"))
        limits[name] = [-1 if soft == resource.RLIM_INFINITY else soft,
                        -1 if hard == resource.RLIM_INFINITY else hard]
    lines = [
        "# vmkit-trace: 1",
        f"# vmkit-command: {json.dumps(list(command))}",
        f"# vmkit-kernel: {platform.release()}",
        f"# vmkit-rlimits: {json.dumps(limits)}",
        f"# vmkit-cred: {json.dumps({'uid': os.getuid(), 'gid': os.getgid()})}",
    ]
    for image in images_for(executed_paths(trace_text), cwd):
        lines.append(f"# vmkit-image: {json.dumps(image)}")
    return lines


def executed_paths(trace_text: str) -> list[str]:
    """The paths of every successful execve/execveat in a trace, in order, without repeats."""
    from vmkit.trace.strace import Syscall, parse

    seen: dict[str, None] = {}
    for event in parse(trace_text.splitlines()):
        if isinstance(event, Syscall) and event.name == "execve" and event.result == 0:
            path = event.args[0]
            if isinstance(path, bytes):
                seen[os.fsdecode(path)] = None
    return list(seen)


def images_for(paths: Iterable[str], cwd: str) -> list[dict[str, Any]]:
    """Image records for ``paths`` and, transitively, their ELF interpreters and ``#!`` interpreters."""
    images: dict[str, dict[str, Any]] = {}
    pending = list(paths)
    while pending:
        path = pending.pop(0)
        if path in images:
            continue
        host = os.path.join(cwd, path)
        try:
            st = os.stat(host)
            with open(host, "rb") as f:
                data = f.read(64 * 1024)
        except OSError:
            continue  # the replay reports an exec of an unknown binary
        head, interp = exec_head(data), interpreter(data)
        images[path] = {
            "path": path, "realpath": os.path.realpath(host), "size": st.st_size, "dev": [os.major(st.st_dev), os.minor(st.st_dev)],
            "ino": st.st_ino, "mode": st.st_mode, "head": base64.b64encode(head).decode(),
        }
        if interp:
            pending.append(interp)
    return list(images.values())


def main(command: Sequence[str], output: str, aslr: bool = False) -> int:
    """``vmkit record``: returns the command's exit status; errors go to stderr with status 2."""
    try:
        status = record(command, output, aslr=aslr)
    except RecordError as error:
        print(f"vmkit record: {error}", file=sys.stderr)
        return 2
    print(f"vmkit record: wrote {output} (command exit status {status})", file=sys.stderr)
    return status
