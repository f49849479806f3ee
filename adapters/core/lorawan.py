"""LoRaWAN envelopes from The Things Stack v3 and ChirpStack v4, parsed into :class:`Uplink`.

Both network servers omit default values (``f_cnt``/``fCnt`` 0, ``confirmed`` false …), TTS sends
nanosecond timestamps and its frequency as a string, ChirpStack's ids are UUIDs and lower-case EUIs.
The device id we key the registry on is the TTS ``device_id`` and, for ChirpStack, the lower-case
``devEui`` (ChirpStack device names are free text and not unique).
"""
from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from .errors import DecodeError
from .reading import Uplink
from .timeutil import TimeFormatError, parse_time

TTS_TOPIC = re.compile(r"^v3/(?P<app>[^/@]+)(?:@(?P<tenant>[^/]+))?/devices/(?P<device>[^/]+)/up$")
CHIRPSTACK_TOPIC = re.compile(r"^application/(?P<app>[^/]+)/device/(?P<dev_eui>[0-9A-Fa-f]{16})/event/up$")


def parse_uplink(payload: bytes | str | dict, topic: str | None = None) -> Uplink:
    """Parse a TTS v3 or ChirpStack v4 uplink (JSON bytes, text or an already parsed dict).

    The format is recognised from the topic when given, otherwise from the body. Raises
    :class:`DecodeError` with a reason for anything that is not a usable uplink.
    """
    if isinstance(payload, dict):
        doc = payload
    else:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            if topic and CHIRPSTACK_TOPIC.match(topic) and not _looks_like_json(payload):
                raise DecodeError("chirpstack-protobuf", CHIRPSTACK_PROTOBUF) from None
            raise DecodeError("invalid-json", str(exc)) from None
    if not isinstance(doc, dict):
        raise DecodeError("not-an-uplink", "the envelope is not a JSON object")
    if topic:
        if TTS_TOPIC.match(topic):
            return _parse_tts(doc, topic)
        if CHIRPSTACK_TOPIC.match(topic):
            return _parse_chirpstack(doc, topic)
    if "uplink_message" in doc or "end_device_ids" in doc:
        return _parse_tts(doc, topic)
    if "deviceInfo" in doc:
        return _parse_chirpstack(doc, topic)
    raise DecodeError("not-an-uplink", "neither a TTS v3 nor a ChirpStack v4 uplink")


#: The dead-letter text for a ChirpStack event in Protobuf. ChirpStack v4 encodes its MQTT events
#: as JSON unless ``[integration.mqtt] json=false`` (``chirpstack/src/config.rs`` @
#: d77207cd362d6b18d35712750c41d6a8a1efbad5: ``json: true``; ``src/integration/mqtt.rs``
#: ``uplink_event``: ``pl.encode_to_vec()`` otherwise, an ``integration.UplinkEvent``). stadtlink reads
#: JSON only: decoding Protobuf would take ChirpStack's ``chirpstack-api`` package, which pulls in
#: grpcio and google-api-core (about 56 MB) and needs protobuf >= 7.35 (its gencode checks the
#: runtime). The raw bytes stay in the dead letter; replay them once JSON is configured.
CHIRPSTACK_PROTOBUF = ("ChirpStack sends this event as Protobuf ([integration.mqtt] json=false in chirpstack.toml); "
                       "stadtlink reads ChirpStack's JSON events only: set json=true (ChirpStack's default) under "
                       "[integration.mqtt] and restart ChirpStack")


def _looks_like_json(payload: bytes | str) -> bool:
    head = payload[:64].lstrip() if isinstance(payload, (bytes, bytearray, memoryview)) else payload[:64].lstrip()
    if isinstance(head, str):
        return head[:1] in ("{", "[", '"') or head[:1].isdigit() or head[:4] in ("true", "null") or head[:5] == "false"
    first = bytes(head[:1])
    return first in (b"{", b"[", b'"') or first.isdigit() or bytes(head[:4]) in (b"true", b"null") \
        or bytes(head[:5]) == b"false"


def _b64(value: Any, field: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise DecodeError("bad-envelope", f"{field} is not a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("bad-envelope", f"{field} is not valid base64") from None


def _int(value: Any, field: str, default: int | None) -> int | None:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise DecodeError("bad-envelope", f"{field} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise DecodeError("bad-envelope", f"{field} is not an integer") from None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _time(value: Any, field: str):
    if value is None:
        return None
    try:
        return parse_time(value)
    except (TimeFormatError, OverflowError):  # OverflowError: year 1 / 9999 shifted out of range by its offset
        raise DecodeError("bad-envelope", f"{field} is not an ISO 8601 time") from None


def _str(value: Any) -> str | None:
    """Optional identifiers: a non-empty string or nothing (never a number or an object)."""
    return value if isinstance(value, str) and value else None


def _obj(doc: dict, key: str) -> dict:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError("bad-envelope", f"{key} is not an object")
    return value


def _best_gateway(rx: Any) -> dict:
    """The gateway with the strongest signal (the one whose RSSI we report)."""
    if not isinstance(rx, list):
        return {}
    gateways = [g for g in rx if isinstance(g, dict)]
    if not gateways:
        return {}
    return max(gateways, key=lambda g: _num(g.get("rssi")) if _num(g.get("rssi")) is not None else -1e9)


def _parse_tts(doc: dict, topic: str | None) -> Uplink:
    ids = _obj(doc, "end_device_ids")
    up = doc.get("uplink_message")
    if not isinstance(up, dict):
        raise DecodeError("not-an-uplink", "TTS message without uplink_message (join, ack or other event)")
    m = TTS_TOPIC.match(topic) if topic else None
    device_id = ids.get("device_id") or (m.group("device") if m else None)
    if not isinstance(device_id, str) or not device_id:
        raise DecodeError("bad-envelope", "end_device_ids.device_id missing")
    app = _obj(ids, "application_ids").get("application_id") or (m.group("app") if m else None)
    received = _time(up.get("received_at"), "uplink_message.received_at") or _time(doc.get("received_at"), "received_at")
    if received is None:
        raise DecodeError("bad-envelope", "no received_at time")
    gw = _best_gateway(up.get("rx_metadata"))
    dev_eui = ids.get("dev_eui")
    decoded = up.get("decoded_payload")
    return Uplink(
        network="tts-v3",
        device_id=device_id,
        dev_eui=dev_eui.lower() if isinstance(dev_eui, str) else None,
        application_id=app if isinstance(app, str) else None,
        tenant=m.group("tenant") if m else None,
        f_port=_int(up.get("f_port"), "f_port", None),
        f_cnt=_int(up.get("f_cnt"), "f_cnt", 0) or 0,
        payload=_b64(up.get("frm_payload"), "frm_payload"),
        received_at=received,
        gateway_time=_time(gw.get("time"), "rx_metadata.time"),
        rssi=_num(gw.get("rssi")),
        snr=_num(gw.get("snr")),
        decoded=decoded if isinstance(decoded, dict) else None,
        raw=doc,
    )


def _parse_chirpstack(doc: dict, topic: str | None) -> Uplink:
    info = _obj(doc, "deviceInfo")
    m = CHIRPSTACK_TOPIC.match(topic) if topic else None
    dev_eui = info.get("devEui") or (m.group("dev_eui") if m else None)
    if not isinstance(dev_eui, str) or not re.fullmatch(r"[0-9A-Fa-f]{16}", dev_eui):
        raise DecodeError("bad-envelope", "deviceInfo.devEui missing or not 16 hex digits")
    received = _time(doc.get("time"), "time")
    if received is None:
        raise DecodeError("bad-envelope", "no time")
    gw = _best_gateway(doc.get("rxInfo"))
    obj = doc.get("object")
    return Uplink(
        network="chirpstack-v4",
        device_id=dev_eui.lower(),
        dev_eui=dev_eui.lower(),
        application_id=_str(info.get("applicationId")) or (m.group("app") if m else None),
        tenant=_str(info.get("tenantId")),
        f_port=_int(doc.get("fPort"), "fPort", None),
        f_cnt=_int(doc.get("fCnt"), "fCnt", 0) or 0,
        payload=_b64(doc.get("data"), "data"),
        received_at=received,
        gateway_time=_time(gw.get("gwTime"), "rxInfo.gwTime"),
        rssi=_num(gw.get("rssi")),
        snr=_num(gw.get("snr")),
        decoded=obj if isinstance(obj, dict) else None,
        raw=doc,
    )


def tts_uplink(device_id: str, payload: bytes, *, f_port: int, f_cnt: int, received_at: str,
               application_id: str = "stadtlink", dev_eui: str | None = None, rssi: float = -80.0,
               snr: float = 7.5) -> tuple[str, dict]:
    """Build a TTS v3 uplink message and its topic (for simulators and tests). Zero f_cnt is omitted, as TTS does."""
    up: dict[str, Any] = {
        "f_port": f_port,
        "frm_payload": base64.b64encode(payload).decode(),
        "rx_metadata": [{"gateway_ids": {"gateway_id": "sim-gw"}, "rssi": rssi, "channel_rssi": rssi, "snr": snr}],
        "settings": {"frequency": "868100000"},
        "received_at": received_at,
    }
    if f_cnt:
        up["f_cnt"] = f_cnt
    ids: dict[str, Any] = {"device_id": device_id, "application_ids": {"application_id": application_id}}
    if dev_eui:
        ids["dev_eui"] = dev_eui.upper()
    return f"v3/{application_id}@ttn/devices/{device_id}/up", {
        "end_device_ids": ids, "received_at": received_at, "uplink_message": up}


def chirpstack_uplink(dev_eui: str, payload: bytes, *, f_port: int, f_cnt: int, time: str,
                      application_id: str = "00000000-0000-0000-0000-000000000001",
                      device_name: str | None = None, rssi: float = -80.0, snr: float = 7.5) -> tuple[str, dict]:
    """Build a ChirpStack v4 ``event/up`` message and its topic (for simulators and tests)."""
    dev_eui = dev_eui.lower()
    doc: dict[str, Any] = {
        "deduplicationId": f"{dev_eui}-{f_cnt}",
        "time": time,
        "deviceInfo": {"tenantId": "00000000-0000-0000-0000-000000000000", "applicationId": application_id,
                       "deviceName": device_name or dev_eui, "devEui": dev_eui},
        "fPort": f_port,
        "data": base64.b64encode(payload).decode(),
        "rxInfo": [{"gatewayId": "0016c001f153a14c", "rssi": rssi, "snr": snr}],
        "txInfo": {"frequency": 868100000},
    }
    if f_cnt:
        doc["fCnt"] = f_cnt
    return f"application/{application_id}/device/{dev_eui}/event/up", doc
