"""Set-based seeding inside PostgreSQL: `INSERT ... SELECT ... FROM generate_series`, never Django objects.

The way pg_restore loads a table: in one transaction, empty it (TRUNCATE; a server with wal_level=minimal then
skips WAL for the load), drop its indexes, insert in chunks (progress between chunks), rebuild the indexes, commit; then
VACUUM ANALYZE so the first migration neither sets hint bits on every page nor plans with empty statistics.
Column values are SQL expressions of the row number `i`, from the project's scenario.toml ([seed]).
`append` inserts the rows an application goes on writing after that (scenario.toml's [append]: an event log's new
events), with ids from the table's own default, in the table as it is then (a partitioned one included).
A project whose large table refers to another one (a foreign key lesson) has that table seeded first, with
[referenced_seed], so every row of the large table can point at an existing one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from psycopg2 import sql

SMALL_TABLE_ROWS = 10
CHUNK_ROWS = 1_000_000


@dataclass
class SeedResult:
    large_rows: int
    small_rows: int
    seconds: float
    rebuilt_indexes: int
    referenced_rows: int = 0


def _referencing(cursor, table: str) -> list[tuple[str, str, str]]:
    """The foreign keys of other tables that point at `table`: (their table, constraint name, definition)."""
    cursor.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE contype = 'f' AND confrelid = %(table)s::regclass AND conrelid <> %(table)s::regclass "
        "ORDER BY conrelid::regclass::text, conname",
        {"table": table},
    )
    return cursor.fetchall()


def _index_plan(cursor, table: str) -> tuple[list[sql.Composable], list[sql.Composable]]:
    """Statements that drop the table's indexes, and those that rebuild them as they were.

    Another table's foreign key needs the index it points at: it is dropped first and added back last (it checks the
    rows of its table, which the seed has emptied: nothing to check). Returns two empty lists when the indexes cannot
    be dropped safely (the table's own foreign key points at itself, or a constraint other than a primary key /
    unique owns one): then the load keeps them.
    """
    referencing = _referencing(cursor, table)
    cursor.execute("SELECT count(*) FROM pg_constraint "
                   "WHERE confrelid = %(t)s::regclass AND conrelid = %(t)s::regclass", {"t": table})
    if cursor.fetchone()[0]:
        return [], []
    cursor.execute(
        """
        SELECT con.conname, con.contype, pg_get_constraintdef(con.oid), NULL
          FROM pg_constraint con
         WHERE con.conrelid = %(table)s::regclass AND con.conindid <> 0 AND con.contype IN ('p', 'u', 'x')
        UNION ALL
        SELECT idx.indexrelid::regclass::text, NULL, NULL, pg_get_indexdef(idx.indexrelid)
          FROM pg_index idx
         WHERE idx.indrelid = %(table)s::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = idx.indexrelid)
           AND idx.indisvalid
        """,
        {"table": table},
    )
    drops, rebuilds = [], []
    for other, name, constraint_def in referencing:
        drops.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.SQL(other), sql.Identifier(name)))
    for name, contype, constraint_def, index_def in cursor.fetchall():
        if contype == "x":
            return [], []
        if contype:
            drops.append(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(sql.Identifier(table), sql.Identifier(name)))
            rebuilds.append(
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.Identifier(table), sql.Identifier(name))
                + sql.SQL(constraint_def)
            )
        else:
            drops.append(sql.SQL("DROP INDEX {}").format(sql.SQL(name)))
            rebuilds.append(sql.SQL(index_def))
    for other, name, constraint_def in referencing:
        rebuilds.append(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} ").format(sql.SQL(other), sql.Identifier(name))
                        + sql.SQL(constraint_def))
    return drops, rebuilds


def _insert(table: str, columns: dict[str, str], first: int, last: int, ids: bool = True) -> sql.Composed:
    """INSERT ... SELECT the `columns` expressions of i for i from first to last; the id is i, or (ids=False) the
    table's default."""
    given = {"id": "i", **columns} if ids else columns
    names = [sql.Identifier(name) for name in given]
    values = [sql.SQL(expression) for expression in given.values()]
    return sql.SQL("INSERT INTO {table} ({names}) SELECT {values} FROM generate_series({first}, {last}) AS i").format(
        table=sql.Identifier(table),
        names=sql.SQL(", ").join(names),
        values=sql.SQL(", ").join(values),
        first=sql.Literal(first),
        last=sql.Literal(last),
    )


def _reset_id_sequence(cursor, table: str) -> None:
    cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [table])
    (sequence,) = cursor.fetchone()
    if sequence:
        cursor.execute(
            sql.SQL("SELECT setval(%s, COALESCE((SELECT max(id) FROM {}), 0) + 1, false)").format(sql.Identifier(table)),
            [sequence],
        )


def seed(
    connection,
    *,
    large_table: str,
    small_table: str,
    columns: dict[str, str],
    large_rows: int,
    progress: Callable[[str], None] = lambda line: None,
    referenced_table: str | None = None,
    referenced_columns: dict[str, str] | None = None,
    referenced_rows: int = 0,
) -> SeedResult:
    """Replace the rows of both tables: `large_rows` in the large one, 10 in the small one; and first, if given,
    `referenced_rows` in the table they refer to.

    `connection` is a psycopg2 connection (Django's `connection.connection` works); it is committed.
    """
    if large_rows < 0 or referenced_rows < 0:
        raise ValueError("the row count cannot be negative")
    started = time.monotonic()
    tables = [large_table, small_table, *([referenced_table] if referenced_table else [])]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL max_parallel_maintenance_workers = 2")
        # Tables whose rows point at the large table's (proj10's notes) are emptied with it: their rows would point
        # at rows the seed replaces.
        tables += [other for other, _, _ in _referencing(cursor, large_table) if other not in tables]
        # One TRUNCATE for all: a table a foreign key refers to can only be emptied with the tables referring to it.
        cursor.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY").format(sql.SQL(", ").join(map(sql.Identifier, tables)))
        )
        if referenced_table:
            cursor.execute(_insert(referenced_table, referenced_columns or {}, 1, referenced_rows))
            _reset_id_sequence(cursor, referenced_table)
            progress(f"  {referenced_table}: {referenced_rows:,} rows, {time.monotonic() - started:.1f} s")
        cursor.execute(_insert(small_table, columns, 1, SMALL_TABLE_ROWS))
        _reset_id_sequence(cursor, small_table)
        drops, rebuilds = _index_plan(cursor, large_table)
        for statement in drops:
            cursor.execute(statement)
        for first in range(1, large_rows + 1, CHUNK_ROWS):
            last = min(first + CHUNK_ROWS - 1, large_rows)
            cursor.execute(_insert(large_table, columns, first, last))
            progress(
                f"  {large_table}: {last:,} / {large_rows:,} rows ({100 * last // large_rows}%), "
                f"{time.monotonic() - started:.1f} s"
            )
        if rebuilds:
            progress(f"  {large_table}: rebuilding {len(rebuilds)} index(es), {time.monotonic() - started:.1f} s")
        for statement in rebuilds:
            cursor.execute(statement)
        _reset_id_sequence(cursor, large_table)
    connection.commit()
    progress(f"  {large_table}: committed; VACUUM ANALYZE, {time.monotonic() - started:.1f} s")
    autocommit = connection.autocommit
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            for table in (*tables[2:], small_table, large_table):
                cursor.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(table)))
    finally:
        connection.autocommit = autocommit
    return SeedResult(large_rows, SMALL_TABLE_ROWS, time.monotonic() - started, len(rebuilds), referenced_rows)


def append(connection, *, table: str, columns: dict[str, str], rows: int,
           progress: Callable[[str], None] = lambda line: None) -> float:
    """Insert `rows` new rows into `table` (i = 1..rows in the `columns` expressions; ids from the table's default),
    committed in chunks of CHUNK_ROWS, as an application's writes would arrive: nothing is emptied, no index is
    dropped. Returns the seconds it took. `connection` is a psycopg2 connection; it is committed."""
    if rows < 0:
        raise ValueError("the row count cannot be negative")
    started = time.monotonic()
    with connection.cursor() as cursor:
        for first in range(1, rows + 1, CHUNK_ROWS):
            last = min(first + CHUNK_ROWS - 1, rows)
            cursor.execute(_insert(table, columns, first, last, ids=False))
            connection.commit()
            progress(f"  {table}: {last:,} / {rows:,} new rows, {time.monotonic() - started:.1f} s")
    return time.monotonic() - started
