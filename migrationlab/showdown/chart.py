"""The showdown's picture: per project, every request's latency over time per endpoint, the steps shaded (red
risky, green safe), failures marked, and underneath, per table, the lock the migration held as coloured bands
(hatched while it was still waiting for it).

Drawn on a bare matplotlib Figure (no pyplot): no GUI backend, no global state.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import Patch

from migrationlab.locks import LOCK_MODES, lock_name, lock_strength
from migrationlab.showdown.probe import Request

KIND_COLOURS = {"risky": "#d62728", "safe": "#2ca02c", "baseline": "#7f7f7f"}
DEPLOY_COLOUR = "#9467bd"  # the previous release's colour: the line where it hands over to the next one
ENDPOINT_PANELS = (("list_large", "reads  /list_large/"), ("update_order", "writes  /update_order/"))
# In a project with a referenced table (the customers a foreign key refers to): its read and write, underneath.
REFERENCED_PANELS = (("list_referenced", "reads  /list_referenced/"),
                     ("update_referenced", "writes  /update_referenced/"))
PANEL_HEIGHT = 3.0  # per latency panel, against the lock panel's 0.5 + 0.35 per table
# Weak locks pale, ACCESS EXCLUSIVE dark red: the darker the band, the more it blocks.
MODE_COLOURS = dict(zip(LOCK_MODES, ("#fff5b1", "#fee391", "#fec44f", "#a1d99b", "#fd8d3c", "#f16913", "#d94801",
                                     "#7f0000")))


def _shade_steps(axis, project: dict, span_s: float, label: bool) -> None:
    """Shade the windows; label them on top, a narrow one with its migration number only, written upwards."""
    def write(window: dict, text: str, colour: str) -> None:
        middle = (window["start_s"] + window["end_s"]) / 2
        if window["end_s"] - window["start_s"] >= span_s / 25:
            axis.text(middle, 0.97, text, transform=axis.get_xaxis_transform(), ha="center", va="top", fontsize=7,
                      color=colour)
        else:
            axis.text(middle, 0.97, text.split("\n")[0], transform=axis.get_xaxis_transform(), ha="center", va="top",
                      fontsize=6, color=colour, rotation=90)

    for name in ("baseline", "after"):
        window = project[name]
        axis.axvspan(window["start_s"], window["end_s"], color=KIND_COLOURS["baseline"], alpha=0.08, lw=0)
        if label:
            write(window, name, "#555555")
    for index, step in enumerate(project["steps"]):
        colour = KIND_COLOURS[step["kind"]]
        axis.axvspan(step["start_s"], step["end_s"], color=colour, alpha=0.10 if index % 2 == 0 else 0.17, lw=0)
        if label:
            write(step, f"{step['migration'].split('_', 1)[0]}\n{step['kind']}", colour)
        if step.get("deploy"):  # a project with releases: the moment the next release took over
            axis.axvline(step["deploy"]["deployed_s"], color=DEPLOY_COLOUR, ls="-.", lw=0.9)
            if label:
                axis.text(step["deploy"]["deployed_s"], 0.03, f" release {step['deploy']['release']} deployed",
                          transform=axis.get_xaxis_transform(), fontsize=6, color=DEPLOY_COLOUR, rotation=90,
                          va="bottom")


def _latency_panel(axis, project: dict, requests: list[Request], endpoint: str, title: str, timeout_s: float) -> None:
    ok = [r for r in requests if r.endpoint == endpoint and not r.failed]
    failed = [r for r in requests if r.endpoint == endpoint and r.failed]
    previous = [r for r in requests if r.endpoint == f"previous_release/{endpoint}"]
    axis.scatter([r.sent_s for r in ok], [r.latency_s for r in ok], s=5, color="#1f77b4", lw=0, label="answered")
    if previous:
        axis.scatter([r.sent_s for r in previous if not r.failed], [r.latency_s for r in previous if not r.failed],
                     s=8, marker="^", color="#9467bd", lw=0, label="previous release, answered")
        axis.scatter([r.sent_s for r in previous if r.failed], [max(r.latency_s, 1e-3) for r in previous if r.failed],
                     s=14, marker="1", color="#d62728", label="previous release, failed")
    axis.scatter([r.sent_s for r in failed], [max(r.latency_s, 1e-3) for r in failed], s=16, marker="x",
                 color="#d62728", lw=0.9, label="failed (not 200, or no answer)")
    axis.axhline(timeout_s, color="#d62728", ls="--", lw=0.8)
    axis.text(1.0, timeout_s, f" timeout {timeout_s:g} s", transform=axis.get_yaxis_transform(), fontsize=7,
              va="center", color="#d62728")
    normal = project["normal_latency_s"][endpoint]
    axis.axhline(normal, color="#555555", ls=":", lw=0.8)
    axis.text(1.0, normal, f" normal {normal * 1000:.0f} ms", transform=axis.get_yaxis_transform(), fontsize=7,
              va="center", color="#555555")
    axis.set_yscale("log")
    lowest = min((r.latency_s for r in ok), default=0.005)
    axis.set_ylim(max(lowest * 0.7, 5e-4), timeout_s * 1.6)
    axis.set_ylabel("latency (s)", fontsize=8)
    axis.set_title(title, loc="left", fontsize=9)
    axis.tick_params(labelsize=7)
    axis.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, fontsize=7, frameon=False, markerscale=1.5,
                borderaxespad=0.1)


def _lock_panel(axis, project: dict, tables: list[str], span_s: float) -> list[str]:
    thinnest = span_s / 300  # a 1 ms lock still shows as a line
    for row, table in enumerate(tables):
        for segment in project["lock_timeline"]:
            if segment["relation"] != table:
                continue
            width = max(segment["end_s"] - segment["start_s"], thinnest)
            waiting = not segment["granted"]
            axis.broken_barh([(segment["start_s"], width)], (row - 0.35, 0.7),
                             facecolors=MODE_COLOURS.get(segment["mode"], "#999999"),
                             hatch="////" if waiting else None, edgecolor="#333333" if waiting else "none", lw=0.3)
    axis.set_yticks(range(len(tables)), tables, fontsize=7)
    axis.set_ylim(-0.6, len(tables) - 0.4)
    axis.invert_yaxis()
    axis.set_xlabel("seconds", fontsize=8)
    axis.set_title("lock held by the migration (hatched: waiting for it)", loc="left", fontsize=8)
    axis.tick_params(labelsize=7)
    return sorted({segment["mode"] for segment in project["lock_timeline"]}, key=lock_strength)


def _panels(project: dict) -> list[tuple[str, str]]:
    """The latency panels of a project: reads and writes, and those of its referenced table if it has one."""
    return [*ENDPOINT_PANELS, *(REFERENCED_PANELS if project.get("referenced_table") else ())]


def render(report: dict, requests_by_project: dict[str, list[Request]], path: Path) -> None:
    projects = report["projects"]
    timeout_s = report["settings"]["timeout_s"]
    panels_of = {project["project"]: _panels(project) for project in projects}
    heights = [6.6 / 2 * len(panels_of[project["project"]]) for project in projects]
    figure = Figure(figsize=(13, sum(heights)), dpi=110, layout="constrained")
    rows = figure.add_gridspec(len(projects), 1, height_ratios=heights)
    figure.suptitle(
        f"Scenario {report['scenario']}: {report['rows']:,} rows; {report['settings']['rate_per_s']:g} requests/s "
        f"per endpoint, each giving up after {timeout_s:g} s", fontsize=11)
    for index, project in enumerate(projects):
        tables = list(dict.fromkeys(segment["relation"] for segment in project["lock_timeline"])) or ["(none)"]
        endpoints = panels_of[project["project"]]
        panels = rows[index].subgridspec(len(endpoints) + 1, 1,
                                         height_ratios=[PANEL_HEIGHT] * len(endpoints) + [0.5 + 0.35 * len(tables)],
                                         hspace=0.08)
        reads = figure.add_subplot(panels[0])
        latency_axes = [reads, *(figure.add_subplot(panels[n], sharex=reads) for n in range(1, len(endpoints)))]
        locks = figure.add_subplot(panels[len(endpoints)], sharex=reads)
        requests = requests_by_project.get(project["project"], [])
        start = project["baseline"]["start_s"] - 0.3
        end = project["after"]["end_s"] + 0.3
        for axis, (endpoint, title) in zip(latency_axes, endpoints):
            if endpoint in dict(REFERENCED_PANELS):
                title = f"{title} ({project['referenced_table']})"
            heading = f"{project['project']}: {title}" if endpoint == "list_large" else title
            if endpoint == "list_large" and project["saturation"]["reasons"]:  # what the numbers measure, first
                what = ("OVERLOADED: the numbers measure this machine, not locks" if project["saturation"]["baseline"]
                        else "NOT RECOVERED: overload, or a step left the API slower for good")
                heading = f"{what} ({project['saturation']['reasons'][-1]})\n{heading}"
            _latency_panel(axis, project, requests, endpoint, heading, timeout_s)
            _shade_steps(axis, project, end - start, label=endpoint == "list_large")
            axis.tick_params(labelbottom=False)
        modes = _lock_panel(locks, project, tables, end - start)
        _shade_steps(locks, project, end - start, label=False)
        if modes:
            locks.legend(handles=[Patch(facecolor=MODE_COLOURS[mode], label=lock_name(mode)) for mode in modes],
                         loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=7, ncols=len(modes), frameon=False,
                         borderaxespad=0.1)
        reads.set_xlim(start, end)
    figure.savefig(path, format="png")
