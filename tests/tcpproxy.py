"""A loopback TCP forwarder that tests can cut and restore.

It stands between the app and a shared service (PostgreSQL) so a test can make
the service "go away" for this app only: ``cut()`` closes the listening socket
and every forwarded connection (clients see resets and refused connects),
``restore()`` listens again on the same port. ``blackhole()`` listens but never
answers, like a host that is down without sending resets. The real service is
never touched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading

from tests.smtp import free_port

BUFFER = 65536


class TCPProxy:
    """Forward ``127.0.0.1:port`` to ``target``; ``cut``/``restore`` switch it off and on."""

    def __init__(self, target_host: str, target_port: int, port: int | None = None):
        if target_host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("tests only forward to loopback services")
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._accepting: threading.Thread | None = None
        self.accepted = 0  # connections forwarded so far (lets a test see it was used)
        self._silent = False

    # -- switching ------------------------------------------------------------------
    def start(self, *, silent: bool = False) -> "TCPProxy":
        """Listen on ``self.port`` (again) and forward every connection.

        ``silent``: accept connections but never forward or answer (a black hole).
        """
        self._silent = silent
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # SO_REUSEADDR: the port of cut connections may sit in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        with self._lock:
            self._listener = listener
        self._accepting = threading.Thread(target=self._accept, args=(listener,),
                                           name=f"tcpproxy-{self.port}", daemon=True)
        self._accepting.start()
        return self

    restore = start

    def cut(self) -> None:
        """Stop listening and reset every open connection, both sides."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            _close(listener)
        for sock in sockets:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: an RST, so the client notices at once.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            _close(sock)
        if self._accepting is not None:
            self._accepting.join(5)
            self._accepting = None

    stop = cut

    def blackhole(self) -> None:
        """Drop every connection, then accept new ones and never answer them."""
        self.cut()
        self.start(silent=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.cut()

    @property
    def is_up(self) -> bool:
        return self._listener is not None

    # -- forwarding -----------------------------------------------------------------
    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed by cut()
            if self._silent:
                with self._lock:
                    self._sockets.add(client)  # held open, unread, until cut()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:  # cut while we connected
                    _close(client)
                    _close(upstream)
                    return
                self._sockets.update((client, upstream))
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True,
                                 name=f"tcpproxy-{self.port}-pipe").start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(BUFFER)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)
            _close(src)
            _close(dst)


def _close(sock: socket.socket) -> None:
    # shutdown() first: close() alone does not wake a thread blocked in recv().
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
