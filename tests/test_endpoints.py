"""The two endpoints, served for real by gunicorn (through `python -m migrationlab serve`, as in the container)."""

import json
import urllib.error
import urllib.request

import psycopg2
import pytest

from migrationlab import lab
from migrationlab.scenarios import get_project
from tests.conftest import free_port, query
from tests.conftest import seeded_database as seeded_database_of

PROJECT = "proj01_add_not_null_constraint"


def call(url: str, method: str = "GET", data: bytes | None = None):
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as answer:
        return answer.code, dict(answer.headers), json.loads(answer.read())


@pytest.fixture(scope="module")
def seeded_database(pg):
    with seeded_database_of(pg, PROJECT, rows=1000) as url:
        yield url


@pytest.fixture(scope="module")
def server(seeded_database):
    project = get_project(PROJECT)
    port = free_port()
    lab.start_web(project, seeded_database, port, instance="test-endpoints")
    yield f"http://127.0.0.1:{port}"
    lab.stop_web(project, instance="test-endpoints")


def test_list_large_returns_ten_rows_and_the_count(server):
    status, _, body = call(f"{server}/list_large/")
    assert status == 200
    assert body["table"] == "large_user" and body["count"] == 1000 and body["count_is_estimate"] is True
    assert 1 <= len(body["rows"]) <= 10
    assert set(body["rows"][0]) == {"id", "name", "email", "status", "updated_at"}


def test_update_order_touches_the_row_it_names(server, seeded_database):
    status, _, body = call(f"{server}/update_order/?id=7", method="POST", data=b"")
    assert status == 200 and body["updated"]["id"] == 7 and body["updated"]["updated_at"]
    assert query(seeded_database, "SELECT updated_at IS NOT NULL FROM large_user WHERE id = 7") == [(True,)]


def test_update_order_without_id_picks_an_existing_row(server):
    status, _, body = call(f"{server}/update_order/")
    assert status == 200 and 1 <= body["updated"]["id"] <= 1000


@pytest.mark.parametrize("raw, expected", [("abc", 400), ("-3", 400), ("1.5", 400), ("", 400), ("999999", 404)])
def test_update_order_bad_ids_get_json_errors(server, raw, expected):
    status, headers, body = call(f"{server}/update_order/?id={raw}")
    assert status == expected and headers["Content-Type"] == "application/json" and body["error"]


@pytest.mark.parametrize("path, method", [("/list_large/", "POST"), ("/update_order/", "DELETE"), ("/update_order/", "PUT")])
def test_wrong_methods_get_405_json(server, path, method):
    status, headers, body = call(f"{server}{path}", method=method, data=b"")
    assert status == 405 and "Allow" in headers and "not allowed" in body["error"]


def test_unknown_paths_get_404_json(server):
    status, _, body = call(f"{server}/nothing-here/")
    assert status == 404 and "/list_large/" in body["error"]


def test_a_request_stuck_behind_a_lock_ends_as_503_json_not_a_500_page(seeded_database):
    """The web server's statement timeout turns a wait behind a migration's lock into a 503 JSON answer."""
    project = get_project(PROJECT)
    port = free_port()
    lab.start_web(project, seeded_database, port, instance="test-statement-timeout",
                  extra_env={"WEB_STATEMENT_TIMEOUT_MS": "300"})
    holder = psycopg2.connect(seeded_database)
    try:
        with holder.cursor() as cursor:
            cursor.execute("LOCK TABLE large_user IN ACCESS EXCLUSIVE MODE")  # held until rollback below
        status, _, body = call(f"http://127.0.0.1:{port}/list_large/")
        assert status == 503 and "statement timeout" in body["error"]
    finally:
        holder.rollback()
        holder.close()
        lab.stop_web(project, instance="test-statement-timeout")
