"""Differential fuzzing: a native child and a model process in lockstep (vmkit.fuzz, issue 5).

Random operations run on both; after each one the outcome, the normalised maps, status figures,
mincore vectors and page contents must agree (see :mod:`vmkit.fuzz.machine`).  A divergence fails
the test with a shrunk, ready-to-paste regression test in its message.  The long run is
``make fuzz`` (``python -m vmkit.fuzz --steps N``).

The operation kinds below currently diverge; they are left out so this suite stays green.  Each
names its minimal reproducer (the native side is the truth).  Remove an entry once the model is
fixed, and the fuzzer covers that kind again.
"""

from __future__ import annotations

import datetime

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.stateful import run_state_machine_as_test

from vmkit.fuzz import make_machine

#: Operation kinds left out of the CI runs because the model still diverges on them, each with its
#: minimal reproducer.  Empty: the four found so far are fixed and live on as regression tests in
#: tests/test_fuzz_regressions.py.
KNOWN_DIVERGENT: dict[str, str] = {}

# No shrinking in CI: a divergence fails at once with its full (reproducible) sequence; the long run
# (``make fuzz``) shrinks.  Shrinking lockstep sequences can take many minutes.
_SETTINGS = dict(deadline=None, database=None, print_blob=False,
                 phases=(Phase.explicit, Phase.reuse, Phase.generate),
                 suppress_health_check=list(HealthCheck))
Machine = make_machine(set(KNOWN_DIVERGENT), name="DifferentialCI")


def test_differential_fixed_seed() -> None:
    """A fixed seed: the same sequences on every run."""
    run_state_machine_as_test(seed(20251126)(make_machine(set(KNOWN_DIVERGENT), "FixedSeed")),
                              settings=settings(max_examples=40, stateful_step_count=25, **_SETTINGS))


def test_differential_daily_seed() -> None:
    """A seed that rotates daily, so CI explores new sequences every day (reproducible that day)."""
    day = datetime.date.today().toordinal()
    run_state_machine_as_test(seed(day)(make_machine(set(KNOWN_DIVERGENT), "DailySeed")),
                              settings=settings(max_examples=40, stateful_step_count=25, **_SETTINGS))
