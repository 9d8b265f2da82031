"""Every claim a scenario.toml makes about its steps, judged by PostgreSQL (migrationlab.lockjudge).

The table is large enough for a backfill to need several batches (so "one batch" and "the whole table" differ),
small enough for seconds. The verdicts do not depend on table size or machine speed.
"""

import json

import pytest

from migrationlab import lab
from migrationlab.scenarios import all_projects
from tests.conftest import ROWS, copy_of_seeded, manage


# One judgement per project, shared by the three tests below (on one test worker: conftest.work_units).
@pytest.fixture(scope="module", params=[p.name for p in all_projects()])
def judged(request, pg):
    name = request.param
    project = next(p for p in all_projects() if p.name == name)
    database, url = copy_of_seeded(pg, name, ROWS)
    try:
        done = manage(name, url, "judge_locks", "--json")
    finally:
        lab.drop_database(pg.dsn(), database)
    return project, json.loads(done.stdout)


def test_every_step_blocks_exactly_what_its_scenario_claims(judged):
    project, judgements = judged
    assert [j["migration"] for j in judgements] == [s.migration for s in project.steps]
    for judgement in judgements:
        assert (judgement["migration"], judgement["reads"], judgement["writes"]) == (
            judgement["migration"], judgement["claimed_reads"], judgement["claimed_writes"]
        ), judgement
        # A project whose large table refers to another one claims that table's reads and writes too.
        referenced = (judgement["referenced_reads"], judgement["referenced_writes"])
        assert referenced == (judgement["claimed_referenced_reads"], judgement["claimed_referenced_writes"]), judgement
        assert (None in referenced) == (project.referenced_table is None), judgement


def test_every_release_answers_as_its_scenario_claims(judged):
    """A project with releases: after each step, the release still serving answered its read and write as the
    step's previous_release claims (its own code, against the migrated database), and after a release's last
    step, that release (deployed then) answered both."""
    project, judgements = judged
    for step, judgement in zip(project.steps, judgements):
        assert judgement["previous_release"] == judgement["claimed_previous_release"] == step.previous_release, \
            judgement
        deployed = project.deployed_after(step)
        assert judgement["deployed_release"] == ("works" if deployed is not None else None), judgement


def test_risky_steps_block_throughout_and_safe_steps_never_do(judged):
    _, judgements = judged
    for judgement in judgements:
        blocks_throughout = "throughout" in (judgement["reads"], judgement["writes"], judgement["referenced_reads"],
                                             judgement["referenced_writes"])
        # Or, a step of a project with releases: it fails every request of the release still serving.
        fails_the_previous_release = judgement["previous_release"] == "fails"
        assert (blocks_throughout or fails_the_previous_release) == (judgement["kind"] == "risky"), judgement


def test_proj01_risky_step_holds_access_exclusive_while_rewriting_every_row(seeded):
    name = "proj01_add_not_null_constraint"
    (judgement,) = json.loads(manage(name, seeded(name, ROWS), "judge_locks", "--json").stdout)
    assert judgement["strongest_lock"] == "AccessExclusiveLock"
    first_wait = judgement["waits"][0]
    # Reads already wait after the first statement (ALTER ... SET DEFAULT), before any row was touched...
    assert "SET DEFAULT" in first_wait["statement"] and first_wait["rows_before"] == 0
    assert first_wait["read_waited"] and first_wait["write_waited"]
    # ...and keep waiting while the same transaction updates and scans every row.
    last_wait = judgement["waits"][-1]
    assert last_wait["transaction"] == first_wait["transaction"] and last_wait["rows_after"] >= ROWS


def test_proj01_safe_validate_scans_the_table_without_blocking_anyone(seeded):
    name = "proj01_safe_backfill"
    judged_steps = json.loads(manage(name, seeded(name, ROWS), "judge_locks", "--json").stdout)
    judgements = {j["migration"]: j for j in judged_steps}
    # The strongest lock of each step, and whether it reads rows while holding a lock that makes traffic wait.
    assert {m: j["strongest_lock"] for m, j in judgements.items()} == {
        "0003_status_db_default_for_new_rows": "AccessExclusiveLock",
        "0004_backfill_status_batched": "RowExclusiveLock",
        "0005_add_status_check_not_valid": "AccessExclusiveLock",
        "0006_validate_status_check": "ShareUpdateExclusiveLock",
        "0007_set_status_not_null_using_check": "AccessExclusiveLock",
    }
    for catalog_only in ("0003_status_db_default_for_new_rows", "0005_add_status_check_not_valid"):
        assert judgements[catalog_only]["waits"] and all(w["rows_after"] == 0 for w in judgements[catalog_only]["waits"])
    validate = judgements["0006_validate_status_check"]
    assert validate["strongest_lock"] == "ShareUpdateExclusiveLock"
    assert validate["waits"] == []
    # SET NOT NULL takes ACCESS EXCLUSIVE, but thanks to the validated CHECK it reads no row while holding it.
    set_not_null = judgements["0007_set_status_not_null_using_check"]
    assert set_not_null["strongest_lock"] == "AccessExclusiveLock"
    assert all(wait["rows_after"] == 0 for wait in set_not_null["waits"])


@pytest.mark.parametrize("name", [p.name for p in all_projects() if any(s.kind == "safe" for s in p.steps)])
def test_behind_a_long_report_no_safe_step_makes_traffic_wait_for_it(name, seeded):
    """A report holds ACCESS SHARE on the large table beside every step. A safe step that needs a stronger lock
    waits, and traffic queues behind it, for at most its lock_timeout: never `throughout`."""
    judgements = json.loads(manage(name, seeded(name, ROWS), "judge_locks", "--json", "--with-report").stdout)
    for judgement in judgements:
        if judgement["kind"] == "safe":
            verdicts = {key: judgement[key] for key in ("reads", "writes", "referenced_reads", "referenced_writes")
                        if judgement.get(key)}
            assert "throughout" not in verdicts.values(), judgement
            for stop in judgement["stopped_while_waiting"]:  # queued behind it: only for its lock_timeout
                if stop["waiting_for"] == "report" and (stop["read_waited"] or stop["write_waited"]):
                    assert stop["lock_timeout"] not in (None, "0"), stop


def test_the_text_verdicts_start_on_lines_of_their_own(seeded):
    """A batched step's progress lines end without a newline: the first verdict must not run into the last one."""
    name = "proj01_safe_backfill"
    project = next(p for p in all_projects() if p.name == name)
    lines = manage(name, seeded(name, ROWS), "judge_locks").stdout.splitlines()
    for step in project.steps:
        assert any(line.startswith(step.migration) for line in lines), (step.migration, lines)
