"""Seed any Django model's table, set-based inside PostgreSQL, from the historical model at a point of the graph.

One `INSERT ... SELECT <an SQL expression of n per column> FROM generate_series(...) AS n` per table, as the lab's
own seeder does (migrationlab/seeding.py), never Django objects: 100,000 rows take seconds. A nullable column is
NULL in every other row (a backfill has rows to fill, a copy has values to copy), unless the judged migration makes
it NOT NULL with nothing to fill it (production's rows must hold values then). Each value satisfies what the
model says of its column: NOT NULL, max_length, unique (and unique_together / UniqueConstraint
fields: then the value carries n), choices (cycled), decimal digits; a foreign key points at an existing row of its
table, which is seeded first. A column the seeder cannot fill is named, with what it did instead: NULL where the
column allows it, the database default where it has one, else the table is left as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

EPOCH = "timestamptz '2024-01-01 00:00:00+00'"


@dataclass
class SeedPlan:
    """What seeding one table will do: its columns and their SQL, the tables its foreign keys join."""

    table: str
    columns: list[str] = field(default_factory=list)
    expressions: list[str] = field(default_factory=list)
    # (alias, referenced table, how: "one" = a row each (one to one, or unique alone), "combined" = part of a unique
    # set with other columns (the combinations must differ), "any")
    joins: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    impossible: str | None = None  # why the table cannot be seeded (then it is left as it is)
    pk_column: str | None = None


def _literal(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _choices(field_) -> list:
    values = []
    for value, label in field_.flatchoices:
        if value not in (None, ""):
            values.append(value)
    return values


def unique_columns(model) -> set[str]:
    """The fields whose values must be unique, alone or with others (then each one carries n: simplest)."""
    names = {f.name for f in model._meta.concrete_fields if f.unique}
    for together in model._meta.unique_together:
        names.update(together)
    for constraint in model._meta.constraints:
        fields = getattr(constraint, "fields", ()) or ()
        if type(constraint).__name__ == "UniqueConstraint":
            names.update(fields)
    return names


def field_expression(field_, unique: bool, n: str = "n") -> tuple[str | None, str | None]:
    """(SQL expression of n, note) for one concrete field; (None, note) to leave the column to the database."""
    kind = field_.get_internal_type()
    choices = _choices(field_) if field_.choices else []
    if choices and not unique:
        array = ", ".join(_literal(c) for c in choices)
        return f"(ARRAY[{array}])[1 + {n} % {len(choices)}]", None
    if choices and unique:
        note = f"{field_.name}: unique with choices; filled with distinct values that are not among its choices"
    else:
        note = None
    if kind in ("AutoField", "BigAutoField", "SmallAutoField"):
        return n, note
    if kind in ("IntegerField", "BigIntegerField", "PositiveIntegerField", "PositiveBigIntegerField"):
        return (n if unique else f"({n} % 1000)"), note
    if kind in ("SmallIntegerField", "PositiveSmallIntegerField"):
        if unique:
            return None, f"{field_.name}: a unique smallint cannot hold one value per row; left to the database"
        return f"({n} % 1000)", note
    if kind == "BooleanField" or kind == "NullBooleanField":
        return f"({n} % 2 = 0)", note
    if kind in ("CharField", "SlugField", "EmailField", "URLField", "FileField", "ImageField", "FilePathField"):
        max_length = field_.max_length or 255
        if kind == "EmailField":
            text = f"'user' || {n} || '@example.com'"
        elif kind == "URLField":
            text = f"'https://example.com/' || {n}"
        elif kind in ("FileField", "ImageField", "FilePathField"):
            text = f"'files/' || {n}"
        else:
            text = (f"'{field_.name[:8]}-' || {n}" if unique or max_length >= 16 else f"{n}::text")
        if unique and max_length < 12:
            text = f"{n}::text"
            note = f"{field_.name}: max_length {max_length}: unique values as plain numbers (up to 10^{max_length})"
        return f"left({text}, {max_length})", note
    if kind == "TextField":
        return f"'{field_.name[:16]} ' || {n}", note
    if kind == "DateTimeField":
        return f"{EPOCH} + {n} * interval '1 second'", note
    if kind == "DateField":
        return (f"date '2000-01-01' + ({n})::int" if unique else f"date '2000-01-01' + ({n} % 10000)::int"), note
    if kind == "TimeField":
        return f"time '00:00' + ({n} % 86400) * interval '1 second'", note
    if kind == "DurationField":
        return f"{n} * interval '1 second'", note
    if kind == "DecimalField":
        digits = (field_.max_digits or 10) - (field_.decimal_places or 0)
        if digits <= 0:
            return "0", note
        return f"({n} % {10 ** min(digits, 15)})::numeric", note
    if kind == "FloatField":
        return f"({n} * 0.5)::float8", note
    if kind == "UUIDField":
        return f"md5({n}::text)::uuid", note
    if kind == "JSONField":
        return f"jsonb_build_object('n', {n})", note
    if kind == "BinaryField":
        return f"decode(md5({n}::text), 'hex')", note
    if kind in ("GenericIPAddressField", "IPAddressField"):
        return f"('10.0.0.0'::inet + {n})", note
    if kind == "ArrayField":
        inner, inner_note = field_expression(field_.base_field, unique, n)
        if inner is None:
            return None, inner_note
        return f"ARRAY[{inner}]", inner_note
    return None, f"{field_.name}: cannot fill a {kind}"


TEXT_KINDS = ("CharField", "TextField", "SlugField")


def text_as(field_, later, n: str = "n") -> tuple[str | None, str | None]:
    """A text column's values in the form they will take: the type a later migration gives the column (`later`, the
    field of the same column in the project's newest state), else what its name says (an email, a timestamp).
    A data migration that parses the text, or a type change with USING, then works on it as it would in production.
    """
    if later is not None and later.get_internal_type() not in TEXT_KINDS + ("ForeignKey", "OneToOneField"):
        expression, _ = field_expression(later, False, n)
        if expression is not None:
            return f"({expression})::text", f"{field_.name}: text in the form of the {later.get_internal_type()} a " \
                                            "later migration makes it"
    name = field_.name.lower()
    if "email" in name:
        return f"'user' || {n} || '@example.com'", None
    if name.endswith("_at") or name.endswith("date") or name.endswith("_on") or name.endswith("time"):
        return f"({EPOCH} + {n} * interval '1 second')::text", f"{field_.name}: a timestamp as text (its name)"
    return None, None


def has_db_default(field_) -> bool:
    """The field has a database default (Django 5's db_default): the database fills an omitted column."""
    from django.db.models.fields import NOT_PROVIDED

    return getattr(field_, "db_default", NOT_PROVIDED) is not NOT_PROVIDED


def plan_for(model, becomes_fk: dict[str, str] | None = None, later: dict[str, object] | None = None,
             later_unique: set[str] = frozenset(), filled: set[str] = frozenset()) -> SeedPlan:
    """How to seed `model`'s table. `becomes_fk`: plain columns filled as foreign keys to a table (column -> table),
    because a later migration makes them foreign keys. `later`: column -> its field in the project's newest state;
    `later_unique`: columns unique there (alone or with others): a later migration's unique index then builds.
    `filled`: nullable columns given a value in every row (the migration makes them NOT NULL with nothing to fill
    them: production's rows must have values)."""
    meta = model._meta
    plan = SeedPlan(meta.db_table, pk_column=meta.pk.column if meta.pk else None)
    uniques = unique_columns(model) | {f.name for f in meta.concrete_fields if f.column in later_unique}
    for index, field_ in enumerate(meta.concrete_fields):
        if getattr(field_, "generated", False):
            continue  # GeneratedField: the database computes it
        unique = field_.name in uniques or field_.primary_key
        referenced = (becomes_fk or {}).get(field_.column)
        if field_.is_relation and (field_.many_to_one or field_.one_to_one):
            referenced = field_.related_model._meta.db_table
        if referenced:
            alias = f"r{index}"
            how = "one" if field_.one_to_one or field_.unique else ("combined" if unique else "any")
            plan.joins.append((alias, referenced, how))
            plan.columns.append(field_.column)
            plan.expressions.append(f"{alias}.id")
            continue
        expression, note = field_expression(field_, unique)
        if field_.get_internal_type() in TEXT_KINDS and not unique and not field_.choices:
            shaped, shaped_note = text_as(field_, (later or {}).get(field_.column))
            if shaped is not None:
                limit = field_.max_length
                expression, note = (f"left({shaped}, {limit})" if limit else shaped), shaped_note
        if expression is None:
            if field_.null:
                plan.notes.append(f"{note}; NULL instead")
                continue
            if has_db_default(field_):
                plan.notes.append(f"{note}; its database default instead")
                continue
            plan.impossible = f"{note}, and the column is NOT NULL without a database default"
            return plan
        if note:
            plan.notes.append(note)
        if field_.null and field_.column in filled:
            plan.notes.append(f"{field_.column}: a value in every row, no NULL (the migration makes it NOT NULL "
                              "with nothing to fill it: production's rows must hold values)")
        elif field_.null and not field_.primary_key:
            # Every other row NULL: a backfill has rows to fill, a copy has values to copy. Said explicitly: a
            # database default would fill an omitted column.
            expression = f"CASE WHEN n % 2 = 0 THEN NULL ELSE {expression} END"
        plan.columns.append(field_.column)
        plan.expressions.append(expression)
    return plan


def seed_table(cursor, plan: SeedPlan, rows: int) -> int:
    """Top the table up to `rows` rows (set-based). Returns how many rows were inserted."""
    table = sql.Identifier(plan.table)
    cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
    have = cursor.fetchone()[0]
    if have >= rows or plan.impossible:
        return 0
    base = 0
    if plan.pk_column:
        cursor.execute(sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(plan.pk_column), table))
        top = cursor.fetchone()[0]
        base = top if isinstance(top, int) else have
    joins = []
    radix = "1"  # the product of the earlier combined columns' row counts: their combinations differ (mixed radix)
    for alias, referenced, how in plan.joins:
        # The referenced table's rows, numbered: the n-th row of this table points at row 1 + n % M of it.
        numbered = f"judge_rows_{referenced}"[:63]
        cursor.execute(sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} AS SELECT row_number() OVER (ORDER BY {pk}) AS rn, "
                               "{pk} AS id FROM {}").format(
            sql.Identifier(numbered), sql.Identifier(referenced),
            pk=sql.Identifier(_pk_of(cursor, referenced))))
        cursor.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (rn)").format(
            sql.Identifier(numbered + "_rn"), sql.Identifier(numbered)))
        cursor.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(numbered)))
        available = cursor.fetchone()[0]
        if not available:
            raise SeedError(f"{plan.table}: its foreign key needs rows in {referenced}, which has none")
        if how == "one":
            join_on = f"n - {base}"
        elif how == "combined":
            join_on = f"1 + ((n - 1) / ({radix})) % {available}"
            radix = f"{radix} * {available}"
        else:
            join_on = f"1 + (n - 1) % {available}"
        joins.append(sql.SQL("JOIN {} AS {} ON {}.rn = ").format(
            sql.Identifier(numbered), sql.Identifier(alias), sql.Identifier(alias)) + sql.SQL(join_on))
    statement = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM generate_series({}, {}) AS n {}").format(
        table,
        sql.SQL(", ").join(sql.Identifier(c) for c in plan.columns),
        sql.SQL(", ").join(sql.SQL(e) for e in plan.expressions),
        sql.Literal(base + 1), sql.Literal(base + rows - have),
        sql.SQL(" ").join(joins),
    )
    cursor.execute(statement)
    inserted = cursor.rowcount
    if plan.pk_column:
        cursor.execute("SELECT pg_get_serial_sequence(%s, %s)", [f'"{plan.table}"', plan.pk_column])
        sequence = cursor.fetchone()[0]
        if sequence:
            cursor.execute(sql.SQL("SELECT setval(%s, (SELECT max({}) FROM {}))").format(
                sql.Identifier(plan.pk_column), table), [sequence])
    for alias, referenced, _ in plan.joins:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(f"judge_rows_{referenced}"[:63])))
    return inserted


def _pk_of(cursor, table: str) -> str:
    cursor.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                   "AND a.attnum = i.indkey[0] WHERE i.indrelid = %s::regclass AND i.indisprimary", [f'"{table}"'])
    row = cursor.fetchone()
    if not row:
        raise SeedError(f"{table} has no primary key for a foreign key to point at")
    return row[0]


class SeedError(Exception):
    """A table that could not be seeded: said in one line, and the judge goes on."""
