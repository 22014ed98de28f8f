"""The mail dispatcher: one background thread per process delivers the outbox.

gunicorn workers are forked, and a thread started before fork() does not exist
in the child, so each worker starts its own (``ensure_dispatcher`` is
idempotent per process); ``wsgi.py`` and ``gunicorn.conf.py`` start it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref

from ..extensions import db
from . import delivery
from . import outbox

log = logging.getLogger(__name__)

_STATE_KEY = "regapp.outbox"
# Under steady load a pass waits this long for more commits (at 100 sign-ups/s a
# batch of ~10 instead of 1: claim, "sent" and the SMTP session are paid per batch);
# "steady" means woken within BUSY_SECONDS of a pass that had mail.
COALESCE_SECONDS = 0.2
BUSY_SECONDS = 1.0
_dispatch_lock = threading.Lock()
_apps: weakref.WeakSet = weakref.WeakSet()  # apps that ran a dispatcher in this process


def _drain(stop: threading.Event) -> int:
    """Send batches while full ones keep coming (or one ran out of time with mail left);
    stop at the first sign of SMTP trouble. Returns how many messages it handled."""
    handled = 0
    while not stop.is_set():
        counts, more = delivery.send_batch(stop=stop)
        handled += sum(counts.values())
        if counts["retry"] or (sum(counts.values()) < outbox.BATCH_SIZE and not more):
            break
    return handled


def _run(app, stop: threading.Event) -> None:
    interval = app.config["MAIL_POLL_INTERVAL"]
    last_mail = float("-inf")  # when a pass last had mail to handle
    while not stop.is_set():
        try:
            with app.app_context():
                if _drain(stop):
                    last_mail = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - the thread must outlive database outages
            # The class only: a database error's text can hold SQL parameters.
            log.warning("outbox dispatcher pass failed (%s); retrying in %ss",
                        type(exc).__name__, interval)
        # Sleeps on the event (set by a commit that queued mail, or at stop); the
        # timeout is the poll for retries falling due and other processes' crashes.
        if outbox.wakeup.wait(timeout=interval) and time.monotonic() - last_mail < BUSY_SECONDS:
            # Mail is coming steadily: let the commits of a burst gather, so one pass
            # sends them as a batch. A message after a quiet spell goes at once.
            stop.wait(COALESCE_SECONDS)
        outbox.wakeup.clear()


def ensure_dispatcher(app) -> threading.Thread | None:
    """Start this process's dispatcher thread for ``app`` once (idempotent per pid)."""
    if not app.config.get("OUTBOX_AUTOSTART"):
        return None
    pid = os.getpid()
    state = app.extensions.get(_STATE_KEY)
    if state and state["pid"] == pid and state["thread"].is_alive():
        return state["thread"]
    with _dispatch_lock:
        state = app.extensions.get(_STATE_KEY)
        # After fork() only the forking thread survives: a parent's thread is gone.
        if not (state and state["pid"] == pid and state["thread"].is_alive()):
            stop = threading.Event()
            thread = threading.Thread(target=_run, args=(app, stop), daemon=True,
                                      name="regapp-outbox")
            app.extensions[_STATE_KEY] = state = {"pid": pid, "thread": thread, "stop": stop}
            _apps.add(app)
            thread.start()
    return state["thread"]


def stop_dispatcher(app, timeout: float = 10.0) -> None:
    """Stop ``app``'s dispatcher thread in this process and wait for its pass to end."""
    with _dispatch_lock:
        state = app.extensions.pop(_STATE_KEY, None)
    if state and state["pid"] == os.getpid():
        state["stop"].set()
        outbox.wakeup.set()
        state["thread"].join(timeout)


def _before_fork() -> None:
    # A thread mid-pass holds locks (connection pool, sockets) that a forked child
    # would inherit locked: gunicorn --preload forks workers from such a process.
    for app in list(_apps):
        stop_dispatcher(app)


def _after_fork_in_child() -> None:
    # The parent's pooled connections are its own; the child opens fresh ones.
    for app in list(_apps):
        with app.app_context():
            db.engine.dispose(close=False)


os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
