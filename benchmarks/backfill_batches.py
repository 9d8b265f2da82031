"""The batched backfill at several batch sizes: total time and the distribution of batch transactions.

    .venv/bin/python benchmarks/backfill_batches.py --rows 10000000 --sizes 20000 10000

For each size: a fresh 10M-row table at proj01_safe_backfill's 0003 (status NULL everywhere, default set), then
BackfillInBatches exactly as migration 0004 runs it, but with that batch size (and without the closing VACUUM,
which is the same for every size).
"""

import argparse

from common import drop_database, fresh_database, machine, reports_in, timed

PROJECT = "proj01_safe_backfill"
BACKFILL = """
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.models import Q, Value
from migrationlab.operations import BackfillInBatches
state = MigrationLoader(connection).project_state(("demoapp", "0004_backfill_status_batched"))
backfill = BackfillInBatches("largeuser", set={{"status": Value("active")}}, where=Q(status__isnull=True),
                             batch_size={size}, progress_seconds=1e9, synchronous_commit=False, vacuum=False)
with connection.schema_editor(atomic=False) as editor:
    backfill.database_forwards("demoapp", editor, state, state)
print("\\nREPORTS " + json.dumps([backfill.report.as_dict()]))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 10_000])
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}")
    table = ["| batch size | total | median batch | p99 batch | slowest batch | batches over 250 ms |",
             "|---|---|---|---|---|---|"]
    for size in args.sizes:
        url = fresh_database("bench_backfill")
        try:
            timed(PROJECT, url, "call_command('migrate', 'demoapp', '0002', verbosity=0)", echo=False)
            timed(PROJECT, url, f"call_command('seed_large_table', large_count={args.rows})", echo=False)
            timed(PROJECT, url, "call_command('migrate', 'demoapp', '0003', verbosity=0)", echo=False)
            _, output = timed(PROJECT, url, BACKFILL.format(size=size), echo=False)
        finally:
            drop_database("bench_backfill")
        report = reports_in(output)[1]["large_user"]
        table.append(f"| {size:,} | {report['seconds']:.1f} s | {report['median_seconds'] * 1000:.0f} ms | "
                     f"{report['p99_seconds'] * 1000:.0f} ms | {report['slowest_seconds'] * 1000:.0f} ms | "
                     f"{report['slow_batches']} of {report['batches']} |")
        print(table[-1], flush=True)
    print("\n".join(table))


if __name__ == "__main__":
    main()
