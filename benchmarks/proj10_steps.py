"""proj10_large_deletes: deleting the older half of a log, three ways, and retention by partition.

    .venv/bin/python benchmarks/proj10_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj10_steps.py --rows 10000000

Part 1, the same rows deleted four ways, each on a fresh table seeded at the start migration, after a
CHECKPOINT, while a write probe updates one random row at a time (~20 a second) from a connection of its own:

- 0002, the risky step as migrated: the notes of the older half (none), then Django's fast path, one DELETE, in
  the migration's transaction; its commit checks every deleted event against the notes' deferred foreign key.
  The DELETE statement is timed on its own: the rest of the step is its commit, mostly;
- the same step with the notes' foreign key constraint dropped first: the one DELETE without that check;
- the same .delete() on --collector-rows rows (default 1,000,000; the same as --rows runs it at full size) with a
  post_delete receiver connected, so that Django's collector loads every row first (then scaled to --rows when run
  smaller); the notes' constraint is there, as on stage;
- DeleteInBatches with 0003's settings (~50 ms batches of adapting width, 10 ms pauses, then VACUUM), on 0002's
  rows (0003 itself deletes the next quarter, after 0002); each batch's commit checks its own events.

For each: seconds, the peak resident memory of the process (wait4's ru_maxrss; the first line gives the same
process doing nothing, Django loaded), WAL written, the table's size and dead rows afterwards, and the probe's
writes (p99 and the longest).

Part 2, every step of the scenario in order on one fresh table (like proj01_steps.py), with the detach and the
drop of the history partition timed on their own; a step's append_rows actor (new events, before 0007) runs first,
untimed, as `manage.py append_rows` does on stage.
"""

import argparse
import re

from common import (REPORTS, batch_note, machine, measured_on_fresh_table, mib, reports_in, seeded_at_start,
                    timed)

from migrationlab.scenarios import get_project

PROJECT = "proj10_large_deletes"
NOTHING = "pass"
RISKY = """
from django.db import connection
marks = {}
def timing(execute, sql, params, many, context):
    begun = time.monotonic()
    try:
        return execute(sql, params, many, context)
    finally:
        if sql.startswith('DELETE FROM "large_event"'):
            marks["delete"], marks["delete_end"] = time.monotonic() - begun, time.monotonic()
with connection.execute_wrapper(timing):
    call_command('migrate', 'demoapp', '0002_delete_older_half_in_one_transaction', verbosity=0)
print(f"SPLIT the DELETE {marks['delete']:.1f} s; from its end to the step's end (the commit) "
      f"{time.monotonic() - marks['delete_end']:.1f} s")
"""
WITHOUT_THE_CONSTRAINT = """
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = 'event_note'::regclass")
    for (name,) in cursor.fetchall():
        cursor.execute(f'ALTER TABLE event_note DROP CONSTRAINT "{name}"')
""" + RISKY
COLLECTOR = """
from django.db.models.signals import post_delete
def audit(sender, **kwargs):  # any receiver will do: Django must then send the signal for every deleted row
    pass
post_delete.connect(audit)
call_command('migrate', 'demoapp', '0002_delete_older_half_in_one_transaction', verbosity=0)
"""
BATCHED = """
from importlib import import_module
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.models import Q
from migrationlab.operations import DeleteInBatches
risky = import_module("demoapp.migrations.0002_delete_older_half_in_one_transaction")
batched = next(operation for operation in import_module("demoapp.migrations.0003_delete_next_quarter_in_batches")
               .Migration.operations if operation.model_name == "largeevent")
state = MigrationLoader(connection).project_state(("demoapp", "0001_initial"))
model = state.apps.get_model("demoapp", "LargeEvent")
operation = DeleteInBatches("largeevent", where=Q(created_at__lt=risky.oldest_kept(model)),
                            batch_size=batched.batch_size, target_batch_seconds=batched.target_batch_seconds,
                            pause_seconds=batched.pause_seconds, synchronous_commit=batched.synchronous_commit,
                            vacuum=batched.vacuum)
with connection.schema_editor(atomic=False) as editor:
    operation.database_forwards("demoapp", editor, state, state)
print("\\nREPORTS " + json.dumps([operation.report.as_dict()]))
"""


def widths(report: dict | None) -> str:
    """The batches' times and their adapted widths, from the operation's report."""
    if not report:
        return ""
    ordered = sorted(report["batch_widths"])
    return (f"{batch_note(report)}; batch width adapted to 50 ms: first {report['batch_widths'][0]:,}, "
            f"median {ordered[len(ordered) // 2]:,}, last {report['batch_widths'][-1]:,} ids")


def split(result: dict) -> str:
    return next((text.split("SPLIT ", 1)[1].strip() for text in result["output"].splitlines() if "SPLIT " in text), "")


def line(way: str, result: dict, idle_peak: int, note: str = "") -> str:
    after = result["after"]
    return (f"| {way} | {result['rows'] // 2:,} of {result['rows']:,} | {result['seconds']:,.1f} | "
            f"{mib(result['peak'])} (+{mib(result['peak'] - idle_peak)}) | {mib(result['wal'])} | "
            f"{mib(result['before']['heap'])} -> {mib(after['heap'])} heap | {after['dead']:,} | "
            f"{result['writes']} | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--collector-rows", type=int, default=1_000_000,
                        help="rows for the collector's path (then scaled to --rows)")
    args = parser.parse_args()
    project = get_project(PROJECT)
    print(f"machine: {machine()}; rows: {args.rows:,}")

    idle = measured_on_fresh_table(project, 1_000, NOTHING)["peak"]
    risky = measured_on_fresh_table(project, args.rows, RISKY)
    unchecked = measured_on_fresh_table(project, args.rows, WITHOUT_THE_CONSTRAINT)
    collector_rows = min(args.collector_rows, args.rows)
    collector = measured_on_fresh_table(project, collector_rows, COLLECTOR)
    batched = measured_on_fresh_table(project, args.rows, BATCHED)
    report = reports_in(batched["output"])[1].get("large_event")
    table = [
        f"`manage.py shell` doing nothing: peak {mib(idle)}",
        "",
        "| way | rows deleted | seconds | peak memory (over idle) | WAL written | table size | dead rows after "
        "| probe writes during | note |",
        "|---|---|---|---|---|---|---|---|---|",
        line("0002 as migrated: one DELETE, then the commit checks the notes' foreign key", risky, idle,
             note=split(risky)),
        line("0002 with the notes' foreign key constraint dropped first", unchecked, idle, note=split(unchecked)),
        line(".delete() with a post_delete receiver: the collector", collector, idle),
        line("DeleteInBatches, ~50 ms batches", batched, idle, note=widths(report)),
    ]
    if collector_rows < args.rows:
        scale = args.rows / collector_rows
        extra = (collector["peak"] - idle) * scale
        table.append(f"| the collector, extrapolated | {args.rows // 2:,} of {args.rows:,} | "
                     f"{collector['seconds'] * scale:,.0f} | +{mib(extra)} | | | | | measured at {collector_rows:,} "
                     f"rows x {scale:g} |")
    print("\n".join(table))

    print("\n| step | kind | seconds | note |\n|---|---|---|---|")
    with seeded_at_start(project, args.rows) as (url, _):
        for step in project.steps:
            for actor in step.actors:
                if actor.kind == "append_rows":  # time passing before the step: new events (untimed)
                    timed(project.name, url, f"call_command('append_rows', rows={actor.rows})", echo=False)
                    print(f"| (before {step.migration}) | | | {actor.rows:,} new events appended (append_rows) |")
            seconds, output = timed(project.name, url, f"call_command('migrate', 'demoapp', '{step.migration}')"
                                    + REPORTS.format(migration=step.migration), echo=False)
            output, reports = reports_in(output)
            report = reports.get("large_event")
            notes = [f"{report['rows']:,} rows in {report['seconds']:.1f} s, {batch_note(report)}"] if report else []
            notes += [text.strip().split(": ", 1)[-1] for text in output.splitlines()
                      if re.search(r"large_event: (detached|dropped)", text)]
            print(f"| {step.migration} | {step.kind} | {seconds:.2f} | {'; '.join(notes)} |")


if __name__ == "__main__":
    main()
