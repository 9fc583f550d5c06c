"""The session-wide secrets check itself: it must fail a run that logs a secret.

tests/plugins/secrets.py keeps every log record of the session and fails the run at the
end when one holds a registered secret. A check that never fires proves nothing, so here
it runs on small suites of its own (a pytest subprocess each): one that leaks, in several
ways, and one that does not.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.plugins.secrets import LeakRecorder, find_leaks
from tests.reliability.conftest import Figures

ROOT = Path(__file__).resolve().parents[2]

LEAKY = """
import logging
from tests.plugins.secrets import register_secret

def test_leaks_in_a_message():
    logging.getLogger("app").debug("connecting with %s", register_secret("hunter2-message"))

def test_leaks_in_a_traceback():
    token = register_secret("hunter2-traceback")
    try:
        raise RuntimeError(f"bad token {token}")
    except RuntimeError:
        logging.getLogger("app.deep").exception("failed")

def test_leaks_before_the_secret_is_known():
    logging.getLogger("early").info("value early-secret-value")

def test_registers_late():
    register_secret("early-secret-value")
"""

CLEAN = """
import logging
from tests.plugins.secrets import register_secret

def test_logs_no_secret(secret):
    register_secret("hunter2-clean")
    logging.getLogger("app").debug("connecting to %s", "db.internal")
"""


def run_suite(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(body))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.plugins.secrets",
            "-o",
            "addopts=",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_suite.py"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_a_run_that_logs_a_secret_fails(tmp_path: Path, figures: Figures) -> None:
    result = run_suite(tmp_path, LEAKY)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "4 passed" in result.stdout  # the tests pass: the session check fails the run
    leaks = [line for line in result.stdout.splitlines() if "SECRET LEAKED" in line]
    assert len(leaks) == 3, result.stdout
    assert any("test_leaks_in_a_message" in line for line in leaks)
    assert any("test_leaks_in_a_traceback" in line for line in leaks)
    assert any("test_leaks_before_the_secret_is_known" in line for line in leaks)
    # The report says where, never what.
    assert "hunter2" not in result.stdout
    figures.add("secrets", planted_leaks_caught=len(leaks))


def test_a_clean_run_passes(tmp_path: Path) -> None:
    result = run_suite(tmp_path, CLEAN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 leaks" in result.stdout


def test_find_leaks_and_the_recorder() -> None:
    assert find_leaks([("a", "x hunter2 y"), ("b", "nothing")], ["hunter2"]) == [
        "a: holds a registered secret (7 characters)"
    ]
    recorder = LeakRecorder()
    with pytest.raises(ValueError, match="characters"):
        recorder.register("abc")  # too short to search for without false alarms
    recorder.register("swordfish")
    recorder.handle(logging.LogRecord("x", 10, __file__, 1, "pw=%s", ("swordfish",), None))
    assert len(recorder.leaks()) == 1
