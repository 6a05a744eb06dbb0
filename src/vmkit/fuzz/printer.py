"""Turns a failing step list into a ready-to-paste pytest regression test.

The test takes the ``proc`` fixture (run on both backends by tests/conftest.py) and ``file_path``
(a fresh /tmp path, used as the run's directory).  Every step asserts the native (true) outcome, so
the pasted test fails on the model exactly where the fuzzer saw the divergence.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any

PAGE = 4096


@dataclass(frozen=True)
class PidOf:
    """An argument that is the pid of lockstep process ``proc`` (each side passes its own)."""

    proc: int


@dataclass
class Step:
    """One operation on one process: ``procs[proc].method(*args)``, and what the native side did."""

    proc: int
    method: str
    args: tuple[Any, ...]
    expect: tuple[Any, ...] = ()
    #: An observation the fuzzer made (printed only when it is the divergent one).
    observe: bool = False
    #: For fork: the index of the process it creates.
    creates: int | None = None


@dataclass
class Divergence:
    """What differed after the last step: the observation, native (truth) and sim values."""

    proc: int
    what: str  # "result", "maps", "status", "mincore", "contents"
    call: Step | None
    native: Any
    sim: Any
    notes: list[str] = field(default_factory=list)


def bytes_expr(data: bytes) -> str:
    """A compact Python expression for ``data``: runs of one byte as ``b"\\x00" * n``."""
    if not data:
        return 'b""'
    parts: list[str] = []
    i = 0
    while i < len(data):
        j = i
        while j < len(data) and data[j] == data[i]:
            j += 1
        run = j - i
        parts.append(repr(data[i:i + 1]) + (f" * {run}" if run > 1 else ""))
        i = j
    if len(parts) > 12:
        return f"bytes.fromhex({data.hex()!r})"
    return " + ".join(parts)


def shm_file_of(run_dir: str) -> str:
    """The run's tmpfs file: ``/dev/shm/`` + the run directory's name (the ``shm_path`` fixture in
    a pasted test)."""
    return "/dev/shm/" + run_dir.rstrip("/").rsplit("/", 1)[-1]


def value_expr(value: Any, run_dir: str | None) -> str:
    """A Python expression for an argument or result."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, PidOf):
        return f"{_name(value.proc)}.pid"
    if isinstance(value, list):
        return "[" + ", ".join(value_expr(v, run_dir) for v in value) + "]"
    if isinstance(value, int):
        value = int(value)  # enum members print as plain numbers, ready to paste
        return f"{value:#x}" if abs(value) >= PAGE else repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes_expr(bytes(value))
    if isinstance(value, str) and run_dir and value.startswith(run_dir):
        return f"d + {value[len(run_dir):]!r}"
    if isinstance(value, str) and run_dir and value == shm_file_of(run_dir):
        return "s"
    if isinstance(value, tuple):
        inner = ", ".join(value_expr(v, run_dir) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return repr(value)


def _name(proc: int) -> str:
    return "proc" if proc == 0 else f"child{proc}"


def call_expr(step: Step, run_dir: str | None) -> str:
    args = ", ".join(value_expr(a, run_dir) for a in step.args)
    return f"{_name(step.proc)}.{step.method}({args})"


def _expect_lines(call: str, expect: tuple[Any, ...], run_dir: str | None, strict: bool) -> list[str]:
    kind = expect[0] if expect else "ok"
    if kind == "errno":
        name = errno.errorcode.get(expect[1], str(expect[1]))
        return ["with pytest.raises(OSError) as e:", f"    {call}", f"assert e.value.errno == errno.{name}"]
    if kind == "fault":
        return [f"with pytest.raises(vmkit.{expect[1]}) as f:", f"    {call}",
                f"assert (f.value.addr, f.value.code) == ({expect[2]:#x}, {expect[3]})"]
    value = expect[1] if len(expect) > 1 else None
    if value is None or value == "<process>" or not strict and not isinstance(value, int):
        return [call]
    return [f"assert {call} == {value_expr(value, run_dir)}"]


def render_test(steps: list[Step], divergence: Divergence | None, run_dir: str | None,
                name: str = "test_fuzz_regression") -> str:
    """The regression test as source text."""
    uses_dir = any(isinstance(a, str) and run_dir and a.startswith(run_dir)
                   for s in steps for a in s.args)
    uses_shm = bool(run_dir) and any(a == shm_file_of(run_dir) for s in steps for a in s.args)  # type: ignore[arg-type]
    params = "proc: Process" + (", file_path: str" if uses_dir else "") + (", shm_path: str" if uses_shm else "")
    what = divergence.what if divergence else "divergence"
    body: list[str] = ["proc.write(0x401000, bytes(0xFF000))  # the native harness's scratch pages, made resident"]
    if uses_dir:
        body += ["d = file_path", "proc.mkdir(d)"]
    if uses_shm:
        body += ["s = shm_path"]
    for step in steps:
        if step.observe:
            continue
        if step.method == "fork":
            body.append(f"{_name(step.creates or 0)} = {_name(step.proc)}.fork()")
            continue
        body += _expect_lines(call_expr(step, run_dir), step.expect, run_dir, strict=True)
    if divergence is not None:
        p = _name(divergence.proc)
        if divergence.what == "maps":
            text = f"'''\\\n{divergence.native}'''"
            if run_dir and shm_file_of(run_dir) in divergence.native:
                text += f".replace({shm_file_of(run_dir)!r}, s)"
            if run_dir and run_dir in divergence.native:
                text += f".replace({run_dir!r}, d)"
            body.append(f"assert normalise_maps({p}.maps()) == normalise_maps({text})")
        elif divergence.what == "status":
            keys = tuple(divergence.native)
            body.append(f"status = {p}.status()")
            body.append(f"assert {{k: status.get(k) for k in {keys!r}}} == {divergence.native!r}")
        elif divergence.call is not None and divergence.what != "result":
            body += _expect_lines(call_expr(divergence.call, run_dir), divergence.call.expect, run_dir,
                                  strict=True)
    header = [
        f"def {name}({params}) -> None:",
        f'    """Found by vmkit.fuzz: {what} differs (native: {_summ(divergence, "native")}; '
        f'sim: {_summ(divergence, "sim")})."""',
    ]
    if divergence is not None and divergence.what == "maps":
        header.insert(0, "from vmkit.fuzz.compare import normalise_maps  # at the top of the module")
        header.insert(1, "")
    return "\n".join(header + ["    " + line for line in body]) + "\n"


def _summ(divergence: Divergence | None, side: str) -> str:
    if divergence is None:
        return "?"
    value = getattr(divergence, side)
    from vmkit.fuzz.compare import short

    if isinstance(value, tuple) and value and isinstance(value[0], str):
        text = short(value)
    elif divergence.what == "maps":
        text = "see maps"
    else:
        text = repr(value)
    text = text.replace('"""', "'''").replace("\\", "\\\\")
    return text if len(text) < 80 else text[:77] + "..."


__all__ = ["Divergence", "PidOf", "Step", "bytes_expr", "render_test", "shm_file_of"]
