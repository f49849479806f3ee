"""LoRaWAN envelope parsing (adapters/core/lorawan.py): the shared TTS v3 / ChirpStack v4 samples,
the fields both network servers omit, topics, and fuzzing — bad input is always a DecodeError."""
from __future__ import annotations

import base64
import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.lorawan import chirpstack_uplink, parse_uplink, tts_uplink
from stadtlink.adapters.core.reading import Uplink

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "lorawan"
TTS = json.loads((FIXTURES / "tts-v3-uplink.json").read_text())
CHIRPSTACK = json.loads((FIXTURES / "chirpstack-v4-uplink.json").read_text())
TTS_DOC = TTS["raw"]["json"]
CS_DOC = CHIRPSTACK["raw"]["json"]
TTS_TOPIC = "v3/app1@ttn/devices/dev1/up"
CS_TOPIC = "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"


def _utc(*args) -> datetime:
    return datetime(*args, tzinfo=timezone.utc)


def test_tts_sample():
    up = parse_uplink(orjson.dumps(TTS_DOC), TTS_TOPIC)
    exp = TTS["expected"]
    assert up.network == "tts-v3"
    assert up.device_id == exp["device_id"] and up.application_id == exp["application_id"]
    assert up.dev_eui == exp["dev_eui"].lower()
    assert up.tenant == "ttn"
    assert up.f_cnt == exp["f_cnt"] == 1
    assert up.f_port is None                              # absent in the sample: must not crash
    assert up.payload == bytes(exp["payload_bytes"]) == bytes.fromhex(exp["payload_hex"])
    assert up.decoded == exp["decoded_payload"]
    assert up.rssi == exp["rssi_dBm"] and up.snr == exp["snr_dB"]
    # uplink_message.received_at (network server), nanoseconds truncated to microseconds
    assert up.received_at == _utc(2020, 2, 12, 15, 15, 45, 789585)
    assert up.gateway_time == _utc(2020, 2, 12, 15, 15, 45, 787000)
    assert up.dedup_key == ("0004a30b001c0530", 1, None)


def test_chirpstack_sample():
    up = parse_uplink(orjson.dumps(CS_DOC), CS_TOPIC)
    exp = CHIRPSTACK["expected"]
    assert up.network == "chirpstack-v4"
    assert up.device_id == up.dev_eui == exp["dev_eui"]
    assert up.application_id == exp["application_id"]
    assert up.tenant == "52f14cd4-c6f1-4fbd-8f87-4025e1d49242"
    assert up.f_port == exp["f_port"] == 1
    assert up.f_cnt == exp["f_cnt"] == 0                  # fCnt absent = 0
    assert up.payload == bytes(exp["payload_bytes"])
    assert up.decoded is None
    assert up.rssi == exp["rssi_dBm"] and up.snr == exp["snr_dB"]
    assert up.received_at == _utc(2022, 7, 18, 9, 34, 15, 775023)
    assert up.gateway_time is None


@pytest.mark.parametrize("doc", [TTS_DOC, CS_DOC], ids=["tts", "chirpstack"])
def test_recognised_without_topic_and_from_text_or_dict(doc):
    a = parse_uplink(orjson.dumps(doc))
    b = parse_uplink(json.dumps(doc))
    c = parse_uplink(copy.deepcopy(doc), "some/other/topic")
    assert a.device_id == b.device_id == c.device_id
    assert a.payload == b.payload == c.payload


def test_tts_frequency_as_string_or_number():
    for freq in ("868300000", 868300000, "not a number"):
        doc = copy.deepcopy(TTS_DOC)
        doc["uplink_message"]["settings"]["frequency"] = freq
        assert parse_uplink(doc, TTS_TOPIC).payload == b"\x82\x41\xde"


def test_f_cnt_absent_is_zero_and_f_port_missing_is_none():
    topic, doc = tts_uplink("dev-z", b"\x01", f_port=3, f_cnt=0, received_at="2024-05-01T12:00:00.123456789Z")
    assert "f_cnt" not in doc["uplink_message"]
    up = parse_uplink(doc, topic)
    assert up.f_cnt == 0 and up.f_port == 3
    del doc["uplink_message"]["f_port"]
    assert parse_uplink(doc, topic).f_port is None
    cs_topic, cs = chirpstack_uplink("AABBCCDDEEFF0011", b"\x02", f_port=2, f_cnt=0, time="2024-05-01T12:00:00Z")
    assert "fCnt" not in cs
    up = parse_uplink(cs, cs_topic)
    assert up.f_cnt == 0 and up.dev_eui == "aabbccddeeff0011" and cs_topic.endswith("/aabbccddeeff0011/event/up")


def test_empty_payload_is_empty_bytes():
    doc = copy.deepcopy(TTS_DOC)
    del doc["uplink_message"]["frm_payload"]
    assert parse_uplink(doc, TTS_TOPIC).payload == b""


def test_topic_parsing():
    doc = copy.deepcopy(TTS_DOC)
    del doc["end_device_ids"]["device_id"]
    del doc["end_device_ids"]["application_ids"]
    up = parse_uplink(doc, "v3/parking-app@city/devices/spot-7/up")
    assert up.device_id == "spot-7" and up.application_id == "parking-app" and up.tenant == "city"
    up = parse_uplink(doc, "v3/parking-app/devices/spot-8/up")       # open-source deployment: no tenant
    assert up.device_id == "spot-8" and up.tenant is None
    with pytest.raises(DecodeError) as err:
        parse_uplink(doc, "some/topic")
    assert err.value.reason == "bad-envelope"

    cs = copy.deepcopy(CS_DOC)
    del cs["deviceInfo"]["devEui"]
    up = parse_uplink(cs, "application/abc/device/AABBCCDDEEFF0011/event/up")
    assert up.dev_eui == "aabbccddeeff0011" and up.application_id == "17c82e96-be03-4f38-aef3-f83d48582d97"


def test_builders_round_trip():
    topic, doc = tts_uplink("spot-1", b"\x01\x02", f_port=2, f_cnt=17, received_at="2024-05-01T12:00:00Z",
                            dev_eui="70b3d5ffff000001", rssi=-101.0, snr=-3.5)
    up = parse_uplink(orjson.dumps(doc), topic)
    assert (up.device_id, up.f_port, up.f_cnt, up.payload, up.rssi, up.snr, up.tenant) == \
        ("spot-1", 2, 17, b"\x01\x02", -101.0, -3.5, "ttn")
    assert up.dev_eui == "70b3d5ffff000001"
    topic, doc = chirpstack_uplink("70B3D5FFFF000002", b"\xff", f_port=9, f_cnt=3, time="2024-05-01T12:00:00+02:00")
    up = parse_uplink(orjson.dumps(doc), topic)
    assert (up.device_id, up.f_port, up.f_cnt, up.payload) == ("70b3d5ffff000002", 9, 3, b"\xff")
    assert up.received_at == _utc(2024, 5, 1, 10, 0, 0)


def test_strongest_gateway_reported():
    doc = copy.deepcopy(TTS_DOC)
    doc["uplink_message"]["rx_metadata"] = [{"rssi": -110, "snr": -5}, "junk", {"rssi": -60, "snr": 9}, {"snr": 1}]
    up = parse_uplink(doc, TTS_TOPIC)
    assert (up.rssi, up.snr) == (-60, 9)


@pytest.mark.parametrize("payload,reason", [
    (b"", "invalid-json"), (b"{", "invalid-json"), (b"[1,2]", "not-an-uplink"), (b'"x"', "not-an-uplink"),
    (b"{}", "not-an-uplink"), (b'{"end_device_ids": {"device_id": "d"}}', "not-an-uplink"),
    (b'{"deviceInfo": {"devEui": "zz"}, "time": "2024-01-01T00:00:00Z"}', "bad-envelope"),
    (b'{"deviceInfo": {"devEui": "0101010101010101"}}', "bad-envelope"),
    (b'{"uplink_message": {"frm_payload": "AA=="}, "end_device_ids": {"device_id": "d"}}', "bad-envelope"),
])
def test_bad_envelopes_name_a_reason(payload, reason):
    with pytest.raises(DecodeError) as err:
        parse_uplink(payload)
    assert err.value.reason == reason


@pytest.mark.parametrize("value", ["***", "AAA", "ä", 12, ["AA=="]])
def test_invalid_base64_is_a_decode_error(value):
    doc = copy.deepcopy(TTS_DOC)
    doc["uplink_message"]["frm_payload"] = value
    with pytest.raises(DecodeError) as err:
        parse_uplink(doc, TTS_TOPIC)
    assert err.value.reason == "bad-envelope" and "frm_payload" in err.value.detail
    cs = copy.deepcopy(CS_DOC)
    cs["data"] = value
    with pytest.raises(DecodeError):
        parse_uplink(cs, CS_TOPIC)


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "yesterday", "2024-13-01T00:00:00Z"])
def test_out_of_range_or_bad_times_are_decode_errors(stamp):
    doc = copy.deepcopy(TTS_DOC)
    doc["uplink_message"]["received_at"] = stamp
    with pytest.raises(DecodeError):
        parse_uplink(doc, TTS_TOPIC)
    cs = copy.deepcopy(CS_DOC)
    cs["time"] = stamp
    with pytest.raises(DecodeError):
        parse_uplink(cs, CS_TOPIC)


def test_non_text_input_is_a_decode_error():
    for value in (123, None, 1.5, ["x"]):
        with pytest.raises(DecodeError):
            parse_uplink(value)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- fuzzing

def _must_be_uplink_or_decode_error(payload, topic=None) -> None:
    try:
        result = parse_uplink(payload, topic)
    except DecodeError as exc:
        assert exc.reason and isinstance(exc.reason, str)
        return
    assert isinstance(result, Uplink)
    assert isinstance(result.payload, bytes) and isinstance(result.f_cnt, int)
    assert result.f_port is None or isinstance(result.f_port, int)
    assert isinstance(result.device_id, str) and result.device_id
    assert result.received_at.tzinfo is not None
    for name in ("application_id", "tenant", "dev_eui"):
        value = getattr(result, name)
        assert value is None or isinstance(value, str), name


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOPICS = st.sampled_from([None, TTS_TOPIC, CS_TOPIC, "v3/a/devices/b/up", "x"])


@FUZZ
@given(st.binary(max_size=400), TOPICS)
def test_fuzz_random_bytes(data, topic):
    _must_be_uplink_or_decode_error(data, topic)


@FUZZ
@given(st.sampled_from([TTS_DOC, CS_DOC]), st.integers(min_value=0, max_value=4000), TOPICS)
def test_fuzz_truncated_json(doc, cut, topic):
    text = orjson.dumps(doc)
    _must_be_uplink_or_decode_error(text[: cut % max(1, len(text))], topic)


def _paths(value, prefix=()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


WRONG = [None, True, False, 0, -1, 1.5, 10**30, "", "x", "AA==", "2024-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00",
         [], [1], {}, {"a": 1}]


@pytest.mark.parametrize("doc,topic", [(TTS_DOC, TTS_TOPIC), (CS_DOC, CS_TOPIC), (TTS_DOC, None), (CS_DOC, None)],
                         ids=["tts", "chirpstack", "tts-no-topic", "cs-no-topic"])
def test_wrong_type_in_every_field(doc, topic):
    """Every field of both samples replaced by every wrong-typed value: Uplink or DecodeError."""
    for path in list(_paths(doc)):
        for wrong in WRONG:
            mutated = copy.deepcopy(doc)
            target = mutated
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = wrong
            _must_be_uplink_or_decode_error(json.dumps(mutated).encode(), topic)
            _must_be_uplink_or_decode_error(mutated, topic)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20)


@FUZZ
@given(st.sampled_from([TTS_DOC, CS_DOC]), st.data(), TOPICS)
def test_fuzz_random_values_in_random_fields(doc, data, topic):
    mutated = copy.deepcopy(doc)
    paths = list(_paths(mutated))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        path = data.draw(st.sampled_from(paths))
        target = mutated
        try:
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = data.draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue
    _must_be_uplink_or_decode_error(json.dumps(mutated).encode(), topic)


@FUZZ
@given(st.text(max_size=60))
def test_fuzz_base64_field(text):
    doc = copy.deepcopy(TTS_DOC)
    doc["uplink_message"]["frm_payload"] = text
    try:
        expected = base64.b64decode(text, validate=True)
    except Exception:
        expected = None
    try:
        up = parse_uplink(doc, TTS_TOPIC)
    except DecodeError as exc:
        assert expected is None, exc
        return
    assert up.payload == expected
