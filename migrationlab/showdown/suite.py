"""`python -m migrationlab showdown all`: every scenario in turn, and one summary of them all.

Each scenario is run by runner.run, the single showdown's runner, on one ShowdownDatabases shared by all (the
embedded PostgreSQL starts once), its results in a folder of its own (scenario-NN/: report.json, chart.png,
requests.csv, logs/). A scenario that fails (any exception: a port in use, a migration that fails) is recorded
with its one-line reason (the traceback goes to scenario-NN/error.txt) and the next one runs. Ctrl-C stops the
scenario under way, cleaned up by the runner as a single showdown is, and the summary of what finished is still
written. The summary: summary.md (a Markdown table, a row per step) and summary.json (SUMMARY_SCHEMA).
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from migrationlab.errors import LabError
from migrationlab.locks import lock_name, lock_strength
from migrationlab.scenarios import Project, ScenarioError, all_projects, get_project
from migrationlab.showdown import analysis, runner
from migrationlab.showdown.databases import ShowdownDatabases
from migrationlab.processes import interrupts_deferred
from migrationlab.showdown.report import MAIN_ENDPOINTS, REFERENCED_ENDPOINTS
from migrationlab.showdown.schema import SUMMARY_FORMAT

PREVIOUS = "previous_release/"


@dataclass
class ScenarioResult:
    """One scenario of the run: done (with its report), failed (with the reason), interrupted, or not run."""

    scenario: int
    projects: list[str]
    status: str  # done | failed | interrupted | not run
    reason: str = ""
    folder: str = ""  # relative to the summary's folder
    wall_s: float = 0.0
    report: dict | None = field(default=None, repr=False)


def plan(only: str | None = None) -> list[tuple[int, list[Project]]]:
    """The scenarios to run, in order, each with its projects: all of them, or those `only` names ("1,9")."""
    projects = all_projects()
    numbers = sorted({project.scenario for project in projects})
    chosen = numbers
    if only is not None:
        chosen = []
        for item in only.split(","):
            if not item.strip().isdigit() or int(item) not in numbers:
                raise LabError(f"--only takes scenario numbers separated by commas ({numbers[0]}-{numbers[-1]}), "
                               f"got '{only}'")
            chosen.append(int(item))
        chosen = sorted(set(chosen))
    return [(number, [project for project in projects if project.scenario == number]) for number in chosen]


def output_folder(options: runner.Options) -> Path:
    folder = options.out_dir or Path.cwd() / f"showdown-all-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise LabError(f"cannot write the results to {folder}: {problem.strerror or problem}") from None
    return folder


def one_line(failure: BaseException) -> str:
    """The reason a scenario failed, in one line: a LabError says it all; anything else is named by its type."""
    text = (str(failure).strip().splitlines() or [""])[0]
    if isinstance(failure, LabError):
        return text
    return f"{type(failure).__name__}: {text}" if text else type(failure).__name__


def run_all(options: runner.Options, say=print, scenarios: list[tuple[int, list[Project]]] | None = None) -> dict:
    """Every scenario of `scenarios` (by default all) in turn; the summary (also written to options.out_dir).
    Re-raises KeyboardInterrupt after writing the summary of what finished."""
    scenarios = plan() if scenarios is None else scenarios
    started_at, began = datetime.now(timezone.utc), time.monotonic()
    results = [ScenarioResult(number, [p.name for p in projects], "not run") for number, projects in scenarios]
    interrupted = False
    out = None
    try:
        with ShowdownDatabases(options.database_url, postgres=options.postgres) as databases:
            out = output_folder(options)
            say(f"Showdown of {len(scenarios)} scenarios, {options.rows:,} rows, {options.rate_per_s:g} requests/s "
                f"per endpoint; results in {out}")
            for index, ((number, projects), result) in enumerate(zip(scenarios, results), start=1):
                say(f"\n=== scenario {number} ({index} of {len(scenarios)}): {', '.join(result.projects)}")
                folder, result.folder = out / f"scenario-{number:02d}", f"scenario-{number:02d}"
                scenario_began = time.monotonic()
                progress = f"[{index}/{len(scenarios)} scenario {number}] "
                try:
                    outcome = runner.run(replace(options, selector=str(number), out_dir=folder, progress=progress),
                                         say, projects, databases)
                except KeyboardInterrupt:
                    result.status, result.reason = "interrupted", "Ctrl-C"
                    interrupted = True
                    break
                except Exception as failure:  # noqa: BLE001 - whatever it was, the next scenario still runs
                    result.status, result.reason = "failed", one_line(failure)
                    say(f"  scenario {number} FAILED: {result.reason}; going on with the next one")
                    try:
                        folder.mkdir(parents=True, exist_ok=True)
                        (folder / "error.txt").write_text(traceback.format_exc())
                    except OSError:
                        pass
                else:
                    result.status, result.report = "done", outcome.report
                finally:
                    result.wall_s = time.monotonic() - scenario_began
    except KeyboardInterrupt:  # while the database server started or stopped
        interrupted = True
    finally:  # an error while the database server stopped, too: what finished is summed up
        with interrupts_deferred():
            summary = build_summary(results, options, started_at, time.monotonic() - began, interrupted)
            if out is not None:
                write_summary(summary, out)
                say("\n" + render_markdown(summary))
                say(f"summary: {out / 'summary.md'}  {out / 'summary.json'}")
    if interrupted:
        raise KeyboardInterrupt
    return summary


# -- the summary ------------------------------------------------------------------------------------------------

def _strongest_lock(locks: list[dict]) -> dict | None:
    seen = [lock for lock in locks if lock["held_s"] or lock["waited_s"]]
    if not seen:
        return None
    lock = max(seen, key=lambda lock: (lock_strength(lock["mode"]), lock["held_s"]))
    return {"relation": lock["relation"], "mode": lock["mode"], "held_s": lock["held_s"],
            "waited_s": lock["waited_s"]}


def _claims_serving_release_fails(project_name: str, migration: str) -> bool:
    """Whether scenario.toml says the step fails the release still serving (previous_release = "fails")."""
    try:
        project = get_project(project_name)
    except ScenarioError:  # a report of a project since renamed or removed
        return False
    return any(step.migration == migration and step.previous_release == "fails" for step in project.steps)


def _goal(kind: str, stall_s: float, failures: int, serving_release_failures: int | None = None) -> tuple[bool, str]:
    """The goal for a step: a risky step does the harm it claims, a safe step fails no request (on any endpoint, a
    previous release's included).

    The harm of most risky steps is a stall (at least BLOCKED_AFTER_S). A step that claims to fail the release still
    serving (a rename, a drop: `serving_release_failures` is then that release's failed requests) locks for
    milliseconds and stalls nothing: its harm is those failed requests."""
    if kind == "risky":
        failed = f"{failures} requests failed" if failures else ""
        if stall_s >= analysis.BLOCKED_AFTER_S:
            return True, f"stalled {stall_s:.1f} s" + (f", {failed}" if failed else "")
        if serving_release_failures is not None:
            if serving_release_failures:
                return True, (f"the release still serving failed {serving_release_failures} requests "
                              f"({failures} in all)")
            return False, "the release still serving failed no request, and nothing stalled"
        return False, f"no stall of {analysis.BLOCKED_AFTER_S:g} s or more" + (f" (but {failed})" if failed else "")
    if failures:
        return False, f"{failures} requests failed"
    return True, "failed nothing"


def step_rows(scenario: int, report: dict) -> list[dict]:
    """One row per step of every project of a scenario's report."""
    rows = []
    for project in report["projects"]:
        overloaded, not_recovered = project["saturation"]["baseline"], project["saturation"]["after"]
        for step in project["steps"]:
            endpoints = step["endpoints"]
            stall_endpoint = max(endpoints, key=lambda name: endpoints[name]["longest_stall_s"])
            stall_s = endpoints[stall_endpoint]["longest_stall_s"]
            failures = sum(stats["failures"] for stats in endpoints.values())
            serving = None
            if step["kind"] == "risky" and _claims_serving_release_fails(project["project"], step["migration"]):
                serving = sum(stats["failures"] for name, stats in endpoints.items() if name.startswith(PREVIOUS))
            met, why = _goal(step["kind"], stall_s, failures, serving)
            rows.append({
                "scenario": scenario,
                "project": project["project"],
                "referenced_table": project.get("referenced_table"),
                "migration": step["migration"],
                "kind": step["kind"],
                "duration_s": step["duration_s"],
                "failed": {name: {"failures": stats["failures"], "requests": stats["requests"]}
                           for name, stats in endpoints.items()},
                "longest_stall_s": stall_s,
                "longest_stall_endpoint": stall_endpoint,
                "backlog_after_step_s": max(step["backlog_after_step_s"].values(), default=0.0),
                "strongest_lock": _strongest_lock(step["locks"]),
                "claimed": step["claimed"],
                "observed": step["observed"],
                "as_claimed": step["claimed"] == step["observed"],
                "goal_met": met,
                "goal": why,
                "overloaded": overloaded,
                "not_recovered": not_recovered,
                "verdict": step["verdict"],
            })
    return rows


def build_summary(results: list[ScenarioResult], options: runner.Options, started_at: datetime, wall_s: float,
                  interrupted: bool) -> dict:
    steps = [row for result in results if result.report for row in step_rows(result.scenario, result.report)]
    flagged = [(f"scenario {result.scenario} {project['project']}: {'; '.join(project['saturation']['reasons'])}",
                project["saturation"]["baseline"])
               for result in results if result.report for project in result.report["projects"]
               if project["saturation"]["reasons"]]
    overloaded = [text for text, baseline in flagged if baseline]
    return {
        "format": SUMMARY_FORMAT,
        "rows": options.rows,
        "settings": {"rate_per_s": options.rate_per_s, "timeout_s": options.timeout_s,
                     "long_query_s": options.long_query_s},
        "started_at": started_at.astimezone(timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(wall_s, 1),
        "interrupted": interrupted,
        "saturated": bool(overloaded),
        "overloaded": overloaded,
        "not_recovered": [text for text, baseline in flagged if not baseline],
        "scenarios": [{"scenario": result.scenario, "projects": result.projects, "status": result.status,
                       "reason": result.reason, "folder": result.folder, "wall_s": round(result.wall_s, 1),
                       **({"report": f"{result.folder}/report.json", "chart": f"{result.folder}/chart.png"}
                          if result.report else {})}
                      for result in results],
        "steps": steps,
        "goal": {"risky_steps": sum(row["kind"] == "risky" for row in steps),
                 "risky_did_harm": sum(row["kind"] == "risky" and row["goal_met"] for row in steps),
                 "safe_steps": sum(row["kind"] == "safe" for row in steps),
                 "safe_failed_nothing": sum(row["kind"] == "safe" and row["goal_met"] for row in steps),
                 "missed": [f"{row['project']} {row['migration']} ({row['kind']}): {row['goal']}"
                            for row in steps if not row["goal_met"]]},
    }


def summarize_again(folder: Path) -> dict:
    """Rebuild summary.json and summary.md of an earlier `showdown all` from its folder (its summary.json for the
    run's settings and scenarios, each scenario's report.json for the measurements), with this version's rules for
    the goals and the table. Nothing runs again: the measurements are the run's."""
    try:
        earlier = json.loads((folder / "summary.json").read_text())
        results = []
        for scenario in earlier["scenarios"]:
            report = None
            if scenario["status"] == "done":
                report = json.loads((folder / scenario["folder"] / "report.json").read_text())
            results.append(ScenarioResult(scenario["scenario"], scenario["projects"], scenario["status"],
                                          scenario["reason"], scenario["folder"], scenario["wall_s"], report))
        settings = earlier["settings"]
        options = runner.Options(selector="all", rows=earlier["rows"], rate_per_s=settings["rate_per_s"],
                                 timeout_s=settings["timeout_s"], long_query_s=settings["long_query_s"])
        started_at = datetime.fromisoformat(earlier["started_at"])
        summary = build_summary(results, options, started_at, earlier["wall_s"], earlier["interrupted"])
    except OSError as problem:
        raise LabError(f"{folder} holds no finished `showdown all`: {problem.strerror or problem}") from None
    except (ValueError, KeyError, TypeError) as problem:
        raise LabError(f"{folder}: not the summary and reports of a `showdown all` ({problem})") from None
    write_summary(summary, folder)
    return summary


def write_summary(summary: dict, folder: Path) -> None:
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "summary.md").write_text(render_markdown(summary) + "\n")


def _failed_cell(failed: dict, prefix: str = "", referenced: str | None = None) -> str:
    words = dict(zip(MAIN_ENDPOINTS, ("reads", "writes")))
    cells = [f"{word} {failed[prefix + name]['failures']}/{failed[prefix + name]['requests']}"
             for name, word in words.items() if prefix + name in failed]
    on_referenced = [f"{word} {failed[prefix + name]['failures']}/{failed[prefix + name]['requests']}"
                     for name, word in zip(REFERENCED_ENDPOINTS, ("reads", "writes")) if prefix + name in failed]
    if on_referenced:
        cells.append(f"{referenced or 'referenced'}: " + ", ".join(on_referenced))
    return ", ".join(cells) or "-"


def _lock_cell(lock: dict | None) -> str:
    if lock is None:
        return "none sampled"
    waited = f" (after waiting {analysis.seconds_or_ms(lock['waited_s'])})" if lock["waited_s"] else ""
    held = analysis.seconds_or_ms(lock["held_s"]) if lock["held_s"] else "held too briefly to sample"
    return f"{lock_name(lock['mode'])} on {lock['relation']} {held}{waited}"


def render_markdown(summary: dict) -> str:
    goal = summary["goal"]
    lines = [f"# Showdown of every scenario: {summary['rows']:,} rows, "
             f"{summary['settings']['rate_per_s']:g} requests/s per endpoint", ""]
    if summary["overloaded"]:  # first thing: what the numbers below measure
        lines += [f"**OVERLOADED: these {analysis.OVERLOAD_WORDS}** (run again with a lower --rate):", ""]
        lines += [f"- {text}" for text in summary["overloaded"]] + [""]
    if summary["not_recovered"]:
        lines += ["**NOT RECOVERED: the API did not come back to its baseline latency** (the machine overloaded, or "
                  "a step that left the API slower for good, e.g. a lookup that lost its index; a lower --rate tells "
                  "which):", ""]
        lines += [f"- {text}" for text in summary["not_recovered"]] + [""]
    if summary["interrupted"]:
        lines += ["**Interrupted (Ctrl-C): the summary of what finished.**", ""]
    failed = [s for s in summary["scenarios"] if s["status"] == "failed"]
    lines += [f"Started {summary['started_at']}, took {summary['wall_s'] / 60:.1f} min. "
              f"Risky steps that did the harm they claim (a stall; for a rename or a drop, the release still serving "
              f"failing): {goal['risky_did_harm']} of {goal['risky_steps']}; safe steps that "
              f"failed nothing: {goal['safe_failed_nothing']} of {goal['safe_steps']}."
              + (f" Scenarios that failed: {len(failed)}." if failed else ""), ""]
    lines += [f"- missed: {text}" for text in goal["missed"]] + ([""] if goal["missed"] else [])
    lines += ["| scenario | project | step | kind | time | failed (reads, writes) | previous release failed | "
              "longest stall | backlog after the step | strongest lock | claim (scenario.toml) | goal |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for scenario in summary["scenarios"]:
        rows = [row for row in summary["steps"] if row["scenario"] == scenario["scenario"]]
        if scenario["status"] != "done":
            reason = f": {scenario['reason']}" if scenario["reason"] else ""
            lines.append(f"| {scenario['scenario']} | {', '.join(scenario['projects'])} | | | | | | | | | | "
                         f"**{scenario['status']}**{reason.replace('|', '/')} |")
        for row in rows:
            claim = "as claimed" if row["as_claimed"] else ", ".join(
                f"{kind.replace('_', ' ')} {level} (seen {row['observed'].get(kind, 'never')})"
                for kind, level in row["claimed"].items() if row["observed"].get(kind) != level)
            mark = ("yes" if row["goal_met"] else "**NO**") + f": {row['goal']}"
            if row["overloaded"]:
                mark += " (overloaded)"
            elif row["not_recovered"]:
                mark += " (not recovered)"
            backlog = f"{row['backlog_after_step_s']:.1f} s" if row["backlog_after_step_s"] >= 0.05 else "-"
            lines.append(
                f"| {row['scenario']} | {row['project']} | {row['migration']} | {row['kind']} | "
                f"{row['duration_s']:.1f} s | {_failed_cell(row['failed'], referenced=row['referenced_table'])} | "
                f"{_failed_cell(row['failed'], PREVIOUS) if any(n.startswith(PREVIOUS) for n in row['failed']) else '-'}"
                f" | {row['longest_stall_s']:.1f} s | {backlog} | {_lock_cell(row['strongest_lock'])} | {claim} | "
                f"{mark} |")
    charts = [s for s in summary["scenarios"] if s.get("chart")]
    if charts:
        lines += ["", "Charts: " + ", ".join(f"[scenario {s['scenario']}]({s['chart']})" for s in charts)
                  + "; every step's verdict is in its scenario's report.json."]
    return "\n".join(lines)
