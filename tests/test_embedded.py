"""EmbeddedServer: a private PostgreSQL cluster in tmp_path: start, restart, stop, destroy."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from coderunner_sql.connection import connect
from coderunner_sql.embedded import SERVER_USER, EmbeddedServer, find_bin_dir
from coderunner_sql.errors import ConfigError, DatabaseUnavailableError, EmbeddedServerError
from coderunner_sql.target import choose_target, embedded_refusal
from tests.plugins.postgres import FAST_SETTINGS


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """An EmbeddedServer for a folder in tmp_path (not started); destroyed afterwards."""
    made = EmbeddedServer(tmp_path / "pgdata", settings=FAST_SETTINGS)
    try:
        yield made
    finally:
        made.destroy()


def system_id(server: EmbeddedServer) -> int:
    """The cluster's system identifier: initdb picks a new one each time it runs."""
    with psycopg.connect(server.config().conninfo(), autocommit=True) as conn:
        row = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
    assert row is not None
    return int(row[0])


def postmaster_pid(server: EmbeddedServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])


def postmasters(data_dir: Path) -> list[int]:
    """Pids of every postmaster serving `data_dir` (its children rename themselves)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/postgres") and str(data_dir).encode() in argv:
            found.append(int(entry.name))
    # A child the postmaster has just forked shows the postmaster's command line until it
    # renames itself: a process whose parent is in the list is one of those, not a server.
    return [pid for pid in found if _parent(pid) not in found]


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces: the fields after it are fixed.
    return int(stat.rsplit(")", 1)[1].split()[1])


def owner_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for {pid}")


def test_find_bin_dir_finds_the_binaries() -> None:
    bin_dir = find_bin_dir()
    for tool in ("postgres", "initdb", "pg_ctl", "pg_dump", "psql", "pg_basebackup"):
        assert os.access(bin_dir / tool, os.X_OK), tool
    version = subprocess.run(
        [str(bin_dir / "pg_ctl"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("pg_ctl (PostgreSQL) ")


@pytest.mark.slow
def test_lifecycle(server: EmbeddedServer) -> None:
    assert not server.initialised
    assert not server.is_running()
    with pytest.raises(EmbeddedServerError, match="not running"):
        _ = server.port

    assert server.start() is server
    assert server.initialised
    assert server.is_running()
    assert server.started_here
    port = server.port
    assert 1 <= port <= 65535
    assert server.url("postgres") == f"postgresql://postgres@127.0.0.1:{port}/postgres"
    config = server.config("postgres")
    assert (config.host, config.port, config.user) == ("127.0.0.1", port, "postgres")

    with psycopg.connect(config.conninfo(), autocommit=True) as conn:
        assert conn.execute("SHOW port").fetchone() == (str(port),)
        assert conn.execute("SHOW data_directory").fetchone() == (str(server.data_dir),)
        assert conn.execute("SHOW fsync").fetchone() == ("off",)  # settings are applied
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('before restart')")
    identity = system_id(server)
    # PostgreSQL refuses root; when we are root it runs as its own user.
    if os.geteuid() == 0:
        assert owner_uid(postmaster_pid(server)) != 0
        assert server.data_dir.stat().st_uid == pwd.getpwnam(SERVER_USER).pw_uid
    # run() runs any PostgreSQL tool as that user.
    psql = server.run(
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-U",
        "postgres",
        "-Atc",
        "SELECT note FROM kept",
    )
    assert psql.stdout.strip() == "before restart"
    # A second start of a running server changes nothing.
    before = postmaster_pid(server)
    server.start()
    assert postmaster_pid(server) == before

    server.restart()
    assert server.is_running()
    assert server.port == port
    assert postmaster_pid(server) != before
    with psycopg.connect(config.conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("before restart",)]

    server.stop()
    assert not server.is_running()
    assert postmasters(server.data_dir) == []
    with pytest.raises(EmbeddedServerError):
        _ = server.port
    with pytest.raises(DatabaseUnavailableError, match=f"127.0.0.1:{port}"):
        connect(config)
    server.stop()  # stopping a stopped server is a no-op

    # The port it had is taken while it was down: starting again says so.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with pytest.raises(EmbeddedServerError, match="could not start") as info:
            server.start()
        assert str(server.data_dir) in str(info.value)
        assert not server.is_running()

    # Started again: the same cluster (not a new initdb), the same data.
    server.start()
    assert system_id(server) == identity
    with psycopg.connect(server.config().conninfo(), autocommit=True) as conn:
        assert conn.execute("SELECT note FROM kept").fetchall() == [("before restart",)]
        # The fast test settings defer WAL writes; this commit must reach the WAL file.
        conn.execute("SET synchronous_commit = on")
        conn.execute("INSERT INTO kept VALUES ('before crash')")

    # A crashed server (kill -9) leaves a stale postmaster.pid; start() recovers the cluster.
    os.kill(postmaster_pid(server), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not server.is_running()
    assert (server.data_dir / "postmaster.pid").exists()
    server.start()
    assert system_id(server) == identity
    with psycopg.connect(server.config().conninfo(), autocommit=True) as conn:
        notes = conn.execute("SELECT note FROM kept ORDER BY note").fetchall()
    assert notes == [("before crash",), ("before restart",)]

    server.destroy()
    assert not server.is_running()
    assert not server.data_dir.exists()
    assert not server.log_file.exists()
    assert postmasters(server.data_dir) == []


@pytest.mark.slow
def test_two_servers_on_one_folder_make_one_cluster(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    first = EmbeddedServer(folder, settings=FAST_SETTINGS)
    second = EmbeddedServer(folder, settings=FAST_SETTINGS)
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def start(server: EmbeddedServer) -> None:
        try:
            barrier.wait(5)
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in (first, second)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert errors == []
        assert first.is_running()
        assert second.is_running()
        assert first.port == second.port
        assert len(postmasters(folder)) == 1
        assert sorted([first.started_here, second.started_here]) == [False, True]
        with psycopg.connect(second.config().conninfo(), autocommit=True) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # Either object can stop the one server.
        first.stop()
        assert not second.is_running()
        # As a context manager: started on entry (the same cluster), stopped on exit.
        version = (folder / "PG_VERSION").stat().st_mtime_ns
        with second as running:
            assert running is second
            assert second.is_running()
            with connect(second.config()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert not second.is_running()
        assert not first.is_running()
        assert (folder / "PG_VERSION").stat().st_mtime_ns == version
    finally:
        first.destroy()


def test_a_missing_binary_is_an_embedded_server_error(server: EmbeddedServer) -> None:
    with pytest.raises(EmbeddedServerError, match="no_such_tool"):
        server.run("no_such_tool", "--version")


# -- when the embedded server may stand in for the application's database ----------------------


@pytest.mark.parametrize(
    ("environ", "interactive", "why"),
    [
        ({"DATABASE_URL": ""}, True, "DATABASE_URL is empty"),
        ({"DB_PASSWORD": "x", "DB_PORT": "5432"}, True, "DB_PASSWORD, DB_PORT are set"),
        ({"DB_HOST": "", "DB_SSL": "true"}, True, "DB_HOST is empty and DB_SSL is set"),
        ({"CI": "true"}, True, "CI is set"),
        ({}, False, "not on a terminal"),
        ({"CI": "false"}, False, "not on a terminal"),
    ],
)
def test_embedded_fallback_is_refused_where_it_could_hide_a_missing_setting(
    environ: dict[str, str], interactive: bool, why: str, tmp_path: Path
) -> None:
    refusal = embedded_refusal(environ, interactive=interactive)
    assert refusal is not None
    assert why in refusal
    env = {**environ, "CODERUNNER_SQL_DATA_DIR": str(tmp_path / "pgdata")}
    with pytest.raises(ConfigError, match="CODERUNNER_SQL_EMBEDDED=1") as info:
        choose_target(environ=env, app_data=True, interactive=interactive)
    assert why in str(info.value)
    assert not (tmp_path / "pgdata").exists()


def test_embedded_fallback_is_allowed_for_a_person_at_a_terminal() -> None:
    assert embedded_refusal({}, interactive=True) is None
    assert embedded_refusal({"CI": "0", "CODERUNNER_SQL_DATA_DIR": "x"}, interactive=True) is None


def test_a_named_server_needs_no_opt_in() -> None:
    for environ in ({"DATABASE_URL": "postgresql://h/db", "CI": "1"}, {"DB_HOST": "h"}):
        target = choose_target(environ=environ, app_data=True, interactive=False)
        assert target.embedded is None
        assert target.config.host == "h"
