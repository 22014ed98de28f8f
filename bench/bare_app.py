"""The yardstick: a bare Flask app under the same gunicorn settings as regapp.

    gunicorn bench.bare_app:app      (gunicorn.conf.py read from the working directory)

``POST /echo`` parses a JSON body and answers 201 with a small JSON document (what
a sign-up does, without validation, hashing, database or mail); ``GET /ping``
answers 200 with JSON (the confirm routes' yardstick).
"""

from flask import Flask
from flask import jsonify
from flask import request

app = Flask(__name__)


@app.post("/echo")
def echo():
    data = request.get_json(force=True, silent=True) or {}
    return jsonify({"id": 1, "username": data.get("username"), "email": data.get("email")}), 201


@app.get("/ping")
def ping():
    return jsonify({"ok": True})
