"""What a statement is, in the lock catalog's words (docs/catalog.md's operation keys), and the safe way to do it.

The key is read from the SQL Django sent (the judge has the statement, not the intent). Each key names the lab
project that shows the safe way and the Django operation to use; the catalog's own `safe` line says it in SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ = re.IGNORECASE | re.DOTALL


@dataclass(frozen=True)
class Fix:
    key: str  # docs/catalog.md's operation
    project: str  # the lab project that shows the safe way ("" where none does)
    use: str  # what to write instead, in Django


FIXES = {
    "create_index": Fix("create_index", "proj03_safe_backfill",
                        "AddIndexConcurrently (django.contrib.postgres.operations) in a migration with atomic = False"),
    "create_unique_index": Fix("create_unique_index_concurrently", "proj03_safe_backfill",
                               "AddIndexConcurrently of a unique index, then AddConstraint ... USING INDEX "
                               "(RunSQL), atomic = False"),
    "add_unique": Fix("add_unique", "proj03_safe_backfill",
                      "CREATE UNIQUE INDEX CONCURRENTLY (AddIndexConcurrently), then ADD CONSTRAINT ... UNIQUE USING "
                      "INDEX, in SeparateDatabaseAndState"),
    "add_foreign_key": Fix("add_foreign_key", "proj07_safe_backfill",
                           "the field with db_constraint=False, then AddConstraintNotValid + ValidateConstraint "
                           "(RunSQL for a foreign key), in SeparateDatabaseAndState"),
    "set_not_null": Fix("set_not_null", "proj01_safe_backfill",
                        "AddConstraintNotValid(CHECK col IS NOT NULL) + ValidateConstraint, then SET NOT NULL "
                        "(it uses the validated CHECK, no scan), each under WithLockTimeout"),
    "add_check": Fix("add_check", "proj01_safe_backfill", "AddConstraintNotValid, then ValidateConstraint"),
    "alter_type": Fix("int_to_bigint", "proj04_safe_backfill",
                      "a new column, a sync trigger, BackfillInBatches, then swap (expand and contract)"),
    "add_column_volatile_default": Fix("add_column_volatile_default", "proj09_alter_defaults",
                                       "the column nullable, a default for new rows, BackfillInBatches, then NOT NULL "
                                       "via a validated CHECK"),
    "update_rows": Fix("update_every_row", "proj06_large_backfills",
                       "BackfillInBatches (keyset ranges, a commit per batch), atomic = False"),
    "delete_rows": Fix("delete_half_the_rows", "proj10_large_deletes",
                       "DeleteInBatches, atomic = False; or a partition detached CONCURRENTLY"),
    "drop_index": Fix("drop_index", "proj08_drop_indexes", "RemoveIndexConcurrently, atomic = False"),
    "rename_column": Fix("rename_column", "proj02_rename_column",
                         "the release still serving during the deploy fails on the old name: keep the column and "
                         "rename the field with db_column (SeparateDatabaseAndState), or expand and contract across "
                         "releases; and take the lock under WithLockTimeout"),
    "drop_column": Fix("drop_column", "proj05_drop_column",
                       "the release still serving during the deploy fails on the missing column: remove the field "
                       "from Django's state first (SeparateDatabaseAndState), drop the column a release later; and "
                       "take the lock under WithLockTimeout"),
    "rename_table": Fix("rename_table", "",
                        "the release still serving fails on the old name: keep db_table, or put a view in the old "
                        "name's place; and take the lock under WithLockTimeout"),
}

# Statements that break the release still serving whatever they make traffic wait (their wait is brief).
BREAKS_THE_SERVING_RELEASE = ("rename_column", "drop_column", "rename_table")
# Statements with a form that takes no strong lock at all: better than the same lock under a lock_timeout.
HAS_A_CONCURRENT_FORM = ("drop_index",)

PATTERNS = (
    ("create_unique_index", r"^\s*CREATE\s+UNIQUE\s+INDEX\s+(?!CONCURRENTLY)"),
    ("create_index", r"^\s*CREATE\s+INDEX\s+(?!CONCURRENTLY)"),
    ("drop_index", r"^\s*DROP\s+INDEX\s+(?!CONCURRENTLY)"),
    ("add_foreign_key", r"ADD\s+CONSTRAINT\s+\S+\s+FOREIGN\s+KEY(?!.*NOT\s+VALID)"),
    ("add_foreign_key", r"ADD\s+COLUMN\s+.*\bREFERENCES\b"),  # Django's AddField(ForeignKey): the key inline
    ("add_unique", r"ADD\s+CONSTRAINT\s+\S+\s+UNIQUE\s*\((?!.*USING\s+INDEX)"),
    ("add_check", r"ADD\s+CONSTRAINT\s+\S+\s+CHECK\b(?!.*NOT\s+VALID)"),
    ("set_not_null", r"ALTER\s+COLUMN\s+\S+\s+SET\s+NOT\s+NULL"),
    ("alter_type", r"ALTER\s+COLUMN\s+\S+\s+TYPE\b"),
    ("rename_column", r"RENAME\s+COLUMN"),
    ("drop_column", r"DROP\s+COLUMN"),
    ("rename_table", r"^\s*ALTER\s+TABLE\s+\S+\s+RENAME\s+TO"),
    ("add_column_volatile_default", r"ADD\s+COLUMN\s+.*DEFAULT\s+.*\("),
    ("update_rows", r"^\s*UPDATE\s"),
    ("delete_rows", r"^\s*DELETE\s"),
)


def classify(statement: str) -> str | None:
    """The catalog's kind of `statement`, or None."""
    for key, pattern in PATTERNS:
        if re.search(pattern, statement, _):
            return key
    return None


def lock_queue(lock: str | None) -> Fix:
    """The lock queue's fix, for the lock the statement asks for: ACCESS EXCLUSIVE queues reads and writes behind
    it, a weaker one (SHARE, SHARE ROW EXCLUSIVE, EXCLUSIVE) the writes."""
    waiting = "every read and write" if lock in (None, "AccessExclusiveLock") else "every write"
    name = {"AccessExclusiveLock": "ACCESS EXCLUSIVE", "ExclusiveLock": "EXCLUSIVE", "ShareLock": "SHARE",
            "ShareRowExclusiveLock": "SHARE ROW EXCLUSIVE"}.get(lock or "", "ACCESS EXCLUSIVE")
    return Fix("lock_queue", "proj09_alter_defaults",
               f"WithLockTimeout (a short lock_timeout, retried with backoff): {'an' if name[0] in 'AE' else 'a'} "
               f"{name} request queued behind a long "
               f"query makes {waiting} of the table queue behind it")


def fix_for(statement: str, reads: str, writes: str, lock_timeout: str | None, behind_report: bool = False,
            lock: str | None = None, takes_lock: bool = True) -> Fix | None:
    """The safe way, for a statement that makes reads or writes wait: by what it is; for a wait in the lock queue
    behind a report, or a brief wait with no lock_timeout, the lock queue's fix (a short lock_timeout, for `lock`),
    given to the statement that takes the lock (`takes_lock`), not to those after it that hold it on; where the
    statement has a form that takes no strong lock (DROP INDEX CONCURRENTLY), that form.
    A rename or a drop gets its own fix whatever the wait: it breaks the release still serving."""
    key = classify(statement)
    no_timeout = lock_timeout in (None, "0")
    if key in BREAKS_THE_SERVING_RELEASE:
        return FIXES[key]
    if behind_report and no_timeout and "never" not in (reads, writes):
        return lock_queue(lock)
    if "throughout" in (reads, writes):
        return FIXES.get(key) if key else None
    if "briefly" in (reads, writes) and no_timeout and takes_lock:
        return FIXES[key] if key in HAS_A_CONCURRENT_FORM else lock_queue(lock)
    return None
