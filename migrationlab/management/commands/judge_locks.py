import contextlib
import json
import sys

import psycopg2
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection

from migrationlab.lockjudge import judge_step
from migrationlab.releases import judge_releases
from migrationlab.scenarios import load_project


def middle_id(monitor, table: str) -> int | None:
    """The row the write probe updates in a step: the middle of the ids the table holds when the step starts.

    With ids 1..N that is (N + 1) // 2 at every step. A step that deletes rows (a retention lesson) moves it, so
    that the next step is judged on a row that still exists, not on one an earlier step deleted."""
    with monitor.cursor() as cursor:
        cursor.execute(f'SELECT (min(id) + max(id)) / 2 FROM "{table}"')
        (middle,) = cursor.fetchone()
    return middle


class Command(BaseCommand):
    help = (
        "Apply the scenario's steps one by one, holding each still after every statement, and let PostgreSQL "
        "tell whether the API's read and write wait on it (never / briefly / throughout). Start from a seeded "
        "database at the start migration; the steps are applied for real."
    )

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="print the judgements as JSON")
        parser.add_argument("--with-report", action="store_true",
                            help="hold a long report open beside every step (ACCESS SHARE on the large table): "
                                 "a safe step must still make nobody wait longer than its lock_timeout")

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
                referenced_last_id = None
                if project.referenced_table:
                    cursor.execute(f'SELECT max(id) FROM "{project.referenced_table}"')
                    (referenced_last_id,) = cursor.fetchone()
            if not table_rows or (project.referenced_table and not referenced_last_id):
                raise CommandError(f"{project.large_table} is empty: seed it first (seed_large_table)")
            # With --json, stdout carries only the JSON: the migrations' progress lines go to stderr.
            with contextlib.redirect_stdout(sys.stderr) if options["json"] else contextlib.nullcontext():
                judgements = []
                for step in project.steps:
                    write_id = middle_id(monitor, project.large_table) or (last_id + 1) // 2
                    judgement = judge_step(
                        project, step, monitor, write_id=write_id, table_rows=table_rows,
                        connect=lambda **extra: psycopg2.connect(**{**params, **extra}),
                        referenced_write_id=(referenced_last_id + 1) // 2 if referenced_last_id else None,
                        with_report=options["with_report"])
                    # A project with releases: what the release still serving answers now (previous_release).
                    judge_releases(project, step, judgement, write_id)
                    judgements.append(judgement)
                # The batched operations' progress lines start with a newline and end without one: end the last.
                sys.stdout.write("\n")
        except DatabaseError as failure:
            raise CommandError(f"a step failed: {str(failure).strip().splitlines()[0]}") from failure
        finally:
            monitor.close()
        if options["json"]:
            self.stdout.write(json.dumps([j.as_dict() for j in judgements], indent=2))
            return
        for j in judgements:
            holds = (j.reads, j.writes) == (j.claimed_reads, j.claimed_writes)
            verdict = "as claimed" if holds else f"CLAIMED reads {j.claimed_reads}, writes {j.claimed_writes}"
            self.stdout.write(f"{j.migration:45} reads {j.reads:10} writes {j.writes:10} "
                              f"strongest lock {j.strongest_lock or '-':24} {verdict}")
            if project.referenced_table:
                holds = (j.referenced_reads, j.referenced_writes) == (j.claimed_referenced_reads,
                                                                      j.claimed_referenced_writes)
                verdict = ("as claimed" if holds else f"CLAIMED reads {j.claimed_referenced_reads}, "
                                                      f"writes {j.claimed_referenced_writes}")
                self.stdout.write(f"{'  on ' + project.referenced_table:45} reads {j.referenced_reads:10} "
                                  f"writes {j.referenced_writes:10} "
                                  f"strongest lock {j.referenced_strongest_lock or '-':24} {verdict}")
            if j.previous_release is not None or j.deployed_release is not None:
                step = next(step for step in project.steps if step.migration == j.migration)
                said = []
                if j.previous_release is not None:
                    claim = "as claimed" if j.previous_release == j.claimed_previous_release else \
                        f"CLAIMED {j.claimed_previous_release}"
                    said.append(f"release {step.serving_release}, still serving: {j.previous_release} ({claim})")
                if j.deployed_release is not None:
                    said.append(f"release {step.release}, deployed after it: {j.deployed_release}")
                self.stdout.write(f"{'':45} {'; '.join(said)}")
