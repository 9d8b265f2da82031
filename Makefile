# make install: .venv with everything pinned; make check: every test that needs no database (under a minute);
# make test: the whole suite on an embedded PostgreSQL 16 (the CI command);
# make demo: the reference demo (scenario 1).
PYTHON ?= python3
# 2M rows: the risky step then stalls the API for 13-15 s here, several times curl's 3 s timeout even on a fast day
# (at 1M a fast run stalled 2.9 s and failed nothing); the whole demo stays under 3 minutes on a fresh clone.
DEMO_ROWS ?= 2000000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install check test test-docker demo clean

install: $(STAMP)

$(STAMP): requirements/runtime.txt requirements/lab.txt requirements/dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The fast tier: every test whose fixtures start no PostgreSQL (marked `postgres` by tests/conftest.py).
check: install
	$(BIN)/python -m pytest -m "not postgres" -q

# Two workers (pytest-xdist), one per core; tests that share an expensive fixture run on the same worker
# (tests/conftest.py, work_units).
test: install
	$(BIN)/python -m pytest -n 2 --dist loadscope --durations=25

# The Docker path end to end on a real engine (tests/docker_e2e/; not part of `make test`): the Docker commands of
# proj01's two DEMO_COMMANDS.md and proj02's, as written, with the curl loop beside them (under 4 minutes here).
# DOCKER_ROWS=N runs every seed above N rows with N (named in the output), for a slower machine. Needs Docker with
# Compose v2, and curl; without a Docker engine it says so and exits 0.
DOCKER_ROWS ?= 10000000
# PROJECTS=proj10_large_deletes,...: run those projects' pages instead of proj01's pair and proj02.
PROJECTS ?=
test-docker: install
	@if ! docker info >/dev/null 2>&1 || ! docker compose version >/dev/null 2>&1; then \
	  echo "test-docker: no Docker engine with Compose v2 reachable (docker info, docker compose version); skipped"; \
	  exit 0; fi; \
	command -v curl >/dev/null || { echo "test-docker: curl is not installed (the check runs the curl loop)"; exit 1; }; \
	start=$$(date +%s); \
	MIGRATIONLAB_DOCKER_E2E=1 DOCKER_E2E_LARGE_COUNT=$(DOCKER_ROWS) DOCKER_E2E_PROJECTS=$(PROJECTS) \
	  $(BIN)/python -m pytest tests/docker_e2e -s -v -p no:cacheprovider; \
	status=$$?; echo "test-docker: $$(( $$(date +%s) - start )) s"; exit $$status

demo: install
	$(BIN)/python -m migrationlab showdown 1 --rows $(DEMO_ROWS) --out showdown-demo
	@echo
	@echo "The chart is showdown-demo/chart.png (numbers: showdown-demo/report.json). Bigger table: add --rows 10000000."

clean:
	-$(BIN)/python -m migrationlab down
	rm -rf $(VENV)
