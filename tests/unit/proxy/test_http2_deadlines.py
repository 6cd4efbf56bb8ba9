"""Bucketed perRequestTimeout deadlines on a real event loop: never early, at most one bucket late, one
loop timer per bucket, discarded deadlines never fire."""

from __future__ import annotations

import asyncio

from sc_proxy.http2.deadlines import GRANULARITY, Deadlines


class Item:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.fired_at: float | None = None

    def on_deadline(self) -> None:
        self.fired_at = self.loop.time()


async def test_deadlines_fire_in_their_bucket_and_discarded_ones_do_not() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    start = loop.time()
    items = [Item(loop) for _ in range(5)]
    due = [start + 0.1 + i * 0.01 for i in range(5)]
    keys = [deadlines.add(item, 0.1 + i * 0.01) for i, item in enumerate(items)]
    deadlines.discard(items[2], keys[2])
    # Each deadline's bucket timer is due at most one bucket after it, never before (small slack for the
    # microseconds between reading the clock above and adding).
    for key, when in zip(keys, due, strict=True):
        assert 0 <= key * GRANULARITY - when < GRANULARITY + 0.001
    # Wait for the last one (buckets fire in order, so the discarded one's bucket has fired by then); a
    # loaded machine may run the loop late, hence a generous bound.
    waited = 0.0
    while items[4].fired_at is None and waited < 10:
        await asyncio.sleep(0.02)
        waited += 0.02
    assert items[2].fired_at is None
    for i, item in enumerate(items):
        if i == 2:
            continue
        assert item.fired_at is not None
        assert item.fired_at >= due[i] - 0.001  # never early
        assert item.fired_at >= keys[i] * GRANULARITY - 0.001  # at its bucket's time
        assert item.fired_at - due[i] < GRANULARITY + 5  # and not lost


async def test_one_timer_per_bucket() -> None:
    loop = asyncio.get_running_loop()
    deadlines = Deadlines(loop)
    items = [Item(loop) for _ in range(100)]
    keys = {deadlines.add(item, 5.0) for item in items}
    # 100 deadlines set within microseconds share one or two buckets, hence one or two loop timers.
    assert len(keys) <= 2
