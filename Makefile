# make install: .venv with everything pinned; make test: the whole suite on an embedded PostgreSQL 16;
# make demo: the reference demo (scenario 1).
PYTHON ?= python3
# 2M rows: the risky step then stalls the API for 13-15 s here, several times curl's 3 s timeout even on a fast day
# (at 1M a fast run stalled 2.9 s and failed nothing); the whole demo stays under 3 minutes on a fresh clone.
DEMO_ROWS ?= 2000000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo clean

install: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/lab.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Two workers (pytest-xdist), one per core; tests that share an expensive fixture run on the same worker
# (tests/conftest.py, work_unit).
test: install
	$(BIN)/python -m pytest -n 2 --dist loadscope --durations=25

demo: install
	$(BIN)/python -m migrationlab showdown 1 --rows $(DEMO_ROWS) --out showdown-demo
	@echo
	@echo "The chart is showdown-demo/chart.png (numbers: showdown-demo/report.json). Bigger table: add --rows 10000000."

clean:
	-$(BIN)/python -m migrationlab down
	rm -rf $(VENV)
