"""Judge a Django project's migrations on a scratch database: seed, apply each one under the judge core's gate,
probe every table it locks, and turn the stops into findings (migrationlab/judge/report.py renders them).

Order of work: the scratch database is migrated to just before the first judged migration; then, before each judged
migration, the tables it touches (and those their foreign keys need) are seeded up to N rows from the historical
models at that point of the graph; the migration is applied for real, stopped after every SQL statement (and while
a statement waits on a transaction the judge holds), and each table it holds a lock on gets a read (one row by
primary key) and a write (an UPDATE of that row) from other connections.
"""

from __future__ import annotations

import inspect
import math
import re
import time
from dataclasses import dataclass, field

import psycopg2
from psycopg2 import sql

from migrationlab.databases import checkpoint, queries_cancelled_on_interrupt
from migrationlab.errors import LabError
from migrationlab.judge import fixes, seeding
from migrationlab.judge.project import Node
from migrationlab.judgecore import (
    ONE_CORE, Gate, HeldTransactions, Pause, Probes, judge_gated, migrate_in_thread, sql_sender, verdict_at, waits_on,
)
from migrationlab.locks import lock_strength

PROBE_LIMIT = 200  # statements probed per migration; a data migration's further queries run on unprobed
REFERENCED_SHARE = 10  # a table seeded only for a foreign key gets N / 10 rows (a table of customers for orders)
STRONG_TABLE_LOCKS = ("ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock")
INDEX_BUILD = r"^\s*(CREATE\s+(UNIQUE\s+)?INDEX|REINDEX|CLUSTER)|\bADD\s+(CONSTRAINT\s+\S+\s+)?(UNIQUE|PRIMARY\s+KEY|EXCLUDE)\b"
# Maintenance that reads the whole table, outside a transaction (so pg_stat_xact_* cannot show its scan).
WHOLE_TABLE = r"^\s*(VACUUM|ANALYZE)\b"


@dataclass
class Settings:
    rows: int = 100_000
    production_rows: dict[str, int] = field(default_factory=dict)  # table -> rows in production
    with_report: float | None = None  # seconds a report holds the touched tables (None: no report)


@dataclass
class TableFinding:
    table: str
    lock: str | None
    reads: str
    writes: str
    rewrite: bool | None = None
    scan: bool | None = None


@dataclass
class StatementFinding:
    number: int
    sql: str
    transaction: int
    seconds: float | None
    tables: list[TableFinding]
    waiting_for: str | None = None
    phase: str | None = None
    lock_timeout: str | None = None
    probed: bool = True
    estimate: dict | None = None
    fix: dict | None = None
    work_table: str | None = None  # the table it worked on most (its size drives the estimate)
    rows_written: int = 0  # rows of that table it wrote (a batch of a backfill, or every row)

    def worst(self, what: str) -> str:
        values = [getattr(table, what) for table in self.tables] or ["never"]
        return max(values, key=("never", "briefly", "throughout").index)


@dataclass
class MigrationFinding:
    migration: str
    file: str
    atomic: bool
    data_dependent: bool
    seconds: float
    seeded: dict[str, int]
    notes: list[str]
    statements: list[StatementFinding]
    locks_held: list[dict]  # atomic: each table's strongest lock, from the statement that took it to the commit
    error: str | None = None
    estimate: dict | None = None  # the whole migration's statements at production size (batches counted as n)

    def worst(self, what: str) -> str:
        values = [s.worst(what) for s in self.statements] or ["never"]
        return max(values, key=("never", "briefly", "throughout").index)


# -- which tables a migration touches ----------------------------------------------------------------------------

def _operations(operation):
    """An operation and those inside it (SeparateDatabaseAndState's database side, wrappers)."""
    yield operation
    for inner in getattr(operation, "database_operations", None) or ():
        yield from _operations(inner)
    wrapped = getattr(operation, "operation", None)
    if wrapped is not None and hasattr(wrapped, "database_forwards"):
        yield from _operations(wrapped)
    for inner in getattr(operation, "operations", None) or ():
        if hasattr(inner, "database_forwards"):
            yield from _operations(inner)


def touched_models(migration, before_apps) -> tuple[list, bool]:
    """The models (of the state before `migration`) whose tables it touches, and whether it runs code or SQL the
    judge cannot see through (RunPython, RunSQL: then every model of its app is counted as touched)."""
    from django.db.migrations.operations import CreateModel, RunPython, RunSQL
    from django.db.migrations.operations.models import ModelOperation

    names, opaque = set(), False
    for operation in migration.operations:
        for inner in _operations(operation):
            if isinstance(inner, (RunPython, RunSQL)):
                opaque = True
                continue
            if isinstance(inner, CreateModel):
                continue  # a new table: nothing to seed
            model_name = getattr(inner, "model_name", None)
            if model_name is None and isinstance(inner, ModelOperation):
                model_name = inner.name  # DeleteModel, AlterModelTable, RenameModel (its old name), ...
            if isinstance(model_name, str):
                names.add(model_name.lower())
    models = []
    for model in before_apps.get_models():
        meta = model._meta
        if meta.app_label != migration.app_label or meta.proxy or not meta.managed:
            continue
        if opaque or meta.model_name in names:
            models.append(model)
    return models, opaque


def with_references(models: list, after_apps, final_apps=None) -> list:
    """The models and, first, every model their foreign keys point to (also keys the migration, or a later one, is
    adding)."""
    ordered, seen = [], set()

    def visit(model, depth=0):
        key = model._meta.label_lower
        if key in seen or depth > 20:
            return
        seen.add(key)
        for target in _targets(model, after_apps) + _later_targets(model, final_apps):
            visit(target, depth + 1)
        ordered.append(model)

    for model in models:
        visit(model)
    return ordered


def _after(model, after_apps):
    try:
        return after_apps.get_model(model._meta.app_label, model._meta.model_name)
    except LookupError:
        return None  # the migration deletes it


def _targets(model, after_apps) -> list:
    """The models `model`'s foreign keys point to, before the migration and after it (as models of the state
    before it, whose tables exist)."""
    targets = []
    later = _after(model, after_apps)
    for fields in (model._meta.concrete_fields, later._meta.concrete_fields if later else ()):
        for field_ in fields:
            related = field_.related_model if field_.is_relation else None
            if related is None or related._meta.label_lower == model._meta.label_lower:
                continue
            try:
                targets.append(model._meta.apps.get_model(related._meta.app_label, related._meta.model_name))
            except LookupError:
                continue  # a model the migration creates: empty, nothing to point at yet
    return targets


def made_not_null(model, after_apps) -> set[str]:
    """The nullable columns the migration makes NOT NULL with no default to fill them: production's rows must
    already hold values there (else the migration fails there too), so the seed leaves them no NULL."""
    later = _after(model, after_apps)
    if later is None:
        return set()
    by_column = {f.column: f for f in later._meta.concrete_fields}
    out = set()
    for field_ in model._meta.concrete_fields:
        after = by_column.get(field_.column)
        if field_.null and after is not None and not after.null and not after.has_default() and \
                not seeding.has_db_default(after):
            out.add(field_.column)
    return out


def newest_model(model, final_apps):
    """The model of the same table in the project's newest state (None if the table goes)."""
    table = model._meta.db_table
    return next((m for m in final_apps.get_models(include_auto_created=True) if m._meta.db_table == table), None)


def newest_fields(model, final_apps) -> dict[str, object]:
    """The fields of the model's table in the project's newest state, by column (empty if the table goes)."""
    later = newest_model(model, final_apps)
    return {f.column: f for f in later._meta.concrete_fields} if later else {}


def newest_unique_columns(model, final_apps) -> set[str]:
    """The columns unique (alone or with others) in the project's newest state."""
    later = newest_model(model, final_apps)
    if later is None:
        return set()
    names = seeding.unique_columns(later)
    return {f.column for f in later._meta.concrete_fields if f.name in names}


def _later_targets(model, final_apps) -> list:
    if final_apps is None:
        return []
    by_table = {m._meta.db_table: m for m in model._meta.apps.get_models()}
    return [by_table[table] for table in becomes_foreign_key(model, final_apps).values()
            if table in by_table and table != model._meta.db_table]


def becomes_foreign_key(model, final_apps) -> dict[str, str]:
    """Columns a later migration turns into foreign keys (an integer column made a ForeignKey): column -> the table
    it will point at, so that the seeded values already point at existing rows (else the constraint could not be
    validated, in production as here)."""
    later = newest_fields(model, final_apps)
    plain = {f.column for f in model._meta.concrete_fields if not f.is_relation}
    tables = {m._meta.db_table for m in model._meta.apps.get_models()}
    return {column: f.related_model._meta.db_table for column, f in later.items()
            if f.is_relation and f.many_to_one and column in plain and f.related_model._meta.db_table in tables}


# -- seeding -----------------------------------------------------------------------------------------------------

def seed(models: list, touched: set[str], rows: int, url: str, say, final_apps=None, after_apps=None
         ) -> tuple[dict[str, int], list[str]]:
    """Seed each model's table (touched ones to `rows`, the others to rows / 10); committed, vacuumed and analysed,
    then written to disk (a CHECKPOINT: the migration's statements then start from a production table's state, its
    pages clean, and do not compete with the seed's writes)."""
    with queries_cancelled_on_interrupt():  # Ctrl-C or a cancelled CI job stops a long INSERT now
        seeded, notes = _seed(models, touched, rows, url, say, final_apps, after_apps)
        if seeded:
            checkpoint(url, say)
    return seeded, notes


def _seed(models: list, touched: set[str], rows: int, url: str, say, final_apps, after_apps
          ) -> tuple[dict[str, int], list[str]]:
    seeded, notes = {}, []
    connection = psycopg2.connect(url, application_name="judge-seed")
    try:
        for model in models:
            table = model._meta.db_table
            target = rows if model._meta.label_lower in touched else max(1, rows // REFERENCED_SHARE)
            plan = seeding.plan_for(model, becomes_foreign_key(model, final_apps) if final_apps else {},
                                    newest_fields(model, final_apps) if final_apps else {},
                                    newest_unique_columns(model, final_apps) if final_apps else set(),
                                    made_not_null(model, after_apps) if after_apps else set())
            notes += [f"{table}.{note}" for note in plan.notes]
            if plan.impossible:
                notes.append(f"{table}: not seeded: {plan.impossible}")
                continue
            try:
                with connection.cursor() as cursor:
                    inserted = seeding.seed_table(cursor, plan, target)
                connection.commit()
            except (psycopg2.Error, seeding.SeedError) as failure:
                connection.rollback()
                text = str(failure).strip().splitlines()[0]
                notes.append(f"{table}: not seeded: {text}")
                continue
            if inserted:
                say(f"    seeded {table}: {inserted:,} rows")
            with connection.cursor() as cursor:
                cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
                seeded[table] = cursor.fetchone()[0]
            connection.commit()
        connection.autocommit = True
        with connection.cursor() as cursor:
            for table in seeded:
                cursor.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
    finally:
        connection.close()
    return seeded, notes


# -- probing ------------------------------------------------------------------------------------------------------

class TableProbes(Probes):
    """The read and write of every table the migration holds a lock on, found at each stop in pg_locks: a read of a
    row by primary key (the middle one, chosen before the migration ran), and an UPDATE that changes nothing of two
    rows, the first and the middle one: a data migration that works through the oldest rows (a retention delete)
    or through the whole table holds a row lock on at least one of them."""

    def __init__(self, monitor, url: str, rows_by_table: dict[str, tuple[str, list]]):
        super().__init__(monitor, {})
        self.url = url
        self.rows_by_table = rows_by_table  # table -> (primary key column, the row's key)
        self.failures: list[str] = []

    def _new(self):
        connection = psycopg2.connect(self.url, application_name="judge-probe")
        connection.autocommit = True
        return connection

    def _add(self, table: str, oid: int) -> None:
        pk, keys = self.rows_by_table.get(table, (None, []))
        ident = sql.Identifier(table).as_string(self.monitor)
        if pk is None:  # no single-column primary key: the table's locks only
            read, write = f"SELECT 1 FROM {ident} LIMIT 1", f"LOCK TABLE {ident} IN ROW EXCLUSIVE MODE"
        else:
            column = sql.Identifier(pk).as_string(self.monitor)
            literals = ", ".join(sql.Literal(key).as_string(self.monitor) for key in keys) or "NULL"
            read = f"SELECT * FROM {ident} WHERE {column} = {sql.Literal(keys[-1] if keys else None).as_string(self.monitor)}"
            write = f"UPDATE {ident} SET {column} = {column} WHERE {column} IN ({literals})"
        self.senders[table] = (sql_sender(self._new, read, self.failures), sql_sender(self._new, write, self.failures))
        self.oids[table] = oid

    def note_locks(self, pause: Pause, pid: int) -> None:
        with self.monitor.cursor() as cursor:
            # Only tables the monitor can see: one created in the migration's own transaction is nobody else's yet.
            cursor.execute("SELECT DISTINCT c.oid, c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                           "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE l.pid = %s AND c.relkind IN "
                           "('r', 'p') AND s.nspname NOT IN ('pg_catalog', 'information_schema') "
                           "AND s.nspname NOT LIKE 'pg_temp%%'", [pid])
            for oid, name in cursor.fetchall():
                if name not in self.senders and name != "django_migrations":
                    self._add(name, oid)
        super().note_locks(pause, pid)
        for name, stop in list(pause.tables.items()):
            if not stop.locks and not stop.queued:
                del pause.tables[name]  # only the tables it holds (or asks for) a lock on

    def probe(self, pause: Pause, pid: int) -> None:
        for table in list(pause.tables):
            read, write = self.senders[table]
            stop = pause.tables[table]
            stop.read_waited = waits_on(self.monitor, pid, read)
            stop.write_waited = waits_on(self.monitor, pid, write)
        self.failures.clear()  # a probe of a table the statement changed may fail (a column it renamed): not a wait


def probe_rows(url: str) -> dict[str, tuple[str, list]]:
    """Per user table: its primary key column and the keys of its first and middle rows (none if it has no rows)."""
    out = {}
    connection = psycopg2.connect(url, application_name="judge-monitor")
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT c.relname, a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                           "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
                           "JOIN pg_namespace s ON s.oid = c.relnamespace WHERE i.indisprimary "
                           "AND s.nspname = current_schema() AND i.indnatts = 1")
            for table, pk in cursor.fetchall():
                cursor.execute(sql.SQL("(SELECT {pk} FROM {t} ORDER BY {pk} LIMIT 1) UNION ALL (SELECT {pk} FROM {t} "
                                       "ORDER BY {pk} OFFSET (SELECT count(*) / 2 FROM {t}) LIMIT 1)").format(
                    pk=sql.Identifier(pk), t=sql.Identifier(table)))
                out[table] = (pk, list(dict.fromkeys(key for (key,) in cursor.fetchall())))
    finally:
        connection.close()
    return out


def table_oids(url: str, tables) -> dict[str, int]:
    connection = psycopg2.connect(url, application_name="judge-monitor")
    try:
        with connection.cursor() as cursor:
            out = {}
            for table in tables:
                cursor.execute("SELECT to_regclass(%s)::oid", [f'"{table}"'])
                oid = cursor.fetchone()[0]
                if oid:
                    out[table] = oid
            return out
    finally:
        connection.close()


# -- one migration ------------------------------------------------------------------------------------------------

def size_model(statement: str, finding: TableFinding | None, rows_written: int, rows: int) -> str:
    """How the statement's time grows with the table: "n log n" (an index build, or a rewrite, which copies the
    table and rebuilds each of its indexes: sorts), "n" (a scan, VACUUM, or rows written in proportion), "1"
    (catalog only)."""
    if re.search(INDEX_BUILD, statement, re.IGNORECASE) or (finding is not None and finding.rewrite):
        return "n log n"
    if (finding is not None and finding.scan) or re.search(WHOLE_TABLE, statement, re.IGNORECASE):
        return "n"
    if rows and rows_written >= rows // 2:
        return "n"
    return "1"


def estimate(seconds: float | None, model: str, rows: int, production: int | None) -> dict | None:
    if seconds is None or not production or not rows:
        return None
    if model == "n log n":
        factor = (production * math.log2(max(production, 2))) / (rows * math.log2(max(rows, 2)))
    elif model == "n":
        factor = production / rows
    else:
        factor = 1.0
    return {"seconds": round(seconds * factor, 3), "model": model, "production_rows": production,
            "measured_rows": rows, "factor": round(factor, 2)}


def states(loader, applied: list[Node], node: Node):
    """The models as the database has them before `node` (every applied migration, not only its ancestors:
    another app's later migration may have changed a table this one refers to), and after it."""
    last: dict[str, Node] = {}
    for done in applied:
        last[done.app_label] = done
    leaves = [(n.app_label, n.name) for n in last.values()]
    key = (node.app_label, node.name)
    before = loader.project_state(leaves, at_end=True) if leaves else loader.project_state(key, at_end=False)
    return before.apps, loader.project_state(leaves + [key], at_end=True).apps


def judge_migration(node: Node, executor, url: str, monitor, settings: Settings, say,
                    applied: list[Node]) -> MigrationFinding:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    migration = executor.loader.graph.nodes[(node.app_label, node.name)]
    key = (node.app_label, node.name)
    before_apps, after_apps = states(executor.loader, applied, node)
    models, opaque = touched_models(migration, before_apps)
    touched = {m._meta.label_lower for m in models}
    final_apps = executor.loader.project_state().apps  # the newest state: what the columns become
    seeded, notes = seed(with_references(models, after_apps, final_apps), touched, settings.rows, url, say,
                         final_apps, after_apps)
    if opaque:
        notes.append("runs RunPython or RunSQL: the judge cannot see which tables it touches, so it seeded every "
                     "table of its app; a RunPython's time depends on the data (data-dependent)")
    oids = table_oids(url, seeded)
    table_rows = {oids[t]: n for t, n in seeded.items() if t in oids}
    probes = TableProbes(monitor, url, probe_rows(url))
    gate = Gate(list(table_rows))
    held_tables = [t for t in seeded if t in oids and any(m._meta.db_table == t for m in models)] or list(oids)
    held = HeldTransactions(lambda **options: psycopg2.connect(url, **options), held_tables)

    def apply():
        runner = MigrationExecutor(connection)
        runner.migrate([key], plan=[(runner.loader.graph.nodes[key], False)])

    started = time.perf_counter()
    error = None
    try:
        pauses = judge_gated(migrate_in_thread(gate, apply, ONE_CORE), gate, monitor, probes, held, str(node),
                             with_report=bool(settings.with_report) and bool(held_tables),
                             probe_limit=PROBE_LIMIT)
    except Exception as failure:  # the migration itself failed: reported, and the judge goes on to say so
        text = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        error, pauses = f"{type(failure).__name__}: {text}", []
    seconds = time.perf_counter() - started
    statements = findings(pauses, table_rows, oids, settings)
    whole = migration_estimate(statements, table_rows, oids, settings)
    return MigrationFinding(
        migration=str(node), file=_file_of(migration), atomic=bool(getattr(migration, "atomic", True)),
        data_dependent=any(type(op).__name__ == "RunPython" for m in [migration] for op in m.operations),
        seconds=round(seconds, 3), seeded=seeded, notes=notes, statements=statements,
        locks_held=locks_held(statements) if getattr(migration, "atomic", True) else [], error=error,
        estimate=whole)


def _file_of(migration) -> str:
    try:
        return inspect.getsourcefile(type(migration)) or ""
    except TypeError:
        return ""


BOOKKEEPING = re.compile(r'"django_migrations"|\bFROM\s+pg_catalog\.|^\s*SELECT\s+c\.relname\b', re.IGNORECASE)


def bookkeeping(statement: str) -> bool:
    """Django's own queries around a migration: reading and recording django_migrations, introspecting the
    catalog. Judged like the rest (locks taken before are still held), but not the migration's own statements."""
    return bool(BOOKKEEPING.search(statement))


def findings(pauses: list[Pause], table_rows: dict[int, int], oids: dict[str, int], settings: Settings
             ) -> list[StatementFinding]:
    """One finding per statement of the migration's own (Django's bookkeeping left out), numbered in order."""
    out = []
    for index, pause in enumerate(pauses):
        if bookkeeping(pause.statement):
            continue
        tables = []
        for name, stop in pause.tables.items():
            oid = oids.get(name)
            rows = table_rows.get(oid, 0) if oid else 0
            before, after = pause.detail_before.get(oid), pause.detail_after.get(oid)
            rewrite = scan = None
            if before and after:
                rewrite = before[2] != after[2]
                scan = rows > 0 and after[0] - before[0] >= rows
            lock = max(stop.locks or stop.queued, key=lock_strength) if (stop.locks or stop.queued) else None
            tables.append(TableFinding(name, lock, verdict_at(pauses, index, name, "read", table_rows),
                                       verdict_at(pauses, index, name, "write", table_rows), rewrite, scan))
        finding = StatementFinding(len(out) + 1, pause.statement, pause.transaction,
                                   round(pause.seconds, 4) if pause.seconds is not None else None, tables,
                                   pause.waiting_for, pause.phase, pause.lock_timeout, pause.probed)
        # The size model and the estimate, on the table the statement worked on most (else the one it names).
        heaviest, work, written = None, 0, 0
        for name, oid in oids.items():
            before, after = pause.detail_before.get(oid), pause.detail_after.get(oid)
            if before and after and max(after[0] - before[0], after[1] - before[1]) > work:
                heaviest, work, written = name, max(after[0] - before[0], after[1] - before[1]), after[1] - before[1]
        if heaviest is None:
            heaviest = next((t.table for t in tables if t.table in oids), None) or named_table(pause.statement, oids)
        if heaviest is not None:
            rows = table_rows.get(oids[heaviest], 0)
            target = next((t for t in tables if t.table == heaviest), None)
            model = size_model(pause.statement, target, written, rows)
            finding.work_table, finding.rows_written = heaviest, written
            finding.estimate = estimate(pause.seconds, model, rows, settings.production_rows.get(heaviest))
        # The lock queue's fix belongs to the statement that takes a strong lock, not to those that hold it on.
        taken = {t.table: t.lock for t in tables if t.lock in STRONG_TABLE_LOCKS}
        earlier = {t.table: t.lock for s in out if s.transaction == pause.transaction for t in s.tables}
        takes_strong = any(earlier.get(table) != mode for table, mode in taken.items())
        strongest_taken = max(taken.values(), key=lock_strength, default=None)
        fix = fixes.fix_for(pause.statement, finding.worst("reads"), finding.worst("writes"),
                            pause.lock_timeout, behind_report=pause.waiting_for == "report",
                            lock=strongest_taken, takes_lock=takes_strong or bool(pause.waiting_for))
        if fix is not None:
            finding.fix = {"operation": fix.key, "project": fix.project, "use": fix.use}
        out.append(finding)
    return out


def named_table(statement: str, oids: dict[str, int]) -> str | None:
    """The first measured table the statement names (CREATE INDEX ... ON t, ALTER TABLE t, UPDATE t, FROM t,
    VACUUM (ANALYZE) t)."""
    for match in re.finditer(r'\b(?:ON|TABLE(?:\s+ONLY)?|UPDATE|FROM|INTO|(?:VACUUM|ANALYZE|CLUSTER)(?:\s*\([^)]*\))?)'
                             r'\s+"?([\w$]+)"?', statement, re.IGNORECASE):
        if match.group(1) in oids:
            return match.group(1)
    return None


def migration_estimate(statements: list[StatementFinding], table_rows: dict[int, int], oids: dict[str, int],
                       settings: Settings) -> dict | None:
    """The migration's statements at production size. A statement repeated (the batches of a backfill or a delete,
    one SQL text) whose repeats together wrote at least half a table: their total grows like n (more batches, each
    as long); every other statement by its own size model."""
    if not settings.production_rows:
        return None
    groups: dict[str, list[StatementFinding]] = {}
    for statement in statements:
        groups.setdefault(statement.sql, []).append(statement)
    measured = estimated = 0.0
    models = set()
    for sql_text, group in groups.items():
        seconds = sum(s.seconds or 0 for s in group)
        measured += seconds
        table = group[0].work_table
        rows = table_rows.get(oids.get(table), 0) if table else 0
        production = settings.production_rows.get(table) if table else None
        if len(group) > 1 and rows and production and sum(s.rows_written for s in group) >= rows // 2:
            estimated += seconds * production / rows
            models.add("n (batches)")
            continue
        for statement in group:
            if statement.estimate:
                estimated += statement.estimate["seconds"]
                models.add(statement.estimate["model"])
            else:
                estimated += statement.seconds or 0
    return {"seconds": round(estimated, 3), "measured_seconds": round(measured, 3), "models": sorted(models)}


def locks_held(statements: list[StatementFinding]) -> list[dict]:
    """Per transaction and table: the strongest lock, from the first statement that held it to the transaction's
    last (then the commit): in an atomic migration, locks accumulate until the end."""
    out = []
    by_transaction: dict[int, list[StatementFinding]] = {}
    for statement in statements:
        by_transaction.setdefault(statement.transaction, []).append(statement)
    for transaction, group in by_transaction.items():
        last = group[-1].number
        first_seen: dict[str, int] = {}
        strongest: dict[str, str] = {}
        for statement in group:
            for table in statement.tables:
                mode = table.lock
                if mode and (table.table not in strongest or lock_strength(mode) > lock_strength(strongest[table.table])):
                    strongest[table.table] = mode
                    first_seen[table.table] = statement.number
        for table, mode in strongest.items():
            out.append({"table": table, "lock": mode, "from_statement": first_seen[table], "to_statement": last,
                        "transaction": transaction})
    return out


def migrate_to(nodes: list[Node]) -> None:
    """Apply these migrations (not judged), as `migrate` would."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    if not nodes:
        return
    executor = MigrationExecutor(connection)
    plan = [(executor.loader.graph.nodes[(n.app_label, n.name)], False) for n in nodes]
    try:
        executor.migrate([(n.app_label, n.name) for n in nodes], plan=plan)
    except Exception as failure:
        text = str(failure).strip().splitlines()[0] if str(failure).strip() else type(failure).__name__
        raise LabError(f"migrating the scratch database to {nodes[-1]} failed: {text}") from None
    connection.close()


def run(plan: list[Node], judged: list[Node], url: str, settings: Settings, say) -> list[MigrationFinding]:
    """Walk the plan: apply what is not judged, judge what is."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    monitor = psycopg2.connect(url, application_name="judge-monitor")
    monitor.autocommit = True
    results, pending, applied = [], [], []
    judged_set = set(judged)
    try:
        for node in plan:
            if node not in judged_set:
                pending.append(node)
                applied.append(node)
                continue
            if not results:
                say(f"  migrating the scratch database to just before {node} ({len(pending)} migrations)")
            migrate_to(pending)
            pending = []
            say(f"  judging {node}")
            executor = MigrationExecutor(connection)
            finding = judge_migration(node, executor, url, monitor, settings, say, applied)
            connection.close()
            applied.append(node)
            results.append(finding)
            if finding.error:
                say(f"    the migration failed: {finding.error}; the judge stops here")
                break
            if len(results) == len(judged):
                break
    finally:
        monitor.close()
    return results

