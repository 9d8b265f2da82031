"""proj05_drop_column: what the lesson claims beyond locks, with both releases' own code against one database.

- a dropped column breaks every query of the release that still knows it, the read too, though the read endpoint
  "uses" nothing of it: Django selects every field of the model;
- release 2 no longer knows legacy_code, so its inserts leave it out: they work because 0002 gave the column a
  database default, and fail without it; release 1 goes on reading and inserting beside it;
- release 2 keeps reading and inserting while release 3 drops legacy_code; release 3 does both at the end.
"""

from tests.conftest import ROWS, manage, query
from tests.test_releases import answer_of_release

NAME = "proj05_drop_column"
INSERT = "/update_order/?create=1&id=7"


def answer(release: int, database: str, method: str, path: str) -> tuple[int, dict]:
    return answer_of_release(NAME, release, database, method, path)


def test_both_releases_insert_once_legacy_code_has_a_database_default(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", "0002_stop_using_legacy_code")
    status, body = answer(1, database, "post", INSERT)
    assert status == 200 and body["created"]["legacy_code"] == "LC-00000007"  # release 1 still writes it
    status, body = answer(2, database, "post", INSERT)
    assert status == 200 and set(body["created"]) == {"id", "name", "price_cents", "catalog_page", "updated_at"}
    assert query(database, "SELECT name, legacy_code FROM large_product WHERE id = %s",
                 [body["created"]["id"]]) == [("product 7", "")]
    # The same state removal without the default: release 2's INSERT leaves legacy_code out, and NOT NULL refuses.
    query(database, "ALTER TABLE large_product ALTER COLUMN legacy_code DROP DEFAULT")
    status, body = answer(2, database, "post", INSERT)
    assert status == 503 and 'null value in column "legacy_code"' in body["error"], body
    assert answer(2, database, "get", "/list_large/")[0] == 200  # its reads never needed the column
    status, body = answer(2, database, "post", "/update_order/?create=yes")
    assert status == 400 and body["error"].startswith("create must be 1 (insert a row) or absent (update one)")


def test_release_two_fails_on_every_query_once_a_column_it_knows_is_dropped(seeded):
    database = seeded(NAME, ROWS)
    manage(NAME, database, "migrate", "demoapp", "0003_drop_legacy_code_column")
    for method, path in (("get", "/list_large/"), ("post", INSERT)):  # release 2 never knew legacy_code
        assert answer(2, database, method, path)[0] == 200
    # Release 3 deployed before its migration ran: its inserts leave catalog_page out, and it is NOT NULL.
    status, body = answer(3, database, "post", INSERT)
    assert status == 503 and 'null value in column "catalog_page"' in body["error"], body
    manage(NAME, database, "migrate", "demoapp", "0004_remove_catalog_page")
    for method, path in (("get", "/list_large/"), ("post", "/update_order/?id=7"), ("post", INSERT)):
        status, body = answer(2, database, method, path)
        assert status == 503 and "column large_product.catalog_page does not exist" in body["error"], (path, body)
    for method, path in (("get", "/list_large/"), ("post", INSERT)):
        assert answer(3, database, method, path)[0] == 200
    columns = query(database, "SELECT column_name FROM information_schema.columns WHERE table_name = 'large_product' "
                              "ORDER BY ordinal_position")
    assert [name for (name,) in columns] == ["id", "name", "price_cents", "updated_at"]
    assert query(database, "SELECT count(*) FROM large_product") == [(ROWS + 2,)]  # release 2's and 3's
