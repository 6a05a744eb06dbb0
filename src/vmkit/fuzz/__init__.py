"""``vmkit.fuzz``: differential fuzzing of the model kernel against the real one.

* :mod:`vmkit.fuzz.machine` — the Hypothesis state machine driving a native child and a model
  process in lockstep (:func:`make_machine`);
* :mod:`vmkit.fuzz.compare` — normalisation of maps text and outcomes;
* :mod:`vmkit.fuzz.printer` — a failing step list as a ready-to-paste pytest test;
* ``python -m vmkit.fuzz --steps N`` — the long run (``make fuzz``).
"""

from vmkit.fuzz.compare import normalise_maps
from vmkit.fuzz.machine import STATS, UNIMPLEMENTED, DifferentialMachine, DivergenceError, make_machine

__all__ = ["DifferentialMachine", "DivergenceError", "STATS", "UNIMPLEMENTED", "make_machine",
           "normalise_maps"]
