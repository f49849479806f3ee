"""Which Smart Data Models this process knows: the bundled ones and those adapter packages bring.

A model is a :class:`SmartDataModel`: its JSON Schema, the Smart Data Models common schemas that
schema references, its JSON-LD @context (file and canonical URL), where the files come from and
their licence. Everything that uses models — the entity check, ``stadtlink validate``, the
runtime check, the local broker's context store, the SensorThings mapping and the chart's
context server — asks this registry, so a package adds a model without touching the core.

How a model gets here:

* the bundled models (``schemas/bundled.py``) are registered at import;
* an installed package names its models under the entry-point group ``stadtlink.models``
  (``waste = "stadtlink_waste.models:MODELS"``: a :class:`SmartDataModel`, an iterable of them or a
  callable returning either); they are loaded on the first question asked;
* an adapter's ``AdapterSpec.models`` are registered by the adapter runtime when it loads the spec
  (the runtime lives above this package: ``stadtlink.schemas`` never imports adapters);
* :func:`register_model` (tests, embedding).

A type is registered once: registering a different definition for a known type raises
:class:`ModelConflict` (a package cannot silently replace a bundled model); the identical
definition again is a no-op. A plugin that fails to load is reported by :func:`plugin_errors`
and logged, never fatal.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, Iterable

from . import bundled

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "stadtlink.models"


@dataclass(frozen=True)
class SmartDataModel:
    """One Smart Data Model: the files that define it and where they come from.

    ``type``         the NGSI-LD entity type (``"WasteContainer"``)
    ``schema``       its ``schema.json`` (JSON Schema 2020-12 of the keyValues form)
    ``context``      its JSON-LD @context file, a local copy of ``context_url``
    ``context_url``  the canonical URL of that @context (what entities name in ``Link``)
    ``source``       where the files were taken from (``"smart-data-models/dataModel.X@<commit>"``)
    ``licence``      the licence file of the model's files
    ``common``       the common schema files its ``$ref``s reach, each registered under its ``$id``
    """

    type: str
    schema: Path
    context: Path
    context_url: str
    source: str
    licence: Path
    common: tuple[Path, ...] = ()

    def problems(self) -> list[str]:
        """What is wrong with this declaration (empty = usable)."""
        out: list[str] = []
        if not isinstance(self.type, str) or not self.type or not self.type.isidentifier():
            out.append(f"type {self.type!r} is not a plain name")
        if not isinstance(self.context_url, str) or not self.context_url.startswith(("http://", "https://")):
            out.append(f"context_url {self.context_url!r} is not an http(s) URL")
        for label, path in (("schema", self.schema), ("context", self.context), ("licence", self.licence),
                            *(("common", p) for p in self.common)):
            if not isinstance(path, Path):
                out.append(f"{label} {path!r} is not a pathlib.Path")
            elif not path.is_file():
                out.append(f"{label} file {path} does not exist")
        if not out:
            for label, path in (("schema", self.schema), ("context", self.context),
                                *(("common", p) for p in self.common)):
                try:
                    doc = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as exc:
                    out.append(f"{label} file {path} is not JSON: {exc}")
                    continue
                if label == "context" and not (isinstance(doc, dict) and isinstance(doc.get("@context"), dict)):
                    out.append(f"context file {path} has no top-level @context object of terms")
                if label == "common" and not (isinstance(doc, dict) and isinstance(doc.get("$id"), str)):
                    out.append(f"common schema {path} has no $id (it is registered under its $id)")
        return out


class ModelConflict(ValueError):
    """A second, different definition of a registered model type."""


_lock = threading.RLock()
_models: dict[str, SmartDataModel] = {}
_origin: dict[str, str] = {}
_plugin_errors: list[tuple[str, str]] = []
_discovered = False
_version = 0
_on_unregister: list[Callable[[], None]] = []


def version() -> int:
    """Grows with every registration: caches built from the registry key on it."""
    return _version


def register_model(model: SmartDataModel, *, origin: str = "register_model") -> SmartDataModel:
    """Make ``model`` known to this process (see the module docstring for the rules)."""
    global _version
    if not isinstance(model, SmartDataModel):
        raise TypeError(f"register_model needs a SmartDataModel, got {type(model).__name__}")
    problems = model.problems()
    if problems:
        raise ValueError(f"model {model.type!r} ({origin}) cannot be registered: " + "; ".join(problems))
    with _lock:
        known = _models.get(model.type)
        if known is not None:
            if _same(known, model):
                return known
            raise ModelConflict(
                f"model {model.type!r} from {origin} differs from the one already registered by "
                f"{_origin.get(model.type, '?')} ({known.schema}): a type has one definition")
        _models[model.type] = model
        _origin[model.type] = origin
        _version += 1
    return model


def _same(a: SmartDataModel, b: SmartDataModel) -> bool:
    if a == b:
        return True
    # the same files reached through another path (a symlinked site-packages, an editable install)
    try:
        return (a.type, a.context_url) == (b.type, b.context_url) and all(
            x.resolve() == y.resolve() for x, y in zip((a.schema, a.context, a.licence, *a.common),
                                                       (b.schema, b.context, b.licence, *b.common))
        ) and len(a.common) == len(b.common)
    except OSError:
        return False


def unregister_model(type_: str) -> None:
    """Forget a model registered at run time (tests); bundled models stay."""
    global _version
    if type_ in bundled.BUNDLED_TYPES:
        raise ValueError(f"{type_!r} is a bundled model")
    with _lock:
        if _models.pop(type_, None) is not None:
            _origin.pop(type_, None)
            _version += 1
    for forget in _on_unregister:
        forget()


def on_unregister(callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever a model is unregistered (the entity check drops what it compiled)."""
    _on_unregister.append(callback)


def models_of(obj: Any) -> list[SmartDataModel]:
    """The models an entry point's object declares: a model, an iterable of them, or a callable
    returning either."""
    if callable(obj) and not isinstance(obj, SmartDataModel):
        obj = obj()
    if isinstance(obj, SmartDataModel):
        return [obj]
    if isinstance(obj, (str, bytes, dict)) or not isinstance(obj, Iterable):
        raise TypeError(f"is a {type(obj).__name__}, not a SmartDataModel or an iterable of them")
    out = list(obj)
    for item in out:
        if not isinstance(item, SmartDataModel):
            raise TypeError(f"holds a {type(item).__name__}, not a SmartDataModel")
    return out


def discover(*, force: bool = False) -> None:
    """Register the models of every ``stadtlink.models`` entry point (once per process)."""
    global _discovered
    with _lock:
        if _discovered and not force:
            return
        _discovered = True
        try:
            eps = list(entry_points(group=ENTRY_POINT_GROUP))
        except Exception as exc:  # noqa: BLE001 - a broken distribution must not stop the process
            _plugin_error("*", f"{type(exc).__name__}: {exc}")
            return
        for ep in eps:
            origin = f"entry point {ep.name} = {ep.value}"
            try:
                for model in models_of(ep.load()):
                    register_model(model, origin=origin)
            except Exception as exc:  # noqa: BLE001 - reported, never fatal
                _plugin_error(origin, f"{type(exc).__name__}: {exc}")


def _plugin_error(origin: str, error: str) -> None:
    if (origin, error) not in _plugin_errors:
        _plugin_errors.append((origin, error))
        log.warning("Smart Data Model plugin %s not loaded: %s", origin, error)


def plugin_errors() -> list[tuple[str, str]]:
    """``(origin, error)`` of every model declaration that could not be registered."""
    discover()
    return list(_plugin_errors)


def registered_models() -> dict[str, SmartDataModel]:
    """Every known model by type (bundled, entry points, registered at run time)."""
    discover()
    with _lock:
        return dict(_models)


def model_for(type_: str) -> SmartDataModel | None:
    """The model of an entity type, or None."""
    model = _models.get(type_)
    if model is None and not _discovered:
        discover()
        model = _models.get(type_)
    return model


def model_origin(type_: str) -> str | None:
    """Who registered the type (``"bundled"``, an entry point, ``"adapter NAME"``...)."""
    discover()
    return _origin.get(type_)


_extensions: dict[str, dict[str, Path]] = {}


def register_context_extension(entity_type: str, context_url: str, context: Path, *,
                               origin: str = "register_context_extension") -> None:
    """Declare an extension @context for ``entity_type``: terms for attributes a mapper writes that
    the model's own @context does not define (under the declarer's own namespace, never another
    model's). The type's entities are then written with ``[<extensions>..., <model context>]`` —
    the model's context last, so it wins any term — and the vocabulary check, the local broker and
    the context server know the file. Registering the same URL again is a no-op."""
    global _version
    if not isinstance(context_url, str) or not context_url.startswith(("http://", "https://")):
        raise ValueError(f"extension of {entity_type!r} ({origin}): {context_url!r} is not an http(s) URL")
    try:
        doc = json.loads(Path(context).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"extension of {entity_type!r} ({origin}): {context} is not a JSON file: {exc}") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("@context"), dict)):
        raise ValueError(f"extension of {entity_type!r} ({origin}): {context} has no top-level @context object")
    with _lock:
        known = _extensions.setdefault(entity_type, {})
        if known.get(context_url) == Path(context):
            return
        known[context_url] = Path(context)
        _version += 1


def context_extensions(entity_type: str) -> dict[str, Path]:
    """URL → file of the extension @contexts declared for ``entity_type`` (in declaration order)."""
    return dict(_extensions.get(entity_type, {}))


def all_context_extensions() -> dict[str, Path]:
    """URL → file of every declared extension @context."""
    return {url: path for ext in list(_extensions.values()) for url, path in ext.items()}


def _register_bundled() -> None:
    for model, (repo, common) in bundled.MODELS.items():
        register_model(SmartDataModel(
            type=model,
            schema=bundled.PACKAGE_DIR / model / "schema.json",
            context=bundled.repository_context_file(repo),
            context_url=bundled.repository_context_url(repo),
            source=f"smart-data-models/{repo}@{bundled.REPOSITORY_COMMIT[repo]}",
            licence=bundled.PACKAGE_DIR / model / "LICENSE.md",
            common=tuple(bundled.COMMON_DIR / name for name in common),
        ), origin="bundled")
    for model, name in bundled.EXTENSION_FILES.items():
        register_context_extension(model, bundled.EXTENSION_BASE_URL + name, bundled.PACKAGE_DIR / "contexts" / name,
                                   origin="bundled")


_register_bundled()
