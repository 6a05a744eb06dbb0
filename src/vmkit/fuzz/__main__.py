"""``python -m vmkit.fuzz --steps N``: the long differential run (``make fuzz``).

Runs random sequences (one fresh native child and model process each) until N operations have
been compared or a divergence is found; prints sequences run, operations, operations per second,
divergences and the model paths that raised NotImplementedError.  A divergence is shrunk by
Hypothesis and printed as a ready-to-paste pytest function; the exit status is then 1.
``--no-shrink`` skips shrinking (the divergent sequence is printed as it was run: shrinking lockstep
sequences can take many minutes) and is the mode for volume runs; ``--seed`` makes a run repeatable
(each batch of ``--batch`` sequences draws its Hypothesis seed from it).

A divergence that does not repeat when Hypothesis runs the same sequence again on a fresh child and
model (``FlakyFailure``) is the real kernel answering differently to identical calls (a THP
allocation that fell back to small pages, khugepaged collapsing in the background): it is printed
and counted as *unrepeatable*, and the run goes on.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.errors import FlakyFailure
from hypothesis.stateful import run_state_machine_as_test

from vmkit.fuzz.machine import STATS, UNIMPLEMENTED, DivergenceError, make_machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vmkit.fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="operations to run (default 10000)")
    parser.add_argument("--sequence-length", type=int, default=50, help="operations per sequence at most")
    parser.add_argument("--exclude", default="", help="comma-separated operation kinds to leave out "
                        "(e.g. the KNOWN_DIVERGENT of tests/test_differential.py)")
    parser.add_argument("--no-shrink", action="store_true",
                        help="print a divergent sequence as run instead of shrinking it (volume runs)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run (default: random)")
    parser.add_argument("--batch", type=int, default=20, help="sequences per Hypothesis run (default 20)")
    args = parser.parse_args(argv)
    excluded = {k for k in args.exclude.split(",") if k}
    machine = make_machine(excluded)
    phases = (Phase.generate,) if args.no_shrink else (Phase.generate, Phase.shrink)
    batch = settings(max_examples=args.batch, stateful_step_count=args.sequence_length, deadline=None,
                     database=None, suppress_health_check=list(HealthCheck), print_blob=False,
                     phases=phases)
    run_seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    print(f"seed: {run_seed}", file=sys.stderr)
    seeds = random.Random(run_seed)
    start = time.monotonic()
    status = 0
    unrepeatable = 0
    try:
        while STATS["operations"] < args.steps:
            try:
                run_state_machine_as_test(seed(seeds.randrange(1 << 64))(machine), settings=batch)
            except FlakyFailure as flaky:
                unrepeatable += 1
                found = [e for e in flaky.exceptions if isinstance(e, DivergenceError)]
                print(f"\nunrepeatable divergence (the same sequence agreed when run again):\n"
                      f"{found[0] if found else flaky}", file=sys.stderr)
            elapsed = time.monotonic() - start
            print(f"\r{STATS['sequences']} sequences, {STATS['operations']} operations, "
                  f"{STATS['operations'] / elapsed:.0f} ops/s", end="", file=sys.stderr, flush=True)
    except DivergenceError as e:
        print(f"\n{e}")
        status = 1
    except KeyboardInterrupt:
        status = 130
    elapsed = time.monotonic() - start
    print(f"\nsequences: {STATS['sequences']}  operations: {STATS['operations']}  "
          f"ops/s: {STATS['operations'] / max(elapsed, 1e-9):.0f}  divergences: {1 if status == 1 else 0}"
          f"  unrepeatable: {unrepeatable}  (operations include shrinking when a divergence is found)")
    for message, count in UNIMPLEMENTED.most_common():
        print(f"  not modelled ({count}x): {message}")
    return status


if __name__ == "__main__":
    sys.exit(main())
