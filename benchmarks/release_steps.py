"""The two-release lessons (proj02_rename_column, proj05_drop_column): each step's time, what the release still
serving answers after it, and how long a deploy takes.

    .venv/bin/python benchmarks/release_steps.py 2 --rows 1000000
    .venv/bin/python benchmarks/release_steps.py 5 --rows 1000000

A fresh database seeded at the start migration; every step is `migrate demoapp <step>`, timed inside Django (no
interpreter start-up). After each step the release still serving (the step's previous_release actor) and, after a
release's last step, the release then deployed, each send the API's read and write once, as their own code
(manage.py call_endpoints): the status codes are in the table.

The deploy line times what the lab's `up PROJECT --release N` does once the old server has stopped: a gunicorn of
the new release started, until it answers. After a risky step the release still serving fails from the migration's
commit until then: the failure window is at least the rest of the migration plus this. The showdown
(`python -m migrationlab showdown 2`) measures that window under traffic.
"""

import argparse
import time

from common import drop_database, fresh_database, machine, timed

from migrationlab import lab
from migrationlab.releases import answers_of
from migrationlab.scenarios import projects_of_scenario
from migrationlab.serving import free_port


def statuses(project, release: int, url: str, row_id: int) -> str:
    answers = answers_of(project, release, row_id, url)
    return f"release {release}: read {answers['list_large']}, write {answers['update_order']}"


def deploy_seconds(project, release: int, url: str) -> float:
    """A gunicorn of `release` started on a free port, until /list_large/ answers 200; then stopped again."""
    instance = f"bench-{project.name}-release-{release}"
    started = time.monotonic()
    lab.start_web(project, url, free_port(), instance=instance, extra_env=project.release_env(release))
    seconds = time.monotonic() - started
    lab.stop_web(project, instance=instance)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=["2", "5"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"machine: {machine()}; rows: {args.rows:,}")
    table = ["| project | step | kind | release | seconds | then the release still serving | then deployed |",
             "|---|---|---|---|---|---|---|"]
    for project in projects_of_scenario(args.scenario):
        url = fresh_database(f"bench_{project.name}")
        try:
            timed(project.name, url, f"call_command('migrate', 'demoapp', '{project.start}', verbosity=0)", echo=False)
            seconds, _ = timed(project.name, url, f"call_command('seed_large_table', large_count={args.rows})", echo=False)
            table.append(f"| {project.name} | seed {args.rows:,} rows | - | - | {seconds:.1f} | | |")
            row_id = (args.rows + 1) // 2
            for step in project.steps:
                seconds, _ = timed(project.name, url, f"call_command('migrate', 'demoapp', '{step.migration}')")
                serving = statuses(project, step.serving_release, url, row_id) if step.serving_release else ""
                release = project.deployed_after(step)
                deployed = ""
                if release is not None:
                    deployed = (f"{statuses(project, release, url, row_id)}; "
                                f"deploy {deploy_seconds(project, release, url):.1f} s")
                table.append(f"| {project.name} | {step.migration} | {step.kind} | {step.release} | {seconds:.2f} "
                             f"| {serving} | {deployed} |")
        finally:
            drop_database(f"bench_{project.name}")
    print("\n".join(table))


if __name__ == "__main__":
    main()
