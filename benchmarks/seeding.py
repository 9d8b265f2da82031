"""Seeding: migrationlab's set-based seeder vs Django bulk_create (the talk's way), in the same run.

    .venv/bin/python benchmarks/seeding.py [--rows 10000000] [--bulk-rows 1000000]

bulk_create is timed on --bulk-rows rows (batches of 100,000, as the talk did) and compared by rate: at the
talk's ~45K rows/s, 10M rows would take minutes.
"""

import argparse

from common import drop_database, fresh_database, machine, timed

# The risky twin: its model has no db_default, which would put bulk_create on a much slower path.
PROJECT = "proj01_add_not_null_constraint"

BULK_CREATE = """
from demoapp.models import LargeUser
LargeUser.objects.all().delete()
batch = 100_000
for first in range(1, {rows} + 1, batch):
    LargeUser.objects.bulk_create(
        LargeUser(name=f"user {{i}}", email=f"user{{i}}@example.com") for i in range(first, min(first + batch, {rows} + 1))
    )
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--bulk-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    url = fresh_database("bench_seeding")
    try:
        timed(PROJECT, url, "call_command('migrate', 'demoapp', '0002', verbosity=0)", echo=False)
        bulk_seconds, _ = timed(PROJECT, url, BULK_CREATE.format(rows=args.bulk_rows), echo=False)
        seed_seconds, _ = timed(PROJECT, url, f"call_command('seed_large_table', large_count={args.rows})")
    finally:
        drop_database("bench_seeding")
    seed_rate, bulk_rate = args.rows / seed_seconds, args.bulk_rows / bulk_seconds
    print("\n| method | rows | seconds | rows/s |\n|---|---|---|---|")
    print(f"| seed_large_table (INSERT ... SELECT generate_series, indexes rebuilt, VACUUM ANALYZE) "
          f"| {args.rows:,} | {seed_seconds:.1f} | {seed_rate:,.0f} |")
    print(f"| Django bulk_create, batches of 100,000 | {args.bulk_rows:,} | {bulk_seconds:.1f} | {bulk_rate:,.0f} |")
    print(f"\nseed_large_table is {seed_rate / bulk_rate:.1f}x faster; bulk_create would need "
          f"{args.rows / bulk_rate:.0f} s for {args.rows:,} rows")


if __name__ == "__main__":
    main()
