"""Password policy (Django's four default validators) and argon2id hashing."""

from __future__ import annotations

import pytest

from config import DevelopmentConfig
from regapp import create_app
from regapp.core.passwords import PASSWORD_MAX_LENGTH
from regapp.core.passwords import DjangoPolicy
from regapp.core.passwords import MinLengthPolicy
from regapp.core.passwords import common_passwords
from regapp.core.passwords import hash_password
from regapp.core.passwords import verify_password

TESTCLIENT = {"username": "testclient", "email": "testclient@example.com",
              "first_name": "Test", "last_name": "Client"}
SHORT = ("password_too_short", {"min_length": 8})
COMMON = ("password_too_common", {})
NUMERIC = ("password_entirely_numeric", {})


def similar(verbose_name):
    return ("password_too_similar", {"verbose_name": verbose_name})


# Expected values were produced by Django 5.2's own validate_password() with the
# four default validators, in settings order (see Django's
# tests/auth_tests/test_validators.py for the cases marked "django").
DJANGO_CASES = [
    ("sufficiently-long", {}, []),                      # django
    ("django4242", {}, []),                             # django (min_length 8 here)
    ("a-safe-password", {}, []),                        # django
    ("password", {}, [COMMON]),                         # django
    ("godzilla", {}, [COMMON]),                         # django
    ("asdfjkl:", {}, [COMMON]),                         # django: common "hexed" codes
    ("&#2336:", {}, [SHORT, COMMON]),                   # django: common "hexed" codes
    ("GODZILLA", {}, [COMMON]),                         # the list is compared lowercased
    (" godzilla ", {}, [COMMON]),                       # ...and stripped
    ("Password1", {}, [COMMON]),
    ("short", {}, [SHORT]),
    ("1234567", {}, [SHORT, COMMON, NUMERIC]),          # django
    ("12345678", {}, [COMMON, NUMERIC]),                # django
    ("42424242", {}, [NUMERIC]),                        # django
    ("123", {}, [SHORT, COMMON, NUMERIC]),
    ("\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669", {}, [NUMERIC]),  # str.isdigit
    ("\uff11\uff12\uff13\uff14\uff15\uff16\uff17\uff18", {}, [NUMERIC]),
    ("\U0001f525" * 8, {}, []),                         # length counts code points
    ("\U0001f525" * 7, {}, [SHORT]),
    ("testclient", {}, []),                             # django: no user, no similarity
    ("testclient", TESTCLIENT, [similar("username")]),  # django
    ("example.com", TESTCLIENT, [similar("email address")]),  # django: a part of the email
    ("foobar", {**TESTCLIENT, "username": "foobar"},    # django test_validate_property
     [similar("username"), SHORT, COMMON]),
    ("TestClient99", {"username": "testclient"}, [similar("username")]),
    ("client-test", {"first_name": "Test", "last_name": "Client"}, [similar("last name")]),
    ("client", {"last_name": "Client", "username": None, "first_name": ""},
     [similar("last name"), SHORT]),
    ("1234", {"username": "1234", "email": "x@example.com"},  # all four, in Django's order
     [similar("username"), SHORT, COMMON, NUMERIC]),
    ("abababababababababab", {"username": "ab"}, []),   # Django's length-ratio shortcut
    ("jane.doe.1990", {"email": "jane.doe@example.com"}, []),
    ("mikes-password", {"username": "mike", "email": "mike@example.org"}, []),
    ("Str0ng-passphrase", {"username": "u", "email": "u@example.com"}, []),
]


def failures(errors):
    assert all(e.field == "password" for e in errors)
    return [(e.code, e.params) for e in errors]


@pytest.mark.parametrize(("password", "attrs", "expected"), DJANGO_CASES)
def test_django_policy_matches_django(password, attrs, expected):
    assert failures(DjangoPolicy().validate(password, attrs)) == expected


def test_similarity_uses_the_profiles_verbose_names():
    policy = DjangoPolicy(verbose_names={"username": "login"})
    assert failures(policy.validate("testclient", TESTCLIENT)) == [similar("login")]
    assert failures(policy.validate("example.com", TESTCLIENT)) == [similar("email address")]


def test_common_list_is_djangos_lowercased_list():
    passwords = common_passwords()
    assert len(passwords) == 19640  # Django 5.2 ships 19,640 entries
    assert all(p == p.lower() for p in passwords)  # django test_validate_django_supplied_file


def test_password_too_long_is_checked_before_anything_expensive():
    at_limit = "x" * (PASSWORD_MAX_LENGTH - 2) + "-9"
    assert DjangoPolicy().validate(at_limit, TESTCLIENT) == []
    too_long = "1" * (PASSWORD_MAX_LENGTH + 1)
    assert failures(DjangoPolicy().validate(too_long, TESTCLIENT)) == [
        ("password_too_long", {"max_length": PASSWORD_MAX_LENGTH})]


def test_min_length_policy():
    assert failures(MinLengthPolicy(6).validate("12345", {})) == [
        ("password_too_short", {"min_length": 6})]
    assert MinLengthPolicy(6).validate("kw8mP2", {}) == []
    # Every profile refuses Django's common-password list (CONTRACT.md, ASVS 5.0 6.2.4).
    assert failures(MinLengthPolicy(6).validate("123456", {})) == [("password_too_common", {})]


# A 64-character passphrase with spaces, emoji and CJK (SECURITY A8/A12).
PASSPHRASE = ("correct horse \U0001f40e battery staple \U0001f50b "
              "\u6b63\u3057\u3044\u99ac\u306e\u96fb\u6c60\u306e\u91d8 and a few more words!")


@pytest.fixture(scope="module")
def testing_app():
    return create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})


@pytest.fixture
def default_app(tmp_path, monkeypatch):
    """The development config's real argon2 cost (not TestingConfig's cheap one)."""
    for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM"):
        monkeypatch.delenv(name, raising=False)

    class DefaultCost(DevelopmentConfig):
        SQLALCHEMY_DATABASE_URI = "sqlite:///" + str(tmp_path / "default.sqlite")

    return create_app(DefaultCost)


def test_passphrase_is_accepted_by_every_policy():
    assert len(PASSPHRASE) == 64
    attrs = {"username": "horse", "email": "horse@example.com"}
    assert DjangoPolicy().validate(PASSPHRASE, attrs) == []
    assert MinLengthPolicy(6).validate(PASSPHRASE, attrs) == []


def test_default_config_hashes_with_argon2id_asvs_parameters(default_app):
    with default_app.app_context():
        stored = hash_password(PASSPHRASE)
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert verify_password(stored, PASSPHRASE) == (True, None)


def test_testing_config_hashes_cheaply(testing_app):
    with testing_app.app_context():
        assert hash_password("x").startswith("$argon2id$v=19$m=64,t=1,p=1$")


def test_weaker_hash_is_upgraded_on_verify(testing_app, default_app):
    with testing_app.app_context():
        cheap = hash_password(PASSPHRASE)
    with default_app.app_context():
        ok, new_hash = verify_password(cheap, PASSPHRASE)
        assert ok is True
        assert new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
        assert verify_password(new_hash, PASSPHRASE) == (True, None)
        # A wrong password never yields a replacement hash.
        assert verify_password(cheap, PASSPHRASE + "x") == (False, None)


def test_hashes_are_salted_and_never_contain_the_password(testing_app):
    with testing_app.app_context():
        first, second = hash_password("Secret-pass-1"), hash_password("Secret-pass-1")
    assert first != second
    assert "Secret-pass-1" not in first


@pytest.mark.parametrize(("stored", "given"), [
    ("pass word", "pass word "),                        # never stripped
    (" secret-pass", "secret-pass"),
    ("Secret-pass", "secret-pass"),                     # never lowercased
    ("a" * 72 + "tail-one", "a" * 72 + "tail-two"),     # never truncated (bcrypt's 72 bytes)
    ("\u00e9" * 40, "\u00e9" * 36 + "e" * 8),            # 80 bytes, first 72 shared
    ("x" * 1023 + "1", "x" * 1023 + "2"),
])
def test_verify_rejects_near_misses(testing_app, stored, given):
    with testing_app.app_context():
        assert verify_password(hash_password(stored), given) == (False, None)
        assert verify_password(hash_password(stored), stored) == (True, None)


@pytest.mark.parametrize(("set_as", "verify_as"), [
    ("caf\u00e9-au-lait", "cafe\u0301-au-lait"),        # precomposed vs decomposed
    ("cafe\u0301-au-lait", "caf\u00e9-au-lait"),
    ("\uff50\uff41\uff53\uff53-word", "pass-word"),     # fullwidth folds under NFKC
])
def test_nfkc_is_applied_at_set_and_verify_time(testing_app, set_as, verify_as):
    with testing_app.app_context():
        assert verify_password(hash_password(set_as), verify_as) == (True, None)


@pytest.mark.parametrize("garbage", [
    "", "garbage", "$argon2id$", "$argon2id$v=19$m=abc", "\x00", "\u00e9t\u00e9",
    "pbkdf2_sha256$1000000$salt$aGFzaA==",
    "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
    None, 42, b"$argon2id$",
])
def test_verify_never_raises_on_a_garbage_hash(testing_app, garbage):
    with testing_app.app_context():
        assert verify_password(garbage, "Str0ng-passphrase") == (False, None)


def test_verify_never_raises_on_a_strange_password(testing_app):
    with testing_app.app_context():
        stored = hash_password("Str0ng-passphrase")
        for given in ("\ud800", None, 12345678, ""):
            assert verify_password(stored, given) == (False, None)
        truncated = stored[:-6]
        assert verify_password(truncated, "Str0ng-passphrase") == (False, None)
