"""`python -m migrationlab`: the no-Docker path end to end, and its errors (one line, non-zero exit).

These tests run the CLI as a user would, in a lab of their own (own home, own PostgreSQL port), since `down`
stops the lab's PostgreSQL when no server is left.
"""

import os
import socket
import subprocess
import sys
import urllib.request

import pytest

from migrationlab import REPO_ROOT
from tests.conftest import free_port


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    env = dict(os.environ)
    env["MIGRATIONLAB_HOME"] = str(tmp_path_factory.mktemp("cli-lab"))
    env["MIGRATIONLAB_PG_PORT"] = str(free_port())
    yield env
    subprocess.run([sys.executable, "-m", "migrationlab", "down", "--purge"], env=env, capture_output=True)


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


def test_manage_before_up_says_what_to_do(cli_env):
    assert "python -m migrationlab up" in one_line_error(lab_cli(cli_env, "manage", "proj01_safe_backfill", "--", "showmigrations"))


def test_a_busy_port_is_reported_not_fought_over(cli_env):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        message = one_line_error(lab_cli(cli_env, "up", "proj01_add_not_null_constraint", "--rows", "500", "--port", str(busy)))
    assert f"port {busy} on 127.0.0.1 is in use" in message


def test_up_manage_down_round_trip(cli_env):
    port = free_port()
    project = "proj01_add_not_null_constraint"
    done = lab_cli(cli_env, "up", project, "--rows", "2000", "--port", str(port))
    assert done.returncode == 0, done.stderr
    assert "Seeded 2,000 rows" in done.stdout and f"http://127.0.0.1:{port}/list_large/" in done.stdout
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/list_large/", timeout=30) as answer:
        assert answer.status == 200

    again = lab_cli(cli_env, "up", project, "--port", str(port))  # idempotent: reuses all of it
    assert again.returncode == 0 and "already serving" in again.stdout and "Seeded" not in again.stdout

    plan = lab_cli(cli_env, "manage", project, "--", "showmigrations", "demoapp")
    assert "[X] 0002_add_status_nullable" in plan.stdout
    assert "[ ] 0003_make_status_not_null_with_default" in plan.stdout  # never applied on up

    shell = lab_cli(cli_env, "manage", project, "--", "dbshell", "--", "-c", "SELECT 'psql ' || current_setting('server_version_num')")
    assert shell.returncode == 0 and "psql 16" in shell.stdout  # psql 16 of the embedded server is on PATH

    assert lab_cli(cli_env, "manage", project, "--", "migrate", "demoapp").returncode == 0
    plan = lab_cli(cli_env, "manage", project, "--", "showmigrations", "demoapp")
    assert "[X] 0003_make_status_not_null_with_default" in plan.stdout

    pid_file = os.path.join(cli_env["MIGRATIONLAB_HOME"], "run", f"{project}.pid")
    pid = int(open(pid_file).read())
    down = lab_cli(cli_env, "down", project, "--purge")
    assert down.returncode == 0 and "stopped the web server" in down.stdout and "stopped the embedded PostgreSQL" in down.stdout
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # nothing left running
    assert not os.path.exists(pid_file)
