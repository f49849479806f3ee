"""The compiled fast path may only short-cut valid entities: it must never accept an entity that
the Python (jsonschema) validator refuses. Checked on every upstream example mutated with values
chosen to hit formats (uri, date-time, ipv4/6), enums, ranges, patterns and types."""
import copy
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from stadtlink.schemas import check_entity
from stadtlink.schemas.validation import fast_validator_for, known_models, validator_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TRICKY = [None, True, 0, -1, 1.5, 52.4, 0.5, "", "x", "free", "vacant", "urn:ngsi-ld:X:1", "http://a b", "a:b",
          "ftp://x/y", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00", "2024-13-01T00:00:00Z", "2024-01-01",
          "10:00:00Z", "1.2.3.4", "::1", "999.1.1.1", [], [1], ["x"], {}, {"type": "Point", "coordinates": [1, 2]},
          {"type": "Point", "coordinates": [200, 2]}, "urn:", "urn:x", "mailto:a@b", "%zz", "http://[::1]/",
          "2024-01-01T25:00:00Z", "2024-02-30T00:00:00Z", "2024-01-01T00:00:00.123456789+02:00", "café",
          "urn:ngsi-ld:Device:ä", "http://example.org/ä", "\\", "http://ex.org/%41", -3, 1e9, "onStreet", ["onStreet"]]
EXTRA_KEYS = ["refDevice", "dateObserved", "location", "source", "dataProvider", "owner", "seeAlso", "name",
              "status", "category", "occupancy", "relativeHumidity", "temperature", "waterLevel", "batteryLevel"]


def python_valid(model, kv):
    return not any(True for _ in validator_for(model).iter_errors(kv))


@pytest.mark.parametrize("model", known_models())
def test_fast_path_is_never_more_lenient(model):
    fast = fast_validator_for(model)
    assert fast is not None, "jsonschema-rs compiles every bundled schema"
    base = json.loads((SCHEMAS / model / "examples" / "example.json").read_text())
    assert fast.is_valid(base) and python_valid(model, base)
    rnd = random.Random(model)
    keys = list(base) + EXTRA_KEYS
    accepted = 0
    for _ in range(600):
        kv = copy.deepcopy(base)
        for _ in range(rnd.randint(1, 3)):
            value = rnd.choice(TRICKY)
            kv[rnd.choice(keys)] = value if rnd.random() < 0.8 else [value]
        if fast.is_valid(kv):
            accepted += 1
            assert python_valid(model, kv), f"fast path accepted what jsonschema refuses: {kv}"
    assert accepted > 0


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(model=st.sampled_from(known_models()), key=st.sampled_from(EXTRA_KEYS), value=json_values)
def test_fast_path_agrees_on_random_values(model, key, value):
    base = json.loads((SCHEMAS / model / "examples" / "example.json").read_text())
    base[key] = value
    if fast_validator_for(model).is_valid(base):
        assert python_valid(model, base)


def test_invalid_entities_still_get_the_full_messages():
    bad = {"id": "urn:ngsi-ld:WeatherObserved:x:1", "type": "WeatherObserved",
           "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": "2024-01-01T00:00:00Z"}},
           "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.4, 49.4]}},
           "relativeHumidity": {"type": "Property", "value": 52.4}}
    [problem] = check_entity(bad)
    assert problem.path == "$.relativeHumidity" and "52.4" in problem.message
