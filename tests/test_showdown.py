"""The showdown's parts: the numbers it derives, the probe and the sampler against a lock held by the test, the
long-query actor, its CLI errors, and a real Ctrl-C.

Nothing here depends on how fast the machine is: the synthetic step holds its lock until the probe has a request
hanging and the sampler has seen the lock and a waiter, and the assertions are about what was found, not how
long it took. FAILSAFE_S only bounds a broken run.
"""

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import psycopg2
import pytest

from migrationlab import REPO_ROOT, lab
from migrationlab.scenarios import Actor, get_project
from migrationlab.showdown import analysis, runner
from migrationlab.showdown.actors import REPORT_APPLICATION, LongQuery
from migrationlab.showdown.analysis import Window
from migrationlab.showdown.clock import Clock
from migrationlab.showdown.databases import ShowdownDatabases
from migrationlab.showdown.probe import Probe, Request, Target
from migrationlab.showdown import suite
from migrationlab.showdown.report import Settings, build_report, render_project, render_summary
from migrationlab.showdown.sampler import LockRow, LockSample, LockSampler, SessionWait
from migrationlab.showdown.schema import REPORT_SCHEMA, SUMMARY_SCHEMA
from tests.conftest import free_port, query, seeded_database

PROJECT = "proj01_add_not_null_constraint"
TABLES = ["large_user", "small_user"]
FAILSAFE_S = 120.0


# -- the numbers, from hand-made measurements ---------------------------------------------------------------------

def request(sent_s, latency_s, status=200, error=None, endpoint="list_large"):
    return Request(endpoint, sent_s, latency_s, status, error)


def test_percentiles_are_nearest_rank():
    values = [0.01 * n for n in range(1, 101)]
    assert analysis.percentile(values, 0.50) == values[49]
    assert analysis.percentile(values, 0.99) == values[98]
    assert analysis.percentile([0.3], 0.99) == 0.3
    assert analysis.percentile([], 0.5) is None


@pytest.mark.parametrize("status, error, failed", [(200, None, False), (404, None, True), (503, None, True),
                                                    (301, None, True), (204, None, True), (None, "timeout", True),
                                                    (None, "Connection refused", True)])
def test_a_request_fails_as_the_talks_curl_loop_counts_it(status, error, failed):
    """The curl loop prints FAILED for anything but a 200, or no answer within --max-time: so does the showdown."""
    assert request(0, 0.01, status, error).failed is failed


def test_the_probes_write_names_no_row_like_the_curl_loop():
    """A row the probe named could be one the step deleted (proj10): a 404 that the curl loop never sees."""
    for name in (PROJECT, "proj10_large_deletes", "proj07_add_foreign_key"):
        project = get_project(name)
        for target in runner._targets(project, 8000, 1_000_000):
            if "update" in target.name and not project.write_query:
                first_line = target.request(random.Random(1)).split(b"\r\n")[0]
                assert b"?" not in first_line, (name, first_line)


def test_normal_latency_is_three_baseline_p90s_with_a_floor():
    assert analysis.normal_latency([request(0, 0.010)] * 50) == analysis.NORMAL_LATENCY_FLOOR_S
    assert analysis.normal_latency([request(0, 0.050)] * 50) == pytest.approx(0.150)
    one_slow_answer = [request(0, 0.050)] * 59 + [request(0, 0.9)]
    assert analysis.normal_latency(one_slow_answer) == pytest.approx(0.150)
    assert analysis.normal_latency([request(0, 0.050)] * 50 + [request(0, 3.0, None, "timeout")]) == pytest.approx(0.150)


def test_overlapping_hung_requests_make_one_stall_charged_to_each_window_for_its_part():
    normal = 0.1
    requests = [request(0.0, 0.02)] + [request(1.0 + 0.05 * n, 3.0, None, "timeout") for n in range(40)] + [
        request(3.0, 1.1), request(10.0, 0.02)]
    stalls = analysis.stall_intervals(requests, normal)
    assert stalls == [(pytest.approx(1.1), pytest.approx(1.0 + 0.05 * 39 + 3.0))]
    # Each window is charged the part of the stall inside it: never more than the window.
    assert analysis.longest_stall(stalls, Window(0.5, 2.0)) == pytest.approx(0.9)
    assert analysis.longest_stall(stalls, Window(2.0, 9.0)) == pytest.approx(1.0 + 0.05 * 39 + 3.0 - 2.0)
    assert analysis.backlog_after(stalls, Window(0.5, 2.0)) == pytest.approx(1.0 + 0.05 * 39 + 3.0 - 2.0)
    assert analysis.backlog_after(stalls, Window(2.0, 9.0)) == 0.0  # it ended inside
    stats = analysis.endpoint_stats(requests, Window(0.5, 2.0), stalls)
    assert (stats["requests"], stats["failures"], stats["timeouts"], stats["max_s"]) == (20, 20, 20, 3.0)


def lock_row(pid, application, relation, mode, granted=True, waited_s=None, blocked_by=(), locktype="relation"):
    return LockRow(pid, application, locktype, relation, mode, granted, waited_s, tuple(blocked_by))


def test_waiters_count_against_the_migrations_strongest_lock_on_their_table():
    migration, reader, writer = 100, 200, 300
    holding = (lock_row(migration, "migration", "large_user", "AccessExclusiveLock"),
               lock_row(migration, "migration", "large_user", "RowExclusiveLock"))
    reading = lock_row(reader, "web", "large_user", "AccessShareLock", False, 0.06, [migration])
    writing = (lock_row(writer, "web", "large_user", "RowExclusiveLock"),  # holds its table lock, waits on a row
               lock_row(writer, "web", None, "ShareLock", False, 0.02, [migration], "transactionid"))
    samples = [LockSample(0.0, holding)] + [LockSample(0.05 * n, (*holding, reading)) for n in range(1, 20)]
    samples[10] = LockSample(0.5, (*holding, reading, *writing))
    samples.append(LockSample(1.0, ()))
    locks = analysis.migration_locks(samples, Window(0.0, 1.1), TABLES, interval_s=0.05)
    strongest = locks[0]
    assert (strongest["relation"], strongest["mode"]) == ("large_user", "AccessExclusiveLock")
    assert strongest["waited_behind"] == []
    assert strongest["held_s"] == pytest.approx(1.0)
    assert (strongest["waiters_max"], strongest["waiters_total"], strongest["longest_wait_s"]) == (2, 2, 0.06)
    assert locks[1]["mode"] == "RowExclusiveLock" and locks[1]["waiters_total"] == 0
    waits = analysis.web_waits(samples, Window(0.0, 1.1), TABLES, 0.05)
    assert waits == {"reads": {"level": "throughout", "sessions": 1, "longest_wait_s": 0.06},
                     "writes": {"level": "briefly", "sessions": 1, "longest_wait_s": 0.02}}
    assert analysis.lock_timeline(samples, TABLES, 0.05) == [
        {"relation": "large_user", "mode": "AccessExclusiveLock", "granted": True, "start_s": 0.0, "end_s": 1.0}]


def test_traffic_queued_behind_a_migration_still_waiting_for_its_lock_is_a_queue_not_throughout():
    vacuum, migration, reader = 50, 100, 200
    samples = [LockSample(0.1 * n, (
        lock_row(vacuum, "autovacuum worker", "large_user", "ShareUpdateExclusiveLock"),
        lock_row(migration, "migration", "large_user", "AccessExclusiveLock", False, 0.1 * n, [vacuum]),
        lock_row(reader, "web", "large_user", "AccessShareLock", False, 0.1 * n, [migration]),
    )) for n in range(10)] + [LockSample(1.0, (lock_row(migration, "migration", "large_user", "AccessExclusiveLock"),))]
    locks = analysis.migration_locks(samples, Window(0.0, 1.1), TABLES, interval_s=0.1)
    assert locks[0]["waited_s"] == pytest.approx(1.0) and locks[0]["waited_behind"] == ["autovacuum worker"]
    waits = analysis.web_waits(samples, Window(0.0, 1.1), TABLES, 0.1)
    assert waits["reads"]["level"] == "briefly" and waits["reads"]["longest_wait_s"] == 0.9
    assert analysis.lock_timeline(samples, TABLES, 0.1)[0] == {
        "relation": "large_user", "mode": "AccessExclusiveLock", "granted": False, "start_s": 0.0, "end_s": 1.0}
    stalled = {"list_large": endpoint(0, 20, 1.2, 1.1), "update_order": endpoint()}
    assert analysis.verdict(stalled, locks, waits, 0.1, after_locks={"list_large": 0.0}) == (
        "reads blocked 1.2 s, writes ok (max 40 ms) — ACCESS EXCLUSIVE on large_user, itself queued 1.0 s behind "
        "autovacuum worker")


def endpoint(failures=0, requests=100, longest_stall_s=0.0, max_s=0.04):
    return {"requests": requests, "failures": failures, "timeouts": failures, "p50_s": 0.01, "p95_s": 0.02,
            "p99_s": 0.03, "max_s": max_s, "longest_stall_s": longest_stall_s}


def waits(reads_s=0.0, writes_s=0.0):
    return {"reads": {"level": "throughout" if reads_s else "never", "sessions": 1, "longest_wait_s": reads_s},
            "writes": {"level": "throughout" if writes_s else "never", "sessions": 1, "longest_wait_s": writes_s}}


def test_the_verdict_says_what_stalled_and_which_lock():
    blocked = {"list_large": endpoint(120, 150, 6.2, 3.0), "update_order": endpoint(118, 150, 6.2, 3.0)}
    locks = [{"relation": "large_user", "mode": "AccessExclusiveLock", "held_s": 6.3, "waited_s": 0.0,
              "waited_behind": [], "waiters_max": 30, "waiters_total": 200, "longest_wait_s": 5.0}]
    assert analysis.verdict(blocked, locks, waits(5.0, 5.0), 0.025) == (
        "reads blocked 6.2 s (120 of 150 failed), writes blocked 6.2 s (118 of 150 failed) "
        "— ACCESS EXCLUSIVE on large_user")
    catching_up = {"list_large": 2.1, "update_order": 0.2}
    assert analysis.verdict(blocked, locks, waits(5.0, 5.0), 0.025, after_locks=catching_up).startswith(
        "reads blocked 6.2 s (120 of 150 failed, 2.1 s of it after the lock was gone), writes blocked 6.2 s (118 of")
    calm = {"list_large": endpoint(), "update_order": endpoint(longest_stall_s=0.08, max_s=0.18)}
    validating = [{"relation": "large_user", "mode": "ShareUpdateExclusiveLock", "held_s": 0.7, "waited_s": 0.0,
                   "waited_behind": [], "waiters_max": 0, "waiters_total": 0, "longest_wait_s": 0.0}]
    assert analysis.verdict(calm, validating, waits(), 0.025) == (
        "reads ok (max 40 ms), writes slowed (max 180 ms) — SHARE UPDATE EXCLUSIVE on large_user for 700 ms, "
        "nobody waited")
    assert analysis.verdict(calm, [], waits(), 0.025).endswith("no lock held long enough to sample (< 25 ms)")


def test_a_long_stall_without_a_lock_wait_is_called_slow_not_blocked_and_says_what_was_waited_on():
    flushing = [LockSample(0.05 * n, (), (SessionWait(300 + n, "web", "IO:WALSync"),
                                          SessionWait(400, "migration", "IO:DataFileRead"))) for n in range(4)]
    other_waits = analysis.web_other_waits(flushing, Window(0.0, 1.0), interval_s=0.05)
    assert other_waits == {"IO:WALSync": 0.2}  # the migration's own waits are not the web's
    slow = endpoint(longest_stall_s=0.6, max_s=0.42)
    busy_disk = {"list_large": slow, "update_order": slow}
    assert analysis.verdict(busy_disk, [], waits(writes_s=0.07), 0.025, other_waits).startswith(
        "reads slow for 0.6 s, not waiting on a lock (max 420 ms; web sessions seen waiting on IO:WALSync), "
        "writes slow for 0.6 s, at most 70 ms of it waiting on a lock (max 420 ms; web sessions seen waiting on "
        "IO:WALSync)")
    mostly_a_lock = {"list_large": endpoint(longest_stall_s=0.6, max_s=0.55), "update_order": endpoint()}
    assert analysis.verdict(mostly_a_lock, [], waits(reads_s=0.4), 0.025).startswith("reads blocked 0.6 s, writes ok")


def test_the_docs_point_at_the_schema_and_its_commands_print_it():
    docs = (REPO_ROOT / "docs" / "showdown.md").read_text()
    assert "](../migrationlab/showdown/schema.py)" in docs and '"$schema"' not in docs  # linked, not pasted
    commands = re.findall(r"^\.venv/bin/(python -m migrationlab\.showdown\.schema.*?)(?:\s+#.*)?$", docs, re.MULTILINE)
    printed = []
    for command in commands:
        done = subprocess.run([sys.executable, *command.split()[1:]], capture_output=True, text=True, cwd=REPO_ROOT)
        assert done.returncode == 0, done.stderr
        printed.append(json.loads(done.stdout))
    assert printed == [REPORT_SCHEMA, SUMMARY_SCHEMA]


# -- honest under load: saturation, and stalls charged to the windows they fall in ------------------------------

RATE = 20  # requests/s per endpoint in the constructed runs below


def constructed_run(project_name=PROJECT, baseline_latency=lambda n: 0.01, baseline_status=lambda n: 200,
                    step=(5.0, 13.3), hung=(), after_end=30.0, not_recovered=()):
    """A ProjectRun from hand-made requests: a 3 s baseline, one step, the time after it. `hung`: (from, to,
    latency) requests sent every 1/RATE s in [from, to) that took `latency`; every other request took 10 ms."""
    from migrationlab.showdown.report import ProjectRun, StepRun

    project = get_project(project_name)
    baseline = Window(1.0, 4.0)
    requests = []
    for name in ("list_large", "update_order"):
        for n in range(int(after_end * RATE)):
            sent = n / RATE
            if sent in baseline:
                status = baseline_status(n)
                latency = 3.0 if status is None else baseline_latency(n)
                requests.append(request(sent, latency, status, "timeout" if status is None else None, name))
                continue
            latency = next((latency for start, end, latency in hung if start <= sent < end), 0.01)
            requests.append(request(sent, latency, endpoint=name))
    steps = [StepRun(project.steps[0], Window(*step), "logs/step.txt")]
    return ProjectRun(project=project, database="showdown_test", seed_s=1.0, baseline=baseline, steps=steps,
                      after=Window(step[1], after_end), requests=requests, samples=[], interval_s=0.025,
                      probe={"sent": len(requests), "answered": len(requests), "max_send_lag_s": 0.0, "cpu_s": 0.1,
                             "cpu_share": 0.01},
                      sampler={"samples": 0, "interval_s": 0.025, "max_gap_s": 0.0, "errors": 0, "cpu_s": 0.0},
                      not_recovered=list(not_recovered))


def constructed_report(*runs):
    settings = Settings(1_000_000, RATE, 3.0, 0.025, 3.0)
    document = build_report(1, settings, list(runs), "16", True, datetime.now(timezone.utc))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(document)
    return document


def test_a_normal_run_is_not_flagged():
    # Two answers of 300 ms among 10 ms ones (a neighbour's burst of CPU): 30 times the median, and no overload.
    document = constructed_report(constructed_run(baseline_latency=lambda n: 0.3 if n % 30 == 0 else 0.01))
    project = document["projects"][0]
    assert document["saturated"] is False
    assert project["saturation"] == {"baseline": False, "after": False, "reasons": []}
    assert "OVERLOADED" not in project["steps"][0]["verdict"]
    assert not render_summary(document).startswith("OVERLOADED")


@pytest.mark.parametrize("latency, status, reason", [
    (lambda n: 1.9 if n % 10 == 0 else 0.4, lambda n: 200, "baseline reads p99 1.9 s"),  # the 400 req/s
    (lambda n: 0.01, lambda n: None if n % 30 == 0 else 200, "2 of 60 baseline reads failed"),
])
def test_a_saturated_baseline_is_flagged_first_and_on_every_verdict(latency, status, reason):
    document = constructed_report(constructed_run(baseline_latency=latency, baseline_status=status))
    project = document["projects"][0]
    assert document["saturated"] is True
    assert project["saturation"]["baseline"] is True and reason in project["saturation"]["reasons"]
    assert all(step["verdict"].startswith("OVERLOADED (numbers measure the overload of this machine, not locks)")
               for step in project["steps"])
    first = render_summary(document).splitlines()[0]
    assert first.startswith(f"OVERLOADED {PROJECT}: {reason}") and "--rate 10" in first
    assert render_project(project, RATE).startswith("OVERLOADED")


def test_a_baseline_seen_saturated_while_its_requests_still_hung_stays_flagged():
    """On an overloaded server most baseline requests are still hanging when the baseline ends, and may never be
    answered before the probe stops: the runner's reasons, seen then, carry into the report."""
    run = constructed_run()
    run.baseline_overload = ["baseline reads p99 3.4 s"]
    document = constructed_report(run)
    assert document["saturated"] and document["projects"][0]["saturation"] == {
        "baseline": True, "after": False, "reasons": ["baseline reads p99 3.4 s"]}


def test_an_api_that_never_came_back_after_the_steps_is_flagged_as_not_recovered_not_as_overload():
    """Overload, or a step's doing (proj08 at 1M rows: the lookup lost its index, and every request after the step
    timed out): said first, but no verdict is called overload."""
    document = constructed_report(constructed_run(not_recovered=["within 120 s after the last step"]))
    project = document["projects"][0]
    saturation = project["saturation"]
    assert (saturation["baseline"], saturation["after"]) == (False, True)
    assert saturation["reasons"] == ["the API did not come back to its baseline latency within 120 s after the "
                                     "last step"]
    assert not document["saturated"] and "OVERLOADED" not in project["steps"][0]["verdict"]
    assert render_summary(document).startswith(f"NOT RECOVERED {PROJECT}: the API did not come back")
    assert "lost its index" in render_project(project, RATE).splitlines()[0]


def test_a_stall_running_past_its_step_is_cut_at_the_step_and_the_backlog_said_apart():
    """The issue's 8.3 s step with 13.5 s of stall: requests sent from 6.0 s hang 3 s (the timeout) until the
    backlog is drained at 18.5 s, 5.2 s after the step."""
    run = constructed_run(step=(5.0, 13.3), hung=[(6.0, 15.5, 3.0)], after_end=30.0)
    document = constructed_report(run)
    step = document["projects"][0]["steps"][0]
    normal = document["projects"][0]["normal_latency_s"]["list_large"]
    for name in ("list_large", "update_order"):
        stall = step["endpoints"][name]["longest_stall_s"]
        assert stall <= step["duration_s"] and stall == pytest.approx(13.3 - (6.0 + normal))
        assert step["backlog_after_step_s"][name] == pytest.approx(15.5 - 1 / RATE + 3.0 - 13.3, abs=1e-3)
    after = document["projects"][0]["after"]
    assert after["endpoints"]["list_large"]["longest_stall_s"] <= after["duration_s"]
    assert after["endpoints"]["list_large"]["longest_stall_s"] == pytest.approx(step["backlog_after_step_s"]
                                                                                ["list_large"], abs=1e-3)
    row = next(row for row in document["summary"] if row["kind"] == "risky")
    assert row["endpoints"]["list_large"]["longest_stall_s"] <= step["duration_s"]
    assert row["endpoints"]["list_large"]["backlog_after_step_s"] == step["backlog_after_step_s"]["list_large"]
    # No lock was sampled here, so the verdict calls it slow, not blocked: the backlog is said apart either way.
    assert "backlog drained for 5.2 s after the step" in step["verdict"]


def test_a_stall_that_ends_inside_its_step_leaves_no_backlog():
    document = constructed_report(constructed_run(step=(5.0, 13.3), hung=[(6.0, 8.0, 3.0)]))
    step = document["projects"][0]["steps"][0]
    assert step["backlog_after_step_s"] == {"list_large": 0.0, "update_order": 0.0}
    assert step["endpoints"]["list_large"]["longest_stall_s"] == pytest.approx(
        8.0 - 1 / RATE + 3.0 - (6.0 + document["projects"][0]["normal_latency_s"]["list_large"]))
    assert "backlog" not in step["verdict"]


# -- showdown all: the summary, and one scenario failing while the others run -------------------------------------

def test_the_summary_of_all_scenarios_has_a_row_per_step_and_says_what_failed(tmp_path):
    risky = constructed_run(hung=[(6.0, 15.5, 3.0)])
    safe = constructed_run("proj01_safe_backfill")
    overloaded = constructed_run("proj04_change_column_type", baseline_latency=lambda n: 1.9)
    results = [suite.ScenarioResult(1, [PROJECT, "proj01_safe_backfill"], "done", folder="scenario-01",
                                    report=constructed_report(risky, safe)),
               suite.ScenarioResult(3, ["proj03_indexes", "proj03_safe_backfill"], "failed",
                                    "port 8031 on 127.0.0.1 is in use by another process", "scenario-03"),
               suite.ScenarioResult(4, ["proj04_change_column_type"], "done", folder="scenario-04",
                                    report=constructed_report(overloaded))]
    options = runner.Options(selector="all", rows=1_000_000, rate_per_s=RATE)
    summary = suite.build_summary(results, options, datetime.now(timezone.utc), 600.0, interrupted=False)
    jsonschema.Draft202012Validator(SUMMARY_SCHEMA).validate(summary)
    suite.write_summary(summary, tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    markdown = (tmp_path / "summary.md").read_text()
    lines = markdown.splitlines()
    assert lines[2].startswith("**OVERLOADED") and "proj04_change_column_type" in lines[4]
    table = [line for line in lines if line.startswith("| ")][1:]
    assert len(table) == 1 + 1 + 1 + 1  # the risky step, the safe one, the failed scenario, proj04's step
    assert "| 3 | proj03_indexes, proj03_safe_backfill |" in table[2] and "**failed**: port 8031" in table[2]
    risky_row = next(row for row in summary["steps"] if row["project"] == PROJECT)
    assert risky_row["goal_met"] and risky_row["longest_stall_s"] <= risky_row["duration_s"]
    assert risky_row["backlog_after_step_s"] == pytest.approx(5.15, abs=0.01)
    safe_row = next(row for row in summary["steps"] if row["project"] == "proj01_safe_backfill")
    assert safe_row["goal_met"] and safe_row["goal"] == "failed nothing"
    missed = next(row for row in summary["steps"] if row["project"] == "proj04_change_column_type")
    assert not missed["goal_met"] and missed["overloaded"]  # a risky step that stalled nothing: said, not hidden
    assert summary["goal"] == {"risky_steps": 2, "risky_did_harm": 1, "safe_steps": 1, "safe_failed_nothing": 1,
                               "missed": [f"proj04_change_column_type {missed['migration']} (risky): no stall of "
                                          "0.5 s or more"]}
    assert "(overloaded)" in table[3] and "**NO**" in table[3]
    # The same summary again from the folder alone (its summary.json and the reports), with nothing run.
    for result in results:
        if result.report:
            (tmp_path / result.folder).mkdir()
            (tmp_path / result.folder / "report.json").write_text(json.dumps(result.report))
    assert suite.summarize_again(tmp_path) == summary
    assert (tmp_path / "summary.md").read_text() == markdown


def test_a_risky_step_claimed_to_fail_the_serving_release_does_its_harm_by_those_failures():
    """A rename or a drop locks for milliseconds: its harm is the release still serving failing, not a stall."""
    assert suite._claims_serving_release_fails("proj02_rename_column", "0006_rename_amt_to_amount")
    assert suite._claims_serving_release_fails("proj05_drop_column", "0004_remove_catalog_page")
    assert not suite._claims_serving_release_fails("proj02_rename_column", "0005_remove_ref")
    assert not suite._claims_serving_release_fails(PROJECT, get_project(PROJECT).steps[0].migration)
    assert not suite._claims_serving_release_fails("proj99_gone", "0002_anything")
    assert suite._goal("risky", 0.3, 178, serving_release_failures=89) == (
        True, "the release still serving failed 89 requests (178 in all)")
    assert suite._goal("risky", 0.3, 0, serving_release_failures=0) == (
        False, "the release still serving failed no request, and nothing stalled")
    assert suite._goal("risky", 0.3, 178) == (False, "no stall of 0.5 s or more (but 178 requests failed)")
    assert suite._goal("risky", 8.5, 207)[0] and suite._goal("safe", 0.0, 0) == (True, "failed nothing")


def test_showdown_all_goes_on_after_a_scenario_fails(pg, lab_env, tmp_path):
    """Two scenarios through the real runner: the first one's step names a migration that does not exist (its
    migrate fails after the server started), the second one runs and is reported."""
    risky = get_project(PROJECT)
    broken = dataclasses.replace(risky, scenario=9,
                                 steps=(dataclasses.replace(risky.steps[0], migration="0099_does_not_exist"),))
    options = runner.Options(selector="all", rows=2000, baseline_s=0.5, warmup_s=0.2, out_dir=tmp_path)
    lines = []
    summary = suite.run_all(options, lines.append, scenarios=[(9, [broken]), (1, [risky])])
    assert [(s["scenario"], s["status"]) for s in summary["scenarios"]] == [(9, "failed"), (1, "done")]
    reason = summary["scenarios"][0]["reason"]
    assert "0099_does_not_exist" in reason and "\n" not in reason
    assert (tmp_path / "scenario-09" / "error.txt").exists()
    assert [row["migration"] for row in summary["steps"]] == [risky.steps[0].migration]
    report = json.loads((tmp_path / "scenario-01" / "report.json").read_text())
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    assert (tmp_path / "scenario-01" / "chart.png").exists()
    assert f"**failed**: {reason}" in (tmp_path / "summary.md").read_text()
    assert any(line.strip().startswith("=== scenario 1 (2 of 2)") for line in lines)
    assert showdown_databases(pg) == []
    assert not list((Path(lab_env["MIGRATIONLAB_HOME"]) / "run").glob("showdown_*.pid"))  # no server left


# -- the probe and the sampler against a lock held by the test ------------------------------------------------------

@pytest.fixture(scope="module")
def served(pg):
    """A seeded database at the start migration and gunicorn serving it: (database URL, port)."""
    with seeded_database(pg, PROJECT, rows=2000) as url:
        port = free_port()
        # No statement timeout: a read waiting on the test's lock waits as long as it is held, then is answered.
        lab.start_web(get_project(PROJECT), url, port, instance="test-showdown",
                      extra_env={"WEB_STATEMENT_TIMEOUT_MS": "0"})
        yield url, port
        lab.stop_web(get_project(PROJECT), instance="test-showdown")


def test_probe_and_sampler_find_the_stall_and_the_lock_behind_it(served):
    url, port = served
    clock = Clock()
    sampler = LockSampler(url, TABLES, clock, interval_s=0.025)
    # A long timeout: the hung request must still be outstanding when the lock goes.
    probe = Probe(clock, rate_per_s=20, timeout_s=FAILSAFE_S)
    probe.add_target(Target("list_large", "127.0.0.1", port, "GET", "/list_large/"))
    probe.add_target(Target("update_order", "127.0.0.1", port, "POST", "/update_order/"))
    locker = psycopg2.connect(url, application_name=analysis.MIGRATION_APPLICATION)
    sampler.start()
    probe.start()
    try:
        def answered(name):
            return [r for r in probe.records() if r.endpoint == name and not r.failed]

        assert probe.wait_until(lambda: min(len(answered(name)) for name in ("list_large", "update_order")) >= 10,
                                FAILSAFE_S)
        normal = analysis.normal_latency(answered("list_large"))

        before_lock = clock.now()
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE large_user IN ACCESS EXCLUSIVE MODE")  # held until commit
        locker_pid = locker.get_backend_pid()

        def a_read_hangs():
            return any(name == "list_large" and clock.now() - sent > normal for name, sent in probe.in_flight())

        def lock_and_waiter_seen():
            sample = sampler.latest()
            return sample is not None and any(
                row.pid == locker_pid and row.relation == "large_user" and row.mode == "AccessExclusiveLock"
                and row.granted for row in sample.rows
            ) and any(locker_pid in row.blocked_by for row in sample.rows)

        assert probe.wait_until(a_read_hangs, FAILSAFE_S)
        hanging_at = clock.now()
        assert sampler.wait_until(lock_and_waiter_seen, FAILSAFE_S)
        locker.commit()
        released = clock.now()
        assert probe.wait_until(lambda: all(sent >= released for _, sent in probe.in_flight()), FAILSAFE_S)
    finally:
        locker.close()
        probe.stop()
        sampler.stop()

    reads = [r for r in probe.records() if r.endpoint == "list_large"]
    stalls = analysis.stall_intervals(reads, normal)
    assert any(start <= hanging_at <= end for start, end in stalls)
    whole_run = Window(0.0, clock.now())
    assert analysis.endpoint_stats(reads, whole_run, stalls)["longest_stall_s"] > 0
    assert not [r for r in probe.records() if r.failed]  # they waited, and were all answered

    locks = analysis.migration_locks(sampler.samples(), Window(before_lock, released), TABLES, 0.025)
    exclusive = [lock for lock in locks if (lock["relation"], lock["mode"]) == ("large_user", "AccessExclusiveLock")]
    assert exclusive and exclusive[0]["held_s"] > 0
    assert exclusive[0]["waiters_max"] >= 1 and exclusive[0]["longest_wait_s"] > 0
    reads_waited = analysis.web_waits(sampler.samples(), Window(before_lock, released), TABLES, 0.025)["reads"]
    assert reads_waited["level"] != "never" and reads_waited["sessions"] >= 1 and reads_waited["longest_wait_s"] > 0
    assert sampler.errors == 0  # its queries never waited on the lock
    assert probe.cpu_s >= 0 and probe.sent >= len(probe.records())


def test_the_long_query_actor_holds_the_table_until_stopped(served):
    url, _ = served
    actor = LongQuery(url, "large_user", seconds=FAILSAFE_S)
    actor.start()  # returns once the lock is held
    try:
        held = query(url, "SELECT l.mode FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                          "WHERE a.application_name = %s AND l.relation = 'large_user'::regclass AND l.granted",
                     [REPORT_APPLICATION])
        assert held == [("AccessShareLock",)]
    finally:
        actor.stop()  # cancels the report: no waiting out its seconds
    assert actor.error is None and not actor._thread.is_alive()


# -- actors, started by the runner ------------------------------------------------------------------------------------

def test_a_step_with_actors_runs_them_and_probes_the_previous_release(pg, lab_env, tmp_path):
    """Structure only: the actors ran and are reported, the previous release was probed, the report is valid."""
    risky = get_project(PROJECT)
    step = dataclasses.replace(risky.steps[0], actors=(Actor("long_query", seconds=0.5), Actor("previous_release")))
    project = dataclasses.replace(risky, steps=(step,))
    options = runner.Options(selector=PROJECT, rows=2000, baseline_s=0.5, warmup_s=0.2)
    (tmp_path / "logs").mkdir()
    with ShowdownDatabases() as databases:
        run = runner.run_project(project, databases, options, tmp_path, say=lambda line: None)
        assert databases.created == []  # dropped at the end of the project's run
    settings = Settings(2000, options.rate_per_s, options.timeout_s, options.sample_interval_s, options.baseline_s)
    document = build_report(1, settings, [run], "16", True, datetime.now(timezone.utc))
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(document)
    reported = document["projects"][0]["steps"][0]
    assert [actor["kind"] for actor in reported["actors"]] == ["long_query", "previous_release"]
    assert reported["endpoints"]["previous_release/list_large"]["requests"] > 0
    assert reported["endpoints"]["previous_release/update_order"]["requests"] > 0
    assert "previous release: reads" in reported["verdict"]
    assert not list((Path(lab_env["MIGRATIONLAB_HOME"]) / "run").glob(f"{run.database}*.pid"))  # no server left


# -- the CLI ------------------------------------------------------------------------------------------------------

def showdown_cli(env, *args, **popen):
    return subprocess.run([sys.executable, "-m", "migrationlab", "showdown", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, **popen)


@pytest.mark.parametrize("args, message", [
    (["99"], "no project implements scenario 99"),
    (["proj99_nothing"], "unknown project 'proj99_nothing'"),
    (["1", "--rate", "0"], "--rate must be more than 0"),
    (["1", "--timeout", "-1"], "--timeout must be more than 0"),
    (["1", "--rows", "lots"], "'lots' is not a whole number of rows"),
    (["1", "--database-url", "mysql://root@localhost/db"], "--database-url must start with postgresql://"),
    (["1", "--database-url", "postgresql://nobody@127.0.0.1:1/postgres"], "cannot connect to"),
    (["al"], "unknown project 'al'"),
    (["all", "--rows", "0"], "the number of rows must be at least 1, got 0"),
    (["all", "--only", "1,99"], "--only takes scenario numbers"),
    (["1", "--only", "1"], "--only is for `showdown all`"),
    (["all", "--database-url", "postgresql://nobody@127.0.0.1:1/postgres"], "cannot connect to"),
])
def test_bad_input_gets_one_line_and_a_non_zero_exit(lab_env, tmp_path, args, message):
    done = showdown_cli({**os.environ, **lab_env}, *args, "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr


def showdown_databases(pg) -> list[str]:
    return [name for (name,) in query(pg.dsn(), "SELECT datname FROM pg_database WHERE datname LIKE 'showdown\\_%'")]


@pytest.mark.parametrize("selector", [[PROJECT], ["all", "--only", "1,9"]], ids=["one", "all"])
def test_ctrl_c_leaves_nothing_running_and_the_database_usable(pg, lab_env, tmp_path, selector):
    before = showdown_databases(pg)
    process = subprocess.Popen(
        [sys.executable, "-m", "migrationlab", "showdown", *selector, "--rows", "2000", "--out", str(tmp_path)],
        env={**os.environ, **lab_env}, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, to send it a terminal's Ctrl-C
        # As from a terminal: a test run started in the background (`make test &`) ignores SIGINT, and Python then
        # keeps ignoring it instead of raising KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        output = []
        for line in process.stdout:
            output.append(line)
            if "web: gunicorn on" in line:
                break
        server_log = re.search(r"\(log (.+)\)", output[-1]).group(1)
        pid_path = server_log.replace("/logs/", "/run/").removesuffix(".log") + ".pid"
        gunicorn = int(open(pid_path).read())
        os.killpg(process.pid, signal.SIGINT)
        rest, _ = process.communicate(timeout=FAILSAFE_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "interrupted" in rest and "Traceback" not in rest, "".join(output) + rest
    with pytest.raises(ProcessLookupError):
        os.kill(gunicorn, 0)
    assert not os.path.exists(pid_path)
    assert showdown_databases(pg) == before
    assert query(pg.dsn(), "SELECT 1") == [(1,)]
    if selector[0] == "all":  # the summary of what finished (nothing did): written, and saying so
        summary = json.loads((tmp_path / "summary.json").read_text())
        jsonschema.Draft202012Validator(SUMMARY_SCHEMA).validate(summary)
        assert summary["interrupted"] and summary["steps"] == []
        assert [(s["scenario"], s["status"]) for s in summary["scenarios"]] == [(1, "interrupted"), (9, "not run")]
        assert "Interrupted (Ctrl-C)" in (tmp_path / "summary.md").read_text()
