"""`python -m migrationlab showdown 1` on a small table, as a user runs it: structure, schema, chart, cleanup.

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
from migrationlab.showdown.schema import REPORT_SCHEMA
from tests.conftest import query

ROWS = 20_000


@pytest.fixture(scope="module")
def showdown(pg, lab_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("showdown")
    done = subprocess.run(
        [sys.executable, "-m", "migrationlab", "showdown", "1", "--rows", str(ROWS), "--out", str(out)],
        env={**os.environ, **lab_env}, cwd=REPO_ROOT, capture_output=True, text=True, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
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


def test_nothing_is_left_behind(showdown, pg, lab_env):
    assert query(pg.dsn(), "SELECT datname FROM pg_database WHERE datname LIKE 'showdown\\_%'") == []
    assert not list((Path(lab_env["MIGRATIONLAB_HOME"]) / "run").glob("showdown_*.pid"))
    assert pg.is_running()  # it was running before the showdown, so the showdown left it running
