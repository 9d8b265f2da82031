# make install: .venv with everything pinned; make test: the whole suite on an embedded PostgreSQL 16;
# make demo: the reference demo (scenario 1).
PYTHON ?= python3
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

test: install
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m migrationlab showdown 1 --rows 1000000 --out showdown-demo
	@echo
	@echo "The chart is showdown-demo/chart.png (numbers: showdown-demo/report.json). Bigger table: add --rows 10000000."

clean:
	-$(BIN)/python -m migrationlab down
	rm -rf $(VENV)
