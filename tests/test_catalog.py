"""The measured lock catalog (migrationlab/catalog.py): every operation of issue 12's list, judged by PostgreSQL.

The catalog runs once, on a few thousand rows (a verdict does not depend on the table's size: "throughout" means
the operation went through every row while holding its lock, at any size), and each verdict is checked against the
table below, written down from PostgreSQL's documented behaviour. No timing is asserted.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from migrationlab import REPO_ROOT
from migrationlab.catalog import OPERATIONS, _documented_mismatches, render_markdown, run_catalog


ROWS = 2_000

AE, SRE, SUE, SHARE, RX, RS = ("AccessExclusiveLock", "ShareRowExclusiveLock", "ShareUpdateExclusiveLock",
                               "ShareLock", "RowExclusiveLock", "RowShareLock")
N, B, T = "never", "briefly", "throughout"

# name: (lock on the table, reads, writes, rewrite, scan) and, for an operation with a second table (the referenced
# table, or the partition), (its lock, its reads, its writes). scan None: not known (the statement failed).
EXPECTED: dict[str, tuple] = {
    "add_column_nullable": (AE, B, B, False, False),
    "add_column_constant_default": (AE, B, B, False, False),
    "add_column_volatile_default": (AE, T, T, True, True),
    "add_column_not_null_without_default": (AE, B, B, False, None),
    "add_column_identity": (AE, T, T, True, True),
    "add_column_serial": (AE, T, T, True, True),
    "add_column_generated_stored": (AE, T, T, True, True),
    "set_not_null": (AE, T, T, False, True),
    "set_not_null_with_validated_check": (AE, B, B, False, False),
    "drop_not_null": (AE, B, B, False, False),
    "add_check": (AE, T, T, False, True),
    "add_check_not_valid": (AE, B, B, False, False),
    "validate_check": (SUE, N, N, False, True),
    "add_unique": (AE, T, T, False, True),
    "create_unique_index_concurrently": (SUE, N, N, False, True),
    "add_unique_using_index": (AE, B, B, False, False),
    "add_primary_key": (AE, T, T, False, True),
    "add_primary_key_using_index": (AE, B, B, False, False),
    "add_foreign_key": (SRE, N, T, False, True, (SRE, N, T)),
    "add_foreign_key_not_valid": (SRE, N, B, False, False, (SRE, N, B)),
    "validate_foreign_key": (SUE, N, N, False, True, (RS, N, N)),
    "create_index": (SHARE, N, T, False, True),
    "create_index_concurrently": (SUE, N, N, False, True),
    "drop_index": (AE, B, B, False, False),
    "drop_index_concurrently": (SUE, N, N, False, False),
    # SHARE on the table, but ACCESS EXCLUSIVE on the index: planning the read by id opens every index of the table.
    "reindex": (SHARE, T, T, False, True),
    "reindex_concurrently": (SUE, N, N, False, True),
    "int_to_bigint": (AE, T, T, True, True),
    "varchar_to_longer_varchar": (AE, B, B, False, False),
    "varchar_to_text": (AE, B, B, False, False),
    "varchar_to_timestamptz": (AE, T, T, True, True),
    "json_to_jsonb": (AE, T, T, True, True),
    "rename_column": (AE, B, B, False, False),
    "rename_table": (AE, B, B, False, False),
    "drop_column": (AE, B, B, False, False),
    "set_default": (AE, B, B, False, False),
    "drop_default": (AE, B, B, False, False),
    "add_exclusion_constraint": (AE, T, T, False, True),
    "enum_add_value": (None, N, N, False, False),
    "vacuum_full": (AE, T, T, True, True),
    "cluster": (AE, T, T, True, True),
    "update_every_row": (RX, N, T, False, True),
    "delete_half_the_rows": (RX, N, T, False, True),
    "truncate": (AE, B, B, True, False),  # a new, empty relfilenode
    "detach_partition": (AE, B, B, False, False, (AE, B, B)),
    # At its one wait (between its two transactions) it holds no lock on either table, and nothing waits for it.
    "detach_partition_concurrently": (None, N, N, False, False, (None, N, N)),
    # Behind a report: queued for ACCESS EXCLUSIVE, every read and write queued behind it, as long as the report
    # runs; with lock_timeout = 500ms it gives up instead.
    "lock_queue": (AE, T, T, False, False),
    "lock_queue_with_lock_timeout": (AE, B, B, False, None),
}
# PostgreSQL 18's NOT NULL ... NOT VALID and virtual generated columns, 17's SET EXPRESSION (tests/test_versions.py)
SKIPPED_ON_16 = {"set_not_null_not_valid": 18, "add_column_generated_virtual": 18, "set_expression": 17}


@pytest.fixture(scope="module")
def report(pg):
    return run_catalog(ROWS, database_url=pg.dsn(), say=lambda line: None)


@pytest.fixture(scope="module")
def measured(report):
    return {op["name"]: op for op in report["operations"]}


def test_the_catalog_holds_every_operation_of_the_list_once():
    names = [op.name for op in OPERATIONS]
    assert len(names) == len(set(names))
    assert set(names) == set(EXPECTED) | set(SKIPPED_ON_16)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_postgresql_confirms_each_verdict(name, measured):
    op = measured[name]
    expected = EXPECTED[name]
    assert op["skipped"] is None, op
    assert (op["lock"], op["reads"], op["writes"], op["rewrite"], op["scan"]) == expected[:5], op
    if len(expected) == 6:
        assert (op["other_lock"], op["other_reads"], op["other_writes"]) == expected[5], op
    else:
        assert (op["other"], op["other_reads"], op["other_writes"]) == (None, None, None), op


def test_operations_that_fail_fail_as_expected_and_the_rest_succeed(measured):
    failing = {name for name, op in measured.items() if op["outcome"].startswith("fails")}
    assert failing == {"add_column_not_null_without_default", "lock_queue_with_lock_timeout"}
    assert "contains null values" in measured["add_column_not_null_without_default"]["outcome"]
    assert "lock timeout" in measured["lock_queue_with_lock_timeout"]["outcome"]


def test_a_statement_in_the_lock_queue_is_queued_not_granted(measured):
    for name in ("lock_queue", "lock_queue_with_lock_timeout"):
        assert measured[name]["locks"] == [] and measured[name]["queued_locks"] == [AE], measured[name]
        (stop,) = measured[name]["stops"]
        assert stop["waiting_for"] == "report"
    assert measured["lock_queue"]["stops"][0]["lock_timeout"] == "0"
    assert measured["lock_queue_with_lock_timeout"]["stops"][0]["lock_timeout"] == "500ms"


def test_a_concurrent_index_build_is_probed_at_each_phase_it_waits(measured):
    stops = measured["create_index_concurrently"]["stops"]
    assert len(stops) == 3 and all(stop["waiting_for"] == "open transaction" for stop in stops), stops
    assert all(stop["phase"] for stop in stops), stops


def test_newer_operations_are_skipped_with_a_note_on_older_servers(measured, report):
    assert report["server_version_num"] < 180000
    for name, major in SKIPPED_ON_16.items():
        assert measured[name]["skipped"] == f"needs PostgreSQL {major}+"


def test_the_document_says_how_it_was_made_and_shows_every_operation(report):
    text = render_markdown(report)
    assert f"`python -m migrationlab catalog --rows {ROWS}`" in text
    assert f"PostgreSQL {report['server_version']}" in text
    for name in EXPECTED.keys() | SKIPPED_ON_16:
        assert f"| {name} |" in text
    assert "SET TABLESPACE" in text  # left out, and why


def test_claims_that_the_measurement_contradicts_are_flagged(measured):
    disagreeing = {(name, claim["source"]) for name, op in measured.items() for claim in op["claims"]
                   if not claim["agrees"]}
    assert disagreeing == {
        ("set_not_null_with_validated_check", "squawk"),
        ("add_foreign_key", "strong_migrations (README at commit 3792e82)"),
        ("validate_foreign_key", "strong_migrations (README at commit 0034d99)"),
        ("reindex", "PostgreSQL 16 docs"),
        ("varchar_to_longer_varchar", "postgres-language-server (changingColumnType, after squawk's rule)"),
        ("varchar_to_longer_varchar", "strong_migrations (README at commit 0034d99)"),
        ("varchar_to_text", "postgres-language-server (changingColumnType, after squawk's rule)"),
    }


def test_every_measured_lock_is_the_documented_one_but_where_detach_concurrently_waits(report):
    """The PostgreSQL 16 docs' lock levels hold, except that DETACH PARTITION CONCURRENTLY, at its wait between its
    two transactions, holds no lock at all (the docs give the locks of its transactions)."""
    assert [line.split(":")[0] for line in _documented_mismatches(report)] == [
        "- `detach_partition_concurrently` on the table", "- `detach_partition_concurrently` on the other table"]


def _catalog(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "migrationlab", "catalog", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("args, message", [
    (["--rows", "0"], "the number of rows must be at least 1"),
    (["--database-url", "postgresql://nobody@127.0.0.1:1/postgres"], "error: cannot connect to"),
    (["--database-url", "mysql://localhost/x"], "error: --database-url must start with postgresql://"),
    (["--out", "/proc/no-such-folder/catalog.md"], "error: cannot write the catalog to"),
])
def test_bad_input_is_one_line_and_a_non_zero_exit(args, message, tmp_path):
    done = _catalog("--out", str(tmp_path / "catalog.md"), *args)  # a later --out wins
    assert done.returncode != 0
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "catalog.md").exists()
