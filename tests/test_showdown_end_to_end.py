"""`python -m migrationlab showdown all --only 1` on a small table, as a user runs it: scenario 1 through the
runner of `showdown 1`, then the summary of all (here: one) scenarios; structure, schema, chart, cleanup.

At 20,000 rows every step takes milliseconds of locking, so nothing here looks at timings or at which verdict
came out: the report must be complete and valid, the verdicts well-formed, the chart a real PNG, and nothing
may be left behind.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from migrationlab import REPO_ROOT
from migrationlab.scenarios import projects_of_scenario
from migrationlab.showdown.schema import REPORT_SCHEMA, SUMMARY_SCHEMA
from tests.conftest import query


ROWS = 20_000


@pytest.fixture(scope="module")
def showdown(pg, lab_env, tmp_path_factory):
    top = tmp_path_factory.mktemp("showdown")
    done = subprocess.run(
        [sys.executable, "-m", "migrationlab", "showdown", "all", "--only", "1", "--rows", str(ROWS), "--out", str(top)],
        env={**os.environ, **lab_env}, cwd=REPO_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = top / "scenario-01"
    return done, out, json.loads((out / "report.json").read_text())


def test_the_report_follows_its_schema_and_the_scenario(showdown):
    _, _, report = showdown
    jsonschema.Draft202012Validator(REPORT_SCHEMA).validate(report)
    assert (report["scenario"], report["rows"]) == (1, ROWS)
    expected = projects_of_scenario("1")
    assert [p["project"] for p in report["projects"]] == [p.name for p in expected]
    for project, spec in zip(report["projects"], expected):
        assert [(s["migration"], s["kind"]) for s in project["steps"]] == [(s.migration, s.kind) for s in spec.steps]
        assert project["baseline"]["endpoints"]["list_large"]["requests"] > 0
        for step in project["steps"]:
            assert step["duration_s"] > 0 and step["start_s"] >= project["baseline"]["end_s"]
            for stats in step["endpoints"].values():
                assert stats["requests"] > 0 and stats["failures"] <= stats["requests"]
            assert re.match(r"reads .+, writes .+ — .+", step["verdict"]), step["verdict"]
            assert (Path(showdown[1]) / step["log"]).exists()
        assert project["sampler"]["samples"] > 0 and project["probe"]["sent"] >= project["probe"]["answered"] > 0
    kinds = {(row["project"], row["kind"]) for row in report["summary"]}
    assert kinds == {("proj01_add_not_null_constraint", "risky"), ("proj01_safe_backfill", "safe")}


def test_the_chart_is_a_real_png(showdown):
    _, out, _ = showdown
    chart = out / "chart.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(chart) as image:
        image.verify()
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.width > 800 and image.height > 800


def test_the_terminal_shows_progress_verdicts_and_the_summary(showdown):
    done, out, report = showdown
    assert "Seeding large_user with 20,000 rows" in done.stdout
    for project in report["projects"]:
        for step in project["steps"]:
            assert f"-> {step['verdict']}" in done.stdout
    assert "Risky vs safe, 20,000 rows" in done.stdout
    assert f"chart:  {out / 'chart.png'}" in done.stdout
    header, *rows = (out / "requests.csv").read_text().splitlines()
    assert header == "project,endpoint,sent_s,latency_s,status,error" and len(rows) > 100


def test_the_summary_has_a_row_per_step_with_its_goal(showdown):
    done, out, report = showdown
    summary = json.loads((out.parent / "summary.json").read_text())
    jsonschema.Draft202012Validator(SUMMARY_SCHEMA).validate(summary)
    assert [(s["scenario"], s["status"], s["chart"]) for s in summary["scenarios"]] == [
        (1, "done", "scenario-01/chart.png")]
    steps = [(p["project"], s["migration"]) for p in report["projects"] for s in p["steps"]]
    assert [(row["project"], row["migration"]) for row in summary["steps"]] == steps
    for row in summary["steps"]:
        assert row["longest_stall_s"] <= row["duration_s"]
    markdown = (out.parent / "summary.md").read_text()
    assert markdown.count("| 1 | proj01_") == len(steps) and markdown in done.stdout
    assert "=== scenario 1 (1 of 1): proj01_add_not_null_constraint, proj01_safe_backfill" in done.stdout


def test_nothing_is_left_behind(showdown, pg, lab_env):
    assert query(pg.dsn(), "SELECT datname FROM pg_database WHERE datname LIKE 'showdown\\_%'") == []
    assert not list((Path(lab_env["MIGRATIONLAB_HOME"]) / "run").glob("showdown_*.pid"))
    assert pg.is_running()  # it was running before the showdown, so the showdown left it running
