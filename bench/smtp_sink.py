"""A counting SMTP sink for the bench, in a process of its own (asyncio, no aiosmtpd).

    python bench/smtp_sink.py PORT

Accepts every message (EHLO advertises PIPELINING and 8BITMIME and the sink
reads pipelined commands), keeps for each one the recipient, the arrival time
and the confirmation link path and code found in its text, and answers
commands on stdin, one line each, with one line on stdout:

    count PREFIX          distinct recipients starting with PREFIX received so far
    span PREFIX           "first last count" arrival times (monotonic) for PREFIX
    delay SECONDS         wait this long before each message's 250 (0: instant)
    dump PREFIX PATH      write "email<TAB>link path<TAB>code" lines for PREFIX
    quit
Loopback only.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time

LINK_RE = re.compile(rb"https?://[^/\s]+(/\S*confirm-email/\?token_id=[A-Za-z0-9_.\-]+)")
CODE_RE = re.compile(rb"^\s*([0-9]{6})\s*$", re.M)


class Sink:
    def __init__(self):
        self.delay = 0.0
        self.received: dict[str, tuple[float, bytes, bytes]] = {}  # rcpt -> (t, link, code)

    async def session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        write = writer.write
        write(b"220 bench-sink ESMTP\r\n")
        rcpts: list[str] = []
        try:
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    write(b"250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                          b"250 SIZE 10485760\r\n")
                elif verb == b"MAIL":
                    rcpts = []
                    write(b"250 OK\r\n")
                elif verb == b"RCPT":
                    rcpts.append(line.partition(b":")[2].strip().strip(b"<>").decode("ascii",
                                                                                        "replace"))
                    write(b"250 OK\r\n")
                elif verb == b"DATA":
                    write(b"354 go ahead\r\n")
                    data = await reader.readuntil(b"\r\n.\r\n")
                    if self.delay:
                        await writer.drain()
                        await asyncio.sleep(self.delay)
                    self.record(rcpts, data)
                    write(b"250 accepted\r\n")
                elif verb == b"RSET" or verb == b"NOOP":
                    rcpts = []
                    write(b"250 OK\r\n")
                elif verb == b"QUIT":
                    write(b"221 bye\r\n")
                    break
                else:
                    write(b"502 not implemented\r\n")
                await writer.drain()
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def record(self, rcpts: list[str], data: bytes) -> None:
        link = LINK_RE.search(data)
        code = CODE_RE.search(data)
        now = time.monotonic()
        for rcpt in rcpts:
            self.received.setdefault(rcpt, (now, link.group(1) if link else b"",
                                            code.group(1) if code else b""))

    def command(self, line: str) -> str:
        verb, _, rest = line.strip().partition(" ")
        if verb == "count":
            return str(sum(1 for rcpt in self.received if rcpt.startswith(rest)))
        if verb == "span":
            times = [t for rcpt, (t, _, _) in self.received.items() if rcpt.startswith(rest)]
            return f"{min(times, default=0)} {max(times, default=0)} {len(times)}"
        if verb == "delay":
            self.delay = float(rest)
            return "ok"
        if verb == "dump":
            prefix, _, path = rest.partition(" ")
            with open(path, "w") as out:
                for rcpt, (_, link, code) in self.received.items():
                    if rcpt.startswith(prefix) and link:
                        out.write(f"{rcpt}\t{link.decode()}\t{code.decode()}\n")
            return "ok"
        return "?"


async def main(port: int) -> None:
    sink = Sink()
    server = await asyncio.start_server(sink.session, "127.0.0.1", port, backlog=256)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    print("ready", flush=True)
    async with server:
        while line := await stdin.readline():
            text = line.decode().strip()
            if text == "quit":
                break
            print(sink.command(text), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
