"""Development SMTP sink: prints every message it receives, decoded and readable.

    python devtools/mailsink.py [PORT]      (``make mailsink``; ``make run`` starts it too)
"""

import email
import email.policy
import sys
import time

from aiosmtpd.controller import Controller


class PrintingHandler:
    """Print the headers that matter and the text part of each message."""

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        print("=" * 72)
        for name in ("Message-ID", "From", "To", "Subject"):
            print(f"{name}: {msg[name]}")
        print()
        print(body.get_content() if body is not None else "(no text part)")
        sys.stdout.flush()
        return "250 Message accepted for delivery"


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8025
    controller = Controller(PrintingHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"mail sink listening on 127.0.0.1:{port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
