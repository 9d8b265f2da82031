"""The judge's findings as text (a terminal), JSON (versioned: JUDGE_SCHEMA), Markdown (a pull request comment) or
GitHub workflow annotations (on the migration's file)."""

from __future__ import annotations

import json
from dataclasses import asdict

from migrationlab.locks import lock_name

FORMAT_VERSION = 1
LEVELS = ("never", "briefly", "throughout")
# Estimates measured from fewer rows are an order of magnitude: a statement of tens of milliseconds is moved by the
# machine's noise. docs/judge.md measures the estimates from 100,000 and from 1,000,000 rows against 10,000,000.
CLOSE_ESTIMATES_FROM = 1_000_000

_verdict = {"type": "string", "enum": list(LEVELS)}
_table = {
    "type": "object",
    "required": ["table", "lock", "reads", "writes", "rewrite", "scan"],
    "properties": {
        "table": {"type": "string"},
        "lock": {"type": ["string", "null"], "description": "the strongest lock the migration held on the table at "
                                                            "this stop (pg_locks' mode), or asked for"},
        "reads": {**_verdict, "description": "did a read of one row by primary key wait on the migration here"},
        "writes": {**_verdict, "description": "did an UPDATE of that row wait on the migration here"},
        "rewrite": {"type": ["boolean", "null"], "description": "relfilenode changed during the statement (null: "
                                                                "not measurable, the statement ran outside a "
                                                                "transaction)"},
        "scan": {"type": ["boolean", "null"], "description": "the statement read at least every row of the table"},
    },
}
JUDGE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "migrationlab judge report",
    "type": "object",
    "required": ["format", "command", "rows", "server_version", "migrations", "fail_on", "failed"],
    "properties": {
        "format": {"const": FORMAT_VERSION},
        "command": {"type": "string"},
        "rows": {"type": "integer", "description": "rows seeded in each table a migration touches"},
        "server_version": {"type": "string"},
        "production_server_version": {"type": ["string", "null"]},
        "fail_on": {"enum": ["briefly", "throughout"]},
        "with_report": {"type": ["number", "null"], "description": "--with-report: how long the report runs"},
        "failed": {"type": "boolean", "description": "a statement made reads or writes wait at or above fail_on"},
        "migrations": {"type": "array", "items": {
            "type": "object",
            "required": ["migration", "file", "atomic", "data_dependent", "seconds", "seeded", "notes",
                         "statements", "locks_held", "error"],
            "properties": {
                "migration": {"type": "string", "description": "app_label.name"},
                "file": {"type": "string"},
                "atomic": {"type": "boolean"},
                "data_dependent": {"type": "boolean", "description": "it runs RunPython: its time depends on the "
                                                                     "data"},
                "seconds": {"type": "number", "description": "the whole judged run, probes included"},
                "seeded": {"type": "object", "additionalProperties": {"type": "integer"}},
                "notes": {"type": "array", "items": {"type": "string"}},
                "error": {"type": ["string", "null"]},
                "estimate": {"type": ["object", "null"], "description": "every statement at production size: "
                                                                        "batches of one statement grow like n",
                             "properties": {"seconds": {"type": "number"}, "measured_seconds": {"type": "number"},
                                            "models": {"type": "array", "items": {"type": "string"}}}},
                "locks_held": {"type": "array", "description": "an atomic migration's locks, each from the "
                                                                "statement that took it to the commit (empty for a "
                                                                "non-atomic one)", "items": {
                    "type": "object", "required": ["table", "lock", "from_statement", "to_statement"],
                    "properties": {"table": {"type": "string"}, "lock": {"type": "string"},
                                   "from_statement": {"type": "integer"}, "to_statement": {"type": "integer"},
                                   "transaction": {"type": "integer"}}}},
                "statements": {"type": "array", "description": "one entry per stop of the migration's own "
                               "statements (Django's bookkeeping left out): after each statement, and while one "
                               "waits on a transaction the judge holds (a CONCURRENTLY build: once per phase it "
                               "waits at, then once done; a statement behind a report: once while queued)",
                               "items": {
                    "type": "object",
                    "required": ["number", "sql", "transaction", "seconds", "tables", "waiting_for", "estimate",
                                 "fix", "probed"],
                    "properties": {
                        "number": {"type": "integer"},
                        "sql": {"type": "string"},
                        "transaction": {"type": "integer"},
                        "seconds": {"type": ["number", "null"], "description": "the statement alone, at `rows`"},
                        "waiting_for": {"type": ["string", "null"],
                                        "description": "stopped while it waited: on the report, or on the open "
                                                      "transaction a CONCURRENTLY statement waits for"},
                        "phase": {"type": ["string", "null"]},
                        "lock_timeout": {"type": ["string", "null"]},
                        "probed": {"type": "boolean"},
                        "tables": {"type": "array", "items": _table},
                        "estimate": {"type": ["object", "null"], "properties": {
                            "seconds": {"type": "number"}, "model": {"enum": ["1", "n", "n log n"]},
                            "production_rows": {"type": "integer"}, "measured_rows": {"type": "integer"},
                            "factor": {"type": "number"}}},
                        "work_table": {"type": ["string", "null"]},
                        "rows_written": {"type": "integer"},
                        "fix": {"type": ["object", "null"], "properties": {
                            "operation": {"type": "string", "description": "docs/catalog.md's operation"},
                            "project": {"type": "string"}, "use": {"type": "string"}}},
                    },
                }},
            },
        }},
    },
}


def as_data(header: dict, results: list) -> dict:
    return {"format": FORMAT_VERSION, **header, "migrations": [asdict(result) for result in results]}


def _lock(mode: str | None) -> str:
    return lock_name(mode) if mode else "-"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _estimate(estimate: dict | None) -> str:
    if not estimate:
        return "-"
    return f"{estimate['seconds']:.1f} ({estimate['model']})"


def repeats(statements: list[dict]) -> list[list[dict]]:
    """Consecutive statements grouped when they are one statement repeated (the batches of a backfill or a delete:
    the same SQL text, each in a transaction of its own) with the same findings; every other statement alone."""
    def same(a: dict, b: dict) -> bool:
        return (a["sql"] == b["sql"] and a["transaction"] != b["transaction"] and not a["waiting_for"]
                and not b["waiting_for"] and a["tables"] == b["tables"] and a["fix"] == b["fix"])
    groups: list[list[dict]] = []
    for statement in statements:
        if groups and same(groups[-1][-1], statement):
            groups[-1].append(statement)
        else:
            groups.append([statement])
    return groups


def _numbers(group: list[dict]) -> str:
    return str(group[0]["number"]) if len(group) == 1 else f"{group[0]['number']}-{group[-1]['number']}"


def _group_seconds(group: list[dict]) -> float | None:
    known = [s["seconds"] for s in group if s["seconds"] is not None]
    return sum(known) if known else None


def estimates_caveat(data: dict) -> str | None:
    """What estimates from fewer than CLOSE_ESTIMATES_FROM rows are worth, if the report has any."""
    if data["rows"] >= CLOSE_ESTIMATES_FROM or not any(m.get("estimate") for m in data["migrations"]):
        return None
    return (f"estimates from {data['rows']:,} rows are an order of magnitude; --rows {CLOSE_ESTIMATES_FROM} gives "
            "closer ones (docs/judge.md measures both)")


def render_text(data: dict) -> str:
    lines = [f"migrationlab judge: {len(data['migrations'])} migration(s), tables seeded to {data['rows']:,} rows, "
             f"PostgreSQL {data['server_version']}"]
    caveat = estimates_caveat(data)
    if caveat:
        lines.append(caveat)
    if data.get("note"):
        lines.append(data["note"])
    for migration in data["migrations"]:
        kind = "atomic" if migration["atomic"] else "non-atomic"
        lines += ["", f"{migration['migration']}  ({kind}; {migration['seconds']:.1f} s judged"
                      f"{'; data-dependent (RunPython)' if migration['data_dependent'] else ''})"]
        if migration["error"]:
            lines.append(f"  FAILED: {migration['error']}")
        if migration.get("estimate"):
            whole = migration["estimate"]
            lines.append(f"  its statements: {whole['measured_seconds']:.2f} s here, about {whole['seconds']:.1f} s "
                         f"at production size ({', '.join(whole['models']) or 'constant'})")
        lines.append(f"  {'#':>5} {'table':24} {'lock':22} {'reads':10} {'writes':10} {'rewrite':7} {'scan':5} "
                     f"{'s@' + format(data['rows'], ','):>9} {'s@production':>14}")
        for group in repeats(migration["statements"]):
            statement = group[0]
            seconds = _group_seconds(group)
            # A repeated statement's own estimates count each batch at its size; the migration's line above counts
            # the batches at production size.
            estimate = _estimate(statement["estimate"]) if len(group) == 1 else "-"
            tables = statement["tables"] or [None]
            for position, table in enumerate(tables):
                number = _numbers(group) if position == 0 else ""
                if table is None:
                    lines.append(f"  {number:>5} {'(no table lock)':24} {'-':22} {'never':10} {'never':10} {'-':7} "
                                 f"{'-':5} {_seconds(seconds):>9} {estimate:>14}")
                    continue
                flag = lambda value: "-" if value is None else ("yes" if value else "no")  # noqa: E731
                lines.append(f"  {number:>5} {table['table'][:24]:24} {_lock(table['lock'])[:22]:22} "
                             f"{table['reads']:10} {table['writes']:10} {flag(table['rewrite']):7} "
                             f"{flag(table['scan']):5} {_seconds(seconds) if position == 0 else '':>9} "
                             f"{estimate if position == 0 else '':>14}")
            sql = statement["sql"] if len(statement["sql"]) <= 110 else statement["sql"][:107] + "..."
            waited = f" [stopped while waiting on the {statement['waiting_for']}]" if statement["waiting_for"] else ""
            if len(group) > 1:
                waited += f" [x{len(group)}: statements {_numbers(group)}, one transaction each]"
            if statement["waiting_for"] == "report" and data.get("with_report") and \
                    statement["lock_timeout"] in (None, "0") and any(
                        "throughout" in (t["reads"], t["writes"]) for t in statement["tables"]):
                waited += f"; traffic queues behind it for as long as the report runs ({data['with_report']:g} s)"
            lines.append(f"        {sql}{waited}")
            if statement["fix"]:
                fix = statement["fix"]
                shown = f" (lab: {fix['project']})" if fix["project"] else ""
                lines.append(f"        fix [{fix['operation']}]{shown}: {fix['use']}")
        for held in migration["locks_held"]:
            if held["to_statement"] > held["from_statement"]:
                lines.append(f"  {held['table']}: {_lock(held['lock'])} held from statement {held['from_statement']} "
                             f"to the commit after statement {held['to_statement']}")
        lines += [f"  note: {note}" for note in migration["notes"]]
    lines += ["", "reads/writes: never = did not wait on the migration; briefly = waited only on work that does not "
                  "grow with the table (fewer than a tenth of its rows, or one batch of a series; or a lock_timeout "
                  "bounds it); throughout = waited while the migration worked through the table (a tenth of its rows "
                  "or more in one transaction), or queued behind it for as long as a report ran."]
    return "\n".join(lines)


def render_markdown(data: dict) -> str:
    lines = [f"### migrationlab judge: {len(data['migrations'])} migration(s) at {data['rows']:,} rows "
             f"(PostgreSQL {data['server_version']})", ""]
    if data.get("note"):
        lines += [data["note"], ""]
    caveat = estimates_caveat(data)
    if caveat:
        lines += [caveat, ""]
    lines += ["| migration | # | table | lock | reads | writes | rewrite | scan | s at N | s at production | fix |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for migration in data["migrations"]:
        for group in repeats(migration["statements"]):
            statement = group[0]
            number = _numbers(group) + (f" (x{len(group)})" if len(group) > 1 else "")
            estimate = _estimate(statement["estimate"]) if len(group) == 1 else "-"
            for table in statement["tables"]:
                fix = statement["fix"]
                fix_text = f"`{fix['operation']}`: {fix['use']}" if fix else ""
                yes = lambda value: "" if value is None else ("yes" if value else "no")  # noqa: E731
                mark = lambda v: f"**{v}**" if v == "throughout" else v  # noqa: E731
                lines.append(f"| {migration['migration']} | {number} | {table['table']} | "
                             f"{_lock(table['lock'])} | {mark(table['reads'])} | {mark(table['writes'])} | "
                             f"{yes(table['rewrite'])} | {yes(table['scan'])} | {_seconds(_group_seconds(group))} | "
                             f"{estimate} | {fix_text} |")
        if migration["error"]:
            lines.append(f"| {migration['migration']} | | | | | | | | | | failed: {migration['error']} |")
    return "\n".join(lines) + "\n"


def render_github(data: dict, fail_on: str) -> str:
    """One annotation per statement that makes traffic wait: an error at or above --fail-on, else a warning."""
    lines = []
    for migration in data["migrations"]:
        for group in repeats(migration["statements"]):
            statement = group[0]
            worst = max((t[w] for t in statement["tables"] for w in ("reads", "writes")), key=LEVELS.index,
                        default="never")
            if worst == "never":
                continue
            level = "error" if LEVELS.index(worst) >= LEVELS.index(fail_on) else "warning"
            tables = ", ".join(f"{t['table']} {_lock(t['lock'])}: reads {t['reads']}, writes {t['writes']}"
                               for t in statement["tables"])
            fix = statement["fix"]
            which = f"statement {statement['number']}" if len(group) == 1 else f"statements {_numbers(group)}"
            text = f"{which}: {tables}" + (f". Fix: {fix['use']}" if fix else "")
            title = f"{migration['migration']} makes traffic wait {worst}"
            lines.append(f"::{level} file={_property(migration['file'])},line=1,title={_property(title)}::{_escape(text)}")
        if migration["error"]:
            lines.append(f"::error file={_property(migration['file'])},line=1,"
                         f"title={_property(migration['migration'] + ' failed')}::{_escape(migration['error'])}")
    return "\n".join(lines)


def _escape(text: str) -> str:
    """A workflow command's message: %, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    """A workflow command's property (file, title): also , and : escaped."""
    return _escape(text).replace(",", "%2C").replace(":", "%3A")


def render(data: dict, output_format: str, fail_on: str) -> str:
    if output_format == "json":
        return json.dumps(data, indent=2)
    if output_format == "markdown":
        return render_markdown(data)
    if output_format == "github":
        return render_github(data, fail_on)
    return render_text(data)
