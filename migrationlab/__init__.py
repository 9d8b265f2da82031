"""migrationlab: what every risky-migrations project shares, and the lab CLI (`python -m migrationlab`)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
