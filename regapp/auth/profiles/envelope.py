"""The `envelope` profile (seed 001): ``{results, message, error, error_code, status}``.

Placeholder: the registration adapter is built in the profiles issue.
"""

from __future__ import annotations

from flask import Blueprint

from .base import register_errors
from .drf import DetailProfile


class EnvelopeProfile(DetailProfile):
    name = "envelope"


profile = EnvelopeProfile()
bp = Blueprint("envelope", __name__)
register_errors(bp, profile)
