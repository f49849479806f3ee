"""Which IRI an attribute name expands to, and whether it is the model's own.

A broker expands every attribute name of an entity through the @context the writer names
(``Link`` header or body ``@context``): a later context in a list wins a term, the NGSI-LD core
context is applied last and cannot be overridden, and a term no context defines falls back to the
default vocabulary ``https://uri.etsi.org/ngsi-ld/default-context/<term>``. An attribute that does
not end up at the IRI its Smart Data Model's own @context gives it is stored under terms no other
city's entities of that model share — silently. This module makes that a checked fact:

* :func:`expand` — the IRI of a term through a context (URL, list or inline object), offline;
* :func:`vocabulary_problems` — every attribute (and the type) of an entity whose IRI is not
  its model's own, naming the attribute, the IRI it got and the one it should have;
* :func:`clashes` — the same for every attribute of every registered model's schema;
* :func:`derive_compound_order` — the order of stadtlink's compound context with the fewest
  clashes (``scripts/gen_contexts.py`` writes it).

Expansion follows the subset of JSON-LD the local broker implements (term strings, ``{"@id"}``
objects, compact IRIs with a defined prefix, ``@vocab``, nested context URLs and lists).
"""

from __future__ import annotations

import functools
import itertools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from . import registry as _registry
from .registry import model_for
from .contexts import PACKAGE_DIR, load_context
from .problems import UnknownModel

DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE_CONTEXT_FILE = PACKAGE_DIR / "contexts" / "ngsi-ld-core-context.jsonld"

#: entity members that are not attributes
_NOT_ATTRIBUTES = frozenset({"id", "type", "@context"})


@functools.cache
def core_terms() -> dict[str, str]:
    """term → IRI of the NGSI-LD core context (applied last by every broker)."""
    doc = json.loads(CORE_CONTEXT_FILE.read_text(encoding="utf-8"))["@context"]
    return _resolve_terms([doc], ())


def _definitions(value: Any, seen: tuple[str, ...]) -> list[dict]:
    """The term-definition objects of a context value, in application order."""
    if value is None:
        return []
    if isinstance(value, str):
        if value in seen or value.startswith("https://uri.etsi.org/ngsi-ld/"):
            return []  # the core context: applied last anyway
        try:
            doc = load_context(value)
        except UnknownModel:
            raise UnknownModel(f"@context {value!r} has no local copy: it cannot be checked offline") from None
        return _definitions(doc.get("@context"), seen + (value,))
    if isinstance(value, list):
        return [d for item in value for d in _definitions(item, seen)]
    if isinstance(value, dict):
        if set(value) == {"@context"}:
            return _definitions(value["@context"], seen)
        return [value]
    raise TypeError(f"an @context must be a string, a list or an object, not {type(value).__name__}")


def _resolve_terms(definitions: Iterable[dict], _seen: tuple[str, ...]) -> dict[str, str]:
    merged: dict[str, Any] = {}
    for definition in definitions:
        merged.update(definition)
    out: dict[str, str] = {}
    for term, value in merged.items():
        if term.startswith("@"):
            if term == "@vocab" and isinstance(value, str):
                out[term] = value
            continue
        iri = value if isinstance(value, str) else value.get("@id") if isinstance(value, dict) else None
        if isinstance(iri, str):
            out[term] = iri
    # compact IRIs (prefix:suffix) through the prefixes defined in the same context
    for term, iri in list(out.items()):
        prefix, sep, suffix = iri.partition(":")
        if sep and not suffix.startswith("//") and prefix in out and prefix != term:
            out[term] = out[prefix] + suffix
    return out


def _key(context: Any) -> str:
    return context if isinstance(context, str) else json.dumps(context, sort_keys=True)


@functools.lru_cache(maxsize=256)
def _terms_for(key: str, version: int) -> dict[str, str]:
    context = key if not key.startswith(("[", "{")) else json.loads(key)
    return _resolve_terms(_definitions(context, ()), ())


def terms(context: Any) -> dict[str, str]:
    """term → IRI of a context (URL, list of URLs / objects, inline object), core terms excluded."""
    return _terms_for(_key(context), _registry.version())


def expand(context: Any, term: str) -> str:
    """The IRI a broker stores ``term`` under when written with ``context``."""
    core = core_terms()
    if term in core:
        return core[term]
    if ":" in term:
        prefix, _, suffix = term.partition(":")
        if suffix.startswith("//") or prefix in ("urn", "http", "https"):
            return term  # already an IRI
    table = terms(context)
    iri = table.get(term)
    if iri is not None:
        return iri
    return table.get("@vocab", DEFAULT_VOCAB) + term


def local_context(url: str) -> str | None:
    """The local @context URL that holds the same terms as ``url``: itself when a local copy
    exists, the mirrored upstream URL for a context server's ``/<host><path>`` (the chart's
    in-cluster server), stadtlink's compound context for any ``.../stadtlink-context.jsonld``;
    None when nothing local matches (the vocabulary cannot be checked offline)."""
    from urllib.parse import urlsplit

    from .contexts import STADTLINK_CONTEXT_URL, all_contexts

    known = all_contexts()
    if url in known:
        return url
    parts = urlsplit(url)
    for candidate in known:
        c = urlsplit(candidate)
        if parts.path == "/" + c.netloc + c.path:
            return candidate
    if parts.path.rsplit("/", 1)[-1] == "stadtlink-context.jsonld":
        return STADTLINK_CONTEXT_URL
    return None


def own_context(entity_type: str) -> Any:
    """The @context that gives a registered type's terms their own IRIs: its model's context,
    preceded by the type's declared extension contexts (``schemas.contexts.type_context``); None
    for an unregistered type."""
    from .contexts import type_context

    return type_context(entity_type)


def own_iri(entity_type: str, term: str) -> str | None:
    """The IRI the model's own @context gives ``term`` (None: the model is not registered)."""
    model = _registry.model_for(entity_type)
    if model is None:
        return None
    return expand(own_context(entity_type), term)


@dataclass(frozen=True, slots=True)
class VocabularyProblem:
    """An attribute (or the type, ``attribute == "type"``) whose IRI is not its model's own."""

    entity_type: str
    attribute: str
    iri: str            # what the given @context expands it to
    expected: str       # what the model's own @context expands it to

    @property
    def falls_back(self) -> bool:
        """True when it lands in the default vocabulary (no context defines it)."""
        return self.iri.startswith(DEFAULT_VOCAB)

    def __str__(self) -> str:
        what = "the type" if self.attribute == "type" else f"attribute {self.attribute!r}"
        if self.expected.startswith(DEFAULT_VOCAB):
            return (f"{what} of {self.entity_type} is not defined by the model's own @context "
                    f"(it expands to {self.iri})")
        how = "falls back to the default vocabulary" if self.falls_back else "expands to another model's term"
        return f"{what} {how}: {self.iri} instead of {self.entity_type}'s {self.expected}"


def attribute_problems(entity_type: str, attributes: Iterable[str], context: Any) -> list[VocabularyProblem]:
    """The problems of ``attributes`` (and of the type term) of a registered model written with
    ``context``; an unregistered type has none (nothing to compare with)."""
    model = _registry.model_for(entity_type)
    if model is None:
        return []
    out = []
    for name in ("type", *attributes):
        term = entity_type if name == "type" else name
        if name in _NOT_ATTRIBUTES and name != "type":
            continue
        got = expand(context, term)
        expected = expand(own_context(entity_type), term)
        if got != expected or expected.startswith(DEFAULT_VOCAB):
            out.append(VocabularyProblem(entity_type, name, got, expected))
    return out


def vocabulary_problems(entity: Mapping[str, Any], context: Any = None) -> list[VocabularyProblem]:
    """Every attribute of a normalized entity whose IRI through ``context`` (default: the
    entity's own ``@context`` member) is not its model's own."""
    if not isinstance(entity, Mapping) or not isinstance(entity.get("type"), str):
        return []
    if context is None:
        context = entity.get("@context")
        if context is None:
            raise ValueError("the entity has no @context member: name the context it is written with")
    names = [k for k in entity if isinstance(k, str) and k not in _NOT_ATTRIBUTES]
    return attribute_problems(entity["type"], names, context)


def model_attributes(entity_type: str) -> list[str]:
    """Every attribute name a model's schema declares (``properties`` through allOf/anyOf/oneOf)."""
    from .validation import validator_for

    found: dict[str, None] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                found.update(dict.fromkeys(node["properties"]))
            for key in ("allOf", "anyOf", "oneOf"):
                for sub in node.get(key) or ():
                    walk(sub)

    walk(validator_for(entity_type).schema)
    return [name for name in found if name not in _NOT_ATTRIBUTES]


def clashes(context: Any, types: Iterable[str] | None = None) -> list[VocabularyProblem]:
    """Every attribute of the models' schemas (default: every registered model) that ``context``
    expands elsewhere than the model's own @context does (core terms excluded: brokers fix them)."""
    core = core_terms()
    out: list[VocabularyProblem] = []
    for entity_type in sorted(types if types is not None else _registry.registered_models()):
        names = [n for n in model_attributes(entity_type) if n not in core]
        out.extend(attribute_problems(entity_type, names, context))
    return out


def derive_compound_order(urls: Iterable[str], types: Iterable[str],
                          priority: Iterable[tuple[str, str]] = ()) -> list[str]:
    """The order of ``urls`` (a compound context's members) with the fewest clashes: first among
    the ``priority`` ``(type, attribute)`` pairs (what the adapters actually write), then among
    every schema attribute of ``types``; ties keep the given order. Exhaustive up to 8 URLs."""
    urls = list(urls)
    types = sorted(types)
    core = core_terms()

    def own(entity_type: str, name: str) -> str:
        return expand(own_context(entity_type), name)

    wanted = [(n, own(t, n)) for t in types for n in model_attributes(t) if n not in core]
    first = [(n, own(t, n)) for t, n in dict.fromkeys(priority) if n not in core and _registry.model_for(t)]
    tables = {u: terms(u) for u in urls}

    def cost(order: Iterable[str]) -> tuple[int, int]:
        merged: dict[str, str] = {}
        for u in order:
            merged.update(tables[u])
        return (sum(1 for n, iri in first if merged.get(n, DEFAULT_VOCAB + n) != iri),
                sum(1 for n, iri in wanted if merged.get(n, DEFAULT_VOCAB + n) != iri))

    if len(urls) <= 8:
        return list(min(itertools.permutations(urls), key=cost))
    order: list[str] = []
    rest = list(urls)
    while rest:  # greedy: append the URL that keeps the cost lowest
        best = min(rest, key=lambda u: cost(order + [u]))
        order.append(best)
        rest.remove(best)
    return order


@functools.lru_cache(maxsize=256)
def _reverse_terms(key: str, version: int) -> dict[str, str]:
    out: dict[str, str] = {}
    context = key if not key.startswith(("[", "{")) else json.loads(key)
    for term, iri in terms(context).items():
        if not term.startswith("@"):
            out.setdefault(iri, term)
    return out


def short_name(entity_type: str, name: str) -> str:
    """The short term of an attribute name a broker answered in long form (an IRI the reader's
    context does not map), through the entity type's own model context; ``name`` unchanged when
    it is short already or the model has no term for it."""
    if ":" not in name or not isinstance(entity_type, str):
        return name
    for default in (DEFAULT_VOCAB, "ngsi-ld:default-context/"):
        if name.startswith(default) and len(name) > len(default):
            return name[len(default):]  # no context defines it: the default vocabulary's term
    model = _registry.model_for(entity_type)
    if model is None:
        return name
    return _reverse_terms(_key(own_context(entity_type)), _registry.version()).get(name, name)


def compact_entity(entity: Any) -> Any:
    """An entity read back (normalized, keyValues or concise) with every attribute that came back
    as a long IRI renamed to its term in the entity type's own model context.

    Entities are written with their own model's @context (see :func:`schemas.contexts.type_context`);
    a reader that asks with one context for every type (the compound one, or the core context
    when it asks for expanded names) gets long IRIs for the terms that context maps elsewhere —
    this gives them their model's short names back. Other members are left as they are.
    """
    if not isinstance(entity, dict) or not isinstance(entity.get("type"), str):
        return entity
    etype = entity["type"]
    if not any(":" in k for k in entity):
        return entity
    out: dict[str, Any] = {}
    for key, value in entity.items():
        short = short_name(etype, key) if key not in ("id", "type", "@context") else key
        if short != key and short in entity:
            short = key  # both forms present: keep the long one rather than lose a value
        out[short] = value
    return out
