"""gunicorn.conf.py's worker spreads keep-alive connections over the workers
(regapp/serving.py): seen from outside, in which worker process each connection ends."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from regapp import serving
from tests.serverkit import Server
from tests.smtp import free_port

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def worker_pids(server: Server) -> list[int]:
    done = subprocess.run(["pgrep", "-P", str(server.proc.pid)], capture_output=True,
                          text=True, check=False)
    return sorted(int(pid) for pid in done.stdout.split())


def holders(server: Server, connections) -> list[int]:
    """For each client connection, the pid of the worker holding its server side."""
    inodes = {}  # client port -> inode of the server's socket
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == server.port:
            inodes[int(remote.split(":")[1], 16)] = inode
    owner = {}
    for pid in worker_pids(server):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    return [owner.get(inodes.get(conn.sock.getsockname()[1])) if conn.sock else None
            for conn in connections]


def ask(conn: http.client.HTTPConnection) -> bool:
    """GET /healthz on ``conn`` (reconnecting if the server closed it); True if the
    answer closed the connection."""
    conn.request("GET", "/healthz")
    response = conn.getresponse()
    response.read()
    assert response.status == 200
    return (response.getheader("Connection") or "").lower() == "close"


def test_keep_alive_connections_end_up_spread_over_the_workers(tmp_path):
    server = Server(f"sqlite:///{tmp_path / 'serving.sqlite'}", mail_port=free_port(),
                    log_dir=tmp_path, workers=2).start()
    connections = []
    try:
        deadline = time.monotonic() + 20
        while len(worker_pids(server)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # the server answers once its first worker is up
        first, second = worker_pids(server)
        # The second worker is stopped: once it has not looked in for a while, the
        # first takes every connection (a stuck sibling never blocks accepting).
        os.kill(second, signal.SIGSTOP)
        time.sleep(serving.STALE_S + 0.5)
        connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
                       for _ in range(4)]
        assert not any(ask(conn) for conn in connections)
        assert holders(server, connections) == [first] * 4
        os.kill(second, signal.SIGCONT)
        time.sleep(1.2)  # it looks in again
        closed = 0
        deadline = time.monotonic() + 20  # a loaded machine may still be booting it
        while time.monotonic() < deadline:
            round_closed = sum(ask(conn) for conn in connections)
            closed += round_closed
            split = sorted(pid or 0 for pid in holders(server, connections))
            if not round_closed and split == [first, first, second, second]:
                break
            time.sleep(0.1)
        assert sorted(holders(server, connections)) == [first, first, second, second]
        # It took closing connections: the first worker ended some after their answer.
        assert closed >= 2
        assert server.proc.poll() is None
    finally:
        for conn in connections:
            conn.close()
        server.stop()


@pytest.fixture
def board():
    """Two workers of this process on the shared board, as ThreadWorker leaves them
    after its constructor (no gunicorn around); the board is cleared afterwards."""
    def worker(slot, connections):
        made = object.__new__(serving.BalancedThreadWorker)
        made._slot, made.nr_conns, made.worker_connections = slot, connections, 1000
        made.alive = True
        return made

    yield worker
    serving._BOARD[:] = bytes(len(serving._BOARD))


def test_a_worker_accepts_only_while_no_live_sibling_holds_fewer(board):
    busy, idle = board(5, 3), board(6, 1)
    idle.worker_connections  # noqa: B018 - a turn of its loop: it publishes its count
    assert busy.worker_connections == 2  # ThreadWorker accepts while 3 < this: it doesn't
    assert idle.worker_connections == 4  # it accepts until it holds more than busy
    dead = subprocess.Popen(["true"])
    dead.wait()
    serving._SLOT.pack_into(serving._BOARD, 7 * serving._SLOT.size, dead.pid, 0,
                            time.monotonic())
    assert busy.worker_connections == 2  # a sibling whose process is gone does not count
    idle.alive = False  # stopping (a signal, max_requests): it leaves the board at once
    assert serving._SLOT.unpack_from(serving._BOARD, 6 * serving._SLOT.size)[0] == 0
    assert busy.worker_connections == 1000
