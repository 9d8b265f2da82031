"""proj08_drop_indexes: what the lesson proves beyond its lock claims (tests/test_lessons.py judges those).

- Which index is unused is a question for PostgreSQL: after the endpoint's own lookups, pg_stat_user_indexes counts
  scans of (device_id) and none of (kind, created_at), and EXPLAIN of the endpoint's query names (device_id).
- The safe step drops the unused index and the lookup's plan does not change; the risky step drops the index the
  lookup needs, and the lookup becomes a sequential scan.
- `manage.py index_usage` (the presenter's view of the above) lists any project's large table, one line per index.
"""

from __future__ import annotations

import json
import re

import pytest

from migrationlab.scenarios import all_projects, get_project
from tests.conftest import ROWS, manage, query

NAME = "proj08_drop_indexes"
DEVICE_INDEX = "large_event_device_id_idx"  # serves /list_large/?device_id=N
UNUSED_INDEX = "large_event_kind_created_idx"  # no query uses it
EVENTS_PER_DEVICE = 4  # scenario.toml: device_id = (i + 3) / 4
LOOKUPS = 300

# The endpoint's views, called in a Django process of the project (the code gunicorn runs), then the session's
# statistics flushed: a session reports its counts when a transaction ends, but at most once a second (an idle one
# after 10 s), so without the flush the test would have to wait for them.
SERVE = """
import json
from django.db import connection
from django.test import RequestFactory
from migrationlab import web
factory = RequestFactory()
reads = [web.list_large(factory.get('/list_large/', {{'device_id': device}})) for device in range(1, {lookups} + 1)]
writes = [web.update_order(factory.post('/update_order/', {{'id': row}})) for row in range(1, 21)]
with connection.cursor() as cursor:
    cursor.execute('SELECT pg_stat_force_next_flush()')
print('SERVED ' + json.dumps({{'reads': [(r.status_code, len(json.loads(r.content)['rows'])) for r in reads],
                              'writes': [w.status_code for w in writes]}}))
"""


def serve_lookups(url: str, lookups: int = LOOKUPS) -> dict:
    done = manage(NAME, url, "shell", "-c", SERVE.format(lookups=lookups))
    return json.loads(re.search(r"SERVED (.*)", done.stdout).group(1))


def index_scans(url: str) -> dict[str, int]:
    return dict(query(url, "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = 'large_event'"))


def plan(url: str, device: int = 42) -> str:
    return manage(NAME, url, "index_usage", "--explain", str(device)).stdout.split("the plan of its query", 1)[1]


def test_the_lookup_uses_the_device_index_and_the_other_one_is_provably_unused(seeded):
    url = seeded(NAME, ROWS)
    assert index_scans(url) == {"large_event_pkey": 0, DEVICE_INDEX: 0, UNUSED_INDEX: 0}  # fresh after seeding

    served = serve_lookups(url)
    # Every device of the lookups has its events, a handful each; the writes went through.
    assert served["reads"] == [[200, EVENTS_PER_DEVICE]] * LOOKUPS
    assert served["writes"] == [200] * 20
    scans = index_scans(url)
    assert scans[DEVICE_INDEX] >= LOOKUPS  # every lookup, through the device_id index
    assert scans[UNUSED_INDEX] == 0  # after all that traffic, not one scan: no query uses it

    explained = plan(url)
    assert f"Index Scan using {DEVICE_INDEX} on large_event" in explained, explained
    assert "Seq Scan" not in explained and UNUSED_INDEX not in explained

    # The presenter's view of the same: one line per index, the unused one with 0 scans.
    listing = manage(NAME, url, "index_usage").stdout
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert set(lines) == {"index", "large_event_pkey", DEVICE_INDEX, UNUSED_INDEX}
    assert re.match(rf"\s*{UNUSED_INDEX}\s+0\s+never\s+[\d.]+ [kM]B\s+CREATE INDEX {UNUSED_INDEX} "
                    r"ON public\.large_event USING btree \(kind, created_at\)$", lines[UNUSED_INDEX])
    device_scans = int(lines[DEVICE_INDEX].split()[1].replace(",", ""))
    assert device_scans >= LOOKUPS and "s ago" in lines[DEVICE_INDEX]


def test_dropping_the_unused_index_keeps_the_plan_and_dropping_the_used_one_loses_it(seeded):
    url = seeded(NAME, ROWS)
    before = plan(url)

    manage(NAME, url, "migrate", "demoapp", "0002_drop_unused_index_concurrently")
    assert set(index_scans(url)) == {"large_event_pkey", DEVICE_INDEX}
    after_safe = plan(url)
    assert f"Index Scan using {DEVICE_INDEX}" in after_safe
    # The same plan, line for line, but for the measured times and the buffers touched.
    assert [re.sub(r"\(actual.*|Buffers.*|.*Time: .*", "", line) for line in after_safe.splitlines()] == [
        re.sub(r"\(actual.*|Buffers.*|.*Time: .*", "", line) for line in before.splitlines()]

    manage(NAME, url, "migrate", "demoapp", "0003_remove_device_id_index")
    assert set(index_scans(url)) == {"large_event_pkey"}
    after_risky = plan(url)
    assert re.search(r"Seq Scan on large_event\b", after_risky), after_risky
    assert f"Rows Removed by Filter: {ROWS - EVENTS_PER_DEVICE}" in after_risky  # it read every row to find 4
    assert serve_lookups(url, lookups=5)["reads"] == [[200, EVENTS_PER_DEVICE]] * 5  # same answers, the slow way


@pytest.mark.parametrize("name", [p.name for p in all_projects()])
def test_index_usage_lists_any_projects_large_table(name, database):
    project = get_project(name)
    manage(name, database, "migrate", "demoapp", project.start)
    done = manage(name, database, "index_usage")
    header, columns, *indexes = done.stdout.splitlines()
    assert header.startswith(f"{project.large_table}: ~0 rows") and "counted on this server only" in header
    assert columns.split()[:3] == ["index", "scans", "last"]
    expected = query(database, "SELECT indexname FROM pg_indexes WHERE tablename = %s", [project.large_table])
    assert sorted(line.split()[0] for line in indexes) == sorted(name for (name,) in expected)
    if not project.lookup_field:
        refused = manage(name, database, "index_usage", "--explain", "1", check=False)
        assert refused.returncode != 0 and "Traceback" not in refused.stderr
        assert "has no lookup_field" in refused.stderr


def test_index_usage_refuses_bad_input_in_one_line(database):
    manage(NAME, database, "migrate", "demoapp", get_project(NAME).start)
    for args, message in ((["--table", "no_such_table"], "no table named no_such_table"),
                          (["--explain", "abc"], "answered 400")):
        done = manage(NAME, database, "index_usage", *args, check=False)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert message in done.stderr
