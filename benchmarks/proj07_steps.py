"""How long each step of the proj07 pair takes, and how long each statement of it holds up whom.

    .venv/bin/python benchmarks/proj07_steps.py --rows 2000000
    .venv/bin/python benchmarks/proj07_steps.py --rows 10000000

Each project gets a fresh database seeded at its start migration (100,000 customers, then the orders); every step
is `migrate demoapp <step>`, timed inside Django (no interpreter start-up), and so is every SQL statement it
runs. From the statements of the risky step: how long orders' reads and writes waited (ACCESS EXCLUSIVE from the
first ALTER to the commit) and how long customers' writes waited (SHARE ROW EXCLUSIVE from the validating ADD
CONSTRAINT to the commit); the lock each statement takes is PostgreSQL's (tests/test_proj07.py asserts it).
"""

import argparse
import json
import re

from common import machine, seeded_at_start, timed

from migrationlab.scenarios import projects_of_scenario

STATEMENTS = """
from django.db import connection
statements = []

def clock(execute, sql, params, many, context):
    began = time.monotonic()
    try:
        return execute(sql, params, many, context)
    finally:
        statements.append((" ".join(sql.split()), began - started, time.monotonic() - began))

with connection.execute_wrapper(clock):
    call_command("migrate", "demoapp", "{migration}", verbosity=0)
print("STATEMENTS " + json.dumps(statements))
"""
DDL = re.compile(r"(ALTER|CREATE|DROP) ")  # the statements shown (not Django's catalog look-ups)


def waits_of_the_risky_step(statements: list) -> list[str]:
    """Who waited how long, from the statement timings of the risky step: one transaction, so every lock is held
    until its last statement (recording the migration in django_migrations) and the COMMIT right after it."""
    first_alter = next(at for sql, at, _ in statements if sql.startswith("ALTER TABLE"))
    validating = next(at for sql, at, _ in statements if re.match(r'ALTER TABLE "large_order" ADD CONSTRAINT', sql))
    commit = next(at + took for sql, at, took in statements if sql.startswith('INSERT INTO "django_migrations"'))
    return [f"orders' reads and writes wait {commit - first_alter:.2f} s (ACCESS EXCLUSIVE, first ALTER to commit)",
            f"customers' writes wait {commit - validating:.2f} s (SHARE ROW EXCLUSIVE, ADD CONSTRAINT to commit); "
            "customers' reads never"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}")
    steps = ["| project | step | kind | seconds |", "|---|---|---|---|"]
    detail = ["| project | step | statement | starts at s | seconds |", "|---|---|---|---|---|"]
    waits = []
    for project in projects_of_scenario("7"):
        with seeded_at_start(project, args.rows) as (url, seed_seconds):
            steps.append(f"| {project.name} | seed 100,000 customers + {args.rows:,} orders | - | {seed_seconds:.1f} |")
            for step in project.steps:
                seconds, output = timed(project.name, url, STATEMENTS.format(migration=step.migration), echo=False)
                steps.append(f"| {project.name} | {step.migration} | {step.kind} | {seconds:.2f} |")
                statements = json.loads(re.search(r"STATEMENTS (\[.*\])", output).group(1))
                for sql, at, took in statements:
                    if DDL.match(sql):
                        detail.append(f"| {project.name} | {step.migration} | `{sql[:110]}` | {at:.2f} | {took:.2f} |")
                if step.kind == "risky":
                    waits += [f"- {project.name} {step.migration}: {line}"
                              for line in waits_of_the_risky_step(statements)]
    print("\n".join(steps))
    print()
    print("\n".join(detail))
    print()
    print("\n".join(waits))


if __name__ == "__main__":
    main()
