"""`python -m migrationlab judge` and `python -m migrationlab stats`: the command lines, their checks, their exits.

judge exits 0 when no statement makes reads or writes wait at or above --fail-on, 1 when one does (or a migration
failed), 2 on bad input (one line, no traceback). It writes to no database but the scratch one it creates (and
drops); `stats` only reads, in a read-only transaction.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
from pathlib import Path

from migrationlab.arguments import postgres_version, row_count
from migrationlab.errors import LabError

STATS_FORMAT = "migrationlab-stats/1"
LEVELS = ("never", "briefly", "throughout")


def add_parsers(commands) -> None:
    judge = commands.add_parser(
        "judge", help="PostgreSQL's measured verdict on a Django project's migrations (locks, waits, time)",
        description="Apply a Django project's migrations on a scratch database, stop after every statement, and "
                    "let PostgreSQL say whether a read and a write of every locked table wait on it.")
    judge.add_argument("app_label", nargs="?", help="judge this app's migrations (default: the project's own apps)")
    judge.add_argument("migration", nargs="?", help="judge only this migration of the app (a name or its prefix)")
    judge.add_argument("--settings", required=True, help="the project's settings module, e.g. mysite.settings")
    judge.add_argument("--pythonpath", help="the folder to import the project from (default: the current one)")
    judge.add_argument("--rows", type=row_count, default=100_000,
                       help="rows seeded in each table a migration touches (default 100,000)")
    sizes = judge.add_mutually_exclusive_group()
    sizes.add_argument("--stats", type=Path, help="production's sizes and applied migrations (from `stats`)")
    sizes.add_argument("--production-rows", action="append", default=[], metavar="APP_LABEL.MODEL=N",
                       help="a model's row count in production (repeat for each model)")
    judge.add_argument("--with-report", type=float, metavar="SECONDS",
                       help="a report holds every touched table (ACCESS SHARE) while each statement starts: does "
                            "it queue, and traffic behind it (SECONDS: how long your longest query runs)")
    judge.add_argument("--database-url", help="a PostgreSQL >= 14 to create the scratch database on (default: the "
                                              "embedded PostgreSQL 16); only the scratch database is written to")
    judge.add_argument("--postgres", type=postgres_version, default=None, metavar="MAJOR",
                       help="judge on the embedded PostgreSQL of this major, 14 to 18 (default: the major --stats says "
                            "production runs, where it can be had here; else $MIGRATIONLAB_PG_VERSION, else 16)")
    judge.add_argument("--format", choices=("text", "json", "markdown", "github"), default="text")
    judge.add_argument("--fail-on", choices=("briefly", "throughout"), default="throughout",
                       help="exit 1 if a statement makes reads or writes wait at least this (default throughout)")
    judge.set_defaults(run=cmd_judge)

    stats = commands.add_parser("stats", help="a read-only snapshot of a database's table sizes and applied "
                                              "migrations, for judge --stats")
    stats.add_argument("--database-url", required=True)
    stats.set_defaults(run=cmd_stats)


# -- stats --------------------------------------------------------------------------------------------------------

def read_stats(url: str) -> dict:
    """Sizes and applied migrations, read in a read-only transaction (nothing is written)."""
    import psycopg2

    from migrationlab.databases import first_line, redacted

    if not url.startswith(("postgres://", "postgresql://")):
        raise LabError(f"--database-url must start with postgresql:// (got '{redacted(url)}')")
    try:
        connection = psycopg2.connect(url, connect_timeout=10, application_name="migrationlab-stats",
                                      options="-c default_transaction_read_only=on")
    except psycopg2.OperationalError as failure:
        raise LabError(f"cannot connect to {redacted(url)}: {first_line(failure)}") from None
    try:
        connection.set_session(readonly=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                           "current_database()")
            version, number, database = cursor.fetchone()
            cursor.execute("""
                SELECT c.relname, c.reltuples::bigint, c.relpages, pg_table_size(c.oid), pg_indexes_size(c.oid)
                  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'p') AND s.nspname = current_schema() ORDER BY c.relname""")
            tables = {name: {"rows": max(rows, 0), "pages": pages, "table_bytes": size, "index_bytes": indexes}
                      for name, rows, pages, size, indexes in cursor.fetchall()}
            applied = []
            if "django_migrations" in tables:
                cursor.execute("SELECT app, name FROM django_migrations ORDER BY id")
                applied = [list(row) for row in cursor.fetchall()]
        connection.rollback()
    finally:
        connection.close()
    return {"format": STATS_FORMAT, "database": database, "server_version": version, "server_version_num": number,
            "tables": tables, "applied": applied}


def cmd_stats(args) -> int:
    print(json.dumps(read_stats(args.database_url), indent=2))
    return 0


def load_stats(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as problem:
        raise LabError(f"cannot read --stats {path}: {problem.strerror or problem}") from None
    except ValueError:
        raise LabError(f"--stats {path} is not JSON (make it with: python -m migrationlab stats --database-url URL)"
                       ) from None
    if not isinstance(data, dict) or data.get("format") != STATS_FORMAT:
        raise LabError(f"--stats {path} is not a stats file of this version ({STATS_FORMAT})")
    return data


def production_rows(options: list[str]) -> dict[str, int]:
    """--production-rows app_label.Model=N, checked against the project's models: table -> rows."""
    from django.apps import apps

    out = {}
    for option in options:
        match = re.fullmatch(r"([\w]+)\.([\w]+)=([\d_,]+)", option.strip())
        if not match:
            raise LabError(f"--production-rows takes APP_LABEL.MODEL=N, got '{option}'")
        label, model_name, rows = match.groups()
        try:
            model = apps.get_model(label, model_name)
        except LookupError:
            raise LabError(f"--production-rows: no model {label}.{model_name} in this project") from None
        out[model._meta.db_table] = int(rows.replace("_", "").replace(",", ""))
    return out


# -- judge --------------------------------------------------------------------------------------------------------

def cmd_judge(args) -> int:
    """Bad input exits 2 (one line), as argparse's own errors do; 1 is the verdict's. SIGTERM (a cancelled CI job)
    ends it as Ctrl-C does: the scratch database dropped, exit 130."""
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        return judge(args)
    except LabError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def judge(args) -> int:
    from migrationlab.databases import ScratchDatabases
    from migrationlab.judge import project, report, runner

    if args.migration and not args.app_label:
        raise LabError("name the app before the migration: judge APP_LABEL MIGRATION")
    if args.with_report is not None and args.with_report <= 0:
        raise LabError("--with-report takes a positive number of seconds")
    if args.postgres is not None and args.database_url:
        raise LabError("--postgres is for the embedded server; --database-url names its own server")
    stats = load_stats(args.stats) if args.stats else None
    settings_module = project.import_settings(args.settings, args.pythonpath)
    engine = settings_module.DATABASES["default"]["ENGINE"]
    say = (lambda line: print(line, file=sys.stderr, flush=True))
    major, why_not = choose_major(args, stats)
    with ScratchDatabases(args.database_url, user="the judge", prefix="judge", postgres=major) as databases:
        say(f"judge: scratch database on {databases.description}")
        _, url = databases.create(args.settings.replace(".", "_"))
        project.setup_django(args.settings, url, engine)
        graph = project.graph()
        plan = project.full_plan(graph)
        applied = None
        sizes: dict[str, int] = {}
        note = None
        if stats is not None:
            ours = {model._meta.db_table for model in _models()}
            if not ours & set(stats["tables"]):
                raise LabError(f"--stats {args.stats} is from another project: none of this project's tables is in "
                               f"it (database '{stats.get('database')}')")
            applied = {tuple(row) for row in stats["applied"]}
            sizes = {table: facts["rows"] for table, facts in stats["tables"].items()}
            if stats.get("server_version_num", 0) // 10000 != _server_major(url):
                note = (f"note: production runs PostgreSQL {stats['server_version']}; judged on "
                        f"{databases.server_version}{f' ({why_not})' if why_not else ''}")
                say(f"judge: {note}")
        elif args.production_rows:
            sizes = production_rows(args.production_rows)
        judged = project.chosen(graph, plan, args.app_label, args.migration, applied)
        if not judged:
            say("judge: nothing to judge (every migration is applied in production)" if applied is not None
                else "judge: the project's own apps have no migrations")
            return 0
        say(f"judge: {len(judged)} migration(s), tables seeded to {args.rows:,} rows")
        settings = runner.Settings(rows=args.rows, production_rows=sizes, with_report=args.with_report)
        # The migrations' own output (a batched backfill's progress) goes to stderr: stdout carries the report.
        with contextlib.redirect_stdout(sys.stderr):
            results = runner.run(plan, judged, url, settings, say)
            print()  # the progress lines end without a newline
        from django.db import connections

        connections.close_all()
        header = {"command": "python -m migrationlab " + " ".join(sys.argv[1:]) if sys.argv[1:] else "judge",
                  "rows": args.rows, "server_version": databases.server_version,
                  "production_server_version": stats.get("server_version") if stats else None,
                  "fail_on": args.fail_on, "note": note, "with_report": args.with_report}
    for result in results:
        result.file = _relative(result.file)
    failed = any(LEVELS.index(r.worst(what)) >= LEVELS.index(args.fail_on) for r in results
                 for what in ("reads", "writes")) or any(r.error for r in results)
    data = report.as_data({**header, "failed": failed}, results)
    print(report.render(data, args.format, args.fail_on))
    return 1 if failed else 0


def choose_major(args, stats: dict | None) -> tuple[int | None, str | None]:
    """The embedded server's major: --postgres; else the major production runs (--stats' server_version_num), where
    it can be had here; else the default. With the reason production's major was not taken (None: it was, or no
    --stats)."""
    from migrationlab.databases import MAJORS, embedded_unavailable, postgres_major

    if args.database_url:
        return None, None
    if args.postgres is not None:  # one that cannot be had: the server's one-line error, how to get it
        return postgres_major(args.postgres), "chosen with --postgres"
    production = (stats or {}).get("server_version_num", 0) // 10000
    if not production:
        return None, None
    if production not in MAJORS:
        return None, f"the lab runs PostgreSQL {MAJORS[0]} to {MAJORS[-1]}"
    why = embedded_unavailable(production)
    return (None, why) if why else (production, None)


def _models():
    from django.apps import apps

    return apps.get_models(include_auto_created=True)


def _server_major(url: str) -> int:
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        return connection.server_version // 10000
    finally:
        connection.close()


def _relative(path: str) -> str:
    try:
        return os.path.relpath(path) if path and not os.path.relpath(path).startswith("..") else path
    except ValueError:
        return path



