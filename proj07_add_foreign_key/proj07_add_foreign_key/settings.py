"""Settings come from migrationlab (shared by every project) and the environment: see .env.example."""
from migrationlab.settings import project_settings

globals().update(project_settings(__file__))
