"""Where adapters and extra source kinds come from.

Adapters are found under the entry-point group ``stadtlink.adapters`` (an integrator's package
registers ``myfamily = "my_pkg:ADAPTER"``), in ``STADTLINK_EXTRA_ADAPTERS`` (comma-separated
``module:attribute`` references, for development without packaging) and through
:func:`register_adapter` (tests, embedding). A plugin that fails to import is reported, never fatal.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Callable

from .adapter import AdapterSpec
from .errors import ConfigError

GROUP = "stadtlink.adapters"

_registered: dict[str, AdapterSpec] = {}
_extra_sources: dict[str, tuple[type, Callable[..., Any]]] = {}


@dataclass(frozen=True)
class PluginError:
    name: str
    target: str
    error: str


def register_adapter(spec: AdapterSpec) -> AdapterSpec:
    """Make ``spec`` known to :func:`load_adapters` in this process."""
    if not isinstance(spec, AdapterSpec):
        raise TypeError("register_adapter needs an AdapterSpec")
    register_spec_models(spec)
    _registered[spec.name] = spec
    return spec


def unregister_adapter(name: str) -> None:
    _registered.pop(name, None)


def register_source(config_model: type, builder: Callable[..., Any]) -> None:
    """Add a source kind: ``config_model`` (pydantic, with a literal ``kind`` field) and
    ``builder(config, *, adapter, http_app=None) -> Source``."""
    _extra_sources[source_kind(config_model)] = (config_model, builder)


def source_kind(model: type) -> str:
    """The ``kind`` a source config model answers to (its default, else its Literal's value)."""
    field = model.model_fields["kind"]  # type: ignore[attr-defined]
    if isinstance(field.default, str):
        return field.default
    return getattr(field.annotation, "__args__", ())[0]


def extra_sources() -> dict[str, tuple[type, Callable[..., Any]]]:
    return dict(_extra_sources)


def _resolve(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def load_adapters() -> tuple[dict[str, AdapterSpec], list[PluginError]]:
    """Every installed adapter by name, and the plugins that could not be loaded."""
    found: dict[str, AdapterSpec] = {}
    errors: list[PluginError] = []
    targets: list[tuple[str, str]] = []
    try:
        for ep in entry_points(group=GROUP):
            targets.append((ep.name, ep.value))
    except Exception as exc:  # noqa: BLE001 - a broken distribution must not stop the CLI
        errors.append(PluginError("*", GROUP, f"{type(exc).__name__}: {exc}"))
    for ref in filter(None, (s.strip() for s in os.environ.get("STADTLINK_EXTRA_ADAPTERS", "").split(","))):
        targets.append((ref.rpartition(":")[2] or ref, ref))
    for name, target in targets:
        try:
            obj = _resolve(target)
        except Exception as exc:  # noqa: BLE001
            errors.append(PluginError(name, target, f"{type(exc).__name__}: {exc}"))
            continue
        if not isinstance(obj, AdapterSpec):
            errors.append(PluginError(name, target, f"is a {type(obj).__name__}, not an AdapterSpec"))
            continue
        found[obj.name] = obj
    found.update(_registered)
    for spec in list(found.values()):
        try:
            register_spec_models(spec)
        except Exception as exc:  # noqa: BLE001 - reported like an import failure
            errors.append(PluginError(spec.name, f"{spec.name}.models", f"{type(exc).__name__}: {exc}"))
            found.pop(spec.name, None)
    return found, errors


def register_spec_models(spec: AdapterSpec) -> None:
    """Make the Smart Data Models an adapter declares (``AdapterSpec.models``) known to the
    schemas registry, so the entity check and the context lookups of this process find them."""
    from stadtlink.schemas.registry import register_model

    for model in spec.models:
        register_model(model, origin=f"adapter {spec.name}")


def get_adapter(name: str) -> AdapterSpec:
    adapters, errors = load_adapters()
    if name in adapters:
        return adapters[name]
    broken = [e for e in errors if e.name == name]
    if broken:
        raise ConfigError(f"adapter {name!r} is installed but failed to load: {broken[0].error}")
    raise ConfigError(f"no adapter named {name!r} (installed: {', '.join(sorted(adapters)) or 'none'})")


def find_profile(profile: str, adapter: str | None = None) -> tuple[AdapterSpec, Any]:
    """The adapter owning ``profile`` (and the profile). Ambiguous names need ``adapter``."""
    if adapter is not None:
        spec = get_adapter(adapter)
        if profile not in spec.profiles:
            raise ConfigError(f"adapter {spec.name!r} has no profile {profile!r} "
                              f"(has: {', '.join(sorted(spec.profiles))})")
        return spec, spec.profiles[profile]
    adapters, _ = load_adapters()
    owners = [spec for spec in adapters.values() if profile in spec.profiles]
    if not owners:
        known = sorted({p for spec in adapters.values() for p in spec.profiles})
        raise ConfigError(f"no installed adapter has a profile {profile!r} (known: {', '.join(known) or 'none'})")
    if len(owners) > 1:
        raise ConfigError(f"profile {profile!r} exists in several adapters "
                          f"({', '.join(sorted(s.name for s in owners))}): name one with --adapter")
    return owners[0], owners[0].profiles[profile]


def build_source(config: Any, *, adapter: AdapterSpec, http_app=None):
    """Build a source from its config model (built-in kinds first, then registered ones)."""
    kind = getattr(config, "kind", None)
    if kind in _extra_sources:
        return _extra_sources[kind][1](config, adapter=adapter, http_app=http_app)
    from .sources import build_source as builtin  # type: ignore[attr-defined]

    return builtin(config, adapter=adapter, http_app=http_app)
