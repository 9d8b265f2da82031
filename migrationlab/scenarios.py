"""The scenario register: every project's `scenario.toml`, read once, used by the CLI, the tests and the docs.

A project's scenario.toml is its machine-readable story: the lesson, the migration it starts at, the ordered
steps the demo applies, and for each step the claim PostgreSQL must confirm (what waits, and for how long).

`python -m migrationlab.scenarios claims` prints every step's claims as the README's Markdown table
(`claims_table`); `... claims --write` puts it in the README, between its two `claims` markers.
"""

from __future__ import annotations

import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from migrationlab import REPO_ROOT

# What concurrent traffic does while a step runs, as judged from pg_locks (see migrationlab.lockjudge):
#   never      - never waits on the migration;
#   briefly    - waits only behind work that does not grow with the table: a transaction that touches fewer than
#                a tenth of its rows, or one batch of a series;
#   throughout - waits behind a transaction that works through the table (a tenth of its rows or more, not one
#                batch of a series). migrationlab/judgecore.py has the rule.
WAIT_CLAIMS = ("never", "briefly", "throughout")
STEP_KINDS = ("risky", "safe")
# What the showdown starts beside a step's migration (see Actor).
ACTOR_KINDS = ("long_query", "previous_release", "append_rows")
# A project whose lesson spans releases (code and schema changing together) runs one release at a time: this
# environment variable selects it (settings.DEMO_RELEASE; default: the latest). What a step does to the requests of
# the release still serving while it runs (its previous_release actor), checked by the judge:
RELEASE_VARIABLE = "DEMO_RELEASE"
PREVIOUS_RELEASE_CLAIMS = ("fails", "works")
PROJECT_NAME = re.compile(r"^proj(\d\d)_[a-z0-9_]+$")


class ScenarioError(ValueError):
    """A scenario.toml is missing or malformed, or a project/scenario name is unknown."""


@dataclass(frozen=True)
class Actor:
    """Something the showdown starts just before a step's migration.

    long_query        - a report session that reads the large table and keeps it (ACCESS SHARE) for `seconds`,
                        until the project's run ends;
    previous_release  - a second web server of the project, started with `env` added to its environment (what
                        selects the release still serving traffic: DEMO_RELEASE), probed like the main one until
                        the step ends.
    append_rows       - `rows` new rows inserted into the large table, as scenario.toml's [append] describes them
                        (`manage.py append_rows`), before the step: time passing, and what the application wrote
                        meanwhile (an event log's new events, which a retention step must leave in place).

    In scenario.toml:  actors = [{kind = "long_query", seconds = 20}]
    """

    kind: str
    seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    rows: int = 0


@dataclass(frozen=True)
class Step:
    migration: str
    kind: str
    reads: str
    writes: str
    what: str
    actors: tuple[Actor, ...] = ()
    # The claims for the referenced table (a project with one, see Project.referenced_table): what its reads and
    # writes wait for. None in a project without one.
    referenced_reads: str | None = None
    referenced_writes: str | None = None
    # In a project with releases: the release this step's migration belongs to, and what it does to the requests of
    # the release still serving while it runs (named by the step's previous_release actor): "fails" or "works".
    release: int | None = None
    previous_release: str | None = None

    @property
    def serving_release(self) -> int | None:
        """The release its previous_release actor runs (RELEASE_VARIABLE in the actor's env), if it has one."""
        for actor in self.actors:
            if actor.kind == "previous_release" and RELEASE_VARIABLE in actor.env:
                return int(actor.env[RELEASE_VARIABLE])
        return None


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
    # The model fields /list_large/ and /update_order/ read and return; empty: all of them. A project whose steps
    # add columns lists the ones its table has at the start: the release serving traffic while the steps run
    # does not read a column that is not there yet.
    served_fields: tuple[str, ...] = ()
    # A second table that the large one refers to (a foreign key lesson: customers), or None. It is seeded before
    # the large table with `referenced_rows` rows (columns: `referenced_seed_columns`, as [seed]), and probed too:
    # /list_referenced/ and /update_referenced/ (which sets its write_field). Every step then claims
    # referenced_reads and referenced_writes as well.
    referenced_model: str | None = None
    referenced_table: str | None = None
    referenced_rows: int = 0
    referenced_seed_columns: dict[str, str] = field(default_factory=dict)
    # The query string of the write probes (showdown, judge), as read_query: e.g. "create=1&id={id}" (insert a copy
    # of row {id}: the insert a release makes). Empty: POST /update_order/ naming a row.
    write_query: str = ""
    # A lesson that spans releases: the release serving at the start migration (each step then names its own).
    # None: the project has one release.
    start_release: int | None = None
    # [append]: the rows the application goes on writing after the start (an event log's new events), an SQL
    # expression of i per column as [seed]; `manage.py append_rows` and the append_rows actor insert them. Empty:
    # the project has none.
    append_columns: dict[str, str] = field(default_factory=dict)

    @property
    def latest_release(self) -> int:
        """The release whose code matches the last migration: what runs unless DEMO_RELEASE says otherwise."""
        return max([self.start_release or 1, *(step.release or 1 for step in self.steps)])

    def release_env(self, release: int | None) -> dict[str, str]:
        """The environment that makes a process run `release` (empty for None or a project without releases)."""
        return {RELEASE_VARIABLE: str(release)} if release is not None and self.start_release else {}

    def deployed_after(self, step: Step) -> int | None:
        """The release deployed once `step` has run: its own, if it is the last step of that release."""
        if step.release is None:
            return None
        later = self.steps[self.steps.index(step) + 1:]
        return step.release if not later or later[0].release != step.release else None

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


def _string_list(data: dict, key: str, where: Path) -> tuple[str, ...]:
    values = data.get(key, [])
    if not isinstance(values, list) or not all(isinstance(value, str) and value for value in values):
        raise ScenarioError(f"{where}: '{key}' must be a list of field names")
    return tuple(values)


def _load_actors(raw: dict, where: Path) -> tuple[Actor, ...]:
    actors = []
    for entry in raw.get("actors", []):
        step = raw.get("migration", "?")
        if not isinstance(entry, dict) or entry.get("kind") not in ACTOR_KINDS:
            raise ScenarioError(f"{where}: step {step}: an actor is a table with kind one of {ACTOR_KINDS}")
        unknown = set(entry) - {"kind", "seconds", "env", "rows"}
        if unknown:
            raise ScenarioError(f"{where}: step {step}: unknown actor key(s) {', '.join(sorted(unknown))}")
        seconds, env = entry.get("seconds", 0.0), entry.get("env", {})
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
            raise ScenarioError(f"{where}: step {step}: actor seconds must be a number >= 0")
        if entry["kind"] == "long_query" and seconds <= 0:
            raise ScenarioError(f"{where}: step {step}: a long_query actor needs seconds > 0")
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise ScenarioError(f"{where}: step {step}: actor env must be a table of strings")
        rows = entry.get("rows", 0)
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise ScenarioError(f"{where}: step {step}: actor rows must be a whole number >= 0")
        if entry["kind"] == "append_rows" and rows <= 0:
            raise ScenarioError(f"{where}: step {step}: an append_rows actor needs rows > 0")
        actors.append(Actor(kind=entry["kind"], seconds=float(seconds), env=dict(env), rows=rows))
    return tuple(actors)


def _referenced(data: dict, tables: dict, path: Path) -> dict:
    """The optional referenced table: referenced_model, referenced_table and referenced_rows in [tables], its
    column expressions in [referenced_seed]. All of them or none."""
    keys = ("referenced_model", "referenced_table", "referenced_rows")
    given = [key for key in keys if key in tables]
    if not given and "referenced_seed" not in data:
        return {}
    if len(given) < len(keys):
        missing = ", ".join(key for key in keys if key not in tables)
        raise ScenarioError(f"{path}: a referenced table needs {', '.join(keys)} in [tables]; missing {missing}")
    rows = _require(tables, "referenced_rows", path, int)
    seed = _require(data, "referenced_seed", path, dict) if "referenced_seed" in data else {}
    if isinstance(rows, bool) or rows < 1:
        raise ScenarioError(f"{path}: 'referenced_rows' must be a whole number >= 1")
    return {
        "referenced_model": _require(tables, "referenced_model", path),
        "referenced_table": _require(tables, "referenced_table", path),
        "referenced_rows": rows,
        "referenced_seed_columns": dict(seed),
    }


def _referenced_claims(raw: dict, has_referenced: bool, path: Path) -> dict:
    """A step's referenced_reads / referenced_writes: required with a referenced table, refused without one."""
    step = raw.get("migration", "?")
    given = [key for key in ("referenced_reads", "referenced_writes") if key in raw]
    if not has_referenced:
        if given:
            raise ScenarioError(f"{path}: step {step}: {', '.join(given)} without a referenced table in [tables]")
        return {}
    return {key: _require(raw, key, path) for key in ("referenced_reads", "referenced_writes")}


def _whole_number(data: dict, key: str, where: str) -> int | None:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ScenarioError(f"{where}: '{key}' must be a whole number >= 1")
    return value


def _check_releases(project: Project, path: Path) -> None:
    """Releases go up step by step from start_release; a previous_release claim names the release it is about (the
    step's previous_release actor, DEMO_RELEASE = an earlier release)."""
    steps_with = [step for step in project.steps if step.release is not None]
    if project.start_release is None:
        if steps_with or any(step.previous_release for step in project.steps):
            raise ScenarioError(f"{path}: steps name releases, but the project has no start_release")
        return
    if len(steps_with) != len(project.steps):
        raise ScenarioError(f"{path}: with a start_release, every step names its release")
    current = project.start_release
    for step in project.steps:
        where = f"{path}: step {step.migration}"
        if step.release < current:
            raise ScenarioError(f"{where}: release {step.release} comes after release {current}")
        current = step.release
        for actor in step.actors:
            if actor.kind != "previous_release":
                continue
            value = actor.env.get(RELEASE_VARIABLE, "")
            if not value.isdigit() or not project.start_release <= int(value) < step.release:
                raise ScenarioError(f"{where}: a previous_release actor sets {RELEASE_VARIABLE} to a release from "
                                    f"{project.start_release} to {step.release - 1}")
        if step.previous_release is not None:
            if step.previous_release not in PREVIOUS_RELEASE_CLAIMS:
                raise ScenarioError(f"{where}: previous_release must be one of {PREVIOUS_RELEASE_CLAIMS}")
            if step.serving_release is None:
                raise ScenarioError(f"{where}: a previous_release claim needs a previous_release actor")


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
    referenced = _referenced(data, tables, path)
    steps = []
    for raw in _require(data, "steps", path, list):
        step = Step(
            migration=_require(raw, "migration", path),
            kind=_require(raw, "kind", path),
            reads=_require(raw, "reads", path),
            writes=_require(raw, "writes", path),
            what=_require(raw, "what", path),
            actors=_load_actors(raw, path),
            **_referenced_claims(raw, bool(referenced), path),
            release=_whole_number(raw, "release", f"{path}: step {raw.get('migration', '?')}"),
            previous_release=_optional(raw, "previous_release", path),
        )
        if step.kind not in STEP_KINDS:
            raise ScenarioError(f"{path}: step {step.migration}: kind must be one of {STEP_KINDS}")
        for claim in (step.reads, step.writes, *(c for c in (step.referenced_reads, step.referenced_writes) if c)):
            if claim not in WAIT_CLAIMS:
                raise ScenarioError(f"{path}: step {step.migration}: '{claim}' is not one of {WAIT_CLAIMS}")
        steps.append(step)
    project = Project(
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
        served_fields=_string_list(tables, "served_fields", path),
        **referenced,
        write_query=_optional(tables, "write_query", path) or "",
        start_release=_whole_number(data, "start_release", str(path)),
        append_columns=dict(_require(data, "append", path, dict)) if "append" in data else {},
    )
    appends = any(actor.kind == "append_rows" for step in project.steps for actor in step.actors)
    if appends and not project.append_columns:
        raise ScenarioError(f"{path}: an append_rows actor needs an [append] table (the rows to insert)")
    _check_releases(project, path)
    return project


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


# -- the README's table of claims ------------------------------------------------------------------------------------
README = REPO_ROOT / "README.md"
CLAIMS_MARKERS = ("<!-- claims: generated by `python -m migrationlab.scenarios claims --write` -->",
                  "<!-- claims: end -->")


def _claim_cells(project: Project, step: Step) -> tuple[str, str]:
    """A step's reads and writes as the table shows them: the referenced table's claims in parentheses, and what
    the release still serving makes of it after the writes."""
    reads, writes = step.reads, step.writes
    if project.referenced_table:
        reads += f" ({project.referenced_table}: {step.referenced_reads})"
        writes += f" ({project.referenced_table}: {step.referenced_writes})"
    if step.previous_release:
        writes += f"; previous release {step.previous_release}"
    return reads, writes


def claims_table(projects: list[Project]) -> str:
    """Every step of every project with its claims: one Markdown row each (a step judged behind a report, its
    long_query actor, says so)."""
    lines = ["| project | step | kind | reads | writes |", "|---|---|---|---|---|"]
    for project in projects:
        for step in project.steps:
            behind = " (behind a report)" if any(actor.kind == "long_query" for actor in step.actors) else ""
            cells = (project.name, step.migration + behind, step.kind, *_claim_cells(project, step))
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readme_with_claims(readme: str, table: str) -> str:
    """The README's text with `table` between its claims markers."""
    start, end = CLAIMS_MARKERS
    if start not in readme or end not in readme:
        raise ScenarioError(f"README.md has no {start} ... {end} around its table of claims")
    before, rest = readme.split(start, 1)
    return f"{before}{start}\n{table}{end}{rest.split(end, 1)[1]}"


def main(argv: list[str]) -> int:
    if argv not in (["claims"], ["claims", "--write"]):
        print("usage: python -m migrationlab.scenarios claims [--write]", file=sys.stderr)
        return 2
    table = claims_table(all_projects())
    if argv[1:]:
        README.write_text(readme_with_claims(README.read_text(), table))
        print(f"wrote the table of claims in {README}")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
