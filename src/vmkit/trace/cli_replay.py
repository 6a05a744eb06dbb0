"""``vmkit replay`` and ``vmkit maps``: read a trace, replay it, print what came out."""

from __future__ import annotations

import sys
from collections.abc import Callable

from vmkit.trace.replay import Replay, ReplayError
from vmkit.trace.report import summary
from vmkit.trace.strace import Event, TraceError, parse_file

PROGRESS_FROM = 50_000  # events; shorter traces replay in well under a few seconds


def _load(path: str) -> list[Event] | None:
    try:
        return list(parse_file(path))
    except OSError as error:
        print(f"vmkit: cannot read {path}: {error.strerror}", file=sys.stderr)
    except TraceError as error:
        print(f"vmkit: {error}", file=sys.stderr)
    return None


def _run(replay: Replay, events: list[Event], stop_after: int | None = None) -> bool:
    progress: Callable[[int], None] | None = None
    bar = None
    if len(events) >= PROGRESS_FROM and sys.stderr.isatty():
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("replaying", total=len(events))
        bar.start()
        progress = lambda done: bar.update(task, completed=done)  # noqa: E731
    try:
        replay.run(events, progress, stop_after)
    except ReplayError as error:
        print(f"vmkit: {error}", file=sys.stderr)
        return False
    finally:
        if bar is not None:
            bar.stop()
    return True


def replay(path: str, *, as_json: bool = False, show_all: bool = False, host_binaries: bool = True) -> int:
    events = _load(path)
    if events is None:
        return 2
    run = Replay(host_binaries=host_binaries, path=path)
    if not _run(run, events):
        return 2
    if as_json:
        print(run.report.to_json())
    else:
        summary(run.report, path, sys.stdout, show_all=show_all)
    return 1 if run.report.disagreements else 0


def maps(path: str, pid: int | None, line: int | None = None) -> int:
    events = _load(path)
    if events is None:
        return 2
    run = Replay(path=path, keep_exited=True)
    if not _run(run, events, line):
        return 2
    shown = 0
    for traced_pid, model in run.last_models().items():
        if pid is not None and traced_pid != pid:
            continue
        print(f"# pid {traced_pid}")
        print(model.maps(), end="")
        shown += 1
    if not shown:
        print(f"vmkit: no process {'with pid %d ' % pid if pid is not None else ''}has a known address "
              "space at the end of the trace", file=sys.stderr)
        return 1
    return 0
