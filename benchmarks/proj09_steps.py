"""How long each step of proj09_alter_defaults takes at a given table size, and which steps rewrite the table.

    .venv/bin/python benchmarks/proj09_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj09_steps.py --rows 10000000

A fresh database seeded at the start migration; every step is `migrate demoapp <step>`, timed inside Django (no
interpreter start-up), with no other session on the table: this is what each change costs by itself. A rewrite
shows as a new file for the table (pg_relation_filenode); the size is the table's own (pg_relation_size).

The steps with a long_query actor (0002, 0003) are instant here. Behind a report they last as long as the report,
and what that does to traffic (0002 stalls every read and write, 0003 none for more than about 0.5 s) is measured
under load by the showdown: `.venv/bin/python -m migrationlab showdown 9 --rows N`.
"""

import argparse

import psycopg2
from common import batch_note, drop_database, fresh_database, machine, migrate_timed, timed

from migrationlab.scenarios import get_project

PROJECT = "proj09_alter_defaults"


def table_file(url: str, table: str) -> tuple[int, int]:
    """(filenode, size in bytes) of the table's own file."""
    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_relation_filenode(%s::regclass), pg_relation_size(%s::regclass)", [table, table])
            return cursor.fetchone()
    finally:
        connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    project = get_project(PROJECT)
    print(f"machine: {machine()}; rows: {args.rows:,}")
    table = ["| step | kind | seconds | table file | size after | note |", "|---|---|---|---|---|---|"]
    database = f"bench_{project.name}"
    url = fresh_database(database)
    try:
        timed(project.name, url, f"call_command('migrate', 'demoapp', '{project.start}', verbosity=0)", echo=False)
        seconds, _ = timed(project.name, url, f"call_command('seed_large_table', large_count={args.rows})", echo=False)
        filenode, size = table_file(url, project.large_table)
        table.append(f"| seed {args.rows:,} rows | - | {seconds:.1f} | | {size / 2**20:,.0f} MiB | |")
        for step in project.steps:
            seconds, _, reports = migrate_timed(project.name, url, step.migration)
            after, size = table_file(url, project.large_table)
            rewritten = "NEW (rewritten)" if after != filenode else "same"
            filenode = after
            notes = []
            if step.actors:
                notes.append("no report running here; behind one: showdown 9")
            if batch_note(reports.get(project.large_table)):
                notes.append(batch_note(reports[project.large_table]))
            table.append(f"| {step.migration} | {step.kind} | {seconds:.2f} | {rewritten} | "
                         f"{size / 2**20:,.0f} MiB | {'; '.join(notes)} |")
    finally:
        drop_database(database)
    print("\n".join(table))


if __name__ == "__main__":
    main()
