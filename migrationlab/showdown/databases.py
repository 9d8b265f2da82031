"""Where a showdown's databases live: scratch databases (migrationlab/databases.py), one per project's run, named
`showdown_<project>_<random>`."""

from __future__ import annotations

from migrationlab.databases import ScratchDatabases
from migrationlab.scenarios import Project


class ShowdownDatabases(ScratchDatabases):
    def create(self, project: Project) -> tuple[str, str]:
        """A new, empty database for one project's run: (name, URL)."""
        return super().create(project.name)
