"""gunicorn entry point: ``gunicorn wsgi:app``; each worker starts its mail dispatcher."""

from regapp import create_app
from regapp.core import dispatcher

app = create_app()
dispatcher.ensure_dispatcher(app)


@app.before_request
def _dispatcher_alive():
    # gunicorn.conf.py starts it in each worker; this covers servers that don't read
    # that file (a thread started before fork() is gone in the worker).
    dispatcher.ensure_dispatcher(app)
