"""The `jwt` profile (seed 004): simplejwt's token pair and DRF's error bodies.

Placeholder: the registration adapter is built in the profiles issue.
"""

from __future__ import annotations

from flask import Blueprint

from .base import register_errors
from .drf import DetailProfile


class JwtProfile(DetailProfile):
    name = "jwt"


profile = JwtProfile()
bp = Blueprint("jwt", __name__)
register_errors(bp, profile)
