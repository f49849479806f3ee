"""Rendering stored entities as normalized, concise or simplified (keyValues) JSON."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from .contexts import CompiledContext
from .model import Entity
from .timeutil import format_datetime

NORMALIZED = "normalized"
CONCISE = "concise"
SIMPLIFIED = "simplified"

FORMAT_HEADER = {NORMALIZED: "Normalized", CONCISE: "Concise", SIMPLIFIED: "Simplified"}


def _pick_language(lang_map: dict, lang: str) -> tuple[Any, str | None]:
    if lang != "*":
        for tag in (t.strip() for t in lang.split(",")):
            tag = tag.split(";")[0]
            if tag in lang_map:
                return lang_map[tag], tag
        if "@none" in lang_map:
            return lang_map["@none"], "@none"
    for tag, text in lang_map.items():
        return text, tag
    return None, None


def _simple_value(inst: dict, ctx: CompiledContext, lang: str | None) -> Any:
    atype = inst["type"]
    if atype == "Relationship":
        return inst.get("object")
    if atype == "LanguageProperty":
        lang_map = inst.get("languageMap", {})
        if lang:
            return _pick_language(lang_map, lang)[0]
        return {"languageMap": lang_map}
    if atype == "VocabProperty":
        vocab = inst.get("vocab")
        return [ctx.compact(v) for v in vocab] if isinstance(vocab, list) else ctx.compact(vocab)
    if atype == "JsonProperty":
        return {"json": inst.get("json")}
    if atype == "ListProperty":
        return inst.get("valueList")
    if atype == "ListRelationship":
        return [o["object"] for o in inst.get("objectList", [])]
    return inst.get("value")


def render_instance(inst: dict, ctx: CompiledContext, fmt: str, sys_attrs: bool,
                    lang: str | None) -> Any:
    if fmt == SIMPLIFIED:
        return _simple_value(inst, ctx, lang)
    atype = inst["type"]
    out: dict[str, Any] = {}
    if fmt == NORMALIZED:
        out["type"] = atype
    if atype == "Relationship":
        if "object" in inst:
            out["object"] = inst["object"]
        if "objectType" in inst:
            ot = inst["objectType"]
            out["objectType"] = ctx.compact(ot) if isinstance(ot, str) else ot
    elif atype == "LanguageProperty":
        if lang and "languageMap" in inst:
            text, tag = _pick_language(inst["languageMap"], lang)
            if fmt == NORMALIZED:
                out["type"] = "Property"
            out["value"] = text
            if tag and tag != "@none":
                out["lang"] = tag
        elif "languageMap" in inst:
            out["languageMap"] = inst["languageMap"]
    elif atype == "VocabProperty":
        if "vocab" in inst:
            out["vocab"] = _simple_value(inst, ctx, lang)
    elif atype == "ListRelationship":
        if "objectList" in inst:
            out["objectList"] = inst["objectList"]
    else:
        key = {"JsonProperty": "json", "ListProperty": "valueList"}.get(atype, "value")
        if key in inst:
            out[key] = inst[key]
        if "lang" in inst:
            out["lang"] = inst["lang"]
    for member in ("observedAt", "unitCode", "datasetId"):
        if member in inst:
            out[member] = inst[member]
    subs = inst.get("subs")
    if subs:
        for iri, sub in subs.items():
            out[ctx.compact(iri)] = render_instance(sub, ctx, fmt, sys_attrs, lang)
    if sys_attrs:
        if "createdAt" in inst:
            out["createdAt"] = format_datetime(inst["createdAt"])
        if "modifiedAt" in inst:
            out["modifiedAt"] = format_datetime(inst["modifiedAt"])
    if fmt == CONCISE and len(out) == 1:
        # a lone value is given directly unless that would read as another attribute kind
        if "value" in out and not isinstance(out["value"], (dict, list)):
            return out["value"]
        if "value" in out and atype == "GeoProperty":
            return out["value"]
    return out


_SCOPE = "https://uri.etsi.org/ngsi-ld/scope"


def render_entity(entity: Entity, ctx: CompiledContext, *, fmt: str = NORMALIZED,
                  sys_attrs: bool = False, attrs: set[str] | None = None,
                  lang: str | None = None, omit: set[str] | None = None,
                  pick: set[str] | None = None, datasets: set[str] | None = None) -> dict:
    """The entity compacted with ``ctx``. ``attrs``/``pick``/``omit`` hold expanded names;
    ``datasets`` keeps only attribute instances with those datasetIds (``@none`` = default)."""
    types = [ctx.compact(t) for t in entity.types]
    out: dict[str, Any] = {}
    if pick is None or "id" in pick:
        if omit is None or "id" not in omit:
            out["id"] = entity.id
    if pick is None or "type" in pick:
        if omit is None or "type" not in omit:
            out["type"] = types[0] if len(types) == 1 else types
    if entity.scope is not None and (pick is None or "scope" in pick or _SCOPE in pick) \
            and (omit is None or ("scope" not in omit and _SCOPE not in omit)):
        out["scope"] = entity.scope
    for iri, instances in entity.attrs.items():
        if attrs is not None and iri not in attrs:
            continue
        if pick is not None and iri not in pick:
            continue
        if omit is not None and iri in omit:
            continue
        if datasets is not None:
            instances = [i for i in instances if i.get("datasetId", "@none") in datasets]
            if not instances:
                continue
        name = ctx.compact(iri)
        if len(instances) == 1:
            out[name] = render_instance(instances[0], ctx, fmt, sys_attrs, lang)
        elif fmt == SIMPLIFIED:  # a multi-attribute, simplified: {"dataset": {datasetId: value}}
            out[name] = {"dataset": {i.get("datasetId", "@none"): _simple_value(i, ctx, lang)
                                     for i in instances}}
        else:
            out[name] = [render_instance(i, ctx, fmt, sys_attrs, lang) for i in instances]
    if sys_attrs:
        out["createdAt"] = format_datetime(entity.created)
        out["modifiedAt"] = format_datetime(entity.modified)
    return out


def encodable_only(items: list, what: str = "entity") -> list:
    """The items JSON can encode; one that cannot (a value too deep or too large for the encoder)
    is left out and logged, so it never fails the answer or the notification of the others."""
    kept = []
    for item in items:
        try:
            orjson.dumps(item)
        except (orjson.JSONEncodeError, TypeError, RecursionError):
            ident = item.get("id") if isinstance(item, dict) else None
            logging.getLogger("stadtlink.broker_client.local_broker").error(
                "%s %s cannot be encoded as JSON: left out of the answer", what, ident)
            continue
        kept.append(item)
    return kept
