"""Releases: one project holds the code of several releases, and DEMO_RELEASE picks the one a process runs.

A deploy is never atomic: while the next release's migration runs, the previous release still serves traffic,
against the same database. A lesson about that runs both for real. The project's models declare the fields each
release knows under `if settings.DEMO_RELEASE >= 2:` (settings.DEMO_RELEASE, read once from the environment;
default: the latest release, the one the migrations are written for). Every release ships every migration: an
older release simply runs with migrations it does not know about (gunicorn never looks at them).

scenario.toml says which release each step belongs to (`release`), which release serves while it runs (its
previous_release actor) and what happens to that release's requests (`previous_release`: fails or works).
"""

from __future__ import annotations

import json
import subprocess
import sys

from migrationlab.scenarios import RELEASE_VARIABLE, Project, ScenarioError


def release_range(project: Project) -> str:
    return releases_text(range(project.start_release or 1, project.latest_release + 1))


def releases_text(releases: range) -> str:
    first, last = releases[0], releases[-1]
    return f"{first}" if first == last else f"{first} to {last}"


def chosen_release(project: Project, value: str | int | None) -> int:
    """The release `value` names (DEMO_RELEASE, or --release); None or empty: the latest. ScenarioError (one line)
    for anything that is not one of the project's releases. A project without releases ignores it (release 1)."""
    if project.start_release is None:
        return project.latest_release
    return release_among(project.name, range(project.start_release, project.latest_release + 1), value)


def release_among(name: str, releases: range, value: str | int | None) -> int:
    """The release of project `name` that `value` names, one of `releases`; None or empty: the latest."""
    if value is None or value == "":
        return releases[-1]
    text = str(value).strip()
    if not text.isdigit() or int(text) not in releases:
        raise ScenarioError(f"{RELEASE_VARIABLE} must be a release of {name} ({releases_text(releases)}), "
                            f"got '{value}'")
    return int(text)


def migrations_of(project: Project, release: int) -> list[str]:
    """The lesson steps that belong to releases up to `release`: what its code needs applied."""
    return [step.migration for step in project.steps if step.release is not None and step.release <= release]


def why_it_cannot_serve(project: Project, release: int, applied: set[str]) -> str | None:
    """Why `release` cannot serve a database where `applied` migrations are applied, from scenario.toml alone: a
    migration of its own still missing, or a later migration applied that scenario.toml does not say it survives
    (a release serves on while the next release's migrations run, where their previous_release claim says
    "works"; anything later is the code of a release it does not know). None if it can serve."""
    missing = [name for name in migrations_of(project, release) if name not in applied]
    if missing:
        return f"release {release} needs its migrations applied first (missing: {', '.join(missing)})"
    for step in project.steps:
        if step.migration not in applied or (step.release or 0) <= release:
            continue
        if step.serving_release == release and step.previous_release == "fails":
            return f"{step.migration} (release {step.release}) is applied, and release {release}'s requests fail after it"
        if step.serving_release != release or step.previous_release != "works":
            return (f"{step.migration} (release {step.release}) is applied, and nothing says release {release} works "
                    "after it")
    return None


def answers_of(project: Project, release: int, row_id: int, database_url: str | None = None) -> dict:
    """The status codes `release` answers the API's read and write with (manage.py call_endpoints, run as that
    release: a process loads one release's models), on `database_url` or the database this process's settings
    name."""
    from migrationlab.serving import project_environment

    done = subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), "call_endpoints", "--id", str(row_id)],
        cwd=project.folder, env=project_environment(project, database_url, extra=project.release_env(release)),
        capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise ScenarioError(f"calling release {release} of {project.name} failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def outcome(answers: dict) -> str:
    """As the talk's curl loop counts them: works: every request answered 200; fails: none did; partly: some."""
    codes = [answers["list_large"], answers["update_order"]]
    if all(code == 200 for code in codes):
        return "works"
    return "fails" if all(code != 200 for code in codes) else "partly"


def release_of_database(project: Project, applied: set[str]) -> int | None:
    """The newest release whose migrations are all applied: what to serve on that database (the start release on a
    fresh one). None in a project without releases."""
    if project.start_release is None:
        return None
    return max(release for release in range(project.start_release, project.latest_release + 1)
               if set(migrations_of(project, release)) <= applied)


def judge_releases(project: Project, step, judgement, row_id: int) -> None:
    """After `step` was applied (and its locks judged): call the release still serving, and the release deployed
    after the step if it is its release's last, as their own code against the migrated database; note what they
    answered on the judgement (migrationlab/lockjudge.py), where `holds` compares it with the claim."""
    if step.previous_release is not None:
        judgement.claimed_previous_release = step.previous_release
        judgement.previous_release = outcome(answers_of(project, step.serving_release, row_id))
    deployed = project.deployed_after(step)
    if deployed is not None:
        judgement.deployed_release = outcome(answers_of(project, deployed, row_id))
