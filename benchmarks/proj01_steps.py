"""How long each step of the proj01 pair takes, at a given table size.

    .venv/bin/python benchmarks/proj01_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj01_steps.py --rows 10000000

Each project gets a fresh database seeded at its start migration; every step is `migrate demoapp <step>`,
timed inside Django (no interpreter start-up). For the batched backfill, the slowest batch transaction too.
"""

import argparse

from common import batch_note, drop_database, fresh_database, machine, migrate_timed, timed

from migrationlab.scenarios import projects_of_scenario


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}")
    table = ["| project | step | kind | seconds | note |", "|---|---|---|---|---|"]
    for project in projects_of_scenario("1"):
        url = fresh_database(f"bench_{project.name}")
        try:
            timed(project.name, url, f"call_command('migrate', 'demoapp', '{project.start}', verbosity=0)", echo=False)
            seconds, _ = timed(project.name, url, f"call_command('seed_large_table', large_count={args.rows})", echo=False)
            table.append(f"| {project.name} | seed {args.rows:,} rows | - | {seconds:.1f} | |")
            for step in project.steps:
                seconds, _, reports = migrate_timed(project.name, url, step.migration)
                note = batch_note(reports.get("large_user"))
                table.append(f"| {project.name} | {step.migration} | {step.kind} | {seconds:.2f} | {note} |")
        finally:
            drop_database(f"bench_{project.name}")
    print("\n".join(table))


if __name__ == "__main__":
    main()
