"""Smart Data Models schemas, @context files and the entity check.

``check_entity`` runs the check Smart Data Models itself applies, offline:

1. structural NGSI-LD check of the normalized entity (``stage="structure"``),
2. reduction to keyValues (``to_key_values``),
3. JSON Schema Draft 2020-12 validation of the reduced entity against the model's
   ``schema.json`` with format checking on (``stage="schema"``).

It never raises on bad input: every problem comes back as a :class:`Problem` with its JSON path.
"""

from __future__ import annotations

from typing import Any

from .contexts import CONTEXTS, CORE_CONTEXT_URL, STADTLINK_CONTEXT_URL, all_contexts, context_url, load_context
from .ngsi_ld import check_structure, fast_key_values, to_key_values
from .problems import InvalidEntity, Problem, UnknownModel
from .registry import ModelConflict, SmartDataModel, model_for, register_model, registered_models
from .validation import known_models, schema_path, schema_problems

__all__ = [
    "CONTEXTS",
    "CORE_CONTEXT_URL",
    "STADTLINK_CONTEXT_URL",
    "InvalidEntity",
    "ModelConflict",
    "Problem",
    "SmartDataModel",
    "UnknownModel",
    "all_contexts",
    "assert_valid",
    "check_entity",
    "check_key_values",
    "context_url",
    "known_models",
    "load_context",
    "model_for",
    "register_model",
    "registered_models",
    "schema_path",
    "to_key_values",
]


def _top_attribute(path: str) -> str | None:
    """``$.location.coordinates[0]`` → ``location``; ``$["@context"]`` → ``@context``."""
    rest = path[1:]
    if rest.startswith("."):
        rest = rest[1:]
        for i, ch in enumerate(rest):
            if ch in ".[":
                return rest[:i]
        return rest
    if rest.startswith('["'):
        end = rest.find('"]')
        return rest[2:end] if end > 0 else None
    return None


def check_entity(entity: Any, *, model: str | None = None) -> list[Problem]:
    """Every problem of a normalized NGSI-LD entity (empty list = valid).

    The model is ``entity["type"]`` unless ``model`` is given.
    """
    try:
        # the common case — a plainly shaped entity without structural problems — in one pass
        key_values = fast_key_values(entity)
        if key_values is not None:
            chosen = model if model is not None else entity["type"]
            if not isinstance(chosen, str) or not chosen:
                return []
            return schema_problems(key_values, chosen)
        problems, broken = check_structure(entity)
        if not isinstance(entity, dict):
            return problems
        chosen = model if model is not None else entity.get("type")
        if not isinstance(chosen, str) or not chosen:
            return problems  # no type: already reported by the structural check
        key_values = to_key_values(entity, skip=broken)
        for problem in schema_problems(key_values, chosen):
            # an attribute the structural check already refused is not reported twice
            if _top_attribute(problem.path) in broken:
                continue
            problems.append(problem)
        return problems
    except Exception as exc:  # noqa: BLE001 - a check must never crash the pipeline
        return [Problem("$", f"entity could not be checked: {type(exc).__name__}: {exc}", "structure")]


def check_key_values(kv: Any, model: str | None = None) -> list[Problem]:
    """JSON Schema problems of a keyValues entity (model from ``kv["type"]`` unless given)."""
    if not isinstance(kv, dict):
        return [Problem("$", f"an entity must be a JSON object, got {type(kv).__name__}", "structure")]
    chosen = model if model is not None else kv.get("type")
    if not isinstance(chosen, str) or not chosen:
        return [Problem("$.type", "entity has no string 'type' and no model was given", "structure")]
    try:
        return schema_problems(kv, chosen)
    except Exception as exc:  # noqa: BLE001
        return [Problem("$", f"entity could not be checked: {type(exc).__name__}: {exc}", "schema")]


def assert_valid(entity: Any, *, model: str | None = None) -> None:
    """Raise :class:`InvalidEntity` listing every problem unless the normalized entity is valid."""
    problems = check_entity(entity, model=model)
    if problems:
        entity_id = entity.get("id") if isinstance(entity, dict) else None
        raise InvalidEntity(problems, entity_id)
