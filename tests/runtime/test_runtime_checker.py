"""The pipeline's entity check: the full SDM check for shipped models, structure only otherwise."""
from __future__ import annotations

import logging

from stadtlink.adapters.core.pipeline import EntityChecker
from stadtlink.schemas import check_entity


def weather(temp, t="2024-05-01T12:00:00.000Z", etype="WeatherObserved"):
    return {"id": f"urn:ngsi-ld:{etype}:t:1", "type": etype,
            "temperature": {"type": "Property", "value": temp, "unitCode": "CEL", "observedAt": t},
            "dateObserved": {"type": "Property", "value": {"@type": "DateTime", "@value": t}},
            "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.0, 50.0]}}}


def test_shipped_model_gets_the_full_check():
    check = EntityChecker()
    assert check(weather(20.0)) == []
    bad = weather("warm")
    assert check(bad) == check_entity(bad) != []
    broken_time = weather(20.0, "2024-13-45T99:00:00.000Z")
    assert check(broken_time) == check_entity(broken_time) != []


def test_own_type_gets_the_structural_check_only_and_is_logged_once(caplog):
    check = EntityChecker()
    own = weather("warm", etype="StreetSweeper")
    with caplog.at_level(logging.WARNING, logger="stadtlink.pipeline"):
        assert check(own) == []                       # "warm" is no schema problem without a schema
        assert check(own) == []
    told = [r for r in caplog.records if "StreetSweeper" in r.getMessage()]
    assert len(told) == 1
    broken = weather(20.0, etype="StreetSweeper")
    broken["temperature"] = {"value": 20.0}           # no "type": a structural NGSI-LD problem
    problems = check(broken)
    assert problems and {p.stage for p in problems} == {"structure"}
