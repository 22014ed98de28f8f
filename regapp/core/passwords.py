"""Password policies (one per profile) and argon2id hashing."""

from __future__ import annotations

import gzip
import re
import unicodedata
from difflib import SequenceMatcher
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError
from argon2.exceptions import VerificationError
from flask import current_app

from . import breach
from .errors import FieldError

PASSWORD_MAX_LENGTH = 1024


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """Django's list of 20,000 common passwords (lowercased), shipped as data."""
    data = resources.files("regapp").joinpath("data/common-passwords.txt.gz")
    with data.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as f:
        return frozenset(line.strip() for line in f)


class PasswordPolicy:
    """Base policy: only the upper length bound, which protects the hasher."""

    min_length = 1

    def validate(self, password: str, attrs: dict) -> list[FieldError]:
        """Return every failure for ``password``; ``attrs`` are the user's other fields."""
        if len(password) > PASSWORD_MAX_LENGTH:
            return [FieldError("password", "password_too_long",
                               {"max_length": PASSWORD_MAX_LENGTH})]
        return []


class DjangoPolicy(PasswordPolicy):
    """Django's four default validators, in Django's order, all failures together.

    ``verbose_names`` maps canonical attribute names to the model's verbose
    names, which appear in the similarity message.
    """

    min_length = 8
    max_similarity = 0.7
    attributes = ("username", "first_name", "last_name", "email")

    def __init__(self, verbose_names=None):
        self.verbose_names = {
            "username": "username",
            "first_name": "first name",
            "last_name": "last name",
            "email": "email address",
            **(verbose_names or {}),
        }

    def validate(self, password, attrs):
        errors = super().validate(password, attrs)
        if errors:
            return errors
        similar = self._similar_attribute(password, attrs)
        if similar:
            errors.append(FieldError("password", "password_too_similar",
                                     {"verbose_name": self.verbose_names[similar]}))
        if len(password) < self.min_length:
            errors.append(FieldError("password", "password_too_short",
                                     {"min_length": self.min_length}))
        if is_common(password):
            errors.append(FieldError("password", "password_too_common"))
        if password.isdigit():
            errors.append(FieldError("password", "password_entirely_numeric"))
        return errors

    def _similar_attribute(self, password, attrs):
        password = password.lower()
        for name in self.attributes:
            value = attrs.get(name)
            if not value or not isinstance(value, str):
                continue
            value_lower = value.lower()
            for part in re.split(r"\W+", value_lower) + [value_lower]:
                # Django's shortcut: a much longer password can't be similar.
                if (len(password) >= 10 * len(part)
                        and len(part) < self.max_similarity / 2 * len(password)):
                    continue
                ratio = SequenceMatcher(a=password, b=part).quick_ratio()
                if ratio >= self.max_similarity:
                    return name
        return None


class MinLengthPolicy(PasswordPolicy):
    """A minimum length (Rails' ``length: {minimum: 6}``, Laravel's ``min:8``), then
    the common-password list that every profile refuses (ASVS 5.0 6.2.4)."""

    def __init__(self, min_length):
        self.min_length = min_length

    def validate(self, password, attrs):
        errors = super().validate(password, attrs)
        if errors:
            return errors
        if len(password) < self.min_length:
            errors.append(FieldError("password", "password_too_short",
                                     {"min_length": self.min_length}))
        elif is_common(password):
            # Like Laravel's Password::uncompromised(): checked once the rest passes.
            errors.append(FieldError("password", "password_too_common"))
        return errors


def is_common(password: str) -> bool:
    """Django's test: the lowercased, stripped password is on the shipped list."""
    return password.lower().strip() in common_passwords()


def check(policy: PasswordPolicy, password: str, attrs: dict) -> list[FieldError]:
    """The profile's policy, then (only if it passes) the optional breach check."""
    errors = policy.validate(password, attrs)
    if not errors and breach.is_breached(password):
        errors.append(FieldError("password", "password_breached"))
    return errors


def _hasher() -> PasswordHasher:
    cfg = current_app.config
    return _hasher_for(cfg["ARGON2_TIME_COST"], cfg["ARGON2_MEMORY_COST"],
                       cfg["ARGON2_PARALLELISM"])


@lru_cache(maxsize=8)
def _hasher_for(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    # Built once per parameter set, not per request.
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost,
                          parallelism=parallelism)


def _prepare(password: str) -> str:
    # NFKC, the same at set and verify time: never lowercased, stripped or truncated.
    return unicodedata.normalize("NFKC", password)


def hash_password(password: str) -> str:
    """Hash with argon2id; the parameters are recorded in the hash itself."""
    return _hasher().hash(_prepare(password))


def verify_password(password_hash: str, password: str) -> tuple[bool, str | None]:
    """Check ``password``; return ``(ok, new_hash)`` where ``new_hash`` is set when
    the stored parameters are below the configured ones and should be replaced."""
    if not isinstance(password_hash, str) or not isinstance(password, str):
        return False, None
    hasher = _hasher()
    try:
        hasher.verify(password_hash, _prepare(password))
    except (VerificationError, InvalidHashError, ValueError):
        # ValueError: a non-ASCII hash string or an unencodable (surrogate) password.
        return False, None
    if hasher.check_needs_rehash(password_hash):
        return True, hasher.hash(_prepare(password))
    return True, None
