"""Which index can go? A table's indexes with how often PostgreSQL used them, their size and their definition.

    manage.py index_usage                    the project's large table, one line per index
    manage.py index_usage --table NAME       another table
    manage.py index_usage --explain 42       also the plan of /list_large/?<lookup_field>=42, as the endpoint ran it

The counts come from pg_stat_user_indexes (idx_scan, last_idx_scan: PostgreSQL 16). Read them with care:
  - they count this server only: reads served by a replica are counted on the replica;
  - they count since the index was built or the statistics were last reset (shown in the header line);
  - each session reports its counts when a transaction ends, an idle one within about 10 s: look again after a
    few seconds of traffic.
An index with 0 scans after enough representative traffic is one no query uses; EXPLAIN of the queries that
matter (--explain) tells which index each of them uses.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection
from django.test import RequestFactory

from migrationlab import web
from migrationlab.scenarios import load_project

TABLE = """
SELECT t.seq_scan, COALESCE(t.idx_scan, 0), GREATEST(c.reltuples, 0)::bigint, pg_size_pretty(pg_relation_size(c.oid)),
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database())
  FROM pg_stat_user_tables t JOIN pg_class c ON c.oid = t.relid
 WHERE t.relid = %s
"""
INDEXES = """
SELECT s.indexrelname, s.idx_scan, extract(epoch FROM now() - s.last_idx_scan),
       pg_size_pretty(pg_relation_size(s.indexrelid)), i.indisvalid, x.indexdef
  FROM pg_stat_user_indexes s
  JOIN pg_index i ON i.indexrelid = s.indexrelid
  JOIN pg_indexes x ON x.schemaname = s.schemaname AND x.tablename = s.relname AND x.indexname = s.indexrelname
 WHERE s.relid = %s
 ORDER BY s.idx_scan, s.indexrelname
"""


def ago(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


class Command(BaseCommand):
    help = ("List a table's indexes (default: the project's large table), one line each: scans since the statistics "
            "were reset, last scan, size, definition. With --explain VALUE, also the plan of the lookup "
            "/list_large/?<lookup_field>=VALUE as the endpoint runs it (EXPLAIN ANALYZE: it runs the query).")

    def add_arguments(self, parser):
        parser.add_argument("--table", help="the table to list (default: the project's large table)")
        parser.add_argument("--explain", metavar="VALUE",
                            help="also show the plan of /list_large/?<lookup_field>=VALUE (projects with a lookup_field)")

    def handle(self, *args, table=None, explain=None, **options):
        table = table or load_project(settings.BASE_DIR).large_table
        try:
            self.list_indexes(table)
            if explain is not None:
                self.explain(explain)
        except DatabaseError as failure:
            raise CommandError(f"the database refused: {str(failure).strip().splitlines()[0]}") from failure

    def list_indexes(self, table: str) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s)::oid", [connection.ops.quote_name(table)])
            oid = cursor.fetchone()[0]
            if oid is None:
                raise CommandError(f"no table named {table} in this database (migrated? see showmigrations)")
            cursor.execute(TABLE, [oid])
            found = cursor.fetchone()
            if found is None:
                raise CommandError(f"{table} is not a table of this database's own (no pg_stat_user_tables row)")
            seq_scans, index_scans, rows, size, reset = found
            cursor.execute(INDEXES, [oid])
            indexes = cursor.fetchall()
        since = f"since {reset:%Y-%m-%d %H:%M:%S %Z}" if reset else "since each index was built (never reset)"
        self.stdout.write(f"{table}: ~{rows:,} rows, {size}; {seq_scans:,} sequential scans, {index_scans:,} index "
                          f"scans; counted on this server only, {since}")
        lines = [("index", "scans", "last scan", "size", "definition")]
        for name, scans, seconds, index_size, valid, definition in indexes:
            lines.append((name if valid else f"{name} (INVALID)", f"{scans:,}", ago(seconds), index_size, definition))
        widths = [max(len(line[column]) for line in lines) for column in range(4)]
        for name, scans, last, index_size, definition in lines:
            self.stdout.write(f"  {name:<{widths[0]}}  {scans:>{widths[1]}}  {last:>{widths[2]}}  "
                              f"{index_size:>{widths[3]}}  {definition}")
        if not indexes:
            self.stdout.write("  (no indexes)")

    def explain(self, value: str) -> None:
        """EXPLAIN ANALYZE of the very statement the endpoint ran (caught on its way to the database)."""
        field = settings.MIGRATIONLAB_LOOKUP_FIELD
        if not field:
            raise CommandError("this project's /list_large/ has no lookup_field (scenario.toml [tables]): "
                               "nothing to explain")
        table = web.large_model()._meta.db_table
        statements = []

        def catch(execute, sql, params, many, context):
            statements.append((sql, params))
            return execute(sql, params, many, context)

        with connection.execute_wrapper(catch):
            response = web.list_large(RequestFactory().get("/list_large/", {field: value}))
        if response.status_code != 200:
            answer = json.loads(response.content).get("error", "")
            raise CommandError(f"/list_large/?{field}={value} answered {response.status_code}: {answer}")
        sql, params = next((s, p) for s, p in statements if f"FROM {connection.ops.quote_name(table)}" in s)
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", params)
            plan = [line for (line,) in cursor.fetchall()]
        found = len(json.loads(response.content)["rows"])
        self.stdout.write(f"\n/list_large/?{field}={value} ({found} rows): the plan of its query on {table}")
        for line in plan:
            self.stdout.write(f"  {line}")
