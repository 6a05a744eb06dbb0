"""What a replay found (:class:`Report`) and the human summary ``vmkit replay`` prints (``--json``
prints :meth:`Report.to_json` instead)."""

from __future__ import annotations

import json
import shlex
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO


SHOWN_DISAGREEMENTS = 20


@dataclass
class Disagreement:
    line: int
    pid: int
    call: str
    kernel: str
    model: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "pid": self.pid, "call": self.call, "kernel": self.kernel,
                "model": self.model}


@dataclass
class Report:
    """What a replay found.  ``calls`` counts the calls compared, ``agree`` those that agreed."""

    calls: int = 0
    agree: int = 0
    disagreements: list[Disagreement] = field(default_factory=list)
    unverified: Counter[str] = field(default_factory=Counter)
    per_syscall: dict[str, list[int]] = field(default_factory=dict)  # name -> [calls, agree]
    other_calls: int = 0
    processes: int = 0
    threads: int = 0  # tasks beyond each process's first (clone with CLONE_THREAD)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    command: list[str] | None = None  # from the trace's ``# vmkit-command`` header

    @property
    def unverified_total(self) -> int:
        return sum(self.unverified.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "agree": self.agree,
            "disagreements": [d.as_dict() for d in self.disagreements],
            "unverified": self.unverified_total,
            "unverified_reasons": dict(self.unverified.most_common()),
            "per_syscall": {name: {"calls": c, "agree": a} for name, (c, a) in sorted(self.per_syscall.items())},
            "other_calls": self.other_calls, "processes": self.processes, "threads": self.threads, "notes": self.notes,
            "seconds": round(self.seconds, 3), "command": self.command,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def summary(report: Report, path: str, out: TextIO, *, show_all: bool = False) -> None:
    share = 100.0 * report.agree / report.calls if report.calls else 100.0
    speed = report.calls / report.seconds if report.seconds else 0.0
    threads = f" ({report.threads} more thread(s))" if report.threads else ""
    print(f"{path}: {report.processes} process(es){threads}, {report.calls} memory calls compared, "
          f"{report.agree} agree ({share:.1f}%), {len(report.disagreements)} disagree, "
          f"{report.unverified_total} unverified", file=out)
    if report.command:
        print(f"  command: {shlex.join(report.command)}", file=out)
    if report.per_syscall:
        width = max(len(name) for name in report.per_syscall)
        print("  per call:", file=out)
        for name, (calls, agree) in sorted(report.per_syscall.items(), key=lambda kv: -kv[1][0]):
            mark = "" if calls == agree else f"   <- {calls - agree} disagree"
            print(f"    {name:<{width}} {agree:>7} / {calls:<7}{mark}", file=out)
    if report.unverified:
        print("  unverified (the trace does not say enough to check them):", file=out)
        for reason, count in report.unverified.most_common():
            print(f"    {count:>7}  {reason}", file=out)
    for note in report.notes:
        print(f"  note: {note}", file=out)
    print(f"  other calls in the trace (not memory calls): {report.other_calls}", file=out)
    print(f"  replayed in {report.seconds:.2f} s ({speed:,.0f} compared calls/s)", file=out)
    shown = report.disagreements if show_all else report.disagreements[:SHOWN_DISAGREEMENTS]
    if shown:
        print("disagreements:", file=out)
        for d in shown:
            print(f"  line {d.line} (pid {d.pid}): {d.call}", file=out)
            print(f"      kernel: {d.kernel}   model: {d.model}", file=out)
        hidden = len(report.disagreements) - len(shown)
        if hidden:
            print(f"  ... and {hidden} more (--all shows them)", file=out)
