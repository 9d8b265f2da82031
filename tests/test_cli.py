"""`python -m migrationlab`: the no-Docker path end to end, and its errors (one line, non-zero exit).

These tests run the CLI as a user would, in a lab of their own (own home, own PostgreSQL port), since `down`
stops the lab's PostgreSQL when no server is left.
"""

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psycopg2
import pytest

from migrationlab import REPO_ROOT
from tests.conftest import free_port, starts_postgresql


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = dict(os.environ)
    env["MIGRATIONLAB_HOME"] = str(tmp_path_factory.mktemp("cli-lab"))
    env["MIGRATIONLAB_PG_PORT"] = str(free_port())
    # As a user who did not activate the venv: `python` on PATH, if any, is not the one with the dependencies.
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(folder for folder in env.get("PATH", "").split(os.pathsep) if folder != venv_bin)
    return env


@pytest.fixture
@starts_postgresql
def cli_lab(cli_env):
    """cli_env, for a test that starts the lab (`up`); its PostgreSQL and servers purged afterwards."""
    yield cli_env
    subprocess.run([sys.executable, "-m", "migrationlab", "down", "--purge"], env=cli_env, capture_output=True)


def lab_cli(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrationlab", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error") or ": error:" in line]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_list_names_every_project_with_its_ports(cli_env):
    done = lab_cli(cli_env, "list")
    assert done.returncode == 0
    assert "proj01_add_not_null_constraint      8010  5410" in done.stdout
    assert "proj01_safe_backfill                8011  5411" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["up", "proj99_nothing"], "unknown project 'proj99_nothing'"),
    (["up", "proj01_safe_backfill", "--rows", "many"], "'many' is not a whole number of rows"),
    (["up", "proj01_safe_backfill", "--rows", "0"], "at least 1"),
    (["up", "proj01_safe_backfill", "--port", "70000"], "not a port number"),
    (["manage", "proj99_nothing", "--", "migrate"], "unknown project"),
    (["down", "proj99_nothing"], "unknown project"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_gets_one_line_and_a_non_zero_exit(cli_env, args, message):
    assert message in one_line_error(lab_cli(cli_env, *args))


def test_help_names_the_environment_and_no_missing_file(cli_env):
    done = lab_cli(cli_env, "--help")
    assert done.returncode == 0
    assert "MIGRATIONLAB_HOME" in done.stdout and "MIGRATIONLAB_PG_PORT" in done.stdout and "\n    url " in done.stdout
    up = lab_cli(cli_env, "up", "--help")
    assert up.returncode == 0 and "SCENARIOS.md" not in up.stdout and "list" in up.stdout


@pytest.mark.parametrize("port", ["99999", "0", "54oo"])
def test_a_bad_postgresql_port_is_refused_before_any_work(cli_env, tmp_path, port):
    env = {**cli_env, "MIGRATIONLAB_HOME": str(tmp_path / "lab"), "MIGRATIONLAB_PG_PORT": port}
    message = one_line_error(lab_cli(env, "up", "proj01_safe_backfill", "--rows", "500", "--port", str(free_port())))
    assert f"MIGRATIONLAB_PG_PORT must be a port number (1-65535), got '{port}'" in message
    assert not (tmp_path / "lab").exists()  # no initdb, nothing


def test_a_privileged_port_is_reported_as_such_not_as_busy(tmp_path):
    if int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text()) <= 80:
        pytest.skip("on this machine every user may listen on port 80")
    # The CLI run by an ordinary user, in a child of this process: as root, drop to `nobody` first. Imported now,
    # while the interpreter's files (perhaps under /root) can still be read.
    from migrationlab import cli, embedded, lab  # noqa: F401

    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        code = 99
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            os.environ.update(MIGRATIONLAB_HOME=str(tmp_path / "lab"), MIGRATIONLAB_PG_PORT=str(free_port()))
            sys.stderr = os.fdopen(write_end, "w")
            code = cli.main(["up", "proj01_safe_backfill", "--rows", "500", "--port", "80"])
            sys.stderr.flush()
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as errors:
        stderr = errors.read()
    _, status = os.waitpid(child, 0)
    done = subprocess.CompletedProcess([], os.waitstatus_to_exitcode(status), "", stderr)
    assert one_line_error(done) == "error: port 80 needs privileges; pick a port above 1023"


def test_down_of_a_project_never_started_says_so(cli_env):
    done = lab_cli(cli_env, "down", "proj01_safe_backfill")
    assert done.returncode == 0 and "nothing to stop for proj01_safe_backfill" in done.stdout


def test_url_before_up_says_what_to_do(cli_env):
    assert "not running" in one_line_error(lab_cli(cli_env, "url", "proj01_safe_backfill"))


def test_manage_before_up_says_what_to_do(cli_env):
    assert "python -m migrationlab up" in one_line_error(lab_cli(cli_env, "manage", "proj01_safe_backfill", "--", "showmigrations"))


def test_a_busy_port_is_reported_not_fought_over(cli_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        message = one_line_error(lab_cli(cli_env, "up", "proj01_add_not_null_constraint", "--rows", "500", "--port", str(busy)))
    assert f"port {busy} on 127.0.0.1 is in use" in message


def test_up_manage_down_round_trip(cli_lab):
    port = free_port()
    project = "proj01_add_not_null_constraint"
    done = lab_cli(cli_lab, "up", project, "--rows", "2000", "--port", str(port))
    assert done.returncode == 0, done.stderr
    assert "Seeded 2,000 rows" in done.stdout and f"http://127.0.0.1:{port}/list_large/" in done.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/list_large/", timeout=30) as answer:
        assert answer.status == 200

    again = lab_cli(cli_lab, "up", project)  # idempotent: reuses all of it, on the port it serves on
    assert again.returncode == 0 and "already serving" in again.stdout and "Seeded" not in again.stdout
    assert f"http://127.0.0.1:{port}/list_large/" in again.stdout
    elsewhere = free_port()  # the server would not move there: refused, not a Ready on a dead port
    moved = lab_cli(cli_lab, "up", project, "--port", str(elsewhere))
    assert f"{project} is already served on port {port}" in one_line_error(moved) and "Ready" not in moved.stdout

    url = lab_cli(cli_lab, "url", project)
    assert url.returncode == 0
    connection = psycopg2.connect(url.stdout.strip())
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        assert cursor.fetchone() == (project,)
    connection.close()
    assert "proj01_safe_backfill has no lab database" in one_line_error(lab_cli(cli_lab, "url", "proj01_safe_backfill"))

    # The printed hint works as printed, from the folder `up` ran in, by a shell without the venv activated.
    hint = next(line for line in done.stdout.splitlines() if "see the migrations" in line)
    plan = subprocess.run(hint.split("see the migrations", 1)[1], shell=True, cwd=REPO_ROOT, env=cli_lab,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert plan.returncode == 0, plan.stderr
    assert "[X] 0002_add_status_nullable" in plan.stdout
    assert "[ ] 0003_make_status_not_null_with_default" in plan.stdout  # never applied on up

    shell = lab_cli(cli_lab, "manage", project, "--", "dbshell", "--", "-c", "SELECT 'psql ' || current_setting('server_version_num')")
    assert shell.returncode == 0 and "psql 16" in shell.stdout  # psql 16 of the embedded server is on PATH

    assert lab_cli(cli_lab, "manage", project, "--", "migrate", "demoapp").returncode == 0
    plan = lab_cli(cli_lab, "manage", project, "--", "showmigrations", "demoapp")
    assert "[X] 0003_make_status_not_null_with_default" in plan.stdout

    pid_file = os.path.join(cli_lab["MIGRATIONLAB_HOME"], "run", f"{project}.pid")
    pid = int(open(pid_file).read())
    down = lab_cli(cli_lab, "down", project, "--purge")
    assert down.returncode == 0 and "stopped the web server" in down.stdout and "stopped the embedded PostgreSQL" in down.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # nothing left running
    assert not os.path.exists(pid_file)

    purged = lab_cli(cli_lab, "down", "--purge")
    assert purged.returncode == 0 and "deleted the lab's data, logs and pid files" in purged.stdout
    home = Path(cli_lab["MIGRATIONLAB_HOME"])
    assert not any((home / part).exists() for part in ("postgres", "run", "logs"))
