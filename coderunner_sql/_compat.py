"""The few calls that differ between the async services and their generated sync twins."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def to_thread(fn: Callable[[], T]) -> T:
    """Run blocking `fn` (yoyo, file reads) off the event loop."""
    return await asyncio.to_thread(fn)


def run_blocking(fn: Callable[[], T]) -> T:
    """The sync twin of `to_thread`: just call it."""
    return fn()


async def asleep(seconds: float) -> None:
    """Sleep without blocking the event loop."""
    await asyncio.sleep(seconds)


def sleep(seconds: float) -> None:
    """The sync twin of `asleep`."""
    time.sleep(seconds)


# A transaction's calls are serialised with the lock of their flavour: one task at a time
# on the event loop, one thread at a time in the sync service.
ALock = asyncio.Lock
Lock = threading.Lock
