"""`python -m migrationlab watch`: the live view for the stage, beside the migration's terminal.

    watch PROJECT                                   the lab: the project's server and lab database
    watch --url http://127.0.0.1:8010 --database-url postgresql://postgres:postgres@127.0.0.1:5410/risky_migrations
                                                    the Docker path (or any server and database)

It sends the curl loop's requests (GET /list_large/ and /update_order/, one connection each, given up after
--timeout seconds) at --rate requests per second to each endpoint, whatever became of the earlier ones (the
showdown's open-loop probe), samples pg_locks (the showdown's lock sampler) and pg_stat_activity with the
progress views (sources.py), and redraws the screen (screen.py) 5 times a second. Every request finished goes to
the log file as the curl loop prints it. Ctrl-C leaves one line: requests, failures, longest outage.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg2

from migrationlab.errors import LabError
from migrationlab.showdown.clock import Clock
from migrationlab.databases import redacted
from migrationlab.showdown.probe import Probe, Request, Target
from migrationlab.processes import interrupts_deferred
from migrationlab.showdown.sampler import LockSampler
from migrationlab.watch.model import WatchState
from migrationlab.watch.screen import render
from migrationlab.watch.sources import ActivityPoller

ENDPOINTS = ("list_large", "update_order")  # the curl loop's, in its order
REFRESH_PER_S = 5  # the brief: at least 4
SAMPLE_INTERVAL_S = 0.1
KEEP_SAMPLES = 50  # the screen shows the latest lock sample; a long watch must not keep them all
STALE_AFTER_S = 2.0  # no lock sample or activity this long: the screen says the database is not answering


@dataclass(frozen=True)
class Config:
    title: str
    host: str
    port: int
    base_path: str
    api_url: str
    database_url: str
    log: Path
    rate_per_s: float
    timeout_s: float


def log_line(request: Request, finished_wall: float) -> str:
    """The curl loop's line for one request: `[HH:MM:SS] list_large: ✅ SUCCESS 0.012345s`."""
    code = "000" if request.status is None else f"{request.status:03d}"
    verdict = f"❌ FAILED ({code}, blocked by migration)" if request.failed else "✅ SUCCESS"
    stamp = time.strftime("%H:%M:%S", time.localtime(finished_wall))
    return f"[{stamp}] {request.endpoint}: {verdict} {request.latency_s:.6f}s"


def _check_url(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise LabError(f"--url must be an http:// address like http://127.0.0.1:8010, got '{url}'")
    try:
        port = parts.port or 80
    except ValueError:
        raise LabError(f"--url has no valid port: '{url}'") from None
    try:
        host = socket.gethostbyname(parts.hostname)
    except OSError:
        raise LabError(f"--url names a host that cannot be found: '{parts.hostname}'") from None
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as failure:
        reason = failure.strerror or type(failure).__name__
        raise LabError(f"nothing answers at {url} ({reason.lower()}): is the project's web server running?") from None
    return host, port, parts.path.rstrip("/")


def _check_database_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise LabError(f"--database-url must start with postgresql:// (got '{redacted(url)}')")
    if not parts.path.strip("/"):
        raise LabError("--database-url must name the project's database, e.g. "
                       "postgresql://postgres:postgres@127.0.0.1:5410/risky_migrations")


def title_for(port: int, database_url: str) -> str:
    """The project whose web port this is (each project has its own: 8010, 8011, ...), else the database's name."""
    from migrationlab.scenarios import all_projects

    named = [project.name for project in all_projects() if project.web_port == port]
    return named[0] if named else urlsplit(database_url).path.strip("/")


def resolve(args) -> Config:
    """The API and the database to watch, from PROJECT (the lab) and/or --url and --database-url."""
    from migrationlab import lab
    from migrationlab.scenarios import get_project

    if not 0 < args.rate <= 100:
        raise LabError(f"--rate must be more than 0 and at most 100 requests per second, got {args.rate:g}")
    if not 0 < args.timeout <= 60:
        raise LabError(f"--timeout must be more than 0 and at most 60 seconds, got {args.timeout:g}")
    project = get_project(args.project) if args.project else None
    api_url, database_url = args.url, args.database_url
    if project is None and not (api_url and database_url):
        raise LabError("say what to watch: a project of the lab (watch PROJECT), or --url and --database-url "
                       "(the Docker path)")
    if project is not None and not (api_url and database_url):
        if not database_url:
            database_url = lab.lab_database(project).dsn(project.name)
        if not api_url:
            if lab.server_pid(project) is None:
                raise LabError(f"{project.name} is not served by the lab; start it with: "
                               f"{lab.cli_command()} up {project.name}")
            api_url = f"http://127.0.0.1:{lab.served_port(project) or project.web_port}"
    _check_database_url(database_url)
    host, port, base_path = _check_url(api_url)
    title = project.name if project is not None else title_for(port, database_url)
    return Config(title=title, host=host, port=port, base_path=base_path, api_url=api_url.rstrip("/"),
                  database_url=database_url, log=Path(args.log), rate_per_s=args.rate, timeout_s=args.timeout)


def _where(config: Config) -> str:
    """`API :8010 · db :5400` (host names only where they are not this machine)."""
    database = urlsplit(config.database_url)
    api_host = "" if config.host.startswith("127.") else config.host
    local = database.hostname in (None, "localhost") or database.hostname.startswith("127.")
    db_host = "" if local else database.hostname
    return f"API {api_host}:{config.port} · db {db_host}:{database.port or 5432}"


class _Stop(Exception):
    """SIGTERM or SIGHUP (the terminal closed): end as Ctrl-C does."""


def _raise_stop(signum, frame):
    raise _Stop()


def watch(config: Config, console=None) -> str:
    """Run until Ctrl-C (or SIGTERM/SIGHUP); return the summary line."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    clock = Clock()
    wall_origin = time.time() - clock.now()
    sampler = LockSampler(config.database_url, [], clock, interval_s=SAMPLE_INTERVAL_S, keep=KEEP_SAMPLES)
    poller = ActivityPoller(config.database_url, clock, on_tables=lambda tables: setattr(sampler, "tables", tables))
    probe = Probe(clock, rate_per_s=config.rate_per_s, timeout_s=config.timeout_s)
    for name in ENDPOINTS:
        probe.add_target(Target(name, config.host, config.port, "GET", f"{config.base_path}/{name}/"))
    state = WatchState(list(ENDPOINTS), config.timeout_s, config.title, _where(config), str(config.log))
    config.log.parent.mkdir(parents=True, exist_ok=True)
    log = open(config.log, "w", encoding="utf-8")
    written = 0
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}

    def take_requests() -> None:
        nonlocal written
        new = probe.records(since=written)
        written += len(new)
        for request in new:
            log.write(log_line(request, wall_origin + request.sent_s + request.latency_s) + "\n")
        log.flush()
        state.add_requests(new)

    try:
        poller.start()
        sampler.start()
        probe.start()
        with Live(console=console, screen=True, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            due = time.monotonic()
            while True:
                take_requests()
                now = clock.now()
                sample, activity = sampler.latest(), poller.latest()
                problem = None
                if (activity is None or now - activity.at_s > STALE_AFTER_S) and poller.last_error:
                    problem = f"database: {poller.last_error}"
                elif (sample is None or now - sample.at_s > STALE_AFTER_S) and sampler.last_error:
                    problem = f"database: {sampler.last_error}"
                state.observe(now, time.strftime("%H:%M:%S", time.localtime(wall_origin + now)),
                              probe.in_flight(), sample, activity, problem)
                live.update(render(state.screen(), config.timeout_s), refresh=True)
                due = max(due + 1 / REFRESH_PER_S, time.monotonic())  # on schedule; late: the next one at once
                time.sleep(max(0.0, due - time.monotonic()))
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        with interrupts_deferred():
            probe.stop(drain=False)
            sampler.stop()
            poller.stop()
            take_requests()
            log.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return state.summary()


def main(args) -> int:
    """The `watch` subcommand: bad input is one line and exit 2; Ctrl-C is the summary line and exit 0."""
    from migrationlab.scenarios import ScenarioError

    try:
        config = resolve(args)
    except (ScenarioError, LabError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    except psycopg2.OperationalError as problem:
        print(f"error: database: {str(problem).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    try:
        summary = watch(config)
    except psycopg2.Error as problem:
        text = str(problem).strip()
        print(f"error: cannot watch {redacted(config.database_url)}: {text.splitlines()[0] if text else problem}",
              file=sys.stderr)
        return 2
    except OSError as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    print(summary)
    return 0
