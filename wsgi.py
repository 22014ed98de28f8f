"""gunicorn entry point: ``gunicorn wsgi:app``; each worker starts its mail dispatcher.

``.env`` (and ``.flaskenv``) are read first, as ``flask`` does (python-dotenv; values
already in the environment win). A refused setting prints one line and exits with
status 4, gunicorn's "App failed to load": the master stops instead of restarting
workers that can never boot, and nobody has to read a traceback.
"""

import sys

from flask.cli import load_dotenv

from config import ConfigError

load_dotenv()

try:
    from regapp import create_app
    from regapp.core import dispatcher

    app = create_app()
except ConfigError as exc:
    print(f"Error: {exc.format_message()}", file=sys.stderr, flush=True)
    raise SystemExit(4) from None

dispatcher.ensure_dispatcher(app)


@app.before_request
def _dispatcher_alive():
    # gunicorn.conf.py starts it in each worker; this covers servers that don't read
    # that file (a thread started before fork() is gone in the worker).
    dispatcher.ensure_dispatcher(app)
