"""Keep two columns equal whichever of them a statement writes: the dual write of a rename by expand and contract.

    SyncColumnBothWays("largeorder", source="ref", target="reference")
    RemoveSyncColumnBothWays("largeorder", source="ref", target="reference")

While a column is renamed across releases, the old release writes the old column (`source`) and the new release
the new one (`target`), and for a while both serve at once: a deploy is never atomic, and a rollback brings the
old release back. SyncColumnWithTrigger (migrationlab/sync.py) copies source to target only; here each column
follows the other:
  - INSERT: a row that names only one of them (each release names its own) gets it in the other one too;
  - UPDATE that changes `target` (the new release, or the backfill copying source into it): source follows;
  - any other UPDATE of either (the old release): target follows source.
An UPDATE of neither column does not fire it. Both columns have the same type.

The trigger and its function are named as SyncColumnWithTrigger's (<table>_sync_<target column>), created and
dropped the same way (idempotent; SHARE ROW EXCLUSIVE to create, ACCESS EXCLUSIVE to drop: run them inside
WithLockTimeout). Django's state knows nothing of triggers: neither operation changes it.
"""

from __future__ import annotations

from migrationlab.sync import RemoveSyncTrigger, SyncColumnWithTrigger


class SyncColumnBothWays(SyncColumnWithTrigger):
    """Create the trigger that keeps `source` and `target` equal, whichever a statement writes. Reversed, drop it."""

    def describe(self):
        return f"Keep {self.model_name}.{self.source} and {self.target} equal, whichever a statement writes (a trigger)"

    def _create(self, app_label, schema_editor, state) -> None:
        names = self._names(app_label, schema_editor, state)
        schema_editor.execute(
            "CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $sync$\n"
            "BEGIN\n"
            "    IF TG_OP = 'INSERT' THEN\n"
            "        IF NEW.{target} IS NULL THEN\n"
            "            NEW.{target} := NEW.{source};\n"
            "        ELSE\n"
            "            NEW.{source} := NEW.{target};\n"
            "        END IF;\n"
            "    ELSIF NEW.{target} IS DISTINCT FROM OLD.{target} THEN\n"
            "        NEW.{source} := NEW.{target};  -- the new release (or the backfill) wrote {target}\n"
            "    ELSE\n"
            "        NEW.{target} := NEW.{source};  -- the old release wrote {source}\n"
            "    END IF;\n"
            "    RETURN NEW;\n"
            "END\n"
            "$sync$".format(**names),
            params=None,
        )
        schema_editor.execute(
            "CREATE OR REPLACE TRIGGER {name} BEFORE INSERT OR UPDATE OF {source}, {target} ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION {name}()".format(**names),
            params=None,
        )


class RemoveSyncColumnBothWays(RemoveSyncTrigger, SyncColumnBothWays):
    """Drop the trigger SyncColumnBothWays created (give it the same arguments); reversed, create it again."""

    def describe(self):
        return f"Stop keeping {self.model_name}.{self.source} and {self.target} equal (drop the trigger)"
