"""What the benchmarks share: a fresh database on the lab's embedded PostgreSQL, and timed Django code."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from migrationlab import lab  # noqa: E402
from migrationlab.scenarios import get_project  # noqa: E402
from migrationlab.serving import project_environment  # noqa: E402

TIMED = """
import json, time
from django.core.management import call_command
started = time.monotonic()
{body}
print("BENCHMARK " + json.dumps({{"seconds": time.monotonic() - started}}))
"""


# Appended to a body that applied `migration`: the BatchReport each of its batched operations left, as JSON.
REPORTS = """
from importlib import import_module
print("\\nREPORTS " + json.dumps([operation.report.as_dict() for operation in
                                  import_module("demoapp.migrations.{migration}").Migration.operations
                                  if getattr(operation, "report", None)]))
"""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import os
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores {cpu}, {memory_gib:.0f} GiB, Python {platform.python_version()}, PostgreSQL 16 (embedded)"


def write_between(path: Path, begin: str, end: str, block: str, title: str = "") -> None:
    """Write `block` (which starts with `begin` and ends with `end`) in place of the text between those markers in
    `path`; only that text is the script's, the rest of the document is left as it is. Without the markers, the
    block is appended (a new document starts with `title`)."""
    if not path.exists():
        path.write_text(title + block)
        return
    text = path.read_text()
    if begin in text and end in text and text.index(begin) < text.index(end):
        before, rest = text.split(begin, 1)
        after = rest.split(end, 1)[1]
        path.write_text(before + block.rstrip("\n") + after)
        return
    path.write_text(text.rstrip("\n") + "\n\n" + block)


def fresh_database(name: str) -> str:
    server = lab.embedded_server()
    server.start()
    lab.drop_database(server.dsn(), name)
    lab.create_database(server.dsn(), name)
    return server.dsn(name)


def drop_database(name: str) -> None:
    server = lab.embedded_server()
    lab.drop_database(server.dsn(), name)


def timed(project_name: str, database_url: str, body: str, echo: bool = True) -> tuple[float, str]:
    """Run `body` (Python, in the project's Django) through manage.py shell; its seconds and its output."""
    project = get_project(project_name)
    done = subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), "shell", "-c", TIMED.format(body=body)],
        cwd=project.folder, env=project_environment(project, database_url), capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {done.stderr.strip().splitlines()[-1:]}")
    # Progress lines may leave the cursor mid-line: find the marker anywhere.
    marker = re.search(r"BENCHMARK (\{.*\})", done.stdout)
    output = done.stdout[: marker.start()] + done.stdout[marker.end():]
    if echo:
        print(output)
    return json.loads(marker.group(1))["seconds"], output


def reports_in(output: str) -> tuple[str, dict[str, dict]]:
    """The output without its REPORTS line, and the reports it holds (BatchReport.as_dict(), by table)."""
    marker = re.search(r"\nREPORTS (\[.*\])", output)
    if marker is None:
        return output, {}
    reports = {report["table"]: report for report in json.loads(marker.group(1))}
    return output[: marker.start()] + output[marker.end():], reports


def migrate_timed(project_name: str, database_url: str, migration: str) -> tuple[float, str, dict[str, dict]]:
    """`migrate demoapp MIGRATION` (its output echoed): its seconds, its output, and its batched operations'
    reports by table (reports_in)."""
    seconds, output = timed(project_name, database_url,
                            f"call_command('migrate', 'demoapp', '{migration}')" + REPORTS.format(migration=migration),
                            echo=False)
    output, reports = reports_in(output)
    print(output)
    return seconds, output, reports


def batch_note(report: dict | None) -> str:
    """A batched step's batch times and its closing VACUUM, from its report; empty without one."""
    if not report or not report["batches"]:
        return ""
    note = (f"{report['batches']:,} batches: median {report['median_seconds'] * 1000:.0f} ms, "
            f"p99 {report['p99_seconds'] * 1000:.0f} ms, slowest batch {report['slowest_seconds'] * 1000:.0f} ms, "
            f"{report['slow_batches']} over 250 ms")
    if report["vacuum_seconds"] is not None:
        note += f"; then VACUUM {report['vacuum_seconds']:.1f} s"
    return note


@contextmanager
def seeded_at_start(project, rows: int):
    """A fresh database for the project at its start migration, seeded with `rows` rows: (its URL, the seconds
    the seeding took). Dropped afterwards."""
    name = f"bench_{project.name}"
    url = fresh_database(name)
    try:
        timed(project.name, url, f"call_command('migrate', 'demoapp', '{project.start}', verbosity=0)", echo=False)
        seconds, _ = timed(project.name, url, f"call_command('seed_large_table', large_count={rows})", echo=False)
        yield url, seconds
    finally:
        drop_database(name)



# -- what a step costs besides its time: peak memory, WAL, table growth, and the writes that waited on it --------

def measured(project_name: str, database_url: str, body: str) -> tuple[float, str, int]:
    """Like timed(), and the peak resident memory (KiB) of the process that ran `body` (wait4's ru_maxrss)."""
    import os
    import tempfile

    project = get_project(project_name)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, str(project.folder / "manage.py"), "shell", "-c", TIMED.format(body=body)],
            cwd=project.folder, env=project_environment(project, database_url), stdout=out, stderr=err,
        )
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, not by Popen: its resource usage comes along
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise SystemExit(f"benchmark step failed: {stderr.strip().splitlines()[-1:]}")
    marker = re.search(r"BENCHMARK (\{.*\})", stdout)
    return json.loads(marker.group(1))["seconds"], stdout[: marker.start()] + stdout[marker.end():], usage.ru_maxrss


def table_state(database_url: str, table: str) -> dict:
    """The server's WAL position, the table's size on disk (heap only, and with indexes), and its dead rows.

    The dead rows are counted by an ANALYZE run here (after the WAL position is read): the counters a backend
    sends as it goes arrive late, after a VACUUM of its own has already reset them."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text, pg_relation_size(%(t)s), pg_total_relation_size(%(t)s)",
                       {"t": table})
        lsn, heap, total = cursor.fetchone()
        cursor.execute(f'ANALYZE "{table}"')
        cursor.execute("SELECT pg_stat_get_dead_tuples(%s::regclass)", [table])
        (dead,) = cursor.fetchone()
    connection.close()
    return {"heap": heap, "total": total, "dead": dead or 0, "lsn": lsn}


def wal_bytes(database_url: str, before: dict, after: dict) -> int:
    import psycopg2

    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(%s, %s)::bigint", [after["lsn"], before["lsn"]])
        (difference,) = cursor.fetchone()
    connection.close()
    return difference


def checkpoint(database_url: str) -> None:
    """Start each measured step from a checkpoint: every step then pays the same full-page writes."""
    import psycopg2

    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("CHECKPOINT")
    connection.close()


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


class WriteProbe:
    """The API's write, from a connection of its own while a step runs: one UPDATE of a random row at a time
    (closed loop, ~20 a second), timed. A write stuck behind the step is one long sample: `longest` shows it.

    Beside it, a watcher reads the probe's backend in pg_stat_activity every 10 ms, so each write over 250 ms
    comes with what PostgreSQL saw it wait on: a row lock of the step (Lock:transactionid), or the server
    (IO:WALSync, its commit's WAL flush; LWLock:WALWrite, queued behind another backend's; and so on)."""

    SLOW = 0.25

    def __init__(self, database_url: str, table: str, column: str, rows: int, per_second: float = 20.0):
        import threading

        self.database_url, self.table, self.column, self.rows = database_url, table, column, rows
        self.interval = 1 / per_second
        self.latencies: list[float] = []
        self.writes: list[tuple[float, float]] = []  # (started, ended), monotonic
        self.waits: list[tuple[float, str]] = []  # (when, wait event of the probe's backend), monotonic
        self.stopping = threading.Event()
        self.probe_pid: int | None = None
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.watcher = threading.Thread(target=self._watch, daemon=True)

    def _run(self) -> None:
        import random
        import time

        import psycopg2

        connection = psycopg2.connect(self.database_url, application_name="benchmark-write-probe")
        connection.autocommit = True
        with connection.cursor() as cursor:
            self.probe_pid = connection.get_backend_pid()
            self.ready.set()
            while not self.stopping.is_set():
                started = time.monotonic()
                cursor.execute(f'UPDATE "{self.table}" SET "{self.column}" = now() WHERE id = %s',
                               [random.randint(1, self.rows)])
                ended = time.monotonic()
                self.latencies.append(ended - started)
                self.writes.append((started, ended))
                self.stopping.wait(max(0.0, self.interval - (time.monotonic() - started)))
        connection.close()

    def _watch(self) -> None:
        import time

        import psycopg2

        while not self.ready.wait(0.1):  # the probe's backend, once it is connected
            if self.stopping.is_set():
                return
        connection = psycopg2.connect(self.database_url, application_name="benchmark-write-watcher")
        connection.autocommit = True
        with connection.cursor() as cursor:
            while not self.stopping.is_set():
                cursor.execute("SELECT wait_event_type || ':' || wait_event FROM pg_stat_activity WHERE pid = %s",
                               [self.probe_pid])
                row = cursor.fetchone()
                if row and row[0]:
                    self.waits.append((time.monotonic(), row[0]))
                self.stopping.wait(0.01)
        connection.close()

    def __enter__(self):
        self.thread.start()
        self.watcher.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.thread.join()
        self.watcher.join()

    def slow_write_waits(self) -> str:
        """What the writes over 250 ms were seen waiting on: each wait event, with its share of the samples."""
        from collections import Counter

        seen: Counter = Counter()
        for started, ended in self.writes:
            if ended - started > self.SLOW:
                seen.update(event for when, event in self.waits if started <= when <= ended)
        total = sum(seen.values())
        if not total:
            return ""
        shares = [(event, 100 * count / total) for event, count in seen.most_common()]
        return ", ".join(f"{event} {share:.0f}%" if share >= 0.5 else f"{event} <1%" for event, share in shares)

    def summary(self) -> str:
        if not self.latencies:
            return "no write"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        over = sum(1 for seconds in ordered if seconds > self.SLOW)
        text = (f"{len(ordered)} writes: p99 {p99 * 1000:,.0f} ms, longest {ordered[-1] * 1000:,.0f} ms, "
                f"{over} over 250 ms")
        waits = self.slow_write_waits()
        return f"{text} (seen waiting on: {waits})" if waits else text


def copy_of_table(database_url: str, table: str) -> str:
    """A copy of `table` (its rows and its indexes) that no migration touches: where a control probe writes."""
    import psycopg2

    copy = f"{table}_control_copy"
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(f'DROP TABLE IF EXISTS "{copy}"')
        cursor.execute(f'CREATE TABLE "{copy}" (LIKE "{table}" INCLUDING ALL)')
        cursor.execute(f'INSERT INTO "{copy}" SELECT * FROM "{table}"')
    connection.close()
    return copy


def measured_on_fresh_table(project, rows: int, body: str, control: bool = False) -> dict:
    """Run `body` on a fresh table of `rows` rows at the project's start, after a CHECKPOINT, with a WriteProbe on:
    its seconds, peak memory (bytes), WAL written, the table's state before and after, the probe's writes.

    control=True: the probe writes to a copy of the table instead, which `body` never touches, so no write can
    wait on a lock of the step: what the writes still suffer is the step's load on the server (WAL, I/O, CPU)."""
    with seeded_at_start(project, rows) as (url, _):
        probed = copy_of_table(url, project.large_table) if control else project.large_table
        checkpoint(url)
        before = table_state(url, project.large_table)
        with WriteProbe(url, probed, project.write_field, rows) as probe:
            seconds, output, peak_kib = measured(project.name, url, body)
        after = table_state(url, project.large_table)
        return {"rows": rows, "seconds": seconds, "peak": peak_kib * 1024, "wal": wal_bytes(url, before, after),
                "before": before, "after": after, "writes": probe.summary(), "output": output}
