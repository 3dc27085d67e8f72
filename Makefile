# The two set-up commands are `make run` and `make test`; both install first (idempotent).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install run test lint bench bench-report soak wheelhouse clean

install: $(STAMP)

# Re-install only when the project's metadata changes; system tools only where missing.
$(STAMP): pyproject.toml
	@command -v tmux >/dev/null 2>&1 || { echo "installing tmux (the console's end-to-end test drives it)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tmux >/dev/null; \
	  else echo "tmux missing: install it (apt-get install tmux) for the tmux test"; fi; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -U pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test,karabo]'
	@touch $(STAMP)

# The main job: the console on the built-in simulator.
run: install
	$(BIN)/shotwatch run

lint: install
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	@if [ -f ../shared/tools/layers.py ]; then $(BIN)/python ../shared/tools/layers.py .; fi

# Two processes: most tests wait on sockets, subprocesses and timers; a file's tests share a process
# (its module fixtures are built once).
test: lint
	$(BIN)/pytest -q -n 2 --dist loadfile

# Every benchmarks/bench_*.py (ONLY="bench_sim bench_reduce": a subset), rows saved to
# benchmarks/results/, then BENCHMARKS.md's tables regenerated; the exit status is run_all's
# (1 if a gate failed or a script crashed or printed nothing), the tables show it either way.
bench: install
	$(BIN)/python benchmarks/run_all.py $(ONLY); status=$$?; $(BIN)/python benchmarks/report.py && exit $$status

# BENCHMARKS.md's tables from the result files already there (rows from other code name their commit).
bench-report: install
	$(BIN)/python benchmarks/report.py

# 30 minutes of the simulator at 60 Hz with a console attached (memory, losses, completeness).
soak: install
	$(BIN)/python benchmarks/soak.py --minutes $(or $(MINUTES),30); status=$$?; $(BIN)/python benchmarks/report.py && exit $$status

wheelhouse: install
	$(BIN)/python tools/wheelhouse.py $(if $(PYVER),--python-version $(PYVER)) $(if $(PLATFORM),--platform $(PLATFORM))

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist wheelhouse
