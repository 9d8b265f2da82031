"""The whole showdown, start to finish.

For each project of the scenario: a database of its own (created here, dropped afterwards), migrated to the
start migration and seeded; gunicorn on a free port, started through `python -m migrationlab serve` like the
lab and the container; the lock sampler and the API probe; a warm-up, a baseline; then each step of
scenario.toml with `manage.py migrate demoapp STEP`, its actors started just before it. Then the report, the
table, the chart.

A project whose lesson spans releases (migrationlab/releases.py) starts serving its start release. A step's
previous_release actor keeps the release before the step's own serving (and probed) while the step migrates;
after the last step of a release, that release is deployed, blue-green: started beside the one in use, the probe's
endpoints moved over to it, the old server stopped once its last requests are answered, so the deploy itself
refuses no request. The previous_release actor stops with its step; the step's window ends after the deploy.

Ctrl-C or an error at any point stops what runs (probe, sampler, actors, web servers), drops the databases the
showdown created and, if it started the embedded PostgreSQL, stops it again; the lab is left as it was.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from migrationlab import lab
from migrationlab.databases import checkpoint
from migrationlab.errors import LabError
from migrationlab.scenarios import Actor, Project, projects_of_scenario
from migrationlab.showdown import chart
from migrationlab.showdown.actors import PREVIOUS_RELEASE, PreviousRelease, make_actor
from migrationlab.showdown import analysis
from migrationlab.showdown.analysis import MIGRATION_APPLICATION, Window
from migrationlab.showdown.clock import Clock
from migrationlab.showdown.console import Ticker, live_status
from migrationlab.showdown.databases import ShowdownDatabases
from migrationlab.showdown.probe import Probe, Request, Target
from migrationlab.serving import free_port
from migrationlab.processes import interrupts_deferred
from migrationlab.showdown.report import (
    ProjectRun, Settings, StepRun, build_report, render_project, render_summary, write_json, write_requests_csv,
)
from migrationlab.showdown.sampler import LockSampler

DEFAULT_RATE_PER_S = 20.0
DEFAULT_TIMEOUT_S = 3.0  # like the talk's curl loop (--max-time 3)
BASELINE_S = 3.0
WARMUP_S = 2.0  # a fresh gunicorn's first requests (lazy imports, first connections) are not its normal
# After the last step, probe on for at least AFTER_S, and until RECOVERED_AFTER answers in a row of each endpoint
# came back within the normal latency (a server that queued requests for seconds needs a while to catch up),
# but no longer than AFTER_AT_MOST_S.
AFTER_S = 2.0
RECOVERED_AFTER = 10
AFTER_AT_MOST_S = 120.0
SAMPLE_INTERVAL_S = 0.025  # the brief: at most 50 ms
ENDPOINTS = (("list_large", "GET"), ("update_order", "POST"))
# The same read and write on the table the large one refers to, in a project that has one (scenario.toml's
# referenced_table).
REFERENCED_ENDPOINTS = (("list_referenced", "GET"), ("update_referenced", "POST"))


@dataclass(frozen=True)
class Options:
    selector: str  # a scenario number or a project name
    rows: int
    rate_per_s: float = DEFAULT_RATE_PER_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    out_dir: Path | None = None
    database_url: str | None = None
    long_query_s: float | None = None  # a report of this many seconds beside every step (--long-query)
    postgres: int | None = None  # the embedded server's major (--postgres; None: databases.postgres_major())
    baseline_s: float = BASELINE_S
    warmup_s: float = WARMUP_S
    sample_interval_s: float = SAMPLE_INTERVAL_S
    progress: str = ""  # before every status line, e.g. "[3/10 scenario 3] " (showdown all)


@dataclass(frozen=True)
class Outcome:
    report: dict
    out_dir: Path
    report_path: Path
    chart_path: Path


def output_folder(options: Options, scenario: int) -> Path:
    label = f"{scenario:02d}" if options.selector.isdigit() else options.selector
    folder = options.out_dir or Path.cwd() / f"showdown-{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        (folder / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise LabError(f"cannot write the results to {folder}: {problem.strerror or problem}") from None
    return folder


def run(options: Options, say=print, projects: list[Project] | None = None,
        databases: ShowdownDatabases | None = None) -> Outcome:
    """One scenario: its projects (by default those of options.selector), on `databases` if given (showdown all
    shares one), else on a ShowdownDatabases of its own."""
    projects = projects or projects_of_scenario(options.selector)
    scenario = projects[0].scenario
    started_at = datetime.now(timezone.utc)
    with ExitStack() as server:
        if databases is None:
            databases = server.enter_context(ShowdownDatabases(options.database_url, postgres=options.postgres))
        out = output_folder(options, scenario)  # once the server is known good: no empty folder for a bad URL
        say(f"Showdown, scenario {scenario}: {', '.join(p.name for p in projects)}")
        say(f"  {options.rows:,} rows; {options.rate_per_s:g} requests/s to each endpoint, each giving up after "
            f"{options.timeout_s:g} s; locks sampled every {options.sample_interval_s * 1000:.0f} ms; results in {out}")
        say(f"  PostgreSQL {databases.server_version}: {databases.description}")
        if options.long_query_s:
            say(f"  beside every step: a report query holding the large table for {options.long_query_s:g} s")
        runs = [run_project(project, databases, options, out, say) for project in projects]
        server_version, embedded = databases.server_version, options.database_url is None
    settings = Settings(options.rows, options.rate_per_s, options.timeout_s, options.sample_interval_s,
                        options.baseline_s)
    report = build_report(scenario, settings, runs, server_version, embedded, started_at)
    report_path, chart_path = out / "report.json", out / "chart.png"
    write_json(report, report_path)
    write_requests_csv(runs, out / "requests.csv")
    chart.render(report, {run.project.name: run.requests for run in runs}, chart_path)
    say("")
    for project in report["projects"]:
        say(render_project(project, options.rate_per_s))
        say("")
    say(render_summary(report))
    say(f"\nchart:  {chart_path}\nreport: {report_path}  (every request: {out / 'requests.csv'})")
    return Outcome(report, out, report_path, chart_path)


def _actors_of(step, options: Options) -> tuple[Actor, ...]:
    """The step's own actors, and with --long-query a report on the large table started just before it."""
    if options.long_query_s and not any(actor.kind == "long_query" for actor in step.actors):
        return (*step.actors, Actor(kind="long_query", seconds=options.long_query_s))
    return step.actors


def _targets(project: Project, port: int, rows: int, prefix: str = "", referenced_port: int | None = None
             ) -> list[Target]:
    """The two endpoints. A write names no row, as the talk's curl loop does: the endpoint updates a random row that
    exists (a step that deletes rows, proj10's, must not turn the probe's writes into 404s of rows it deleted).
    Reads send the project's read_query, if it has one (a lookup that an index serves), writes its write_query (an
    insert). In a project with a referenced table, its read and write as well, on `referenced_port` if given."""
    reads, writes = ENDPOINTS
    targets = [Target(f"{prefix}{reads[0]}", "127.0.0.1", port, reads[1], f"/{reads[0]}/",
                      rows if project.read_query else 0, project.read_query),
               Target(f"{prefix}{writes[0]}", "127.0.0.1", port, writes[1], f"/{writes[0]}/",
                      rows if project.write_query else 0, project.write_query)]
    if project.referenced_table:
        (reads, read_method), (writes, write_method) = REFERENCED_ENDPOINTS
        port = referenced_port or port
        targets += [Target(f"{prefix}{reads}", "127.0.0.1", port, read_method, f"/{reads}/"),
                    Target(f"{prefix}{writes}", "127.0.0.1", port, write_method, f"/{writes}/")]
    return targets


def _tables(project: Project) -> list[str]:
    """The tables whose locks are sampled and reported."""
    return [project.large_table, project.small_table, *([project.referenced_table] if project.referenced_table else [])]


def _baseline_saturation(probe: Probe, clock: Clock, baseline: Window) -> dict:
    """analysis.saturation of the baseline as it stands when it ends: a request still hanging counts as taking
    as long as it has so far (on a saturated server, most of the baseline's requests are still hanging)."""
    now = clock.now()
    requests = probe.records() + [Request(name, sent, now - sent, 200, None) for name, sent in probe.in_flight()]
    return analysis.saturation({name: analysis.endpoint_stats([r for r in requests if r.endpoint == name], baseline, [])
                                for name in {r.endpoint for r in requests}})


def _until_recovered(probe: Probe, clock: Clock, baseline: Window, say, at_least_s: float = AFTER_S,
                     what: str = "after the last step", progress: str = "", at_most_s: float = AFTER_AT_MOST_S
                     ) -> tuple[Window, bool]:
    """Probe on until the API answers normally again (after the last step, and between steps: a backlog left by
    one step must not be counted against the next), at most `at_most_s`; the window it took, and whether it did
    answer normally."""
    start = clock.now()
    earlier = len(probe.records())
    # The project's own endpoints (a previous release started by a step has no baseline: it is not waited for).
    probed = {name for name, _ in ENDPOINTS} | {r.endpoint for r in probe.records() if r.sent_s in baseline}
    normal = {name: analysis.normal_latency([r for r in probe.records() if r.endpoint == name and r.sent_s in baseline])
              for name in sorted(probed)}

    def recovered() -> bool:  # checked at every send and answer: looks at the latest answers only
        if clock.now() - start < at_least_s:
            return False
        latest: dict[str, list] = {name: [] for name in normal}
        for request in reversed(probe.records(since=earlier)):
            answers = latest.get(request.endpoint)
            if answers is not None and len(answers) < RECOVERED_AFTER and request.sent_s >= start:
                answers.append(request)
                if all(len(answers) == RECOVERED_AFTER for answers in latest.values()):
                    break
        return all(len(answers) == RECOVERED_AFTER and not any(r.failed or r.latency_s > normal[name] for r in answers)
                   for name, answers in latest.items())

    with Ticker(lambda: progress + live_status(what, start, earlier, clock, probe, None)):
        back = probe.wait_until(recovered, at_most_s)
    if not back:
        say(f"  (the API had not recovered {at_most_s:.0f} s {what})")
    return Window(start, clock.now()), back


def _end_of_step(project: Project, url: str, step, serving: tuple[int, str], previous_releases: list,
                 probe: Probe, clock: Clock, options: Options, cleanup: ExitStack, say):
    """After a step's migration: the release it completes, if any, deployed blue-green (a gunicorn of it beside the
    one in use; once it answers, the probe's endpoints move over to it), and at that same moment the previous
    release's servers (the step's previous_release actors) get no more requests. Returns once the servers left
    behind answered their last requests (a request gives up after the timeout anyway): the main server now in use
    (port, instance), the deploy (None if none), and what stops the servers left behind (nothing is cut off)."""
    retiring = [(actor.port, actor.stop) for actor in previous_releases]
    release, deploy = project.deployed_after(step), None
    if release is not None:
        migrated_s = clock.now()
        old_port, old_instance = serving
        port, instance = free_port(), f"{old_instance.split('-release-')[0]}-release-{release}"
        lab.start_web(project, url, port, instance=instance, extra_env=project.release_env(release))
        cleanup.callback(lab.stop_web, project, instance=instance)
        probe.redirect(old_port, port)
        retiring.append((old_port, lambda: lab.stop_web(project, instance=old_instance)))
        deploy = {"release": release, "migrated_s": round(migrated_s, 3), "deployed_s": round(clock.now(), 3)}
        serving = (port, instance)
    for actor in previous_releases:
        probe.redirect(actor.port, None)
    probe.wait_until(lambda: not any(probe.in_flight_to(port) for port, _ in retiring), options.timeout_s + 1)
    if release is not None:
        say(f"  deployed release {release}: gunicorn on 127.0.0.1:{serving[0]}; the probe moved over to it")
    return serving, deploy, [stop for _, stop in retiring]


def run_project(project: Project, databases: ShowdownDatabases, options: Options, out: Path, say) -> ProjectRun:
    cleanup = ExitStack()
    try:
        database, url = databases.create(project)
        cleanup.callback(databases.drop, database)
        say(f"\n== {project.name}: database {database}, migrating to {project.start}")
        lab.prepare(project, url)
        seeding_started = time.monotonic()
        if lab.run_manage(project, url, ["seed_large_table", "--large-count", str(options.rows)]).returncode != 0:
            raise LabError(f"seeding {project.name} failed")
        seed_s = time.monotonic() - seeding_started
        checkpoint(url, say)

        instance = database  # the web server's pid and log files in the lab home: named like the database
        port = free_port()
        lab.start_web(project, url, port, instance=instance, extra_env=project.release_env(project.start_release))
        cleanup.callback(lab.stop_web, project, instance=instance)
        release = f", release {project.start_release}" if project.start_release else ""
        say(f"  web: gunicorn on 127.0.0.1:{port}{release} (log {lab.log_file(project, instance)})")
        serving = (port, instance)  # the main server in use: changes when a release is deployed
        referenced_port = None
        if project.referenced_table:
            # A server of their own for the referenced table's endpoints: while orders are locked, every thread of
            # the first server soon waits on orders, and customers' requests would queue for a thread, not for a
            # lock. This one measures what PostgreSQL makes customers' reads and writes wait for.
            referenced_instance, referenced_port = f"{instance}-referenced", free_port()
            lab.start_web(project, url, referenced_port, instance=referenced_instance)
            cleanup.callback(lab.stop_web, project, instance=referenced_instance)
            say(f"  web for {project.referenced_table}'s endpoints: gunicorn on 127.0.0.1:{referenced_port} "
                f"(log {lab.log_file(project, referenced_instance)})")

        clock = Clock()
        sampler = LockSampler(url, _tables(project), clock, options.sample_interval_s)
        sampler.start()
        cleanup.callback(sampler.stop)
        probe = Probe(clock, options.rate_per_s, options.timeout_s)
        for target in _targets(project, port, options.rows, referenced_port=referenced_port):
            probe.add_target(target)
        probe.start()
        cleanup.callback(probe.stop, drain=False)
        actors: list = []

        def stop_actors() -> None:
            for actor in reversed(actors):
                actor.stop()

        cleanup.callback(stop_actors)

        time.sleep(options.warmup_s)  # pacing the measurement, not waiting for anything
        baseline_start, baseline_first = clock.now(), len(probe.records())
        with Ticker(lambda: options.progress + live_status("baseline", baseline_start, baseline_first, clock, probe,
                                                           sampler)):
            time.sleep(options.baseline_s)
        baseline = Window(baseline_start, clock.now())
        # A saturated baseline: the run goes on, every number flagged (docs/showdown.md), but does not wait for the
        # API to answer normally again after a step: it did not to begin with.
        overloaded = _baseline_saturation(probe, clock, baseline)
        if overloaded["baseline"]:
            say("  " + analysis.overload_warning(overloaded, options.rate_per_s))  # now, and first in the report
        at_most_s = AFTER_S if overloaded["baseline"] else AFTER_AT_MOST_S
        not_recovered: list[str] = []

        steps = []
        for step in project.steps:
            started_actors, first_actor = [], len(actors)
            for number, spec in enumerate(_actors_of(step, options), start=1):
                actor = make_actor(spec, project, url, instance=f"{instance}-{spec.kind}-{number}")
                actors.append(actor)  # before start(): one that fails half-way is stopped too
                actor.start()
                if isinstance(actor, PreviousRelease):
                    for target in _targets(project, actor.port, options.rows, prefix=f"{PREVIOUS_RELEASE}/"):
                        probe.add_target(target)
                started_actors.append((spec.kind, actor.describe()))
                say(f"  started {actor.describe()}")
            if any(isinstance(actor, PreviousRelease) for actor in actors[first_actor:]):
                time.sleep(options.warmup_s)  # a fresh gunicorn's first requests are not its normal (as above)
            start, first = clock.now(), len(probe.records())
            with Ticker(lambda: options.progress + live_status(step.migration, start, first, clock, probe, sampler)):
                done = lab.run_manage(project, url, ["migrate", "demoapp", step.migration], capture=True,
                                      extra_env={"MIGRATIONLAB_APPLICATION_NAME": MIGRATION_APPLICATION})
            window = Window(start, clock.now())
            log = Path("logs") / f"{project.name}.{step.migration}.txt"
            (out / log).write_text(done.stdout + done.stderr)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise LabError(f"{project.name}: migrate demoapp {step.migration} failed: {last} (output: {out / log})")
            # The previous release is gone once the step (and the deploy it may bring) is over.
            previous_releases = [actor for actor in actors[first_actor:] if isinstance(actor, PreviousRelease)]
            serving, deploy, stops = _end_of_step(project, url, step, serving, previous_releases, probe, clock,
                                                  options, cleanup, say)
            if deploy or previous_releases:  # the step's window takes them in
                window = Window(start, clock.now())
            for stop in stops:  # nothing is sent to them any more
                stop()
            steps.append(StepRun(step, window, str(log), started_actors, deploy))
            if step is not project.steps[-1]:  # let a backlog drain before the next step is measured
                settled, back = _until_recovered(probe, clock, baseline, say, at_least_s=0.0,
                                                 what="settling before the next step", progress=options.progress,
                                                 at_most_s=at_most_s)
                if not back and not overloaded["baseline"]:
                    not_recovered.append(f"within {settled.duration_s:.0f} s after {step.migration}")

        after, back = _until_recovered(probe, clock, baseline, say, progress=options.progress, at_most_s=at_most_s)
        if not back and not overloaded["baseline"]:
            not_recovered.append(f"within {after.duration_s:.0f} s after the last step")
        probe.stop(drain=not overloaded["baseline"])  # an overloaded server may take minutes to answer them all
        sampler.stop()
        wall_s = clock.now()
        samples = sampler.samples()
        gaps = [b.at_s - a.at_s for a, b in zip(samples, samples[1:])]
        return ProjectRun(
            project=project, database=database, seed_s=seed_s, baseline=baseline, steps=steps, after=after,
            requests=probe.records(), samples=samples, interval_s=options.sample_interval_s,
            probe={"sent": probe.sent, "answered": sum(r.status is not None for r in probe.records()),
                   "max_send_lag_s": round(probe.max_send_lag_s, 4), "cpu_s": round(probe.cpu_s, 3),
                   "cpu_share": round(probe.cpu_s / max(wall_s, 1e-9), 4)},
            sampler={"samples": len(samples), "interval_s": options.sample_interval_s,
                     "max_gap_s": round(max(gaps, default=0.0), 4), "errors": sampler.errors,
                     "cpu_s": round(sampler.cpu_s, 3)},
            not_recovered=not_recovered,
            # Seen when the baseline ended, counting the requests still hanging then: on an overloaded server
            # many of them are never answered before the probe stops (and so are not in `requests`).
            baseline_overload=overloaded["reasons"],
        )
    finally:
        with interrupts_deferred():
            cleanup.close()
