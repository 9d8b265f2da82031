# One image recipe for every project; each project's docker-compose.yml builds it with PROJECT=<its folder>:
#   docker build --build-arg PROJECT=proj01_add_not_null_constraint -t proj01_add_not_null_constraint .
# The image holds the runtime only (requirements/runtime.txt): no embedded PostgreSQL, no lab extras.
FROM python:3.11-slim-bookworm

# /app plays the repo root: migrationlab finds the project beside itself (REPO_ROOT = parent of migrationlab/).
ENV PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# A fixed uid/gid, so file ownership and security policies (runAsNonRoot) do not depend on build order. A real
# home: gunicorn (>= 25.1) puts its control socket in ~/.gunicorn unless XDG_RUNTIME_DIR is set.
RUN groupadd --system --gid 10001 lab \
    && useradd --system --uid 10001 --gid lab --create-home --home-dir /home/lab --shell /usr/sbin/nologin lab

WORKDIR /app
# Dependencies first, and before the project is named: everything up to here is the same for all fourteen projects,
# so this layer is built (and downloaded) once and every project's image reuses it from the cache. An ARG or ENV
# PROJECT above this point would give each project its own copy (a RUN's cache key includes the build args in scope).
COPY requirements/runtime.txt requirements/runtime.txt
RUN pip install --no-cache-dir -r requirements/runtime.txt

ARG PROJECT
# A missing build arg would otherwise give an image that only fails when it starts.
RUN test -n "$PROJECT" || { echo "build with --build-arg PROJECT=<project folder>" >&2; exit 1; }
ENV PROJECT=${PROJECT}

COPY migrationlab/ migrationlab/
COPY ${PROJECT}/ ${PROJECT}/

USER 10001:10001
# The project folder, so that `docker compose exec web python manage.py ...` works as in the talk.
WORKDIR /app/${PROJECT}
EXPOSE 8000

# The lab's own command: wait for the database, migrate demoapp to the scenario's start migration (never a lesson
# step), then exec gunicorn. CMD cannot expand a build arg, hence sh; `exec` keeps python as PID 1 for signals.
# docker-compose.yml spells the same command out literally.
CMD ["/bin/sh", "-c", "exec python -m migrationlab serve \"$PROJECT\" --bind 0.0.0.0:8000"]
