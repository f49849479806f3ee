"""Results of batch and attribute operations, and the parsers for every answer shape Orion-LD
gives in its legacy and experimental modes (summary: broker_client/README.md, "Batches").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import ProblemDetails, is_retryable_status

# Orion-LD's placeholders for entities without a usable id (legacy and experimental spellings).
PLACEHOLDER_IDS = frozenset(
    {"no entity::id", "invalid entity::id", "Invalid entity::id", "No Entity::id", "Invalid Entity::id"}
)

LOCAL_ERROR_TYPE = "urn:stadtlink:broker-client:error:"


def is_placeholder_id(entity_id: str) -> bool:
    return entity_id in PLACEHOLDER_IDS or entity_id.lower().endswith("entity::id")


@dataclass(frozen=True, slots=True)
class EntityFailure:
    """One entity that was not written; ``retryable`` says whether sending it again may help."""

    entity_id: str
    problem: ProblemDetails
    retryable: bool


@dataclass(slots=True)
class BatchResult:
    succeeded: list[str] = field(default_factory=list)
    failed: list[EntityFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed_ids(self) -> list[str]:
        return [f.entity_id for f in self.failed]

    @property
    def retryable_ids(self) -> list[str]:
        return [f.entity_id for f in self.failed if f.retryable]

    def extend(self, other: BatchResult) -> None:
        self.succeeded.extend(other.succeeded)
        self.failed.extend(other.failed)


@dataclass(frozen=True, slots=True)
class AttributeNotUpdated:
    """An attribute a PATCH/POST on ``/entities/{id}/attrs`` did not write."""

    attribute: str
    reason: str | None = None
    status: int | None = None


@dataclass(slots=True)
class AttributeUpdateResult:
    updated: list[str] = field(default_factory=list)
    not_updated: list[AttributeNotUpdated] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.not_updated


def local_problem(title: str, detail: str | None = None, status: int | None = None) -> ProblemDetails:
    """A problem detected by the client itself (never sent to the broker)."""
    kind = "".join(word[:1].upper() + word[1:] for word in title.split())
    return ProblemDetails(type=LOCAL_ERROR_TYPE + kind, title=title, detail=detail, status=status)


def failure_from_problem(entity_id: str, problem: ProblemDetails) -> EntityFailure:
    return EntityFailure(entity_id, problem, is_retryable_status(problem.status, problem.type))


def _decode(body: bytes) -> Any:
    if not body or not body.strip():
        return None
    return orjson.loads(body)


def _unique(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _error_items(decoded: Any) -> list[tuple[str, ProblemDetails]]:
    """Per-entity error items from a 207 (or a Scorpio 400 ``{"errors": [...]}``) body.

    Accepts Orion-LD/Stellio ``{"entityId", "error": {...}}`` and Scorpio ``{"id",
    "ProblemDetails": {...}}`` items; ``status`` may be inside the error, ``detail`` may be absent.
    """
    errors = decoded.get("errors") if isinstance(decoded, dict) else None
    if not isinstance(errors, list):
        return []
    out: list[tuple[str, ProblemDetails]] = []
    for item in errors:
        if not isinstance(item, dict):
            continue
        entity_id = item.get("entityId", item.get("id"))
        if not isinstance(entity_id, str):
            entity_id = "no entity::id"
        raw_problem = item.get("error", item.get("ProblemDetails"))
        if isinstance(raw_problem, list):  # Scorpio sometimes wraps it in a list
            raw_problem = raw_problem[0] if raw_problem else None
        if raw_problem is None:
            raw_problem = {k: v for k, v in item.items() if k not in ("entityId", "id")}
        out.append((entity_id, ProblemDetails.from_json(raw_problem)))
    return out


def _success_ids(decoded: Any) -> list[str]:
    if isinstance(decoded, dict):
        success = decoded.get("success")
        if isinstance(success, list):
            return [s for s in success if isinstance(s, str)]
    return []


def parse_batch_response(status: int, body: bytes, request_ids: Sequence[str]) -> BatchResult:
    """Turn one batch answer into per-entity outcomes for the ids that were sent.

    * 201 ``[ids]``: every entity of the request was written (experimental Orion-LD lists only the
      created ones; the others were updated).
    * 204: every entity written.
    * 207 ``{"success", "errors"}``: an id in both lists counts as failed; placeholder ids
      (``no entity::id`` ...) are matched, in order, to request ids the answer does not mention.
      Request ids the answer does not account for at all are failed with ``retryable=True``
      (an upsert is idempotent: sending them again is the safe move).
    * Scorpio's 207 array shape (``[{"id", "success"|"failure"}]``) is understood too.
    Malformed 207 bodies make every entity a retryable failure.
    """
    ids = _unique(request_ids)
    if status in (200, 201, 204):
        return BatchResult(succeeded=ids)
    try:
        decoded = _decode(body)
    except orjson.JSONDecodeError:
        problem = local_problem("Unparseable broker answer", f"HTTP {status}: {body[:200]!r}")
        return BatchResult(failed=[EntityFailure(i, problem, True) for i in ids])

    if isinstance(decoded, list):
        decoded = _scorpio_array_to_object(decoded)

    errors = _error_items(decoded)
    success = set(_success_ids(decoded))
    failed_ids: dict[str, ProblemDetails] = {}
    placeholders: list[tuple[str, ProblemDetails]] = []
    for entity_id, problem in errors:
        if is_placeholder_id(entity_id) and entity_id not in ids:
            placeholders.append((entity_id, problem))
        elif entity_id not in failed_ids:  # Orion-LD keeps the first error per id; so do we
            failed_ids[entity_id] = problem

    result = BatchResult()
    for entity_id in ids:
        if entity_id in failed_ids:
            result.failed.append(failure_from_problem(entity_id, failed_ids.pop(entity_id)))
        elif entity_id in success:
            result.succeeded.append(entity_id)
        elif placeholders:
            _, problem = placeholders.pop(0)
            result.failed.append(failure_from_problem(entity_id, problem))
        else:
            result.failed.append(
                EntityFailure(
                    entity_id,
                    local_problem("Not reported", f"the HTTP {status} answer named neither success nor error"),
                    True,
                )
            )
    # Errors for ids we did not send (should not happen) and unmatched placeholders are kept
    # so nothing the broker said is lost.
    for entity_id, problem in failed_ids.items():
        result.failed.append(failure_from_problem(entity_id, problem))
    for entity_id, problem in placeholders:
        result.failed.append(failure_from_problem(entity_id, problem))
    return result


def _scorpio_array_to_object(items: list[Any]) -> dict[str, Any]:
    success: list[str] = []
    errors: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, str):
            success.append(item)
            continue
        if not isinstance(item, dict):
            continue
        entity_id = item.get("id", item.get("entityId"))
        if not isinstance(entity_id, str):
            continue
        failure = item.get("failure")
        if failure:
            problem = failure[0] if isinstance(failure, list) else failure
            errors.append({"entityId": entity_id, "error": problem})
        else:
            success.append(entity_id)
    return {"success": success, "errors": errors}


def batch_has_entity_errors(body: bytes) -> bool:
    """True when a non-207 error answer still lists per-entity errors (Scorpio's 400 ``{"errors"}``)."""
    try:
        decoded = _decode(body)
    except orjson.JSONDecodeError:
        return False
    return bool(_error_items(decoded))


def parse_attribute_update(body: bytes) -> AttributeUpdateResult:
    """Parse a 207 from ``PATCH``/``POST /entities/{id}/attrs``.

    legacy:       ``{"updated": [..], "notUpdated": [{"attributeName", "reason"}]}``
    experimental: ``{"updated": [..], "notUpdated": [{"attributes": [..], "statusCode", "title"}]}``
    Raises ``orjson.JSONDecodeError`` (a ValueError) for a malformed body.
    """
    decoded = _decode(body)
    result = AttributeUpdateResult()
    if not isinstance(decoded, dict):
        return result
    updated = decoded.get("updated")
    if isinstance(updated, list):
        result.updated = [u for u in updated if isinstance(u, str)]
    not_updated = decoded.get("notUpdated")
    if isinstance(not_updated, list):
        for item in not_updated:
            if not isinstance(item, dict):
                continue
            status = item.get("statusCode", item.get("status"))
            status = status if isinstance(status, int) and not isinstance(status, bool) else None
            reason = item.get("reason", item.get("title", item.get("detail")))
            reason = reason if isinstance(reason, str) else None
            names: list[Any]
            if "attributeName" in item:
                names = [item["attributeName"]]
            elif isinstance(item.get("attributes"), list):
                names = item["attributes"]
            else:
                names = []
            for name in names:
                if isinstance(name, str):
                    result.not_updated.append(AttributeNotUpdated(name, reason, status))
    return result
