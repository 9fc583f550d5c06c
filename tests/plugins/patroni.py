"""A real failover cluster for the `ha` tests: etcd and three Patroni-managed PostgreSQL nodes.

Debian's `patroni` (3.0) and `etcd-server` packages, and Debian's PostgreSQL 15 binaries
(`/usr/lib/postgresql/15/bin`, which Patroni 3.0 supports), all on free loopback ports in a
temporary folder. PostgreSQL refuses to run as root, so every process runs as the embedded
server's unprivileged OS user. Each process is started here and ended by its own pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coderunner_sql.embedded import _server_user, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCOPE = "crsql"


def missing() -> str | None:
    """Why the cluster cannot run here, or None."""
    for tool in ("patroni", "patronictl", "etcd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install patroni etcd-server)"
    if not (PG_BIN / "postgres").exists():
        return f"no PostgreSQL 15 binaries in {PG_BIN}"
    if os.geteuid() != 0:
        return "the cluster's processes run as another OS user: run as root"
    return None


def _node_config(
    name: str, pg_port: int, api_port: int, etcd_port: int, folder: Path, synchronous: bool
) -> str:
    return json.dumps(
        {
            "scope": SCOPE,
            "name": name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{api_port}",
                "connect_address": f"127.0.0.1:{api_port}",
            },
            "etcd3": {"hosts": f"127.0.0.1:{etcd_port}"},
            "bootstrap": {
                "dcs": {
                    # Short, so a failover takes seconds, not the default half minute.
                    "ttl": 10,
                    "loop_wait": 1,
                    "retry_timeout": 3,
                    "maximum_lag_on_failover": 1048576,
                    "synchronous_mode": synchronous,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_log_hints": "on",
                            "max_wal_senders": 10,
                            "max_replication_slots": 10,
                            "max_connections": 100,
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
                "pg_hba": [
                    "host replication replicator 127.0.0.1/32 trust",
                    "host all all 127.0.0.1/32 trust",
                    "local all all trust",
                ],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{pg_port}",
                "connect_address": f"127.0.0.1:{pg_port}",
                "data_dir": str(folder / f"{name}-data"),
                "bin_dir": str(PG_BIN),
                "pgpass": str(folder / f"{name}.pgpass"),
                "authentication": {
                    "replication": {"username": "replicator", "password": "rep"},
                    "superuser": {"username": "postgres", "password": "pg"},
                    "rewind": {"username": "postgres", "password": "pg"},
                },
                "parameters": {"unix_socket_directories": str(folder)},
            },
        }
    )


class PatroniCluster:
    """etcd plus three Patroni nodes; `url()` names all three for libpq to choose from."""

    def __init__(self, folder: Path, *, synchronous: bool = False) -> None:
        self.folder = folder
        self.synchronous = synchronous
        owner = _server_user()
        assert owner is not None
        self._uid, self._gid = owner
        self.etcd_port = free_port()
        self.nodes: dict[str, tuple[int, int]] = {}  # name -> (pg port, REST port)
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 (closed with the process)
        self._procs[name] = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._uid,
            group=self._gid,
            cwd=self.folder,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.folder)},
            start_new_session=True,
        )
        log.close()

    def start(self) -> PatroniCluster:
        """Start etcd and the three nodes; return once a leader and two replicas stream."""
        os.chown(self.folder, self._uid, self._gid)
        peer = free_port()
        self._spawn(
            "etcd",
            [
                "etcd",
                "--name=e1",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=e1=http://127.0.0.1:{peer}",
            ],
        )
        self._wait(lambda: self._http(self.etcd_port, "/version") is not None, 20, "etcd")
        for index in (1, 2, 3):
            name = f"n{index}"
            pg_port, api_port = free_port(), free_port()
            self.nodes[name] = (pg_port, api_port)
            config = self.folder / f"{name}.yml"
            config.write_text(
                _node_config(name, pg_port, api_port, self.etcd_port, self.folder, self.synchronous)
            )
            os.chown(config, self._uid, self._gid)
            self._spawn(name, ["patroni", str(config)])
            # One at a time: the first bootstraps, the others clone it.
            if index == 1:
                self._wait(lambda: self.leader() is not None, 60, "the first node to lead")
        self.wait_healthy()
        return self

    # -- state --------------------------------------------------------------------------

    @staticmethod
    def _http(port: int, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 (loopback)
                body = response.read()
        except Exception:
            return None
        try:
            return json.loads(body)
        except ValueError:
            return {}

    def member(self, name: str) -> dict[str, Any] | None:
        """Patroni's view of one node (`GET /patroni`), or None when it does not answer."""
        found = self._http(self.nodes[name][1], "/patroni")
        return found if isinstance(found, dict) else None

    def leader(self) -> str | None:
        """The node running as the primary, or None during a failover."""
        for name in self.nodes:
            state = self.member(name)
            if state and state.get("role") == "master" and state.get("state") == "running":
                return name
        return None

    def streaming(self) -> int:
        """How many replicas run on the leader's timeline, less than 1 MB behind it."""
        leader = self.leader()
        if leader is None:
            return 0
        cluster = self._http(self.nodes[leader][1], "/cluster") or {}
        members = cluster.get("members", [])
        timeline = next((m.get("timeline") for m in members if m.get("name") == leader), None)
        return sum(
            1
            for m in members
            if m.get("name") != leader
            and m.get("state") in ("running", "streaming")
            and m.get("timeline") == timeline
            and isinstance(m.get("lag"), int)
            and m["lag"] < 1 << 20
        )

    def url(self, *, target: str = "read-write", dbname: str = "postgres") -> str:
        """A multi-host URL over the three nodes, for libpq's target_session_attrs."""
        hosts = ",".join(f"127.0.0.1:{pg}" for pg, _ in self.nodes.values())
        return f"postgresql://postgres@{hosts}/{dbname}?target_session_attrs={target}"

    def node_url(self, name: str, dbname: str = "postgres") -> str:
        """One node's URL."""
        return f"postgresql://postgres@127.0.0.1:{self.nodes[name][0]}/{dbname}"

    # -- faults -------------------------------------------------------------------------

    def switchover(self) -> str:
        """A planned switchover (patronictl), to the node Patroni finds fit (in synchronous
        mode only the synchronous standby is); returns the new leader."""
        old = self.leader()
        assert old is not None
        result = subprocess.run(
            [
                *("patronictl", "-c", str(self.folder / f"{old}.yml"), "switchover", SCOPE),
                *("--leader", old, "--force"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        self._wait(lambda: self.leader() not in (None, old), 60, f"a new leader\n{result.stdout}")
        new = self.leader()
        assert new is not None
        return new

    def kill_primary_postmaster(self) -> str:
        """SIGKILL the leader's postmaster; returns the node it ran on."""
        old = self.leader()
        assert old is not None
        pid_file = self.folder / f"{old}-data" / "postmaster.pid"
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, signal.SIGKILL)
        return old

    def kill_primary_node(self) -> str:
        """SIGKILL the leader's Patroni and then its postmaster: the node is gone, so the others
        elect a new leader once its lock expires (ttl). Returns the node; `revive` it after."""
        old = self.leader()
        assert old is not None
        os.killpg(self._procs[old].pid, signal.SIGKILL)
        self._procs[old].wait(timeout=10)
        pid_file = self.folder / f"{old}-data" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError, ProcessLookupError):
            os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
        return old

    def revive(self, name: str) -> None:
        """Start a killed node's Patroni again: it rejoins as a replica of the new leader."""
        self._spawn(name, ["patroni", str(self.folder / f"{name}.yml")])

    def has_sync_standby(self) -> bool:
        """True when a replica is the synchronous standby (what synchronous mode waits for)."""
        leader = self.leader()
        if leader is None:
            return False
        cluster = self._http(self.nodes[leader][1], "/cluster") or {}
        return any(m.get("role") == "sync_standby" for m in cluster.get("members", []))

    def wait_healthy(self, timeout: float = 90) -> None:
        """Until a leader runs, both other nodes stream from it again and, in synchronous
        mode, one of them is the synchronous standby."""
        self._wait(
            lambda: (
                self.leader() is not None
                and self.streaming() == 2
                and (not self.synchronous or self.has_sync_standby())
            ),
            timeout,
            "a healthy cluster",
        )

    def log_tail(self) -> str:
        """The last lines of every process's log, for a failing assertion."""
        parts = []
        for name in self._procs:
            path = self.folder / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-1500:])
        return "\n".join(parts)

    def _wait(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """End every process by its own pid (Patroni first: it stops its PostgreSQL)."""
        nodes = [name for name in self._procs if name != "etcd"]
        for name in nodes:
            with contextlib.suppress(ProcessLookupError):
                self._procs[name].send_signal(signal.SIGTERM)
        for name in nodes:
            try:
                self._procs[name].wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._procs[name].pid, signal.SIGKILL)
        # A postmaster Patroni could not stop: by the pid in its own data folder.
        for name in self.nodes:
            pid_file = self.folder / f"{name}-data" / "postmaster.pid"
            with contextlib.suppress(OSError, ValueError, IndexError, ProcessLookupError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
        etcd = self._procs.get("etcd")
        if etcd is not None:
            etcd.terminate()
            try:
                etcd.wait(timeout=10)
            except subprocess.TimeoutExpired:
                etcd.kill()


@contextlib.contextmanager
def patroni_cluster(*, synchronous: bool = False) -> Iterator[PatroniCluster]:
    """A started cluster in a temporary folder, torn down (always) afterwards."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="crsql-ha-"))
    folder.chmod(0o755)
    cluster = PatroniCluster(folder, synchronous=synchronous)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)
