"""The OpenAPI document's email ``pattern`` says what regapp accepts: every address the
API accepts matches it (so a fuzzer's "schema-violating" address is really refused),
and the addresses a fuzzer draws from the document are mostly accepted ones."""

from __future__ import annotations

import re

import jsonschema_rs
import pytest
from hypothesis import HealthCheck
from hypothesis import Phase
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from regapp import create_app
from regapp.core.errors import FieldErrors
from regapp.core.identity import EMAIL_PATTERN
from regapp.core.identity import normalize_email

PATTERN = re.compile(EMAIL_PATTERN)
RUST = jsonschema_rs.validator_for({"type": "string", "pattern": EMAIL_PATTERN})
# Every character Python's str.strip() removes, and one it keeps (U+FEFF).
STRIPPED = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
SPACE = st.text(st.sampled_from(STRIPPED), max_size=2)


def accepted(value: str) -> bool:
    """What an Email field does: strip, then the core's check."""
    try:
        normalize_email(value.strip())
    except FieldErrors:
        return False
    return True


def matches(value: str) -> bool:
    python, rust = PATTERN.search(value) is not None, RUST.is_valid(value)
    assert python == rust, (ascii(value), python, rust)  # both dialects agree
    return python


@pytest.mark.parametrize("value", [
    "ada@example.com", "Ada.Lovelace@Example.COM", "a!#$%&'*+/=?^_`{|}~-z@x.io",
    "x@straße.de", "x@xn--strae-oqa.de", "x@sub-1.b.co.uk", " \t ada@example.com\n",
    "\u3000ada@example.com\x1c", "a@b.xn--p1ai", "a@例え.テスト", "a@b.museum",
])
def test_accepted_addresses_match(value):
    assert accepted(value), ascii(value)
    assert matches(value)


@pytest.mark.parametrize("value", [
    '"quoted"@example.com', "a..b@example.com", ".a@example.com", "a.@example.com",
    "ädа@example.com", "a@[127.0.0.1]", "a@localhost", "a@example", "a@example.c",
    "a@example.c0m", "a@-x.com", "a@x-.com", "a@x..com", "a@example.com.",
    "a@b.test", "a@b.TEST", "a@b.local", "a@b.localhost", "a@b.onion", "a@b.invalid",
    "a@b.arpa", "a b@example.com", "\ufeffa@example.com", "a@example.com\x00",
    "a@ex\u3002com", "@example.com", "a@", "", "a@b.-com", "a@b.co-",
])
def test_refused_addresses_do_not_match(value):
    assert not accepted(value), ascii(value)
    assert not matches(value)


ATEXT = st.sampled_from("abcXYZ019!#$%&'*+/=?^_`{|}~-.\"\\ (),:;<>@[]")
LABEL = st.text(st.sampled_from("abz09-ßеä例\u3002XK"), min_size=0, max_size=8)
TLD = st.sampled_from(["com", "de", "io", "c", "c0", "xn--p1ai", "xn--", "test", "local",
                       "TEST", "co-", "-co", "рф", "museum"])


@settings(max_examples=1500, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(SPACE, st.text(ATEXT, min_size=0, max_size=10), st.lists(LABEL, min_size=0, max_size=3),
       TLD, SPACE)
def test_everything_accepted_matches(before, local, labels, tld, after):
    value = f"{before}{local}@{'.'.join([*labels, tld])}{after}"
    if accepted(value):
        assert matches(value), ascii(value)
    elif not matches(value):
        pass  # refused and outside the pattern: as documented


@settings(max_examples=1000, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.emails(), SPACE, SPACE)
def test_hypothesis_addresses_accepted_match(email, before, after):
    value = before + email + after
    if accepted(value):
        assert matches(value), ascii(value)


def email_fields(node):
    """Every schema in the document that declares ``format: email``."""
    if isinstance(node, dict):
        if node.get("format") == "email":
            yield node
        for value in node.values():
            yield from email_fields(value)
    elif isinstance(node, list):
        for value in node:
            yield from email_fields(value)


def test_generated_addresses_are_mostly_accepted():
    """What schemathesis draws for the document's email fields."""
    schemathesis = pytest.importorskip("schemathesis")
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    document = app.test_client().get("/api/openapi.json").get_json()
    fields = list(email_fields(document))
    assert len(fields) >= 10 and all(prop["pattern"] == EMAIL_PATTERN for prop in fields)
    text = [prop for prop in fields if prop["type"] == "string"]
    raw = {"openapi": "3.1.0", "info": {"title": "t", "version": "1"}, "paths": {"/x": {
        "post": {"requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "required": ["email"],
                       "properties": {"email": text[0]}}}}},
                 "responses": {"200": {"description": "ok"}}}}}}
    operation = next(iter(schemathesis.openapi.from_dict(raw).get_all_operations())).ok()
    drawn = []

    @settings(max_examples=200, database=None, derandomize=True, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(operation.as_strategy())
    def draw(case):
        drawn.append(case.body["email"])

    draw()
    assert len(drawn) >= 100
    assert all(matches(value) for value in drawn)
    good = sum(accepted(value) for value in drawn)
    assert good >= 0.9 * len(drawn), [ascii(v) for v in drawn if not accepted(v)][:20]
