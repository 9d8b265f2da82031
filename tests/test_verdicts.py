"""The judge core's rule for `briefly` and `throughout`, on the stops of a migration as the gate records them.

Whether a probe waited at a stop is PostgreSQL's answer (tests/test_lessons.py, tests/test_judge.py,
tests/test_catalog.py make it give it); how long the wait lasts is read from the work the transaction it waited on
then did: `throughout` when that work grows with the table (a tenth of its rows or more, and not one batch of a
series), `briefly` otherwise. These stops are built by hand, so each part of the rule is seen on its own.
"""

from __future__ import annotations

from migrationlab.judgecore import Pause, TableStop, verdict, verdict_at

TABLE, OID, ROWS = "events", 1, 100_000


def stop(statement: str, transaction: int, before: int, after: int, waited: bool = False) -> Pause:
    return Pause(statement, transaction, {OID: before}, {OID: after},
                 tables={TABLE: TableStop(locks=["RowExclusiveLock"], write_waited=waited)})


def collector(deleted: int) -> list[Pause]:
    """Django's collector in one transaction: it reads the rows to delete (no lock that makes a write wait), then
    deletes them 100 per statement; the write probe waits from the first DELETE on."""
    pauses = [stop('SELECT * FROM "events" WHERE created_at < %s', 1, 0, deleted)]
    for done in range(0, deleted, 100):
        pauses.append(stop('DELETE FROM "events" WHERE id IN (%s)', 1, deleted + done, deleted + done + 100,
                           waited=True))
    return pauses


def test_a_wait_on_a_transaction_that_then_deletes_half_the_table_is_throughout():
    """The collector's wait lasts as long as it deletes the rest of the older half: it grows with the table."""
    assert verdict(collector(ROWS // 2), TABLE, "write", {OID: ROWS}) == "throughout"


def test_a_wait_on_a_transaction_that_touches_a_few_rows_is_briefly():
    assert verdict(collector(1_000), TABLE, "write", {OID: ROWS}) == "briefly"


def test_the_share_that_grows_with_the_table_is_a_tenth():
    assert verdict(collector(ROWS // 10), TABLE, "write", {OID: ROWS}) == "throughout"
    assert verdict(collector(ROWS // 10 - 200), TABLE, "write", {OID: ROWS}) == "briefly"


def batched(width: int) -> list[Pause]:
    """A backfill in batches: the same UPDATE, each batch in a transaction of its own; the write waits on each."""
    pauses, done, transaction = [], 0, 0
    while done < ROWS:
        transaction += 1
        pauses.append(stop('SELECT max(id) FROM "events"', transaction, 0, 0))
        transaction += 1
        pauses.append(stop('UPDATE "events" SET status = %s WHERE id >= %s AND id < %s', transaction, 0,
                           min(width, ROWS - done), waited=True))
        done += width
    return pauses


def test_one_batch_of_a_series_is_briefly_however_much_of_the_table_it_covers():
    """A batch is bounded by its own size, not the table's: at 20,000 rows one batch of 10,000 is half the table,
    at production size a sliver."""
    for width in (1_000, 10_000, 50_000):
        pauses = batched(width)
        assert verdict(pauses, TABLE, "write", {OID: ROWS}) == "briefly", width
        assert {verdict_at(pauses, i, TABLE, "write", {OID: ROWS}) for i in range(len(pauses))} == {
            "never", "briefly"}, width


def test_one_transaction_over_the_whole_table_is_throughout_even_with_a_repeated_statement_inside():
    """A data migration's loop of .save() calls repeats one UPDATE, but in one transaction: not a series."""
    pauses = [stop('UPDATE "events" SET status = %s WHERE id = %s', 1, n, n + 1, waited=True)
              for n in range(0, ROWS, 1_000)]
    for pause in pauses:
        pause.rows_after = {OID: pause.rows_before[OID] + 1_000}
    assert verdict(pauses, TABLE, "write", {OID: ROWS}) == "throughout"


def test_a_single_batch_that_covers_the_table_is_a_transaction_over_the_table():
    """No series to be one batch of: the one transaction worked through the table."""
    pauses = [stop('SELECT max(id) FROM "events"', 1, 0, 0),
              stop('UPDATE "events" SET status = %s WHERE id >= %s AND id < %s', 2, 0, ROWS, waited=True)]
    assert verdict(pauses, TABLE, "write", {OID: ROWS}) == "throughout"
