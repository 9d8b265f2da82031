"""Keep a new column in step with an old one, by a trigger: the dual write of an expand-and-contract change.

    SyncColumnWithTrigger("largerecord", source="created_at", target="created_at_new",
                          expression='NEW."created_at"::timestamp with time zone')
    RemoveSyncTrigger("largerecord", source="created_at", target="created_at_new", expression=...)

Installed before the batched copy of the existing rows (WHERE target IS NULL), the trigger keeps this true at
every commit: a row's `target` is either NULL (the copy has not reached it) or `expression` of its current
`source`. So nothing a writer does during the copy can leave a stale value behind:
  - INSERT: `target` is set at once;
  - UPDATE that sets `source` on a row already copied: `target` is set again;
  - UPDATE that sets `source` on a row not copied yet: `target` stays NULL, and the copy reads the row as it is
    when it gets there (if it holds the row at that moment, the writer waits for the batch, and the trigger
    then sees the copied row and sets `target` from the writer's value).
An UPDATE that does not set `source` (the copy's own `SET target = ...`) does not run the function.
NULL in `target` thus means "not copied yet": the expression must give a value for every row, as a target that is
made NOT NULL afterwards needs anyway. (An expression that gives NULL for some rows would let an update of such a
row, after the copy passed it, go unconverted.)

One plpgsql function and one BEFORE INSERT OR UPDATE OF <source> trigger per table, both named
<table>_sync_<target column>. Creating the trigger takes SHARE ROW EXCLUSIVE on the table (writes wait, reads go
on), dropping it ACCESS EXCLUSIVE: run both inside WithLockTimeout. Both are idempotent, so a migration killed
half-way runs again: CREATE OR REPLACE FUNCTION, CREATE OR REPLACE TRIGGER (PostgreSQL 14 and later), DROP ... IF
EXISTS. Django's state knows nothing of triggers: neither operation changes it.

Drop the trigger in the same transaction that renames either column: the trigger follows the renamed column, but
the function names the columns by their old names, so the next write would fail.
"""

from __future__ import annotations

from django.db.migrations.operations.base import Operation


class SyncColumnWithTrigger(Operation):
    """Create the trigger that sets `target` from `expression` (default: NEW.<source> cast to target's type).

    `expression` is PL/pgSQL evaluated for the row being written (NEW), in the writing session: a cast that depends
    on the session (a timestamp without a zone read in its TimeZone) gives what the same cast gives in the
    application's own UPDATE. Reversed, it drops the trigger and its function.
    """

    reversible = True
    reduces_to_sql = True  # sqlmigrate shows the function and the trigger

    def __init__(self, model_name: str, source: str, target: str, expression: str | None = None):
        self.model_name = model_name
        self.source = source
        self.target = target
        self.expression = expression

    def deconstruct(self):
        kwargs = {"model_name": self.model_name, "source": self.source, "target": self.target}
        if self.expression is not None:
            kwargs["expression"] = self.expression
        return type(self).__qualname__, [], kwargs

    def state_forwards(self, app_label, state):
        pass

    def describe(self):
        return (f"Keep {self.model_name}.{self.target} in step with {self.source} "
                f"(a BEFORE INSERT OR UPDATE OF {self.source} trigger)")

    @property
    def migration_name_fragment(self):
        return f"sync_{self.model_name.lower()}_{self.target.lower()}"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._create(app_label, schema_editor, from_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._drop(app_label, schema_editor, to_state)

    # -- the SQL ------------------------------------------------------------------------------------------------

    def _names(self, app_label, schema_editor, state) -> dict[str, str]:
        model = state.apps.get_model(app_label, self.model_name)
        source = model._meta.get_field(self.source)
        target = model._meta.get_field(self.target)
        quote = schema_editor.quote_name
        table = model._meta.db_table
        expression = self.expression or f"NEW.{quote(source.column)}::{target.db_type(schema_editor.connection)}"
        return {
            "table": quote(table),
            "name": quote(f"{table}_sync_{target.column}"),
            "source": quote(source.column),
            "target": quote(target.column),
            "expression": expression,
        }

    def _create(self, app_label, schema_editor, state) -> None:
        names = self._names(app_label, schema_editor, state)
        # params=None: the statements go as written (no %-formatting of the expression).
        schema_editor.execute(
            "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $sync$\n"
            "BEGIN\n"
            "    IF TG_OP = 'UPDATE' AND OLD.{target} IS NULL THEN\n"
            "        RETURN NEW;  -- not copied yet: the copy will read the row as it is then\n"
            "    END IF;\n"
            "    NEW.{target} := {expression};\n"
            "    RETURN NEW;\n"
            "END\n"
            "$sync$".format(**names),
            params=None,
        )
        schema_editor.execute(
            "CREATE OR REPLACE TRIGGER {name} BEFORE INSERT OR UPDATE OF {source} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION {name}()".format(**names),
            params=None,
        )

    def _drop(self, app_label, schema_editor, state) -> None:
        names = self._names(app_label, schema_editor, state)
        schema_editor.execute("DROP TRIGGER IF EXISTS {name} ON {table}".format(**names), params=None)
        schema_editor.execute("DROP FUNCTION IF EXISTS {name}()".format(**names), params=None)


class RemoveSyncTrigger(SyncColumnWithTrigger):
    """Drop the trigger (and its function) that SyncColumnWithTrigger created; reversed, create it again.

    Give it the arguments the SyncColumnWithTrigger had: they name the trigger, and its reverse needs them.
    """

    def describe(self):
        return f"Stop keeping {self.model_name}.{self.target} in step with {self.source} (drop the trigger)"

    @property
    def migration_name_fragment(self):
        return f"remove_sync_{self.model_name.lower()}_{self.target.lower()}"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        self._drop(app_label, schema_editor, from_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        self._create(app_label, schema_editor, to_state)
