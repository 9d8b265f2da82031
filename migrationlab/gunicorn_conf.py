"""gunicorn settings shared by every project, on the lab and in the container alike.

Threads, so that a request stuck behind a migration's lock does not stop the others from being served (that is
the point of the demo: the database blocks, not the web server).
"""

import os

worker_class = "gthread"
workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "16"))
# A worker busy with blocked requests is not dead: keep it (the heartbeat runs on its own thread).
timeout = 120
graceful_timeout = 5
accesslog = os.environ.get("WEB_ACCESS_LOG") or None
errorlog = "-"
# gunicorn >= 25.1 opens a control socket at ~/.gunicorn/gunicorn.ctl: one path shared by every project's server
# (each start would take it over from the others), and nothing here uses it.
control_socket_disable = True
loglevel = "info"
# Each request's queries give up after 5 s: a request queued behind a migration ends as a 503 instead of
# piling up (the curl loop gives up at 3 s anyway). Migrations run through manage.py, without this.
raw_env = [
    f"MIGRATIONLAB_STATEMENT_TIMEOUT_MS={os.environ.get('WEB_STATEMENT_TIMEOUT_MS', '5000')}",
    "MIGRATIONLAB_APPLICATION_NAME=web",
]
