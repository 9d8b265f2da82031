"""The docs are replayed, not trusted: every no-Docker command of every DEMO_COMMANDS.md and of the README runs,
in order, in a lab of its own, at a small row count. A command that drifted from the code fails here, not on stage.

What is changed before running a line: `.venv/bin/python` becomes this interpreter, row counts become ROWS, `up`
gets a free `--port` (the project's own port may be taken on the machine running the tests), and a report's
`pg_sleep(N)` (meant for a second terminal, beside a step) sleeps 0 s. `make install` is skipped (the tests run
inside the installed venv). The pages share one lab (one initdb); each page ends with `down PROJECT --purge`. `showdown` lines are checked, not run (a showdown takes
minutes; tests/test_showdown_end_to_end.py runs one): their arguments must parse and name existing projects.
`judge_locks` lines are checked the same way: tests/test_lessons.py runs that very command on every project.
`catalog` lines too: tests/test_catalog.py runs the catalog; and `watch` lines (it runs until Ctrl-C):
tests/test_watch.py runs it in a terminal.
The Docker variants are checked in tests/test_docker_path.py. The README's table of claims is generated from the
projects' scenario.toml (migrationlab.scenarios.claims_table) and must be current.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from migrationlab import REPO_ROOT
from migrationlab.cli import build_parser
from migrationlab.scenarios import (
    README, all_projects, claims_table, get_project, projects_of_scenario, readme_with_claims,
)
from tests.conftest import free_port, starts_postgresql

ROWS = 20_000
FENCE = re.compile(r"```bash\n(.*?)```", re.S)


def no_docker_lines(markdown: str) -> list[str]:
    """The lab's command lines, in the order the page gives them (comments and the curl loop left out)."""
    lines = []
    for block in FENCE.findall(markdown):
        for line in block.splitlines():
            command = line.split("  #")[0].strip()
            if command.startswith(".venv/bin/python"):
                lines.append(command)
    return lines


def pages() -> list[Path]:
    return [REPO_ROOT / "README.md", *(p.folder / "DEMO_COMMANDS.md" for p in all_projects())]


def runnable(command: str) -> list[str]:
    argv = shlex.split(command)
    argv[0] = sys.executable
    for flag in ("--rows", "--large-count"):
        if flag in argv:
            argv[argv.index(flag) + 1] = str(ROWS)
    if argv[3:4] == ["up"] and "--port" not in argv:
        argv += ["--port", str(free_port())]
    if argv[3:4] == ["up"] and "--rows" not in argv:  # not the default 1,000,000
        argv += ["--rows", str(ROWS)]
    return [re.sub(r"pg_sleep\(\s*[\d.]+\s*\)", "pg_sleep(0)", arg) for arg in argv]


@pytest.fixture(scope="module")
@starts_postgresql
def shared_lab(tmp_path_factory):
    env = dict(os.environ, MIGRATIONLAB_HOME=str(tmp_path_factory.mktemp("docs-lab")),
               MIGRATIONLAB_PG_PORT=str(free_port()))
    env.pop("DATABASE_URL", None)
    yield env
    subprocess.run([sys.executable, "-m", "migrationlab", "down", "--purge"], cwd=REPO_ROOT, env=env,
                   capture_output=True, stdin=subprocess.DEVNULL)


def test_the_readmes_table_of_claims_is_the_scenarios_own():
    readme = README.read_text()
    assert readme_with_claims(readme, claims_table(all_projects())) == readme, (
        "README.md's table of claims is out of date: python -m migrationlab.scenarios claims --write")


def test_every_page_has_lab_commands():
    for page in pages():
        assert no_docker_lines(page.read_text()), f"{page.relative_to(REPO_ROOT)} gives no no-Docker command"


@pytest.mark.parametrize("page", pages(), ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_the_pages_lab_commands_run_in_order(page, shared_lab):
    env = shared_lab
    ran = []
    try:
        for command in no_docker_lines(page.read_text()):
            argv = runnable(command)
            if argv[3:4] == ["showdown"]:
                arguments = build_parser().parse_args(argv[3:])  # exits (SystemExit) on a bad argument
                assert arguments.scenario == "all" or projects_of_scenario(arguments.scenario), command
                continue
            if argv[3:4] == ["catalog"]:  # minutes of work: tests/test_catalog.py runs it
                build_parser().parse_args(argv[3:])
                continue
            if argv[3:4] == ["watch"]:  # runs until Ctrl-C: tests/test_watch.py runs it in a terminal
                arguments = build_parser().parse_args(argv[3:])
                assert (arguments.project is None or get_project(arguments.project)) and (
                    arguments.project or (arguments.url and arguments.database_url)), command
                continue
            if "judge_locks" in argv:
                assert argv[3:5] == ["manage", argv[4]] and get_project(argv[4]), command
                continue
            done = subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                                  stdin=subprocess.DEVNULL, timeout=600)
            ran.append(command)
            assert done.returncode == 0, (f"{page.relative_to(REPO_ROOT)}: `{command}` failed after {ran[:-1]}:\n"
                                          f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    finally:
        for project in all_projects():
            if any(project.name in command for command in ran):
                subprocess.run([sys.executable, "-m", "migrationlab", "down", project.name, "--purge"],
                               cwd=REPO_ROOT, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    assert ran, "nothing ran"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return [REPO_ROOT / name for name in tracked.stdout.split()]


@pytest.mark.parametrize("page", markdown_files(), ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_relative_link_names_a_file_of_the_repository(page):
    """A link to a chart or a page that was never committed is a dead link on GitHub: the clone has no such file."""
    dead = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):  # a web address, mailto:, or an anchor
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            dead.append(target)
    assert not dead, f"{page.relative_to(REPO_ROOT)} links to files that are not in the repository: {dead}"


def test_every_demo_page_offers_the_live_view_beside_the_curl_loop():
    """Both paths: watch against the Docker ports and against the lab, after the loop in the same section."""
    from migrationlab.scenarios import all_projects

    for project in all_projects():
        text = (project.folder / "DEMO_COMMANDS.md").read_text()
        loop = text.index("while true; do")
        docker = (f"migrationlab watch --url http://127.0.0.1:{project.web_port} --database-url "
                  f"postgresql://postgres:postgres@127.0.0.1:{project.db_port}/risky_migrations")
        assert text.find(docker) > loop, project.name
        assert text.find(f"migrationlab watch {project.name}") > loop, project.name
