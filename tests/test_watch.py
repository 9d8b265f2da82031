"""`python -m migrationlab watch`: the live view for the stage.

- The screen model (model.py, screen.py), the curl loop's log line and the summary, without a database.
- What PostgreSQL shows of real migrations held at a known point: a batched backfill stopped on a row the test
  locked, a CREATE INDEX CONCURRENTLY waiting for the test's transaction (progress, queue, who is who).
- In a real terminal (tmux, 80x24; skipped without tmux): a risky step (proj01's NOT NULL migration queued behind
  a report the test holds: the screen shows the failures and the waiting queue) and a safe one (a VALIDATE
  CONSTRAINT held open: it shows none); then Ctrl-C: one summary line, exit 0, nothing left running, the log in
  the curl loop's words. With WATCH_SCREENSHOT=PATH the risky screen is saved there as a PNG (docs/watch.png).
- Bad input: one line, exit 2.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
from rich.console import Console

from migrationlab import REPO_ROOT, lab
from migrationlab.scenarios import get_project
from migrationlab.serving import project_environment
from migrationlab.showdown.clock import Clock
from migrationlab.showdown.probe import Request
from migrationlab.showdown.sampler import LockRow, LockSample, LockSampler
from migrationlab.watch import command
from migrationlab.watch.model import (
    API, MIGRATION, OTHER, OWN, Activity, Session, WatchState, parse_batch, role_of,
)
from migrationlab.watch.picture import screen_png
from migrationlab.watch.screen import HEIGHT, WIDTH, render
from migrationlab.watch.sources import ActivityPoller
from tests.conftest import free_port, migrated_template, query

RISKY = "proj01_add_not_null_constraint"
SAFE = "proj01_safe_backfill"
ROWS = 50_000
FAILSAFE_S = 90.0  # a bound for waiting on something that happens within seconds; never reached when all is well

# The talk's curl loop prints exactly these (README.md, "Docker workflow").
CURL_LINE = re.compile(r"\[\d\d:\d\d:\d\d\] (list_large|update_order): "
                       r"(✅ SUCCESS|❌ FAILED \((\d{3}), blocked by migration\)) \d+\.\d{6}s")


# -- without a database ---------------------------------------------------------------------------------------------

def test_the_log_line_uses_the_curl_loops_words():
    readme = (REPO_ROOT / "README.md").read_text()
    assert 'verdict="✅ SUCCESS"' in readme and 'verdict="❌ FAILED ($code, blocked by migration)"' in readme
    assert 'echo "[$(date +%H:%M:%S)] $endpoint: $verdict ${seconds}s"' in readme
    at = time.mktime((2024, 5, 1, 10, 42, 13, 0, 0, -1))
    ok = command.log_line(Request("list_large", 1.0, 0.012345, 200, None), at)
    timeout = command.log_line(Request("update_order", 1.0, 3.0, None, "timeout"), at)
    assert ok == "[10:42:13] list_large: ✅ SUCCESS 0.012345s"
    assert timeout == "[10:42:13] update_order: ❌ FAILED (000, blocked by migration) 3.000000s"
    assert CURL_LINE.fullmatch(ok) and CURL_LINE.fullmatch(timeout)
    unavailable = Request("update_order", 1.0, 0.2, 503, None)
    assert unavailable.failed  # the probe's own rule (Request.failed) decides, the line follows it
    assert command.log_line(unavailable, at).endswith("❌ FAILED (503, blocked by migration) 0.200000s")


def requests_with_an_outage(start: float, end: float, until: float, every: float = 0.25) -> list[Request]:
    """Both endpoints every `every` s until `until`; those sent in [start, end) time out after 3 s."""
    made = []
    for index in range(int(until / every)):
        sent = index * every
        for endpoint in ("list_large", "update_order"):
            made.append(Request(endpoint, sent, 3.0, None, "timeout") if start <= sent < end
                        else Request(endpoint, sent, 0.012, 200, None))
    return sorted(made, key=lambda r: r.sent_s + r.latency_s)  # the order they finish in, as the probe records


def state_at(now: float, requests: list[Request], rows=(), sessions=(), in_flight=(), progress=(), bounds=None):
    state = WatchState(["list_large", "update_order"], 3.0, RISKY, "API :8010 · db :5410", "watch.log")
    state.add_requests([r for r in requests if r.sent_s + r.latency_s <= now])
    state.observe(now, "10:42:13", list(in_flight), LockSample(now, tuple(rows)),
                  Activity(now, tuple(sessions), tuple(progress), bounds or {}))
    return state


def screen_text(state: WatchState) -> list[str]:
    console = Console(width=WIDTH, height=HEIGHT, record=True, force_terminal=True, color_system="truecolor",
                      file=open(os.devnull, "w"))
    console.print(render(state.screen()))
    return console.export_text().rstrip("\n").split("\n")


RISKY_ROWS = (
    LockRow(4242, "django", "relation", "large_user", "AccessExclusiveLock", False, 3.2, (777,)),
    LockRow(777, "psql", "relation", "large_user", "AccessShareLock", True, None, ()),
    *(LockRow(900 + k, "web", "relation", "large_user", "AccessShareLock" if k % 2 else "RowExclusiveLock",
              False, 2.9 - k * 0.1, (4242,)) for k in range(14)),
)
RISKY_SESSIONS = (
    Session(4242, "django", "active", 'ALTER TABLE "large_user" ALTER COLUMN "status" SET DEFAULT \'active\'',
            3.2, 3.3, 3.2),
    Session(777, "psql", "active", "SELECT pg_sleep(30) FROM large_user LIMIT 1", 12.0, 12.0, 12.0),
    Session(555, "migrationlab-watch", "active", "SELECT ...", 0.0, 0.0, 0.0),
    *(Session(900 + k, "web", "active", "SELECT ...", 2.9, 2.9, 2.9) for k in range(14)),
)


def test_a_risky_step_shows_the_failures_the_migration_waiting_behind_a_report_and_the_api_behind_it():
    lines = screen_text(state_at(45.0, requests_with_an_outage(30.0, 45.0, 46.0), RISKY_ROWS, RISKY_SESSIONS,
                                 in_flight=[("list_large", 43.0), ("update_order", 42.5)]))
    assert len(lines) <= HEIGHT and all(len(line) <= WIDTH for line in lines), "\n".join(lines)
    screen = "\n".join(lines)
    assert re.search(r"list_large +✘ FAILED 000", screen) and re.search(r"update_order +✘ FAILED 000", screen)
    assert "failing 15.0 s" in screen  # the first failed request was sent at 30.0; it is 45.0
    assert "migration 4242 (django) · active" in screen
    assert "WAITS FOR  ACCESS EXCLUSIVE on large_user · 3.2 s · behind psql 777" in screen
    assert "migration 4242 → psql 777  ACCESS EXCLUSIVE on large_user · 3.2 s" in screen
    assert "14 API backends → migration 4242  large_user: 7 reads, 7 writes · 2.9 s" in screen
    assert "migrationlab-watch" not in screen and "555" not in screen  # the watch's own sessions stay out


def test_a_safe_moment_shows_no_failure_and_nobody_waiting():
    sessions = (Session(4242, "django", "idle in transaction",
                        'ALTER TABLE "large_user" VALIDATE CONSTRAINT "large_user_status_not_null"', 0.4, 0.5, 0.1),)
    rows = (LockRow(4242, "django", "relation", "large_user", "ShareUpdateExclusiveLock", True, None, ()),)
    lines = screen_text(state_at(20.0, requests_with_an_outage(0, 0, 20.0), rows, sessions))
    screen = "\n".join(lines)
    assert "FAILED 0" not in screen and "failing" not in screen
    assert screen.count("✔ SUCCESS 200") == 2 and screen.count("0/40 failed in 10 s") == 2
    assert "HOLDS  SHARE UPDATE EXCLUSIVE on large_user" in screen
    assert "nobody waits" in screen
    assert " 0 failed · longest outage 0.0 s" in screen


def test_the_longest_outage_runs_from_the_first_failed_send_to_the_last_failed_answer():
    state = state_at(60.0, requests_with_an_outage(10.0, 15.0, 60.0))
    totals = state.totals()
    assert totals.failed == 2 * 20 and totals.requests == 2 * 240
    assert totals.longest_outage_s == pytest.approx(15.0 - 0.25 + 3.0 - 10.0)  # sent 10.0 .. answered 17.75
    assert state.summary() == "watch: 480 requests, 40 failed, longest outage 7.8 s; log watch.log"


def test_who_is_who():
    def session(application, query="SELECT 1", state="active"):
        return Session(1, application, state, query, 0.0, 0.0, 0.0)

    assert role_of(session("web")) == API
    assert role_of(session("django")) == MIGRATION
    assert role_of(session("migration")) == MIGRATION  # the showdown's
    assert role_of(session("psql", "ALTER TABLE large_user ADD COLUMN x int")) == MIGRATION  # DDL typed by hand
    assert role_of(session("psql", "ALTER TABLE large_user ADD COLUMN x int", state="idle")) == OTHER  # done
    assert role_of(session("psql", "SELECT pg_sleep(30) FROM large_user")) == OTHER  # a report
    assert role_of(session("migrationlab-watch")) == OWN and role_of(session("showdown-sampler")) == OWN
    assert role_of(session("autovacuum worker")) == OTHER


def test_a_lock_held_by_short_transactions_is_not_reported_as_held_for_long():
    """Batches commit every few ms: the sampler sees ROW EXCLUSIVE held in every sample, yet no transaction held
    it for long. The age shown is bounded by the transaction's."""
    row = LockRow(42, "django", "relation", "large_user", "RowExclusiveLock", True, None, ())
    state = WatchState(["list_large"], 3.0, "t", "w", "watch.log")
    batch = 'UPDATE "large_user" SET "status" = \'active\' WHERE ("large_user"."id" >= 1 AND "large_user"."id" < 11)'
    for at in (1.0, 2.0, 3.0):
        session = Session(42, "django", "active", batch, 0.02, 0.02, 0.02)
        state.observe(at, "", [], LockSample(at, (row,)), Activity(at, (session,)))
    assert state.screen().migration.holds[0].seconds == pytest.approx(0.02)


def test_batches_are_read_from_the_statement_django_sends():
    update = ('UPDATE "large_user" SET "status" = \'active\'::varchar(20) WHERE ("large_user"."status" IS NULL AND '
              '"large_user"."id" >= 10001 AND "large_user"."id" < 20001)')
    delete = ('DELETE FROM "large_history" WHERE ("large_history"."created_at" < \'2024-01-01\'::timestamptz AND '
              '"large_history"."id" >= 500001 AND "large_history"."id" < 510001)')
    first = parse_batch(update)
    assert (first.verb, first.table, first.column, first.lo, first.hi) == ("backfill", "large_user", "id", 10001, 20001)
    second = parse_batch(delete)
    assert (second.verb, second.table, second.lo, second.hi) == ("delete", "large_history", 500001, 510001)
    assert parse_batch('UPDATE "large_user" SET "status" = \'active\' WHERE "status" IS NULL') is None
    session = Session(42, "django", "active", delete, 0.05, 0.05, 0.05)
    state = state_at(5.0, [], sessions=(session,), bounds={("large_history", "id"): (500001, 1000000)})
    progress = state.screen().migration.progress
    assert progress.label == "delete large_history" and progress.fraction == pytest.approx(0.02)
    assert progress.detail == "id 500,001 to 510,000 of 500,001..1,000,000"


def test_the_screen_becomes_a_png_of_the_terminals_size(tmp_path):
    console = Console(width=WIDTH, height=HEIGHT, record=True, force_terminal=True, color_system="truecolor",
                      file=open(os.devnull, "w"))
    console.print(render(state_at(45.0, requests_with_an_outage(30.0, 45.0, 46.0), RISKY_ROWS,
                                  RISKY_SESSIONS).screen()))
    picture = screen_png(console.export_text(styles=True), tmp_path / "screen.png")
    from PIL import Image

    with Image.open(picture) as image:
        width, height = image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
    assert width > height > 0
    assert any(red > 200 and green < 80 for _, (red, green, blue) in colours)  # the red FAILED badges


def test_it_redraws_at_least_four_times_a_second():
    assert command.REFRESH_PER_S >= 4


def test_on_the_docker_path_the_title_is_the_project_serving_on_that_port():
    assert command.title_for(8010, "postgresql://postgres:postgres@127.0.0.1:5410/risky_migrations") == RISKY
    assert command.title_for(8011, "postgresql://x@h/db") == SAFE
    assert command.title_for(1234, "postgresql://postgres@127.0.0.1:5410/risky_migrations") == "risky_migrations"


# -- PostgreSQL: what the poller and the sampler show of real migrations held at a known point ----------------------

@contextmanager
def migrating(project_name: str, database_url: str, migration: str):
    """`manage.py migrate demoapp MIGRATION` running in the background (application_name django, as on stage);
    killed on the way out if it has not ended."""
    project = get_project(project_name)
    process = subprocess.Popen([sys.executable, str(project.folder / "manage.py"), "migrate", "demoapp", migration],
                               cwd=project.folder, env=project_environment(project, database_url),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def succeeds(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=FAILSAFE_S)
    assert process.returncode == 0, output


@contextmanager
def watched(database_url: str, tables: list[str]):
    """The watch's two database sources, started; yields a function that makes the screen from their latest."""
    clock = Clock()
    sampler = LockSampler(database_url, tables, clock, interval_s=0.05, keep=10)
    poller = ActivityPoller(database_url, clock, interval_s=0.05)
    poller.start()
    sampler.start()
    state = WatchState(["list_large", "update_order"], 3.0, "test", "test", "watch.log")

    def screen():
        state.observe(clock.now(), "", [], sampler.latest(), poller.latest())
        return state.screen()

    try:
        yield screen
    finally:
        sampler.stop()
        poller.stop()


def wait_for(condition, what: str, deadline_s: float = FAILSAFE_S):
    """Poll `condition()` until it returns something true; fail after the deadline (never reached normally)."""
    give_up = time.monotonic() + deadline_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > give_up:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)  # polling interval, not a synchronisation


def test_a_batched_backfill_stopped_on_a_locked_row_shows_its_progress_and_whom_it_waits_for(seeded):
    url = seeded(SAFE, ROWS, "0003_status_db_default_for_new_rows")
    holder = psycopg2.connect(url, application_name="psql")
    try:
        with holder.cursor() as cursor:  # a row of the second batch (ids 10001-20000), locked until rollback
            cursor.execute("SELECT id FROM large_user WHERE id = 15000 FOR UPDATE")
        with watched(url, ["large_user", "small_user"]) as screen, \
                migrating(SAFE, url, "0004_backfill_status_batched") as migrate:

            def stuck_on_the_row():
                view = screen().migration
                return view if view and view.waits and view.progress and view.progress.fraction else None

            migration = wait_for(stuck_on_the_row, "the backfill to wait on the locked row")
            assert migration.application == "django" and migration.statement.startswith('UPDATE "large_user"')
            assert migration.waits[0].relation == "a row" and migration.waits[0].behind[0].startswith("psql ")
            progress = migration.progress
            assert progress.label == "backfill large_user"
            assert progress.fraction == pytest.approx(20000 / ROWS)  # ids up to 20,000 of 1..50,000
            assert progress.detail.startswith(f"id 10,001 to 20,000 of {ROWS:,}")
            queue = screen().queue
            assert [(line.kind, line.waiters.split()[0], line.what) for line in queue] == [
                (MIGRATION, "migration", "a row")]
            holder.rollback()
            succeeds(migrate)
    finally:
        holder.close()


def test_create_index_concurrently_waiting_for_an_older_transaction_shows_its_phase(seeded):
    url = seeded("proj03_safe_backfill", ROWS)
    writer = psycopg2.connect(url, application_name="psql")
    try:
        with writer.cursor() as cursor:  # a write left open: the build waits for it before it starts
            cursor.execute("UPDATE large_user SET name = name WHERE id = 1")
        with watched(url, ["large_user", "small_user"]) as screen, \
                migrating("proj03_safe_backfill", url, "0002_build_email_index_concurrently") as migrate:

            def waiting_build():
                view = screen().migration
                return view if view and view.progress and view.progress.phase.startswith("waiting") else None

            migration = wait_for(waiting_build, "CREATE INDEX CONCURRENTLY to wait for the open write")
            assert migration.statement.startswith("CREATE INDEX CONCURRENTLY")
            assert migration.progress.label == "CREATE INDEX CONCURRENTLY large_user_email_idx on large_user"
            assert migration.progress.detail == "0 of 1 transactions"
            assert migration.waits[0].relation == "older transactions to end"
            assert not [line for line in screen().queue if line.kind == API]
            writer.rollback()
            succeeds(migrate)
    finally:
        writer.close()


# -- a real terminal: tmux at 80x24 ---------------------------------------------------------------------------------

class Terminal:
    """A tmux server of its own (its socket in the test's folder), one window of 80x24 running `argv` from a bash script that says
    how it ended (a line "[exited with status N]": bash reaps the program and prints its status)."""

    def __init__(self, tmp_path: Path, argv: list[str], env: dict[str, str], cwd: Path | None = None):
        self.tmux = shutil.which("tmux")
        if self.tmux is None:
            pytest.skip("tmux is not installed (Debian: apt-get install tmux): the terminal tests need it")
        self.socket = str(tmp_path / "tmux.socket")  # a server of its own, its socket gone with the test's folder
        config = tmp_path / "tmux.conf"
        config.write_text("set -g remain-on-exit on\n")
        script = tmp_path / "run.sh"
        environment = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        script.write_text(f'env {environment} {shlex.join(argv)}\necho "[exited with status $?]"\n')
        self.run("-f", str(config), "new-session", "-d", "-s", "watch", "-x", str(WIDTH), "-y", str(HEIGHT),
                 "-c", str(cwd or tmp_path), f"bash {shlex.quote(str(script))}")

    def run(self, *args: str) -> str:
        done = subprocess.run([self.tmux, "-S", self.socket, *args], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, env={**os.environ, "LANG": "C.UTF-8"})
        assert done.returncode == 0, done.stderr
        return done.stdout

    def screen(self, colours: bool = False, everything: bool = False) -> str:
        """What the terminal shows; `everything`: with what scrolled off the top, a line longer than the terminal
        is wide as one line."""
        return self.run("capture-pane", "-p", *(["-e"] if colours else []), *(["-J", "-S", "-"] if everything else []),
                        "-t", "watch")

    def wait_for(self, condition, what: str) -> str:
        shown = []

        def check():
            shown[:] = [self.screen()]
            return condition(shown[0])

        try:
            wait_for(check, what)
        except AssertionError:
            raise AssertionError(f"gave up waiting for {what}; the screen:\n{shown[0] if shown else ''}") from None
        return shown[0]

    def exit_status(self) -> int | None:
        """The program's exit status, once it ended."""
        ended = re.search(r"\[exited with status (\d+)\]", self.screen(everything=True))
        return int(ended[1]) if ended else None

    def close(self) -> None:
        subprocess.run([self.tmux, "-S", self.socket, "kill-server"], capture_output=True)


def watch_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "migrationlab", "watch", *args]


def watch_env() -> dict[str, str]:
    keys = ("MIGRATIONLAB_HOME", "MIGRATIONLAB_PG_PORT", "PATH", "HOME")
    return {"LANG": "C.UTF-8", "TERM": "xterm-256color", **{key: os.environ[key] for key in keys if key in os.environ}}


def stop_with_ctrl_c(terminal: Terminal) -> tuple[str, str]:
    terminal.run("send-keys", "-t", "watch", "C-c")
    wait_for(lambda: terminal.exit_status() is not None, "the watch to end after Ctrl-C")
    assert terminal.exit_status() == 0
    lines = [line.rstrip() for line in terminal.screen(everything=True).splitlines() if line.strip()]
    lines = lines[: next(index for index, line in enumerate(lines) if line.startswith("[exited with status"))]
    summaries = [line for line in lines if line.startswith("watch: ")]
    assert len(summaries) == 1 and "Traceback" not in "\n".join(lines), "\n".join(lines)
    return summaries[0], "\n".join(lines)


def no_watch_session_left(database_url: str) -> bool:
    return not query(database_url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND application_name IN ('migrationlab-watch', 'showdown-sampler')")


def strip_columns(screen: str) -> list[int]:
    """How many seconds of each endpoint's latency strip have requests in them."""
    return [len(strip.strip()) for strip in re.findall(r"▕([^▏]*)▏", screen)] or [0]


def check_screen_size(screen: str) -> None:
    lines = screen.rstrip("\n").split("\n")
    assert len(lines) <= HEIGHT and all(len(line) <= WIDTH for line in lines), screen


@pytest.fixture
def risky_served(pg, seeded):
    url = seeded(RISKY, 2000)
    port = free_port()
    lab.start_web(get_project(RISKY), url, port, instance="test-watch")
    yield url, port
    lab.stop_web(get_project(RISKY), instance="test-watch")


def test_in_a_terminal_a_risky_step_shows_the_failures_and_the_waiting_queue(risky_served, tmp_path):
    url, port = risky_served
    screenshot = os.environ.get("WATCH_SCREENSHOT")
    # The Docker path: the API's address and the database's URL (with WATCH_SCREENSHOT, the project's name too,
    # for the title: the test's server is on a port of its own, not the project's).
    terminal = Terminal(tmp_path, watch_argv(*([RISKY] if screenshot else []), "--url", f"http://127.0.0.1:{port}",
                                             "--database-url", url, "--log", "watch.log"), watch_env())
    report = psycopg2.connect(url, application_name="psql")
    try:
        history = 18 if screenshot else 0  # a screenshot shows some seconds of traffic before the step

        def answering(screen: str) -> bool:
            return screen.count("✔ SUCCESS 200") == 2 and min(strip_columns(screen)) >= history

        healthy = terminal.wait_for(answering, "both endpoints answering")
        check_screen_size(healthy)
        assert "no migration running" in healthy and "nobody waits" in healthy
        failing_for = 8.0 if screenshot else 0.0

        def outage_and_queue(screen: str) -> bool:
            failing = [float(seconds) for seconds in re.findall(r"failing ([\d.]+) s", screen)]
            return bool(re.search(r"list_large +✘ FAILED 000", screen)
                        and re.search(r"update_order +✘ FAILED 000", screen)
                        and re.search(r"WAITS FOR +ACCESS EXCLUSIVE on large_user · .* · behind psql \d+", screen)
                        and re.search(r"migration \d+ → psql \d+ +ACCESS EXCLUSIVE on large_user", screen)
                        and re.search(r"\d+ API backends? → migration \d+ +large_user: ", screen)
                        and failing and min(failing) >= failing_for)

        with report.cursor() as cursor:  # a report: ACCESS SHARE on the table until it ends
            cursor.execute("SELECT count(*) FROM large_user")
        with migrating(RISKY, url, "0003_make_status_not_null_with_default") as migrate:
            risky = terminal.wait_for(outage_and_queue, "the failures and the queue behind the migration")
            check_screen_size(risky)
            assert 'ALTER TABLE "large_user" ALTER COLUMN "status"' in risky
            if screenshot:
                screen_png(terminal.screen(colours=True), Path(screenshot))
            report.rollback()  # the report ends: the migration gets its lock, runs, commits
            succeeds(migrate)
        terminal.wait_for(lambda screen: screen.count("✔ SUCCESS 200") == 2 and "nobody waits" in screen
                          and "no migration running" in screen, "the API back after the step")
        summary, _ = stop_with_ctrl_c(terminal)
    finally:
        report.close()
        terminal.close()
    found = re.fullmatch(r"watch: ([\d,]+) requests, ([\d,]+) failed, longest outage ([\d.]+) s; log watch.log",
                         summary)
    assert found, summary
    requests, failed = (int(found[index].replace(",", "")) for index in (1, 2))
    assert failed > 0 and float(found[3]) > 0
    lines = (tmp_path / "watch.log").read_text().splitlines()
    assert len(lines) == requests and all(CURL_LINE.fullmatch(line) for line in lines), lines[:5]
    assert sum("❌ FAILED (000, blocked by migration)" in line for line in lines) == failed
    wait_for(lambda: no_watch_session_left(url), "the watch's sessions to end")


@pytest.fixture
def safe_in_the_lab(pg, lab_env):
    """proj01_safe_backfill in the tests' private lab, as `up` leaves it: its database (at the step before the
    VALIDATE) and its server on a port of the lab's run folder."""
    project = get_project(SAFE)
    template = migrated_template(pg, SAFE, 2000, "0005_add_status_check_not_valid")
    lab.drop_database(pg.dsn(), project.name)
    lab.create_database(pg.dsn(), project.name, template=template)
    lab.start_web(project, pg.dsn(project.name), free_port())
    yield pg.dsn(project.name)
    lab.stop_web(project)
    lab.drop_database(pg.dsn(), project.name)


def test_in_a_terminal_a_safe_step_shows_no_failure_and_nobody_waiting(safe_in_the_lab, tmp_path):
    url = safe_in_the_lab
    step = psycopg2.connect(url, application_name="django")  # the step's statement, held open at its end
    terminal = None
    try:
        with step.cursor() as cursor:
            cursor.execute("ALTER TABLE large_user VALIDATE CONSTRAINT large_user_status_not_null")
        log = tmp_path / "watch.log"
        terminal = Terminal(tmp_path, watch_argv(SAFE), watch_env())  # the lab's own path; ./watch.log

        def answered_while_held(screen: str) -> bool:  # every request it sent, it sent during the step
            counts = [int(n) for n in re.findall(r"0/(\d+) failed in 10 s", screen)]
            return len(counts) == 2 and min(counts) >= 8 and "HOLDS  SHARE UPDATE EXCLUSIVE on large_user" in screen

        safe = terminal.wait_for(answered_while_held, "requests answered while the step holds its lock")
        check_screen_size(safe)
        assert "VALIDATE CONSTRAINT" in safe and "nobody waits" in safe
        assert "FAILED 0" not in safe and "failing" not in safe and "WAITING" not in safe
        summary, _ = stop_with_ctrl_c(terminal)
    finally:
        step.rollback()
        step.close()
        if terminal is not None:
            terminal.close()
    assert re.fullmatch(r"watch: [\d,]+ requests, 0 failed, longest outage 0\.0 s; log watch.log", summary), summary
    assert "FAILED" not in log.read_text()
    wait_for(lambda: no_watch_session_left(url), "the watch's sessions to end")


# -- bad input ------------------------------------------------------------------------------------------------------

def watch_cli(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(watch_argv(*args), cwd=REPO_ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=env or os.environ, timeout=FAILSAFE_S)


@pytest.mark.parametrize("args, message", [
    ([], "say what to watch"),
    (["proj99_nothing"], "unknown project 'proj99_nothing'"),
    (["--url", "http://127.0.0.1:1", "--database-url", "postgresql://u@127.0.0.1:1/db"], "nothing answers at"),
    (["--url", "ftp://x", "--database-url", "postgresql://u@127.0.0.1:1/db"], "--url must be an http:// address"),
    (["--url", "http://127.0.0.1:1", "--database-url", "mysql://x/y"], "--database-url must start with"),
    (["--url", "http://127.0.0.1:1"], "say what to watch"),
    (["proj01_safe_backfill", "--rate", "0"], "--rate must be more than 0"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    done = watch_cli(*args, "--log", str(tmp_path / "watch.log"),
                     env={**os.environ, "MIGRATIONLAB_HOME": str(tmp_path / "lab"),
                          "MIGRATIONLAB_PG_PORT": str(free_port())})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and message in errors[0], done.stderr


def test_a_project_the_lab_does_not_serve_or_an_unreachable_database_is_one_line_and_exit_2(pg, lab_env, tmp_path):
    not_served = watch_cli("proj03_indexes", "--log", str(tmp_path / "watch.log"))
    assert not_served.returncode == 2 and not_served.stderr.count("\n") == 1
    assert "proj03_indexes has no lab database yet" in not_served.stderr
    with subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port := free_port())],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as api:
        try:
            wait_for(lambda: _answers(port), "a stand-in API")
            unreachable = watch_cli("--url", f"http://127.0.0.1:{port}", "--database-url",
                                    f"postgresql://postgres:secret@127.0.0.1:{free_port()}/risky_migrations",
                                    "--log", str(tmp_path / "watch.log"))
        finally:
            api.kill()
    assert unreachable.returncode == 2 and unreachable.stderr.count("\n") == 1, unreachable.stderr
    assert unreachable.stderr.startswith("error: cannot watch postgresql://postgres:***@127.0.0.1")
    assert "secret" not in unreachable.stderr


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
