"""proj06_large_backfills: what the lesson claims beyond its lock claims (those are tests/test_lessons.py's).

- The batched backfill, killed at a random batch (SIGKILL, its session terminated: no cleanup of any kind) and run
  again, finishes with every row right and none updated twice. The kill is placed without timing: a transaction
  holds a lock on one random row, so every batch before it commits and the batch that holds it waits; we see it
  waiting in pg_locks and kill it there. "None updated twice" is counted by a trigger the test installs: a
  statement-level trigger that adds one per row and per committed UPDATE (an UPDATE rolled back by the kill
  takes its counts with it).
- The batch width adapts to a target batch time (BatchSizer), checked on made-up batch times: no clock involved.
"""

from __future__ import annotations

import random
import subprocess
import time

import psycopg2
import pytest

from migrationlab.operations import BatchSizer
from migrationlab.scenarios import get_project
from tests.conftest import ROWS, manage, query
from tests.test_resumable import MIGRATOR, kill_migration, migrate_reporting, start_migration

NAME = "proj06_large_backfills"
BACKFILL = "0004_fill_email_local_part_in_batches"
FAILSAFE_S = 120  # only if the migration never waits where we expect it; a passing run never gets near

COUNT_UPDATES = """
CREATE TABLE updates_per_row (id bigint PRIMARY KEY, times integer NOT NULL);
CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO updates_per_row SELECT id, 1 FROM new_rows
    ON CONFLICT (id) DO UPDATE SET times = updates_per_row.times + 1;
    RETURN NULL;
END $$;
CREATE TRIGGER count_updates AFTER UPDATE ON large_user REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION count_updates();
"""


def wait_until_blocked_by(monitor, blocker_pid: int, migrate: subprocess.Popen, also: str = "true") -> None:
    """Poll the catalog until the migration's backend waits for `blocker_pid` and `also` (SQL) holds."""
    deadline = time.monotonic() + FAILSAFE_S
    with monitor.cursor() as cursor:
        while True:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = %s "
                           f"AND %s = ANY(pg_blocking_pids(pid))) AND ({also})", [MIGRATOR, blocker_pid])
            if cursor.fetchone()[0]:
                return
            assert migrate.poll() is None, f"the migration ended before waiting: {migrate.stdout.read()}"
            assert time.monotonic() < deadline, "the migration never waited where expected"
            time.sleep(0.01)  # polling the catalog for a state, not waiting for time to pass


def killed_while_waiting_for(name: str, database: str, migration: str, hold_sql: str, params, also: str = "true"):
    """Hold a transaction (`hold_sql`), run `migration` until it waits for that transaction, and kill it there:
    SIGKILL for the process, pg_terminate_backend for its session (else a waiting statement would run on)."""
    holder = psycopg2.connect(database, application_name="holder")
    monitor = psycopg2.connect(database)
    monitor.autocommit = True
    try:
        with holder.cursor() as cursor:
            cursor.execute(hold_sql, params)
            cursor.execute("SELECT pg_backend_pid()")
            holder_pid = cursor.fetchone()[0]
        migrate = start_migration(get_project(name), database, migration)
        try:
            wait_until_blocked_by(monitor, holder_pid, migrate, also)
        finally:
            kill_migration(migrate, monitor)
        holder.rollback()
    finally:
        holder.close()
        monitor.close()


def test_backfill_killed_at_a_random_batch_finishes_every_row_once(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", "0003_fill_email_domain_in_one_transaction")
    query(database, COUNT_UPDATES)
    locked_row = random.randint(ROWS // 10, ROWS - ROWS // 10)  # past the first batch, before the last

    killed_while_waiting_for(NAME, database, BACKFILL, "SELECT id FROM large_user WHERE id = %s FOR UPDATE", [locked_row])

    assert query(database, "SELECT name FROM django_migrations WHERE name = %s", [BACKFILL]) == []
    [(done, below)] = query(database, "SELECT count(email_local_part), count(*) FILTER (WHERE id < %s) "
                                      "FROM large_user", [locked_row])
    assert 0 < done < ROWS, "the kill must leave the backfill half-done"
    assert done <= below, "nothing past the locked row can have been committed"

    again, reports = migrate_reporting(NAME, database, BACKFILL)
    assert again.returncode == 0, again.stdout + again.stderr
    assert reports["large_user"]["rows"] == ROWS - done  # it resumed: only the rest
    assert query(database, "SELECT count(*) FROM large_user WHERE email_local_part IS DISTINCT FROM "
                           "split_part(email, '@', 1)") == [(0,)]
    # Every row updated by exactly one committed UPDATE: none missed, none done twice.
    assert query(database, "SELECT count(*), min(times), max(times) FROM updates_per_row") == [(ROWS, 1, 1)]


# -- the adaptive batch width, on made-up batch times -----------------------------------------------------------

def run(sizer: BatchSizer, seconds_per_id: float, batches: int) -> list[int]:
    widths, width = [], sizer.width
    for _ in range(batches):
        width = sizer.after(width, width * seconds_per_id)
        widths.append(width)
    return widths


def test_a_fixed_batch_size_stays_fixed():
    sizer = BatchSizer(10_000)
    assert [sizer.after(10_000, seconds) for seconds in (0.001, 5.0, 0.07)] == [10_000, 10_000, 10_000]


@pytest.mark.parametrize("seconds_per_id, settles_at", [(10e-6, 5_000), (1e-6, 50_000), (100e-6, 1_000)])
def test_the_width_settles_where_batches_take_the_target_time(seconds_per_id, settles_at):
    """A laptop (10 us an id), a large server (1 us) and a slow disk (100 us): 50 ms batches, within the bounds."""
    widths = run(BatchSizer(1_000, target_seconds=0.05, minimum=1_000, maximum=100_000), seconds_per_id, 40)
    assert widths[-1] == pytest.approx(settles_at, rel=0.01)


def test_the_width_grows_at_most_twofold_and_stays_within_its_bounds():
    widths = run(BatchSizer(1_000, target_seconds=0.05, minimum=500, maximum=20_000), 1e-7, 20)
    assert widths[:5] == [2_000, 4_000, 8_000, 16_000, 20_000] and max(widths) == 20_000
    assert min(run(BatchSizer(1_000, target_seconds=0.05, minimum=500, maximum=20_000), 1e-3, 20)) == 500


def test_one_slow_batch_does_not_collapse_the_next_one():
    """A checkpoint makes one batch ten times slower: the weighted rate shrinks the next batch, but not tenfold."""
    sizer = BatchSizer(1_000, target_seconds=0.05)
    settled = run(sizer, 10e-6, 40)[-1]
    after_slow = sizer.after(settled, settled * 100e-6)
    assert settled / 2 < after_slow < settled
    assert run(sizer, 10e-6, 40)[-1] == pytest.approx(settled, rel=0.01)  # and it comes back


@pytest.mark.parametrize("arguments", [dict(width=0), dict(width=10, minimum=0), dict(width=10, minimum=10, maximum=5),
                                       dict(width=10, target_seconds=0)])
def test_nonsense_sizes_are_refused(arguments):
    with pytest.raises(ValueError):
        BatchSizer(**arguments)
