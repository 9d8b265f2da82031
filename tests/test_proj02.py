"""proj02_rename_column: what the lesson claims beyond locks, with both releases' own code against one database.

- the rename in Django only (db_column) runs no SQL at all;
- release 1 answers while release 2's migrations run, and release 2 while release 3 drops ref; but from the
  RenameField on, release 2's every request fails, naming the column that is gone; release 3 answers;
- once release 2 is deployed, both releases serve and write, each its own column (ref, reference): the trigger
  keeps the two equal, whatever either writes with its own ORM code;
- at the end every row still holds its values, under the new names.
"""

from tests.conftest import ROWS, manage, query
from tests.test_releases import answer_of_release, manage_as

NAME = "proj02_rename_column"


def as_release(release: int, database: str, *args: str):
    return manage_as(NAME, release, database, *args)


def answer(release: int, database: str, method: str, path: str) -> tuple[int, dict]:
    return answer_of_release(NAME, release, database, method, path)


def test_the_rename_in_django_only_runs_no_sql(database):
    output = manage(NAME, database, "sqlmigrate", "demoapp", "0002_rename_cust_name_in_django_only").stdout
    statements = [line for line in output.splitlines()
                  if line.strip() and not line.startswith("--") and line not in ("BEGIN;", "COMMIT;")]
    assert statements == []
    assert "Rename field cust_name on largeorder to customer_name" in output  # it does rename, in Django


def test_the_serving_release_answers_until_the_rename_then_fails_naming_the_column(seeded):
    database = seeded(NAME, ROWS)
    for step in ("0002_rename_cust_name_in_django_only", "0003_add_reference_synced_with_ref",
                 "0004_backfill_reference_batched"):  # release 2's, while release 1 serves
        manage(NAME, database, "migrate", "demoapp", step)
        assert answer(1, database, "get", "/list_large/")[0] == 200, step
        assert answer(1, database, "post", "/update_order/?id=7")[0] == 200, step
    status, body = answer(2, database, "get", "/list_large/")  # deployed: both releases answer
    assert status == 200 and set(body["rows"][0]) == {"id", "customer_name", "reference", "amt", "updated_at"}
    manage(NAME, database, "migrate", "demoapp", "0005_remove_ref")  # release 3's, while release 2 serves
    assert answer(2, database, "post", "/update_order/?id=7")[0] == 200
    manage(NAME, database, "migrate", "demoapp", "0006_rename_amt_to_amount")
    for method, path in (("get", "/list_large/"), ("post", "/update_order/?id=7")):
        status, body = answer(2, database, method, path)
        assert status == 503 and "column large_order.amt does not exist" in body["error"], (path, body)
    status, body = answer(3, database, "get", "/list_large/")
    assert status == 200 and set(body["rows"][0]) == {"id", "customer_name", "reference", "amount", "updated_at"}


def test_both_releases_writes_keep_ref_and_reference_equal(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", "0004_backfill_reference_batched")
    as_release(1, database, "shell", "-c", (
        "from demoapp.models import LargeOrder\n"
        "LargeOrder.objects.create(cust_name='one', ref='R1-NEW', amt=1)\n"
        "LargeOrder.objects.filter(pk=1).update(ref='R1-UPD')\n"
        "row = LargeOrder.objects.get(pk=2); row.ref = 'R1-SAVE'; row.save()\n"
    ))
    as_release(2, database, "shell", "-c", (
        "from demoapp.models import LargeOrder\n"
        "LargeOrder.objects.create(customer_name='two', reference='R2-NEW', amt=2)\n"
        "LargeOrder.objects.filter(pk=3).update(reference='R2-UPD')\n"
        "row = LargeOrder.objects.get(pk=4); row.reference = 'R2-SAVE'; row.save()\n"
    ))
    written = query(database, "SELECT ref, reference FROM large_order WHERE id <= 4 OR id > %s ORDER BY id", [ROWS])
    assert written == [("R1-UPD",) * 2, ("R1-SAVE",) * 2, ("R2-UPD",) * 2, ("R2-SAVE",) * 2,
                       ("R1-NEW",) * 2, ("R2-NEW",) * 2]
    assert query(database, "SELECT count(*) FROM large_order WHERE ref IS DISTINCT FROM reference") == [(0,)]


def test_every_row_keeps_its_values_under_the_new_names(seeded):
    database = seeded(NAME, ROWS)
    before = query(database, "SELECT md5(string_agg(cust_name || ref || amt, ',' ORDER BY id)) FROM large_order")
    manage(NAME, database, "migrate", "demoapp")
    after = query(database, "SELECT md5(string_agg(cust_name || reference || amount, ',' ORDER BY id)) "
                            "FROM large_order")
    assert after == before
    columns = query(database, "SELECT column_name FROM information_schema.columns WHERE table_name = 'large_order' "
                              "ORDER BY ordinal_position")
    assert [name for (name,) in columns] == ["id", "cust_name", "amount", "updated_at", "reference"]
    assert query(database, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'large_order'::regclass "
                           "AND NOT tgisinternal") == [(0,)]
