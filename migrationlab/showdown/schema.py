"""The JSON report's schema (JSON Schema 2020-12), and summary.json's. docs/showdown.md links here; as JSON:
`python -m migrationlab.showdown.schema` (report.json's) or `... --summary` (summary.json's).

Times are seconds. `start_s`/`end_s` are on the project's own clock (0 = when its probe and sampler started).
"""

from __future__ import annotations

import json
import sys

REPORT_FORMAT = "migrationlab-showdown/2"

_seconds = {"type": "number", "minimum": 0}
_seconds_or_null = {"type": ["number", "null"], "minimum": 0}
_count = {"type": "integer", "minimum": 0}
_wait_level = {"enum": ["never", "briefly", "throughout"]}
_endpoint_name = "^(previous_release/)?(list_large|update_order|list_referenced|update_referenced)$"
# What waits: the large table's reads and writes, and those of the table it refers to (a foreign key lesson only).
_wait_kinds = ("reads", "writes", "referenced_reads", "referenced_writes")

def _closed(properties: dict, **more) -> dict:
    """An object with exactly these properties, all required."""
    return {"type": "object", **more, "required": list(properties), "additionalProperties": False,
            "properties": properties}


_endpoint = {
    "type": "object",
    "description": "Requests sent to one endpoint during the window. A timed-out request counts as the timeout.",
    "required": ["requests", "failures", "timeouts", "p50_s", "p95_s", "p99_s", "max_s", "longest_stall_s"],
    "additionalProperties": False,
    "properties": {
        "requests": _count,
        "failures": {**_count, "description": "as the talk's curl loop counts them: any HTTP status but 200, or no answer within the timeout (timeout, connection error)"},
        "timeouts": _count,
        "p50_s": _seconds_or_null,
        "p95_s": _seconds_or_null,
        "p99_s": _seconds_or_null,
        "max_s": _seconds_or_null,
        "longest_stall_s": {**_seconds, "description": "longest interval in which a request was outstanding past "
                                                         "the normal latency, cut at the window's edges: never "
                                                         "longer than the window"},
    },
}

_endpoints = {
    "type": "object",
    "required": ["list_large", "update_order"],
    "propertyNames": {"pattern": _endpoint_name},
    "additionalProperties": _endpoint,
}

_window = {
    "start_s": _seconds,
    "end_s": _seconds,
    "duration_s": _seconds,
    "endpoints": _endpoints,
}

_lock = {
    "type": "object",
    "description": "A lock the migration held (or waited for) on one of the scenario's tables, and who waited on it.",
    "required": ["relation", "mode", "held_s", "waited_s", "waited_behind", "waiters_max", "waiters_total",
                 "longest_wait_s"],
    "additionalProperties": False,
    "properties": {
        "relation": {"type": "string"},
        "mode": {"enum": ["AccessShareLock", "RowShareLock", "RowExclusiveLock", "ShareUpdateExclusiveLock",
                          "ShareLock", "ShareRowExclusiveLock", "ExclusiveLock", "AccessExclusiveLock"]},
        "held_s": {**_seconds, "description": "sampled: accurate to about one sampling interval"},
        "waited_s": {**_seconds, "description": "how long the migration itself waited to get it"},
        "waited_behind": {"type": "array", "items": {"type": "string"},
                          "description": "who the migration waited behind (application_name, or the backend "
                                         "type when it has none, e.g. autovacuum worker)"},
        "waiters_max": {**_count, "description": "most sessions waiting on it at once"},
        "waiters_total": {**_count, "description": "distinct sessions seen waiting on it"},
        "longest_wait_s": {**_seconds, "description": "longest wait of one session (pg_locks.waitstart)"},
    },
}

_step = {
    "type": "object",
    "required": ["migration", "kind", "what", "start_s", "end_s", "duration_s", "actors", "endpoints", "locks",
                 "claimed", "observed", "web_waits", "web_other_waits_s", "stall_after_locks_s", "backlog_after_step_s", "verdict", "log"],
    "additionalProperties": False,
    "properties": {
        "migration": {"type": "string"},
        "kind": {"enum": ["risky", "safe"]},
        "what": {"type": "string"},
        **_window,
        "actors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["kind", "description"],
                "additionalProperties": False,
                "properties": {"kind": {"enum": ["long_query", "previous_release", "append_rows"]},
                               "description": {"type": "string"}},
            },
        },
        "locks": {"type": "array", "items": _lock},
        "claimed": {
            "type": "object", "description": "scenario.toml's claim for the step",
            "required": ["reads", "writes"], "additionalProperties": False,
            "properties": {kind: _wait_level for kind in _wait_kinds},
        },
        "observed": {
            "type": "object", "description": "how the web's reads and writes were seen waiting on the migration",
            "required": ["reads", "writes"], "additionalProperties": False,
            "properties": {kind: _wait_level for kind in _wait_kinds},
        },
        "web_waits": {
            "type": "object", "description": "web sessions seen waiting on the migration, reads and writes",
            "required": ["reads", "writes"], "additionalProperties": False,
            "properties": {kind: {
                "type": "object", "required": ["sessions", "longest_wait_s"], "additionalProperties": False,
                "properties": {"sessions": _count, "longest_wait_s": _seconds},
            } for kind in _wait_kinds},
        },
        "stall_after_locks_s": {
            "type": "object",
            "description": "per endpoint, how long its longest stall went on after the migration's last lock: "
                           "the server answering the requests queued behind the lock",
            "propertyNames": {"pattern": _endpoint_name}, "additionalProperties": _seconds,
        },
        "backlog_after_step_s": {
            "type": "object",
            "description": "per endpoint, how long a stall under way when the step ended went on after it (the "
                           "backlog queued during the step, drained after it; not counted in the step's stall)",
            "propertyNames": {"pattern": _endpoint_name}, "additionalProperties": _seconds,
        },
        "web_other_waits_s": {
            "type": "object",
            "description": "besides locks, what web sessions were seen waiting on (pg_stat_activity.wait_event_type:"
                           "wait_event, e.g. IO:WALSync): seconds in which at least one was; the 3 largest",
            "additionalProperties": _seconds,
        },
        "verdict": {"type": "string"},
        "log": {"type": "string", "description": "the step's manage.py output, relative to the report"},
        "deploy": {
            "type": "object",
            "description": "a project with releases, after a release's last step: that release deployed blue-green "
                           "(the probe moved over to it at deployed_s; the migration ended at migrated_s); since "
                           "when the previous release failed, if it did (its first failed request in the step)",
            "required": ["release", "migrated_s", "deployed_s", "failing_from_s"],
            "additionalProperties": False,
            "properties": {"release": {"type": "integer", "minimum": 1}, "migrated_s": _seconds,
                           "deployed_s": _seconds, "failing_from_s": _seconds_or_null},
        },
    },
}

_project = {
    "type": "object",
    "required": ["project", "title", "variant", "database", "seed_s", "normal_latency_s", "saturation", "baseline",
                 "steps", "after", "lock_timeline", "probe", "sampler"],
    "additionalProperties": False,
    "properties": {
        "project": {"type": "string"},
        "title": {"type": "string"},
        "variant": _count,
        "referenced_table": {"type": "string", "description": "the table the large one refers to, probed too "
                                                              "(list_referenced, update_referenced); if any"},
        "database": {"type": "string", "description": "the database the run created (and dropped)"},
        "seed_s": _seconds,
        "normal_latency_s": {
            "type": "object", "description": "max(3 x baseline p90, 0.1 s) per endpoint: the stall threshold",
            "propertyNames": {"pattern": _endpoint_name}, "additionalProperties": _seconds,
        },
        "saturation": _closed(
            {"baseline": {"type": "boolean"}, "after": {"type": "boolean"},
             "reasons": {"type": "array", "items": {"type": "string"}}},
            description="the machine itself overloaded, lock or no lock: the baseline already failed requests or had "
                        "a p99 over 1 s (baseline), or the API did not come back to its baseline latency after a "
                        "step (after); then the numbers measure the overload, not locks"),
        "baseline": {
            "type": "object", "required": list(_window), "additionalProperties": False, "properties": _window,
        },
        "steps": {"type": "array", "items": _step},
        "after": {
            "type": "object", "description": "after the last step, until the API answered normally again",
            "required": list(_window), "additionalProperties": False, "properties": _window,
        },
        "lock_timeline": {
            "type": "array",
            "description": "the migration's strongest lock per table over time (granted false: waiting for it)",
            "items": {
                "type": "object",
                "required": ["relation", "mode", "granted", "start_s", "end_s"],
                "additionalProperties": False,
                "properties": {"relation": {"type": "string"}, "mode": _lock["properties"]["mode"],
                               "granted": {"type": "boolean"}, "start_s": _seconds, "end_s": _seconds},
            },
        },
        "probe": {
            "type": "object",
            "required": ["sent", "answered", "max_send_lag_s", "cpu_s", "cpu_share"],
            "additionalProperties": False,
            "properties": {
                "sent": _count, "answered": _count,
                "max_send_lag_s": {**_seconds, "description": "worst delay of a send behind its schedule"},
                "cpu_s": _seconds,
                "cpu_share": {**_seconds, "description": "probe CPU time / wall time (1.0 = one core)"},
            },
        },
        "sampler": _closed({"samples": _count, "interval_s": _seconds, "max_gap_s": _seconds, "errors": _count,
                            "cpu_s": _seconds}),
    },
}

_summary_endpoint = _closed({"requests": _count, "failures": _count, "max_s": _seconds_or_null,
                             "longest_stall_s": _seconds, "backlog_after_step_s": _seconds})

REPORT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "migrationlab showdown report",
    "type": "object",
    "required": ["format", "scenario", "rows", "started_at", "settings", "server", "saturated", "projects",
                 "summary"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": REPORT_FORMAT},
        "scenario": {"type": "integer", "minimum": 1},
        "rows": {"type": "integer", "minimum": 1},
        "started_at": {"type": "string", "description": "UTC, ISO 8601"},
        "settings": {
            "type": "object",
            "required": ["rate_per_s", "timeout_s", "sample_interval_s", "baseline_s"],
            "additionalProperties": False,
            "properties": {"rate_per_s": _seconds, "timeout_s": _seconds, "sample_interval_s": _seconds,
                           "baseline_s": _seconds},
        },
        "server": {
            "type": "object",
            "required": ["postgres", "embedded", "cpus", "platform"],
            "additionalProperties": False,
            "properties": {"postgres": {"type": "string"}, "embedded": {"type": "boolean"}, "cpus": _count,
                           "platform": {"type": "string"}},
        },
        "saturated": {"type": "boolean", "description": "some project's baseline was saturated: its numbers "
                                                       "measure the overload of the machine, not locks"},
        "projects": {"type": "array", "minItems": 1, "items": _project},
        "summary": {
            "type": "array",
            "description": "per project and kind of step, all its steps together",
            "items": {
                "type": "object",
                "required": ["project", "kind", "steps", "duration_s", "endpoints"],
                "additionalProperties": False,
                "properties": {
                    "project": {"type": "string"}, "kind": {"enum": ["risky", "safe"]}, "steps": _count,
                    "duration_s": _seconds,
                    "endpoints": {"type": "object", "propertyNames": {"pattern": _endpoint_name},
                                  "additionalProperties": _summary_endpoint},
                },
            },
        },
    },
}

SUMMARY_FORMAT = "migrationlab-showdown-all/2"

_failed_counts = {
    "type": "object", "propertyNames": {"pattern": _endpoint_name},
    "additionalProperties": _closed({"failures": _count, "requests": _count}),
}

# `showdown all`'s summary.json: a row per step of every scenario that finished, and each scenario's status.
SUMMARY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "migrationlab showdown all: summary",
    "type": "object",
    "required": ["format", "rows", "settings", "started_at", "wall_s", "interrupted", "saturated", "overloaded",
                 "not_recovered", "scenarios", "steps", "goal"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": SUMMARY_FORMAT},
        "rows": {"type": "integer", "minimum": 1},
        "settings": _closed({"rate_per_s": _seconds, "timeout_s": _seconds, "long_query_s": _seconds_or_null}),
        "started_at": {"type": "string", "description": "UTC, ISO 8601"},
        "wall_s": _seconds,
        "interrupted": {"type": "boolean", "description": "Ctrl-C ended the run: the summary of what finished"},
        "saturated": {"type": "boolean", "description": "some project's numbers measure overload, not locks"},
        "overloaded": {"type": "array", "items": {"type": "string"},
                       "description": "per project with a saturated baseline, the reasons (its report's saturation)"},
        "not_recovered": {"type": "array", "items": {"type": "string"},
                          "description": "per project whose API did not come back to its baseline latency after a "
                                         "step (and whose baseline was not saturated): overload, or a step that "
                                         "left the API slower for good"},
        "scenarios": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["scenario", "projects", "status", "reason", "folder", "wall_s"],
                "additionalProperties": False,
                "properties": {
                    "scenario": {"type": "integer", "minimum": 1},
                    "projects": {"type": "array", "items": {"type": "string"}},
                    "status": {"enum": ["done", "failed", "interrupted", "not run"]},
                    "reason": {"type": "string", "description": "why it failed, in one line"},
                    "folder": {"type": "string", "description": "its results, relative to the summary"},
                    "wall_s": _seconds,
                    "report": {"type": "string"},
                    "chart": {"type": "string"},
                },
            },
        },
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["scenario", "project", "referenced_table", "migration", "kind", "duration_s", "failed",
                             "longest_stall_s", "longest_stall_endpoint", "backlog_after_step_s", "strongest_lock",
                             "claimed", "observed", "as_claimed", "goal_met", "goal", "overloaded", "not_recovered",
                             "verdict"],
                "additionalProperties": False,
                "properties": {
                    "scenario": {"type": "integer", "minimum": 1},
                    "project": {"type": "string"},
                    "referenced_table": {"type": ["string", "null"]},
                    "migration": {"type": "string"},
                    "kind": {"enum": ["risky", "safe"]},
                    "duration_s": _seconds,
                    "failed": _failed_counts,
                    "longest_stall_s": _seconds,
                    "longest_stall_endpoint": {"type": "string", "pattern": _endpoint_name},
                    "backlog_after_step_s": _seconds,
                    "strongest_lock": {
                        "type": ["object", "null"], "required": ["relation", "mode", "held_s", "waited_s"],
                        "additionalProperties": False,
                        "properties": {"relation": {"type": "string"}, "mode": _lock["properties"]["mode"],
                                       "held_s": _seconds, "waited_s": _seconds},
                    },
                    "claimed": _step["properties"]["claimed"],
                    "observed": _step["properties"]["observed"],
                    "as_claimed": {"type": "boolean"},
                    "goal_met": {"type": "boolean", "description": "risky: stalled the API >= 0.5 s; safe: failed "
                                                                  "no request"},
                    "goal": {"type": "string"},
                    "overloaded": {"type": "boolean", "description": "its project's baseline was saturated"},
                    "not_recovered": {"type": "boolean",
                                      "description": "its project's API did not come back to baseline latency"},
                    "verdict": {"type": "string"},
                },
            },
        },
        "goal": _closed({"risky_steps": _count, "risky_did_harm": _count, "safe_steps": _count,
                         "safe_failed_nothing": _count, "missed": {"type": "array", "items": {"type": "string"}}}),
    },
}


def main(argv: list[str]) -> int:
    if argv not in ([], ["--summary"]):
        print("usage: python -m migrationlab.showdown.schema [--summary]", file=sys.stderr)
        return 2
    print(json.dumps(SUMMARY_SCHEMA if argv else REPORT_SCHEMA, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
