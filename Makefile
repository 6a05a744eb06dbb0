# `make demo` and `make test` create .venv on first use (python3 and make are all they need).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean fuzz

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vmkit tour
	$(BIN)/vmkit replay --shipped node

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/native_overhead.py
	$(BIN)/python benchmarks/sim_calls.py
	$(BIN)/python benchmarks/replay_speed.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis

# Long differential run of vmkit.sim against the real kernel: `make fuzz STEPS=100000`.
# EXCLUDE=kind,kind leaves operation kinds out (see KNOWN_DIVERGENT in tests/test_differential.py).
# NO_SHRINK=1 prints a divergent sequence as run (volume runs); SEED=N repeats a run.
STEPS ?= 20000
EXCLUDE ?=
fuzz: $(STAMP)
	$(BIN)/python -m vmkit.fuzz --steps $(STEPS) $(if $(EXCLUDE),--exclude $(EXCLUDE)) $(if $(NO_SHRINK),--no-shrink) $(if $(SEED),--seed $(SEED))
