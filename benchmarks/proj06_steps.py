"""proj06_large_backfills: filling a derived column on every row, three ways, and what each costs.

    .venv/bin/python benchmarks/proj06_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj06_steps.py --rows 10000000

Each way runs on a fresh table seeded at the start migration (email_domain and email_local_part NULL), after a
CHECKPOINT, while a write probe updates one random row at a time (~20 a second) from a connection of its own:

- 0003, the risky step as migrated: one UPDATE of every row in the migration's transaction;
- 0004's operations (BackfillInBatches: ~50 ms batches of adapting width, 10 ms pauses, then VACUUM), run on the
  same fresh table as 0003 was (the migration itself runs after 0003, on a table 0003 has already rewritten);
- the control: 0004's operations again, while the probe writes to a copy of the table that the backfill never
  touches: no write can wait on its row locks, so whatever the writes still suffer is the backfill's load on the
  server (WAL, I/O, CPU), not its locks;
- a .save() per row in one transaction, the way a RunPython loop does it, on --loop-rows rows (default 100,000)
  and extrapolated to --rows: it is not run at full size.

For each: seconds, WAL written (pg_current_wal_lsn before and after), the table's heap and total size before and
after, its dead rows afterwards, and the probe's writes (p99, the longest, how many took over 250 ms and what
those were seen waiting on in pg_stat_activity).
"""

import argparse

from common import batch_note, machine, measured_on_fresh_table, mib, reports_in

from migrationlab.scenarios import get_project

PROJECT = "proj06_large_backfills"
RISKY = "call_command('migrate', 'demoapp', '0003_fill_email_domain_in_one_transaction', verbosity=0)"
BATCHED = """
from importlib import import_module
from django.db import connection
from django.db.migrations.loader import MigrationLoader
migration = import_module("demoapp.migrations.0004_fill_email_local_part_in_batches").Migration
state = MigrationLoader(connection).project_state(("demoapp", "0003_fill_email_domain_in_one_transaction"))
with connection.schema_editor(atomic=False) as editor:
    for operation in migration.operations:
        operation.database_forwards("demoapp", editor, state, state)
print("\\nREPORTS " + json.dumps([operation.report.as_dict() for operation in migration.operations]))
"""
SAVE_LOOP = """
from django.db import transaction
from demoapp.models import LargeUser
with transaction.atomic():  # a RunPython function runs inside the migration's transaction
    for user in LargeUser.objects.only("id", "email").iterator(chunk_size=2000):
        user.email_domain = user.email.split("@", 1)[1]
        user.save(update_fields=["email_domain"])
"""


def line(way: str, result: dict, scale: float = 1.0, note: str = "") -> str:
    before, after = result["before"], result["after"]
    growth = (f"{mib(before['heap'])} -> {mib(after['heap'])} heap, {mib(before['total'])} -> "
              f"{mib(after['total'])} with indexes")
    return (f"| {way} | {result['rows']:,} | {result['seconds'] * scale:,.1f} | {mib(result['wal'] * scale)} | "
            f"{growth} | {after['dead']:,} | {result['writes']} | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--loop-rows", type=int, default=100_000, help="rows for the .save() loop (then scaled)")
    args = parser.parse_args()
    project = get_project(PROJECT)
    print(f"machine: {machine()}; rows: {args.rows:,}")
    risky = measured_on_fresh_table(project, args.rows, RISKY)
    batched = measured_on_fresh_table(project, args.rows, BATCHED)
    control = measured_on_fresh_table(project, args.rows, BATCHED, control=True)
    loop_rows = min(args.loop_rows, args.rows)
    loop = measured_on_fresh_table(project, loop_rows, SAVE_LOOP)
    report = reports_in(batched["output"])[1]["large_user"]
    table = [
        "| way | rows | seconds | WAL written | table size | dead rows after | probe writes during | note |",
        "|---|---|---|---|---|---|---|---|",
        line("0003: one UPDATE, one transaction", risky),
        line("0004: BackfillInBatches, ~50 ms batches", batched,
             note=batch_note(report)),
        line("control: 0004 again, the probe writing to an untouched copy of the table", control,
             note="no lock of the backfill's can reach these writes"),
        line(".save() per row, one transaction", loop),
    ]
    if loop_rows < args.rows:
        scale = args.rows / loop_rows
        table.append(f"| .save() per row, extrapolated | {args.rows:,} | {loop['seconds'] * scale:,.0f} | "
                     f"{mib(loop['wal'] * scale)} | | | | measured at {loop_rows:,} rows x {scale:g} |")
    print("\n".join(table))
    print(f"\nbatched / one UPDATE: {batched['seconds'] / risky['seconds']:.2f} x the time, "
          f"{batched['wal'] / max(risky['wal'], 1):.2f} x the WAL")


if __name__ == "__main__":
    main()
