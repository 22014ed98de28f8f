"""deploy/: Debian's nginx (deploy/nginx/, as shipped: only ports and paths rewritten) in
front of gunicorn (tests/serverkit.py, gunicorn.conf.py's workers). 64 clients sending
their headers one byte every 4 s no longer stop anyone else; bare gunicorn does stall.

Skips where nginx is missing, unless REGAPP_REQUIRE_NGINX=1 (.ci/run installs nginx and
sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.serverkit import Server
from tests.serverkit import request
from tests.serverkit import sqlite_url
from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
SLOW_CLIENTS = 64
TRICKLE_SECONDS = 4
PASSWORD = "Str0ng-passphrase"


def require_nginx():
    if NGINX is None:
        if os.environ.get("REGAPP_REQUIRE_NGINX") == "1":
            pytest.fail("REGAPP_REQUIRE_NGINX=1 but no nginx binary was found")
        pytest.skip("nginx is not installed (Debian: apt-get install nginx; "
                    ".ci/run installs it and sets REGAPP_REQUIRE_NGINX=1)")


def render(prefix: Path, port: int, upstream: int) -> Path:
    """deploy/nginx/*.conf with loopback ports and paths under ``prefix``; nothing else."""
    for name in ("logs", "tmp"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    site = (DEPLOY / "nginx" / "regapp.conf").read_text()
    site, listens = re.subn(r"^(\s*)listen 80;$", rf"\g<1>listen 127.0.0.1:{port};", site,
                            flags=re.M)
    site, upstreams = re.subn(r"server 127\.0\.0\.1:8000;", f"server 127.0.0.1:{upstream};",
                              site)
    assert (listens, upstreams) == (1, 1), "deploy/nginx/regapp.conf changed shape"
    (prefix / "regapp.conf").write_text(site)
    main = (DEPLOY / "nginx" / "nginx.conf").read_text()
    temp = " ".join(f"{kind}_temp_path {prefix / 'tmp' / kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    for old, new in [
        ("user www-data;", ""),  # the test's user runs it
        ("pid /run/regapp-nginx.pid;", f"pid {prefix / 'nginx.pid'};"),
        ("error_log /var/log/nginx/regapp-error.log warn;",
         f"error_log {prefix / 'logs' / 'error.log'} warn;"),
        ("access_log /var/log/nginx/regapp-access.log;",
         f"access_log {prefix / 'logs' / 'access.log'};"),
        ("include /etc/regapp/nginx/regapp.conf;", f"include {prefix / 'regapp.conf'};"),
        ("# temp paths", temp),
        ("worker_processes auto;", "worker_processes 1;"),
    ]:
        assert old in main, f"deploy/nginx/nginx.conf changed shape: {old}"
        main = main.replace(old, new)
    if not Path("/etc/nginx/mime.types").exists():
        main = main.replace("include /etc/nginx/mime.types;", "")
    conf = prefix / "nginx.conf"
    conf.write_text(main)
    return conf


class Nginx:
    """nginx as a foreground process (``daemon off``) with the rendered configuration."""

    def __init__(self, prefix: Path, upstream: int):
        self.prefix = prefix
        self.port = free_port()
        self.conf = render(prefix, self.port, upstream)
        self.proc = None

    def __enter__(self):
        check = subprocess.run([NGINX, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.prefix), "-c", str(self.conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        deadline = time.monotonic() + 15
        while True:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                urllib.request.urlopen(self.url("/healthz"), timeout=2).close()
                return self
            except (OSError, urllib.error.URLError):
                assert time.monotonic() < deadline, "nginx did not answer"
                time.sleep(0.1)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __exit__(self, *exc):
        self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)


class SlowClients:
    """``count`` sockets, each sending one byte of a request header every few seconds."""

    HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\n" + b"X" * 64

    def __init__(self, port: int, count: int = SLOW_CLIENTS):
        self.port, self.count = port, count
        self.sockets: list[socket.socket] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def __enter__(self):
        for _ in range(self.count):
            self.sockets.append(socket.create_connection(("127.0.0.1", self.port), timeout=5))
        self.thread.start()
        return self

    def _trickle(self):
        position = 0
        while not self.stop.is_set() and position < len(self.HEAD):
            for sock in self.sockets:
                try:
                    sock.sendall(self.HEAD[position:position + 1])
                except OSError:
                    pass  # cut off by a timeout: that's the server defending itself
            position += 1
            self.stop.wait(TRICKLE_SECONDS)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()


def timed_get(url: str, timeout: float = 3) -> tuple[int | None, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, time.monotonic() - started
    except (OSError, urllib.error.URLError):
        return None, time.monotonic() - started


@pytest.fixture
def gunicorn(tmp_path):
    """gunicorn as deployed: gunicorn.conf.py's workers, TRUSTED_PROXY_COUNT=1, limits on."""
    server = Server(sqlite_url(tmp_path), mail_port=free_port(), log_dir=tmp_path,
                    workers=None, env={"TRUSTED_PROXY_COUNT": "1", "RATELIMIT_ENABLED": "true",
                                       "RATELIMIT_REGISTRATION": "1/minute"})
    with server:
        yield server


def sign_up(url: str, n: int, forged_ip: str):
    return request("POST", url, {"username": f"x{n}", "email": f"x{n}@x.io",
                                 "password": PASSWORD}, headers={"X-Forwarded-For": forged_ip})


def test_nginx_in_front_keeps_serving_during_a_slow_header_attack(gunicorn, tmp_path):
    require_nginx()
    with Nginx(tmp_path / "nginx", gunicorn.port) as nginx:
        with SlowClients(nginx.port):
            time.sleep(TRICKLE_SECONDS + 1)  # every slow socket is mid-header by now
            results = [timed_get(nginx.url("/healthz")) for _ in range(10)]
            assert [status for status, _ in results] == [200] * 10, results
            assert max(elapsed for _, elapsed in results) < 2
            r = request("GET", nginx.url("/readyz"), timeout=3)
            assert r.status == 200 and r.json()["status"] == "ready"
            # nginx's request id reaches regapp and comes back.
            assert re.fullmatch(r"[0-9a-f]{32}", r.headers["X-Request-ID"])

        # X-Forwarded-For is nginx's, not the client's: forged addresses share one bucket
        # (1/minute per gunicorn worker, two workers: at most two get through).
        answers = [sign_up(nginx.url("/api/register/"), n, f"203.0.113.{n}").status
                   for n in range(4)]
        assert answers.count(201) <= 2 and answers.count(429) >= 2, answers


def test_bare_gunicorn_stalls_and_trusts_a_forged_address(gunicorn):
    """The contrast: the same attack straight at gunicorn, and X-Forwarded-For forged."""
    answers = [sign_up(gunicorn.url("/api/register/"), n, f"203.0.113.{n}").status
               for n in range(4)]
    assert answers == [201] * 4  # TRUSTED_PROXY_COUNT=1 without the proxy: spoofable
    # Each worker accepts whatever it wins: on a busy machine one worker can win all 64
    # slow sockets, and the other is left free. A stall in any of three attacks shows it.
    tries = []
    for _ in range(3):
        with SlowClients(gunicorn.port):
            time.sleep(TRICKLE_SECONDS + 1)
            status, elapsed = timed_get(gunicorn.url("/healthz"), timeout=3)
        tries.append((status, elapsed))
        if status is None and elapsed >= 2.9:
            break
    assert tries[-1][0] is None and tries[-1][1] >= 2.9, tries
