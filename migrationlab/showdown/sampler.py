"""The lock sampler: who holds and who waits for locks on the scenario's tables, every `interval_s`.

Two queries on its own autocommit connection. The first joins pg_locks with pg_stat_activity:
  - every relation lock (held or awaited) on the scenario's tables;
  - every lock anyone in this database waits for (row locks show up as waits on a transaction id), with
    pg_blocking_pids(): the sessions it waits behind, including those ahead of it in the lock queue.
The second lists the sessions busy waiting on something other than a lock (the disk, a WAL flush, an internal
lock): what explains a stall that no lock explains.

It never touches the user tables: pg_locks and pg_stat_activity read shared memory, and the tables are matched
by joining pg_class on the lock's relation OID (a catalog read under ACCESS SHARE on pg_class, which no
migration's ALTER conflicts with), not by casting a name to regclass. pg_blocking_pids() is only called for
waiting locks. Both queries are prepared once per connection: planning them cost four times as much as running
them (a sample then costs about 0.4 ms, round trip included, when nobody waits).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import psycopg2

from migrationlab.showdown.clock import Clock
from migrationlab.processes import Poller, notify_without_waiting

SAMPLER_APPLICATION = "showdown-sampler"

LOCKS_QUERY = """
SELECT a.pid,
       COALESCE(NULLIF(a.application_name, ''), a.backend_type),
       l.locktype,
       c.relname,
       l.mode,
       l.granted,
       EXTRACT(EPOCH FROM clock_timestamp() - l.waitstart)::float8,
       CASE WHEN l.granted THEN NULL ELSE pg_blocking_pids(l.pid) END
  FROM pg_locks AS l
  JOIN pg_stat_activity AS a ON a.pid = l.pid
  LEFT JOIN pg_class AS c ON l.locktype = 'relation' AND c.oid = l.relation
 WHERE a.datname = current_database()
   AND l.pid <> pg_backend_pid()
   AND ((c.relname = ANY($1) AND pg_table_is_visible(c.oid)) OR NOT l.granted)
"""

# Waits that are neither heavyweight locks (the first query) nor idleness (Client, Activity) nor pg_sleep (Timeout).
OTHER_WAITS_QUERY = """
SELECT pid, COALESCE(NULLIF(application_name, ''), backend_type), wait_event_type || ':' || wait_event
  FROM pg_stat_activity
 WHERE datname = current_database()
   AND pid <> pg_backend_pid()
   AND state = 'active'
   AND wait_event_type IN ('IO', 'LWLock', 'IPC', 'BufferPin')
"""


@dataclass(frozen=True)
class SessionWait:
    """A session busy waiting on something other than a lock, e.g. IO:WALSync."""

    pid: int
    application: str
    event: str


@dataclass(frozen=True)
class LockRow:
    """One row of pg_locks. `relation` is set for relation locks on the scenario's tables only."""

    pid: int
    application: str  # application_name, or the backend type when it has none (e.g. "autovacuum worker")
    locktype: str
    relation: str | None
    mode: str
    granted: bool
    waited_s: float | None  # so far, for a lock not granted yet (pg_locks.waitstart)
    blocked_by: tuple[int, ...]  # pg_blocking_pids(), for a lock not granted yet


@dataclass(frozen=True)
class LockSample:
    at_s: float  # on the showdown's clock: the middle of the queries' round trips
    rows: tuple[LockRow, ...]
    other_waits: tuple[SessionWait, ...] = ()


class LockSampler(Poller):
    """Sample the locks on `tables` of the database at `database_url` until stop() (a Poller: start, stop, errors,
    cpu_s). `keep`: how many of the latest samples to keep (default: all; the watch, which may run for hours, keeps
    a few)."""

    thread_name = "showdown-sampler"

    def __init__(self, database_url: str, tables: list[str], clock: Clock, interval_s: float = 0.025,
                 keep: int | None = None):
        super().__init__(interval_s)
        self.database_url = database_url
        self.tables = list(tables)
        self.clock = clock
        self._samples: list[LockSample] | deque[LockSample] = deque(maxlen=keep) if keep else []
        self._changed = threading.Condition()

    def samples(self) -> list[LockSample]:
        return list(self._samples)

    def latest(self) -> LockSample | None:
        return self._samples[-1] if self._samples else None

    def wait_until(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        """Wait until `condition()` holds; it is checked again after every sample."""
        with self._changed:
            return self._changed.wait_for(condition, timeout_s)

    def connect(self):
        connection = psycopg2.connect(
            self.database_url,
            application_name=SAMPLER_APPLICATION,
            # Never queue behind anything: a sample that cannot be taken at once is skipped.
            options="-c lock_timeout=200 -c statement_timeout=2000",
        )
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f"PREPARE showdown_locks(text[]) AS {LOCKS_QUERY}")
            cursor.execute(f"PREPARE showdown_other_waits AS {OTHER_WAITS_QUERY}")
        return connection

    def poll(self) -> None:
        asked = time.monotonic()
        with self.connection().cursor() as cursor:
            cursor.execute("EXECUTE showdown_locks(%s)", [self.tables])
            rows = tuple(
                LockRow(pid, application or "", locktype, relation, mode, granted, waited, tuple(blockers or ()))
                for pid, application, locktype, relation, mode, granted, waited, blockers in cursor.fetchall()
            )
            cursor.execute("EXECUTE showdown_other_waits")
            waits = tuple(SessionWait(pid, application or "", event) for pid, application, event in cursor.fetchall())
        answered = time.monotonic()
        self._samples.append(LockSample(self.clock.since_origin((asked + answered) / 2), rows, waits))
        notify_without_waiting(self._changed)
