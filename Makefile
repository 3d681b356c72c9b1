# polycrack: `make demo`, `make test`, `make bench`. The first use creates .venv from a
# Python >= 3.12 found on PATH or in pyenv's versions folder (tools/find_python.sh).
VENV      := .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.polycrack-installed
NP        ?= 2
PYTEST    := $(PY) -m pytest
export OMP_NUM_THREADS ?= 1

.PHONY: venv demo test test-serial test-mpi bench lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@set -e; \
	if [ ! -x $(PY) ]; then \
	  base=$$(bash tools/find_python.sh) || exit 1; \
	  echo "creating $(VENV) with $$base"; \
	  "$$base" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --quiet --upgrade pip; \
	$(PY) -m pip install --quiet -c requirements.lock -e ".[test,lint]"; \
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mpirun -n $(NP) $(VENV)/bin/polycrack demo

test: test-serial test-mpi

test-serial: $(STAMP)
	$(PYTEST) -q

test-mpi: $(STAMP)
	$(VENV)/bin/mpirun -n $(NP) $(PY) -m pytest -q -m mpi -p no:cacheprovider

bench: $(STAMP)
	@ls benchmarks/*.py >/dev/null 2>&1 && for b in benchmarks/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done || echo "no benchmarks yet"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache demo_out
