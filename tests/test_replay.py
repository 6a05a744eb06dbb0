"""``vmkit record`` + ``vmkit replay``: real programs' memory calls re-run in the model agree with
what the kernel returned, call for call.

Recorded in the test where strace exists (each program as this machine has it); the traces shipped
with the package are replayed in any case, without the host's binaries.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmkit.cli import main as cli
from vmkit.trace import record, shipped_traces
from vmkit.trace.replay import Replay, replay_file
from vmkit.trace.strace import parse


STRACE = shutil.which("strace")
GCC = shutil.which("gcc")
PROGRAMS_DIR = Path(__file__).parent / "programs"
PYENV_PYTHON = "/root/.pyenv/versions/3.11.7/bin/python3.11"
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}


def _first(*candidates: str) -> str | None:
    for candidate in candidates:
        found = shutil.which(candidate) if "/" not in candidate else (candidate if os.path.exists(candidate) else None)
        if found:
            return os.path.realpath(found)
    return None


def _program(name: str, tmp_path: Path) -> list[str] | None:
    """The command line of one real program, or None when this machine lacks it."""
    if name == "python3":
        python = _first(PYENV_PYTHON, sys.executable)
        return [python, "-c", "import json, sqlite3, threading; print(json.dumps(list(range(5))))"] if python else None
    if name == "debian-python3":
        python = _first("/usr/bin/python3")
        return [python, "-c", "import os; print(os.getpid() > 0)"] if python else None
    if name == "perl":
        perl = _first("perl")
        return [perl, "-e", "my %h = map { $_ => [1 .. 10] } 1 .. 20000; print scalar(keys %h), qq(\\n)"] if perl else None
    if name == "node":
        node = _first("node")
        return [node, "-e", "let a = []; for (let i = 0; i < 200000; i++) a.push({i}); console.log(a.length)"] if node else None
    if name == "gcc":
        if GCC is None:
            return None
        source = tmp_path / "hello.c"
        source.write_text('#include <stdio.h>\nint main(void) { puts("hello"); return 0; }\n')
        return [os.path.realpath(GCC), "-O1", "-o", str(tmp_path / "hello"), str(source)]
    if name == "sqlite3":
        sqlite = _first("sqlite3")
        script = ("PRAGMA journal_mode=WAL; PRAGMA mmap_size=8388608; CREATE TABLE t(a, b);"
                  "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000)"
                  " INSERT INTO t SELECT x, hex(randomblob(32)) FROM c; SELECT count(*), sum(a) FROM t;")
        return [sqlite, str(tmp_path / "db.sqlite"), script] if sqlite else None
    if name == "java":
        java = _first("java")
        return [java, "-Xmx64m", "-XX:TieredStopAtLevel=1", "-version"] if java else None
    if name == "ls":
        return [_first("ls") or "ls", "-la", "/usr/bin"]
    if name == "cat":
        return [_first("cat") or "cat", "/etc/os-release"]
    if name == "memcalls":
        if GCC is None:
            return None
        binary = tmp_path / "memcalls"
        subprocess.run([GCC, "-O1", "-pthread", "-o", str(binary), str(PROGRAMS_DIR / "memcalls.c")],
                       check=True)
        return [str(binary)]
    raise AssertionError(name)


REAL_PROGRAMS = ["python3", "debian-python3", "perl", "node", "gcc", "sqlite3", "java", "ls", "cat",
                 "memcalls"]


def _assert_full_agreement(report, min_calls: int) -> None:
    shown = "\n".join(f"line {d.line}: {d.call}\n   kernel {d.kernel}, model {d.model}"
                      for d in report.disagreements[:10])
    assert not report.disagreements, f"{len(report.disagreements)} disagreements:\n{shown}"
    assert not report.unverified, f"unverified calls: {dict(report.unverified)}"
    assert report.calls >= min_calls
    assert report.agree == report.calls


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
@pytest.mark.parametrize("name", REAL_PROGRAMS)
def test_recorded_program_replays_with_full_agreement(name: str, tmp_path: Path) -> None:
    command = _program(name, tmp_path)
    if command is None:
        pytest.skip(f"{name} is not installed on this machine")
    trace = tmp_path / f"{name}.trace"
    env_before = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(CLEAN_ENV)
        status = record.record(command, trace, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    assert status == 0
    report = replay_file(str(trace), host_binaries=False)
    _assert_full_agreement(report, min_calls=10)


@pytest.mark.parametrize("trace", shipped_traces(), ids=lambda p: p.name)
def test_shipped_trace_replays_with_full_agreement(trace: Path) -> None:
    report = replay_file(str(trace), host_binaries=False)
    _assert_full_agreement(report, min_calls=20)


def test_cli_replay_json(capsys: pytest.CaptureFixture[str]) -> None:
    trace = shipped_traces()[0]
    assert cli(["replay", "--json", str(trace)]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["calls"] == data["agree"] > 0
    assert data["disagreements"] == []


def test_cli_replay_human_summary(capsys: pytest.CaptureFixture[str]) -> None:
    trace = shipped_traces()[0]
    assert cli(["replay", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "agree (100.0%)" in out
    assert "mmap" in out


def test_cli_replay_reports_a_disagreement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A trace edited to claim a result the model cannot give makes replay exit with 1, naming the
    line, and the calls after it still agree."""
    edited, changed = [], 0
    for line in shipped_traces()[0].read_text().splitlines():
        if not changed and " mprotect(" in line and line.rstrip().endswith("= 0"):
            line = line.rstrip()[:-1] + "-1 ENOMEM (Cannot allocate memory)"
            changed = len(edited) + 1
        edited.append(line)
    assert changed
    bad = tmp_path / "edited.trace"
    bad.write_text("\n".join(edited) + "\n")
    assert cli(["replay", "--json", str(bad)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [(d["line"], d["kernel"], d["model"]) for d in data["disagreements"]] == [(changed, "-1 ENOMEM", "0")]
    assert data["calls"] == data["agree"] + 1


def test_cli_replay_names_the_line_of_malformed_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.trace"
    bad.write_text('123 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7ffff7fc0000\n'
                   '123 mmap(NULL, 4096, PROT_READ, MAP_PRIV\n')
    assert cli(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.trace:2" in err


def test_cli_replay_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["replay", "/nonexistent/x.trace"]) == 2
    assert "cannot read /nonexistent/x.trace" in capsys.readouterr().err


def test_record_without_strace_says_how_to_install(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cli(["record", "-o", str(tmp_path / "t"), "--", "true"]) == 2
    assert "apt-get install strace" in capsys.readouterr().err


def test_record_header_carries_images_and_limits(tmp_path: Path) -> None:
    if STRACE is None:
        pytest.skip("strace is not installed")
    trace = tmp_path / "true.trace"
    assert record.record([_first("true") or "true"], trace) == 0
    header = [line for line in trace.read_text().splitlines() if line.startswith("# vmkit-")]
    keys = [line.split(":", 1)[0] for line in header]
    assert keys[:5] == ["# vmkit-trace", "# vmkit-command", "# vmkit-kernel", "# vmkit-rlimits", "# vmkit-cred"]
    images = [json.loads(line.split(":", 1)[1]) for line in header if line.startswith("# vmkit-image")]
    paths = [image["path"] for image in images]
    assert any(path.endswith("/true") for path in paths)
    assert any("ld-linux" in path for path in paths)  # the ELF interpreter rides along


def test_calls_in_flight_in_other_threads_may_have_taken_effect_first(tmp_path: Path) -> None:
    """strace prints a call when it returns; a thread's munmap that was still in flight may have run
    before another thread's mmap that returned first and got the freed range.  The replay tries that
    order before calling it a disagreement."""
    lines = shipped_traces()[0].read_text().splitlines()
    prefix = lines[:next(i for i, line in enumerate(lines) if " brk(NULL)" in line) + 1]
    pid = int(prefix[-1].split()[0])
    probe = Replay(host_binaries=False)
    probe.run(list(parse("\n".join(prefix) + "\n")))
    model = probe.last_models()[pid]
    x = model.mmap(None, 65536, 3, 0x22)
    thread = pid + 1
    racy = prefix + [
        f"{pid} clone(child_stack=0x7ffff7000000, flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|"
        f"CLONE_THREAD|CLONE_SYSVSEM) = {thread}",
        f"{thread} mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {x:#x}",
        f"{thread} munmap({x:#x}, 65536 <unfinished ...>",
        f"{pid} mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = {x:#x}",
        f"{thread} <... munmap resumed>) = 0",
        f"{pid} munmap({x:#x}, 65536) = 0",
    ]
    report = Replay(host_binaries=False).run(list(parse("\n".join(racy) + "\n")))
    assert report.disagreements == []
    assert report.per_syscall["munmap"] == [2, 2] and report.per_syscall["mmap"][0] == report.per_syscall["mmap"][1]


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
def test_model_maps_after_replay_equal_what_the_program_read_of_its_own(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """`cat /proc/self/maps` under `vmkit record`: the model's maps, replayed up to the moment cat
    read the file (after its buffer mmap), are byte-for-byte what the kernel showed cat — file
    mappings with their real device and inode (from the trace's stat lines) and path."""
    trace, shown = tmp_path / "cat.trace", tmp_path / "maps.txt"
    with shown.open("wb") as out:
        assert record.record([_first("cat") or "cat", "/proc/self/maps"], trace, stdout=out,
                             stderr=subprocess.DEVNULL) == 0
    lines = trace.read_text().splitlines()
    opened = next(i for i, line in enumerate(lines) if ' openat(' in line and '"/proc/self/maps"' in line)
    read_at = next(i for i in range(opened, len(lines)) if " munmap(" in lines[i] or " close(3" in lines[i])
    pid = int(lines[opened].split()[0])
    assert cli(["maps", str(trace), "--pid", str(pid), "--line", str(read_at)]) == 0
    printed = capsys.readouterr().out.split("\n", 1)[1]
    assert printed == shown.read_text()


@pytest.mark.parametrize("header", ['# vmkit-rlimits: "x"', '# vmkit-rlimits: {"NOPE": [1, 2]}',
                                    '# vmkit-image: {"path": "/bin/x"}', "# vmkit-trace: {"])
def test_cli_replay_names_the_line_of_a_bad_header(header: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "header.trace"
    bad.write_text(f"# vmkit-trace: 1\n{header}\n")
    assert cli(["replay", str(bad)]) == 2
    assert f"{bad}:2: bad " in capsys.readouterr().err


def test_cli_replay_refuses_a_trace_format_it_does_not_know(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "future.trace"
    bad.write_text("# vmkit-trace: 2\n")
    assert cli(["replay", str(bad)]) == 2
    assert f"{bad}:1: bad vmkit-trace header: format 2" in capsys.readouterr().err
