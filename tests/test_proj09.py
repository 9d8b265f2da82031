"""proj09_alter_defaults: what the lesson proves beyond its lock claims (those are in scenario.toml, judged by
tests/test_lessons.py): which defaults rewrite the table, and which give every row a value of its own.

A table rewrite shows in the catalog: PostgreSQL writes the table anew into another file, so
pg_relation_filenode() changes. A catalog-only change keeps the file.
"""

import re

import psycopg2
import pytest

from migrationlab.scenarios import get_project
from tests.conftest import ROWS, manage, query
from tests.test_resumable import migrate_reporting

NAME = "proj09_alter_defaults"
VOLATILE_ADD_COLUMN = "0005_add_public_id_random_db_default"
TRAP = "0006_add_tracking_id_python_default"
FOR_NEW_ROWS = "0007_add_external_id_for_new_rows"
BACKFILL = "0008_backfill_external_id_batched"


def table_file(database_url: str) -> tuple[int, int]:
    """The files of the table and of its primary key index (a rewrite writes both anew)."""
    return query(database_url, "SELECT pg_relation_filenode('large_order'), "
                               "pg_relation_filenode('large_order_pkey')")[0]


def column(database_url: str, name: str) -> tuple:
    """(is_nullable, column_default) of a large_order column."""
    return query(database_url, "SELECT is_nullable, column_default FROM information_schema.columns "
                               "WHERE table_name = 'large_order' AND column_name = %s", [name])[0]


def test_only_the_volatile_add_column_rewrites_the_table(seeded):
    """SET DEFAULT (0002, 0003, 0007), ADD COLUMN with a constant (0004) or with Django's one uuid (0006): the same
    file. ADD COLUMN ... DEFAULT gen_random_uuid() (0005): a new one, written under ACCESS EXCLUSIVE."""
    database = seeded(NAME, ROWS)
    rewritten = []
    for step in get_project(NAME).steps:
        before = table_file(database)
        manage(NAME, database, "migrate", "demoapp", step.migration)
        after = table_file(database)
        if after != before:
            rewritten.append((step.migration, after[0] != before[0], after[1] != before[1]))
    assert rewritten == [(VOLATILE_ADD_COLUMN, True, True)]  # the table and its index, both written anew


@pytest.mark.parametrize("definition, rewrites", [
    ("x varchar(10) DEFAULT 'web' NOT NULL", False),  # a constant: stored once in the catalog
    ("x timestamptz DEFAULT now() NOT NULL", False),  # now() is STABLE: one value for the statement, a constant
    ("x timestamptz DEFAULT STATEMENT_TIMESTAMP() NOT NULL", False),  # Django's db_default=Now(): STABLE too
    ("x timestamptz DEFAULT clock_timestamp() NOT NULL", True),  # VOLATILE: a value per row
    ("x double precision DEFAULT random() NOT NULL", True),  # VOLATILE
    ("x uuid DEFAULT gen_random_uuid() NULL", True),  # VOLATILE: nullable or not, every row gets its own
], ids=["constant", "now", "django-Now", "clock_timestamp", "random", "gen_random_uuid-nullable"])
def test_add_column_rewrites_exactly_when_its_default_is_volatile(seeded, definition, rewrites):
    database = seeded(NAME, ROWS)
    before = table_file(database)[0]
    query(database, f"ALTER TABLE large_order ADD COLUMN {definition}")
    assert (table_file(database)[0] != before) == rewrites


def test_python_callable_default_gives_every_existing_row_the_same_value(seeded):
    database = seeded(NAME, ROWS)
    sql = manage(NAME, database, "sqlmigrate", "demoapp", TRAP).stdout
    assert re.search(r'ADD COLUMN "tracking_id" uuid DEFAULT \'[0-9a-f-]{36}\'::uuid NOT NULL;\n'
                     r'ALTER TABLE "large_order" ALTER COLUMN "tracking_id" DROP DEFAULT;', sql), sql
    manage(NAME, database, "migrate", "demoapp", TRAP)
    # Django called uuid.uuid4() once and sent the result as the column's DEFAULT: every row got that one value...
    assert query(database, "SELECT count(*), count(DISTINCT tracking_id) FROM large_order") == [(ROWS, 1)]
    # ...and the default is gone again (a Python default is never left in the database)...
    assert column(database, "tracking_id") == ("NO", None)
    # ...while the database's own gen_random_uuid() (0005, the rewrite) gave every row a value of its own.
    assert query(database, "SELECT count(DISTINCT public_id) FROM large_order") == [(ROWS,)]
    # Rows created through Django get a uuid4() each (models.py is at the last step): the duplicates hide among
    # the old rows.
    manage(NAME, database, "migrate", "demoapp")
    done = manage(NAME, database, "shell", "-c", (
        "from demoapp.models import LargeOrder\n"
        "for n in range(2):\n"
        "    print('NEW', LargeOrder.objects.create(reference=f'new{n}', amount=1).tracking_id)\n"
    ))
    new = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("NEW ")]
    assert query(database, "SELECT count(DISTINCT tracking_id) FROM large_order") == [(3,)] and len(set(new)) == 2


def test_safe_path_gives_every_row_a_value_of_its_own(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", FOR_NEW_ROWS)
    # SET DEFAULT gen_random_uuid() on the existing column touched no existing row...
    assert query(database, "SELECT count(external_id) FROM large_order") == [(0,)]
    # ...and gives every row inserted from now on a value, from the database.
    # tracking_id has no database default (0006 left none): a row inserted outside Django must name one.
    with pytest.raises(psycopg2.errors.NotNullViolation):
        query(database, "INSERT INTO large_order (reference, amount) VALUES ('new', 1)")
    assert query(database, "INSERT INTO large_order (reference, amount, tracking_id) "
                           "VALUES ('new', 1, gen_random_uuid()) RETURNING external_id IS NOT NULL") == [(True,)]
    manage(NAME, database, "migrate", "demoapp")
    total = ROWS + 1
    assert query(database, "SELECT count(*), count(external_id), count(DISTINCT external_id) FROM large_order") == [
        (total, total, total)
    ]
    # The end state of public_id (0005), without the rewrite: NOT NULL, a random default for new rows.
    assert column(database, "external_id") == ("NO", "gen_random_uuid()")
    assert column(database, "external_id") == column(database, "public_id")


def test_backfill_resumes_and_never_overwrites_a_value(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", FOR_NEW_ROWS)
    # An interrupted run: the batches up to id 20,000 were committed, the rest not.
    query(database, "UPDATE large_order SET external_id = gen_random_uuid() WHERE id <= 20000")
    done_before = "SELECT md5(string_agg(external_id::text, ',' ORDER BY id)) FROM large_order WHERE id <= 20000"
    kept = query(database, done_before)
    done, reports = migrate_reporting(NAME, database, BACKFILL)
    assert done.returncode == 0, done.stdout + done.stderr
    assert reports["large_order"]["rows"] == ROWS - 20000  # only the rows still NULL
    assert query(database, done_before) == kept
    assert query(database, "SELECT count(external_id), count(DISTINCT external_id) FROM large_order") == [(ROWS, ROWS)]
