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
    for module_name in names:
        spec = getattr(importlib.import_module(module_name), "PROFILE", None)
        if isinstance(spec, ProfileSpec):
            _add(found, spec)
    for module_name in extra_modules:
        _add(found, _extra_profile(module_name))
    return found


def _extra_profile(module_name: str) -> ProfileSpec:
    """The ``PROFILE`` of a module named by ``REGAPP_PROFILE_MODULES``; a one-line
    ConfigError when it cannot be imported or declares none."""
    from config import ConfigError  # noqa: PLC0415 - config.py sits beside the package
    from config import shown  # noqa: PLC0415

    what = f"REGAPP_PROFILE_MODULES={shown(module_name)} is not accepted"
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{what}: cannot import it ({reason}); expected dotted names "
                          "of importable modules that each declare PROFILE") from None
    spec = getattr(module, "PROFILE", None)
    if not isinstance(spec, ProfileSpec):
        raise ConfigError(f"{what}: the module declares no PROFILE (a ProfileSpec)")
    return spec


def _add(found: dict, spec: ProfileSpec) -> None:
    if spec.name in found and found[spec.name] is not spec:
        from config import ConfigError  # noqa: PLC0415 - config.py sits beside the package

        raise ConfigError(f"REGAPP_PROFILE_MODULES is not accepted: two profiles are named "
                          f"{spec.name!r}; expected modules whose profiles have new names")
    found[spec.name] = spec


ALL = discover()
# The profiles REGAPP_PROFILES can name (every profile that is not shared).
PROFILES = {name: spec for name, spec in ALL.items() if not spec.shared}
