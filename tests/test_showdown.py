"""The showdown's parts: the numbers it derives, the probe and the sampler against a lock held by the test, the
long-query actor, its CLI errors, and a real Ctrl-C.

Nothing here depends on how fast the machine is: the synthetic step holds its lock until the probe has a request
hanging and the sampler has seen the lock and a waiter, and the assertions are about what was found, not how
long it took. FAILSAFE_S only bounds a broken run.
"""

import dataclasses
import json
import os
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
from migrationlab.showdown.report import Settings, build_report
from migrationlab.showdown.sampler import LockRow, LockSample, LockSampler, SessionWait
from migrationlab.showdown.schema import REPORT_SCHEMA
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


def test_normal_latency_is_three_baseline_p90s_with_a_floor():
    assert analysis.normal_latency([request(0, 0.010)] * 50) == analysis.NORMAL_LATENCY_FLOOR_S
    assert analysis.normal_latency([request(0, 0.050)] * 50) == pytest.approx(0.150)
    one_slow_answer = [request(0, 0.050)] * 59 + [request(0, 0.9)]
    assert analysis.normal_latency(one_slow_answer) == pytest.approx(0.150)
    assert analysis.normal_latency([request(0, 0.050)] * 50 + [request(0, 3.0, None, "timeout")]) == pytest.approx(0.150)


def test_overlapping_hung_requests_make_one_stall_counted_where_it_starts():
    normal = 0.1
    requests = [request(0.0, 0.02)] + [request(1.0 + 0.05 * n, 3.0, None, "timeout") for n in range(40)] + [
        request(3.0, 1.1), request(10.0, 0.02)]
    stalls = analysis.stall_intervals(requests, normal)
    assert stalls == [(pytest.approx(1.1), pytest.approx(1.0 + 0.05 * 39 + 3.0))]
    assert analysis.longest_stall(stalls, Window(0.5, 2.0)) == pytest.approx(0.05 * 39 + 2.9)
    assert analysis.longest_stall(stalls, Window(2.0, 9.0)) == 0.0  # it started in the window before
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


def test_the_docs_show_the_schema_the_code_uses():
    docs = (REPO_ROOT / "docs" / "showdown.md").read_text()
    block = docs.split("<!-- schema: generated from migrationlab/showdown/schema.py -->\n```json\n", 1)[1]
    assert json.loads(block.split("\n```", 1)[0]) == REPORT_SCHEMA


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
])
def test_bad_input_gets_one_line_and_a_non_zero_exit(lab_env, tmp_path, args, message):
    done = showdown_cli({**os.environ, **lab_env}, *args, "--out", str(tmp_path / "out"))
    assert done.returncode != 0 and "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], done.stderr


def showdown_databases(pg) -> list[str]:
    return [name for (name,) in query(pg.dsn(), "SELECT datname FROM pg_database WHERE datname LIKE 'showdown\\_%'")]


def test_ctrl_c_leaves_nothing_running_and_the_database_usable(pg, lab_env, tmp_path):
    before = showdown_databases(pg)
    process = subprocess.Popen(
        [sys.executable, "-m", "migrationlab", "showdown", PROJECT, "--rows", "2000", "--out", str(tmp_path)],
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
