"""The Docker path end to end, on a real Docker engine: `make test-docker` (never part of `make test`).

For each project checked, the Docker commands of its DEMO_COMMANDS.md run as written, read from the page, in page
order, from the project's folder (each block with `bash -e`: a failing command fails the check), with real
`docker compose`; and the page's own curl loop (real curl) runs beside the lesson, from its "Watch the API" section
until the page tears the stack down. What is checked:
- every command succeeds; `showmigrations` right after `up` shows the start migration applied and no lesson step;
  the seed seeds the rows asked for (right after `up`, and right after `down -v && up`); judge_locks judges every step;
- the curl loop (a request fails when it is anything but HTTP 200 or gets no answer within 3 s) fails requests
  during the risky step and none during the safe steps, nor before the lesson begins;
- the pip layer is built once for all projects: every build after the first of the run takes it from the cache;
- `docker compose down -v` leaves no container, volume or network of the project.

After each lesson block the check watches the loop for WATCH_ROUNDS more rounds, as the presenter would, before the
next one; a request counts for the block during (or after) which it started. Deploys of a release (proj02) are
reported, not judged: the page says the restart itself may refuse connections for a moment.

The seeds run at the pages' own sizes by default (10,000,000 rows for proj01's pair): the whole check took under
4 minutes on the 2-core machine it was written on, and proj01's risky step blocked the API for ~35 s (at 2,000,000
rows only ~6 s, two failed requests: too thin a margin). On a slower machine `make test-docker DOCKER_ROWS=N`
(DOCKER_E2E_LARGE_COUNT) runs every seed above N rows with N instead: a substitution, printed where it is made.

A last test repeats the race of issue 19 on purpose: a seed started before the web container has migrated (here:
before it even starts) waits for the start migration, then seeds.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field

import pytest

from migrationlab.scenarios import Project, get_project
from migrationlab.serving import port_is_free
from tests.docker_e2e.pages import Block, blocks, curl_loop

if not os.environ.get("MIGRATIONLAB_DOCKER_E2E"):
    pytest.skip("the Docker path end to end: `make test-docker` runs it", allow_module_level=True)

# The projects whose pages are run (DOCKER_E2E_PROJECTS=a,b runs others: `make test-docker PROJECTS=...`).
CHECKED = [name for name in os.environ.get("DOCKER_E2E_PROJECTS", "").split(",") if name] or [
    "proj01_add_not_null_constraint", "proj01_safe_backfill", "proj02_rename_column"]
LARGE_COUNT = int(os.environ.get("DOCKER_E2E_LARGE_COUNT", "10000000"))
WATCH_ROUNDS = 3
# Failsafes against a hung command or a silent loop, not measurements: everything ends long before.
BLOCK_FAILSAFE_SECONDS = 900
WATCH_FAILSAFE_SECONDS = 120

# The loop's line: "[10:31:02] list_large: ✅ SUCCESS 0.012s" or "... ❌ FAILED (000, blocked by migration) 3.001s".
LOOP_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (\w+): (✅ SUCCESS|❌ FAILED \((\w*)[^)]*\)) ([\d.]+)s$")
# Compose's environment is the check's, minus what would move the compose files off their defaults.
NOT_PASSED = ("COMPOSE_", "POSTGRES_", "DJANGO_", "DEMO_", "DATABASE_URL", "BUILDKIT_")

# (project, whether its build took the pip layer from the cache), in the order of this run.
BUILDS: list[tuple[str, bool]] = []
SUMMARY: list[str] = []


def say(text: str) -> None:
    print(text, flush=True)


def command_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(NOT_PASSED)}
    env["COMPOSE_PROGRESS"] = "plain"  # the build's steps as plain lines, CACHED or not
    return env


# -- the curl loop ----------------------------------------------------------------------------------------------

@dataclass
class Request:
    endpoint: str
    ok: bool
    code: str
    seconds: float
    started: float  # monotonic: when the line came, less the request's time_total


class CurlLoop:
    """The page's loop, run by bash as written, its lines read as they come."""

    def __init__(self, block: Block, cwd, env):
        self.endpoints = re.search(r"for endpoint in ([^;]+);", block.text).group(1).split()
        self.requests: list[Request] = []
        self.other_lines: list[str] = []
        self.ended = False
        self.changed = threading.Condition()
        self.process = subprocess.Popen(["bash", "-c", block.text], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        encoding="utf-8", start_new_session=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            received = time.monotonic()
            line = line.rstrip("\n")
            match = LOOP_LINE.match(line)
            with self.changed:
                if match:
                    self.requests.append(Request(match[1], match[2].startswith("✅"), match[3] or "200",
                                                 float(match[4]), received - float(match[4])))
                    if not self.requests[-1].ok:
                        say(f"      curl: {line}")
                else:
                    self.other_lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.ended = True
            self.changed.notify_all()

    def watch(self, rounds: int) -> None:
        """Until the loop has printed `rounds` more rounds (a line per endpoint each)."""
        with self.changed:
            target = len(self.requests) + rounds * len(self.endpoints)
            done = self.changed.wait_for(lambda: len(self.requests) >= target or self.ended,
                                         timeout=WATCH_FAILSAFE_SECONDS)
        assert done and not self.ended, f"the curl loop stopped printing: {self.other_lines[-5:]}"

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        self.reader.join(timeout=30)


# -- running a page's blocks ------------------------------------------------------------------------------------

def as_run(block: Block) -> tuple[str, list[str]]:
    """The block's text as it runs, and the substitutions made (a seed above LARGE_COUNT rows)."""
    made = []

    def smaller(match: re.Match) -> str:
        if int(match[1].replace("_", "").replace(",", "")) <= LARGE_COUNT:
            return match[0]
        made.append(f"--large-count {match[1]} runs as --large-count {LARGE_COUNT}")
        return f"--large-count {LARGE_COUNT}"

    return re.sub(r"--large-count (\S+)", smaller, block.text), made


def run_block(block: Block, project: Project, env: dict[str, str]) -> str:
    """Run the block's commands as written (bash -e) from the project's folder; their output, also printed."""
    text, substitutions = as_run(block)
    for substitution in substitutions:
        say(f"    SUBSTITUTION: {substitution}")
    say(f"  $ {block.section}:\n" + "\n".join(f"    $ {line}" for line in text.strip().splitlines()))
    process = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", text], cwd=project.folder, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, encoding="utf-8", errors="replace", start_new_session=True)
    failsafe = threading.Timer(BLOCK_FAILSAFE_SECONDS, lambda: os.killpg(process.pid, signal.SIGKILL))
    failsafe.start()
    output = []
    try:
        for line in process.stdout:
            output.append(line)
            if line.strip() and not line.startswith("#"):  # the build's step lines: kept, not printed
                say(f"      {line.rstrip()}")
        returncode = process.wait()
    finally:
        failsafe.cancel()
    text_out = "".join(output)
    assert returncode == 0, f"{project.name}: `{text.strip()}` exited {returncode}:\n{text_out[-3000:]}"
    return text_out


def pip_layer_cached(build_output: str) -> bool:
    """Whether the build took `RUN pip install` from the cache (BuildKit's plain progress: `#N CACHED`)."""
    step = re.search(r"^#(\d+) \[[^\]]*\] RUN pip install", build_output, re.M)
    assert step, "the build output names no pip install step"
    return re.search(rf"^#{step[1]} CACHED$", build_output, re.M) is not None


def compose_objects(project: Project) -> dict[str, list[str]]:
    """The project's containers, volumes and networks Docker still has (by compose's label, and by name)."""
    label = f"label=com.docker.compose.project={project.name}"
    found = {}
    listings = {"containers": ["ps", "-a"], "volumes": ["volume", "ls"], "networks": ["network", "ls"]}
    for kind, listing in listings.items():
        labelled = subprocess.run(["docker", *listing, "-q", "--filter", label], capture_output=True, text=True,
                                  check=True).stdout.split()
        field_ = "{{.Names}}" if kind == "containers" else "{{.Name}}"
        named = [name for name in subprocess.run(["docker", *listing, "--format", field_], capture_output=True,
                                                 text=True, check=True).stdout.split()
                 if name.startswith((f"{project.name}_", f"{project.name}-"))]
        found[kind] = sorted(set(labelled) | set(named))
    return found


def left_over(project: Project) -> dict[str, list[str]]:
    return {kind: names for kind, names in compose_objects(project).items() if names}


# -- phases of the lesson ---------------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    kind: str  # baseline | risky | safe | deploy | other
    started: float
    ended: float = float("inf")
    requests: list[Request] = field(default_factory=list)

    @property
    def failures(self) -> list[Request]:
        return [request for request in self.requests if not request.ok]


def phase_of(block: Block, project: Project) -> tuple[str, str]:
    steps = {step.migration: step for step in project.steps}
    applied = [steps[name] for name in block.migrations() if name in steps]
    if applied:
        kind = "risky" if any(step.kind == "risky" for step in applied) else "safe"
        return ", ".join(step.migration for step in applied), kind
    if "docker compose up" in block.text:
        return "deploy: " + " ".join(block.commands()), "deploy"
    return " ".join(block.commands())[:60], "other"


def attribute(loop: CurlLoop, phases: list[Phase]) -> None:
    for request in loop.requests:
        for phase in phases:
            if phase.started <= request.started < phase.ended:
                phase.requests.append(request)
                break


# -- the check --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def engine():
    for tool in ("docker", "curl", "bash"):
        assert shutil.which(tool), f"{tool} is not on PATH"
    done = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    assert done.returncode == 0, f"docker compose (v2) does not run: {done.stderr.strip()}"
    yield
    say("\nSUMMARY (make test-docker)\n" + "\n".join(SUMMARY))


@pytest.mark.parametrize("name", CHECKED)
def test_demo_commands_run_as_written_and_the_curl_loop_sees_what_the_lesson_claims(name):
    project = get_project(name)
    page = (project.folder / "DEMO_COMMANDS.md").read_text()
    page_blocks = [block for block in blocks(page) if block.is_docker or block.is_curl_loop]
    assert curl_loop(page) in page_blocks
    env = command_environment()
    began = time.monotonic()

    if left_over(project):  # an earlier run that was killed: start clean
        say(f"  {name}: removing what an earlier run left: {left_over(project)}")
        subprocess.run(["docker", "compose", "down", "-v"], cwd=project.folder, env=env, capture_output=True)
    for port in (project.web_port, project.db_port):
        assert port_is_free(port), (f"127.0.0.1:{port} is taken (the lab serving {name}? "
                                    f"`python -m migrationlab down {name}`): the check needs the project's own ports")

    loop: CurlLoop | None = None
    phases: list[Phase] = []
    judged = False
    try:
        for block in page_blocks:
            if block.is_curl_loop:
                loop = CurlLoop(block, project.folder, env)
                phases.append(Phase("before the lesson", "baseline", time.monotonic()))
                loop.watch(WATCH_ROUNDS)
                continue
            if loop is not None and "docker compose down" in block.text:  # the lesson is over
                phases[-1].ended = time.monotonic()
                loop.stop()
                attribute(loop, phases)
                loop, judged = None, True
            if loop is not None:
                phase_name, kind = phase_of(block, project)
                phases[-1].ended = now = time.monotonic()
                phases.append(Phase(phase_name, kind, now))
                run_block(block, project, env)
                loop.watch(WATCH_ROUNDS)
                continue
            output = run_block(block, project, env)
            check_output(block, project, output)
        assert judged, "the page never tore its stack down with `docker compose down`"
    finally:
        if loop is not None:
            loop.stop()
        if left_over(project):
            subprocess.run(["docker", "compose", "down", "-v"], cwd=project.folder, env=env, capture_output=True)

    # `docker compose down -v`, the page's last Docker command, left nothing behind.
    assert "docker compose down -v" in page_blocks[-1].text
    assert left_over(project) == {}

    seconds = time.monotonic() - began
    lines = [f"{name} ({seconds:.0f} s):"]
    for phase in phases:
        codes = sorted({request.code for request in phase.failures})
        lines.append(f"  {phase.kind:8} {phase.name[:70]:70} {len(phase.failures):3} failed of "
                     f"{len(phase.requests):3}{'  (' + ', '.join(codes) + ')' if codes else ''}")
    SUMMARY.extend(lines)
    say("\n".join(lines))

    def failed(kind):
        return {phase.name: len(phase.failures) for phase in phases if phase.kind == kind}

    assert all(phase.requests for phase in phases), "every phase was watched"
    assert failed("baseline") == {"before the lesson": 0}
    assert [count for count in failed("safe").values() if count] == [], f"safe steps failed requests: {failed('safe')}"
    risky = failed("risky")
    if any(step.kind == "risky" for step in project.steps):
        assert risky and all(risky.values()), f"a risky step failed no request: {risky}"
    else:
        assert risky == {}


def check_output(block: Block, project: Project, output: str) -> None:
    """What a block outside the lesson must show."""
    if "--build" in block.text:
        web = subprocess.run(["docker", "compose", "ps", "-q", "web"], cwd=project.folder, capture_output=True,
                             text=True, check=True).stdout.strip()
        health = subprocess.run(["docker", "inspect", "--format", "{{.State.Health.Status}}", web],
                                capture_output=True, text=True, check=True).stdout.strip()
        assert health == "healthy", f"`up --wait` returned with web {health}"
        cached = pip_layer_cached(output)
        say(f"    pip layer: {'CACHED' if cached else 'built'}")
        if BUILDS:  # built once for all projects: only the run's first build may install it
            assert cached, f"{project.name}'s build installed the dependencies again (after {BUILDS})"
        BUILDS.append((project.name, cached))
    if "showmigrations" in block.text:
        assert re.search(rf"^ \[X\] {re.escape(project.start)}$", output, re.M), "the start is not applied"
        for step in project.steps:
            assert re.search(rf"^ \[ \] {re.escape(step.migration)}$", output, re.M), f"{step.migration} applied"
    if "seed_large_table" in block.text:
        count = int(re.search(r"--large-count (\S+)", as_run(block)[0])[1])
        assert f"Seeded {count:,} rows" in output
    if "judge_locks" in block.text:
        for step in project.steps:
            assert step.migration in output, f"judge_locks said nothing of {step.migration}"


def test_a_seed_started_before_the_web_container_migrates_waits_for_the_start_migration():
    """The race of issue 19, made certain: the database up, the seed started in a container of its own before web
    has even started (nothing has migrated), then web started. The seed waits, in one line, and then seeds."""
    project = get_project(CHECKED[0])
    env = command_environment()
    compose = ["docker", "compose"]
    assert left_over(project) == {}, "the project's stack is up: the check needs it down"
    try:
        subprocess.run([*compose, "up", "-d", "--wait", "db"], cwd=project.folder, env=env, check=True,
                       capture_output=True, timeout=BLOCK_FAILSAFE_SECONDS)
        seed = subprocess.Popen([*compose, "run", "--rm", "--no-deps", "web", "python", "manage.py",
                                 "seed_large_table", "--large-count", "1000"],
                                cwd=project.folder, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        first_line = seed.stdout.readline()
        say(f"    seed, before web started: {first_line.rstrip()}")
        assert first_line.startswith(f"Waiting up to 120 s: demoapp is not at its start migration {project.start} yet")
        subprocess.run([*compose, "up", "-d", "--wait", "web"], cwd=project.folder, env=env, check=True,
                       capture_output=True, timeout=BLOCK_FAILSAFE_SECONDS)
        rest, errors = seed.communicate(timeout=BLOCK_FAILSAFE_SECONDS)
        say("\n".join(f"    {line}" for line in rest.splitlines()))
        assert seed.returncode == 0, errors
        assert "Seeded 1,000 rows" in rest
    finally:
        subprocess.run([*compose, "down", "-v"], cwd=project.folder, env=env, capture_output=True)
    assert left_over(project) == {}
