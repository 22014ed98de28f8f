"""Whether a process of this host still runs: the outbox asks it about a dispatcher
whose claims it could take over, the serving board about a sibling worker whose
connection count it could ignore. Nothing but ``os`` here: gunicorn's master loads
the worker class that uses it."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True unless process ``pid`` is gone (or a zombie waiting to be reaped). A value
    that is no process id (0 or less) counts as alive: what it owns is left alone."""
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process (EPERM): it exists
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
