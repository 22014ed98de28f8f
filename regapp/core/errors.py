"""Domain errors: they carry codes and parameters, never final text."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field


class RegappError(Exception):
    """Base of every error the core raises; ``code`` is stable, text is the profile's."""

    code = "error"

    def __init__(self, **params):
        super().__init__(self.code)
        self.params = params


@dataclass(frozen=True)
class FieldError:
    """One problem with one canonical field (``email``, ``username``, ``password``...)."""

    field: str
    code: str
    params: dict = field(default_factory=dict)


class FieldErrors(RegappError):
    """Input was rejected; ``errors`` lists every problem found, in order."""

    code = "invalid"

    def __init__(self, errors):
        super().__init__()
        self.errors = list(errors)

    def codes(self) -> dict[str, list[str]]:
        """``{field: [code, ...]}``, handy in tests and logs."""
        out: dict[str, list[str]] = {}
        for err in self.errors:
            out.setdefault(err.field, []).append(err.code)
        return out


class TokenInvalid(RegappError):
    """The token is malformed, tampered with, for another purpose or another address."""

    code = "token_invalid"


class TokenExpired(RegappError):
    """The token or code was genuine but is older than its lifetime."""

    code = "token_expired"


class CodeMismatch(RegappError):
    """The 6-digit code does not match (or the address is unknown: same answer)."""

    code = "code_mismatch"


class TooManyAttempts(RegappError):
    """The code is dead after too many wrong guesses; a resend is needed."""

    code = "too_many_attempts"


class AlreadyConfirmed(RegappError):
    """The address was already confirmed."""

    code = "already_confirmed"


class UnknownAccount(RegappError):
    """No account matches (used by operator commands, never leaked over HTTP)."""

    code = "unknown_account"


class InvalidCredentials(RegappError):
    """Login failed: unknown account or wrong password (one answer for both)."""

    code = "invalid_credentials"
