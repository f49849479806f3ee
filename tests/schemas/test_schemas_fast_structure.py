"""The one-pass structural fast path (``stadtlink.schemas.ngsi_ld.fast_key_values``) may only short-cut
entities the full structural check passes, and must reduce them exactly as ``to_key_values``
does; ``check_entity`` must answer as the full check does, problems and messages included."""
from __future__ import annotations

import copy
import math
import random

import pytest

from stadtlink.schemas import check_entity
from stadtlink.schemas.ngsi_ld import check_structure, fast_key_values, to_key_values
from stadtlink.schemas.validation import schema_problems
from sdm_entities import BUILDERS

# values that break an attribute (or not) in the ways the full check knows
ATTRIBUTE_MUTATIONS = [
    lambda a: a.update(value=None),
    lambda a: a.update(value=math.nan),
    lambda a: a.update(value=math.inf),
    lambda a: a.update(value=-1.5),
    lambda a: a.update(value="text"),
    lambda a: a.update(value=[1, 2]),
    lambda a: a.update(value={"k": 1}),
    lambda a: a.update(value={"@type": "DateTime", "@value": "2024-01-01T00:00:00Z"}),
    lambda a: a.update(value={"@type": "DateTime", "@value": "2024-01-01 00:00"}),
    lambda a: a.update(value={"@type": "DateTime", "@value": None}),
    lambda a: a.update(value={"@value": 3}),
    lambda a: a.pop("value", None),
    lambda a: a.pop("object", None),
    lambda a: a.pop("type", None),
    lambda a: a.update(type="Proprety"),
    lambda a: a.update(type="Relationship"),
    lambda a: a.update(type="GeoProperty"),
    lambda a: a.update(type="LanguageProperty", languageMap={"de": "x"}),
    lambda a: a.update(object="urn:ngsi-ld:Device:x:1"),
    lambda a: a.update(object="not a uri"),
    lambda a: a.update(object=["urn:ngsi-ld:Device:x:1"]),
    lambda a: a.update(observedAt="2024-01-01T00:00:00"),
    lambda a: a.update(observedAt="2024-02-30T00:00:00Z"),
    lambda a: a.update(observedAt=5),
    lambda a: a.update(observedAt="2024-01-01T00:00:00.5+02:00"),
    lambda a: a.update(unitCode=""),
    lambda a: a.update(unitCode=None),
    lambda a: a.update(unitCode=7),
    lambda a: a.update(unitCode="CEL"),
    lambda a: a.update(datasetId="urn:ngsi-ld:Dataset:1"),
    lambda a: a.update(datasetId="x y"),
    lambda a: a.update(providedBy={"type": "Relationship", "object": "urn:ngsi-ld:Device:x:2"}),
    lambda a: a.update(value={"type": "Point", "coordinates": [200.0, 1.0]}),
    lambda a: a.update(value={"type": "Point", "coordinates": [8.4, 49.4]}),
    lambda a: a.update(value={"type": "Point", "coordinates": [8.4, 95.0]}),
    lambda a: a.update(value={"type": "Point", "coordinates": [True, 1]}),
    lambda a: a.update(value={"type": "Point", "coordinates": [1]}),
    lambda a: a.update(value={"type": "Point", "coordinates": [1, 2], "bbox": [0, 0, 1, 1]}),
    lambda a: a.update(value={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}),
]
ROOT_MUTATIONS = [
    lambda e: e.update(id="no uri"),
    lambda e: e.update(id=5),
    lambda e: e.pop("id"),
    lambda e: e.update(type=""),
    lambda e: e.pop("type"),
    lambda e: e.update({"@context": 5}),
    lambda e: e.update({"@context": ["https://example.org/ctx.jsonld"]}),
    lambda e: e.update(createdAt="2024-01-01T00:00:00Z"),
    lambda e: e.update(scope="/a"),
    lambda e: e.update({"bad name": {"type": "Property", "value": 1}}),
    lambda e: e.update({"": {"type": "Property", "value": 1}}),
    lambda e: e.update(extra=3),
    lambda e: e.update(extra=[{"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:x:1"}]),
    lambda e: e.update(location={"type": "Property", "value": 1}),
]


def full_check(entity) -> list:
    """The check without the fast path (what check_entity did before it)."""
    problems, broken = check_structure(entity)
    chosen = entity.get("type") if isinstance(entity, dict) else None
    if not isinstance(chosen, str) or not chosen:
        return problems
    for problem in schema_problems(to_key_values(entity, skip=broken), chosen):
        top = problem.path[2:].split(".")[0].split("[")[0]
        if top in broken:
            continue
        problems.append(problem)
    return problems


def variants():
    rnd = random.Random(11)
    for model, builder in sorted(BUILDERS.items()):
        base = builder()
        yield model, base
        names = [n for n in base if n not in ("id", "type", "@context")]
        for i, mutate in enumerate(ROOT_MUTATIONS):
            entity = copy.deepcopy(base)
            mutate(entity)
            yield f"{model}-root{i}", entity
        for i, mutate in enumerate(ATTRIBUTE_MUTATIONS):
            for name in rnd.sample(names, min(3, len(names))):
                entity = copy.deepcopy(base)
                if isinstance(entity[name], dict):
                    mutate(entity[name])
                    yield f"{model}-{name}-{i}", entity


CASES = list(variants())


@pytest.mark.parametrize("label,entity", CASES, ids=[c[0] for c in CASES])
def test_fast_path_agrees_with_the_full_check(label, entity):
    fast = fast_key_values(entity)
    problems, broken = check_structure(entity)
    if fast is not None:
        assert not problems and not broken, f"fast path passed a structurally broken entity: {problems}"
        assert fast == to_key_values(entity)
    assert [(p.path, p.message, p.stage) for p in check_entity(entity)] == \
        [(p.path, p.message, p.stage) for p in full_check(entity)]


def test_fast_path_takes_the_entities_the_adapters_write():
    """Otherwise the fast path would silently be a slow path."""
    for model, builder in BUILDERS.items():
        assert fast_key_values(builder()) is not None, model
