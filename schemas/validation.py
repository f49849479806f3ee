"""JSON Schema (Draft 2020-12) validation of keyValues entities against the local SDM schemas.

Everything is offline: each local schema file is registered in a ``referencing.Registry`` under
the exact URL other schemas use in ``$ref`` (some ``$id``s differ from those URLs). Validators are
built once per model (``$ref``s inlined through that registry) and cached; format assertion is on
(``date-time`` needs an offset, ``uri`` is checked) because several SDM ``oneOf``s only work with it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urldefrag, urljoin

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from .problems import Problem, UnknownModel, json_path

from . import registry as _registry
from .bundled import COMMON_DIR, COMMON_SCHEMA_FILES, PACKAGE_DIR

#: $ref URL → local file of the bundled common schemas (each file's $id is that URL)
COMMON_SCHEMAS: dict[str, Path] = {}
for _name in COMMON_SCHEMA_FILES:
    with (COMMON_DIR / _name).open(encoding="utf-8") as _handle:
        COMMON_SCHEMAS[json.load(_handle)["$id"]] = COMMON_DIR / _name


def known_models() -> list[str]:
    """Names of the Smart Data Models known to this process (bundled and registered), sorted."""
    return sorted(_registry.registered_models())


def schema_path(model: str) -> Path:
    found = _registry.model_for(model)
    if found is None:
        raise UnknownModel(f"unknown model {model!r}; known: {', '.join(known_models())}")
    return found.schema


def _load_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return json.load(handle)


def registry() -> Registry:
    """Offline registry: each common schema under the URL the model schemas use in ``$ref`` (the
    bundled ones and the ``common`` files of registered models, under their ``$id``)."""
    _registry.discover()
    return _schema_registry(_registry.version())


@functools.lru_cache(maxsize=4)
def _schema_registry(version: int) -> Registry:
    files: dict[str, Path] = dict(COMMON_SCHEMAS)
    for model in _registry.registered_models().values():
        for path in model.common:
            files.setdefault(_load_json(path)["$id"], path)
    resources = [(url, DRAFT202012.create_resource(_load_json(path))) for url, path in files.items()]
    return Registry().with_resources(resources).crawl()


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with every ``$ref`` replaced by its target, resolved through ``registry()``.

    Same meaning, but validation does not look references up per entity (benchmarks/README.md).
    A ``$ref`` with sibling keywords becomes ``allOf: [target]`` next to them. Raises
    ``RecursionError`` for recursive schemas (none among the bundled ones).
    """
    resolver = registry().resolver()

    def walk(node: Any, base: str, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, base, seen) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref":
                continue
            if key in ("properties", "patternProperties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {name: walk(sub, base, seen) for name, sub in value.items()}
            else:
                out[key] = walk(value, base, seen)
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return out
        target = urljoin(base, ref)
        if target in seen:
            raise RecursionError(f"recursive $ref {target}")
        resolved = resolver.lookup(target)
        inlined = walk(resolved.contents, urldefrag(target).url or base, seen + (target,))
        if set(out) <= {"description"}:
            return inlined
        return {"allOf": [inlined], **out}

    return walk(schema, schema.get("$id", ""), ())


@functools.cache
def validator_for(model: str) -> Draft202012Validator:
    """The compiled validator of one model (built on first use, then cached)."""
    schema = _load_json(schema_path(model))
    try:
        schema = inline_refs(schema)
    except (RecursionError, Unresolvable):
        pass  # the registry resolves them at validation time instead
    return Draft202012Validator(
        schema, registry=registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


@functools.cache
def fast_validator_for(model: str):
    """A compiled Rust validator (jsonschema-rs) of the same inlined schema, or None.

    It only ever short-cuts the common case — a valid entity — in :func:`schema_problems`; any
    entity it does not accept goes to the Python validator, which stays the authority and writes
    the messages. (The two disagree only where jsonschema-rs is stricter, e.g. ``\\w`` in patterns
    matching ASCII only; tests/schemas/test_schemas_fast_path.py checks that it never accepts what
    the Python validator refuses.)
    """
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - an optional speed-up
        return None
    schema = _load_json(schema_path(model))
    try:
        return jsonschema_rs.Draft202012Validator(inline_refs(schema), validate_formats=True)
    except Exception:  # noqa: BLE001 - unsupported construct: fall back to the Python validator
        return None


# an unregistered model's compiled validators go with it
_registry.on_unregister(validator_for.cache_clear)
_registry.on_unregister(fast_validator_for.cache_clear)


# -- turning ValidationErrors into Problems -------------------------------------------------

_FORMAT_HINTS = {
    "date-time": "an RFC 3339 date-time with offset, e.g. 2024-05-01T10:00:00Z",
    "uri": "an absolute URI, e.g. urn:ngsi-ld:Device:example:1",
    "date": "a date, e.g. 2024-05-01",
    "time": "a time with offset, e.g. 10:00:00Z",
}


def _short(value: object, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(error: ValidationError) -> str:
    validator = error.validator
    if validator == "format":
        hint = _FORMAT_HINTS.get(str(error.validator_value), f"format {error.validator_value!r}")
        return f"{_short(error.instance)} is not {hint}"
    if validator == "enum":
        allowed = ", ".join(repr(v) for v in error.validator_value)
        return f"{_short(error.instance)} is not one of the allowed values: {allowed}"
    if validator == "const":
        return f"{_short(error.instance)} must be {error.validator_value!r}"
    if validator == "type":
        return f"{_short(error.instance)} is not of type {error.validator_value!r}"
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return error.message
    if validator in ("oneOf", "anyOf"):
        alternatives = list(error.context or ())
        if validator == "oneOf" and not alternatives:
            return f"{_short(error.instance)} matches more than one allowed alternative (oneOf)"
        deepest = best_match(alternatives) if alternatives else None
        if deepest is not None:
            inner = _message(deepest)
            rel = list(deepest.relative_path)
            where = f" at {json_path(rel)[1:] or 'itself'}" if rel else ""
            return f"{_short(error.instance, 60)} matches none of the allowed alternatives; closest: {inner}{where}"
    if len(error.message) > 200:
        return error.message[:197] + "..."
    return error.message


def _problem(error: ValidationError) -> Problem:
    parts = tuple(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance and repr(p) in error.message]
        if missing:
            what = "attribute" if not parts else "member"
            return Problem(json_path(parts + (missing[0],)), f"required {what} '{missing[0]}' is missing", "schema")
    return Problem(json_path(parts), _message(error), "schema")


def schema_problems(key_values: object, model: str) -> list[Problem]:
    """Every JSON Schema problem of a keyValues entity against ``model`` (sorted by path)."""
    try:
        validator = validator_for(model)
    except UnknownModel:
        return [Problem("$.type", f"unknown model {model!r}; known models: {', '.join(known_models())}", "schema")]
    fast = fast_validator_for(model)
    if fast is not None and fast.is_valid(key_values):
        return []
    errors: Iterable[ValidationError] = validator.iter_errors(key_values)
    problems = [_problem(e) for e in errors]
    # allOf branches can report the same fact twice
    unique = list(dict.fromkeys(problems))
    unique.sort(key=lambda p: p.path)
    return unique
