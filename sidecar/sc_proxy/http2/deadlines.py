"""perRequestTimeout for many streams with few loop timers.

A loop timer per stream (created, then cancelled when the response ends, almost always) was several percent
of the proxy's time under load. Deadlines are instead grouped in buckets of :data:`GRANULARITY` seconds:
one timer per bucket for all the streams of a route, a dict insertion and removal per stream. A timeout
fires at most one bucket late (50 ms), never early.
"""

from __future__ import annotations

import asyncio
import math
from typing import Final, Protocol

GRANULARITY: Final = 0.05


class TimesOut(Protocol):
    def on_deadline(self) -> None: ...


class Deadlines:
    """The pending deadlines of one event loop."""

    __slots__ = ("_buckets", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._buckets: dict[int, dict[TimesOut, None]] = {}

    def add(self, item: TimesOut, delay: float) -> int:
        """Call ``item.on_deadline()`` in ``delay`` seconds (rounded up to the bucket); returns the key to
        :meth:`discard` it with."""
        key = math.ceil((self._loop.time() + delay) / GRANULARITY)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = {}
            self._loop.call_at(key * GRANULARITY, self._fire, key)
        bucket[item] = None
        return key

    def discard(self, item: TimesOut, key: int) -> None:
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.pop(item, None)

    def _fire(self, key: int) -> None:
        bucket = self._buckets.pop(key, None)
        if bucket:
            for item in list(bucket):
                item.on_deadline()
