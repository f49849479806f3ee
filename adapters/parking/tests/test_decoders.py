"""Decoders: every parking sample decodes to its expected values; bad input only raises DecodeError/ReadingDropped."""
from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.reading import RawMessage
from stadtlink.adapters.parking import ADAPTER
from stadtlink.adapters.parking.decoders.bosch import decode_tps110
from stadtlink.adapters.parking.decoders.datex2 import parse_datex2
from stadtlink.adapters.parking.decoders.nwave import battery_health, decode_nps405
from stadtlink.adapters.parking.decoders.parkapi import parse_parkapi
from stadtlink.adapters.core.timeutil import iso_ms

from .helpers import UTC, data, decode, http_message, sample

KIND_OF_TYPE = {"parking status": "status", "parking_status": "status", "heartbeat": "heartbeat",
                "startup": "startup"}
#: the vendor codecs' names (the samples' `expected`) → the shared vocabulary (adapters/core/vocabulary.py)
VOCABULARY_OF = {"firmwareVersion": "firmware_version", "debugCodes": "debug_codes", "resetCause": "reset_cause",
                 "temperature": "sensor_temperature"}


def _cases(doc: dict):
    yield doc["raw"], doc["expected"]
    for case in doc.get("more_cases", []):
        yield case["raw"], case["expected"]


@pytest.mark.parametrize("name,decoder", [("bosch-tps110-parking-lot-sensor.json", decode_tps110),
                                          ("nwave-nps405-smart-parking-sensor.json", decode_nps405)])
def test_lorawan_samples_decode_to_expected_values(name, decoder):
    doc = sample(name)
    n = 0
    for raw, expected in _cases(doc):
        payload = bytes.fromhex(raw["hex"])
        assert base64.b64decode(raw["base64"]) == payload
        out = decoder(payload, raw["f_port"])
        assert out["kind"] == KIND_OF_TYPE[expected["type"]]
        for key, want in expected.items():
            if key in ("type", "sdm"):
                continue
            key = VOCABULARY_OF.get(key, key)
            assert out[key] == pytest.approx(want) if isinstance(want, float) else out[key] == want, key
        n += 1
    assert n == 3


@pytest.mark.parametrize("profile", ["bosch-tps110", "nwave-nps405"])
@pytest.mark.parametrize("network", ["tts", "chirpstack"])
def test_profiles_read_both_network_servers(profile, network):
    payload = bytes.fromhex("95") if profile == "nwave-nps405" else bytes.fromhex("01")
    if network == "tts":
        topic, env = tts_uplink("spot-7", payload, f_port=1, f_cnt=12, received_at="2025-03-01T10:00:00.123456789Z",
                                dev_eui="70B3D57ED0000007", rssi=-97.0)
    else:
        topic, env = chirpstack_uplink("70b3d57ed0000007", payload, f_port=1, f_cnt=12,
                                       time="2025-03-01T10:00:00.123456+00:00", rssi=-97.0)
    msg = RawMessage(source="mqtt", payload=json.dumps(env).encode(), received_at=None, topic=topic)
    (reading,) = ADAPTER.profile(profile).decode(msg, {})
    assert reading.kind == "status"
    assert reading.values["occupied"] is True
    assert iso_ms(reading.observed_at) == "2025-03-01T10:00:00.123Z"   # network-server receive time
    assert reading.meta["rssi"] == -97.0
    assert reading.meta["dev_eui"] == "70b3d57ed0000007"
    assert reading.device_id == ("spot-7" if network == "tts" else "70b3d57ed0000007")


def test_bosch_frames_and_errors():
    assert decode_tps110(b"\x00", 1) == {"kind": "status", "occupied": False}
    assert decode_tps110(b"\x02", 1)["occupied"] is False          # only bit0 counts
    assert decode_tps110(b"\x00", 2) == {"kind": "heartbeat", "occupied": False}   # temperature optional
    assert decode_tps110(b"\x01\x15", 2)["sensor_temperature"] == 21
    for payload, port, reason in [(b"", 1, "bad-length"), (b"\x01\x01", 1, "bad-length"),
                                  (b"\x01\x02\x03", 2, "bad-length"), (b"\x00" * 16, 3, "bad-length"),
                                  (b"\x01", 4, "unknown-fport"), (b"\x01", None, "unknown-fport")]:
        with pytest.raises(DecodeError) as exc:
            decode_tps110(payload, port)
        assert exc.value.reason == reason
    startup = decode_tps110(bytes.fromhex("000000000000000000000000010203" + "0100"), 3)
    assert startup["debug_codes"] == [] and startup["firmware_version"] == "1.2.3"
    assert startup["reset_cause"] == "watchdog" and startup["occupied"] is False


def test_nwave_uses_the_bit0_layout_and_duration_table():
    # 0x94: bit7 set, bit0 clear → free (the older bit7 codec would have said occupied)
    assert decode_nps405(b"\x94", 1)["occupied"] is False
    assert decode_nps405(b"\x95", 1)["previous_state_duration"] == 74
    def dur(code):
        return decode_nps405(bytes([code << 1]), 1)
    assert dur(89)["previous_state_duration"] == 89
    assert (dur(90)["previous_state_duration"], dur(90)["previous_state_duration_error"]) == (90, 4)
    assert dur(119)["previous_state_duration"] == 235
    assert (dur(120)["previous_state_duration"], dur(120)["previous_state_duration_error"]) == (240, 59)
    assert dur(126)["previous_state_duration"] == 600
    assert dur(127)["previous_state_duration_overflow"] is True
    with pytest.raises(ReadingDropped):
        decode_nps405(b"\x01\x02", 10)
    for payload, port in [(b"", 1), (b"\x00" * 5, 2), (b"\x00" * 4, 3), (b"\x00", 7)]:
        with pytest.raises(DecodeError):
            decode_nps405(payload, port)


def test_nwave_battery_health_thresholds():
    assert battery_health(3000, 20) == "normal"
    assert battery_health(2999, 20) == "low"
    assert battery_health(2899, 20) == "critical"
    assert battery_health(2900, -10) == "normal"    # cold cells: 100 mV lower limits
    assert battery_health(2800, -10) == "low"
    assert battery_health(2799, -10) == "critical"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=st.binary(max_size=24), f_port=st.one_of(st.none(), st.integers(min_value=0, max_value=255)))
def test_lorawan_decoders_never_raise_anything_else(payload, f_port):
    for decoder in (decode_tps110, decode_nps405):
        try:
            out = decoder(payload, f_port)
        except (DecodeError, ReadingDropped):
            continue
        assert isinstance(out["occupied"], bool)


# ------------------------------------------------------------------------------------------ DATEX II

def test_datex2_aachen_status_sample():
    doc = sample("datex2-aachen-parkingstatus-P1.json")
    pub = parse_datex2(doc["raw"]["xml"])
    assert pub.role == "status" and pub.flavour == "v2.3-parking"
    (rec,) = pub.records
    exp = doc["expected"]
    assert rec["id"] == exp["id"]
    assert iso_ms(rec["observed_at"]) == exp["parkingStatusOriginTime"]
    v = rec["values"]
    assert v["total_realtime"] == exp["totalSpotNumber"]
    assert v["available"] == exp["availableSpotNumber"]
    assert v["occupied"] == exp["occupiedSpotNumber"]
    assert v["occupancy_percent"] == exp["parkingOccupancy_percent"]
    assert v["trend"] == exp["parkingOccupancyTrend"]
    assert v["status"] == exp["sdm"]["status"]
    assert v["status_raw"] == [exp["parkingSiteOpeningStatus"], exp["parkingSiteStatus"]]


def test_datex2_aachen_static_record():
    doc = sample("datex2-aachen-parkingstatus-P1.json")
    pub = parse_datex2(data("datex2-aachen-static-constructed.xml"))
    assert pub.role == "static"
    recs = {r["id"]: r["values"] for r in pub.records}
    exp = doc["expected"]
    p1 = recs["P1"]
    assert p1["name"] == exp["name"]
    assert p1["total"] == exp["parkingNumberOfSpaces_static"]
    assert (p1["lat"], p1["lon"]) == (exp["latitude"], exp["longitude"])
    assert p1["layout_raw"] == exp["sdm"]["layout"]
    assert p1["site_type"] == "offStreetParking"


def test_datex2_stuttgart_facility_sample():
    doc = sample("datex2-stuttgart-parkingfacilitystatus.json")
    pub = parse_datex2(doc["raw"]["xml"])
    assert pub.role == "status" and pub.flavour == "v2-parking-facility"
    (rec,) = pub.records
    exp = doc["expected"]
    assert rec["id"] == exp["id"]
    # the per-facility time (2022), not the publication time (2023)
    assert iso_ms(rec["observed_at"]) == "2022-02-11T13:16:01.000Z"
    assert rec["values"]["status"] == exp["parkingFacilityStatus"]
    assert rec["values"]["occupied"] == exp["totalNumberOfOccupiedParkingSpaces"]
    assert rec["values"]["available"] == exp["totalNumberOfVacantParkingSpaces"]
    static = parse_datex2(data("datex2-stuttgart-static-constructed.xml"))
    assert static.role == "static" and static.flavour == "v2-parking-facility"
    (srec,) = static.records
    assert srec["id"] == exp["id"]
    assert srec["values"]["name"] == exp["name_from_static"]
    assert srec["values"]["total"] == exp["totalParkingCapacity_static"]
    assert srec["values"]["layout_raw"] == [exp["layout_static"]]


def test_datex2_naive_timestamp_rule():
    pub = parse_datex2(data("datex2-aachen-status-constructed.xml"))
    p5 = next(r for r in pub.records if r["id"] == "P5")
    assert iso_ms(p5["observed_at"]) == "2025-02-07T19:06:00.000Z"   # no offset → UTC
    from zoneinfo import ZoneInfo
    pub = parse_datex2(data("datex2-aachen-status-constructed.xml"), naive_tz=ZoneInfo("Europe/Berlin"))
    p5 = next(r for r in pub.records if r["id"] == "P5")
    assert iso_ms(p5["observed_at"]) == "2025-02-07T18:06:00.000Z"   # configured zone, emitted as UTC


def test_datex2_prefix_does_not_matter():
    xml = data("datex2-aachen-status-P1.xml").decode().replace("ns2:", "d2:").replace("xmlns:ns2", "xmlns:d2")
    (rec,) = parse_datex2(xml).records
    assert rec["values"]["available"] == 412


@pytest.mark.parametrize("body,reason", [
    (b"", "empty-document"),
    (b"<html><body>Service Unavailable", "invalid-xml"),
    (b"<x:root xmlns:x='urn:other'/>", "not-datex2"),
    (b"<d2LogicalModel xmlns='http://datex2.eu/schema/2/2_0'><payloadPublication/></d2LogicalModel>",
     "unsupported-publication"),
    (b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
     b"<d2LogicalModel xmlns='http://datex2.eu/schema/2/2_0'>&lol2;</d2LogicalModel>", "unsafe-xml"),
])
def test_datex2_bad_documents(body, reason):
    with pytest.raises(DecodeError) as exc:
        parse_datex2(body)
    assert exc.value.reason == reason


def test_datex2_broken_record_does_not_spoil_the_others():
    xml = data("datex2-aachen-status-constructed.xml").decode()
    xml = xml.replace("<ns2:parkingNumberOfVacantSpaces>0</ns2:parkingNumberOfVacantSpaces>",
                      "<ns2:parkingNumberOfVacantSpaces>zero</ns2:parkingNumberOfVacantSpaces>")
    recs = {r["id"]: r for r in parse_datex2(xml).records}
    assert "not a number" in recs["P5"]["error"]
    assert recs["P1"]["values"]["available"] == 412


def test_datex2_profile_checks_the_role_option():
    msg = http_message(data("datex2-aachen-status-P1.xml"))
    with pytest.raises(DecodeError) as exc:
        decode("datex2", msg, {"role": "static"})
    assert exc.value.reason == "wrong-publication"
    (r,) = decode("datex2", msg, {"role": "status", "id_prefix": "ac-"})
    assert r.device_id == "ac-P1" and r.meta["site_ref"] == "P1" and r.kind == "site"
    assert r.meta["feed"] == "feed"
    with pytest.raises(DecodeError):
        decode("datex2", msg, {"naive_time_zone": "Mars/Olympus"})


XML_FRAGMENTS = st.sampled_from([
    "<d2LogicalModel xmlns='http://datex2.eu/schema/2/2_0'>", "</d2LogicalModel>", "<parkingStatusPublication>",
    "</parkingStatusPublication>", "<parkingRecordStatus>", "</parkingRecordStatus>",
    "<parkingRecordReference id='X'/>", "<parkingStatusOriginTime>", "</parkingStatusOriginTime>",
    "2025-01-01T00:00:00", "<parkingOccupancy>", "</parkingOccupancy>", "<parkingNumberOfVacantSpaces>",
    "</parkingNumberOfVacantSpaces>", "-3", "1e400", "nan", "12", "<parkingTablePublication>",
    "</parkingTablePublication>", "<parkingRecord id='Y'>", "</parkingRecord>", "<latitude>", "</latitude>",
    "<parkingFacilityTableStatusPublication>", "<parkingFacilityStatus>", "</parkingFacilityStatus>",
    "<parkingFacilityReference id='Z'/>", "&amp;", "<!-- c -->", "\x00", "é",
])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), st.lists(XML_FRAGMENTS, max_size=30).map("".join)))
def test_datex2_profile_never_raises_anything_else(body):
    try:
        readings = decode("datex2", http_message(body if isinstance(body, bytes) else body.encode()))
    except (DecodeError, ReadingDropped):
        return
    for r in readings:
        assert r.kind in ("site", "site-static", "invalid-site")


# ------------------------------------------------------------------------------------------ ParkAPI

def test_parkapi_v3_mannheim_sample():
    doc = sample("parkapi-v3-push-json-mannheim.json")
    version, (rec,) = parse_parkapi(json.dumps(doc["raw"]["json"]))
    exp = doc["expected"]
    assert version == "v3" and rec["id"] == exp["uid"]
    v = rec["values"]
    assert v["name"] == exp["name"]
    assert (v["lat"], v["lon"]) == (exp["latitude"], exp["longitude"])
    assert v["total_realtime"] == exp["totalSpotNumber"] and v["available"] == exp["availableSpotNumber"]
    assert v["category"] == exp["sdm"]["category"]
    assert v["status"] == []             # UNKNOWN is dropped
    assert iso_ms(rec["observed_at"]) == "2024-02-20T16:05:33.000Z"


def test_parkapi_v1_lot_list():
    version, recs = parse_parkapi(data("parkapi-v1-constructed.json"))
    assert version == "v1"
    by = {r["id"]: r for r in recs}
    main = by["mannheimhauptbahnhof"]
    assert iso_ms(main["observed_at"]) == "2024-02-20T16:05:00.000Z"   # naive → UTC
    assert main["values"]["available"] == 120 and main["values"]["total"] == 400
    assert main["values"]["status"] == ["open"] and main["values"]["category"] == ["parkingGarage"]
    assert by["mannheimrathaus"]["values"]["status"] == ["closed"]
    assert by["mannheimnodata"].get("skip")
    assert "not a number" in by["mannheimbroken"]["error"]


@pytest.mark.parametrize("body,reason", [(b"", "empty-document"), (b"{", "invalid-json"), (b"[]", "not-parkapi"),
                                         (b'{"lots": [], "last_updated": "yesterday"}', "bad-publication-time")])
def test_parkapi_bad_documents(body, reason):
    with pytest.raises(DecodeError) as exc:
        parse_parkapi(body)
    assert exc.value.reason == reason


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.sampled_from(
                        ["items", "lots", "uid", "id", "lat", "lon", "coords", "lng", "free", "total", "state",
                         "capacity", "realtime_free_capacity", "realtime_capacity", "realtime_data_updated_at",
                         "last_updated", "name", "type", "lot_type", "realtime_opening_status", "x"]), c, max_size=6),
                    max_leaves=25)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(JSON)
def test_parkapi_profile_never_raises_anything_else(doc):
    try:
        body = json.dumps(doc).encode()
    except ValueError:
        return
    try:
        readings = decode("parkapi", http_message(body))
    except (DecodeError, ReadingDropped):
        return
    for r in readings:
        assert r.kind in ("site", "invalid-site")
