"""The profile adapters, by name."""

from . import common
from . import drf
from . import jsonapi
from . import laravel

PROFILES = {
    "drf": drf,
    "laravel": laravel,
    "jsonapi": jsonapi,
}
# URL prefixes (under /api) that belong to a profile, for errors raised by routing.
PATH_PREFIXES = [
    ("/api/register", "drf"),
    ("/api/confirm-email", "drf"),
    ("/api/users/register", "laravel"),
    ("/api/users/validation", "laravel"),
    ("/api/users/registration", "jsonapi"),
    ("/api/users/verification", "jsonapi"),
]
COMMON = common
