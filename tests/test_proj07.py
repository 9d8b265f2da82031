"""proj07: a foreign key on an existing customer_id, both ways. Beyond the lock claims (tests/test_lessons.py):

- both paths keep every existing customer_id (the talk's RemoveField + AddField dropped them) and end with the
  same validated foreign key and the same index, under the names Django gives them;
- the judge sees exactly which statements make whom wait, on orders and on customers;
- NOT VALID already guards new writes, and VALIDATE refuses an order that points at no customer, names it, and
  leaves the constraint NOT VALID until the row is fixed;
- the framework's referenced table: seeded first, served (/list_referenced/, /update_referenced/), declared all
  or nothing in scenario.toml.
"""

import json
import urllib.error
import urllib.request

import pytest

from migrationlab import lab
from migrationlab.scenarios import ScenarioError, get_project, load_project
from tests.conftest import ROWS, copy_of_seeded, free_port, manage, query

RISKY = "proj07_add_foreign_key"
SAFE = "proj07_safe_backfill"
CUSTOMERS = 100_000
# The names Django gives the ForeignKey's index and constraint (sqlmigrate of the risky step).
INDEX = "large_order_customer_id_96b7b144"
FOREIGN_KEY = "large_order_customer_id_96b7b144_fk_customer_id"
ORPHAN = 999_999_999  # no customer has this id


def customer_ids(url: str) -> str:
    """A digest of every order's (id, customer_id)."""
    return query(url, "SELECT md5(string_agg(id || ':' || customer_id, ',' ORDER BY id)) FROM large_order")[0][0]


def end_state(url: str) -> list[tuple]:
    """The column, the constraints and the indexes of large_order, as PostgreSQL shows them."""
    return query(url, """
        SELECT 'column', format_type(atttypid, atttypmod) || ' not null=' || attnotnull::text
          FROM pg_attribute WHERE attrelid = 'large_order'::regclass AND attname = 'customer_id'
        UNION ALL
        SELECT conname, pg_get_constraintdef(oid) || ' valid=' || convalidated::text
          FROM pg_constraint WHERE conrelid = 'large_order'::regclass
        UNION ALL
        SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) || ' valid=' || indisvalid::text
          FROM pg_index WHERE indrelid = 'large_order'::regclass
        ORDER BY 1""")


def file_of(url: str) -> int:
    return query(url, "SELECT relfilenode FROM pg_class WHERE relname = 'large_order'")[0][0]


@pytest.fixture(scope="module")
def both_paths(pg):
    """Each project migrated to its last step from a seeded start: {project: (url, digest at the start, whether
    large_order was rewritten into a new file)}."""
    ends, made = {}, []
    try:
        for name in (RISKY, SAFE):
            database, url = copy_of_seeded(pg, name, ROWS)
            made.append(database)
            before, file = customer_ids(url), file_of(url)
            manage(name, url, "migrate", "demoapp")
            ends[name] = (url, before, file_of(url) != file)
        yield ends
    finally:
        for database in made:
            lab.drop_database(pg.dsn(), database)


@pytest.mark.parametrize("name", [RISKY, SAFE])
def test_every_customer_id_is_kept(both_paths, name):
    url, before, _ = both_paths[name]
    assert customer_ids(url) == before
    assert query(url, "SELECT count(*), count(DISTINCT customer_id), min(customer_id), max(customer_id) "
                      "FROM large_order") == [(ROWS, min(ROWS, CUSTOMERS), 1, min(ROWS, CUSTOMERS))]


@pytest.mark.parametrize("name", [RISKY, SAFE])
def test_the_foreign_key_exists_and_is_validated(both_paths, name):
    url, _, _ = both_paths[name]
    [(definition, validated)] = query(url, "SELECT pg_get_constraintdef(oid), convalidated FROM pg_constraint "
                                           "WHERE conrelid = 'large_order'::regclass AND contype = 'f'")
    assert definition == "FOREIGN KEY (customer_id) REFERENCES customer(id) DEFERRABLE INITIALLY DEFERRED"
    assert validated


def test_only_the_risky_path_rewrites_the_table(both_paths):
    # int -> bigint is not binary compatible: ALTER COLUMN TYPE writes the table anew (under ACCESS EXCLUSIVE).
    assert (both_paths[RISKY][2], both_paths[SAFE][2]) == (True, False)


def test_both_paths_end_in_the_same_schema(both_paths):
    risky, safe = (end_state(both_paths[name][0]) for name in (RISKY, SAFE))
    assert risky == safe
    names = [name for name, _ in risky]
    assert INDEX in names and FOREIGN_KEY in names
    assert ("column", "bigint not null=true") in risky


def test_the_risky_step_rewrites_orders_and_then_stops_customer_writes_until_commit(seeded):
    judgements = json.loads(manage(RISKY, seeded(RISKY, ROWS), "judge_locks", "--json").stdout)
    rename, foreign_key = judgements
    # The rename of the field is no SQL at all: nothing waits, no lock is taken.
    assert rename["waits"] == [] and rename["strongest_lock"] is None
    assert foreign_key["strongest_lock"] == "AccessExclusiveLock"
    assert foreign_key["referenced_strongest_lock"] == "ShareRowExclusiveLock"
    first, *_ = waits = foreign_key["waits"]
    # Orders: reads and writes wait from the first statement, the rewrite to bigint...
    assert first["statement"].startswith('ALTER TABLE "large_order" ALTER COLUMN "customer_id" TYPE bigint')
    assert first["read_waited"] and first["write_waited"]
    assert not first["referenced_read_waited"] and not first["referenced_write_waited"]
    # ...customers' writes only from the validating ADD CONSTRAINT on, to the commit; customers' reads never.
    on_customers = [wait for wait in waits if wait["referenced_write_waited"]]
    assert on_customers[0]["statement"].startswith(f'ALTER TABLE "large_order" ADD CONSTRAINT "{FOREIGN_KEY}"')
    assert on_customers[0]["rows_after"] - on_customers[0]["rows_before"] >= ROWS  # it checked every order
    assert on_customers[-1]["statement"].startswith('INSERT INTO "django_migrations"')
    assert not any(wait["referenced_read_waited"] for wait in waits)


def test_validate_blocks_nobody_on_either_table(seeded):
    judged = json.loads(manage(SAFE, seeded(SAFE, ROWS), "judge_locks", "--json").stdout)
    judgements = {j["migration"]: j for j in judged}
    validate = judgements["0005_validate_customer_foreign_key"]
    assert validate["statements"] > 0 and validate["waits"] == []
    assert (validate["strongest_lock"], validate["referenced_strongest_lock"]) == (
        "ShareUpdateExclusiveLock", "RowShareLock")
    not_valid = judgements["0004_add_customer_foreign_key_not_valid"]
    assert (not_valid["strongest_lock"], not_valid["referenced_strongest_lock"]) == (
        "ShareRowExclusiveLock", "ShareRowExclusiveLock")
    # The writes it holds up wait for a catalog change: not a row is read while they wait.
    assert not_valid["waits"] and all(wait["rows_after"] == 0 for wait in not_valid["waits"])
    assert not any(wait["read_waited"] or wait["referenced_read_waited"] for wait in not_valid["waits"])


def test_validate_refuses_an_order_without_a_customer_and_says_which(seeded):
    url = seeded(SAFE, ROWS)
    manage(SAFE, url, "migrate", "demoapp", "0003_build_customer_index_concurrently")
    query(url, "UPDATE large_order SET customer_id = %s WHERE id = 7", [ORPHAN])  # written before the constraint
    manage(SAFE, url, "migrate", "demoapp", "0004_add_customer_foreign_key_not_valid")
    # NOT VALID checks every new write already (at commit: Django's foreign keys are DEFERRABLE INITIALLY DEFERRED).
    with pytest.raises(Exception, match=f"violates foreign key constraint \"{FOREIGN_KEY}\""):
        query(url, "UPDATE large_order SET customer_id = %s WHERE id = 8", [ORPHAN])
    failed = manage(SAFE, url, "migrate", "demoapp", "0005_validate_customer_foreign_key", check=False)
    assert failed.returncode != 0
    assert f'insert or update on table "large_order" violates foreign key constraint "{FOREIGN_KEY}"' in failed.stderr
    assert f'Key (customer_id)=({ORPHAN}) is not present in table "customer".' in failed.stderr
    assert query(url, "SELECT convalidated FROM pg_constraint WHERE conname = %s", [FOREIGN_KEY]) == [(False,)]
    query(url, "UPDATE large_order SET customer_id = 7 WHERE id = 7")  # the row fixed, VALIDATE goes through
    manage(SAFE, url, "migrate", "demoapp", "0005_validate_customer_foreign_key")
    assert query(url, "SELECT convalidated FROM pg_constraint WHERE conname = %s", [FOREIGN_KEY]) == [(True,)]


# -- the referenced table in the framework ---------------------------------------------------------------------

def test_the_referenced_table_is_seeded_before_the_orders_point_at_it(seeded):
    url = seeded(RISKY, ROWS)
    assert query(url, "SELECT count(*), min(id), max(id) FROM customer") == [(CUSTOMERS, 1, CUSTOMERS)]
    assert query(url, "SELECT count(*) FROM large_order o LEFT JOIN customer c ON c.id = o.customer_id "
                      "WHERE c.id IS NULL") == [(0,)]
    # Seeded again after the foreign key exists: the tables are emptied and filled together, customers first.
    manage(RISKY, url, "migrate", "demoapp")
    done = manage(RISKY, url, "seed_large_table", "--large-count", "3000")
    assert done.stdout.startswith("Seeding customer with 100,000 (first: large_order refers to it), large_order")
    assert query(url, "SELECT count(*) FROM large_order") == [(3000,)]


def call(url: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as answer:
        return answer.code, json.loads(answer.read())


def test_the_referenced_tables_read_and_write_are_served(seeded):
    url = seeded(RISKY, 2000)
    project = get_project(RISKY)
    port = free_port()
    lab.start_web(project, url, port, instance="test-proj07")
    try:
        server = f"http://127.0.0.1:{port}"
        status, body = call(f"{server}/list_referenced/")
        assert status == 200 and body["table"] == "customer" and body["count"] == CUSTOMERS
        assert 1 <= len(body["rows"]) <= 10 and set(body["rows"][0]) == {"id", "name", "updated_at"}
        status, body = call(f"{server}/update_referenced/?id=4242", method="POST")
        assert status == 200 and body["updated"]["id"] == 4242 and body["updated"]["updated_at"]
        assert query(url, "SELECT updated_at IS NOT NULL FROM customer WHERE id = 4242") == [(True,)]
        assert call(f"{server}/update_referenced/?id=abc", method="POST")[0] == 400
        assert call(f"{server}/update_referenced/?id={CUSTOMERS + 1}", method="POST") == (
            404, {"error": f"no row with id {CUSTOMERS + 1} in customer"})
        assert call(f"{server}/list_referenced/", method="POST")[0] == 405
        status, body = call(f"{server}/list_large/")  # the large table's endpoints are as in every project
        assert status == 200 and body["table"] == "large_order"
    finally:
        lab.stop_web(project, instance="test-proj07")


def test_a_project_without_a_referenced_table_answers_404_json_there(database):
    done = manage("proj01_add_not_null_constraint", database, "shell", "-c", (
        "from django.test import RequestFactory\n"
        "from migrationlab import web\n"
        "for view in (web.list_referenced, web.update_referenced):\n"
        "    answer = view(RequestFactory().get('/'))\n"
        "    print(answer.status_code, answer.content.decode())\n"
    ))
    expected = '404 {"error": "this project has no referenced table; try /list_large/ or /update_order/"}'
    assert [line for line in done.stdout.splitlines() if line.startswith("404")] == [expected, expected]


@pytest.mark.parametrize("tables, steps, message", [
    ('referenced_model = "Customer"\nreferenced_table = "customer"', 'reads = "never"\nwrites = "never"',
     "a referenced table needs referenced_model, referenced_table, referenced_rows in [tables]; "
     "missing referenced_rows"),
    ('referenced_model = "Customer"\nreferenced_table = "customer"\nreferenced_rows = 10',
     'reads = "never"\nwrites = "never"', "missing 'referenced_reads'"),
    ("", 'reads = "never"\nwrites = "never"\nreferenced_reads = "never"',
     "step 0002_x: referenced_reads without a referenced table in [tables]"),
    ('referenced_model = "Customer"\nreferenced_table = "customer"\nreferenced_rows = 10',
     'reads = "never"\nwrites = "never"\nreferenced_reads = "never"\nreferenced_writes = "always"',
     "'always' is not one of"),
])
def test_scenario_toml_declares_the_referenced_table_and_its_claims_all_or_nothing(tmp_path, tables, steps, message):
    folder = tmp_path / "proj99_example"
    folder.mkdir()
    (folder / "scenario.toml").write_text(
        'title = "t"\nvariant = 0\nlesson = "l"\nstart = "0001_initial"\n'
        '[tables]\nlarge_model = "L"\nsmall_model = "S"\nlarge_table = "l"\nsmall_table = "s"\nwrite_field = "w"\n'
        f'{tables}\n[seed]\n[[steps]]\nmigration = "0002_x"\nkind = "safe"\nwhat = "w"\n{steps}\n')
    with pytest.raises(ScenarioError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_project(folder)


def test_the_project_declares_its_referenced_table():
    project = get_project(SAFE)
    assert (project.referenced_model, project.referenced_table, project.referenced_rows) == (
        "Customer", "customer", CUSTOMERS)
    assert all(step.referenced_reads == "never" for step in project.steps)
