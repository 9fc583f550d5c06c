"""Secrets never reach a log: every log record of the whole run is kept, and the run fails
if one holds a value a test registered as secret.

Registered in pyproject's addopts (`-p tests.plugins.secrets`). From the start of the
session to its end, every logger's records down to DEBUG are formatted (message and
traceback) and kept. Tests register the secrets they handle (`register_secret(value)`, or
the `secret` fixture, which makes a fresh one); when the session ends, any kept record
holding any registered secret fails the run, naming the logger and the test it came from.
Records are checked at the end, not as they come, so a secret registered after the record
that leaked it is still caught.
"""

from __future__ import annotations

import logging
import secrets as _random
import threading
from collections.abc import Iterable

import pytest

__all__ = ["LeakRecorder", "find_leaks", "recorder", "register_secret"]

# Shorter values would match by accident (a secret "ab" is in half the log).
MIN_SECRET_LENGTH = 6


def find_leaks(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """For each (origin, text) holding one of `secrets`, a line saying where (never which)."""
    wanted = [s for s in set(secrets) if s]
    found = []
    for origin, text in texts:
        for secret in wanted:
            if secret in text:
                found.append(f"{origin}: holds a registered secret ({len(secret)} characters)")
                break
    return found


class LeakRecorder(logging.Handler):
    """A handler that keeps every distinct formatted record, with where it was logged."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.secrets: set[str] = set()
        self.records: dict[str, str] = {}
        self.count = 0
        self.test = "(outside tests)"
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # a broken record must not break the code that logged it
            text = f"{record.name}: unformattable record {record.msg!r} {record.args!r}"
        with self._guard:
            self.count += 1
            self.records.setdefault(text, f"{self.test} ({record.name})")

    def register(self, value: str) -> str:
        """Add a secret; refuses values too short to search for."""
        if len(value) < MIN_SECRET_LENGTH:
            raise ValueError(f"a registered secret needs {MIN_SECRET_LENGTH}+ characters")
        with self._guard:
            self.secrets.add(value)
        return value

    def leaks(self) -> list[str]:
        """Where a kept record holds a registered secret."""
        with self._guard:
            texts = [(origin, text) for text, origin in self.records.items()]
            secrets = set(self.secrets)
        return find_leaks(texts, secrets)


recorder = LeakRecorder()
"""The session's recorder: `register_secret` adds to it, the session's end checks it."""


def register_secret(value: str) -> str:
    """Mark `value` as a secret that must never appear in a log record; returns it."""
    return recorder.register(value)


@pytest.fixture
def secret() -> str:
    """A fresh random secret, already registered."""
    return register_secret(f"s3cret-{_random.token_hex(8)}")


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    config.stash[_saved_level] = root.level
    root.addHandler(recorder)
    root.setLevel(logging.DEBUG)
    # Libraries that quiet their own loggers (psycopg sets WARNING) are heard out too.
    quieted = {}
    for name, logger in logging.Logger.manager.loggerDict.items():
        if isinstance(logger, logging.Logger) and logger.level > logging.DEBUG:
            quieted[name] = logger.level
            logger.setLevel(logging.DEBUG)
    config.stash[_quieted] = quieted


def pytest_runtest_setup(item: pytest.Item) -> None:
    recorder.test = item.nodeid


def pytest_runtest_teardown(item: pytest.Item) -> None:
    recorder.test = "(between tests)"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks = recorder.leaks()
    session.config.stash[_leaks] = leaks
    if leaks and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    leaks = terminalreporter.config.stash.get(_leaks, [])
    terminalreporter.write_sep(
        "-",
        f"secrets check: {recorder.count} log records, {len(recorder.records)} distinct, "
        f"{len(recorder.secrets)} registered secrets, {len(leaks)} leaks",
    )
    for line in leaks[:50]:
        terminalreporter.write_line(f"SECRET LEAKED IN A LOG RECORD: {line}", red=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.removeHandler(recorder)
    root.setLevel(config.stash.get(_saved_level, logging.WARNING))
    for name, level in config.stash.get(_quieted, {}).items():
        logging.getLogger(name).setLevel(level)


_saved_level = pytest.StashKey[int]()
_quieted = pytest.StashKey[dict[str, int]]()
_leaks = pytest.StashKey[list[str]]()
