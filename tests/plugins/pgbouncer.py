"""A real PgBouncer (Debian's package) in transaction pooling mode, for the tests.

`PgBouncer(workdir, server_host, server_port).start()` writes an ini with a wildcard
database entry (so every per-test database is reachable through it), starts the bouncer on
a free loopback port as the embedded server's unprivileged OS user (PgBouncer refuses to
run as root) and waits until it accepts connections. `TEST_VIA_PGBOUNCER=1` makes the
postgres plugin route the data-API tests through one of these.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.embedded import _make_traversable, _server_user, free_port

__all__ = ["PgBouncer", "find_pgbouncer", "via_pgbouncer_requested"]


def via_pgbouncer_requested() -> bool:
    """True when `TEST_VIA_PGBOUNCER` asks for the data-API tests to go through PgBouncer."""
    return os.environ.get("TEST_VIA_PGBOUNCER", "").strip().lower() in ("1", "true", "yes", "on")


def find_pgbouncer() -> str | None:
    """The pgbouncer binary (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )


def _quote(value: str) -> str:
    # The userlist format: "name" "password", a literal quote doubled.
    return '"' + value.replace('"', '""') + '"'


class PgBouncer:
    """One pgbouncer process in front of one PostgreSQL server, transaction pooling."""

    def __init__(
        self,
        workdir: Path,
        server: DatabaseConfig,
        *,
        pool_size: int = 10,
        max_client_conn: int = 500,
    ) -> None:
        self.workdir = workdir
        self.server = server
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        """PgBouncer's own log."""
        return self.workdir / "pgbouncer.log"

    def version(self) -> str:
        """The first line of `pgbouncer --version`."""
        binary = find_pgbouncer()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
        return out.stdout.splitlines()[0].strip()

    def _write_files(self, port: int) -> Path:
        user = self.server.user or "postgres"
        target = f"host={self.server.host or '127.0.0.1'} port={self.server.port or 5432}"
        userlist = self.workdir / "userlist.txt"
        userlist.write_text(f"{_quote(user)} {_quote(self.server.password or '')}\n")
        ini = self.workdir / "pgbouncer.ini"
        ini.write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = {target}",
                    "",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {userlist}",
                    "pool_mode = transaction",
                    f"default_pool_size = {self.pool_size}",
                    f"max_client_conn = {self.max_client_conn}",
                    # Per-test databases come and go: let their pools and server
                    # connections go quickly.
                    "server_idle_timeout = 10",
                    "autodb_idle_timeout = 30",
                    "server_reset_query =",
                    f"logfile = {self.log_file}",
                    f"pidfile = {self.workdir / 'pgbouncer.pid'}",
                    "",
                ]
            )
        )
        return ini

    def start(self) -> PgBouncer:
        """Write the ini, start pgbouncer on a free loopback port, wait until it listens."""
        binary = find_pgbouncer()
        if binary is None:
            raise RuntimeError("pgbouncer is not installed (apt-get install pgbouncer)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        owner = _server_user()
        kwargs: dict[str, Any] = {}
        if owner is not None:
            _make_traversable(self.workdir)
            os.chown(self.workdir, *owner)
            kwargs.update(user=owner[0], group=owner[1], extra_groups=[])
        last = ""
        for _ in range(3):  # a free port can be taken between choosing and binding
            port = free_port()
            ini = self._write_files(port)
            for path in self.workdir.iterdir():
                if owner is not None:
                    os.chown(path, *owner)
            process = subprocess.Popen(
                [binary, "-q", str(ini)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=str(self.workdir),
                **kwargs,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                except OSError:
                    time.sleep(0.02)
                    continue
                self._process = process
                self.port = port
                return self
            if process.poll() is None:
                process.kill()
                process.wait(5)
            last = self.log_file.read_text()[-1500:] if self.log_file.exists() else ""
        raise RuntimeError(f"pgbouncer did not start:\n{last}")

    def config(self, server_config: DatabaseConfig) -> DatabaseConfig:
        """`server_config` (a database on the bouncer's server) reached through the bouncer."""
        if self.port is None:
            raise RuntimeError("pgbouncer is not running")
        return server_config.replace(host="127.0.0.1", port=self.port, pgbouncer=True)

    def stop(self) -> None:
        """Shut the bouncer down (SIGTERM: close every connection now)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
