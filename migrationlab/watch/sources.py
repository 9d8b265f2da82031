"""What the watch asks PostgreSQL besides the locks (the showdown's LockSampler samples those).

ActivityPoller, on its own autocommit connection, every `interval_s`:
  - pg_stat_activity of the watched database: every session's application_name, state, statement and ages;
  - the pg_stat_progress_* views (CREATE INDEX, VACUUM, VACUUM FULL / CLUSTER, ANALYZE): how far a command got;
  - every few seconds, the tables of the database (what the lock sampler watches: any table a step may touch,
    partitions a step creates included; Django's own tables left out);
  - for a keyset batch it sees running (BackfillInBatches, DeleteInBatches), the smallest and largest key of that
    table: two index look-ups, under a lock_timeout of 100 ms, so it never queues behind a migration's lock.
Everything else reads shared memory and the catalogs: it never waits on a migration.
"""

from __future__ import annotations


import psycopg2
from psycopg2 import sql

from migrationlab.showdown.clock import Clock
from migrationlab.processes import Poller
from migrationlab.watch.model import (
    MIGRATION, WATCH_APPLICATION, Activity, ProgressRow, Session, parse_batch, role_of,
)

TABLES_EVERY_S = 2.0
BOUNDS_EVERY_S = 5.0

ACTIVITY_QUERY = """
SELECT pid,
       COALESCE(NULLIF(application_name, ''), backend_type),
       state,
       COALESCE(query, ''),
       EXTRACT(EPOCH FROM clock_timestamp() - query_start)::float8,
       EXTRACT(EPOCH FROM clock_timestamp() - xact_start)::float8,
       EXTRACT(EPOCH FROM clock_timestamp() - state_change)::float8
  FROM pg_stat_activity
 WHERE datname = current_database()
   AND pid <> pg_backend_pid()
"""

# One row per command in progress, the same columns for every view: pid, command, table, index, phase, done,
# total, unit. CREATE INDEX counts blocks while it scans, tuples while it sorts and loads, the transactions it
# waits for while it waits (CONCURRENTLY); the others count heap blocks.
PROGRESS_QUERY = """
SELECT p.pid, p.command, t.relname, i.relname, p.phase,
       CASE WHEN p.blocks_total > 0 THEN p.blocks_done WHEN p.tuples_total > 0 THEN p.tuples_done
            WHEN p.lockers_total > 0 THEN p.lockers_done ELSE 0 END,
       CASE WHEN p.blocks_total > 0 THEN p.blocks_total WHEN p.tuples_total > 0 THEN p.tuples_total
            WHEN p.lockers_total > 0 THEN p.lockers_total ELSE 0 END,
       CASE WHEN p.blocks_total > 0 THEN 'blocks' WHEN p.tuples_total > 0 THEN 'rows'
            WHEN p.lockers_total > 0 THEN 'transactions' ELSE '' END
  FROM pg_stat_progress_create_index AS p
  LEFT JOIN pg_class AS t ON t.oid = p.relid
  LEFT JOIN pg_class AS i ON i.oid = p.index_relid AND p.index_relid <> 0
 WHERE p.datname = current_database()
UNION ALL
SELECT p.pid, 'VACUUM', t.relname, NULL, p.phase, p.heap_blks_scanned, p.heap_blks_total, 'blocks'
  FROM pg_stat_progress_vacuum AS p LEFT JOIN pg_class AS t ON t.oid = p.relid
 WHERE p.datname = current_database()
UNION ALL
SELECT p.pid, p.command, t.relname, NULL, p.phase, p.heap_blks_scanned, p.heap_blks_total, 'blocks'
  FROM pg_stat_progress_cluster AS p LEFT JOIN pg_class AS t ON t.oid = p.relid
 WHERE p.datname = current_database()
UNION ALL
SELECT p.pid, 'ANALYZE', t.relname, NULL, p.phase, p.sample_blks_scanned, p.sample_blks_total, 'blocks'
  FROM pg_stat_progress_analyze AS p LEFT JOIN pg_class AS t ON t.oid = p.relid
 WHERE p.datname = current_database()
"""

# The tables a step may lock: every table and partitioned table the connection sees, but Django's own.
TABLES_QUERY = """
SELECT c.relname
  FROM pg_class AS c
 WHERE c.relkind IN ('r', 'p')
   AND pg_table_is_visible(c.oid)
   AND c.relnamespace <> 'pg_catalog'::regnamespace
   AND c.relname !~ '^(django|auth)_'
 ORDER BY 1
"""


def connect(database_url: str, application_name: str = WATCH_APPLICATION):
    """An autocommit connection that never queues behind anything for long."""
    connection = psycopg2.connect(database_url, application_name=application_name, connect_timeout=5,
                                  options="-c lock_timeout=100 -c statement_timeout=2000")
    connection.autocommit = True
    return connection


class ActivityPoller(Poller):
    """Poll pg_stat_activity and the progress views of the database at `database_url` until stop() (a Poller).

    `on_tables(names)` is called whenever the list of the database's tables changes (the watch hands it to the
    lock sampler)."""

    thread_name = "watch-activity"

    def __init__(self, database_url: str, clock: Clock, interval_s: float = 0.2, on_tables=None):
        super().__init__(interval_s)
        self.database_url = database_url
        self.clock = clock
        self.on_tables = on_tables
        self.tables: list[str] = []
        self._latest: Activity | None = None
        self._bounds: dict[tuple[str, str], tuple[float, tuple[int, int]]] = {}
        self._tables_at = -TABLES_EVERY_S

    def connect(self):
        return connect(self.database_url)

    def start(self) -> None:
        self._connection = self.connect()  # in the caller's thread: a bad URL fails here
        self.poll()  # the first snapshot (and the tables) before anything is drawn
        self._thread.start()

    def latest(self) -> Activity | None:
        return self._latest

    def poll(self) -> None:
        now = self.clock.now()
        with self.connection().cursor() as cursor:
            if now - self._tables_at >= TABLES_EVERY_S:
                cursor.execute(TABLES_QUERY)
                tables = [name for (name,) in cursor.fetchall()]
                self._tables_at = now
                if tables != self.tables:
                    self.tables = tables
                    if self.on_tables is not None:
                        self.on_tables(list(tables))
            cursor.execute(ACTIVITY_QUERY)
            sessions = tuple(Session(pid, application or "", state, query, query_s, xact_s, state_s)
                             for pid, application, state, query, query_s, xact_s, state_s in cursor.fetchall())
            cursor.execute(PROGRESS_QUERY)
            progress = tuple(ProgressRow(pid, command, table, index, phase, int(done or 0), int(total or 0), unit)
                             for pid, command, table, index, phase, done, total, unit in cursor.fetchall())
            bounds = self._batch_bounds(cursor, sessions, now)
        self._latest = Activity(self.clock.now(), sessions, progress, bounds)

    def _batch_bounds(self, cursor, sessions: tuple[Session, ...], now: float) -> dict:
        """(table, column) -> (min, max) for the tables a migration's keyset batches walk; asked again every
        BOUNDS_EVERY_S. A table whose lock is not granted within the lock_timeout is asked again next time."""
        wanted = set()
        for session in sessions:
            batch = parse_batch(session.query) if role_of(session) == MIGRATION else None
            if batch is not None:
                wanted.add((batch.table, batch.column))
        for key in wanted:
            asked = self._bounds.get(key)
            if asked is not None and now - asked[0] < BOUNDS_EVERY_S:
                continue
            table, column = key
            try:
                cursor.execute(sql.SQL("SELECT min({column}), max({column}) FROM {table}").format(
                    column=sql.Identifier(column), table=sql.Identifier(table)))
                smallest, largest = cursor.fetchone()
            except psycopg2.Error:
                continue
            if smallest is not None:
                self._bounds[key] = (now, (int(smallest), int(largest)))
        self._bounds = {key: value for key, value in self._bounds.items() if key in wanted}
        return {key: value for key, (_, value) in self._bounds.items()}
