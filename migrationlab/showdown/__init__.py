"""`python -m migrationlab showdown`: how long a scenario's steps stall the API, and which lock did it.

For each project of a scenario: a fresh database at the start migration, seeded; gunicorn on a free port; an
open-loop probe of /list_large/ and /update_order/; a sampler of pg_locks + pg_stat_activity; a baseline;
then the scenario's steps, applied in order with `manage.py migrate demoapp STEP`. Out come a terminal table
with a verdict per step, a JSON report (schema in schema.py) and a PNG chart. docs/showdown.md tells the rest.

    clock      one time origin shared by everything that measures
    probe      the API probe (open loop, fixed rate, per-request timeout)
    sampler    the lock sampler (pg_locks + pg_stat_activity, filtered to the scenario's tables)
    actors     what a step may start beside its migration (a long report query, the previous release)
    databases  where the showdown's own databases live (embedded PostgreSQL 16, or any server by URL)
    analysis   measurements -> numbers: percentiles, stalls, locks, verdicts
    report     the JSON report, the terminal table, the risky-vs-safe summary
    chart      the PNG
    console    the live status line while a window runs
    processes  ports, child-process environment, thread priority, Ctrl-C during cleanup
    runner     the whole run, and its cleanup on Ctrl-C or error
"""
