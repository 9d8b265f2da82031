"""The release mechanism: DEMO_RELEASE (settings.DEMO_RELEASE) picks the code a process runs, scenario.toml says
which release each step belongs to, and the lab serves, deploys and runs manage.py as a given release.

Every release ships every migration; an older one runs with migrations it does not know about. What each step
does to the release still serving is judged in tests/test_lessons.py (previous_release claims).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from migrationlab import REPO_ROOT
from migrationlab.releases import chosen_release, release_of_database, why_it_cannot_serve
from migrationlab.scenarios import ScenarioError, all_projects, get_project, load_project
from migrationlab.serving import project_environment
from migrationlab.showdown.schema import REPORT_SCHEMA
from tests.conftest import ROWS, free_port, manage, query

PROJECTS = [project for project in all_projects() if project.start_release is not None]


def manage_as(name: str, release: int, database_url: str, *args: str) -> subprocess.CompletedProcess:
    """manage.py ARGS as release `release` of the project; output captured, a failure raised."""
    project = get_project(name)
    done = subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), *args], cwd=project.folder,
        env=project_environment(project, database_url, extra=project.release_env(release)),
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)} as release {release}:\n{done.stdout}\n{done.stderr}"
    return done


def answer_of_release(name: str, release: int, database_url: str, method: str, path: str) -> tuple[int, dict]:
    """One request to the release's own code (Django's test client, as a server would answer it): status, JSON."""
    done = manage_as(name, release, database_url, "shell", "-c", (
        "import json\n"
        "from django.test import Client\n"
        f"response = Client(raise_request_exception=False, HTTP_HOST='127.0.0.1').{method}('{path}')\n"
        "print('ANSWER', json.dumps([response.status_code, json.loads(response.content)]))\n"
    ))
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("ANSWER ")]
    status, body = json.loads(line.removeprefix("ANSWER "))
    return status, body


# -- DEMO_RELEASE and scenario.toml -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [project.name for project in PROJECTS])
def test_the_default_release_is_the_latest_and_its_models_match_the_migrations(name, database):
    project = get_project(name)
    printed = manage(name, database, "shell", "-c", "from django.conf import settings; print(settings.DEMO_RELEASE)")
    assert printed.stdout.strip().splitlines()[-1] == str(project.latest_release)
    # An older release's models differ from the migrations' end state (that is the point), yet it runs with them.
    older = subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), "makemigrations", "--check", "--dry-run", "demoapp"],
        cwd=project.folder, env=project_environment(project, database, extra=project.release_env(1)),
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert older.returncode != 0, "release 1 knows other fields than the latest migrations"


@pytest.mark.parametrize("name", [project.name for project in PROJECTS])
def test_each_step_names_its_release_and_the_one_still_serving(name):
    project = get_project(name)
    assert project.start_release == 1
    for step in project.steps:
        assert step.release in (2, 3), step
        assert step.serving_release == step.release - 1, step
        assert step.previous_release in ("fails", "works"), step
    assert [step.kind for step in project.steps if step.previous_release == "fails"] == ["risky"]


def test_a_bad_release_is_refused_in_one_line(database):
    project = get_project("proj02_rename_column")
    assert chosen_release(project, None) == chosen_release(project, "") == 3
    for bad in ("0", "4", "two", "-1"):
        with pytest.raises(ScenarioError, match=r"DEMO_RELEASE must be a release of proj02_rename_column \(1 to 3\)"):
            chosen_release(project, bad)
    # A project without releases ignores DEMO_RELEASE (left over in a shell from another project).
    assert chosen_release(get_project("proj01_safe_backfill"), "7") == 1
    served = subprocess.run(
        [sys.executable, "-m", "migrationlab", "serve", project.name, "--bind", f"127.0.0.1:{free_port()}"],
        cwd=REPO_ROOT, env=project_environment(project, database, extra={"DEMO_RELEASE": "9"}),
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
    )
    assert served.returncode == 1 and "Traceback" not in served.stderr
    assert served.stderr.strip() == ("error: DEMO_RELEASE must be a release of proj02_rename_column (1 to 3), "
                                     "got '9'")


def scenario_with(tmp_path: Path, name: str, old: str, new: str) -> Path:
    folder = tmp_path / name
    shutil.copytree(REPO_ROOT / name, folder, ignore=shutil.ignore_patterns("__pycache__"))
    text = (folder / "scenario.toml").read_text()
    assert old in text
    (folder / "scenario.toml").write_text(text.replace(old, new, 1))
    return folder


@pytest.mark.parametrize("old, new, message", [
    ('actors = [{kind = "previous_release", env = {DEMO_RELEASE = "1"}}]\nwhat', "what",
     "a previous_release claim needs a previous_release actor"),
    ('previous_release = "works"', 'previous_release = "maybe"', "previous_release must be one of"),
    ('env = {DEMO_RELEASE = "1"}', 'env = {DEMO_RELEASE = "2"}', "sets DEMO_RELEASE to a release from 1 to 1"),
    ("release = 2\n", "release = 0\n", "'release' must be a whole number >= 1"),
    ("start_release = 1\n", "", "steps name releases, but the project has no start_release"),
])
def test_scenario_release_mistakes_are_one_line_errors(tmp_path, old, new, message):
    folder = scenario_with(tmp_path, "proj02_rename_column", old, new)
    with pytest.raises(ScenarioError, match=message):
        load_project(folder)


def test_which_release_may_serve_follows_the_migrations_and_the_claims():
    project = get_project("proj05_drop_column")
    start = {"0001_initial"}
    release_two = start | {"0002_stop_using_legacy_code"}
    dropped = release_two | {"0003_drop_legacy_code_column"}
    everything = dropped | {"0004_remove_catalog_page"}
    assert [release_of_database(project, applied) for applied in (start, release_two, dropped, everything)] == [1, 2, 2, 3]
    assert why_it_cannot_serve(project, 2, start) == ("release 2 needs its migrations applied first "
                                                      "(missing: 0002_stop_using_legacy_code)")
    assert why_it_cannot_serve(project, 1, release_two) is None  # both releases serve, side by side
    assert why_it_cannot_serve(project, 2, dropped) is None
    assert why_it_cannot_serve(project, 2, everything) == ("0004_remove_catalog_page (release 3) is applied, and "
                                                           "release 2's requests fail after it")
    assert why_it_cannot_serve(project, 1, dropped) == ("0003_drop_legacy_code_column (release 3) is applied, and "
                                                        "nothing says release 1 works after it")
    assert why_it_cannot_serve(project, 3, everything) is None
    assert release_of_database(get_project("proj01_safe_backfill"), start) is None


def test_a_release_deploys_after_its_last_step():
    project = get_project("proj02_rename_column")
    deployed = {step.migration: project.deployed_after(step) for step in project.steps}
    assert deployed == {"0002_rename_cust_name_in_django_only": None, "0003_add_reference_synced_with_ref": None,
                        "0004_backfill_reference_batched": 2, "0005_remove_ref": None,
                        "0006_rename_amt_to_amount": 3}
    without = dataclasses.replace(project, start_release=None, steps=tuple(
        dataclasses.replace(step, release=None) for step in project.steps))
    assert {project.deployed_after(step) for step in without.steps} == {None}


# -- serve: the container's command never migrates past the start, whichever release it runs --------------------

@pytest.mark.parametrize("name", [project.name for project in PROJECTS])
def test_serve_brings_a_fresh_database_to_the_start_and_never_moves_it_afterwards(name, seeded):
    project = get_project(name)
    database = seeded(name, ROWS)  # at the start migration
    at_start = manage_as(name, 1, database, "prepare_database").stdout
    assert f"demoapp is at its start ({project.start})" in at_start and "makemigrations" not in at_start
    manage(name, database, "migrate", "demoapp")  # every step, as the latest release would
    applied = query(database, "SELECT name FROM django_migrations WHERE app = 'demoapp' ORDER BY id")
    for release in range(1, project.latest_release + 1):
        output = manage_as(name, release, database, "prepare_database").stdout
        assert "leaving it as it is" in output
        assert query(database, "SELECT name FROM django_migrations WHERE app = 'demoapp' ORDER BY id") == applied


# -- the lab: up serves the start release, up --release deploys, manage --release runs as a release ---------------

def lab(env, *args):
    return subprocess.run([sys.executable, "-m", "migrationlab", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=600)


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as failure:
        return failure.code, json.loads(failure.read())


def test_the_lab_serves_deploys_and_runs_manage_as_a_release(own_lab):
    env = own_lab
    name, port = "proj02_rename_column", free_port()
    run = Path(env["MIGRATIONLAB_HOME"]) / "run"
    try:
        up = lab(env, "up", name, "--rows", "2000", "--port", str(port))
        assert up.returncode == 0, up.stdout + up.stderr
        assert ", release 1, log" in up.stdout and (run / f"{name}.release").read_text() == "1"
        assert set(get(port, "/list_large/")[1]["rows"][0]) == {"id", "cust_name", "ref", "amt", "updated_at"}

        refused = lab(env, "up", name, "--release", "2")
        assert refused.returncode == 1 and refused.stderr.strip().startswith(
            f"error: cannot serve release 2 of {name}: release 2 needs its migrations applied first (missing: "
            "0002_rename_cust_name_in_django_only")
        for bad in ("4", "x"):
            for command in (["up", name, "--release", bad], ["manage", name, "--release", bad, "--", "check"]):
                done = lab(env, *command)
                assert done.returncode == 1
                assert done.stderr.strip() == f"error: --release must be a release of {name} (1 to 3), got '{bad}'"

        printed = lab(env, "manage", name, "--release", "2", "--", "shell", "-c",
                      "from django.conf import settings; print(settings.DEMO_RELEASE)")
        assert printed.stdout.strip().splitlines()[-1] == "2"
        migrated = lab(env, "manage", name, "--release", "2", "--", "migrate", "demoapp",
                       "0004_backfill_reference_batched")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        assert get(port, "/list_large/")[0] == 200  # release 1 still serves, unharmed

        deployed = lab(env, "up", name, "--release", "2")
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert "web: deploying release 2: stopped release 1" in deployed.stdout
        assert (run / f"{name}.port").read_text() == str(port) and (run / f"{name}.release").read_text() == "2"
        status, body = get(port, "/list_large/")
        assert status == 200 and {"customer_name", "reference", "amt"} <= set(body["rows"][0])
        again = lab(env, "up", name)
        assert ", release 2)" in again.stdout  # already serving: left as it is

        migrated = lab(env, "manage", name, "--release", "3", "--", "migrate", "demoapp")
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        status, body = get(port, "/list_large/")  # release 2 still serves, and fails
        assert status == 503 and "column large_order.amt does not exist" in body["error"]
        back = lab(env, "up", name, "--release", "1")
        assert back.returncode == 1 and "0005_remove_ref (release 3) is applied, and nothing says release 1 " \
                                        "works after it" in back.stderr
        deployed = lab(env, "up", name, "--release", "3", "--port", str(free_port()))  # a deploy may move it
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        assert (run / f"{name}.release").read_text() == "3"
        status, body = get(int((run / f"{name}.port").read_text()), "/list_large/")
        assert status == 200 and "amount" in body["rows"][0]
    finally:
        lab(env, "down", "--purge")


# -- the showdown: the previous release served and probed during its steps, each release deployed blue-green ------

def test_the_showdown_probes_the_previous_release_and_deploys_each_release(pg, lab_env, tmp_path):
    """Structure and the lesson's outcome, not timings: every step with a previous_release actor has that release's
    endpoints in its report; each release is deployed after its last step; a risky step's previous release fails
    (every request of it fails between the migration and the deploy, and a deploy takes a gunicorn start), while in
    a safe step no request of any release is refused or answered with an error (a timeout would be the machine)."""
    name = "proj05_drop_column"
    done = subprocess.run(
        [sys.executable, "-m", "migrationlab", "showdown", name, "--rows", "20000", "--out", str(tmp_path)],
        env={**os.environ, **lab_env}, cwd=REPO_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    project = get_project(name)
    (reported,) = report["projects"]
    for step, measured in zip(project.steps, reported["steps"], strict=True):
        assert [actor["kind"] for actor in measured["actors"]] == ["previous_release"]
        assert f"DEMO_RELEASE={step.serving_release}" in measured["actors"][0]["description"]
        previous = {endpoint: measured["endpoints"][f"previous_release/{endpoint}"]
                    for endpoint in ("list_large", "update_order")}
        assert all(stats["requests"] > 0 for stats in previous.values()), measured
        deployed = project.deployed_after(step)
        assert (measured.get("deploy") or {}).get("release") == deployed, measured
        if step.kind == "safe":
            for stats in measured["endpoints"].values():
                assert stats["failures"] == stats["timeouts"], measured
        else:
            assert all(stats["failures"] > 0 for stats in previous.values()), measured
            assert measured["deploy"]["failing_from_s"] is not None
            assert "previous release: reads" in measured["verdict"]
    assert "deployed release 3" in done.stdout and "  the previous release " in done.stdout
    with Image.open(tmp_path / "chart.png") as image:
        assert image.format == "PNG"
    assert not list((Path(lab_env["MIGRATIONLAB_HOME"]) / "run").glob("*.pid"))  # no server left behind
