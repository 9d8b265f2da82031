"""The scenario catalog: every project's `scenario.toml`, read once, used by the CLI, the tests and the docs.

A project's scenario.toml is its machine-readable story: the lesson, the migration it starts at, the ordered
steps the demo applies, and for each step the claim PostgreSQL must confirm (what waits, and for how long).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from migrationlab import REPO_ROOT

# What concurrent traffic does while a step runs, as judged from pg_locks (see migrationlab.lockjudge):
#   never      - never waits on the migration;
#   briefly    - waits only behind transactions that touch no rows, or one batch of rows;
#   throughout - waits behind a transaction that works through the whole table.
WAIT_CLAIMS = ("never", "briefly", "throughout")
STEP_KINDS = ("risky", "safe")
# What the showdown starts beside a step's migration (see Actor).
ACTOR_KINDS = ("long_query", "previous_release")
PROJECT_NAME = re.compile(r"^proj(\d\d)_[a-z0-9_]+$")


class ScenarioError(ValueError):
    """A scenario.toml is missing or malformed, or a project/scenario name is unknown."""


@dataclass(frozen=True)
class Actor:
    """Something the showdown starts just before a step's migration and keeps until the project's run ends.

    long_query        - a report session that reads the large table and keeps it (ACCESS SHARE) for `seconds`;
    previous_release  - a second web server of the project, started with `env` added to its environment (what
                        selects the release still serving traffic), probed like the main one.

    In scenario.toml:  actors = [{kind = "long_query", seconds = 20}]
    """

    kind: str
    seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    migration: str
    kind: str
    reads: str
    writes: str
    what: str
    actors: tuple[Actor, ...] = ()


@dataclass(frozen=True)
class Project:
    name: str
    folder: Path
    scenario: int
    variant: int
    title: str
    lesson: str
    start: str
    large_model: str
    small_model: str
    large_table: str
    small_table: str
    write_field: str
    seed_columns: dict[str, str]
    steps: tuple[Step, ...] = field(default_factory=tuple)
    # /list_large/?<lookup_field>=value filters on that column (the lookup an index lesson is about).
    lookup_field: str | None = None
    # The query string of the read probes (showdown, judge); "{id}" becomes a row number, e.g.
    # "email=user{id}@example.com". Empty: the plain /list_large/.
    read_query: str = ""

    @property
    def web_port(self) -> int:
        return 8000 + 10 * self.scenario + self.variant

    @property
    def db_port(self) -> int:
        return 5400 + 10 * self.scenario + self.variant

    @property
    def settings_module(self) -> str:
        return f"{self.name}.settings"


def _require(data: dict, key: str, where: Path, kind: type = str):
    if key not in data:
        raise ScenarioError(f"{where}: missing '{key}'")
    value = data[key]
    if not isinstance(value, kind):
        raise ScenarioError(f"{where}: '{key}' must be a {kind.__name__}")
    return value


def _optional(data: dict, key: str, where: Path) -> str | None:
    return _require(data, key, where) if key in data else None


def _load_actors(raw: dict, where: Path) -> tuple[Actor, ...]:
    actors = []
    for entry in raw.get("actors", []):
        step = raw.get("migration", "?")
        if not isinstance(entry, dict) or entry.get("kind") not in ACTOR_KINDS:
            raise ScenarioError(f"{where}: step {step}: an actor is a table with kind one of {ACTOR_KINDS}")
        unknown = set(entry) - {"kind", "seconds", "env"}
        if unknown:
            raise ScenarioError(f"{where}: step {step}: unknown actor key(s) {', '.join(sorted(unknown))}")
        seconds, env = entry.get("seconds", 0.0), entry.get("env", {})
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ScenarioError(f"{where}: step {step}: actor seconds must be a number >= 0")
        if entry["kind"] == "long_query" and seconds <= 0:
            raise ScenarioError(f"{where}: step {step}: a long_query actor needs seconds > 0")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ScenarioError(f"{where}: step {step}: actor env must be a table of strings")
        actors.append(Actor(kind=entry["kind"], seconds=float(seconds), env=dict(env)))
    return tuple(actors)


def load_project(folder: Path) -> Project:
    path = folder / "scenario.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ScenarioError(f"{folder.name}: no scenario.toml") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(f"{path}: {error}") from None
    match = PROJECT_NAME.match(folder.name)
    if not match:
        raise ScenarioError(f"{folder.name}: a project folder is named projNN_lesson")
    tables = _require(data, "tables", path, dict)
    steps = []
    for raw in _require(data, "steps", path, list):
        step = Step(
            migration=_require(raw, "migration", path),
            kind=_require(raw, "kind", path),
            reads=_require(raw, "reads", path),
            writes=_require(raw, "writes", path),
            what=_require(raw, "what", path),
            actors=_load_actors(raw, path),
        )
        if step.kind not in STEP_KINDS:
            raise ScenarioError(f"{path}: step {step.migration}: kind must be one of {STEP_KINDS}")
        for claim in (step.reads, step.writes):
            if claim not in WAIT_CLAIMS:
                raise ScenarioError(f"{path}: step {step.migration}: '{claim}' is not one of {WAIT_CLAIMS}")
        steps.append(step)
    return Project(
        name=folder.name,
        folder=folder,
        scenario=int(match.group(1)),
        variant=_require(data, "variant", path, int),
        title=_require(data, "title", path),
        lesson=_require(data, "lesson", path),
        start=_require(data, "start", path),
        large_model=_require(tables, "large_model", path),
        small_model=_require(tables, "small_model", path),
        large_table=_require(tables, "large_table", path),
        small_table=_require(tables, "small_table", path),
        write_field=_require(tables, "write_field", path),
        seed_columns=dict(_require(data, "seed", path, dict)),
        steps=tuple(steps),
        lookup_field=_optional(tables, "lookup_field", path),
        read_query=_optional(tables, "read_query", path) or "",
    )


def all_projects(root: Path = REPO_ROOT) -> list[Project]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and (p / "scenario.toml").exists())
    return [load_project(folder) for folder in folders]


def get_project(name: str, root: Path = REPO_ROOT) -> Project:
    for project in all_projects(root):
        if project.name == name:
            return project
    known = ", ".join(p.name for p in all_projects(root))
    raise ScenarioError(f"unknown project '{name}' (known: {known})")


def projects_of_scenario(selector: str, root: Path = REPO_ROOT) -> list[Project]:
    """'1' or '01' -> every project of scenario 1; a project name -> that project."""
    if selector.isdigit():
        chosen = [p for p in all_projects(root) if p.scenario == int(selector)]
        if not chosen:
            raise ScenarioError(f"no project implements scenario {selector}")
        return chosen
    return [get_project(selector, root)]
