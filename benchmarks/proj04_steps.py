"""How long each step of the proj04 pair takes at a given table size, and the safe sequence against the rewrite.

    .venv/bin/python benchmarks/proj04_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj04_steps.py --rows 10000000

Each project gets a fresh database seeded at its start migration; every step is `migrate demoapp <step>`, timed
inside Django (no interpreter start-up). For the batched copy, its batch times and the closing VACUUM. Then both
totals: the risky project's ALTER COLUMN TYPE (the time reads and writes wait) and the whole safe sequence (during
which nothing waits for more than a batch or a catalog change), and their ratio.
"""

import argparse

from common import batch_note, machine, migrate_timed, seeded_at_start, timed

from migrationlab.scenarios import projects_of_scenario

RISKY, SAFE = "proj04_change_column_type", "proj04_safe_backfill"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}")
    table = ["| project | step | kind | seconds | note |", "|---|---|---|---|---|"]
    totals = {}
    for project in projects_of_scenario("4"):
        with seeded_at_start(project, args.rows) as (url, seed_seconds):
            table.append(f"| {project.name} | seed {args.rows:,} rows | - | {seed_seconds:.1f} | |")
            totals[project.name] = 0.0
            for step in project.steps:
                seconds, _, reports = migrate_timed(project.name, url, step.migration)
                totals[project.name] += seconds
                table.append(f"| {project.name} | {step.migration} | {step.kind} | {seconds:.2f} | {batch_note(reports.get('large_record'))} |")
    floor = one_update_floor(args.rows)
    print("\n".join(table))
    print()
    print(f"risky total, the rewrite under ACCESS EXCLUSIVE ({RISKY}): {totals[RISKY]:.1f} s")
    print(f"safe total, every step ({SAFE}): {totals[SAFE]:.1f} s")
    print(f"ratio safe / risky: {totals[SAFE] / totals[RISKY]:.2f} (the issue's goal at 10,000,000 rows: at most 2.5)")
    print(f"floor, the copy as ONE UPDATE of every row in one transaction (no batches, no VACUUM; {SAFE} at "
          f"{FLOOR_AT}): {floor:.1f} s = {floor / totals[RISKY]:.2f} x the rewrite")


FLOOR_AT = "0003_sync_created_at_new_with_trigger"


def one_update_floor(rows: int) -> float:
    """What no in-place copy can beat: every row's new column written by one UPDATE, in one transaction.

    The batched copy writes the same new row versions (and their WAL and index entries) in 10,000-row pieces;
    against the rewrite, which writes each page once, this is the least an UPDATE-based copy costs here."""
    project = next(p for p in projects_of_scenario("4") if p.name == SAFE)
    with seeded_at_start(project, rows) as (url, _):
        timed(SAFE, url, f"call_command('migrate', 'demoapp', '{FLOOR_AT}', verbosity=0)", echo=False)
        seconds, _ = timed(SAFE, url, (
            "from django.db import connection\n"
            "with connection.cursor() as cursor:\n"
            "    cursor.execute('UPDATE large_record SET created_at_new = created_at::timestamptz')"
        ), echo=False)
    return seconds


if __name__ == "__main__":
    main()
