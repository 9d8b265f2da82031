"""One time origin for the probe, the sampler and the step boundaries, so their timestamps line up."""

from __future__ import annotations

import time


class Clock:
    """Seconds since the clock was made, on the monotonic clock (asyncio's loop.time() uses the same one)."""

    def __init__(self) -> None:
        self.origin = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.origin

    def since_origin(self, monotonic: float) -> float:
        return monotonic - self.origin
