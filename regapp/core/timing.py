"""Answers that take as long whatever they found: a floor on a block's duration.

A request whose work differs by what it found (a pending account commits a
counter or queues a mail, an unknown address does nothing) would tell them apart
by its latency. Inside ``floor(seconds)`` the block takes at least ``seconds``;
as long as the work stays below the floor, every answer takes the same time::

    with timing.floor(current_app.config["CONFIRM_CODE_MIN_SECONDS"]) as wait:
        ...
        wait.waive()  # an outcome that needs no cover (a success) answers at once
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class Floor:
    """The running floor of one block; ``waive()`` lets it end without waiting."""

    __slots__ = ("deadline", "waived")

    def __init__(self, seconds: float):
        self.deadline = time.monotonic() + max(0.0, float(seconds or 0))
        self.waived = False

    def waive(self) -> None:
        self.waived = True

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


@contextmanager
def floor(seconds: float):
    """Run the block, then sleep until ``seconds`` have passed since it began (also
    when it raised), unless the block called ``waive()``. End any transaction
    before the block ends: the wait must not hold a connection's locks."""
    wait = Floor(seconds)
    try:
        yield wait
    finally:
        delay = wait.remaining()
        if delay > 0 and not wait.waived:
            time.sleep(delay)
