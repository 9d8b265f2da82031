"""`python -m migrationlab watch`: the live view for the stage (command.py runs it; docs/watch.md).

    model.py    what the screen says, from the probe's requests and PostgreSQL's sessions and locks (no I/O)
    screen.py   the screen, drawn with rich (80x24)
    sources.py  pg_stat_activity and the progress views (the locks come from the showdown's LockSampler)
    command.py  the command: what to watch, the loop, the curl loop's log, the summary line
    picture.py  a captured screen as a PNG (docs/watch.png)

This module holds only the subcommand's arguments: cli.py builds its parser from here without importing rich or
the watch itself (the container's `serve` builds the same parser).
"""

from __future__ import annotations

DEFAULT_RATE_PER_S = 4.0
DEFAULT_TIMEOUT_S = 3.0  # curl --max-time 3
DEFAULT_LOG = "watch.log"


def run(args) -> int:
    import sys

    try:
        from migrationlab.watch.command import main
    except ImportError as missing:  # rich is the lab's (requirements/lab.txt; pip install "migrationlab[lab]")
        print(f"error: watch needs {missing.name or 'rich'}: make install, or pip install 'migrationlab[lab]'",
              file=sys.stderr)
        return 2
    return main(args)


def add_parser(commands) -> None:
    """The subcommand's arguments (cli.py calls this)."""
    watch_parser = commands.add_parser(
        "watch", help="the live view for the stage: API state and latency, the migration's locks, the lock queue",
        description="One screen (80x24), redrawn 5 times a second: each endpoint's state as the curl loop counts it "
                    "and its latencies, the migration's statement and locks, who waits on whom, a backfill's "
                    "progress. Every request goes to the log file in the curl loop's words. Ctrl-C stops it.")
    watch_parser.add_argument("project", nargs="?", help="a project served by the lab (`up PROJECT`)")
    watch_parser.add_argument("--url", metavar="URL",
                              help="the API instead of the lab's server, e.g. http://127.0.0.1:8010 (Docker)")
    watch_parser.add_argument("--database-url", metavar="URL",
                              help="the project's database instead of the lab's, e.g. "
                                   "postgresql://postgres:postgres@127.0.0.1:5410/risky_migrations (Docker)")
    watch_parser.add_argument("--log", default=DEFAULT_LOG, metavar="FILE",
                              help=f"the curl loop's log, one line per request (default ./{DEFAULT_LOG}, rewritten)")
    watch_parser.add_argument("--rate", type=float, default=DEFAULT_RATE_PER_S, metavar="R",
                              help=f"requests per second to each endpoint (default {DEFAULT_RATE_PER_S:g})")
    watch_parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S",
                              help="seconds after which a request counts as failed, like curl --max-time "
                                   f"(default {DEFAULT_TIMEOUT_S:g})")
    watch_parser.set_defaults(run=run)
