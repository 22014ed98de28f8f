"""The profile adapters, found by their own declarations.

Every module of this package that defines ``PROFILE`` (a ``ProfileSpec``) is a
profile; ``REGAPP_PROFILE_MODULES`` names more modules, anywhere, to add.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import ProfileSpec


def discover(extra_modules=()) -> dict[str, ProfileSpec]:
    """``{name: spec}`` of this package's profiles, then of ``extra_modules``."""
    names = [f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__)]
    found: dict[str, ProfileSpec] = {}
    for module_name in [*names, *extra_modules]:
        spec = getattr(importlib.import_module(module_name), "PROFILE", None)
        if not isinstance(spec, ProfileSpec):
            continue
        if spec.name in found and found[spec.name] is not spec:
            raise RuntimeError(f"two profiles are named {spec.name!r}")
        found[spec.name] = spec
    return found


ALL = discover()
# The profiles REGAPP_PROFILES can name (every profile that is not shared).
PROFILES = {name: spec for name, spec in ALL.items() if not spec.shared}
