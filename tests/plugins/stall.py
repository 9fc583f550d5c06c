"""A TCP proxy on loopback that can stop forwarding without closing anything: a stalled path.

It models what no server-side timeout can fix: a middlebox (a hung PgBouncer, a NAT that
lost its state but keeps the sockets) that accepts bytes and never passes them on. The
client's kernel still sees its data acknowledged, so neither TCP keepalive nor
tcp_user_timeout notice anything for a long time.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from coderunner_sql import DatabaseConfig


class StallingProxy:
    """Forwards 127.0.0.1:`port` to a server until `stall()`; `heal()` forwards again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def stall(self) -> None:
        """Stop passing bytes either way; every socket stays open."""
        self._forwarding.clear()

    def heal(self) -> None:
        """Pass bytes again (new connections work at once)."""
        self._forwarding.set()

    def close(self) -> None:
        """Stop the proxy and close every socket it holds."""
        self._stopped.set()
        self._forwarding.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            readable, _, _ = select.select([self._listener], [], [], 0.1)
            if not readable:
                continue
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            # A stalled path accepts too: the connect succeeds, nothing comes back.
            server = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, server]
            for source, sink in ((client, server), (server, client)):
                thread = threading.Thread(target=self._pump, args=(source, sink), daemon=True)
                self._threads.append(thread)
                thread.start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._stopped.is_set():
            if not self._forwarding.wait(0.1):
                continue  # stalled: read nothing, so the peer's bytes pile up unanswered
            try:
                readable, _, _ = select.select([source], [], [], 0.1)
                if not readable:
                    continue
                if not self._forwarding.is_set():
                    continue
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def stalling_proxy() -> Iterator[Callable[[DatabaseConfig], tuple[StallingProxy, DatabaseConfig]]]:
    """`stalling_proxy(config)` -> (proxy, `config` pointed at it); all closed at the end."""
    opened: list[StallingProxy] = []

    def open_(config: DatabaseConfig) -> tuple[StallingProxy, DatabaseConfig]:
        proxy = StallingProxy(config.host or "127.0.0.1", config.port or 5432)
        opened.append(proxy)
        return proxy, config.replace(host="127.0.0.1", port=proxy.port)

    try:
        yield open_
    finally:
        for proxy in opened:
            proxy.close()
