"""Run-time vocabulary check: every attribute the adapter writes must expand, through the
@context it writes with, to the IRI its Smart Data Model's own @context gives it.

An attribute that lands on another model's term (a clash in a compound context) or in the NGSI-LD
default vocabulary (no context defines it) is written anyway — the entity is valid, the broker
accepts it — but stored under an IRI no other city's entities of that model share. The watch
logs one warning per (type, attribute), naming the attribute and the IRI it got, and counts every
occurrence in ``stadtlink_vocabulary_mismatches_total{adapter,entity_type,attribute,iri}``.

The result per (type, attribute) is computed once, so the hot path costs a dict lookup per
attribute. Bounded: at most ``max_pairs`` distinct pairs are remembered (a mapper that invents
attribute names cannot grow it without end).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)


class VocabularyWatch:
    """Wraps the pipeline's entity checker: returns its problems unchanged, watches the terms."""

    def __init__(self, checker: Callable[[dict], list], context: str, metrics: Any, *,
                 max_pairs: int = 4096, per_type: bool = False) -> None:
        from stadtlink.schemas import vocabulary

        self._checker = checker
        self._metrics = metrics
        self._max_pairs = max_pairs
        self._seen: dict[tuple[str, str], Any] = {}
        #: the sink writes each registered type with its model's own @context (the NGSI-LD sinks):
        #: an attribute is judged through that context, ``context`` only for unregistered types
        self.per_type = per_type
        self.context = vocabulary.local_context(context)
        if self.context is None:
            log.info("@context %s has no local copy: attribute IRIs are not checked at run time", context)
        self._vocabulary = vocabulary

    def __call__(self, entity: dict) -> list:
        problems = self._checker(entity)
        if self.context is not None:
            try:
                self._watch(entity)
            except Exception:  # noqa: BLE001 - a watch must never stop the pipeline
                log.exception("vocabulary check failed for %s", entity.get("id"))
        return problems

    def _watch(self, entity: dict) -> None:
        etype = entity.get("type")
        if not isinstance(etype, str):
            return
        seen = self._seen
        for name in entity:
            if name in ("id", "@context"):
                continue
            key = (etype, name)
            found = seen.get(key, _UNSET)
            if found is _UNSET:
                if len(seen) >= self._max_pairs:
                    continue
                found = self._judge(etype, name)
                seen[key] = found
            if found is not None:
                self._metrics.vocabulary_mismatch(etype, found.attribute, found.iri)

    def _judge(self, etype: str, name: str):
        if self._vocabulary.model_for(etype) is None:
            return None
        attrs = () if name == "type" else (name,)
        context = self.context
        if self.per_type:
            context = self._vocabulary.own_context(etype)
        problems = [p for p in self._vocabulary.attribute_problems(etype, attrs, context)
                    if p.attribute == name]
        if not problems:
            return None
        problem = problems[0]
        log.warning("%s written with @context %s: %s", etype, context, problem,
                    extra={"entity_type": etype, "attribute": name, "iri": problem.iri})
        return problem


_UNSET = object()
