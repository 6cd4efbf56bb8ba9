"""The flood defences of one HTTP/2 server connection: pure counting, the clock injected.

:class:`~sc_proxy.http2.connection.Connection` calls in as frames arrive; a method raises
:class:`~sc_proxy.http2.errors.LimitExceeded` (GOAWAY ENHANCE_YOUR_CALM) once the peer is past a limit of
:class:`~sc_proxy.config.Http2Limits`:

- streams reset by the peer, or refused by us, over a sliding window (rapid reset, CVE-2023-44487). The
  window is estimated from two fixed windows (the previous one weighted by how much of it still overlaps),
  as nginx's ``limit_req`` does: two counters, not one timestamp per reset;
- frames that ask for work but carry none (SETTINGS, PING, PRIORITY, unknown types, empty DATA/HEADERS
  without END_STREAM): a token bucket, ``controlFramesPerSecond`` refilled up to ``controlFrameBurst``;
- WINDOW_UPDATE frames: at most 5 + 2 * (streams opened + ``windowUpdatesPerDataFrame`` * DATA frames
  sent), Envoy's rule: a peer updates windows because it was sent data, so what it may send grows with
  what it received;
- answers (PING and SETTINGS acknowledgements, RST_STREAM) queued since the I/O layer last saw its writes
  taken (:meth:`FloodGuard.answers_delivered`): a peer that sends but does not read.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from sc_proxy.http2.errors import LimitExceeded

if TYPE_CHECKING:
    from collections.abc import Callable

    from sc_proxy.config import Http2Limits

RAPID_RESET = "http2_rapid_reset"
CONTROL_FLOOD = "http2_control_flood"
UNREAD_ANSWERS = "http2_unread_answers"


class FloodGuard:
    """The counters of one connection against ``limits``; ``clock`` gives seconds (monotonic)."""

    __slots__ = (
        "_answers", "_burst", "_clock", "_data_sent", "_max_answers", "_max_resets", "_prev_resets", "_rate",
        "_refilled", "_resets", "_streams", "_tokens", "_updates", "_updates_per_data", "_window",
        "_window_start",
    )  # fmt: skip

    def __init__(self, limits: Http2Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        now = clock()
        self._window = limits.reset_window_seconds
        self._max_resets = limits.max_resets_per_window
        self._window_start = now
        self._resets = 0  # in the current fixed window
        self._prev_resets = 0  # in the one before it
        self._rate = limits.control_frames_per_second
        self._burst = float(limits.control_frame_burst)
        self._tokens = self._burst
        self._refilled = now
        self._updates_per_data = limits.window_updates_per_data_frame
        self._updates = 0
        self._streams = 0
        self._data_sent = 0
        self._max_answers = limits.max_pending_control_answers
        self._answers = 0

    # -- rapid reset ---------------------------------------------------------------------------------------
    def resets_in_window(self) -> float:
        """The estimated number of resets within the last ``resetWindowSeconds``."""
        now = self._clock()
        window = self._window
        elapsed = now - self._window_start
        if elapsed >= window:
            # Move on by whole windows: the current one becomes the previous (or both empty after two).
            self._prev_resets = self._resets if elapsed < 2 * window else 0
            self._resets = 0
            self._window_start += window * (elapsed // window)
            elapsed = now - self._window_start
        return self._prev_resets * (1.0 - elapsed / window) + self._resets

    def stream_reset(self) -> None:
        """The peer reset a stream of its own, or we refused one."""
        estimate = self.resets_in_window() + 1
        self._resets += 1
        if estimate > self._max_resets:
            raise LimitExceeded(
                f"more than {self._max_resets} streams reset in {self._window:g} s", RAPID_RESET
            )

    # -- frames without work ---------------------------------------------------------------------------------
    def control_frame(self) -> None:
        now = self._clock()
        tokens = self._tokens + (now - self._refilled) * self._rate
        self._refilled = now
        if tokens > self._burst:
            tokens = self._burst
        if tokens < 1.0:
            self._tokens = tokens
            raise LimitExceeded(
                f"control frames beyond {self._rate:g}/s (burst {self._burst:g})", CONTROL_FLOOD
            )
        self._tokens = tokens - 1.0

    def stream_opened(self) -> None:
        self._streams += 1

    def data_sent(self) -> None:
        self._data_sent += 1

    def window_update(self) -> None:
        self._updates += 1
        if self._updates > 5 + 2 * (self._streams + self._updates_per_data * self._data_sent):
            raise LimitExceeded(
                f"{self._updates} WINDOW_UPDATE frames for {self._data_sent} DATA frames sent", CONTROL_FLOOD
            )

    # -- answers the peer does not read ----------------------------------------------------------------------
    def answer_queued(self) -> None:
        self._answers += 1
        if self._answers > self._max_answers:
            raise LimitExceeded(
                f"more than {self._max_answers} control-frame answers not taken by the peer", UNREAD_ANSWERS
            )

    def answers_delivered(self) -> None:
        """What was written so far was taken (the transport's buffer is below its high-water mark)."""
        self._answers = 0
