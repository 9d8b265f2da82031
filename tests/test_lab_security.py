"""The lab's PostgreSQL lets in only who knows its password: not every local user, over TCP or the socket."""

import os
import stat

import psycopg2
import pytest

from migrationlab.embedded import SUPERUSER, EmbeddedPostgres
from tests.conftest import query


@pytest.fixture(autouse=True)
def no_ambient_password(monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)  # a password-less attempt must really carry none


def connect_without_password(server: EmbeddedPostgres, host: str):
    # passfile: not the tester's ~/.pgpass either
    return psycopg2.connect(host=host, port=server.port, user=SUPERUSER, dbname="postgres", passfile=os.devnull,
                            connect_timeout=10)


@pytest.mark.parametrize("over", ["tcp", "socket"])
def test_a_connection_without_the_password_is_refused(pg, over):
    host = "127.0.0.1" if over == "tcp" else str(pg.socket_dir)
    with pytest.raises(psycopg2.OperationalError, match="password"):
        connect_without_password(pg, host)
    assert query(pg.dsn(), "SELECT current_user") == [(SUPERUSER,)]  # the password, as dsn() carries it, works


def test_the_password_is_for_its_owner_and_the_socket_for_the_server_alone(pg):
    password = os.stat(pg.password_file)
    assert stat.S_IMODE(password.st_mode) == 0o600 and password.st_uid == os.geteuid()
    assert len(pg.password()) >= 32
    assert stat.S_IMODE(os.stat(pg.socket_dir).st_mode) & 0o077 == 0
