"""Errors under /api/: always JSON (drf format on drf paths), never HTML, never a 500."""

import io
import json

import pytest
from sqlalchemy import func
from sqlalchemy import select
from werkzeug.datastructures import MultiDict

from regapp.core import registration
from regapp.extensions import db
from regapp.models import User

URL = "/api/register/"
PASSWORD = "Str0ng-passphrase"
VALID = {"username": "userName", "email": "user@gmail.com", "password": PASSWORD}
REQUIRED = {"username": ["This field is required."], "email": ["This field is required."],
            "password": ["This field is required."]}
NOT_STRING = "Not a valid string."
BAD_EMAIL = "Enter a valid email address."
NULL_CHARS = "Null characters are not allowed."
KIB = 1024


def user_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count(User.id)))


def assert_json(response, status, body=None):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert not response.data.lstrip().startswith(b"<")
    if body is not None:
        assert response.get_json() == body
    return response.get_json()


def raw(client, data, content_type="application/json", url=URL, **kwargs):
    return client.post(url, data=data, content_type=content_type, **kwargs)


def chunked(client, data, content_type, url=URL):
    """A body sent without Content-Length, as gunicorn passes chunked requests on."""
    return client.post(url, input_stream=io.BytesIO(data), content_type=content_type,
                       headers={"Transfer-Encoding": "chunked"},
                       environ_overrides={"wsgi.input_terminated": True})


# -- routing: 404 / 405 -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/nope", "/api/", "/api", "/api/register/extra",
                                  "/api/confirm-email/x", "/api/%ff", "/api/v0/register"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_unknown_api_path_is_json_404(client, path, method):
    r = client.open(path, method=method)
    assert_json(r, 404, {"detail": "Not found."})


def test_path_outside_api_may_be_html(client):
    r = client.get("/nope")
    assert r.status_code == 404
    assert r.mimetype == "text/html"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", URL, {"POST"}),
    ("PUT", URL, {"POST"}),
    ("PATCH", URL, {"POST"}),
    ("DELETE", URL, {"POST"}),
    ("FOO", URL, {"POST"}),
    ("POST", "/api/confirm-email/", {"GET", "HEAD"}),
    ("PUT", "/api/confirm-email/", {"GET", "HEAD"}),
    ("GET", "/api/resend-confirmation/", {"POST"}),
])
def test_wrong_method_is_json_405_with_allow(client, method, path, allowed):
    r = client.open(path, method=method)
    assert_json(r, 405, {"detail": f'Method "{method}" not allowed.'})
    allow = {m.strip() for m in r.headers["Allow"].split(",")}
    assert allowed <= allow and allow <= allowed | {"OPTIONS", "HEAD"}


# -- size ------------------------------------------------------------------------------

def padded_json(size):
    """A valid registration body of exactly ``size`` bytes (an ignored field pads it)."""
    body = json.dumps({**VALID, "pad": ""}).encode()
    return json.dumps({**VALID, "pad": "x" * (size - len(body))}).encode()


@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_body_over_64_kib_is_json_413(app, client, content_type):
    r = raw(client, b"a" * (64 * KIB + 1), content_type)
    assert_json(r, 413, {"detail": "Request body is too large."})
    assert user_count(app) == 0


def test_body_at_64_kib_is_read(app, client):
    data = padded_json(64 * KIB)
    assert len(data) == 64 * KIB
    assert raw(client, data).status_code == 201


@pytest.mark.config(MAX_CONTENT_LENGTH=KIB)
def test_the_limit_is_configuration(client):
    assert_json(raw(client, padded_json(KIB + 1)), 413)
    assert raw(client, padded_json(KIB)).status_code == 201


@pytest.mark.parametrize(("data", "content_type"), [
    (b'{"username": "' + b"a" * 70000 + b'"}', "application/json"),
    (b"username=u&email=u%40x.io&password=" + b"a" * 70000, "application/x-www-form-urlencoded"),
    (b"pad=" + b"a" * (64 * KIB - 4) + b"&username=u&email=u%40x.io&password=" + PASSWORD.encode(),
     "application/x-www-form-urlencoded"),
])
def test_streamed_body_over_the_limit_is_413_not_truncated(app, client, data, content_type):
    r = chunked(client, data, content_type)
    assert_json(r, 413, {"detail": "Request body is too large."})
    assert user_count(app) == 0


def test_streamed_body_under_the_limit_is_read(client):
    r = chunked(client, json.dumps(VALID).encode(), "application/json")
    assert r.status_code == 201


# -- body shape ---------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"{", b'{"email":', b"{'a': 1}", b"a=1", b'{"a" 1}',
                                  b'{"a":NaN}', b'{"a":Infinity}', b"[" * 5000 + b"]" * 5000,
                                  b'{"a":' + b"1" * 5000 + b"}", b"\xef\xbb\xbf{}"])
def test_malformed_json_is_a_drf_parse_error(app, client, data):
    body = assert_json(raw(client, data), 400)
    assert list(body) == ["detail"]
    assert body["detail"].startswith("JSON parse error - ")
    assert user_count(app) == 0


@pytest.mark.parametrize(("data", "name"), [(b"[]", "list"), (b'[{"email": "a@x.io"}]', "list"),
                                            (b'"x"', "str"), (b"123", "int"), (b"1.5", "float"),
                                            (b"true", "bool")])
def test_json_that_is_not_an_object(client, data, name):
    r = raw(client, data)
    assert_json(r, 400, {"non_field_errors": [
        f"Invalid data. Expected a dictionary, but got {name}."]})


def test_json_null_is_no_data(client):
    # DRF's answer to a null body (issue 11); tests/test_django_parity.py covers the routes.
    assert_json(raw(client, b"null"), 400, {"non_field_errors": ["No data provided"]})


@pytest.mark.parametrize("data", [b"\xff\xfe{}", b'{"username": "\xff"}', b"\x80",
                                  '{"username": "é"}'.encode("latin-1")])
def test_bytes_that_are_not_utf8(client, data):
    body = assert_json(raw(client, data), 400)
    assert body == {"detail": "JSON parse error - invalid encoding"}


@pytest.mark.parametrize(("content_type", "data"), [
    ("text/plain", json.dumps(VALID).encode()),
    ("application/xml", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM '
                        b'"file:///etc/passwd">]><x>&e;</x>'),
    ("text/html", b"<p>hi</p>"),
    ("application/octet-stream", b"\x00\x01"),
    ("application/jsonx", b"{}"),
])
def test_other_media_types_are_415(app, client, content_type, data):
    r = raw(client, data, content_type)
    assert_json(r, 415, {"detail": f'Unsupported media type "{content_type}" in request.'})
    assert b"passwd" not in r.data and b"root:" not in r.data
    assert user_count(app) == 0


def test_body_without_content_type_is_415(client):
    r = client.post(URL, data=json.dumps(VALID).encode(), content_type="")
    assert_json(r, 415)


@pytest.mark.parametrize(("data", "content_type"), [
    (b"", "application/json"), (b"  \n", "application/json"), (b"", None),
    (b"", "application/x-www-form-urlencoded"),
])
def test_empty_body_lists_the_required_fields(client, data, content_type):
    r = client.post(URL, data=data, content_type=content_type)
    assert_json(r, 400, REQUIRED)


def test_json_suffix_media_types_are_json(client):
    r = raw(client, json.dumps(VALID).encode(), "application/vnd.api+json")
    assert r.status_code == 201


def test_query_string_never_fills_the_body(app, client):
    r = client.post(URL, query_string=VALID, json={})
    assert_json(r, 400, REQUIRED)
    assert user_count(app) == 0


# -- parameter pollution (payload.py: a repeated field is a list -> type error) ------------

def test_duplicated_json_keys_are_a_type_error(app, client):
    data = (b'{"username": "a", "username": "b", "email": "a@x.io", "email": "b@x.io",'
            b' "password": "Str0ng-passphrase", "password": "Str0ng-passphrase"}')
    r = raw(client, data)
    assert_json(r, 400, {"username": [NOT_STRING], "email": [BAD_EMAIL],
                         "password": [NOT_STRING]})
    assert user_count(app) == 0


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data"])
def test_repeated_form_fields_are_a_type_error(app, client, content_type):
    data = MultiDict([("username", "u"), ("email", "a@x.io"), ("email", "b@x.io"),
                      ("password", PASSWORD)])
    r = client.post(URL, data=data, content_type=content_type)
    assert_json(r, 400, {"email": [BAD_EMAIL]})
    assert user_count(app) == 0


def test_repeated_unknown_field_is_ignored(client):
    r = raw(client, b'{"username": "u", "email": "u@x.io", "password": "Str0ng-passphrase",'
                    b' "x": 1, "x": 2}')
    assert r.status_code == 201


# -- characters databases refuse -----------------------------------------------------------

@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_lone_surrogates_are_rejected(app, client, field):
    value = {"username": "a\\ud800b", "email": "a\\ud800@x.io",
             "password": "Str0ng-\\udfff-passphrase"}[field]
    others = {k: v for k, v in VALID.items() if k != field}
    data = json.dumps(others)[:-1].encode() + f', "{field}": "{value}"}}'.encode()
    r = raw(client, data)
    assert_json(r, 400, {field: [BAD_EMAIL if field == "email" else NOT_STRING]})
    assert user_count(app) == 0


def test_surrogate_in_form_data_is_rejected(app, client):
    r = raw(client, b"username=%ED%A0%80&email=u%40x.io&password=Str0ng-passphrase",
            "application/x-www-form-urlencoded")
    assert r.status_code == 400 and list(assert_json(r, 400)) == ["username"]


@pytest.mark.parametrize("field", ["username", "email", "password"])
def test_nul_characters_are_rejected(app, client, field):
    data = {**VALID, field: VALID[field][:3] + "\x00" + VALID[field][3:]}
    r = client.post(URL, json=data)
    assert_json(r, 400, {field: [NULL_CHARS]})
    assert user_count(app) == 0


def test_nul_in_form_data_is_rejected(client):
    r = client.post(URL, data={**VALID, "password": "Str0ng\x00passphrase"})
    assert_json(r, 400, {"password": [NULL_CHARS]})


# -- the catch-all: an unexpected error is a JSON 500 that says nothing ---------------------

def test_unexpected_error_is_a_plain_json_500(client, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("connection to db-secret-host failed for user s3cr3t")

    monkeypatch.setattr(registration, "register", broken)
    r = client.post(URL, json=VALID)
    assert_json(r, 500, {"detail": "A server error occurred."})
    assert b"s3cr3t" not in r.data and b"Traceback" not in r.data


# -- nothing under /api/ is ever HTML or a 500 ------------------------------------------------

NASTY = [
    ("POST", URL, {"data": b"\x00" * 100, "content_type": "application/json"}),
    ("POST", URL, {"data": b"--x\r\nbroken", "content_type": "multipart/form-data; boundary=x"}),
    ("POST", URL, {"data": b"--x\r\nbroken", "content_type": "multipart/form-data"}),
    ("POST", URL, {"data": b"%ZZ=%ff&email=%ff", "content_type":
                   "application/x-www-form-urlencoded"}),
    ("POST", URL, {"data": b"{}", "content_type": "application/json; charset=utf-16"}),
    ("POST", URL, {"json": {"username": {"$ne": None}, "email": {"$gt": ""},
                            "password": [[]]}}),
    ("POST", "/api/resend-confirmation/", {"data": b"[", "content_type": "application/json"}),
    ("POST", "/api/resend-confirmation/", {"data": b"x", "content_type": "text/plain"}),
    ("POST", "/api/resend-confirmation/", {"json": {"email": "a\x00@x.io"}}),
    ("GET", "/api/confirm-email/?token_id=" + "A" * 10000, {}),
    ("GET", "/api/confirm-email/?token_id=..", {}),
    ("GET", "/api/confirm-email/?token_id=%ff%fe", {}),
    ("OPTIONS", URL, {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), NASTY)
def test_never_html_never_500(client, method, path, kwargs):
    r = client.open(path, method=method, **kwargs)
    assert r.status_code < 500
    if r.data:
        assert r.mimetype == "application/json"
