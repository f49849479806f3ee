"""The parking family's decoding profiles, by the names used in config and ``stadtlink decode``.

* ``bosch-tps110``, ``nwave-nps405``: LoRaWAN single-space sensors (TTS v3 / ChirpStack v4 uplinks).
* ``datex2``: DATEX II parking status or static table (XML over HTTP), both flavours.
* ``parkapi``: ParkAPI v3 items or v1 lot list (JSON over HTTP).

Options of the polled profiles (``options:`` of an http-poll source or target):

``role``            ``status`` | ``static``: what the target serves (datex2; checked against the document).
``id_prefix``       prepended to every site id of the feed (``aachen-`` → ``aachen-P1``), to keep the
                    ids of several feeds in one namespace apart. Default: none.
``feed``            name of the feed (ties a status target to its static table). Default: the target's ``device``.
``static``          ``table`` (default for datex2: names/capacity/location come from the feed's static table,
                    the registry may add or override) or ``registry`` (no static table; a site must be
                    in the registry). ParkAPI carries its static data inline.
``naive_time_zone`` zone for timestamps without an offset (default ``UTC``; IANA name, e.g. ``Europe/Berlin``).
"""
from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from stadtlink.adapters.core.adapter import FunctionProfile, LoRaWANProfile, Profile
from stadtlink.adapters.core.errors import DecodeError
from stadtlink.adapters.core.reasons import BAD_OPTION, BAD_PAYLOAD, HTTP_ERROR
from stadtlink.adapters.core.reading import RawMessage, Reading
from stadtlink.adapters.core.timeutil import UTC

from .decoders.bosch import decode_tps110
from .decoders.datex2 import parse_datex2
from .decoders.nwave import decode_nps405
from .decoders.parkapi import parse_parkapi
from .reasons import WRONG_PUBLICATION

KIND_SITE = "site"                 # real-time counts of one site (or level)
KIND_SITE_STATIC = "site-static"   # static table row: name, capacity, coordinates, layout
KIND_INVALID_SITE = "invalid-site"  # one broken record of an otherwise good publication → dead letter

BOSCH_TPS110 = LoRaWANProfile(
    name="bosch-tps110",
    description="Bosch Parking Lot Sensor TPS110: fPort 1 occupancy, 2 heartbeat (+°C), 3 start-up",
    payload_decoder=decode_tps110,
)

NWAVE_NPS405 = LoRaWANProfile(
    name="nwave-nps405",
    description="Nwave NPS405 (G4) parking sensor: fPort 1 occupancy (bit0), 2 heartbeat (battery, °C), 3 start-up",
    payload_decoder=decode_nps405,
)


def _naive_zone(options: Mapping[str, Any]) -> tzinfo:
    name = options.get("naive_time_zone") or "UTC"
    if name in ("UTC", "utc", "Z"):
        return UTC
    try:
        return ZoneInfo(str(name))
    except (ZoneInfoNotFoundError, ValueError):
        raise DecodeError(BAD_OPTION, f"naive_time_zone {name!r} is not a known time zone") from None


def _payload(message: RawMessage) -> bytes:
    status = message.attributes.get("status") if isinstance(message.attributes, dict) else None
    if isinstance(status, int) and status >= 400:
        raise DecodeError(HTTP_ERROR, f"the feed answered HTTP {status}")
    payload = message.payload
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    if not isinstance(payload, (bytes, bytearray)):
        raise DecodeError(BAD_PAYLOAD, f"expected the HTTP body as bytes, got {type(payload).__name__}")
    return bytes(payload)


def _feed_meta(message: RawMessage, options: Mapping[str, Any], profile: str) -> dict[str, Any]:
    static = options.get("static") or ("table" if profile == "datex2" else "inline")
    if static not in ("table", "registry", "inline"):
        raise DecodeError(BAD_OPTION, f"static must be 'table' or 'registry', not {static!r}")
    return {"feed": str(options.get("feed") or message.device_hint or message.topic or "default"),
            "static_source": static}


def _readings(records: list[dict[str, Any]], *, profile: str, kind: str, prefix: str, meta: dict[str, Any],
              fallback_time: datetime) -> list[Reading]:
    out: list[Reading] = []
    for rec in records:
        if rec.get("skip"):
            continue
        site_ref = rec.get("id")
        device_id = f"{prefix}{site_ref}" if site_ref else f"{prefix}<no id>"
        rec_meta = dict(meta, site_ref=site_ref)
        if "error" in rec:
            out.append(Reading(device_id=device_id, profile=profile, observed_at=fallback_time,
                               values={"error": rec["error"]}, kind=KIND_INVALID_SITE, meta=rec_meta))
            continue
        observed = rec.get("observed_at")
        if kind == KIND_SITE and observed is None:
            out.append(Reading(device_id=device_id, profile=profile, observed_at=fallback_time,
                               values={"error": "no observation time (neither per site nor per publication)"},
                               kind=KIND_INVALID_SITE, meta=rec_meta))
            continue
        out.append(Reading(device_id=device_id, profile=profile, observed_at=observed or fallback_time,
                           values=rec["values"], kind=kind, meta=rec_meta))
    return out


def decode_datex2(message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
    publication = parse_datex2(_payload(message), naive_tz=_naive_zone(options))
    role = options.get("role")
    if role is not None and role != publication.role:
        raise DecodeError(WRONG_PUBLICATION,
                          f"target has role {role!r} but the document is a {publication.role} publication")
    meta = _feed_meta(message, options, "datex2")
    meta["flavour"] = publication.flavour
    fallback = publication.publication_time or message.received_at
    if publication.role == "status":
        # the per-site time is the observation; publication time only stands in when a record has none
        for rec in publication.records:
            if "error" not in rec and rec.get("observed_at") is None and publication.publication_time:
                rec["observed_at"] = publication.publication_time
    kind = KIND_SITE if publication.role == "status" else KIND_SITE_STATIC
    return _readings(publication.records, profile="datex2", kind=kind, prefix=str(options.get("id_prefix") or ""),
                     meta=meta, fallback_time=fallback)


def decode_parkapi(message: RawMessage, options: Mapping[str, Any]) -> list[Reading]:
    version, records = parse_parkapi(_payload(message), naive_tz=_naive_zone(options))
    meta = _feed_meta(message, options, "parkapi")
    meta["flavour"] = f"parkapi-{version}"
    return _readings(records, profile="parkapi", kind=KIND_SITE, prefix=str(options.get("id_prefix") or ""),
                     meta=meta, fallback_time=message.received_at)


DATEX2 = FunctionProfile(
    name="datex2",
    kind="http",
    description="DATEX II parking: v2.3 ParkingStatusPublication + ParkingTablePublication, v2 ParkingFacility (XML)",
    fn=decode_datex2,
)

PARKAPI = FunctionProfile(
    name="parkapi",
    kind="http",
    description="ParkAPI JSON: v3 items[] (push/pull JSON, public API) and the classic v1 lot list",
    fn=decode_parkapi,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (BOSCH_TPS110, NWAVE_NPS405, DATEX2, PARKAPI)}
