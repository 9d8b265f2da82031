"""What the benchmarks share: a fresh database on the lab's embedded PostgreSQL, and timed Django code."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from migrationlab import lab  # noqa: E402
from migrationlab.scenarios import get_project  # noqa: E402
from migrationlab.serving import project_environment  # noqa: E402

TIMED = """
import json, time
from django.core.management import call_command
started = time.monotonic()
{body}
print("BENCHMARK " + json.dumps({{"seconds": time.monotonic() - started}}))
"""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    import os
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores {cpu}, {memory_gib:.0f} GiB, Python {platform.python_version()}, PostgreSQL 16 (embedded)"


def fresh_database(name: str) -> str:
    server = lab.embedded_server()
    server.start()
    lab.drop_database(server.dsn(), name)
    lab.create_database(server.dsn(), name)
    return server.dsn(name)


def drop_database(name: str) -> None:
    server = lab.embedded_server()
    lab.drop_database(server.dsn(), name)


def timed(project_name: str, database_url: str, body: str, echo: bool = True) -> tuple[float, str]:
    """Run `body` (Python, in the project's Django) through manage.py shell; its seconds and its output."""
    project = get_project(project_name)
    done = subprocess.run(
        [sys.executable, str(project.folder / "manage.py"), "shell", "-c", TIMED.format(body=body)],
        cwd=project.folder, env=project_environment(project, database_url), capture_output=True, text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"benchmark step failed: {done.stderr.strip().splitlines()[-1:]}")
    # Progress lines may leave the cursor mid-line: find the marker anywhere.
    marker = re.search(r"BENCHMARK (\{.*\})", done.stdout)
    output = done.stdout[: marker.start()] + done.stdout[marker.end():]
    if echo:
        print(output)
    return json.loads(marker.group(1))["seconds"], output


@contextmanager
def seeded_at_start(project, rows: int):
    """A fresh database for the project at its start migration, seeded with `rows` rows: (its URL, the seconds
    the seeding took). Dropped afterwards."""
    name = f"bench_{project.name}"
    url = fresh_database(name)
    try:
        timed(project.name, url, f"call_command('migrate', 'demoapp', '{project.start}', verbosity=0)", echo=False)
        seconds, _ = timed(project.name, url, f"call_command('seed_large_table', large_count={rows})", echo=False)
        yield url, seconds
    finally:
        drop_database(name)
