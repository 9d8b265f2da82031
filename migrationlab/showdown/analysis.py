"""From measurements to numbers: per window (the baseline, each step) latencies, stalls, locks and a verdict.

Pure functions of the probe's requests and the sampler's lock samples; no I/O. Definitions (docs/showdown.md):

- normal latency of an endpoint: max(3 x its baseline p90, 100 ms) (p90, not p99: a 3-second baseline has 60
  requests, and its p99 would be its single slowest one);
- a request stalls from (send + normal latency) until it was answered or gave up; the stalls of all requests of
  an endpoint merged into intervals; each window is charged the part of a stall inside it, so no stall is ever
  longer than the window it was measured over; the part of a stall that went on after a step ended (the backlog
  draining) is a figure of its own, backlog_after;
- a saturated baseline (failures, or a p99 over SATURATED_P99_S): the numbers measure the overload of the
  machine, not locks; an API that never came back to normal after a step: overload, or a step that left the API
  slower for good (saturation);
- a request belongs to the window it was sent in;
- a lock the migration held is sampled: held_s adds up the time from each sample that saw it to the next sample
  (accurate to about one sampling interval; a lock held for less than one interval may go unseen);
- a session waited on the migration when pg_blocking_pids() of its awaited lock names the migration's backend.
  It is counted against the migration's strongest lock on the table it waits for (or, for a row lock, on the
  table it is writing to). longest_wait_s comes from pg_locks.waitstart, not from sampling.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

from migrationlab.locks import lock_name, lock_strength
from migrationlab.showdown.probe import Request
from migrationlab.showdown.sampler import LockSample

MIGRATION_APPLICATION = "migration"  # application_name of the backend that applies a step (runner sets it)
WEB_APPLICATION = "web"  # application_name of gunicorn's connections (migrationlab/gunicorn_conf.py)

NORMAL_LATENCY_PERCENTILE = 0.90
NORMAL_LATENCY_MULTIPLE = 3.0
NORMAL_LATENCY_FLOOR_S = 0.100
BLOCKED_AFTER_S = 0.5  # a stall this long, with a lock wait this long behind it, reads as "blocked"
WAITED_THROUGHOUT = 0.5  # share of the time the migration held its lock with traffic waiting: "throughout"
# An unbroken queue behind a migration that itself waits for its lock, this long: "throughout" (no lock_timeout
# ended it; WithLockTimeout's 500 ms attempts stay well below).
QUEUED_THROUGHOUT_S = 1.5
MAX_SAMPLE_WEIGHT_S = 0.25  # a gap in the samples (sampler starved of CPU) counts for no more than this

# Weakest to strongest (each conflicts with at least what the previous one does).


@dataclass(frozen=True)
class Window:
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s

    def __contains__(self, moment: float) -> bool:
        return self.start_s <= moment < self.end_s


def seconds_or_ms(value: float) -> str:
    return f"{value:.1f} s" if value >= 1 else f"{value * 1000:.0f} ms"


# -- requests ---------------------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of already sorted values; None for no values."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def normal_latency(baseline: list[Request]) -> float:
    answered = sorted(request.latency_s for request in baseline if not request.failed)
    typical = percentile(answered, NORMAL_LATENCY_PERCENTILE) or 0.0
    return max(NORMAL_LATENCY_MULTIPLE * typical, NORMAL_LATENCY_FLOOR_S)


def stall_intervals(requests: list[Request], normal_s: float) -> list[tuple[float, float]]:
    """Merged intervals in which at least one request was outstanding past the normal latency."""
    spans = sorted((r.sent_s + normal_s, r.sent_s + r.latency_s) for r in requests if r.latency_s > normal_s)
    merged: list[list[float]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def longest_stall_span(stalls: list[tuple[float, float]], window: Window) -> tuple[float, float] | None:
    """The longest part of a stall inside the window (a stall that began before it, or went on after it, is cut
    at the window's edges), or None."""
    mine = [(max(start, window.start_s), min(end, window.end_s)) for start, end in stalls
            if start < window.end_s and end > window.start_s]
    return max(mine, key=lambda span: span[1] - span[0], default=None)


def longest_stall(stalls: list[tuple[float, float]], window: Window) -> float:
    span = longest_stall_span(stalls, window)
    return span[1] - span[0] if span else 0.0


def stall_after(stalls: list[tuple[float, float]], window: Window, moment: float | None) -> float:
    """How long the window's longest stall went on past `moment` (the migration's last lock), within the window:
    the server answering the requests that queued up behind the lock, before new ones get through."""
    span = longest_stall_span(stalls, window)
    return max(0.0, span[1] - moment) if span and moment is not None else 0.0


def backlog_after(stalls: list[tuple[float, float]], window: Window) -> float:
    """How long a stall still under way when the window ended went on after it: the backlog of requests queued
    during a step, drained after the step (charged to the windows it falls in, not to the step)."""
    return max((end - window.end_s for start, end in stalls if start < window.end_s < end), default=0.0)


def endpoint_stats(requests: list[Request], window: Window, stalls: list[tuple[float, float]]) -> dict:
    sent_in_window = [r for r in requests if r.sent_s in window]
    latencies = sorted(r.latency_s for r in sent_in_window)
    return {
        "requests": len(sent_in_window),
        "failures": sum(r.failed for r in sent_in_window),
        "timeouts": sum(r.error == "timeout" for r in sent_in_window),
        "p50_s": _rounded(percentile(latencies, 0.50)),
        "p95_s": _rounded(percentile(latencies, 0.95)),
        "p99_s": _rounded(percentile(latencies, 0.99)),
        "max_s": _rounded(latencies[-1] if latencies else None),
        "longest_stall_s": _rounded(longest_stall(stalls, window)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- is the machine itself overloaded? -------------------------------------------------------------------------

# The baseline is saturated when one of the project's own endpoints (not a previous release) failed a request, or
# answered its slowest 1 % in more than SATURATED_P99_S: ten times the 100 ms stall threshold, and some hundred
# times what an endpoint takes on an idle machine (5-30 ms). No lock is held in the baseline, so such answers
# are the server (or the machine) not keeping up with the probe's rate.
SATURATED_P99_S = 1.0
OVERLOAD_WORDS = "numbers measure the overload of this machine, not locks"


def saturation(baseline_endpoints: dict, not_recovered: tuple[str, ...] | list[str] = ()) -> dict:
    """Is the server saturated, lock or no lock? `baseline_endpoints`: endpoint_stats of the baseline;
    `not_recovered`: where the API did not come back to its normal latency in the time the runner waits for it
    (e.g. "after the last step"). {baseline, after: bool, reasons: [text]}."""
    reasons = []
    for name, word in {**ACCESS_WORDS, **REFERENCED_WORDS}.items():
        stats = baseline_endpoints.get(name)
        if not stats or not stats["requests"]:
            continue
        word = word.replace("referenced_", "referenced ")
        if stats["failures"]:
            reasons.append(f"{stats['failures']} of {stats['requests']} baseline {word} failed")
        if (stats["p99_s"] or 0.0) > SATURATED_P99_S:
            reasons.append(f"baseline {word} p99 {seconds_or_ms(stats['p99_s'])}")
    baseline = bool(reasons)
    reasons += [f"the API did not come back to its baseline latency {where}" for where in not_recovered]
    return {"baseline": baseline, "after": bool(not_recovered), "reasons": reasons}


def overload_warning(saturated: dict, rate_per_s: float | None, where: str = "") -> str:
    """One line, said first: what the saturation means, and what to do about it. A saturated baseline is overload
    for sure; an API that did not come back after a step may also be the step's doing (a lookup that lost its
    index is slower for good), and is said so."""
    lower = f"e.g. --rate {max(1, round(rate_per_s / 2)):g}" if rate_per_s else "e.g. half of it"
    where = f" {where}" if where else ""
    if saturated["baseline"]:
        return (f"OVERLOADED{where}: {'; '.join(saturated['reasons'])}. These {OVERLOAD_WORDS}: run again with a "
                f"lower --rate ({lower}).")
    return (f"NOT RECOVERED{where}: {'; '.join(saturated['reasons'])}. Either the machine is overloaded (then run "
            f"again with a lower --rate, {lower}), or a step left the API slower for good (e.g. a lookup that lost "
            "its index): the stall and the backlog that end there are that.")


# -- locks ------------------------------------------------------------------------------------------------------

@dataclass
class _LockTally:
    held_s: float = 0.0
    waited_s: float = 0.0
    waited_behind: set = field(default_factory=set)
    waiters_max: int = 0
    longest_wait_s: float = 0.0
    waiter_pids: set = field(default_factory=set)


def _weights(samples: list[LockSample], interval_s: float, window: Window | None = None):
    """(sample, seconds it stands for) for each sample in the window: up to the next sample."""
    for index, sample in enumerate(samples):
        if window is not None and sample.at_s not in window:
            continue
        following = samples[index + 1].at_s if index + 1 < len(samples) else sample.at_s + interval_s
        if window is not None:
            following = min(following, window.end_s)
        yield sample, min(max(following - sample.at_s, 0.0), MAX_SAMPLE_WEIGHT_S)


def _migration_view(sample: LockSample, tables: list[str]):
    """The migration's pids; its strongest lock (held or awaited) per table; the sessions waiting on it.

    Each waiter comes as (pid, application, the table it waits on, the mode it asks for, seconds so far).
    """
    migration = {row.pid for row in sample.rows if row.application == MIGRATION_APPLICATION}
    strongest: dict[str, tuple[str, bool]] = {}
    held_by_others: dict[int, list[str]] = defaultdict(list)
    for row in sample.rows:
        if row.relation not in tables:
            continue
        if row.pid in migration:
            current = strongest.get(row.relation)
            if current is None or lock_strength(row.mode) > lock_strength(current[0]):
                strongest[row.relation] = (row.mode, row.granted)
        elif row.granted:
            held_by_others[row.pid].append(row.relation)
    waiters = []
    for row in sample.rows:
        if row.granted or row.pid in migration or not migration & set(row.blocked_by):
            continue
        candidates = [row.relation] if row.relation in tables else held_by_others.get(row.pid, [])
        on = next((table for table in candidates if table in strongest), None)
        if on is None and strongest:  # e.g. waiting on an index of the table: blame the strongest lock
            on = max(strongest, key=lambda table: lock_strength(strongest[table][0]))
        if on is not None:
            waiters.append((row.pid, row.application, on, row.mode, row.waited_s or 0.0))
    return migration, strongest, waiters


def migration_locks(samples: list[LockSample], window: Window, tables: list[str], interval_s: float) -> list[dict]:
    """The locks the migration held (or waited for) on the tables in the window, and who waited on them."""
    tallies: dict[tuple[str, str], _LockTally] = defaultdict(_LockTally)
    for sample, weight in _weights(samples, interval_s, window):
        migration, strongest, waiters = _migration_view(sample, tables)
        who = {row.pid: row.application for row in sample.rows} | {w.pid: w.application for w in sample.other_waits}
        for row in sample.rows:
            if row.pid in migration and row.relation in tables:
                tally = tallies[(row.relation, row.mode)]
                if row.granted:
                    tally.held_s += weight
                else:
                    tally.waited_s += weight
                    tally.waited_behind |= {who.get(pid, f"pid {pid}") for pid in row.blocked_by
                                            if pid not in migration}
        waiting_now: dict[tuple[str, str], set] = defaultdict(set)
        for pid, _, table, _, waited_s in waiters:
            key = (table, strongest[table][0])
            waiting_now[key].add(pid)
            tally = tallies[key]
            tally.waiter_pids.add(pid)
            tally.longest_wait_s = max(tally.longest_wait_s, waited_s)
        for key, pids in waiting_now.items():
            tallies[key].waiters_max = max(tallies[key].waiters_max, len(pids))
    locks = [
        {
            "relation": relation,
            "mode": mode,
            "held_s": round(tally.held_s, 3),
            "waited_s": round(tally.waited_s, 3),
            "waited_behind": sorted(tally.waited_behind),
            "waiters_max": tally.waiters_max,
            "waiters_total": len(tally.waiter_pids),
            "longest_wait_s": round(tally.longest_wait_s, 3),
        }
        for (relation, mode), tally in tallies.items()
    ]
    return sorted(locks, key=lambda lock: (tables.index(lock["relation"]), -lock_strength(lock["mode"])))


def web_waits(samples: list[LockSample], window: Window, tables: list[str], interval_s: float,
              referenced: str | None = None) -> dict:
    """How the web's reads and writes waited on the migration: per kind, in scenario.toml's words (level), how
    many sessions, and the longest wait of one (pg_locks.waitstart).

    With `referenced` (the table a foreign key lesson's large table refers to), waits on that table are kinds of
    their own, referenced_reads and referenced_writes, as scenario.toml claims them; their "throughout" is
    measured against the time the migration held a lock on that table (a migration may lock it for its last
    statements only, and hold it to the end).

    level never: no web session was seen waiting on it; throughout: the migration held its lock for at least
    BLOCKED_AFTER_S and web sessions were waiting on it for at least half of that time (the migration working
    through the table with traffic queued behind it), or web sessions queued behind the migration while it was
    itself waiting for its lock (behind a report), without a break, for at least QUEUED_THROUGHOUT_S: a wait
    that no lock_timeout cut short, as the judge calls it; briefly: anything in between, e.g. queues that a
    500 ms lock_timeout ends. A read asks for ACCESS SHARE; anything else a web session waits for (ROW
    EXCLUSIVE, a row lock) is a write.
    """
    kinds = ("reads", "writes", *(("referenced_reads", "referenced_writes") if referenced else ()))
    held_s = {kind: 0.0 for kind in kinds}
    waited_while_held = {kind: 0.0 for kind in kinds}
    sessions: dict[str, set] = {kind: set() for kind in kinds}
    longest = {kind: 0.0 for kind in kinds}
    queued_now = {kind: 0.0 for kind in kinds}  # the current unbroken queue behind a migration that waits
    queued_longest = {kind: 0.0 for kind in kinds}
    for sample, weight in _weights(samples, interval_s, window):
        _, strongest, waiters = _migration_view(sample, tables)
        awaiting = bool(strongest) and not any(granted for _, granted in strongest.values())
        holding = {kind: any(granted for _, granted in strongest.values()) for kind in ("reads", "writes")}
        if referenced:
            on_referenced = strongest.get(referenced, (None, False))[1]
            holding |= {"referenced_reads": on_referenced, "referenced_writes": on_referenced}
        for kind in kinds:
            held_s[kind] += weight if holding[kind] else 0.0
        kinds_now = set()
        for pid, application, table, mode, waited in waiters:
            if application != WEB_APPLICATION:
                continue
            kind = "reads" if mode == "AccessShareLock" else "writes"
            if referenced and table == referenced:
                kind = f"referenced_{kind}"
            kinds_now.add(kind)
            sessions[kind].add(pid)
            longest[kind] = max(longest[kind], waited)
        for kind in kinds_now:
            waited_while_held[kind] += weight if holding[kind] else 0.0
        for kind in kinds:
            queued_now[kind] = queued_now[kind] + weight if awaiting and kind in kinds_now else 0.0
            queued_longest[kind] = max(queued_longest[kind], queued_now[kind])

    def level(kind: str) -> str:
        if not sessions[kind]:
            return "never"
        held = held_s[kind]
        held_long = held >= BLOCKED_AFTER_S and waited_while_held[kind] >= WAITED_THROUGHOUT * held
        return "throughout" if held_long or queued_longest[kind] >= QUEUED_THROUGHOUT_S else "briefly"

    return {kind: {"level": level(kind), "sessions": len(sessions[kind]), "longest_wait_s": round(longest[kind], 3)}
            for kind in sessions}


def lock_timeline(samples: list[LockSample], tables: list[str], interval_s: float) -> list[dict]:
    """Intervals of the migration's strongest lock per table (held, or awaited: granted false)."""
    segments: list[dict] = []
    open_segments: dict[str, dict] = {}
    for sample, weight in _weights(samples, interval_s):
        _, strongest, _ = _migration_view(sample, tables)
        for table in tables:
            state = strongest.get(table)
            current = open_segments.get(table)
            continues = current and abs(current["end_s"] - sample.at_s) < 1e-6  # no gap since the last sample
            if continues and state == (current["mode"], current["granted"]):
                current["end_s"] = sample.at_s + weight
                continue
            if current:
                segments.append(open_segments.pop(table))
            if state:
                open_segments[table] = {"relation": table, "mode": state[0], "granted": state[1],
                                        "start_s": sample.at_s, "end_s": sample.at_s + weight}
    segments.extend(open_segments.values())
    for segment in segments:
        segment["start_s"], segment["end_s"] = round(segment["start_s"], 3), round(segment["end_s"], 3)
    return sorted(segments, key=lambda segment: (segment["start_s"], segment["relation"]))


def web_other_waits(samples: list[LockSample], window: Window, interval_s: float, most: int = 3) -> dict[str, float]:
    """What web sessions were seen waiting on besides locks (IO:WALSync, ...): seconds in which at least one was,
    per wait event, the `most` largest."""
    seconds: dict[str, float] = defaultdict(float)
    for sample, weight in _weights(samples, interval_s, window):
        for event in {wait.event for wait in sample.other_waits if wait.application == WEB_APPLICATION}:
            seconds[event] += weight
    ranked = sorted(seconds.items(), key=lambda item: -item[1])[:most]
    return {event: round(value, 3) for event, value in ranked}


# -- verdict ----------------------------------------------------------------------------------------------------

ACCESS_WORDS = {"list_large": "reads", "update_order": "writes"}
# The referenced table's (a foreign key lesson's customers): web_waits' kinds for them.
REFERENCED_WORDS = {"list_referenced": "referenced_reads", "update_referenced": "referenced_writes"}


def describe_endpoint(stats: dict, longest_lock_wait_s: float, other_waits: dict[str, float] | None = None,
                      after_locks_s: float = 0.0, backlog_s: float = 0.0) -> str:
    """`blocked 6.2 s`: a stall of at least BLOCKED_AFTER_S, mostly a web session waiting on the migration (its
    longest wait at least half the stall, or BLOCKED_AFTER_S). A long stall that lock waits do not explain is the
    machine being slow (CPU, disk), and is called that, with what web sessions were seen waiting on instead.
    `backlog_s`: how long the stall went on after the step (backlog_after), said apart from the step's stall."""
    stall, failures, requests = stats["longest_stall_s"] or 0.0, stats["failures"], stats["requests"]
    failed = f" ({failures} of {requests} failed)" if failures else ""
    backlog = f", backlog drained for {backlog_s:.1f} s after the step" if backlog_s >= BLOCKED_AFTER_S else ""
    if requests == 0:
        return "not probed"
    if stall >= BLOCKED_AFTER_S and longest_lock_wait_s >= min(BLOCKED_AFTER_S, stall / 2):
        notes = [f"{failures} of {requests} failed"] if failures else []
        if after_locks_s >= BLOCKED_AFTER_S:
            notes.append(f"{after_locks_s:.1f} s of it after the lock was gone")
        return f"blocked {stall:.1f} s" + (f" ({', '.join(notes)})" if notes else "") + backlog
    slowest = seconds_or_ms(stats["max_s"] or 0.0)
    if stall >= BLOCKED_AFTER_S:
        locked = (f"at most {seconds_or_ms(longest_lock_wait_s)} of it waiting on a lock" if longest_lock_wait_s
                  else "not waiting on a lock")
        seen = f"; web sessions seen waiting on {', '.join(other_waits)}" if other_waits else ""
        return f"slow for {stall:.1f} s, {locked} (max {slowest}{seen}){failed}{backlog}"
    if failures:
        return f"failing{failed}"
    return f"slowed (max {slowest})" if stall > 0 else f"ok (max {slowest})"


def verdict(endpoints: dict, locks: list[dict], waits: dict, interval_s: float,
            other_waits: dict[str, float] | None = None, after_locks: dict[str, float] | None = None,
            referenced: str | None = None, backlog: dict[str, float] | None = None, overloaded: bool = False) -> str:
    """One line: what the step did to reads and writes (and to those of the `referenced` table), and the lock
    responsible; led by a warning when the machine was `overloaded` (saturation)."""

    def described(name: str, word: str) -> str:
        return describe_endpoint(endpoints[name], waits[word]["longest_wait_s"], other_waits,
                                 (after_locks or {}).get(name, 0.0), (backlog or {}).get(name, 0.0))

    parts = [f"{word} {described(name, word)}" for name, word in ACCESS_WORDS.items() if name in endpoints]
    previous = [f"{word} {described(f'previous_release/{name}', word)}"
                for name, word in ACCESS_WORDS.items() if f"previous_release/{name}" in endpoints]
    if previous:
        parts.append("previous release: " + ", ".join(previous))
    on_referenced = [f"{word.removeprefix('referenced_')} {described(name, word)}"
                     for name, word in REFERENCED_WORDS.items() if name in endpoints and word in waits]
    if on_referenced:
        parts.append(f"{referenced or 'referenced table'}: " + ", ".join(on_referenced))
    text = (f"OVERLOADED ({OVERLOAD_WORDS}): " if overloaded else "") + ", ".join(parts)
    waited_on = [lock for lock in locks if lock["waiters_total"]]
    if waited_on:
        culprit = max(waited_on, key=lambda lock: (lock["longest_wait_s"], lock_strength(lock["mode"])))
        queued = (f", itself queued {seconds_or_ms(culprit['waited_s'])} behind {', '.join(culprit['waited_behind'])}"
                  if culprit["waited_behind"] else "")
        return f"{text} — {lock_name(culprit['mode'])} on {culprit['relation']}{queued}"
    held = [lock for lock in locks if lock["held_s"] or lock["waited_s"]]
    if held:
        strongest = max(held, key=lambda lock: (lock_strength(lock["mode"]), lock["held_s"]))
        return (f"{text} — {lock_name(strongest['mode'])} on {strongest['relation']} "
                f"for {seconds_or_ms(strongest['held_s'] + strongest['waited_s'])}, nobody waited")
    return f"{text} — no lock held long enough to sample (< {interval_s * 1000:.0f} ms)"
