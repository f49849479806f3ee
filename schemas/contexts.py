"""The JSON-LD @context files: every registered model's context, the Smart Data Models common
context and stadtlink's compound context, each under its canonical URL (and the
smart-data-models.github.io aliases of the bundled ones).

``CONTEXTS`` (URL → local file) is a live view of the model registry, so the runtime's ``Link``
header, the local broker's context store and the chart's context server also know the contexts
of models an adapter package registers. Nothing here is fetched: every file is local.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from . import registry as _registry
from .bundled import (MODELS as _BUNDLED, PACKAGE_DIR, CONTEXT_DIR, repository_alias_urls,
                      repository_context_file, repository_context_url)
from .problems import UnknownModel

#: NGSI-LD core context; brokers add it implicitly (no local copy here)
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"

#: bundled repository → its canonical @context URL
REPOSITORY_CONTEXT_URL: dict[str, str] = {
    repo: repository_context_url(repo)
    for repo in dict.fromkeys([repo for repo, _ in _BUNDLED.values()] + ["data-models"])
}

#: stadtlink's compound default @context (AdapterSpec default): the bundled SDM contexts in one
#: list, in the order scripts/gen_contexts.py derives. A later context wins a term, and terms such
#: as ``refDevice`` expand differently per repository, so a single list cannot give every model
#: its own IRIs: entities of registered models are written with their own model's context
#: (:func:`type_context`); the compound one is the fallback for other types and a reader's context.
STADTLINK_CONTEXT_URL = (
    "https://raw.githubusercontent.com/stadtlink/stadtlink/main/schemas/contexts/stadtlink-context.jsonld"
)
STADTLINK_CONTEXT_FILE = PACKAGE_DIR / "contexts" / "stadtlink-context.jsonld"


def _bundled_contexts() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for repo, url in REPOSITORY_CONTEXT_URL.items():
        out[url] = repository_context_file(repo)
    for repo in REPOSITORY_CONTEXT_URL:
        for alias in repository_alias_urls(repo):
            out.setdefault(alias, repository_context_file(repo))
    out[STADTLINK_CONTEXT_URL] = STADTLINK_CONTEXT_FILE
    return out


_BUNDLED_CONTEXTS = _bundled_contexts()


@functools.lru_cache(maxsize=4)
def _all_contexts(version: int) -> dict[str, Path]:
    out = dict(_BUNDLED_CONTEXTS)
    for model in _registry.registered_models().values():
        out.setdefault(model.context_url, model.context)
    for url, path in _registry.all_context_extensions().items():
        out.setdefault(url, path)
    return out


def all_contexts() -> dict[str, Path]:
    """URL → local file of every @context this process knows (bundled and registered)."""
    _registry.discover()
    return _all_contexts(_registry.version())


class _LiveContexts(Mapping):
    """``CONTEXTS``: a read-only, always current view of :func:`all_contexts`."""

    def __getitem__(self, url: str) -> Path:
        return all_contexts()[url]

    def __iter__(self) -> Iterator[str]:
        return iter(all_contexts())

    def __len__(self) -> int:
        return len(all_contexts())

    def __repr__(self) -> str:
        return f"CONTEXTS({len(self)} @context URLs)"


#: @context URL → local file (live: includes contexts of models registered by packages)
CONTEXTS: Mapping[str, Path] = _LiveContexts()


def context_url(model_or_repo: str) -> str:
    """The @context URL for a model (``"ParkingSpot"``) or bundled repository
    (``"dataModel.Parking"``, ``"Parking"``, ``"data-models"``)."""
    model = _registry.model_for(model_or_repo)
    if model is not None:
        return model.context_url
    for repo in (model_or_repo, f"dataModel.{model_or_repo}"):
        if repo in REPOSITORY_CONTEXT_URL:
            return REPOSITORY_CONTEXT_URL[repo]
    known = sorted(_registry.registered_models()) + sorted(REPOSITORY_CONTEXT_URL)
    raise UnknownModel(f"no @context for {model_or_repo!r}; known: {', '.join(known)}")


def context_text(url: str) -> str:
    """The exact text of a local @context file."""
    path = all_contexts().get(url)
    if path is None:
        raise UnknownModel(f"no local copy of @context {url!r}; known: {', '.join(sorted(all_contexts()))}")
    return _read(path)


@functools.lru_cache(maxsize=256)
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def load_context(url: str) -> dict[str, Any]:
    """The parsed @context document (``{"@context": ...}``) for a URL in ``CONTEXTS``.

    Returns a fresh dict on every call, so callers may modify it.
    """
    return json.loads(context_text(url))


# --- one @context per entity type ----------------------------------------------------------------
#
# No single list of the Smart Data Models contexts gives every model its own IRIs (``refDevice``
# alone has six across the bundled repositories). So an entity is written with the @context of
# its own model (``type_context``); the compound context stays only the fallback for types no
# registered model defines and the context a reader may use for short names of the rest.


def type_context(entity_type: str, default: Any = None) -> Any:
    """The canonical @context an entity of ``entity_type`` is written with: its registered model's
    own context URL — preceded by the type's extension contexts when any are declared
    (``[<extension>..., <model context>]``, see :func:`registry.register_context_extension`) —
    else ``default`` (the adapter's configured context)."""
    model = _registry.model_for(entity_type) if isinstance(entity_type, str) else None
    if model is None:
        return default
    extensions = _registry.context_extensions(entity_type)
    return [*extensions, model.context_url] if extensions else model.context_url


def mirrored_url(base_context: str | None, canonical: str) -> str:
    """``canonical`` as the context server behind ``base_context`` serves it.

    The chart's in-cluster context server serves every packaged context at ``/<host><path>`` of
    its upstream URL and the compound context at ``/stadtlink-context.jsonld``; when the configured
    context is such a server's compound context (any URL other than the canonical one whose last
    segment is ``stadtlink-context.jsonld``), a model's context is named by its mirrored URL there,
    so a broker without internet access resolves it too. Otherwise the canonical URL is used.
    """
    if (not base_context or base_context == STADTLINK_CONTEXT_URL
            or not base_context.rsplit("?", 1)[0].endswith("/stadtlink-context.jsonld")
            or canonical == base_context):
        return canonical
    from urllib.parse import urlsplit

    prefix = base_context.rsplit("?", 1)[0][: -len("/stadtlink-context.jsonld")]
    parts = urlsplit(canonical)
    return f"{prefix}/{parts.netloc}{parts.path}"


def type_contexts(base_context: str | None = STADTLINK_CONTEXT_URL):
    """``entity type → @context`` for a writer whose configured context is ``base_context``: each
    registered model's own context URL (a tuple ``(<extension>..., <model>)`` when the type has
    extension contexts; at the context server behind ``base_context`` when that is one, see
    :func:`mirrored_url`), ``base_context`` for any other type. Answers are cached per type."""

    cache: dict[str, tuple[int, Any]] = {}   # per type, valid while the registry is unchanged

    def for_type(entity_type: str) -> Any:
        version = _registry.version()
        hit = cache.get(entity_type)
        if hit is not None and hit[0] == version:
            return hit[1]
        own = type_context(entity_type)
        if own is None:
            found = base_context
        elif isinstance(own, list):
            found = tuple(mirrored_url(base_context, url) for url in own)
        else:
            found = mirrored_url(base_context, own)
        if len(cache) < 4096:   # bounded: a mapper inventing types cannot grow it without end
            cache[entity_type] = (version, found)
        return found

    return for_type
