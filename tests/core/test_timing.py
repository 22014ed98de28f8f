"""regapp.core.timing.floor: a block never ends sooner than its floor."""

from __future__ import annotations

import time

import pytest

from regapp.core import timing


def timed(block) -> float:
    started = time.perf_counter()
    block()
    return time.perf_counter() - started


def test_a_quick_block_waits_for_the_floor():
    def block():
        with timing.floor(0.03):
            pass
    assert timed(block) >= 0.03


def test_a_slow_block_is_not_made_slower():
    def block():
        with timing.floor(0.01):
            time.sleep(0.03)
    assert 0.03 <= timed(block) < 0.045


def test_a_raising_block_waits_too():
    def block():
        with pytest.raises(KeyError), timing.floor(0.03):
            raise KeyError("x")
    assert timed(block) >= 0.03


def test_waive_ends_at_once():
    def block():
        with timing.floor(1) as wait:
            wait.waive()
    assert timed(block) < 0.5


@pytest.mark.parametrize("seconds", [0, None, -1])
def test_no_floor(seconds):
    def block():
        with timing.floor(seconds):
            pass
    assert timed(block) < 0.5
