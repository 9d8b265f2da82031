"""`python -m migrationlab catalog`: every dangerous operation, judged by PostgreSQL, with what it does to traffic.

No Django project is involved: the catalog creates a database of its own, with a table it seeds itself
(`catalog_items`, N rows, set-based like migrationlab/seeding.py), a table it refers to (`catalog_customers`,
1 % of N) and a partitioned table (`catalog_events`, two partitions). They are dropped and seeded again before
each operation (the same rows each time: cheaper than copying a template database, whose DROP DATABASE waits for a
checkpoint), so every operation starts from the same state.

Each operation is judged with the lock judge's own pieces (migrationlab/lockjudge.py, whose docstring defines
never / briefly / throughout):
  transaction   - run in a transaction; while it is still open (its locks held, as they were during the
                  statement) pg_locks gives its modes on each table, then a read and a write of one row by id are
                  sent to each table from other connections: did they wait, with the operation among their
                  pg_blocking_pids? The transaction's own pg_stat_xact_user_tables says how many rows it read and
                  wrote: a probe that waited on a statement that worked through the table waited `throughout`.
                  Then COMMIT, and pg_class.relfilenode says whether the table was rewritten.
  concurrently  - cannot run in a transaction: a transaction of the judge's that wrote to the table stays open,
                  the statement waits for it at a known phase, the probes are sent while it waits (with pg_locks'
                  view of what it holds), then a fresh one is held for the next phase and the old one ends.
  at_lock       - VACUUM FULL (no transaction block), ADD COLUMN ... NOT NULL without a default (it fails at
                  once): a read of the judge's stays open, the statement queues for its lock behind it, the
                  probes queue behind the statement; once it ran, the statistics say whether it then worked
                  through the table while holding that lock.
  lock_queue    - an instant ACCESS EXCLUSIVE statement behind a long report (a read transaction the judge holds):
                  the probes queue behind it; without lock_timeout for as long as the report runs.
Rows read by a statement that ran outside a transaction come from pg_stat_user_tables (flushed with
pg_stat_force_next_flush, PostgreSQL 15+; on 14, which cannot flush them, a statement that rewrote the table went
through every row, and otherwise the scan is unknown). Each duration is the statement's own: measured in the judged run for an
operation in a transaction (the probes are sent after it), otherwise in a run of its own on tables seeded anew,
without the judge's transactions. The database goes when the catalog ends (Ctrl-C included), and the embedded server
too if the catalog started it.

`--postgres 14,15,16,18` (or `all`) runs the whole catalog on the embedded server of each major in turn (a cluster per
major, docs/versions.md) and merges the reports: the document's tables are 16's, a table across versions gives each
version's verdict, marks what differs (or exists only from a version, `min_version`) with the release notes' reason
(`Operation.versions`), and the closing note lists those and the versions that could not be had, and why.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psycopg2

from migrationlab import REPO_ROOT
from migrationlab.errors import LabError
from migrationlab import judgecore
from migrationlab.judgecore import (
    FAILSAFE_SECONDS, ONE_CORE, RETRIES_WHEN_TIMED_OUT, Failsafe, HeldTransactions, Pause, StopsWhileWaiting,
    rows_read_and_written, sql_sender, verdict,
)
from migrationlab.locks import lock_name, lock_strength
from migrationlab.databases import DEFAULT_MAJOR, ScratchDatabases, embedded_unavailable, first_line, postgres_major

DEFAULT_OUT = REPO_ROOT / "docs" / "catalog.md"
DEFAULT_ROWS = 100_000
SCHEMA = "catalog_lab"  # in a database of the catalog's own
ITEMS, CUSTOMERS, EVENTS, OLD_EVENTS = "catalog_items", "catalog_customers", "catalog_events", "catalog_events_2024"
PG17, PG18 = 170000, 180000
FLUSHABLE_STATS = 150000  # pg_stat_force_next_flush()
SESSION = ONE_CORE  # the judged statement on one core (judgecore.ONE_CORE says why)
AE, SRE, SUE, SHARE, RX, RS = ("AccessExclusiveLock", "ShareRowExclusiveLock", "ShareUpdateExclusiveLock",
                               "ShareLock", "RowExclusiveLock", "RowShareLock")


@dataclass(frozen=True)
class Claim:
    """What a tool or a document says an operation does; `expects` names the measured fields it predicts."""

    source: str
    says: str
    expects: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Operation:
    name: str
    group: str
    sql: str
    kind: str = "transaction"  # transaction | concurrently | at_lock | lock_queue
    setup: tuple[str, ...] = ()  # committed before the operation, in its session
    session: tuple[str, ...] = ()  # settings of the operation's session (e.g. lock_timeout)
    table: str = ITEMS
    other: str | None = None  # the referenced table, or the partition: probed as well
    safe: str = ""  # the safe alternative: a project folder, or one line of SQL; "" for a safe form itself
    documented: str | None = None  # the lock the PostgreSQL 16 docs give on the table (None: no table lock)
    documented_other: str | None = None
    claims: tuple[Claim, ...] = ()
    fails: str | None = None  # the error it is expected to end with (a substring of the message)
    min_version: int = 0
    note: str = ""
    # Why its verdict differs between PostgreSQL versions, or why it exists only from one (the release notes).
    versions: str = ""


def _claim(source: str, says: str, **expects) -> Claim:
    return Claim(source, says, tuple(expects.items()))


SQUAWK, STRONG, PGDOCS = "squawk", "strong_migrations", "PostgreSQL 16 docs"
STRONG_NEWER, STRONG_OLDER = f"{STRONG} (README at commit 0034d99)", f"{STRONG} (README at commit 3792e82)"
EUGENE = "eugene"
PGLS = "postgres-language-server (changingColumnType, after squawk's rule)"

OPERATIONS: tuple[Operation, ...] = (
    # -- ADD COLUMN -------------------------------------------------------------------------------------------------
    Operation("add_column_nullable", "ADD COLUMN", f"ALTER TABLE {ITEMS} ADD COLUMN note text",
              documented=AE),
    Operation("add_column_constant_default", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ADD COLUMN channel text NOT NULL DEFAULT 'web'", documented=AE,
              claims=(_claim(SQUAWK, "adding-field-with-default: a non-volatile default needs no rewrite (PG 11+)",
                             rewrite=False),
                      _claim(STRONG, "a column with a default value is safe in Postgres 11+", rewrite=False))),
    Operation("add_column_volatile_default", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ADD COLUMN public_id uuid DEFAULT gen_random_uuid()", documented=AE,
              safe="proj09_alter_defaults (nullable column, SET DEFAULT for new rows, batched backfill)",
              claims=(_claim(SQUAWK, "adding-field-with-default: a volatile default rewrites the table",
                             rewrite=True),)),
    Operation("add_column_not_null_without_default", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ADD COLUMN region text NOT NULL", kind="at_lock", documented=AE,
              fails="contains null values", safe=f"ALTER TABLE {ITEMS} ADD COLUMN region text NOT NULL DEFAULT 'eu'",
              note="fails on a table with rows (every existing row would be NULL): ACCESS EXCLUSIVE, then the error "
                   "at the first row"),
    Operation("add_column_identity", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ADD COLUMN seq_no bigint GENERATED BY DEFAULT AS IDENTITY", documented=AE,
              safe="nullable bigint column, SET DEFAULT nextval(...) for new rows, batched backfill "
                   "(proj09_alter_defaults' pattern)"),
    Operation("add_column_serial", "ADD COLUMN", f"ALTER TABLE {ITEMS} ADD COLUMN legacy_no serial",
              documented=AE, safe="as for an identity column",
              claims=(_claim(EUGENE, "E11: a serial column rewrites the table under AccessExclusiveLock", lock=AE,
                             rewrite=True),)),
    Operation("add_column_generated_stored", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ADD COLUMN quantity_doubled integer GENERATED ALWAYS AS (quantity * 2) STORED",
              documented=AE, safe="a plain column kept by a trigger, batched backfill (proj04_safe_backfill's "
                                  "sync trigger)",
              claims=(_claim(EUGENE, "E11: a GENERATED ... STORED column rewrites the table under "
                                     "AccessExclusiveLock", lock=AE, rewrite=True),)),
    Operation("add_column_generated_virtual", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ADD COLUMN quantity_tripled integer GENERATED ALWAYS AS (quantity * 3)",
              min_version=PG18, documented=AE,
              note="PostgreSQL 18+: a virtual generated column (the default kind from 18), computed when read",
              versions="PostgreSQL 18 release notes: virtual generated columns, computed on read, are the default "
                       "kind of generated column; before 18 the clause needs STORED (a syntax error without it)"),
    Operation("set_expression", "ADD COLUMN",
              f"ALTER TABLE {ITEMS} ALTER COLUMN quantity_doubled SET EXPRESSION AS (quantity * 3)",
              setup=(f"ALTER TABLE {ITEMS} ADD COLUMN quantity_doubled integer "
                     "GENERATED ALWAYS AS (quantity * 2) STORED",),
              min_version=PG17, documented=AE,
              safe="a new plain column kept by a trigger, batched backfill, then the swap (proj04_safe_backfill)",
              note="setup: a STORED generated column; PostgreSQL 17+: its expression changed in place",
              versions="PostgreSQL 17 release notes: ALTER TABLE ... ALTER COLUMN ... SET EXPRESSION changes a "
                       "generated column's expression (it recomputes every stored row); a syntax error before 17"),
    # -- NOT NULL ---------------------------------------------------------------------------------------------------
    Operation("set_not_null", "NOT NULL", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET NOT NULL",
              documented=AE, safe="proj01_safe_backfill (CHECK NOT VALID, VALIDATE, then SET NOT NULL)",
              claims=(_claim(STRONG, "setting NOT NULL blocks reads and writes while every row is checked",
                             reads="throughout", writes="throughout", scan=True),
                      _claim(SQUAWK, "adding-not-nullable-field: a table scan under ACCESS EXCLUSIVE", lock=AE,
                             scan=True))),
    Operation("set_not_null_with_validated_check", "NOT NULL",
              f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET NOT NULL",
              setup=(f"ALTER TABLE {ITEMS} ADD CONSTRAINT quantity_not_null CHECK (quantity IS NOT NULL)",),
              documented=AE, note="setup: a validated CHECK (quantity IS NOT NULL)",
              claims=(_claim(SQUAWK, "adding-not-nullable-field flags every SET NOT NULL: a table scan under "
                                     "ACCESS EXCLUSIVE", scan=True),
                      _claim(STRONG, "Postgres 12+: with the CHECK validated, SET NOT NULL is safe", scan=False))),
    Operation("set_not_null_not_valid", "NOT NULL",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT quantity_not_null NOT NULL quantity NOT VALID",
              min_version=PG18, documented=AE, note="PostgreSQL 18+: a NOT NULL constraint that is not yet "
                                                    "validated (then VALIDATE CONSTRAINT)",
              versions="PostgreSQL 18 release notes: ALTER TABLE can mark NOT NULL constraints NOT VALID (and "
                       "VALIDATE them later); a syntax error before 18"),
    Operation("drop_not_null", "NOT NULL", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity DROP NOT NULL",
              setup=(f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET NOT NULL",), documented=AE,
              safe="the same, under lock_timeout (WithLockTimeout)"),
    # -- CHECK ------------------------------------------------------------------------------------------------------
    Operation("add_check", "CHECK", f"ALTER TABLE {ITEMS} ADD CONSTRAINT quantity_non_negative CHECK (quantity >= 0)",
              documented=AE, safe="ADD ... NOT VALID, then VALIDATE CONSTRAINT (proj01_safe_backfill)"),
    Operation("add_check_not_valid", "CHECK",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT quantity_non_negative CHECK (quantity >= 0) NOT VALID",
              documented=AE),
    Operation("validate_check", "CHECK", f"ALTER TABLE {ITEMS} VALIDATE CONSTRAINT quantity_non_negative",
              setup=(f"ALTER TABLE {ITEMS} ADD CONSTRAINT quantity_non_negative CHECK (quantity >= 0) NOT VALID",),
              documented=SUE),
    # -- UNIQUE / PRIMARY KEY ---------------------------------------------------------------------------------------
    Operation("add_unique", "UNIQUE / PRIMARY KEY",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_code_key UNIQUE (code)",
              documented=AE, safe="CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE USING INDEX",
              claims=(_claim(SQUAWK, "disallowed-unique-constraint: ACCESS EXCLUSIVE, which blocks reads", lock=AE,
                             reads="throughout"),)),
    Operation("create_unique_index_concurrently", "UNIQUE / PRIMARY KEY",
              f"CREATE UNIQUE INDEX CONCURRENTLY catalog_items_code_key ON {ITEMS} (code)", kind="concurrently",
              documented=SUE),
    Operation("add_unique_using_index", "UNIQUE / PRIMARY KEY",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_code_key UNIQUE USING INDEX catalog_items_code_key",
              setup=(f"CREATE UNIQUE INDEX catalog_items_code_key ON {ITEMS} (code)",), documented=AE),
    Operation("add_primary_key", "UNIQUE / PRIMARY KEY", f"ALTER TABLE {ITEMS} ADD PRIMARY KEY (id)",
              setup=(f"ALTER TABLE {ITEMS} DROP CONSTRAINT catalog_items_pkey",), documented=AE,
              safe="CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX",
              note="setup: the table without its primary key (the read by id is a sequential scan)",
              claims=(_claim(SQUAWK, "adding-serial-primary-key-field: ACCESS EXCLUSIVE blocks reads and writes "
                                     "while the index is built", lock=AE, reads="throughout", writes="throughout"),)),
    Operation("add_primary_key_using_index", "UNIQUE / PRIMARY KEY",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_pkey PRIMARY KEY USING INDEX catalog_items_id_key",
              setup=(f"ALTER TABLE {ITEMS} DROP CONSTRAINT catalog_items_pkey",
                     f"CREATE UNIQUE INDEX catalog_items_id_key ON {ITEMS} (id)"), documented=AE,
              note="setup: no primary key, a unique index on id (id is already NOT NULL: no scan)"),
    # -- FOREIGN KEY ------------------------------------------------------------------------------------------------
    Operation("add_foreign_key", "FOREIGN KEY",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_customer_fk FOREIGN KEY (customer_id) "
              f"REFERENCES {CUSTOMERS} (id)", other=CUSTOMERS, documented=SRE, documented_other=SRE,
              safe="proj07_safe_backfill (NOT VALID, then VALIDATE)",
              claims=(_claim(SQUAWK, "adding-foreign-key-constraint: SHARE ROW EXCLUSIVE on both tables, blocks "
                                     "writes to each", lock=SRE, other_lock=SRE, writes="throughout",
                             other_writes="throughout"),
                      _claim(STRONG_NEWER, "a validated foreign key acquires a ShareRowExclusiveLock", lock=SRE),
                      _claim(STRONG_OLDER, "a validated foreign key acquires an AccessExclusiveLock", lock=AE))),
    Operation("add_foreign_key_not_valid", "FOREIGN KEY",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_customer_fk FOREIGN KEY (customer_id) "
              f"REFERENCES {CUSTOMERS} (id) NOT VALID", other=CUSTOMERS, documented=SRE, documented_other=SRE),
    Operation("validate_foreign_key", "FOREIGN KEY",
              f"ALTER TABLE {ITEMS} VALIDATE CONSTRAINT catalog_items_customer_fk",
              setup=(f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_customer_fk FOREIGN KEY (customer_id) "
                     f"REFERENCES {CUSTOMERS} (id) NOT VALID",), other=CUSTOMERS, documented=SUE,
              documented_other=RS,
              claims=(_claim(STRONG_NEWER, "validate it in a separate migration with a more agreeable "
                                           "RowShareLock", lock=RS),)),
    # -- INDEXES ----------------------------------------------------------------------------------------------------
    Operation("create_index", "INDEX", f"CREATE INDEX catalog_items_quantity_idx ON {ITEMS} (quantity)",
              documented=SHARE, safe="proj03_safe_backfill (CREATE INDEX CONCURRENTLY)",
              claims=(_claim(STRONG, "adding an index non-concurrently blocks writes", reads="never",
                             writes="throughout"),)),
    Operation("create_index_concurrently", "INDEX",
              f"CREATE INDEX CONCURRENTLY catalog_items_quantity_idx ON {ITEMS} (quantity)", kind="concurrently",
              documented=SUE),
    Operation("drop_index", "INDEX", "DROP INDEX catalog_items_created_at_idx", documented=AE,
              safe="proj08_drop_indexes (DROP INDEX CONCURRENTLY)"),
    Operation("drop_index_concurrently", "INDEX", "DROP INDEX CONCURRENTLY catalog_items_created_at_idx",
              kind="concurrently", documented=SUE),
    Operation("reindex", "INDEX", "REINDEX INDEX catalog_items_created_at_idx", documented=SHARE,
              safe="REINDEX INDEX CONCURRENTLY catalog_items_created_at_idx",
              note="it also holds ACCESS EXCLUSIVE on the index itself, and planning any query on the table opens "
                   "all its indexes: reads by id wait too",
              claims=(_claim(PGDOCS, "REINDEX locks out writes but not reads of the table; only reads that use "
                                     "the index being rebuilt wait (the probe reads by primary key)", reads="never",
                             writes="throughout"),)),
    Operation("reindex_concurrently", "INDEX", "REINDEX INDEX CONCURRENTLY catalog_items_created_at_idx",
              kind="concurrently", documented=SUE),
    # -- ALTER COLUMN TYPE ------------------------------------------------------------------------------------------
    Operation("int_to_bigint", "ALTER COLUMN TYPE", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity TYPE bigint",
              documented=AE, safe="proj04_safe_backfill (new column, sync trigger, batched copy, swap)",
              claims=(_claim(STRONG, "a type change rewrites the table", rewrite=True),)),
    Operation("varchar_to_longer_varchar", "ALTER COLUMN TYPE",
              f"ALTER TABLE {ITEMS} ALTER COLUMN code TYPE varchar(200)", documented=AE,
              safe="the same, under lock_timeout (WithLockTimeout)",
              claims=(_claim(SQUAWK, "changing-column-type / prefer-text-field: a new varchar size takes ACCESS "
                                     "EXCLUSIVE", lock=AE),
                      _claim(PGLS, "a type change rewrites the entire table, blocking reads and writes", rewrite=True),
                      _claim(STRONG_NEWER, "a type change rewrites the table; its exceptions include varchar to "
                                           "text, not a longer varchar", rewrite=True))),
    Operation("varchar_to_text", "ALTER COLUMN TYPE", f"ALTER TABLE {ITEMS} ALTER COLUMN code TYPE text",
              documented=AE, safe="the same, under lock_timeout (WithLockTimeout)",
              claims=(_claim(STRONG, "varchar to text is safe (no rewrite)", rewrite=False),
                      _claim(PGLS, "a type change rewrites the entire table, blocking reads and writes",
                             rewrite=True))),
    Operation("varchar_to_timestamptz", "ALTER COLUMN TYPE",
              f"ALTER TABLE {ITEMS} ALTER COLUMN created_at TYPE timestamptz USING created_at::timestamptz",
              documented=AE, safe="proj04_safe_backfill",
              claims=(_claim(STRONG, "changing a column's type rewrites the table, blocking reads and writes",
                             rewrite=True, reads="throughout", writes="throughout"),)),
    Operation("json_to_jsonb", "ALTER COLUMN TYPE",
              f"ALTER TABLE {ITEMS} ALTER COLUMN payload TYPE jsonb USING payload::jsonb", documented=AE,
              safe="proj04_safe_backfill's pattern (new jsonb column, trigger, batched copy, swap)"),
    # -- RENAME / DROP / DEFAULT ------------------------------------------------------------------------------------
    Operation("rename_column", "RENAME, DROP, DEFAULT", f"ALTER TABLE {ITEMS} RENAME COLUMN code TO sku",
              documented=AE, safe="proj02_rename_column (db_column, or expand and contract)",
              note="instant, but the release still serving fails on every query naming the old column"),
    Operation("rename_table", "RENAME, DROP, DEFAULT", f"ALTER TABLE {ITEMS} RENAME TO catalog_products",
              documented=AE, safe=f"in one transaction: the RENAME, then CREATE VIEW {ITEMS} AS SELECT * FROM "
                                  "catalog_products (expand and contract)"),
    Operation("drop_column", "RENAME, DROP, DEFAULT", f"ALTER TABLE {ITEMS} DROP COLUMN payload", documented=AE,
              safe="proj05_drop_column (drop it from Django's state first, from the database a release later)"),
    Operation("set_default", "RENAME, DROP, DEFAULT", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET DEFAULT 1",
              documented=AE, safe="proj09_alter_defaults (under lock_timeout: see the lock queue below)"),
    Operation("drop_default", "RENAME, DROP, DEFAULT", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity DROP DEFAULT",
              setup=(f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET DEFAULT 1",), documented=AE,
              safe="the same, under lock_timeout (WithLockTimeout)"),
    # -- OTHER ------------------------------------------------------------------------------------------------------
    Operation("add_exclusion_constraint", "OTHER",
              f"ALTER TABLE {ITEMS} ADD CONSTRAINT catalog_items_no_overlap EXCLUDE USING gist (during WITH &&)",
              documented=AE, safe="none in place: PostgreSQL has no NOT VALID or USING INDEX form for it"),
    Operation("enum_add_value", "OTHER", "ALTER TYPE catalog_state ADD VALUE 'archived'", documented=None,
              note="no lock on any table"),
    Operation("vacuum_full", "OTHER", f"VACUUM FULL {ITEMS}", kind="at_lock", documented=AE,
              safe="plain VACUUM (or pg_repack, an extension the lab does not have)"),
    Operation("cluster", "OTHER", f"CLUSTER {ITEMS} USING catalog_items_pkey", documented=AE,
              safe="as for VACUUM FULL"),
    Operation("update_every_row", "OTHER", f"UPDATE {ITEMS} SET quantity = quantity + 1", documented=RX,
              safe="proj06_large_backfills (committed batches)",
              note="the write probe updates a row the statement also updated"),
    Operation("delete_half_the_rows", "OTHER", f"DELETE FROM {ITEMS} WHERE id % 2 = 0", documented=RX,
              safe="proj10_large_deletes (committed batches, or a partition detached)",
              note="the write probe updates a row the statement deleted; rows it leaves alone stay writable"),
    Operation("truncate", "OTHER", f"TRUNCATE {ITEMS}", documented=AE,
              safe="the same, under lock_timeout (WithLockTimeout)",
              note="a new, empty file (a new relfilenode): nothing is copied"),
    # -- PARTITIONS -------------------------------------------------------------------------------------------------
    Operation("detach_partition", "PARTITIONS", f"ALTER TABLE {EVENTS} DETACH PARTITION {OLD_EVENTS}",
              table=EVENTS, other=OLD_EVENTS, documented=AE, documented_other=AE,
              safe="proj10_large_deletes (DETACH PARTITION ... CONCURRENTLY)"),
    Operation("detach_partition_concurrently", "PARTITIONS",
              f"ALTER TABLE {EVENTS} DETACH PARTITION {OLD_EVENTS} CONCURRENTLY", kind="concurrently",
              table=EVENTS, other=OLD_EVENTS, documented=SUE, documented_other=AE,
              note="at its wait (for the transactions that use the partitioned table, between its two "
                   "transactions) it holds no lock on either table; the PG docs: SHARE UPDATE EXCLUSIVE on both in "
                   "its first transaction, ACCESS EXCLUSIVE on the partition in its second"),
    # -- THE LOCK QUEUE ---------------------------------------------------------------------------------------------
    Operation("lock_queue", "LOCK QUEUE", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET DEFAULT 0", kind="lock_queue",
              documented=AE, safe="proj09_alter_defaults (WithLockTimeout: 500 ms, then retry)",
              note="behind a report that holds the table open: the statement waits for it, and every read and "
                   "write queues behind the statement for as long as the report runs"),
    Operation("lock_queue_with_lock_timeout", "LOCK QUEUE", f"ALTER TABLE {ITEMS} ALTER COLUMN quantity SET DEFAULT 0",
              kind="lock_queue", session=("SET lock_timeout = '500ms'",), documented=AE, fails="lock timeout",
              note="the same behind the same report, after SET lock_timeout = '500ms': it gives up after 500 ms "
                   "(then retry later), and nothing queues longer"),
)

# Where tools and folklore often say otherwise: each question is answered by the measurement, in docs/catalog.md.
FINDINGS = (
    ("Does ADD FOREIGN KEY lock the referenced table too, and what waits?", ("add_foreign_key",)),
    ("Does VALIDATE CONSTRAINT block writes?", ("validate_check", "validate_foreign_key")),
    ("Does SET NOT NULL scan the table when a validated CHECK already proves it?",
     ("set_not_null", "set_not_null_with_validated_check")),
    ("Which type changes rewrite the table?", ("varchar_to_longer_varchar", "varchar_to_text", "int_to_bigint")),
    ("REINDEX takes only SHARE on the table: does a read that never uses the rebuilt index go on?", ("reindex",)),
)

LEFT_OUT = (
    "ALTER TABLE ... SET TABLESPACE: the lab's embedded PostgreSQL has no second tablespace to move the table to "
    "(it rewrites the table under ACCESS EXCLUSIVE, like VACUUM FULL).",
)


@dataclass
class Measurement:
    name: str
    group: str
    sql: str
    kind: str
    table: str
    other: str | None
    table_rows: int
    locks: list[str] = field(default_factory=list)  # granted on the table, weakest first
    queued_locks: list[str] = field(default_factory=list)  # requested and waiting (a statement in the lock queue)
    other_locks: list[str] = field(default_factory=list)
    reads: str | None = None
    writes: str | None = None
    other_reads: str | None = None
    other_writes: str | None = None
    rewrite: bool | None = None
    rows_read: int | None = None
    rows_written: int | None = None
    scan: bool | None = None
    seconds: float | None = None
    outcome: str = "ok"
    safe: str = ""
    documented: str | None = None
    documented_other: str | None = None
    note: str = ""
    skipped: str | None = None
    stops: list[dict] = field(default_factory=list)
    claims: list[dict] = field(default_factory=list)

    @property
    def lock(self) -> str | None:
        modes = self.locks or self.queued_locks
        return max(modes, key=lock_strength) if modes else None

    @property
    def other_lock(self) -> str | None:
        return max(self.other_locks, key=lock_strength) if self.other_locks else None

    def measured(self, what: str):
        return getattr(self, what)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["lock"], data["other_lock"] = self.lock, self.other_lock
        return data


# -- the databases ----------------------------------------------------------------------------------------------

def connect(url: str, application_name: str = "catalog", autocommit: bool = True):
    """A connection to the catalog's database, its search_path the catalog's schema."""
    connection = psycopg2.connect(url, application_name=application_name, connect_timeout=10,
                                  options=f"-c search_path={SCHEMA}")
    connection.autocommit = autocommit
    return connection


def seed(url: str, rows: int) -> None:
    """The tables an operation starts from, made anew (the schema dropped and created again: cheaper than a copy of
    a template database, whose DROP DATABASE waits for a checkpoint), filled set-based inside PostgreSQL, then
    VACUUM ANALYZE. The rows are the same every time."""
    customers, events = max(1, rows // 100), max(100, rows // 10)
    statements = [
        f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE",
        f"CREATE SCHEMA {SCHEMA}",
        "CREATE TYPE catalog_state AS ENUM ('new', 'paid', 'shipped')",
        f"CREATE TABLE {CUSTOMERS} (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name text NOT NULL)",
        f"""CREATE TABLE {ITEMS} (
            id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
            customer_id bigint NOT NULL,
            quantity integer,
            code varchar(100),
            created_at varchar(40),
            payload json,
            state catalog_state,
            during tstzrange)""",
        f"""CREATE TABLE {EVENTS} (id bigint NOT NULL, created_at timestamptz NOT NULL, kind text NOT NULL,
            PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at)""",
        f"CREATE TABLE {OLD_EVENTS} PARTITION OF {EVENTS} "
        "FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2025-01-01 00:00+00')",
        f"CREATE TABLE catalog_events_2025 PARTITION OF {EVENTS} "
        "FOR VALUES FROM ('2025-01-01 00:00+00') TO ('2026-01-01 00:00+00')",
        f"INSERT INTO {CUSTOMERS} (id, name) SELECT i, 'customer ' || i FROM generate_series(1, {customers}) AS i",
        f"""INSERT INTO {ITEMS} (id, customer_id, quantity, code, created_at, payload, state, during)
            SELECT i, 1 + i % {customers}, i % 100, 'item-' || i,
                   (timestamptz '2024-01-01 00:00+00' + i * interval '1 minute')::text,
                   json_build_object('path', '/products/' || i % 5000, 'session', i % 100000),
                   (ARRAY['new', 'paid', 'shipped']::catalog_state[])[1 + i % 3],
                   tstzrange(timestamptz '2024-01-01 00:00+00' + i * interval '1 minute',
                             timestamptz '2024-01-01 00:00+00' + (i + 1) * interval '1 minute')
              FROM generate_series(1, {rows}) AS i""",
        f"SELECT setval(pg_get_serial_sequence('{ITEMS}', 'id'), {rows})",
        f"CREATE INDEX catalog_items_created_at_idx ON {ITEMS} (created_at)",
        f"""INSERT INTO {EVENTS} (id, created_at, kind)
            SELECT i, CASE WHEN i <= {events // 2} THEN timestamptz '2024-01-01 00:00+00'
                           ELSE timestamptz '2025-01-01 00:00+00' END + (i % 1000) * interval '1 minute',
                   (ARRAY['view', 'click'])[1 + i % 2]
              FROM generate_series(1, {events}) AS i""",
    ]
    connection = connect(url, "catalog-seed", autocommit=False)
    try:
        with connection.cursor() as cursor:
            for statement in statements:  # one transaction: one commit to wait for
                cursor.execute(statement)
            connection.commit()
            connection.autocommit = True
            cursor.execute(f"VACUUM ANALYZE {CUSTOMERS}, {ITEMS}, {EVENTS}")
    finally:
        connection.close()


def probe_statements(rows: int) -> dict[str, tuple[str, str]]:
    """Per table: the read and the write the probes send (one row, by its primary key, never a scan)."""
    item = max(2, rows // 4 * 2)  # an even id in the middle: a row DELETE ... WHERE id % 2 = 0 deletes
    recent, events = "timestamptz '2025-01-01 00:00+00'", max(100, rows // 10)
    return {
        ITEMS: (f"SELECT id, quantity FROM {ITEMS} WHERE id = {item}",
                f"UPDATE {ITEMS} SET quantity = quantity WHERE id = {item}"),
        CUSTOMERS: (f"SELECT id, name FROM {CUSTOMERS} WHERE id = 1",
                    f"UPDATE {CUSTOMERS} SET name = name WHERE id = 1"),
        # The partitioned table: this year's events (the old partition is pruned when the query is planned).
        EVENTS: (f"SELECT id, kind FROM {EVENTS} WHERE created_at >= {recent} AND id = {events}",
                 f"UPDATE {EVENTS} SET kind = kind WHERE created_at >= {recent} AND id = {events}"),
        OLD_EVENTS: (f"SELECT id, kind FROM {OLD_EVENTS} WHERE id = 1",
                     f"UPDATE {OLD_EVENTS} SET kind = kind WHERE id = 1"),
    }


# -- judging ----------------------------------------------------------------------------------------------------

class Probes(judgecore.Probes):
    """The read and the write of the operation's table (and of its other table), each from a connection of its own;
    a probe that waits is cancelled (judgecore.waits_on). Any other failure of a probe is a fault of the catalog."""

    def __init__(self, url: str, monitor, operation: Operation, rows: int):
        self.operation = operation
        self.failures: list[str] = []
        statements = probe_statements(rows)
        tables = [operation.table] + ([operation.other] if operation.other else [])
        new = lambda: connect(url, "catalog-probe")  # noqa: E731
        super().__init__(monitor, {table: tuple(sql_sender(new, statement, self.failures)
                                                for statement in statements[table]) for table in tables})

    def probe(self, pause: Pause, pid: int) -> None:
        super().probe(pause, pid)
        if self.failures:
            raise LabError(f"{self.operation.name}: a probe failed: {self.failures[0]}")


def _scalar(cursor, statement: str, params=None):
    cursor.execute(statement, params)
    return cursor.fetchone()[0]


def _relfilenodes(monitor, oids: list[int]) -> list[int]:
    with monitor.cursor() as cursor:
        return [_scalar(cursor, "SELECT relfilenode FROM pg_class WHERE oid = %s", [oid]) for oid in oids]


def _flushed_rows(session, monitor, oid: int, version: int) -> tuple[int, int] | None:
    """Rows of the table read and written by everyone so far, with `session`'s own statistics flushed first."""
    if version < FLUSHABLE_STATS:
        return None
    with session.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")  # flushed before the server answers the next query
        cursor.execute("SELECT 1")
    with monitor.cursor() as cursor:
        return rows_read_and_written(cursor, oid, "pg_stat_user_tables")


class Running:
    """One statement, run in a thread of its own on an autocommit connection: its duration, its error."""

    def __init__(self, connection, sql: str):
        self.connection, self.sql = connection, sql
        self.seconds: float | None = None
        self.error: psycopg2.Error | None = None
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, name="catalog operation", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        started = time.perf_counter()
        try:
            with self.connection.cursor() as cursor:
                cursor.execute(self.sql)
        except psycopg2.Error as failure:
            self.error = failure
        finally:
            self.seconds = time.perf_counter() - started
            self.finished.set()

    def join(self) -> None:
        self.thread.join(FAILSAFE_SECONDS)


class Judge:
    """Judges one operation on freshly seeded tables."""

    def __init__(self, operation: Operation, url: str, rows: int, version: int):
        self.operation, self.url, self.rows, self.version = operation, url, rows, version
        self.monitor = connect(url, "catalog-monitor")
        self.session = connect(url, "catalog-operation")
        with self.session.cursor() as cursor:
            for statement in SESSION + operation.setup + operation.session:
                cursor.execute(statement)
            self.pid = _scalar(cursor, "SELECT pg_backend_pid()")
            self.lock_timeout = _scalar(cursor, "SELECT current_setting('lock_timeout')")
        with self.monitor.cursor() as cursor:
            self.oid = _scalar(cursor, "SELECT %s::regclass::oid", [operation.table])
            self.other_oid = _scalar(cursor, "SELECT %s::regclass::oid", [operation.other]) if operation.other else None
        self.probes = Probes(url, self.monitor, operation, rows)
        self.result = Measurement(operation.name, operation.group, operation.sql, operation.kind, operation.table,
                                  operation.other, rows, safe=operation.safe, documented=operation.documented,
                                  documented_other=operation.documented_other, note=operation.note)

    def close(self) -> None:
        for connection in (self.session, self.monitor):
            try:
                connection.close()
            except psycopg2.Error:
                pass

    def run(self) -> Measurement:
        oids = [oid for oid in (self.oid, self.other_oid) if oid is not None]
        before = _relfilenodes(self.monitor, oids)
        if self.operation.kind == "transaction":
            pauses = self._in_transaction()
        else:
            pauses = self._while_waiting()
        after = _relfilenodes(self.monitor, oids)
        result = self.result
        result.rewrite = before[0] != after[0]
        if self.operation.kind != "transaction" and self.version < FLUSHABLE_STATS and result.rewrite \
                and result.outcome == "ok":
            # PostgreSQL 14 cannot flush the statement's statistics (pg_stat_force_next_flush is 15+): a new
            # relfilenode holding the table's rows means it went through every row while it held its lock.
            result.scan = True
            if self.operation.kind == "at_lock":
                for pause in pauses:
                    pause.rows_after = {self.oid: self.rows}
        table, other, rows = self.operation.table, self.operation.other, {self.oid: self.rows}
        modes = lambda name: sorted({m for p in pauses for m in p.table(name).locks}, key=lock_strength)  # noqa: E731
        result.locks = modes(table)
        result.queued_locks = sorted({m for p in pauses for m in p.table(table).queued}, key=lock_strength)
        result.reads, result.writes = verdict(pauses, table, "read", rows), verdict(pauses, table, "write", rows)
        if other:
            result.other_locks = modes(other)
            result.other_reads = verdict(pauses, other, "read", rows)
            result.other_writes = verdict(pauses, other, "write", rows)
        if result.rows_read is not None:
            result.scan = result.rows_read >= self.rows
        result.stops = [_stop(p, table, other) for p in pauses]
        return result

    def _ended(self, error: psycopg2.Error | None) -> None:
        expected = self.operation.fails
        if error is None and expected:
            raise LabError(f"{self.operation.name}: expected it to fail ({expected}), it succeeded")
        if error is not None:
            message = first_line(error)
            if not expected or expected not in message:
                raise LabError(f"{self.operation.name}: {message}")
            self.result.outcome = f"fails: {message}"

    def _in_transaction(self) -> list[Pause]:
        error = None
        with self.session.cursor() as cursor:
            cursor.execute("BEGIN")
            # The session's statistics not yet flushed (its setup's) count here too: the statement's are the difference.
            before = rows_read_and_written(cursor, self.oid)
            started = time.perf_counter()
            try:
                cursor.execute(self.operation.sql)
            except psycopg2.Error as failure:  # an aborted transaction keeps its locks until the ROLLBACK
                error = failure
            self.result.seconds = time.perf_counter() - started
            pause = Pause(self.operation.sql, 1)
            if error is None:
                after = rows_read_and_written(cursor, self.oid)
                self.result.rows_read, self.result.rows_written = after[0] - before[0], after[1] - before[1]
                pause.rows_after = {self.oid: max(self.result.rows_read, self.result.rows_written)}
            self.probes.stop(pause, self.pid)
            cursor.execute("ROLLBACK" if error else "COMMIT")
        self._ended(error)
        return [pause]

    def _while_waiting(self) -> list[Pause]:
        """Stop the statement where it waits for a transaction of ours, probe, let it go on; see the module doc."""
        kind = self.operation.kind
        held = HeldTransactions(lambda **options: connect(self.url, autocommit=False, **options), self.operation.table)
        counted = _flushed_rows(self.session, self.monitor, self.oid, self.version)
        pauses: list[Pause] = []
        try:
            held.hold("writer" if kind == "concurrently" else "report")
            for _attempt in range(RETRIES_WHEN_TIMED_OUT + 1):
                running = Running(self.session, self.operation.sql)
                pauses = self._stops(running, held)
                running.join()
                # A lock_timeout may end the wait before the probes queued: judge the next attempt.
                if kind != "lock_queue" or any(p.waited() for p in pauses):
                    break
        finally:
            held.end_all()
        self._ended(running.error)
        now = _flushed_rows(self.session, self.monitor, self.oid, self.version)
        if counted is not None and now is not None and running.error is None:
            self.result.rows_read, self.result.rows_written = now[0] - counted[0], now[1] - counted[1]
        if kind == "at_lock":
            # It queued behind our report, the probes behind it; it then held that lock for all its work.
            for pause in pauses:
                pause.waiting_for = None
                pause.rows_after = {self.oid: max(self.result.rows_read or 0, self.result.rows_written or 0)}
        return pauses

    def _stops(self, running: Running, held: HeldTransactions) -> list[Pause]:
        """The stops while the statement waits on a transaction of ours (judgecore.StopsWhileWaiting)."""
        lock_queue = self.operation.kind == "lock_queue"
        # A statement with a lock_timeout gives up while the report runs on: the report is not ended for it.
        waiting = StopsWhileWaiting(self.monitor, held, self.probes, self.pid,
                                    keep_report=lock_queue and self.lock_timeout != "0")
        statement = Pause(self.operation.sql, 1, lock_timeout=self.lock_timeout)
        failsafe = Failsafe(f"{self.operation.name}: neither finished nor waited on the catalog's transaction",
                            LabError)
        # A statement in the lock queue is judged once: the report stays until its lock_timeout ends its wait.
        return waiting.while_running(running.finished, statement, failsafe, once=lock_queue)


def _stop(pause: Pause, table: str, other: str | None) -> dict:
    """One stop as the catalog reports it (report.json's `stops`)."""
    main, second = pause.table(table), pause.tables.get(other) if other else None
    return {"statement": pause.statement, "locks": main.locks, "queued_locks": main.queued,
            "read_waited": main.read_waited, "write_waited": main.write_waited,
            "other_locks": second.locks if second else [], "other_read_waited": bool(second and second.read_waited),
            "other_write_waited": bool(second and second.write_waited), "rows_after": pause.work(),
            "waiting_for": pause.waiting_for, "phase": pause.phase, "lock_timeout": pause.lock_timeout}


def time_alone(operation: Operation, url: str) -> float:
    """The statement's duration on a fresh copy, with nothing of the judge's around it."""
    session = connect(url, "catalog-timing")
    try:
        with session.cursor() as cursor:
            for statement in SESSION + operation.setup:
                cursor.execute(statement)
            started = time.perf_counter()
            cursor.execute(operation.sql)
            return time.perf_counter() - started
    finally:
        session.close()


def _check_claims(result: Measurement, operation: Operation) -> None:
    for claim in operation.claims:
        measured = {what: result.measured(what) for what, _ in claim.expects}
        result.claims.append({"source": claim.source, "says": claim.says, "expects": dict(claim.expects),
                              "measured": measured, "agrees": measured == dict(claim.expects)})


def judge_operation(operation: Operation, url: str, rows: int, version: int) -> Measurement:
    """Judge one operation on freshly seeded tables in the database at `url`."""
    if operation.min_version > version:
        result = Measurement(operation.name, operation.group, operation.sql, operation.kind, operation.table,
                             operation.other, rows, safe=operation.safe, documented=operation.documented,
                             note=operation.note, outcome="skipped",
                             skipped=f"needs PostgreSQL {operation.min_version // 10000}+")
        return result
    seed(url, rows)
    judge = Judge(operation, url, rows, version)
    try:
        result = judge.run()
    finally:
        judge.close()
    if operation.kind != "transaction":
        result.seconds = None
        if operation.fails is None:
            seed(url, rows)
            result.seconds = time_alone(operation, url)
    _check_claims(result, operation)
    return result


def run_catalog(rows: int, database_url: str | None = None, operations: tuple[Operation, ...] = OPERATIONS,
                say=print, postgres: int | None = None) -> dict:
    """Judge every operation; the report (as JSON-ready data). `postgres`: the embedded server's major."""
    started_at = datetime.now(timezone.utc)
    with ScratchDatabases(database_url, user="the catalog", prefix="catalog", postgres=postgres) as databases:
        connection = connect(databases.admin_dsn, "catalog-version")
        try:
            with connection.cursor() as cursor:
                version = _scalar(cursor, "SELECT current_setting('server_version_num')::int")
        finally:
            connection.close()
        say(f"Catalog: {len(operations)} operations on {rows:,} rows; PostgreSQL {databases.server_version}: "
            f"{databases.description}")
        _, url = databases.create("run")
        seeding = time.perf_counter()
        seed(url, rows)
        say(f"  seeding {rows:,} rows takes {time.perf_counter() - seeding:.1f} s; "
            "it is done anew before each operation")
        results = []
        for number, operation in enumerate(operations, 1):
            result = judge_operation(operation, url, rows, version)
            results.append(result)
            say(f"  [{number:2}/{len(operations)}] {operation.name:36} {summary(result)}")
        server_version = databases.server_version
    return {
        "command": f"python -m migrationlab catalog --rows {rows}",
        "server_version": server_version,
        "server_version_num": version,
        "embedded": database_url is None,
        "rows": rows,
        "referenced_rows": max(1, rows // 100),
        "started_at": started_at.isoformat(timespec="seconds"),
        "seconds": round((datetime.now(timezone.utc) - started_at).total_seconds(), 1),
        "operations": [result.as_dict() for result in results],
        "left_out": list(LEFT_OUT),
    }


def summary(result: Measurement) -> str:
    if result.skipped:
        return f"skipped ({result.skipped})"
    lock = lock_name(result.lock) if result.lock else "no table lock"
    other = f" / {lock_name(result.other_lock)}" if result.other_lock else ""
    traffic = f"reads {result.reads}, writes {result.writes}"
    if result.other:
        traffic += f"; {result.other}: reads {result.other_reads}, writes {result.other_writes}"
    extras = [word for word, flag in (("rewrite", result.rewrite), ("scan", result.scan)) if flag]
    seconds = f"{result.seconds:.2f} s" if result.seconds is not None else "-"
    failed = " (fails)" if result.outcome.startswith("fails") else ""
    return f"{lock}{other}; {traffic}{'; ' + ', '.join(extras) if extras else ''}; {seconds}{failed}"


# -- the document -----------------------------------------------------------------------------------------------

def _mode(mode: str | None, queued: bool = False) -> str:
    if not mode:
        return "none"
    return lock_name(mode) + (" (queued)" if queued else "")


def _yes_no(value: bool | None) -> str:
    return "?" if value is None else ("yes" if value else "no")


def _scan(op: dict) -> str:
    if op["rows_read"] is None:
        return _yes_no(op["scan"])
    written = f", {op['rows_written']:,} written" if op["rows_written"] else ""
    return f"{_yes_no(op['scan'])} ({op['rows_read']:,} read{written})"


def _facts(op: dict) -> str:
    """One operation's measurement, in a sentence."""
    text = f"`{op['name']}` (`{op['sql']}`): {_mode(op['lock'])} on {op['table']}"
    if op["other"]:
        text += f", {_mode(op['other_lock'])} on {op['other']}"
    text += f"; reads {op['reads']}, writes {op['writes']}"
    if op["other"]:
        text += f"; on {op['other']}: reads {op['other_reads']}, writes {op['other_writes']}"
    text += f"; relfilenode {'changed' if op['rewrite'] else 'unchanged'}"
    if op["rows_read"] is not None:
        text += f"; {op['rows_read']:,} rows read, {op['rows_written']:,} written"
    return text + (f"; {op['seconds']:.2f} s" if op["seconds"] is not None else "")


def _traffic(verdict: str | None, other: str | None) -> str:
    return verdict if other is None else f"{verdict} · ref {other}"


def _seconds(op: dict) -> str:
    if op["seconds"] is None:
        return "-"
    return f"{op['seconds']:.2f}"


def render_markdown(report: dict) -> str:
    rows, lines = report["rows"], []
    lines += [
        "# The measured lock catalog",
        "",
        f"Generated by `{report['command']}` on PostgreSQL {report['server_version']} (server_version_num "
        f"{report['server_version_num']}{', the lab' + chr(39) + 's embedded server' if report['embedded'] else ''}),"
        f" {report['started_at']}, in {report['seconds']:.0f} s. Do not edit: run the command again."
        + (f" It ran on PostgreSQL {', '.join(v['server_version'].split()[0] for v in report['versions'])}: the "
           f"tables below are {report['server_version']}'s, every version's verdict is in "
           "[Across PostgreSQL versions](#across-postgresql-versions)." if len(report.get("versions", [])) > 1 else ""),
        "",
        "What will this ALTER do to my traffic? Every operation below ran against a freshly seeded table "
        f"(`{ITEMS}`, {rows:,} rows; `{CUSTOMERS}`, {report['referenced_rows']:,} rows, for the foreign keys; "
        f"`{EVENTS}`, two partitions, for DETACH), and PostgreSQL itself judged it:",
        "",
        "- **lock**: the modes pg_locks shows it holding on the table (and on the referenced table or partition), "
        "the strongest one here; `(queued)`: requested, waiting behind the report;",
        "- **reads / writes**: did a read and an update of one row by id, sent from other connections while the "
        "operation held its locks, wait for it (its backend among their `pg_blocking_pids()`)? "
        "`never`; `briefly`: only on work that does not grow with the table (a catalog change); `throughout`: "
        "the operation held the lock while it went through every row (or, in the lock queue, for as long as the "
        "report runs). `· ref`: the same probes on the referenced table or the partition;",
        "- **rewrite**: `pg_class.relfilenode` changed; **scan**: it read at least every row of the table "
        "(`pg_stat_xact_user_tables`; `pg_stat_user_tables` for statements that cannot run in a transaction);",
        f"- **seconds**: the statement alone at {rows:,} rows, on this machine (not measured where it fails);",
        "- **safe alternative**: the lab project that shows it, or one line of SQL; empty where the operation is "
        "itself the safe form.",
        "",
        "How each kind is judged is in `migrationlab/catalog.py` (its docstring), with the verdicts defined by "
        "`migrationlab/judgecore.py`. Parallel workers are off in the operation's session, so every row it reads "
        "shows in its own statistics.",
        "",
    ]
    groups: dict[str, list[dict]] = {}
    for op in report["operations"]:
        groups.setdefault(op["group"], []).append(op)
    for group, ops in groups.items():
        lines += [f"## {group}", "",
                  "| operation | SQL | lock (table / ref) | reads | writes | rewrite | scan | seconds "
                  "| safe alternative |",
                  "|---|---|---|---|---|---|---|---|---|"]
        notes = []
        for op in ops:
            sql = op["sql"].replace("|", "\\|")
            if op["skipped"]:
                lines.append(f"| {op['name']} | `{sql}` | skipped: {op['skipped']} | | | | | | {op['safe']} |")
                judged = [v["server_version"] for v in report.get("versions", [])
                          if any(o["name"] == op["name"] and not o["skipped"] for o in v["operations"])]
                where = f" (judged on {', '.join(judged)}: see across versions)" if judged else ""
                notes.append(f"`{op['name']}`: {op['note']}; skipped on PostgreSQL {report['server_version']}{where}")
                continue
            lock = _mode(op["lock"], queued=op["kind"] == "lock_queue")
            if op["other"]:
                lock += f" / {_mode(op['other_lock'])}"
            lines.append(
                f"| {op['name']} | `{sql}` | {lock} | {_traffic(op['reads'], op['other_reads'])} | "
                f"{_traffic(op['writes'], op['other_writes'])} | {_yes_no(op['rewrite'])} | {_scan(op)} | "
                f"{_seconds(op)} | {op['safe']} |")
            extra = [op["note"]] if op["note"] else []
            if op["outcome"] != "ok":
                extra.append(op["outcome"])
            if op["kind"] != "transaction":
                extra.append({"concurrently": "cannot run in a transaction: judged while it waited for a "
                                              "transaction of the judge's, at each phase",
                              "at_lock": "judged while it queued for its lock behind a read of the judge's (it "
                                         "cannot be held in an open transaction); the rows it then went through "
                                         "are from pg_stat_user_tables",
                              "lock_queue": "judged while it waited behind the report"}[op["kind"]])
            if extra:
                notes.append(f"`{op['name']}`: " + "; ".join(extra))
        lines.append("")
        lines += [f"- {note}" for note in notes]
        lines.append("")
    lines += _across_versions(report)
    lines += _differences(report)
    lines += ["## Left out", ""] + [f"- {item}" for item in report["left_out"]] + [""]
    lines += _closing_note(report)
    return "\n".join(lines)


# -- across versions ----------------------------------------------------------------------------------------------

def verdict_cell(op: dict) -> str:
    """One version's verdict on one operation, in a table cell."""
    if op["skipped"]:
        return "not in this version"
    lock = _mode(op["lock"], queued=op["kind"] == "lock_queue")
    text = f"{lock}; reads {op['reads']}, writes {op['writes']}"
    if op["other"]:
        text += f"; ref {_mode(op['other_lock'])}, reads {op['other_reads']}, writes {op['other_writes']}"
    text += "; rewrite" if op["rewrite"] else ""
    text += {True: "; scan", False: "", None: "; scan ?"}[op["scan"]]
    return text + ("; fails" if op["outcome"].startswith("fails") else "")


def _verdict_key(op: dict, with_scan: bool) -> tuple:
    key = (op["lock"], op["other_lock"], op["reads"], op["writes"], op["other_reads"], op["other_writes"],
           op["rewrite"], op["outcome"].startswith("fails"))
    return key + ((op["scan"],) if with_scan else ())


def version_differences(report: dict) -> dict[str, str]:
    """Operation name -> how its verdict changes across the versions that ran: `differs` (a verdict changes),
    `from N` (it exists only from PostgreSQL N on). A scan no version could count (`?`) is not a difference."""
    by_name: dict[str, list[dict]] = {}
    for version in report.get("versions", []):
        for op in version["operations"]:
            by_name.setdefault(op["name"], []).append(op)
    out = {}
    for name, ops in by_name.items():
        judged = [op for op in ops if not op["skipped"]]
        with_scan = all(op["scan"] is not None for op in judged)
        if len({_verdict_key(op, with_scan) for op in judged}) > 1:
            out[name] = "differs"
        elif judged and len(judged) < len(ops):
            out[name] = f"from {_minimum(name) // 10000}"
    return out


def _minimum(name: str) -> int:
    return next((op.min_version for op in OPERATIONS if op.name == name), 0)


def _reason(name: str) -> str:
    return next((op.versions for op in OPERATIONS if op.name == name), "") or "no reason in the release notes found"


def _across_versions(report: dict) -> list[str]:
    versions = report.get("versions", [])
    if len(versions) < 2:
        return []
    differences = version_differences(report)
    names = [op["name"] for op in versions[0]["operations"]]
    lines = ["## Across PostgreSQL versions", "",
             "The same operations on the lab's embedded PostgreSQL of each version (a cluster per major, the same "
             "seed): the verdict on each. **differs**: a verdict changes between versions; **from N**: the "
             "operation exists only from PostgreSQL N (judged where it exists). A `scan ?` is a statement run outside a "
             "transaction whose rows PostgreSQL 14 cannot report (no pg_stat_force_next_flush); a rewrite there "
             "counts as going through every row. Seconds are left out: they are this machine's, not the version's. "
             "Where each version comes from, and how to get 14 and 17: [versions.md](versions.md).",
             "",
             "| operation | " + " | ".join(v["server_version"].split()[0] for v in versions) + " | across versions |",
             "|---|" + "---|" * len(versions) + "---|"]
    cells = {v["server_version"]: {op["name"]: op for op in v["operations"]} for v in versions}
    for name in names:
        mark = differences.get(name, "")
        shown = f"**{mark}**: {_reason(name)}" if mark else "same"
        lines.append(f"| {name} | " + " | ".join(verdict_cell(cells[v["server_version"]][name]) for v in versions)
                     + f" | {shown} |")
    return lines + [""]


def _closing_note(report: dict) -> list[str]:
    versions, unavailable = report.get("versions", []), report.get("unavailable", {})
    if len(versions) < 2 and not unavailable:
        return []
    differences = version_differences(report)
    ran = ", ".join(v["server_version"] for v in versions)
    lines = ["## Closing note: the versions", "", f"Ran on PostgreSQL {ran}."]
    if differences:
        lines += ["", "Operations whose verdict is not the same on every version that ran:", ""]
        lines += [f"- `{name}` ({mark}): {_reason(name)}" for name, mark in differences.items()]
        lines += ["", "Every other operation has the same verdict on every version that ran."]
    else:
        lines += ["", "Every operation has the same verdict on every version that ran."]
    if unavailable:
        lines += ["", "Not run (the version could not be had here):", ""]
        lines += [f"- PostgreSQL {major}: {why}" for major, why in sorted(unavailable.items())]
    return lines + [""]


def _documented_mismatches(report: dict) -> list[str]:
    out = []
    for op in report["operations"]:
        if op["skipped"]:
            continue
        for measured, documented, where in ((op["lock"], op["documented"], "the table"),
                                            (op["other_lock"], op["documented_other"], "the other table")):
            if where == "the other table" and not op["other"]:
                continue
            if measured != documented:
                out.append(f"- `{op['name']}` on {where}: documented {_mode(documented)}, measured {_mode(measured)}")
    return out


def _differences(report: dict) -> list[str]:
    by_name = {op["name"]: op for op in report["operations"]}
    lines = ["## Often said otherwise: the measurement", ""]
    for question, names in FINDINGS:
        lines += [f"**{question}**", ""] + [f"- {_facts(by_name[name])}" for name in names if name in by_name] + [""]
    lines += ["## Measured against what the documentation and the linters say", "",
             "The strongest lock measured on each table against the lock level the PostgreSQL 16 documentation "
             "gives for the command (ALTER TABLE's subforms, CREATE/DROP INDEX, REINDEX, VACUUM, CLUSTER, TRUNCATE; "
             "explicit-locking.html):", ""]
    mismatches = _documented_mismatches(report)
    lines += mismatches or ["- every measured lock is the documented one."]
    lines += ["", "What squawk, strong_migrations and two other tools say (their rules and README, paraphrased), "
                  "against the measurement:", "",
              "| operation | source | says | measured | agrees |", "|---|---|---|---|---|"]
    for op in report["operations"]:
        for claim in op["claims"]:
            measured = ", ".join(f"{what} {_shown(value)}" for what, value in claim["measured"].items())
            lines.append(f"| {op['name']} | {claim['source']} | {claim['says']} | {measured} | "
                         f"{'yes' if claim['agrees'] else '**no**'} |")
    lines.append("")
    return lines


def _shown(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and value.endswith("Lock"):
        return lock_name(value)
    return str(value)


def write_markdown(report: dict, out: Path) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(render_markdown(report))
    except OSError as problem:
        raise LabError(f"cannot write {out}: {problem.strerror or problem}") from None


def run_versions(rows: int, majors: list[int], say=print, operations: tuple[Operation, ...] = OPERATIONS) -> dict:
    """The catalog on the embedded PostgreSQL of each major in turn, merged: the first major that ran (16 where it
    did) gives the document's tables, every one its column in the table across versions. A major that cannot be
    had here is listed with the reason; none at all is an error."""
    unavailable = {major: embedded_unavailable(major) for major in majors}
    unavailable = {major: why for major, why in unavailable.items() if why}
    for major, why in unavailable.items():
        say(f"PostgreSQL {major}: not run: {why}")
    reports = [run_catalog(rows, None, operations, say=say, postgres=major) for major in majors
               if major not in unavailable]
    if not reports:
        raise LabError(f"none of PostgreSQL {', '.join(map(str, majors))} can be had here: "
                       f"{next(iter(unavailable.values()))}")
    return merge(reports, unavailable)


def merge(reports: list[dict], unavailable: dict[int, str] | None = None) -> dict:
    """One report of several versions' (their `versions`, oldest first), its top level the default major's."""
    reports = sorted(reports, key=lambda report: report["server_version_num"])
    main_report = next((r for r in reports if r["server_version_num"] // 10000 == DEFAULT_MAJOR), reports[0])
    majors = ",".join(str(r["server_version_num"] // 10000) for r in reports)
    merged = dict(main_report)
    merged["command"] = f"{main_report['command']} --postgres {majors}" if len(reports) > 1 else main_report["command"]
    merged["started_at"] = reports[0]["started_at"] if len(reports) > 1 else main_report["started_at"]
    merged["seconds"] = round(sum(r["seconds"] for r in reports), 1)  # the whole command's
    merged["versions"] = [{key: r[key] for key in ("server_version", "server_version_num", "embedded", "started_at",
                                                    "seconds", "operations")} for r in reports]
    merged["unavailable"] = {str(major): why for major, why in (unavailable or {}).items()}
    return merged


def main(rows: int, database_url: str | None, as_json: bool, out: Path, say=print,
         majors: list[int | None] | None = None) -> int:
    try:  # before minutes of measuring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}."):
            pass
        if out.is_dir():
            raise IsADirectoryError(out)
    except OSError as problem:
        raise LabError(f"cannot write the catalog to {out}: {problem.strerror or 'a folder'}") from None
    majors = majors or [None]
    if len(majors) == 1:  # one server: a major that cannot be had is the error
        report = run_catalog(rows, database_url, say=say, postgres=majors[0])
    else:
        report = run_versions(rows, [postgres_major(major) for major in majors], say=say)
    write_markdown(report, out)
    say(f"catalog: {out}")
    if as_json:
        print(json.dumps(report, indent=2))
    return 0
