"""The pipeline's memoised SDM check gives the same answers as schemas.check_entity."""
from __future__ import annotations

import copy

from stadtlink.adapters.core.pipeline import CachedChecker
from stadtlink.schemas import check_entity


def weather(temp, t="2024-05-01T12:00:00.000Z"):
    return {"id": "urn:ngsi-ld:WeatherObserved:t:1", "type": "WeatherObserved",
            "temperature": {"type": "Property", "value": temp, "unitCode": "CEL", "observedAt": t},
            "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": t}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.0, 50.0]}}}


def test_same_entity_up_to_timestamps_is_a_hit():
    check = CachedChecker()
    assert check(weather(20.0)) == []
    assert check(weather(20.0, "2024-05-01T12:10:00.000Z")) == []
    assert (check.hits, check.misses) == (1, 1)
    assert check(weather(21.0)) == [] and check.misses == 2          # another value: checked again


def test_invalid_entities_stay_invalid_and_bad_timestamps_are_not_collapsed():
    check = CachedChecker()
    bad = weather("warm")
    assert check(bad) == check_entity(bad) != []
    assert check(copy.deepcopy(bad)) == check_entity(bad)
    broken_time = weather(20.0, "2024-13-45T99:00:00.000Z")
    expected = check_entity(broken_time)
    assert expected, "the validator refuses the impossible date"
    assert check(broken_time) == expected
    assert check(weather(20.0)) == []                                 # the memo did not mix them up


def test_memo_is_bounded():
    check = CachedChecker(max_entries=10)
    for i in range(25):
        check(weather(float(i)))
    assert len(check._memo) <= 10
