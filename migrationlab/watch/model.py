"""What the watch's screen says, from what the probe and PostgreSQL saw: pure data, no I/O, no terminal.

WatchState takes the probe's finished requests (in the order they finished, as the curl loop prints them), the
requests still in flight, the lock sampler's latest sample and the activity poller's latest snapshot, and makes a
Screen: each endpoint's state and recent latencies, the migration's statement and locks, the lock queue, a
progress bar. screen.py draws it; tests/test_watch.py checks it without a database.

Who is who (docs/watch.md), by application_name first, which every session of the lab and the container sets:
- the API: "web" (migrationlab/gunicorn_conf.py sets it for every gunicorn, lab and Docker alike);
- the migration: "django" (any manage.py, so `manage.py migrate`; settings.py's default) or "migration" (the
  showdown's), or any other session whose statement is DDL (ALTER, CREATE, DROP, ...: e.g. typed into psql);
- the watch itself ("migrationlab-watch", "showdown-sampler"): never shown;
- anyone else (a report in psql, autovacuum, ...): named by its application_name, or its backend type.
"""

from __future__ import annotations

import math
import re
from bisect import insort
from collections import deque
from dataclasses import dataclass, field

from migrationlab.locks import lock_name, lock_strength
from migrationlab.showdown.analysis import MIGRATION_APPLICATION, WEB_APPLICATION
from migrationlab.showdown.probe import Request
from migrationlab.showdown.sampler import SAMPLER_APPLICATION, LockRow, LockSample

WATCH_APPLICATION = "migrationlab-watch"
OWN_APPLICATIONS = frozenset({WATCH_APPLICATION, SAMPLER_APPLICATION})
MIGRATION_APPLICATIONS = frozenset({"django", MIGRATION_APPLICATION})
DDL = re.compile(r"\s*(ALTER|CREATE|DROP|TRUNCATE|REINDEX|CLUSTER|VACUUM|LOCK|COMMENT)\b", re.I)

API, MIGRATION, OWN, OTHER = "API", "migration", "own", "other"

STRIP_S = 30  # the latency strip: one column per second of sending, the newest on the right
RECENT_S = 10.0  # the numbers under it: the requests that finished in the last RECENT_S
WAITING_AFTER_S = 0.5  # a request in flight this long shows as waiting
IDLE_FORGET_S = 10.0  # a migration session idle this long is done (or between two manage.py commands)
QUEUE_LINES = 5
# The strip's scale: logarithmic from FASTEST_S (the bottom block) to the timeout (the full block).
FASTEST_S = 0.005
BLOCKS = "▁▂▃▄▅▆▇█"

# -- what the activity poller hands over ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    """One row of pg_stat_activity (of the watched database). Ages are seconds, None where PostgreSQL has none."""

    pid: int
    application: str  # application_name, or the backend type when it has none (e.g. "autovacuum worker")
    state: str | None  # active, idle, idle in transaction, ...
    query: str
    query_s: float | None  # since the statement (the latest one, if idle) started
    xact_s: float | None  # since the transaction started
    state_s: float | None  # since the state last changed


@dataclass(frozen=True)
class ProgressRow:
    """One row of a pg_stat_progress_* view: a command that reports how far it got."""

    pid: int
    command: str  # CREATE INDEX CONCURRENTLY, VACUUM, VACUUM FULL, CLUSTER, ANALYZE, ...
    relation: str | None
    index: str | None
    phase: str
    done: int
    total: int
    unit: str  # blocks, tuples, lockers, partitions ("" when the phase counts nothing)


@dataclass(frozen=True)
class Activity:
    at_s: float
    sessions: tuple[Session, ...] = ()
    progress: tuple[ProgressRow, ...] = ()
    # (table, key column) -> (smallest, largest) key, read when a batch on it was seen (see Batch)
    bounds: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


def role_of(session: Session) -> str:
    if session.application in OWN_APPLICATIONS:
        return OWN
    if session.application == WEB_APPLICATION:
        return API
    if session.application in MIGRATION_APPLICATIONS or (session.state != "idle" and DDL.match(session.query)):
        return MIGRATION
    return OTHER


# -- batches of BackfillInBatches / DeleteInBatches ----------------------------------------------------------------

# Django writes a keyset batch as ... WHERE (<where> AND "t"."id" >= lo AND "t"."id" < hi): operations.py's
# _KeysetBatches, through .update() or ._raw_delete(); psycopg2 sends the values inline, as pg_stat_activity shows.
BATCH = re.compile(
    r'\s*(?P<verb>UPDATE|DELETE\s+FROM)\s+"(?P<table>[^"]+)".*?'
    r'"(?P=table)"\."(?P<column>[^"]+)"\s*>=\s*(?P<lo>-?\d+)\s+AND\s+"(?P=table)"\."(?P=column)"\s*<\s*(?P<hi>-?\d+)',
    re.I | re.S,
)


@dataclass(frozen=True)
class Batch:
    verb: str  # backfill or delete
    table: str
    column: str
    lo: int
    hi: int


def parse_batch(query: str) -> Batch | None:
    match = BATCH.match(query or "")
    if not match:
        return None
    verb = "backfill" if match["verb"].upper() == "UPDATE" else "delete"
    return Batch(verb, match["table"], match["column"], int(match["lo"]), int(match["hi"]))


# -- the screen ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One second of the latency strip: the slowest of the requests sent in it (so far, for one still waiting)."""

    latency_s: float | None  # None: nothing sent that second
    kind: str  # ok, failed, waiting, empty


@dataclass(frozen=True)
class EndpointView:
    name: str
    state: str  # success, failed, waiting, starting
    code: str  # the last answer's HTTP status, "000" for none (as curl prints it)
    latency_s: float | None  # of the last finished request
    waiting_s: float  # the oldest request still in flight (0: none)
    hanging: int  # requests in flight for more than WAITING_AFTER_S
    outage_s: float | None  # failing since this long (None: not failing)
    recent: int  # finished in the last RECENT_S
    recent_failed: int
    recent_median_s: float | None
    recent_max_s: float | None
    strip: tuple[Cell, ...]


@dataclass(frozen=True)
class LockView:
    relation: str
    mode: str  # ACCESS EXCLUSIVE
    seconds: float | None  # held since the watch first saw it / waited so far
    behind: tuple[str, ...] = ()  # for a lock awaited: who it waits behind


@dataclass(frozen=True)
class ProgressView:
    label: str  # backfill large_user, CREATE INDEX CONCURRENTLY large_user_email_idx on large_user
    phase: str
    fraction: float | None
    detail: str


@dataclass(frozen=True)
class MigrationView:
    pid: int
    application: str
    state: str
    statement: str
    statement_s: float | None  # since it started (the latest one, if idle)
    xact_s: float | None
    idle_s: float | None  # idle since (None: not idle)
    holds: tuple[LockView, ...]
    waits: tuple[LockView, ...]
    progress: ProgressView | None
    more: int  # other migration sessions at the same time


@dataclass(frozen=True)
class QueueLine:
    kind: str  # API, migration, other: the waiters
    waiters: str  # "14 API backends", "migration 4242", "psql 777"
    blockers: str  # "migration 4242", "psql 777 + migration 4242"
    what: str  # "large_user: 7 reads, 7 writes", "ACCESS EXCLUSIVE on large_user"
    longest_s: float | None


@dataclass(frozen=True)
class Totals:
    requests: int
    failed: int
    longest_outage_s: float
    longest_outage_endpoint: str | None


@dataclass(frozen=True)
class Screen:
    title: str
    target: str
    wall_clock: str
    endpoints: tuple[EndpointView, ...]
    migration: MigrationView | None
    queue: tuple[QueueLine, ...]
    more_waiting: int  # queue lines left out
    totals: Totals
    log: str
    problem: str | None = None  # e.g. the database cannot be reached


# -- state kept between frames -------------------------------------------------------------------------------------


class Outages:
    """Failures in a row, in the order the requests were sent: an outage runs from the send of the first failed
    request to the answer (or give-up) of the last one before a request that succeeded."""

    def __init__(self):
        self.start: float | None = None
        self.end = 0.0
        self.longest_s = 0.0

    def add(self, request: Request) -> None:
        if request.failed:
            if self.start is None:
                self.start, self.end = request.sent_s, 0.0
            self.end = max(self.end, request.sent_s + request.latency_s)
            self.longest_s = max(self.longest_s, self.end - self.start)
        else:
            self.start = None

    def copy(self) -> Outages:
        twin = Outages()
        twin.start, twin.end, twin.longest_s = self.start, self.end, self.longest_s
        return twin


class EndpointTrack:
    """One endpoint's requests as the curl loop counts them.

    The probe hands requests over in the order they finished; outages are counted in the order they were sent.
    A request finishes at most `timeout_s` after it was sent, so those sent before now - timeout - SETTLE_S are
    settled (nothing sent before them can still come in) and folded into `settled`; the few after are kept."""

    SETTLE_S = 1.0

    def __init__(self, name: str, timeout_s: float = 3.0):
        self.name = name
        self.timeout_s = timeout_s
        self.requests = 0
        self.failed = 0
        self.last: Request | None = None  # the latest to finish: what the curl loop printed last
        self.recent: deque[Request] = deque()  # finished within the strip's span
        self.settled = Outages()
        self.unsettled: list[Request] = []  # by send time

    def add(self, request: Request) -> None:
        self.requests += 1
        self.failed += request.failed
        self.last = request
        self.recent.append(request)
        insort(self.unsettled, request, key=lambda r: r.sent_s)

    def settle(self, now: float) -> None:
        cut = now - self.timeout_s - self.SETTLE_S
        while self.unsettled and self.unsettled[0].sent_s < cut:
            self.settled.add(self.unsettled.pop(0))

    def outages(self) -> Outages:
        """All outages so far, the settled ones and those the unsettled requests make."""
        outages = self.settled.copy()
        for request in self.unsettled:
            outages.add(request)
        return outages

    def forget_before(self, moment: float) -> None:
        """Forget the requests that finished before `moment` (sent even earlier: out of the strip)."""
        while self.recent and self.recent[0].sent_s + self.recent[0].latency_s < moment:
            self.recent.popleft()

    def outage_so_far(self, now: float) -> float | None:
        """How long the outage under way has lasted (None: the latest request sent and answered succeeded)."""
        outages = self.outages()
        return None if outages.start is None else max(now, outages.end) - outages.start


def strip_level(latency_s: float, timeout_s: float) -> int:
    """The block a request of that latency gets in a strip: 0 up to FASTEST_S, then on a log scale to the timeout."""
    if latency_s <= FASTEST_S:
        return 0
    span = math.log(max(timeout_s, FASTEST_S * 2) / FASTEST_S)
    return max(0, min(len(BLOCKS) - 1, round(math.log(latency_s / FASTEST_S) / span * (len(BLOCKS) - 1))))


def strip_text(strip: tuple[Cell, ...], timeout_s: float) -> str:
    return "".join(" " if cell.latency_s is None else BLOCKS[strip_level(cell.latency_s, timeout_s)]
                   for cell in strip)


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _label(session: Session | None, pid: int) -> str:
    if session is None:
        return f"pid {pid}"
    role = role_of(session)
    if role == MIGRATION:
        return f"migration {pid}"
    if role == API:
        return f"API {pid}"
    return f"{session.application or 'session'} {pid}"


def _one_line(statement: str) -> str:
    return " ".join((statement or "").split())


class WatchState:
    """Everything the screen needs, fed by the watch's loop (command.py) or by a test."""

    def __init__(self, endpoints: list[str], timeout_s: float, title: str, target: str, log: str):
        self.timeout_s = timeout_s
        self.title = title
        self.target = target
        self.log = log
        self.tracks = {name: EndpointTrack(name, timeout_s) for name in endpoints}
        self.now = 0.0
        self.wall_clock = ""
        self.in_flight: list[tuple[str, float]] = []
        self.sample: LockSample | None = None
        self.activity: Activity | None = None
        self.problem: str | None = None
        self._held_since: dict[tuple[int, str, str], float] = {}
        self._batches: dict[tuple[int, str], tuple[float, int]] = {}  # (pid, table) -> first seen (at_s, hi)

    # -- feeding -------------------------------------------------------------------------------------------------

    def add_requests(self, requests: list[Request]) -> None:
        for request in requests:
            track = self.tracks.get(request.endpoint)
            if track is not None:
                track.add(request)

    def observe(self, now: float, wall_clock: str, in_flight: list[tuple[str, float]], sample: LockSample | None,
                activity: Activity | None, problem: str | None = None) -> None:
        self.now, self.wall_clock, self.in_flight = now, wall_clock, in_flight
        self.problem = problem
        for track in self.tracks.values():
            track.forget_before(now - STRIP_S - 1)
            track.settle(now)
        if sample is not None and sample is not self.sample:
            held = {(row.pid, row.relation, row.mode) for row in sample.rows if row.granted and row.relation}
            self._held_since = {key: self._held_since.get(key, sample.at_s) for key in held}
        self.sample = sample
        if activity is not None and activity is not self.activity:
            seen = set()
            for session in activity.sessions:
                batch = parse_batch(session.query) if role_of(session) == MIGRATION else None
                if batch is not None:
                    key = (session.pid, batch.table)
                    seen.add(key)
                    self._batches.setdefault(key, (activity.at_s, batch.hi))
            self._batches = {key: value for key, value in self._batches.items() if key in seen}
        self.activity = activity

    # -- reading -------------------------------------------------------------------------------------------------

    def totals(self) -> Totals:
        requests = sum(track.requests for track in self.tracks.values())
        failed = sum(track.failed for track in self.tracks.values())
        longest, endpoint = 0.0, None
        for track in self.tracks.values():
            outage = max(track.outages().longest_s, track.outage_so_far(self.now) or 0.0)
            if outage > longest:
                longest, endpoint = outage, track.name
        return Totals(requests, failed, longest, endpoint)

    def summary(self) -> str:
        """The one line left on the terminal after Ctrl-C."""
        totals = self.totals()
        return (f"watch: {totals.requests:,} requests, {totals.failed:,} failed, "
                f"longest outage {totals.longest_outage_s:.1f} s; log {self.log}")

    def screen(self) -> Screen:
        sessions = {s.pid: s for s in self.activity.sessions} if self.activity else {}
        migration = self._migration(sessions)
        queue = self._queue(sessions)
        return Screen(
            title=self.title, target=self.target, wall_clock=self.wall_clock,
            endpoints=tuple(self._endpoint(track) for track in self.tracks.values()),
            migration=migration, queue=tuple(queue[:QUEUE_LINES]), more_waiting=max(0, len(queue) - QUEUE_LINES),
            totals=self.totals(), log=self.log, problem=self.problem,
        )

    def _endpoint(self, track: EndpointTrack) -> EndpointView:
        now = self.now
        waiting = [now - sent for name, sent in self.in_flight if name == track.name]
        waiting_s = max(waiting, default=0.0)
        hanging = sum(1 for seconds in waiting if seconds > WAITING_AFTER_S)
        last = track.last
        if last is not None and last.failed:
            state = "failed"
        elif hanging:
            state = "waiting"
        elif last is None:
            state = "starting"
        else:
            state = "success"
        recent = [r for r in track.recent if r.sent_s + r.latency_s >= now - RECENT_S]
        latencies = [r.latency_s for r in recent]
        # The strip: the requests sent in each whole second of the watch's clock, the newest on the right; one
        # still in flight shows how long it has waited so far.
        newest = math.floor(now)
        cells: list[list] = [[None, "empty"] for _ in range(STRIP_S)]
        rank = {"empty": 0, "ok": 1, "waiting": 2, "failed": 3}

        def put(second: int, latency: float, kind: str) -> None:
            index = second - (newest - STRIP_S + 1)
            if 0 <= index < STRIP_S:
                cell = cells[index]
                cell[0] = latency if cell[0] is None else max(cell[0], latency)
                if rank[kind] > rank[cell[1]]:
                    cell[1] = kind

        for request in track.recent:
            put(math.floor(request.sent_s), request.latency_s, "failed" if request.failed else "ok")
        for name, sent in self.in_flight:
            if name == track.name and now - sent > WAITING_AFTER_S:
                put(math.floor(sent), now - sent, "waiting")
        return EndpointView(
            name=track.name, state=state,
            code="000" if last is None or last.status is None else str(last.status),
            latency_s=None if last is None else last.latency_s,
            waiting_s=waiting_s, hanging=hanging, outage_s=track.outage_so_far(now),
            recent=len(recent), recent_failed=sum(1 for r in recent if r.failed),
            recent_median_s=_median(latencies), recent_max_s=max(latencies, default=None),
            strip=tuple(Cell(latency, kind) for latency, kind in cells),
        )

    def _rows(self) -> tuple[LockRow, ...]:
        return self.sample.rows if self.sample is not None else ()

    def _migration(self, sessions: dict[int, Session]) -> MigrationView | None:
        rows = self._rows()
        locked = {row.pid for row in rows if row.relation or not row.granted}
        candidates = []
        for session in sessions.values():
            if role_of(session) != MIGRATION:
                continue
            busy = session.state not in (None, "idle")
            recent = session.state_s is not None and session.state_s < IDLE_FORGET_S
            if not (busy or recent or session.pid in locked):
                continue
            candidates.append(((session.pid in locked, busy, session.query_s or 0.0), session))
        if not candidates:
            return None
        candidates.sort(key=lambda item: item[0], reverse=True)
        session = candidates[0][1]
        mine = [row for row in rows if row.pid == session.pid]
        strongest: dict[str, LockRow] = {}
        for row in mine:
            if row.granted and row.relation:
                known = strongest.get(row.relation)
                if known is None or lock_strength(row.mode) > lock_strength(known.mode):
                    strongest[row.relation] = row
        holds = tuple(
            LockView(row.relation, lock_name(row.mode), self._held_for(row, session))
            for row in sorted(strongest.values(), key=lambda row: lock_strength(row.mode), reverse=True)
        )
        waits = tuple(
            LockView(self._what_is_awaited(row), lock_name(row.mode) if row.locktype == "relation" else "",
                     row.waited_s, tuple(_label(sessions.get(pid), pid) for pid in row.blocked_by))
            for row in mine if not row.granted
        )
        return MigrationView(
            pid=session.pid, application=session.application, state=session.state or "",
            statement=_one_line(session.query), statement_s=session.query_s, xact_s=session.xact_s,
            idle_s=session.state_s if session.state == "idle" else None,
            holds=holds, waits=waits, progress=self._progress(session), more=len(candidates) - 1,
        )

    def _held_for(self, row: LockRow, session: Session) -> float | None:
        """Since the watch first saw it held, and no longer than its transaction has been open (pg_locks has no
        time of grant; a batch that commits every 50 ms must not look like one lock held for minutes)."""
        since = self._held_since.get((row.pid, row.relation, row.mode))
        if since is None or self.sample is None:
            return None
        seen = max(0.0, self.sample.at_s - since)
        return seen if session.xact_s is None else min(seen, session.xact_s)

    @staticmethod
    def _what_is_awaited(row: LockRow) -> str:
        if row.locktype == "relation":
            return row.relation or "a table"
        if row.locktype in ("transactionid", "tuple"):
            return "a row"
        if row.locktype == "virtualxid":
            return "older transactions to end"
        return row.locktype

    def _progress(self, session: Session) -> ProgressView | None:
        activity = self.activity
        if activity is None:
            return None
        for row in activity.progress:
            if row.pid != session.pid:
                continue
            on = f" on {row.relation}" if row.relation else ""
            label = f"{row.command} {row.index}{on}" if row.index else f"{row.command}{on}"
            fraction = row.done / row.total if row.total > 0 else None
            detail = f"{row.done:,} of {row.total:,} {row.unit}" if row.total > 0 else ""
            return ProgressView(label, row.phase, None if fraction is None else min(1.0, fraction), detail)
        batch = parse_batch(session.query)
        if batch is None:
            return None
        bounds = activity.bounds.get((batch.table, batch.column))
        fraction, detail = None, f"{batch.column} {batch.lo:,} to {batch.hi - 1:,}"
        if bounds is not None:
            smallest, largest = bounds
            span = largest - smallest + 1
            if span > 0:
                fraction = max(0.0, min(1.0, (batch.hi - smallest) / span))
                of = f"{largest:,}" if smallest == 1 else f"{smallest:,}..{largest:,}"
                detail = f"{batch.column} {batch.lo:,} to {batch.hi - 1:,} of {of}"
        first = self._batches.get((session.pid, batch.table))
        if first is not None and activity.at_s > first[0] and batch.hi > first[1]:
            detail += f", {(batch.hi - first[1]) / (activity.at_s - first[0]):,.0f} ids/s"
        phase = "between two batches" if session.state == "idle" else "a batch runs"
        return ProgressView(f"{batch.verb} {batch.table}", phase, fraction, detail)

    def _queue(self, sessions: dict[int, Session]) -> list[QueueLine]:
        """Who waits on whom: the API's backends grouped by whom they wait behind; every other waiter alone."""
        api: dict[str, dict] = {}
        lines: list[QueueLine] = []
        for row in self._rows():
            if row.granted:
                continue
            waiter = sessions.get(row.pid)
            role = role_of(waiter) if waiter is not None else (API if row.application == WEB_APPLICATION else OTHER)
            if role == OWN or row.application in OWN_APPLICATIONS:
                continue
            blockers = " + ".join(_label(sessions.get(pid), pid) for pid in row.blocked_by) or "nobody"
            if role == API:
                group = api.setdefault(blockers, {"pids": set(), "reads": 0, "writes": 0, "tables": set(),
                                                  "longest": None})
                group["pids"].add(row.pid)
                if row.locktype == "relation" and row.mode == "AccessShareLock":
                    group["reads"] += 1
                else:
                    group["writes"] += 1
                if row.relation:
                    group["tables"].add(row.relation)
                if row.waited_s is not None:
                    group["longest"] = max(group["longest"] or 0.0, row.waited_s)
                continue
            mode = f"{lock_name(row.mode)} on " if row.locktype == "relation" else ""
            lines.append(QueueLine(role, _label(waiter, row.pid), blockers,
                                   f"{mode}{self._what_is_awaited(row)}", row.waited_s))
        for blockers, group in api.items():
            count = len(group["pids"])
            parts = [f"{group['reads']} read{'s' * (group['reads'] != 1)}"] if group["reads"] else []
            if group["writes"]:
                parts.append(f"{group['writes']} write{'s' * (group['writes'] != 1)}")
            tables = ", ".join(sorted(group["tables"]))
            what = f"{tables}: {', '.join(parts)}" if tables else ", ".join(parts)
            lines.append(QueueLine(API, f"{count} API backend{'s' * (count != 1)}", blockers, what, group["longest"]))
        order = {MIGRATION: 0, API: 1, OTHER: 2}
        lines.sort(key=lambda line: (order.get(line.kind, 3), -(line.longest_s or 0.0)))
        return lines
