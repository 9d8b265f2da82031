"""How long each step of the proj03 pair takes, and what the index does for the lookup, at a given table size.

    .venv/bin/python benchmarks/proj03_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj03_steps.py --rows 10000000

Each project gets a fresh database seeded at its start migration; every step is `migrate demoapp <step>`, timed
inside Django (no interpreter start-up), with the indexes it built on the large table and their sizes. Before the
first step and after the last, the endpoint's lookup (/list_large/?email=...: WHERE email = %s ORDER BY id LIMIT
10): its plan's scan node and execution time from EXPLAIN (ANALYZE), and the median and slowest of --lookups
lookups of random existing emails, timed from psycopg2 (round trip included).
"""

import argparse
import random
import statistics
import time

import psycopg2
from common import machine, seeded_at_start, timed

from migrationlab.scenarios import projects_of_scenario

LOOKUP = "SELECT id, name, email, updated_at FROM large_user WHERE email = %s ORDER BY id LIMIT 10"


def scan_nodes(plan: dict) -> list[str]:
    """The scan nodes of an EXPLAIN (FORMAT JSON) plan, e.g. 'Parallel Seq Scan' or 'Index Scan using x'."""
    found = []
    if "Scan" in plan["Node Type"]:
        index = plan.get("Index Name")
        found.append(f"{plan['Node Type']} using {index}" if index else plan["Node Type"])
    for child in plan.get("Plans", []):
        found.extend(scan_nodes(child))
    return found


def lookup_stats(url: str, rows: int, lookups: int) -> str:
    """'<scan node>, EXPLAIN ANALYZE x ms; median y ms, slowest z ms over n lookups'."""
    pick = random.Random(3)  # the same emails before and after
    emails = [f"user{pick.randint(1, rows)}@example.com" for _ in range(lookups)]
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        connection.autocommit = True
        cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + LOOKUP, [emails[0]])
        (explained,) = cursor.fetchone()[0]
        seconds = []
        for email in emails:
            started = time.perf_counter()
            cursor.execute(LOOKUP, [email])
            found = cursor.fetchall()
            seconds.append(time.perf_counter() - started)
            assert [row[2] for row in found] == [email], f"the lookup of {email} found {found}"
    connection.close()
    node = " + ".join(scan_nodes(explained["Plan"]))
    return (f"{node}, EXPLAIN ANALYZE {explained['Execution Time']:.2f} ms; median "
            f"{statistics.median(seconds) * 1000:.2f} ms, slowest {max(seconds) * 1000:.2f} ms over {lookups} lookups")


def large_table_indexes(url: str) -> dict[str, int]:
    """name -> size in bytes of every index on large_user."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index "
                       "WHERE indrelid = 'large_user'::regclass")
        sizes = dict(cursor.fetchall())
    connection.close()
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--lookups", type=int, default=50)
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}")
    steps = ["| project | step | kind | seconds | indexes built on large_user (size) |", "|---|---|---|---|---|"]
    lookups = ["| project | lookup before the steps | lookup after the steps |", "|---|---|---|"]
    for project in projects_of_scenario("3"):
        with seeded_at_start(project, args.rows) as (url, seconds):
            steps.append(f"| {project.name} | seed {args.rows:,} rows | - | {seconds:.1f} | |")
            before = lookup_stats(url, args.rows, args.lookups)
            for step in project.steps:
                existing = large_table_indexes(url)
                seconds, _ = timed(project.name, url, f"call_command('migrate', 'demoapp', '{step.migration}')")
                built = {name: size for name, size in large_table_indexes(url).items() if name not in existing}
                note = ", ".join(f"{name} ({size / 2**20:.0f} MiB)" for name, size in sorted(built.items()))
                steps.append(f"| {project.name} | {step.migration} | {step.kind} | {seconds:.2f} | {note} |")
            lookups.append(f"| {project.name} | {before} | {lookup_stats(url, args.rows, args.lookups)} |")
    print("\n".join(steps))
    print()
    print("\n".join(lookups))


if __name__ == "__main__":
    main()
