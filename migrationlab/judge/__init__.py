"""`python -m migrationlab judge`: PostgreSQL's measured verdict on the migrations of any Django project."""
