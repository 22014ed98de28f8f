"""The profile adapters, by name."""

from . import common
from . import drf
from . import envelope
from . import jsonapi
from . import jwt
from . import laravel

PROFILES = {
    "drf": drf,
    "envelope": envelope,
    "laravel": laravel,
    "jsonapi": jsonapi,
    "jwt": jwt,
}
# URL prefixes (under /api) that belong to a profile, for errors raised by routing.
PATH_PREFIXES = [
    ("/api/register", "drf"),
    ("/api/confirm-email", "drf"),
    ("/api/v1/", "envelope"),
    ("/api/users/register", "laravel"),
    ("/api/users/validation", "laravel"),
    ("/api/users/registration", "jsonapi"),
    ("/api/users/verification", "jsonapi"),
    ("/api/sign-up", "jwt"),
    ("/api/token", "jwt"),
]
COMMON = common
