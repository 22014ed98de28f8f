"""Development SMTP sink: prints every message it receives, decoded and readable.

    python devtools/mailsink.py [PORT] [HTML_DIR]   (``make mailsink``; ``make run`` starts it too)

The text part is printed; the HTML part is saved to a file in HTML_DIR (default: a
new temporary folder) whose path is printed, to open in a browser.
"""

import email
import email.policy
import itertools
import re
import sys
import tempfile
import time
from pathlib import Path

from aiosmtpd.controller import Controller


class PrintingHandler:
    """Print the headers that matter and the text part; save the HTML part."""

    def __init__(self, html_dir: Path):
        self.html_dir = html_dir
        self.numbers = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        print("=" * 72)
        for name in ("Message-ID", "From", "To", "Subject"):
            print(f"{name}: {msg[name]}")
        print()
        print(body.get_content().replace("\r\n", "\n") if body is not None
              else "(no text part)")
        if html is not None:
            slug = re.sub(r"[^a-z0-9]+", "-", str(msg["Subject"] or "message").lower()).strip("-")
            path = self.html_dir / f"{next(self.numbers):04d}-{slug[:40] or 'message'}.html"
            path.write_text(html.get_content(), encoding="utf-8")
            print(f"HTML part saved to {path}")
        sys.stdout.flush()
        return "250 Message accepted for delivery"


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8025
    html_dir = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(
        tempfile.mkdtemp(prefix="regapp-mail-"))
    html_dir.mkdir(parents=True, exist_ok=True)
    controller = Controller(PrintingHandler(html_dir), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"mail sink listening on 127.0.0.1:{port}; HTML parts go to {html_dir}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
