"""What tests/conftest.py reads from the fixtures, on the suite itself: which tests need PostgreSQL (`make check`
leaves them out) and which share a worker (`make test`)."""

from __future__ import annotations

import pytest

from tests.conftest import work_units


class Collected:
    """A plugin that keeps the items of a collection."""

    items: list[pytest.Item] = []

    def pytest_collection_finish(self, session):
        self.items = list(session.items)


@pytest.fixture(scope="module")
def suite() -> dict[str, pytest.Item]:
    collected = Collected()
    assert pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "tests"], plugins=[collected]) == 0
    return {item.nodeid: item for item in collected.items}


def named(suite, start: str) -> list[str]:
    return [nodeid for nodeid in suite if nodeid.startswith(start)]


def test_a_test_is_marked_postgres_when_one_of_its_fixtures_starts_it(suite):
    marked = {nodeid for nodeid, item in suite.items() if item.get_closest_marker("postgres")}
    assert {nodeid for nodeid, item in suite.items() if "pg" in item.fixturenames} <= marked  # database, seeded too
    assert "tests/test_cli.py::test_up_manage_down_round_trip" in marked  # the CLI's lab: cli_lab
    assert set(named(suite, "tests/test_docs.py::test_the_pages_lab_commands_run_in_order")) <= marked
    assert "tests/test_releases.py::test_the_lab_serves_deploys_and_runs_manage_as_a_release" in marked  # own_lab
    # The CLI's environment, lab_env's variables and a fresh folder start nothing.
    assert not set(named(suite, "tests/test_cli.py::test_bad_input")) & marked
    assert not set(named(suite, "tests/test_showdown.py::test_bad_input")) & marked
    assert not set(named(suite, "tests/test_docker_path.py::test_compose_file_follows")) & marked


def test_tests_that_share_a_module_fixture_share_a_worker_and_the_others_do_not(suite):
    units = work_units(list(suite.values()))
    unit_of = lambda nodeids: {units[nodeid] for nodeid in nodeids}  # noqa: E731
    for fixture, module in (("served", "test_showdown"), ("both_paths", "test_proj07"), ("shop", "test_judge"),
                            ("measured", "test_catalog"), ("server", "test_endpoints")):
        users = [nodeid for nodeid in named(suite, f"tests/{module}.py") if fixture in suite[nodeid].fixturenames]
        assert len(users) > 1 and len(unit_of(users)) == 1, fixture
    # Per parameter: one judgement per project, for the three tests of that project.
    judged = [nodeid for nodeid in named(suite, "tests/test_lessons.py") if "judged" in suite[nodeid].fixturenames]
    projects = {suite[nodeid].callspec.params["judged"] for nodeid in judged}
    assert len(unit_of(judged)) == len(projects) > 1
    # A test whose fixtures are its own, or the worker's session (pg), is a unit of its own.
    alone = named(suite, "tests/test_projects.py")
    assert all(units[nodeid] == nodeid for nodeid in alone)
