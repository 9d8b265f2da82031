"""proj08_drop_indexes: how long each step takes, and what it does to the endpoint's lookup.

    .venv/bin/python benchmarks/proj08_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj08_steps.py --rows 10000000

A fresh database seeded at the start migration; each step is `migrate demoapp <step>`, timed inside Django, with
no report running (so this is the DDL's own time; behind a report both steps last as long as the report: see the
showdown). Before the steps and after each one: the latency of /list_large/?device_id=N (the endpoint's view,
called in the project's Django without HTTP) over --lookups random devices that have events, median and p99, and
the plan of its query (`manage.py index_usage --explain`). With both indexes and without the unused one the plan
is the same index scan; without the device_id index it is a sequential scan of the whole table.
"""

import argparse
import json
import re

from common import drop_database, fresh_database, machine, timed

from migrationlab.scenarios import get_project

PROJECT = "proj08_drop_indexes"
EVENTS_PER_DEVICE = 4  # scenario.toml: device_id = (i + 3) / 4

LOOKUPS = """
import random
from django.test import RequestFactory
from migrationlab import web
factory = RequestFactory()
devices = [random.Random(8).randint(1, {devices}) for _ in range({count})]
def lookup(device):
    response = web.list_large(factory.get('/list_large/', {{'device_id': device}}))
    assert response.status_code == 200 and len(json.loads(response.content)['rows']) == {per_device}, response.content
for device in devices[:5]:  # the connection and Django's caches warm, as in a running server
    lookup(device)
latencies = []
for device in devices:
    before = time.perf_counter()
    lookup(device)
    latencies.append(time.perf_counter() - before)
print('LATENCIES ' + json.dumps(latencies))
call_command('index_usage', explain=str(devices[0]))
"""


def lookup_latency(url: str, rows: int, count: int) -> tuple[float, float, str, str]:
    """Median and p99 (ms) of `count` lookups, the plan's scan line and its execution time."""
    body = LOOKUPS.format(devices=max(rows // EVENTS_PER_DEVICE, 1), count=count, per_device=EVENTS_PER_DEVICE)
    _, output = timed(PROJECT, url, body, echo=False)
    latencies = sorted(json.loads(re.search(r"LATENCIES (\[.*\])", output).group(1)))
    plan = output.split("the plan of its query", 1)[1]
    scan = next(line.strip().removeprefix("->").strip() for line in plan.splitlines() if "Scan" in line)
    executed = re.search(r"Execution Time: ([\d.]+ ms)", plan).group(1)
    median = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return median, p99, re.sub(r"\s+\(cost=.*", "", scan), executed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--lookups", type=int, default=100, help="lookups per measurement (default 100)")
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}; {args.lookups} lookups per measurement")
    project = get_project(PROJECT)
    database = f"bench_{PROJECT}"
    url = fresh_database(database)
    table = ["| after | step seconds | lookup median | lookup p99 | plan of the lookup | its execution time |",
             "|---|---|---|---|---|---|"]

    def measure(label: str, seconds: str) -> None:
        median, p99, scan, executed = lookup_latency(url, args.rows, args.lookups)
        table.append(f"| {label} | {seconds} | {median:.2f} ms | {p99:.2f} ms | {scan} | {executed} |")

    try:
        timed(PROJECT, url, f"call_command('migrate', 'demoapp', '{project.start}', verbosity=0)", echo=False)
        seconds, _ = timed(PROJECT, url, f"call_command('seed_large_table', large_count={args.rows})", echo=False)
        table.append(f"| seed {args.rows:,} rows | {seconds:.1f} | | | | |")
        _, listing = timed(PROJECT, url, "call_command('index_usage')", echo=False)
        print(listing[listing.index(f"{project.large_table}:"):].strip())
        measure(f"{project.start} (start: both indexes)", "-")
        for step in project.steps:
            seconds, _ = timed(PROJECT, url, f"call_command('migrate', 'demoapp', '{step.migration}', verbosity=0)",
                               echo=False)
            measure(f"{step.migration} ({step.kind})", f"{seconds:.2f}")
    finally:
        drop_database(database)
    print("\n".join(table))


if __name__ == "__main__":
    main()
