"""The lab's PostgreSQL lets in only who knows its password: not every local user, over TCP or the socket."""

import os
import stat

import psycopg2
import pytest

from migrationlab.embedded import SUPERUSER, EmbeddedError, EmbeddedPostgres
from tests.conftest import free_port, query


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


def test_a_lab_made_before_passwords_is_upgraded_in_place(tmp_path):
    # A lab as the earlier code left it: initdb --auth=trust, no password file, a database with data.
    server = EmbeddedPostgres(tmp_path / "lab" / "postgres", free_port())
    server._prepare_directories()
    initdb = server._run("initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", SUPERUSER,
                         "-D", str(server.pgdata))
    assert initdb.returncode == 0, initdb.stderr
    server._launch()
    try:
        with connect_without_password(server, "127.0.0.1") as connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE kept AS SELECT 42 AS answer")
        connection.close()

        # Running, it is not upgraded: its web servers would lose their database. One line says what to do.
        with pytest.raises(EmbeddedError, match="predates passwords.*down"):
            server.start()
        with pytest.raises(EmbeddedError, match="predates passwords"):
            server.dsn()

        server.stop()
        assert server.start() is True
        with pytest.raises(psycopg2.OperationalError, match="password"):
            connect_without_password(server, "127.0.0.1")
        with pytest.raises(psycopg2.OperationalError, match="password"):
            connect_without_password(server, str(server.socket_dir))
        assert query(server.dsn(), "SELECT answer FROM kept") == [(42,)]
        assert stat.S_IMODE(os.stat(server.password_file).st_mode) == 0o600
        assert server.start() is False  # upgraded once: now an ordinary lab
    finally:
        server.purge()
