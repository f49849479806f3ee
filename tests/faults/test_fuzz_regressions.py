"""Inputs that benchmarks/fuzz.py found crashing decoders (now clear DecodeErrors), and a short fuzz
run of every decoder profile and envelope parser (0 crashes; the full run is benchmarks/fuzz.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from stadtlink.adapters.core import plugins
from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.reading import RawMessage
from benchmarks.fuzz import build_targets, fuzz_target

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)


def _http(payload: bytes) -> RawMessage:
    return RawMessage(source="http", payload=payload, received_at=NOW, topic="http://x", device_hint="feed",
                      attributes={"status": 200})


def test_datex2_unknown_xml_encoding_is_a_decode_error():
    body = (ROOT / "adapters/parking/testdata/datex2-aachen-status-P1.xml").read_bytes()
    body = b'<?xml version="1.0" encoding="U2F-8"?>\n' + body
    with pytest.raises(DecodeError) as err:
        plugins.get_adapter("parking").profile("datex2").decode(_http(body), {})
    assert err.value.reason == "invalid-xml"


@pytest.mark.parametrize("series", [1.5, True, 7])
def test_pegelonline_timeseries_that_is_not_a_list_is_rejected_cleanly(series):
    doc = json.loads((ROOT / "adapters/water_level/testdata/pegelonline-rest-v2-station-with-timeseries.json")
                     .read_text())["raw"]["json"]
    doc["timeseries"] = series
    with pytest.raises((DecodeError, ReadingDropped)):   # a counted drop or a dead letter, not a crash
        plugins.get_adapter("water_level").profile("pegelonline").decode(_http(json.dumps(doc).encode()), {})


@pytest.mark.parametrize("target", build_targets(), ids=lambda t: t.name)
def test_short_fuzz_run_has_no_crash(target):
    row = fuzz_target(target, 1500, seed=7)
    assert row["crashes"] == 0, row["crash_examples"]
    assert row["accepted"] + row["rejected"] == 1500


@pytest.mark.parametrize("lon, lat", [(9.93, 49796.2), (1e12, 49.8), (181.0, 0.0), (9.93, None)])
def test_pegelonline_out_of_range_coordinates_are_omitted_not_a_mapper_crash(lon, lat):
    doc = json.loads((ROOT / "adapters/water_level/testdata/pegelonline-rest-v2-station-with-timeseries.json")
                     .read_text())["raw"]["json"]
    doc["longitude"], doc["latitude"] = lon, lat
    readings = plugins.get_adapter("water_level").profile("pegelonline").decode(_http(json.dumps(doc).encode()), {})
    assert readings
    for reading in readings:
        assert "lon" not in reading.values and "lat" not in reading.values


def test_pipeline_stage_of_the_fuzzer_sees_no_decoder_crash():
    """Fuzzed PEGELONLINE answers through the real Pipeline (decode and map): dead letters with a
    reason, never ``decoder-crash`` (out-of-range coordinates used to crash the mapper)."""
    import asyncio

    from benchmarks.fuzz import pipeline_stage

    target = next(t for t in build_targets() if t.name == "water_level:pegelonline")
    stage = asyncio.run(pipeline_stage(target, 2000, 1))
    assert stage["decoder_crash"] == 0, stage
    assert stage["without_reason"] == 0, stage
