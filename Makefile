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
	$(BIN)/python -m migrationlab up proj01_add_not_null_constraint --rows 2000000
	$(BIN)/python -m migrationlab up proj01_safe_backfill --rows 2000000
	@echo
	@echo "Both projects are up. In one terminal run the curl loop of proj01_add_not_null_constraint/DEMO_COMMANDS.md"
	@echo "(port 8010), in another:  $(BIN)/python -m migrationlab manage proj01_add_not_null_constraint -- migrate demoapp"
	@echo "Then the same with proj01_safe_backfill (port 8011). Stop everything with:  $(BIN)/python -m migrationlab down"

clean:
	-$(BIN)/python -m migrationlab down
	rm -rf $(VENV)
