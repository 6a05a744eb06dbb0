"""How fast ``vmkit replay`` goes on the shipped traces: strace parsing (lines/s) and replay
(compared memory calls/s, and all trace events/s), best of a few runs each."""

from __future__ import annotations

import time

from vmkit.trace import shipped_traces
from vmkit.trace.replay import Replay
from vmkit.trace.strace import parse_file

RUNS = 5


def main() -> None:
    total_calls = total_replay = total_lines = total_parse = 0.0
    print(f"{'trace':<16}{'lines':>8}{'parse lines/s':>16}{'calls':>8}{'replay calls/s':>16}{'events/s':>12}")
    for path in shipped_traces():
        lines = sum(1 for _ in path.open())
        parse_best = replay_best = float("inf")
        calls = events_n = 0
        for _ in range(RUNS):
            started = time.perf_counter()
            events = list(parse_file(str(path)))
            parse_best = min(parse_best, time.perf_counter() - started)
            replay = Replay(host_binaries=False)
            started = time.perf_counter()
            report = replay.run(events)
            replay_best = min(replay_best, time.perf_counter() - started)
            calls, events_n = report.calls, len(events)
        total_calls += calls
        total_replay += replay_best
        total_lines += lines
        total_parse += parse_best
        print(f"{path.stem:<16}{lines:>8}{lines / parse_best:>16,.0f}{calls:>8}{calls / replay_best:>16,.0f}"
              f"{events_n / replay_best:>12,.0f}")
    print(f"{'all':<16}{total_lines:>8.0f}{total_lines / total_parse:>16,.0f}{total_calls:>8.0f}"
          f"{total_calls / total_replay:>16,.0f}")
    print("target: replay >= 200,000 calls/s")


if __name__ == "__main__":
    main()
