"""The talk's curl loop beside a project's steps, in a lab of its own: what the presenter, or an attendee replaying
DEMO_COMMANDS.md without Docker, sees in the loop's terminal.

    .venv/bin/python benchmarks/curl_loop_steps.py proj10_large_deletes --rows 10000000

A private lab (MIGRATIONLAB_HOME in a temporary folder, a PostgreSQL port of its own): `up PROJECT --rows N`, then
the README's curl loop (bash and curl, as written there, on this lab's web port) runs in the background while each
step of scenario.toml is applied with `manage PROJECT -- migrate demoapp STEP`, PAUSE seconds apart; a step's
append_rows actor runs first, as DEMO_COMMANDS.md has it (`manage PROJECT -- append_rows --rows N`). Then, per step
(from its start to the next one's), each endpoint's FAILED lines out of its lines and its slowest answer, and every
FAILED line as the loop printed it. A line belongs to the window its time falls in: the loop prints it when curl
returns. Projects whose steps deploy releases (proj02, proj05) are not supported: their releases need the showdown.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import machine

from migrationlab import REPO_ROOT
from migrationlab.scenarios import get_project
from migrationlab.serving import free_port

LOOP = re.compile(r"```bash\n(PORT=\d+\nwhile true; do\n.*?\ndone)\n```", re.S)
LINE = re.compile(r"\[(\d\d:\d\d:\d\d)\] (\w+): (✅ SUCCESS|❌ FAILED \((\d+),[^)]*\)) ([\d.]+)s")


def the_curl_loop(port: int) -> str:
    """The README's curl loop, on `port`."""
    loop = LOOP.search((REPO_ROOT / "README.md").read_text()).group(1)
    return re.sub(r"^PORT=\d+", f"PORT={port}", loop)


def lab(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrationlab", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--pause", type=float, default=10.0, help="seconds between two steps (default 10)")
    args = parser.parse_args()
    project = get_project(args.project)
    if project.start_release is not None:
        raise SystemExit(f"{project.name}: its steps deploy releases; use the showdown")
    if not shutil.which("curl"):
        raise SystemExit("curl is not installed: the loop is the talk's, with real curl")
    print(f"machine: {machine()}; project: {project.name}; rows: {args.rows:,}; load: {os.getloadavg()[0]:.2f}")

    home = Path(tempfile.mkdtemp(prefix="curl-loop-lab-"))
    os.chmod(home, 0o755)  # the lab's PostgreSQL runs as another user when this runs as root
    port = free_port()
    env = dict(os.environ, MIGRATIONLAB_HOME=str(home), MIGRATIONLAB_PG_PORT=str(free_port()))
    for variable in ("DATABASE_URL", "DEMO_RELEASE", "MIGRATIONLAB_APPLICATION_NAME"):
        env.pop(variable, None)
    log = home / "loop.log"
    windows: list[tuple[str, datetime, float]] = []  # (what ran, when it started, its seconds)
    try:
        up = lab(env, "up", project.name, "--rows", str(args.rows), "--port", str(port))
        if up.returncode != 0:
            raise SystemExit(f"up failed: {(up.stderr or up.stdout).strip().splitlines()[-1:]}")
        with open(log, "w") as out:
            loop = subprocess.Popen(["bash", "-c", the_curl_loop(port)], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            time.sleep(args.pause)  # the loop before the first step
            for step in project.steps:
                commands = [(f"append_rows --rows {actor.rows}", ["append_rows", "--rows", str(actor.rows)])
                            for actor in step.actors if actor.kind == "append_rows"]
                commands.append((step.migration, ["migrate", "demoapp", step.migration]))
                for name, command in commands:
                    started, begun = datetime.now(), time.monotonic()
                    done = lab(env, "manage", project.name, "--", *command)
                    windows.append((name, started, time.monotonic() - begun))
                    if done.returncode != 0:
                        raise SystemExit(f"{name} failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
                    time.sleep(args.pause)
        finally:
            os.killpg(loop.pid, signal.SIGTERM)
            loop.wait()
        print(f"load after: {os.getloadavg()[0]:.2f}")
        report(log.read_text(), windows)
    finally:
        lab(env, "down", "--purge")
        shutil.rmtree(home, ignore_errors=True)


def report(output: str, windows: list[tuple[str, datetime, float]]) -> None:
    day = windows[0][1].date()
    lines = []
    for text in output.splitlines():
        match = LINE.match(text)
        if match:
            when = datetime.combine(day, datetime.strptime(match.group(1), "%H:%M:%S").time())
            lines.append((when, match.group(2), match.group(3).startswith("✅"), float(match.group(5)), text))
    print("\n| window (from the start of ... to the next) | seconds it ran | list_large failed | slowest "
          "| update_order failed | slowest |\n|---|---|---|---|---|---|")
    starts = [(name, started.replace(microsecond=0), seconds) for name, started, seconds in windows]
    bounds = [("(before the first step)", datetime.min, 0.0), *starts]
    for index, (name, start, seconds) in enumerate(bounds):
        end = bounds[index + 1][1] if index + 1 < len(bounds) else datetime.max
        mine = [line for line in lines if start <= line[0] < end]
        cells = []
        for endpoint in ("list_large", "update_order"):
            of = [line for line in mine if line[1] == endpoint]
            slowest = max((line[3] for line in of), default=0.0)
            cells += [f"{sum(not line[2] for line in of)} of {len(of)}", f"{slowest:.3f} s"]
        print(f"| {name} | {seconds:.1f} | {' | '.join(cells)} |")
    failed = [line[4] for line in lines if not line[2]]
    print(f"\nFAILED lines ({len(failed)}):" + "".join(f"\n    {text}" for text in failed))


if __name__ == "__main__":
    main()
