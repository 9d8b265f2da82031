"""PostgreSQL 14 to 18 (issue 18, docs/versions.md): each major its own embedded cluster, the catalog on a second
version, the judge on the version production runs, and a version that cannot be had refused in one line.

`make test` runs the second version (18, from the wheel the lab installs) on a few operations only, to keep its
time; `python -m migrationlab catalog --postgres all` runs every operation on every version here (docs/catalog.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migrationlab import REPO_ROOT
from migrationlab.catalog import OPERATIONS, merge, render_markdown, run_catalog, version_differences
from migrationlab.databases import MAJORS, embedded_server, embedded_unavailable, postgres_major
from migrationlab.errors import LabError
from migrationlab.judge.command import STATS_FORMAT, choose_major
from tests.conftest import free_port, starts_postgresql
from tests.test_catalog import EXPECTED
from tests.test_judge import assert_the_steps_claims

ROWS = 2_000
AE, N, B, T = "AccessExclusiveLock", "never", "briefly", "throughout"
SAMPLE = Path(__file__).parent / "judge_project"
DEBIAN_15 = Path("/usr/lib/postgresql/15/bin")

# On 18: its own operations, one of 17's, and a few of every kind whose verdict must not move.
ON_18 = {
    "set_not_null_not_valid": (AE, B, B, False, False),
    "add_column_generated_virtual": (AE, B, B, False, False),  # virtual: no rewrite, no scan
    "set_expression": (AE, T, T, True, True),  # 17+: recomputes every stored row
    **{name: EXPECTED[name] for name in ("add_column_constant_default", "set_not_null", "create_index_concurrently",
                                         "vacuum_full", "add_foreign_key_not_valid")},
}


def unavailable_major() -> int | None:
    """A major the lab knows that cannot be had on this machine (None: every one can)."""
    return next((major for major in MAJORS if embedded_unavailable(major)), None)


def env_with_ports(base: dict[str, str]) -> dict[str, str]:
    """Every major's port a free one: the tests never touch a developer's clusters."""
    return {**base, **{f"MIGRATIONLAB_PG_PORT_{major}": str(free_port()) for major in MAJORS if major != 16}}


# -- without PostgreSQL -------------------------------------------------------------------------------------------

def test_each_major_is_a_cluster_of_its_own_on_its_own_port_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("MIGRATIONLAB_HOME", str(tmp_path))
    for variable in ["MIGRATIONLAB_PG_PORT", "MIGRATIONLAB_PG_VERSION"] + [f"MIGRATIONLAB_PG_PORT_{m}" for m in MAJORS]:
        monkeypatch.delenv(variable, raising=False)
    sixteen, eighteen = embedded_server(), embedded_server(18)
    assert (sixteen.major, sixteen.port, sixteen.data_dir) == (16, 5400, tmp_path / "postgres")
    assert (eighteen.major, eighteen.port, eighteen.data_dir) == (18, 5318, tmp_path / "postgres18")
    assert sixteen.bin_dir != eighteen.bin_dir
    monkeypatch.setenv("MIGRATIONLAB_PG_VERSION", "18")
    assert embedded_server().major == 18
    monkeypatch.setenv("MIGRATIONLAB_PG_VERSION", "13")
    with pytest.raises(LabError, match=r"MIGRATIONLAB_PG_VERSION must be a PostgreSQL major the lab runs"):
        postgres_major()


def test_a_bin_folder_given_must_hold_the_server(monkeypatch, tmp_path):
    monkeypatch.setenv("MIGRATIONLAB_PG_BIN_17", str(tmp_path))
    assert "MIGRATIONLAB_PG_BIN_17=" in embedded_unavailable(17) and "has no initdb" in embedded_unavailable(17)


def _args(**options) -> argparse.Namespace:
    return argparse.Namespace(**{"database_url": None, "postgres": None, **options})


def test_judge_chooses_the_major_production_runs_where_it_can_be_had(monkeypatch):
    assert choose_major(_args(), {"server_version_num": 180004}) == (18, None)
    assert choose_major(_args(), None) == (None, None)
    assert choose_major(_args(database_url="postgresql://x@h/db"), {"server_version_num": 180004}) == (None, None)
    assert choose_major(_args(postgres=15), {"server_version_num": 180004}) == (15, "chosen with --postgres")
    major, why = choose_major(_args(), {"server_version_num": 130011})
    assert (major, why) == (None, "the lab runs PostgreSQL 14 to 18")
    missing = unavailable_major()
    if missing is not None:
        major, why = choose_major(_args(), {"server_version_num": missing * 10000 + 1})
        assert major is None and f"MIGRATIONLAB_PG_BIN_{missing}" in why


def _op(name: str, **verdict) -> dict:
    return {"name": name, "group": "G", "sql": "SELECT 1", "kind": "transaction", "table": "t", "other": None,
            "lock": AE, "other_lock": None, "reads": B, "writes": B, "other_reads": None, "other_writes": None,
            "rewrite": False, "scan": False, "outcome": "ok", "skipped": None, "rows_read": 0, "rows_written": 0,
            "seconds": 0.0, "safe": "", "note": "", "documented": AE, "documented_other": None, "claims": [],
            "locks": [AE], "queued_locks": [], "other_locks": [], "stops": [], **verdict}


def _report(version: str, number: int, operations: list[dict]) -> dict:
    return {"command": "python -m migrationlab catalog --rows 10", "server_version": version,
            "server_version_num": number, "embedded": True, "rows": 10, "referenced_rows": 1, "started_at": "now",
            "seconds": 1.0, "operations": operations, "left_out": []}


def test_the_document_marks_what_differs_across_versions_and_what_a_version_adds():
    fourteen = _report("14.23", 140023, [_op("vacuum_full", scan=None), _op("drop_default"),
                                         _op("set_not_null_not_valid", skipped="needs PostgreSQL 18+")])
    eighteen = _report("18.4", 180004, [_op("vacuum_full", scan=True), _op("drop_default", reads=T),
                                        _op("set_not_null_not_valid")])
    report = merge([eighteen, fourteen], {17: "PostgreSQL 17 cannot be had here: set MIGRATIONLAB_PG_BIN_17"})
    assert [v["server_version"] for v in report["versions"]] == ["14.23", "18.4"]
    assert report["command"].endswith("--postgres 14,18")
    assert version_differences(report) == {"drop_default": "differs", "set_not_null_not_valid": "from 18"}
    text = render_markdown(report)
    assert "| operation | 14.23 | 18.4 | across versions |" in text
    assert "| set_not_null_not_valid | not in this version | ACCESS EXCLUSIVE; reads briefly, writes briefly | " \
           "**from 18**: PostgreSQL 18 release notes" in text
    closing = text[text.index("## Closing note"):]
    assert "`drop_default` (differs)" in closing and "`set_not_null_not_valid` (from 18)" in closing
    assert "PostgreSQL 17: PostgreSQL 17 cannot be had here" in closing


def test_every_version_only_operation_says_why_from_the_release_notes():
    for operation in OPERATIONS:
        if operation.min_version:
            assert "release notes" in operation.versions, operation.name


# -- on PostgreSQL 18 (and 15) ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
@starts_postgresql
def on_18(tmp_path_factory):
    """The catalog's chosen operations on the embedded PostgreSQL 18, in a lab of the module's own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MIGRATIONLAB_HOME", str(tmp_path_factory.mktemp("lab18")))
        patch.setenv("MIGRATIONLAB_PG_PORT_18", str(free_port()))
        operations = tuple(op for op in OPERATIONS if op.name in ON_18)
        report = run_catalog(ROWS, operations=operations, say=lambda line: None, postgres=18)
    return report


def test_the_catalog_runs_on_postgresql_18(on_18):
    assert on_18["server_version_num"] // 10000 == 18
    assert {op["name"] for op in on_18["operations"]} == set(ON_18)


@pytest.mark.parametrize("name", sorted(ON_18))
def test_postgresql_18_confirms_each_verdict(name, on_18):
    op = next(op for op in on_18["operations"] if op["name"] == name)
    assert op["skipped"] is None, op
    assert (op["lock"], op["reads"], op["writes"], op["rewrite"], op["scan"]) == ON_18[name][:5], op


def _judge(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrationlab", "judge", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=600)


@pytest.mark.parametrize("major", [18, 15])
def test_judge_of_a_lab_project_on_another_version_gives_its_claims(major, own_lab):
    if major == 15 and embedded_unavailable(15):
        pytest.skip(f"PostgreSQL 15 cannot be had here: {DEBIAN_15} is missing (apt-get install postgresql-15, "
                    "or MIGRATIONLAB_PG_BIN_15)")
    from migrationlab.scenarios import get_project

    project = get_project("proj01_safe_backfill")
    done = _judge(env_with_ports(own_lab), "--settings", f"{project.name}.settings", "demoapp", "--postgres",
                  str(major), "--rows", "20000", "--format", "json", cwd=project.folder)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["server_version"].startswith(f"{major}.")
    assert_the_steps_claims(project, report)


def test_judge_takes_the_version_production_runs_from_the_stats(own_lab, tmp_path):
    stats = {"format": STATS_FORMAT, "database": "shop", "server_version": "18.1", "server_version_num": 180001,
             "tables": {"shop_order": {"rows": 1000}}, "applied": []}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    done = _judge(env_with_ports(own_lab), "--settings", "mysite.settings", "shop", "0002", "--stats",
                  str(tmp_path / "stats.json"), "--rows", "500", "--format", "json", cwd=SAMPLE)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    assert report["server_version"].startswith("18.") and report["note"] is None, report


# -- a version that cannot be had ---------------------------------------------------------------------------------

def test_a_version_that_cannot_be_had_is_one_line_saying_how_to_get_it(tmp_path):
    missing = unavailable_major()
    if missing is None:
        pytest.skip("every major (14 to 18) can be had on this machine")
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIGRATIONLAB_PG_BIN_")}
    env["MIGRATIONLAB_HOME"] = str(tmp_path / "lab")
    runs = {
        "catalog": (["catalog", "--postgres", str(missing), "--out", str(tmp_path / "catalog.md")], REPO_ROOT, 1),
        "up": (["up", "--postgres", str(missing), "proj01_safe_backfill"], REPO_ROOT, 1),
        "judge": (["judge", "--settings", "mysite.settings", "--postgres", str(missing)], SAMPLE, 2),
    }
    for command, (args, cwd, code) in runs.items():
        done = subprocess.run([sys.executable, "-m", "migrationlab", *args], cwd=cwd, env=env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert done.returncode == code, (command, done.returncode, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"PostgreSQL {missing} cannot be had here" in lines[0], (command, done.stderr)
        assert f"MIGRATIONLAB_PG_BIN_{missing}" in lines[0] and "--database-url" in lines[0], lines[0]
    assert not (tmp_path / "catalog.md").exists() and not (tmp_path / "lab" / f"postgres{missing}").exists()
