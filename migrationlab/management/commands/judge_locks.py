import contextlib
import json
import sys

import psycopg2
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from migrationlab.lockjudge import judge_step
from migrationlab.scenarios import load_project


class Command(BaseCommand):
    help = (
        "Apply the scenario's steps one by one, holding each still after every statement, and let PostgreSQL "
        "tell whether the API's read and write wait on it (never / briefly / throughout). Start from a seeded "
        "database at the start migration; the steps are applied for real."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the judgements as JSON")

    def handle(self, *args, **options):
        project = load_project(settings.BASE_DIR)
        connection.ensure_connection()
        params = connection.get_connection_params()
        monitor = psycopg2.connect(**params)
        monitor.autocommit = True
        try:
            with monitor.cursor() as cursor:
                cursor.execute(f'SELECT count(*), max(id) FROM "{project.large_table}"')
                table_rows, last_id = cursor.fetchone()
            if not table_rows:
                raise CommandError(f"{project.large_table} is empty: seed it first (seed_large_table)")
            # With --json, stdout carries only the JSON: the migrations' progress lines go to stderr.
            with contextlib.redirect_stdout(sys.stderr) if options["json"] else contextlib.nullcontext():
                judgements = [
                    judge_step(project, step, monitor, write_id=(last_id + 1) // 2, table_rows=table_rows,
                               connect=lambda **extra: psycopg2.connect(**{**params, **extra}))
                    for step in project.steps
                ]
        except DatabaseError as failure:
            raise CommandError(f"a step failed: {str(failure).strip().splitlines()[0]}") from failure
        finally:
            monitor.close()
        if options["json"]:
            self.stdout.write(json.dumps([j.as_dict() for j in judgements], indent=2))
            return
        for j in judgements:
            verdict = "as claimed" if j.holds else f"CLAIMED reads {j.claimed_reads}, writes {j.claimed_writes}"
            self.stdout.write(f"{j.migration:45} reads {j.reads:10} writes {j.writes:10} "
                              f"strongest lock {j.strongest_lock or '-':24} {verdict}")
