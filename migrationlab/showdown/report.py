"""The showdown's results: the JSON report (schema.py), the terminal table, the risky-vs-safe summary, files."""

from __future__ import annotations

import csv
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from migrationlab.scenarios import Project, Step
from migrationlab.showdown import analysis
from migrationlab.locks import lock_name, lock_strength
from migrationlab.showdown.analysis import ACCESS_WORDS, Window
from migrationlab.showdown.probe import Request
from migrationlab.showdown.sampler import LockSample
from migrationlab.showdown.schema import REPORT_FORMAT

MAIN_ENDPOINTS = ("list_large", "update_order")
# The read and write of the table the large one refers to (scenario.toml's referenced_table), where there is one.
REFERENCED_ENDPOINTS = ("list_referenced", "update_referenced")


@dataclass
class StepRun:
    step: Step
    window: Window
    log: str  # the step's manage.py output, relative to the output folder
    actors: list[tuple[str, str]] = field(default_factory=list)  # (kind, description)
    # A project with releases: the release deployed at the end of the step, when the migration ended
    # (migrated_s) and when the probe moved over to the new release (deployed_s). None: no deploy.
    deploy: dict | None = None


@dataclass
class ProjectRun:
    """Everything measured in one project's run, as the runner hands it over."""

    project: Project
    database: str
    seed_s: float
    baseline: Window
    steps: list[StepRun]
    after: Window  # probing on after the last step, until the API answers normally again
    requests: list[Request]
    samples: list[LockSample]
    interval_s: float
    probe: dict
    sampler: dict
    # Where the API did not come back to its normal latency in the time the runner waited for it (e.g. "within
    # 120 s after the last step"): the machine itself overloaded (analysis.saturation).
    not_recovered: list[str] = field(default_factory=list)
    # Why the baseline looked saturated when it ended (analysis.saturation's reasons, requests still hanging
    # included), if it did.
    baseline_overload: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Settings:
    rows: int
    rate_per_s: float
    timeout_s: float
    sample_interval_s: float
    baseline_s: float


# -- JSON -------------------------------------------------------------------------------------------------------

def _endpoint_names(requests: list[Request]) -> list[str]:
    others = sorted({r.endpoint for r in requests} - set(MAIN_ENDPOINTS))
    return [*MAIN_ENDPOINTS, *others]


def project_report(run: ProjectRun) -> dict:
    project = run.project
    referenced = project.referenced_table
    tables = [project.large_table, project.small_table, *([referenced] if referenced else [])]
    names = _endpoint_names(run.requests)
    by_endpoint = {name: [r for r in run.requests if r.endpoint == name] for name in names}
    normal = {name: analysis.normal_latency([r for r in by_endpoint[name] if r.sent_s in run.baseline])
              for name in names if "/" not in name}
    for name in names:  # a previous release has no baseline of its own: it serves the same endpoints
        normal.setdefault(name, normal[name.rsplit("/", 1)[-1]])
    stalls = {name: analysis.stall_intervals(by_endpoint[name], normal[name]) for name in names}

    def endpoints_in(window: Window) -> dict:
        return {
            name: analysis.endpoint_stats(by_endpoint[name], window, stalls[name])
            for name in names
            if name in MAIN_ENDPOINTS or any(r.sent_s in window for r in by_endpoint[name])
        }

    def window_fields(window: Window) -> dict:
        return {"start_s": round(window.start_s, 3), "end_s": round(window.end_s, 3),
                "duration_s": round(window.duration_s, 3), "endpoints": endpoints_in(window)}

    timeline = analysis.lock_timeline(run.samples, tables, run.interval_s)
    baseline = window_fields(run.baseline)
    saturation = analysis.saturation(baseline["endpoints"], run.not_recovered)
    if run.baseline_overload and not saturation["baseline"]:  # its hanging requests never came back
        saturation |= {"baseline": True, "reasons": [*run.baseline_overload, *saturation["reasons"]]}
    overloaded = saturation["baseline"]  # every verdict says so (a late non-recovery may be the step's doing)
    steps = []
    for step_run in run.steps:
        fields = window_fields(step_run.window)
        locks_end = max((segment["end_s"] for segment in timeline if segment["start_s"] in step_run.window),
                        default=None)
        after_locks = {name: round(analysis.stall_after(stalls[name], step_run.window, locks_end), 3)
                       for name in fields["endpoints"]}
        backlog = {name: round(analysis.backlog_after(stalls[name], step_run.window), 3)
                   for name in fields["endpoints"]}
        locks = analysis.migration_locks(run.samples, step_run.window, tables, run.interval_s)
        waits = analysis.web_waits(run.samples, step_run.window, tables, run.interval_s, referenced)
        other_waits = analysis.web_other_waits(run.samples, step_run.window, run.interval_s)
        steps.append({
            "migration": step_run.step.migration,
            "kind": step_run.step.kind,
            "what": step_run.step.what,
            **fields,
            "actors": [{"kind": kind, "description": description} for kind, description in step_run.actors],
            "locks": locks,
            "claimed": _claimed(step_run.step),
            "observed": {kind: wait["level"] for kind, wait in waits.items()},
            "web_waits": {kind: {"sessions": wait["sessions"], "longest_wait_s": wait["longest_wait_s"]}
                          for kind, wait in waits.items()},
            "web_other_waits_s": other_waits,
            "stall_after_locks_s": after_locks,
            "backlog_after_step_s": backlog,
            "verdict": analysis.verdict(fields["endpoints"], locks, waits, run.interval_s, other_waits, after_locks,
                                        referenced, backlog, overloaded),
            "log": step_run.log,
            **({"deploy": _deploy(step_run, run.requests)} if step_run.deploy else {}),
        })
    return {
        "project": project.name,
        "title": project.title,
        "variant": project.variant,
        **({"referenced_table": referenced} if referenced else {}),
        "database": run.database,
        "seed_s": round(run.seed_s, 3),
        "normal_latency_s": {name: round(value, 4) for name, value in normal.items()},
        "saturation": saturation,
        "baseline": baseline,
        "steps": steps,
        "after": window_fields(run.after),
        "lock_timeline": timeline,
        "probe": run.probe,
        "sampler": run.sampler,
    }


def _deploy(step_run: StepRun, requests: list[Request]) -> dict:
    """The deploy at the end of the step, and since when the release still serving failed (its first failed
    request sent in the step; None if none failed): until the deploy, every request of it failed."""
    failed = [r.sent_s for r in requests if r.failed and r.sent_s in step_run.window
              and r.endpoint.startswith("previous_release/")]
    return {**step_run.deploy, "failing_from_s": round(min(failed), 3) if failed else None}


def _claimed(step: Step) -> dict:
    claims = {"reads": step.reads, "writes": step.writes}
    if step.referenced_reads:
        claims |= {"referenced_reads": step.referenced_reads, "referenced_writes": step.referenced_writes}
    return claims


def summary(projects: list[dict]) -> list[dict]:
    """Per project and kind of step: all its steps together."""
    rows = []
    for project in projects:
        for kind in ("risky", "safe"):
            steps = [step for step in project["steps"] if step["kind"] == kind]
            if not steps:
                continue
            endpoints = {}
            for step in steps:
                for name, stats in step["endpoints"].items():
                    total = endpoints.setdefault(name, {"requests": 0, "failures": 0, "max_s": None,
                                                        "longest_stall_s": 0.0, "backlog_after_step_s": 0.0})
                    total["requests"] += stats["requests"]
                    total["failures"] += stats["failures"]
                    if stats["max_s"] is not None:
                        total["max_s"] = max(total["max_s"] or 0.0, stats["max_s"])
                    total["longest_stall_s"] = max(total["longest_stall_s"], stats["longest_stall_s"])
                    total["backlog_after_step_s"] = max(total["backlog_after_step_s"],
                                                        step["backlog_after_step_s"].get(name, 0.0))
            rows.append({"project": project["project"], "kind": kind, "steps": len(steps),
                         "duration_s": round(sum(step["duration_s"] for step in steps), 3), "endpoints": endpoints})
    return rows


def build_report(scenario: int, settings: Settings, runs: list[ProjectRun], server_version: str, embedded: bool,
                 started_at: datetime) -> dict:
    projects = [project_report(run) for run in runs]
    return {
        "format": REPORT_FORMAT,
        "scenario": scenario,
        "rows": settings.rows,
        "started_at": started_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "settings": {"rate_per_s": settings.rate_per_s, "timeout_s": settings.timeout_s,
                     "sample_interval_s": settings.sample_interval_s, "baseline_s": settings.baseline_s},
        "server": {"postgres": server_version, "embedded": embedded, "cpus": os.cpu_count() or 0,
                   "platform": f"{platform.system()} {platform.machine()}"},
        "saturated": any(project["saturation"]["baseline"] for project in projects),
        "projects": projects,
        "summary": summary(projects),
    }


def write_json(report: dict, path: Path) -> None:
    path.write_text(json.dumps(report, indent=2) + "\n")


def write_requests_csv(runs: list[ProjectRun], path: Path) -> None:
    """Every probe request, for anyone who wants to plot it their own way."""
    with open(path, "w", newline="") as output:
        writer = csv.writer(output)
        writer.writerow(["project", "endpoint", "sent_s", "latency_s", "status", "error"])
        for run in runs:
            for r in sorted(run.requests, key=lambda r: r.sent_s):
                writer.writerow([run.project.name, r.endpoint, f"{r.sent_s:.4f}", f"{r.latency_s:.4f}",
                                 r.status if r.status is not None else "", r.error or ""])


# -- terminal ---------------------------------------------------------------------------------------------------

def _latency(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value >= 1 else f"{value * 1000:.0f}ms"


def _endpoint_cells(stats: dict | None) -> str:
    if stats is None:
        return f"{'':>9} {'':>6} {'':>6} {'':>6}"
    failed = f"{stats['failures']}/{stats['requests']}"
    return (f"{failed:>9} {_latency(stats['p99_s']):>6} {_latency(stats['max_s']):>6} "
            f"{stats['longest_stall_s']:>5.1f}s")


def _lock_line(locks: list[dict]) -> str:
    """Per table: the strongest lock the migration held, and who waited on which lock."""
    parts = []
    for relation in dict.fromkeys(lock["relation"] for lock in locks):
        mine = [lock for lock in locks if lock["relation"] == relation]
        strongest = max(mine, key=lambda lock: lock_strength(lock["mode"]))
        text = f"{relation} {lock_name(strongest['mode'])} {analysis.seconds_or_ms(strongest['held_s'])}"
        if strongest["waited_s"]:
            behind = f" behind {', '.join(strongest['waited_behind'])}" if strongest["waited_behind"] else ""
            text += f" (after waiting {analysis.seconds_or_ms(strongest['waited_s'])}{behind})"
        for lock in mine:
            if lock["waiters_total"]:
                text += (f"; {lock['waiters_total']} sessions waited on its {lock_name(lock['mode'])}, up to "
                         f"{lock['waiters_max']} at once, longest {analysis.seconds_or_ms(lock['longest_wait_s'])}")
        parts.append(text)
    return " | ".join(parts) or "none seen"


def _claims(step: dict) -> str:
    if step["observed"] == step["claimed"]:
        return "as claimed"
    claimed, observed = step["claimed"], step["observed"]

    def words(levels: dict) -> str:
        return ", ".join(f"{kind.replace('_', ' ')} {level}" for kind, level in levels.items())

    return f"scenario.toml claims {words(claimed)}; seen: {words(observed)}"


def render_project(project: dict, rate_per_s: float | None = None) -> str:
    normal = project["normal_latency_s"]
    header = (f"{'step':44} {'kind':5} {'time':>7} |  reads: {'fail':>9} {'p99':>6} {'max':>6} {'stall':>6} "
              f"|  writes: {'fail':>9} {'p99':>6} {'max':>6} {'stall':>6}")
    referenced = project.get("referenced_table")
    lines = [
        *([analysis.overload_warning(project["saturation"], rate_per_s)] if project["saturation"]["reasons"] else []),
        f"{project['project']} — {project['title']}",
        f"  normal latency (stall threshold): reads {_latency(normal['list_large'])}, "
        f"writes {_latency(normal['update_order'])}"
        + (f"; on {referenced}: reads {_latency(normal.get('list_referenced'))}, "
           f"writes {_latency(normal.get('update_referenced'))}" if referenced else ""),
        "  " + header,
    ]

    def row(label: str, kind: str, window: dict) -> str:
        reads, writes = (_endpoint_cells(window["endpoints"].get(name)) for name in MAIN_ENDPOINTS)
        line = f"  {label:44} {kind:5} {window['duration_s']:>6.1f}s | {'':7} {reads} | {'':8} {writes}"
        if referenced:  # the referenced table's read and write, in a row of their own underneath
            reads, writes = (_endpoint_cells(window["endpoints"].get(name)) for name in REFERENCED_ENDPOINTS)
            line += f"\n  {'  on ' + referenced:44} {'':5} {'':>7} | {'':7} {reads} | {'':8} {writes}"
        return line

    lines.append(row("baseline", "", project["baseline"]))
    for step in project["steps"]:
        lines.append(row(step["migration"], step["kind"], step))
        for actor in step["actors"]:
            lines.append(f"      with {actor['description']}")
        lines.append(f"      -> {step['verdict']}  [{_claims(step)}]")
        if step.get("deploy"):
            lines.append(f"         {_deploy_line(step['deploy'])}")
        lines.append(f"         locks: {_lock_line(step['locks'])}")
    lines.append(row("after the last step", "", project["after"]))
    return "\n".join(lines)


def render_summary(report: dict) -> str:
    rows = report["summary"]
    risky = [row for row in rows if row["kind"] == "risky"]
    safe = [row for row in rows if row["kind"] == "safe"]
    rate = report["settings"]["rate_per_s"]
    warnings = [analysis.overload_warning(project["saturation"], rate, project["project"])
                for project in report["projects"] if project["saturation"]["reasons"]]
    lines = [*warnings, f"Risky vs safe, {report['rows']:,} rows, {rate:g} requests/s per endpoint:"]
    if risky and safe:  # the headline first: how long the API stalled
        lines.extend("  " + line for line in _conclusion(risky, safe))
    lines += [f"  {'project':34} {'kind':5} {'steps':>5} {'time':>8}  "
             f"{'reads failed':>14} {'longest stall':>13} {'max':>6}  "
             f"{'writes failed':>14} {'longest stall':>13} {'max':>6}"]
    for row in rows:
        cells = [_summary_cells(row["endpoints"][name]) for name in MAIN_ENDPOINTS]
        lines.append(f"  {row['project']:34} {row['kind']:5} {row['steps']:>5} {row['duration_s']:>7.1f}s  "
                     f"{cells[0]}  {cells[1]}")
        if all(name in row["endpoints"] for name in REFERENCED_ENDPOINTS):  # its referenced table's, underneath
            cells = [_summary_cells(row["endpoints"][name]) for name in REFERENCED_ENDPOINTS]
            lines.append(f"  {'  on the referenced table':34} {'':5} {'':>5} {'':>8}  {cells[0]}  {cells[1]}")
        previous = [f"previous_release/{name}" for name in MAIN_ENDPOINTS]
        if all(name in row["endpoints"] for name in previous):  # the release still serving, underneath
            cells = [_summary_cells(row["endpoints"][name]) for name in previous]
            lines.append(f"  {'  the previous release':34} {'':5} {'':>5} {'':>8}  {cells[0]}  {cells[1]}")
    return "\n".join(lines)


def _deploy_line(deploy: dict) -> str:
    line = (f"deployed release {deploy['release']} {deploy['deployed_s'] - deploy['migrated_s']:.1f} s after the "
            "migration ended")
    if deploy["failing_from_s"] is not None:
        line += (f"; the previous release failed from {deploy['failing_from_s']:.1f} s on, until the deploy "
                 f"({deploy['deployed_s'] - deploy['failing_from_s']:.1f} s)")
    return line


def _summary_cells(stats: dict) -> str:
    return (f"{stats['failures']:>6} of {stats['requests']:<5} {stats['longest_stall_s']:>12.1f}s "
            f"{_latency(stats['max_s']):>6}")


def _worst(rows: list[dict], name: str, key: str) -> float:
    return max((row["endpoints"][name][key] or 0 for row in rows), default=0)


def _conclusion(risky: list[dict], safe: list[dict]) -> list[str]:
    risky_time = sum(row["duration_s"] for row in risky)
    safe_time = sum(row["duration_s"] for row in safe)
    risky_failed = sum(row["endpoints"][name]["failures"] for row in risky for name in MAIN_ENDPOINTS)
    safe_failed = sum(row["endpoints"][name]["failures"] for row in safe for name in MAIN_ENDPOINTS)
    risky_stall = {word: _worst(risky, name, "longest_stall_s") for name, word in ACCESS_WORDS.items()}
    risky_backlog = max(_worst(risky, name, "backlog_after_step_s") for name in MAIN_ENDPOINTS)
    safe_stall = max(_worst(safe, name, "longest_stall_s") for name in MAIN_ENDPOINTS)
    safe_max = max(_worst(safe, name, "max_s") for name in MAIN_ENDPOINTS)
    lines = [
        f"RISKY: the API stalled {max(risky_stall.values()):.1f} s (reads {risky_stall['reads']:.1f} s, writes "
        f"{risky_stall['writes']:.1f} s) during {risky_time:.1f} s of migration; {risky_failed} requests failed."
        + (f" The backlog drained for {risky_backlog:.1f} s after the step: the outage outlasted the lock."
           if risky_backlog >= analysis.BLOCKED_AFTER_S else ""),
        f"SAFE:  longest stall {safe_stall:.1f} s, slowest answer {_latency(safe_max)}; {safe_failed} requests "
        f"failed, in {safe_time:.1f} s of migration ({safe_time / max(risky_time, 1e-9):.1f}x as long).",
    ]
    if not risky_failed:
        lines.append("(The risky stall stayed under the client timeout, so nothing failed: run it with more --rows, "
                     "or a lower --timeout, to see the outage.)")
    return lines
