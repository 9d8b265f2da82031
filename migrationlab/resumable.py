"""What a migration operation has already done, read from the catalog: the heart of re-runnable migrations.

A non-atomic migration commits operation by operation. Killed half-way (or out of lock-timeout retries on its
second table), it has done part of its work, and Django still records it as not applied. Run again, Django's
operations would stop on "constraint ... already exists" or "... does not exist". `SkipIfDone` (operations.py) asks
`already_done()` before each operation and skips what the catalog shows is done, so the re-run does only the rest;
it refuses, when the migration is loaded, an operation `cannot_check()` names.

Checked (forwards; backwards is the mirror image):
    AddConstraint, AddConstraintNotValid   the constraint exists on the table (for a validating AddConstraint,
                                           one left NOT VALID stops the run, unless the migration states the
                                           repair, validate_not_valid_constraint=True: validated)
    RemoveConstraint                       it does not
    ValidateConstraint                     it is validated (pg_constraint.convalidated)
    AddIndex, AddIndexConcurrently         the index exists and is valid; an INVALID one (left by an interrupted
                                           CREATE INDEX CONCURRENTLY) stops the run, unless the migration states
                                           the repair (drop_invalid_index=True): dropped, then built again
    RemoveIndex, RemoveIndexConcurrently   it does not exist
    AddField / RemoveField                 the column exists / does not
    RenameField                            a column has the new name, and none has the old one with the field's
                                           type (in a swap of two columns the old name comes back, on the other)
    RunSQL of one ALTER TABLE t ADD        the constraint exists on the table (a FOREIGN KEY ... NOT VALID, which
      CONSTRAINT c ... statement           Django has no operation for); its reverse is yours: DROP ... IF EXISTS
Anything else (AlterField, RunSQL, ...) cannot be checked: leave it outside SkipIfDone and write it so that
running it twice is harmless, as SET DEFAULT, SET NOT NULL and DROP NOT NULL are.
"""

from __future__ import annotations

import re

from django.contrib.postgres.operations import AddConstraintNotValid, ValidateConstraint
from django.core.management.base import CommandError
from django.db import migrations
from django.db.migrations.operations.base import Operation


# RunSQL("ALTER TABLE \"t\" ADD CONSTRAINT \"c\" ..."): which table, which constraint.
ADDS_A_CONSTRAINT = re.compile(r'^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?"?(\w+)"?\s+ADD\s+CONSTRAINT\s+"?(\w+)"?\s', re.I)


def _table(app_label: str, state, model_name: str) -> str:
    return state.apps.get_model(app_label, model_name)._meta.db_table


def constraint_state(cursor, table: str, name: str) -> str:
    """'absent', 'not valid' or 'valid'."""
    cursor.execute(
        "SELECT convalidated FROM pg_constraint WHERE conname = %s AND conrelid = to_regclass(%s)",
        [name, f'"{table}"'],
    )
    row = cursor.fetchone()
    return "absent" if row is None else ("valid" if row[0] else "not valid")


def index_state(cursor, table: str, name: str) -> str:
    """'absent', 'invalid' (an interrupted concurrent build) or 'valid'."""
    cursor.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = %s AND i.indrelid = to_regclass(%s)",
        [name, f'"{table}"'],
    )
    row = cursor.fetchone()
    return "absent" if row is None else ("valid" if row[0] else "invalid")


def column_exists(cursor, table: str, column: str) -> bool:
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
        "AND NOT attisdropped AND attnum > 0)",
        [f'"{table}"', column],
    )
    return cursor.fetchone()[0]


def column_type_is(cursor, table: str, column: str, db_type: str) -> bool:
    """Whether the column exists with that type (compared as types: varchar(32) is character varying)."""
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attname = %s "
        "AND NOT attisdropped AND attnum > 0 AND atttypid = %s::regtype)",
        [f'"{table}"', column, db_type],
    )
    return cursor.fetchone()[0]


def _adds(operation: Operation, backwards: bool, adding: type, removing: type) -> bool | None:
    """True if the operation (in this direction) creates the object, False if it removes it, None if neither."""
    if isinstance(operation, adding):
        return not backwards
    if isinstance(operation, removing):
        return backwards
    return None


CHECKED = (ValidateConstraint, migrations.AddConstraint, migrations.RemoveConstraint, migrations.AddIndex,
           migrations.RemoveIndex, migrations.AddField, migrations.RemoveField, migrations.RenameField)


def cannot_check(operation: Operation) -> str | None:
    """Why already_done() cannot tell whether this (database) operation is done, or None if it can."""
    if isinstance(operation, CHECKED):
        return None
    if isinstance(operation, migrations.RunSQL):
        statement = operation.sql.strip().rstrip(";") if isinstance(operation.sql, str) else ""
        if ADDS_A_CONSTRAINT.match(statement) and ";" not in statement:
            return None
        return "a RunSQL other than one ALTER TABLE ... ADD CONSTRAINT statement"
    return f"{type(operation).__name__} leaves nothing in the catalog it could look for"


def already_done(operation: Operation, app_label: str, schema_editor, before, after, backwards: bool,
                 drop_invalid_index: bool = False, validate_not_valid_constraint: bool = False) -> str | None:
    """Why this operation has nothing left to do in this direction (one line), or None if it must run.

    `before`/`after` are the project states around the operation, in forward order. The repairs, each only if its
    flag says so (else a CommandError naming the flag): `drop_invalid_index` drops an INVALID index (then returns
    None: the index is built anew); `validate_not_valid_constraint` validates a constraint left NOT VALID.
    """
    with schema_editor.connection.cursor() as cursor:
        if isinstance(operation, ValidateConstraint):
            if backwards:
                return "nothing to undo"
            table = _table(app_label, after, operation.model_name)
            if constraint_state(cursor, table, operation.name) == "valid":
                return f"{operation.name} on {table} is already validated"
            return None

        adds = _adds(operation, backwards, migrations.AddConstraint, migrations.RemoveConstraint)
        if adds is not None:
            name = operation.constraint.name if isinstance(operation, migrations.AddConstraint) else operation.name
            table = _table(app_label, before, operation.model_name)
            present = constraint_state(cursor, table, name)
            if adds and present == "not valid" and not isinstance(operation, AddConstraintNotValid):
                if not validate_not_valid_constraint:
                    raise CommandError(f"{name} exists NOT VALID on {table} (left by an earlier run?): validate it, "
                                       f"or state the repair, SkipIfDone(..., validate_not_valid_constraint=True)")
                _validate(schema_editor, table, name)
                return f"{name} was left NOT VALID on {table} by an earlier run: validated it"
            if adds and present != "absent":
                return f"{name} already exists on {table}"
            if not adds and present == "absent":
                return f"{name} is already gone from {table}"
            return None

        adds = _adds(operation, backwards, migrations.AddIndex, migrations.RemoveIndex)
        if adds is not None:
            name = operation.index.name if isinstance(operation, migrations.AddIndex) else operation.name
            table = _table(app_label, before, operation.model_name)
            present = index_state(cursor, table, name)
            if adds and present == "valid":
                return f"index {name} already exists on {table} and is valid"
            if adds and present == "invalid":
                if not drop_invalid_index:
                    raise CommandError(f"index {name} on {table} is INVALID (an interrupted CREATE INDEX "
                                       f"CONCURRENTLY): drop it, or state the repair, "
                                       f"SkipIfDone(..., drop_invalid_index=True)")
                _drop_invalid_index(schema_editor, name)
                return None
            if not adds and present == "absent":
                return f"index {name} is already gone from {table}"
            return None

        adds = _adds(operation, backwards, migrations.AddField, migrations.RemoveField)
        if adds is not None:
            model_state = after if isinstance(operation, migrations.AddField) else before
            model = model_state.apps.get_model(app_label, operation.model_name)
            column = model._meta.get_field(operation.name).column
            present = column_exists(cursor, model._meta.db_table, column)
            if adds and present:
                return f"column {column} already exists on {model._meta.db_table}"
            if not adds and not present:
                return f"column {column} is already gone from {model._meta.db_table}"
            return None

        if isinstance(operation, migrations.RenameField):
            return _renamed(operation, app_label, schema_editor, cursor, before, after, backwards)

        if isinstance(operation, migrations.RunSQL) and not backwards:
            return _constraint_added_by_sql(operation, cursor)
    return None


def _constraint_added_by_sql(operation: migrations.RunSQL, cursor) -> str | None:
    """A RunSQL that is one `ALTER TABLE t ADD CONSTRAINT c ...` statement is done when c exists on t."""
    if cannot_check(operation):
        return None
    table, name = ADDS_A_CONSTRAINT.match(operation.sql.strip()).groups()
    if constraint_state(cursor, table, name) == "absent":
        return None
    return f"{name} already exists on {table}"


def _renamed(operation, app_label, schema_editor, cursor, before, after, backwards) -> str | None:
    """A rename is done when its new column name exists and the old name is gone, or is now another column's
    (of another type): after a swap (a -> a_old, b -> a) the name `a` is back, on the column that was b."""
    (old_state, old_name), (new_state, new_name) = (before, operation.old_name), (after, operation.new_name)
    if backwards:
        (old_state, old_name), (new_state, new_name) = (new_state, new_name), (old_state, old_name)
    model = new_state.apps.get_model(app_label, operation.model_name)
    table, field = model._meta.db_table, model._meta.get_field(new_name)
    old_column = old_state.apps.get_model(app_label, operation.model_name)._meta.get_field(old_name).column
    if not column_exists(cursor, table, field.column):
        return None
    if column_type_is(cursor, table, old_column, field.db_type(schema_editor.connection)):
        return None  # both names there, the old one still of this type: let Django's rename fail and say why
    return f"column {old_column} of {table} is already renamed to {field.column}"


def _validate(schema_editor, table: str, name: str) -> None:
    """A validating AddConstraint whose constraint an earlier run left NOT VALID: validate it instead."""
    schema_editor.execute(
        f"ALTER TABLE {schema_editor.quote_name(table)} VALIDATE CONSTRAINT {schema_editor.quote_name(name)}"
    )


def _drop_invalid_index(schema_editor, name: str) -> None:
    """An INVALID index is useless to reads, yet every write still maintains it: drop it before building again.

    Concurrently when we may (outside a transaction), so that dropping it blocks no one.
    """
    concurrently = "" if schema_editor.connection.in_atomic_block else " CONCURRENTLY"
    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {schema_editor.quote_name(name)}")
