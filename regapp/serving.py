"""gunicorn's gthread worker with connections spread evenly over the workers.

gunicorn leaves it to the kernel which worker accepts a connection, and a gthread
worker accepts whatever arrives while it is looking, busy or not. A keep-alive
connection then stays with that worker for good, so a few long-lived client
connections (a proxy's upstream pool, a load generator) can all end up on one worker:
its threads share one interpreter lock, hence one core, while the other workers idle.
Measured here with 2 workers and 4 keep-alive connections: in 4 of 10 runs one worker
took all four, and served about 0.6 times the sign-ups of an even split.

``BalancedThreadWorker`` accepts only while it holds no more connections than the
least loaded of its live siblings, and closes a connection after its answer while it
holds at least two more than one of them. The workers publish their connection counts
on a small board of shared memory (mapped before gunicorn forks them); a sibling that has
not looked in for STALE_S seconds (stuck, or gone) or whose process is gone does not
count. Some worker can always accept: the one with the fewest connections.
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from gunicorn.workers.gthread import ThreadWorker

from . import pids

SLOTS = 32
STALE_S = 1.5  # an idle worker looks in at least once a second (its poll timeout)
_SLOT = struct.Struct("=iid")  # pid, connections, when it last looked in (monotonic)
# Anonymous and shared: created when gunicorn loads the worker class, in the master,
# so every worker forked from it writes to the same pages.
_BOARD = mmap.mmap(-1, SLOTS * _SLOT.size)


class BalancedThreadWorker(ThreadWorker):
    """gthread, accepting only while no live sibling holds fewer connections."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._slot = self.age % SLOTS  # ages are unique per spawn; 2 live workers clash
        # only SLOTS spawns apart, and then each just sees one sibling less

    def _fewest(self, mine: int) -> int | None:
        """The fewest connections a live sibling holds (None: no live sibling)."""
        now = time.monotonic()
        fewest = None
        for slot, (pid, conns, seen) in enumerate(_SLOT.iter_unpack(_BOARD)):
            if (slot == self._slot or not pid or now - seen > STALE_S
                    or (fewest is not None and conns >= fewest)):
                continue
            if conns < mine and not pids.alive(pid):
                continue
            fewest = conns
        return fewest

    # ThreadWorker sets this from the worker_connections setting and, on each turn of
    # its loop, accepts only while nr_conns < worker_connections.
    @property
    def worker_connections(self) -> int:
        mine = self.nr_conns
        if self._running:
            _SLOT.pack_into(_BOARD, self._slot * _SLOT.size, os.getpid(), mine, time.monotonic())
        if not mine:  # none: it may accept whatever the others hold
            return self._worker_connections
        fewest = self._fewest(mine)
        if fewest is None:
            return self._worker_connections
        return min(self._worker_connections, fewest + 1)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        self._worker_connections = value

    def handle_request(self, req, conn):
        # Connections arrive in bursts (a client opens its pool at once) and a count
        # read meanwhile can be stale (a sibling still closing the last burst's), so
        # the split can still go wrong at accept time. It mends itself: a worker that
        # holds two or more connections more than a sibling ends this request's
        # connection after the answer ("Connection: close"); the client reconnects
        # and, as this worker accepts nothing meanwhile, lands on the sibling.
        mine = self.nr_conns
        if mine > 1:
            fewest = self._fewest(mine)
            if fewest is not None and mine > fewest + 1:
                req.force_close()
        return super().handle_request(req, conn)

    # gunicorn sets ``alive`` to False when the worker is to stop (a signal, its
    # max_requests, its parent gone): from then on it accepts nothing, so it leaves
    # the board at once. Were its last count left there, a sibling holding more would
    # refuse new connections until that count went stale.
    @property
    def alive(self) -> bool:
        return self._running

    @alive.setter
    def alive(self, value: bool) -> None:
        self._running = value
        if not value:
            self._leave()

    def _leave(self) -> None:
        slot = getattr(self, "_slot", None)
        if slot is not None:
            _SLOT.pack_into(_BOARD, slot * _SLOT.size, 0, 0, 0.0)

    def run(self) -> None:
        try:
            super().run()
        finally:
            self._leave()
