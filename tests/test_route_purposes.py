"""Every /api/ and page route that changes state declares its rate-limit purpose.

State changes: any POST (PUT, PATCH, DELETE) route, and any GET route that
confirms an address. The latter is found by trying: each GET route is called
with a fresh user's valid token and code in every parameter a route reads, and
the routes after which the user is confirmed must declare a purpose.
"""

from __future__ import annotations

import sqlalchemy as sa

from regapp.auth import limits
from regapp.extensions import db
from regapp.models import User

PASSWORD = "Str0ng-passphrase"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}
KNOWN_CONFIRMING_GETS = {"auth.drf.confirm_email", "auth.jsonapi.verification"}


def checked_rules(app):
    """The /api/ and page routes (everything but static files)."""
    return [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]


def test_every_state_changing_method_route_declares_a_purpose(app):
    missing = [f"{rule.endpoint} {rule.rule}" for rule in checked_rules(app)
               if rule.methods & WRITES and not limits.purpose(rule.endpoint, app)]
    assert not missing, f"routes without @limits.declare / route(..., purpose): {missing}"


def confirmed(app, email) -> bool:
    with app.app_context():
        return bool(db.session.execute(
            sa.select(User.is_email_confirmed).where(User.email == email)).scalar_one())


def test_every_get_route_that_confirms_declares_a_purpose(app, client, last_confirmation):
    confirming = set()
    for number, rule in enumerate(checked_rules(app)):
        if "GET" not in rule.methods or rule.arguments:
            continue
        email = f"probe{number}@example.org"
        r = client.post("/api/register/", json={
            "username": f"probe{number}", "email": email, "password": PASSWORD})
        assert r.status_code == 201, r.get_json()
        _, token, code = last_confirmation(to=email)
        client.get(rule.rule, query_string={
            "token_id": token, "email_token": token, "token": token, "email": email,
            "code": code})
        if confirmed(app, email):
            confirming.add(rule.endpoint)
    assert KNOWN_CONFIRMING_GETS <= confirming  # the probe itself works
    missing = sorted(e for e in confirming if not limits.purpose(e, app))
    assert not missing, f"GET routes that confirm without a declared purpose: {missing}"
