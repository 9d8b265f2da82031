"""How well does `migrationlab judge` estimate a statement's time at production size, and how long does it take?

For five kinds of work (an index build, a table rewrite, a CHECK validation, a SET NOT NULL scan, a batched
backfill), judge the migration at --rows (default 100,000) with --production-rows set to --large (default
10,000,000): the estimate; then judge the same migration with --large rows seeded: the time measured there. The
estimate holds if it is within 30% of the measurement. Also: the time to judge the sample app's 17 migrations at
--rows, seeding included.

    .venv/bin/python benchmarks/judge_estimates.py [--rows 100000] [--large 10000000]

Results: benchmarks/RESULTS.md (with the machine and its load). Each judge run uses the embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "judge_project"
# (what, folder, settings, app, migration, model, which statement: a number, or "all" for the whole migration)
CASES = (
    ("index build (CREATE INDEX)", SAMPLE, "mysite.settings", "shop", "0009", "shop.Order", 1),
    ("table rewrite (int to bigint)", SAMPLE, "mysite.settings", "shop", "0005", "shop.Order", 1),
    ("CHECK validation (VALIDATE CONSTRAINT)", SAMPLE, "mysite.settings", "shop", "0017", "shop.Order", 1),
    ("SET NOT NULL scan", SAMPLE, "mysite.settings", "shop", "0006", "shop.Order", 3),
    ("batched backfill (BackfillInBatches)", ROOT / "proj01_safe_backfill", "proj01_safe_backfill.settings",
     "demoapp", "0004", "demoapp.LargeUser", "all"),
)


def judge(folder: Path, *args: str) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "migrationlab", "judge", *args, "--format", "json"], cwd=folder,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"judge failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout), seconds


def picked(report: dict, which) -> tuple[float | None, float | None, str]:
    """(estimated seconds, measured seconds, size model) of the chosen statement or of the whole migration."""
    (migration,) = report["migrations"]
    if which == "all":
        whole = migration["estimate"] or {}
        measured = sum(s["seconds"] or 0 for s in migration["statements"])
        return whole.get("seconds"), measured, ", ".join(whole.get("models", []))
    statement = next(s for s in migration["statements"] if s["number"] == which)
    estimate = statement["estimate"] or {}
    return estimate.get("seconds"), statement["seconds"], estimate.get("model", "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=10_000_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "judge_estimates.json")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    app, app_seconds = judge(SAMPLE, "--settings", "mysite.settings", "shop", "--rows", str(args.rows))
    print(f"judging shop's {len(app['migrations'])} migrations at {args.rows:,} rows: {app_seconds:.1f} s "
          "(seeding included)", flush=True)
    rows = []
    for what, folder, settings, label, migration, model, which in CASES:
        small, _ = judge(folder, "--settings", settings, label, migration, "--rows", str(args.rows),
                         "--production-rows", f"{model}={args.large}")
        estimate, at_small, size_model = picked(small, which)
        large, large_seconds = judge(folder, "--settings", settings, label, migration, "--rows", str(args.large))
        _, measured, _ = picked(large, which)
        error = (estimate - measured) / measured if estimate and measured else None
        rows.append({"what": what, "migration": f"{label}.{migration}", "statement": which, "model": size_model,
                     "seconds_at_rows": at_small, "estimate": estimate, "measured": measured,
                     "error": error, "judge_seconds_at_large": round(large_seconds, 1)})
        print(f"{what:42} {size_model:14} at {args.rows:,}: {at_small:.3f} s; estimated {estimate:.1f} s, "
              f"measured {measured:.1f} s at {args.large:,} ({error:+.0%})", flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": args.rows, "large": args.large, "app_seconds": app_seconds,
                                    "app_migrations": len(app["migrations"]), "cases": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
