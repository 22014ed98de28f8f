"""pids.alive: the outbox and the serving board both ask it whether a process of this
host still runs; a zombie (exited, not yet reaped by its parent) does not."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from regapp import pids


def test_a_running_process_is_alive():
    assert pids.alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert pids.alive(child.pid)
    finally:
        child.kill()
        child.wait()


def test_an_exited_process_is_not_alive_before_or_after_it_is_reaped():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while pids.alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # exited, not reaped yet: a zombie
    assert not pids.alive(child.pid)
    with open(f"/proc/{child.pid}/stat", "rb") as stat:  # still there, as a zombie
        assert stat.read().rpartition(b")")[2].split()[0] == b"Z"
    child.wait()
    assert not pids.alive(child.pid)


def test_what_is_no_process_id_counts_as_alive():
    assert pids.alive(0)
    assert pids.alive(-1)
