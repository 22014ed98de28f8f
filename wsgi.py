"""gunicorn entry point: ``gunicorn wsgi:app``; each worker starts its mail dispatcher."""

from regapp import create_app
from regapp.core import outbox

app = create_app()
outbox.ensure_dispatcher(app)


@app.before_request
def _dispatcher_alive():
    # gunicorn.conf.py starts it in each worker; this covers servers that don't read
    # that file (a thread started before fork() is gone in the worker).
    outbox.ensure_dispatcher(app)
