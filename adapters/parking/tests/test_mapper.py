"""Mapper: spot sensors → ParkingSpot/Device/aggregate, heartbeat timer, feeds → OffStreetParking, edge cases."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from stadtlink.adapters.core.adapter import StateStore
from stadtlink.adapters.core.errors import MappingError, ReadingDropped
from stadtlink.adapters.core.reading import Reading
from stadtlink.adapters.parking import ADAPTER, tick
from stadtlink.schemas import check_entity

from .helpers import T0, by_id, data, decode, http_message, make_ctx, map_all, sample, spot_reading, value


SPOTS = [
    {"id": "spot-1", "name": "Nord 1", "lat": 52.4201, "lon": 10.7801, "profile": "bosch-tps110", "site": "pr-nord",
     "level": 0, "dev_eui": "70b3d57ed0000001"},
    {"id": "spot-2", "name": "Nord 2", "lat": 52.4202, "lon": 10.7802, "profile": "bosch-tps110", "site": "pr-nord",
     "level": 0},
    {"id": "70b3d57ed0000003", "spot": "nord-3", "name": "Nord 3", "lat": 52.4203, "lon": 10.7803,
     "profile": "nwave-nps405", "site": "pr-nord", "level": -1, "heartbeat_timeout_s": 600},
    {"id": "pr-nord", "name": "P+R Nord", "lat": 52.4200, "lon": 10.7800, "total_spots": 4,
     "category": "parkingLot;public", "layout": "surface"},
    {"id": "street-1", "name": "Hauptstr. 1", "lat": 52.43, "lon": 10.79, "site": "hauptstr", "category": "onStreet"},
]


def assert_valid(entities):
    for e in entities:
        assert check_entity(e) == [], (e["id"], check_entity(e))


def test_bosch_uplink_becomes_spot_device_and_site_aggregate():
    ctx = make_ctx(SPOTS)
    ents = by_id(ADAPTER.mapper(spot_reading("spot-1", "01"), ctx))
    assert_valid(ents.values())
    spot = ents["urn:ngsi-ld:ParkingSpot:test:spot-1"]
    assert set(spot) == {"id", "type", "status", "category", "location", "name", "refParkingSite",
                         "refParkingGroup", "refDevice"}
    assert value(spot, "status") == "occupied"
    assert spot["status"]["observedAt"] == "2025-03-01T10:00:00.000Z"
    assert value(spot, "category") == ["offStreet"]
    assert value(spot, "refParkingSite") == "urn:ngsi-ld:OffStreetParking:test:pr-nord"
    assert value(spot, "refParkingGroup") == "urn:ngsi-ld:ParkingGroup:test:pr-nord-level-0"
    assert value(spot, "refDevice") == ["urn:ngsi-ld:Device:test:spot-1"]
    assert spot["location"]["value"]["coordinates"] == [10.7801, 52.4201]
    device = ents["urn:ngsi-ld:Device:test:spot-1"]
    assert value(device, "controlledProperty") == ["occupancy"]
    assert value(device, "rssi") == -91.0 and device["rssi"]["unitCode"] == "DBM"
    assert value(device, "dateLastValueReported") == "2025-03-01T10:00:00.000Z"
    assert "batteryLevel" not in device        # TPS110 frames carry no battery: omitted, never null
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert value(site, "totalSpotNumber") == 4            # from the registry's site record
    assert value(site, "availableSpotNumber") == 0
    assert value(site, "occupiedSpotNumber") == 1
    assert value(site, "occupancy") == 1.0 and site["occupancy"]["unitCode"] == "C62"
    assert value(site, "status") == ["full"]
    assert value(site, "category") == ["parkingLot", "public"]
    assert value(site, "layout") == ["surface"]
    assert value(site, "name") == "P+R Nord"
    assert site["location"]["value"]["coordinates"] == [10.78, 52.42]
    group = ents["urn:ngsi-ld:ParkingGroup:test:pr-nord-level-0"]
    assert value(group, "refParkingSite") == "urn:ngsi-ld:OffStreetParking:test:pr-nord"
    assert value(group, "totalSpotNumber") == 2 and value(group, "availableSpotNumber") == 0


def test_aggregate_follows_every_spot_and_both_network_servers():
    ctx = make_ctx(SPOTS)
    ADAPTER.mapper(spot_reading("spot-1", "01", at=T0), ctx)
    ADAPTER.mapper(spot_reading("spot-2", "00", at=T0 + timedelta(seconds=5)), ctx)
    ents = by_id(ADAPTER.mapper(spot_reading("70b3d57ed0000003", "00D3D800590B", f_port=2, profile="nwave-nps405",
                                             network="chirpstack", at=T0 + timedelta(seconds=9)), ctx))
    assert_valid(ents.values())
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert (value(site, "availableSpotNumber"), value(site, "occupiedSpotNumber")) == (2, 1)
    assert value(site, "occupancy") == pytest.approx(0.3333)
    assert value(site, "status") == ["spacesAvailable"]
    assert site["availableSpotNumber"]["observedAt"] == "2025-03-01T10:00:09.000Z"
    spot3 = ents["urn:ngsi-ld:ParkingSpot:test:nord-3"]          # the registry's `spot` id, not the EUI
    assert value(spot3, "status") == "free"
    device = ents["urn:ngsi-ld:Device:test:70b3d57ed0000003"]
    assert 0 <= value(device, "batteryLevel") <= 1
    assert value(device, "batteryLevel") == pytest.approx(0.744, abs=1e-3)   # 3.344 V: 0.7 + 0.3 × 0.044/0.3 on the NPS405 curve
    assert device["batteryLevel"]["unitCode"] == "C62"
    assert value(device, "serialNumber") == "70b3d57ed0000003"
    assert "urn:ngsi-ld:ParkingGroup:test:pr-nord-level--1" in ents


def test_startup_frame_sets_status_and_firmware():
    ctx = make_ctx(SPOTS)
    ents = by_id(ADAPTER.mapper(spot_reading("spot-1", "240300007503000000000000001D020301", f_port=3), ctx))
    assert value(ents["urn:ngsi-ld:ParkingSpot:test:spot-1"], "status") == "occupied"
    assert value(ents["urn:ngsi-ld:Device:test:spot-1"], "firmwareVersion") == "0.29.2"


def test_closed_from_config():
    ctx = make_ctx(SPOTS, settings={"closed_spots": ["spot-2"]})
    ents = by_id(ADAPTER.mapper(spot_reading("spot-2", "01"), ctx))
    assert value(ents["urn:ngsi-ld:ParkingSpot:test:spot-2"], "status") == "closed"
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert value(site, "status") == ["closed"]            # its only known spot is closed
    assert "occupancy" not in site
    assert_valid(ents.values())
    ctx = make_ctx([dict(SPOTS[0], closed=True)] + SPOTS[1:])
    ents = by_id(ADAPTER.mapper(spot_reading("spot-1", "00"), ctx))
    assert value(ents["urn:ngsi-ld:ParkingSpot:test:spot-1"], "status") == "closed"


def test_closed_site_with_capacity_from_settings():
    ctx = make_ctx(SPOTS, settings={"sites": {"pr-nord": {"closed": True, "total_spots": 10}}})
    ents = by_id(ADAPTER.mapper(spot_reading("spot-1", "00"), ctx))
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert value(site, "status") == ["closed"] and value(site, "totalSpotNumber") == 10
    assert value(ents["urn:ngsi-ld:ParkingSpot:test:spot-1"], "status") == "closed"
    assert_valid(ents.values())


def test_closed_site_from_its_registry_record():
    ctx = make_ctx([dict(r, closed=True) if r["id"] == "pr-nord" else r for r in SPOTS])
    ents = by_id(ADAPTER.mapper(spot_reading("spot-2", "00"), ctx))
    assert value(ents["urn:ngsi-ld:ParkingSpot:test:spot-2"], "status") == "closed"
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert value(site, "status") == ["closed"] and value(site, "totalSpotNumber") == 4
    assert "occupancy" not in site
    assert_valid(ents.values())


def test_aggregation_is_configurable_per_site():
    ctx = make_ctx(SPOTS, settings={"sites": {"pr-nord": {"aggregate": False}}})
    types = {e["type"] for e in ADAPTER.mapper(spot_reading("spot-1", "01"), ctx)}
    assert types == {"ParkingSpot", "Device"}
    ctx = make_ctx(SPOTS, settings={"aggregate_sites": False, "sites": {"pr-nord": {"aggregate": True}}})
    assert "OffStreetParking" in {e["type"] for e in ADAPTER.mapper(spot_reading("spot-1", "01"), ctx)}
    ctx = make_ctx(SPOTS, settings={"level_groups": False, "devices": False})
    ents = ADAPTER.mapper(spot_reading("spot-1", "01"), ctx)
    assert {e["type"] for e in ents} == {"ParkingSpot", "OffStreetParking"}
    assert "refParkingGroup" not in ents[0] and "refDevice" not in ents[0]


def test_site_without_site_record_uses_the_spot_count_and_centroid():
    ctx = make_ctx([r for r in SPOTS if r["id"] != "pr-nord"])
    ents = by_id(ADAPTER.mapper(spot_reading("spot-1", "00"), ctx))
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert value(site, "totalSpotNumber") == 3
    assert value(site, "name") == "pr-nord"
    assert site["location"]["value"]["coordinates"] == [10.7802, 52.4202]
    assert_valid(ents.values())


def test_on_street_spot_has_no_off_street_aggregate():
    ctx = make_ctx(SPOTS)
    ents = ADAPTER.mapper(spot_reading("street-1", "01"), ctx)
    spot = ents[0]
    assert value(spot, "category") == ["onStreet"]
    assert value(spot, "refParkingSite") == "urn:ngsi-ld:OnStreetParking:test:hauptstr"
    assert {e["type"] for e in ents} == {"ParkingSpot", "Device"}
    assert_valid(ents)


def test_unknown_after_heartbeat_timeout_and_back():
    ctx = make_ctx(SPOTS, settings={"heartbeat_timeout_s": 3600})
    ADAPTER.mapper(spot_reading("spot-1", "01", at=T0), ctx)
    ADAPTER.mapper(spot_reading("spot-2", "00", at=T0), ctx)
    ADAPTER.mapper(spot_reading("70b3d57ed0000003", "95", profile="nwave-nps405", network="chirpstack", at=T0), ctx)
    ctx.now = T0 + timedelta(seconds=599)
    assert tick(ctx) == []
    ctx.now = T0 + timedelta(seconds=601)          # nord-3 has its own 600 s timeout
    ents = by_id(tick(ctx))
    assert_valid(ents.values())
    spot3 = ents["urn:ngsi-ld:ParkingSpot:test:nord-3"]
    assert value(spot3, "status") == "unknown"
    assert spot3["status"]["observedAt"] == "2025-03-01T10:10:00.000Z"   # last uplink + timeout
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert (value(site, "availableSpotNumber"), value(site, "occupiedSpotNumber")) == (1, 1)
    assert value(site, "occupancy") == 0.5
    assert "urn:ngsi-ld:ParkingGroup:test:pr-nord-level--1" in ents
    assert tick(ctx) == []                          # reported once
    ctx.now = T0 + timedelta(seconds=3601)
    ents = by_id(tick(ctx))
    assert {value(ents[f"urn:ngsi-ld:ParkingSpot:test:spot-{i}"], "status") for i in (1, 2)} == {"unknown"}
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert "status" not in site and "occupancy" not in site       # nothing known: no guess
    assert value(site, "availableSpotNumber") == 0
    assert_valid(ents.values())
    # the sensor speaks again
    ents = by_id(ADAPTER.mapper(spot_reading("spot-1", "00", at=T0 + timedelta(hours=2)), ctx))
    assert value(ents["urn:ngsi-ld:ParkingSpot:test:spot-1"], "status") == "free"
    assert value(ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"], "availableSpotNumber") == 1


def test_tick_without_clock_or_state_does_nothing():
    ctx = make_ctx(SPOTS)
    assert tick(ctx) == []
    ctx.now = T0
    assert tick(ctx) == []


def test_state_survives_a_restart():
    ctx = make_ctx(SPOTS)
    ADAPTER.mapper(spot_reading("spot-1", "01", at=T0), ctx)
    ADAPTER.mapper(spot_reading("spot-2", "01", at=T0), ctx)
    persisted = json.loads(json.dumps(dict(ctx.state)))     # what the runtime stores
    assert all(k.startswith("parking:") for k in persisted)
    ctx2 = make_ctx(SPOTS, state=StateStore(persisted))
    ents = by_id(ADAPTER.mapper(spot_reading("70b3d57ed0000003", "94", profile="nwave-nps405", at=T0), ctx2))
    site = ents["urn:ngsi-ld:OffStreetParking:test:pr-nord"]
    assert (value(site, "availableSpotNumber"), value(site, "occupiedSpotNumber")) == (1, 2)


def test_older_uplink_never_overwrites_a_newer_one():
    ctx = make_ctx(SPOTS)
    ADAPTER.mapper(spot_reading("spot-1", "01", at=T0), ctx)
    with pytest.raises(ReadingDropped) as exc:
        ADAPTER.mapper(spot_reading("spot-1", "00", at=T0 - timedelta(seconds=1)), ctx)
    assert exc.value.reason == "older-than-state"
    assert ctx.state["parking:spots:pr-nord"]["spot-1"]["status"] == "occupied"


def test_registry_gaps_are_mapping_errors():
    ctx = make_ctx(SPOTS)
    with pytest.raises(MappingError) as exc:
        ADAPTER.mapper(spot_reading("spot-99", "01"), ctx)
    assert exc.value.reason == "unknown-device"
    ctx = make_ctx([{"id": "lonely", "lat": 52.0, "lon": 10.0, "profile": "bosch-tps110"}])
    with pytest.raises(MappingError) as exc:
        ADAPTER.mapper(spot_reading("lonely", "01"), ctx)
    assert exc.value.missing == ["site"]
    ctx = make_ctx([{"id": "nowhere", "site": "x", "profile": "bosch-tps110"}])
    with pytest.raises(MappingError) as exc:
        ADAPTER.mapper(spot_reading("nowhere", "01"), ctx)
    assert exc.value.missing == ["location"]


def test_lenient_mode_reports_gaps_instead_of_failing():
    ctx = make_ctx([])
    ctx.lenient = True
    ents = ADAPTER.mapper(spot_reading("spot-x", "01"), ctx)
    assert value(ents[0], "status") == "occupied"
    assert any("not in the registry" in m for m in ctx.missing)


# ------------------------------------------------------------------------------------------ feeds

def aachen(ctx, *files, options=None):
    out, errors = [], []
    for f in files:
        e, err = map_all(decode("datex2", http_message(data(f), device="aachen"), options), ctx)
        out += e
        errors += err
    return by_id(out), errors


def test_datex2_aachen_with_static_table():
    doc = sample("datex2-aachen-parkingstatus-P1.json")
    exp = doc["expected"]["sdm"]
    ctx = make_ctx(namespace="aachen")
    ents, errors = aachen(ctx, "datex2-aachen-static-constructed.xml", "datex2-aachen-status-P1.xml")
    assert errors == []
    p1 = ents["urn:ngsi-ld:OffStreetParking:aachen:P1"]
    assert check_entity(p1) == []
    assert p1["type"] == exp["type"]
    for attr in ("status", "totalSpotNumber", "availableSpotNumber", "occupiedSpotNumber", "occupancy", "layout"):
        assert value(p1, attr) == exp[attr], attr
    assert value(p1, "name") == doc["expected"]["name"]
    assert p1["location"]["value"]["coordinates"] == [doc["expected"]["longitude"], doc["expected"]["latitude"]]
    assert value(p1, "occupancyModified") == exp["observedAt/occupancyModified"]
    for attr in ("status", "totalSpotNumber", "availableSpotNumber", "occupiedSpotNumber", "occupancy"):
        assert p1[attr]["observedAt"] == exp["observedAt/occupancyModified"], attr
    assert p1["occupancy"]["unitCode"] == "C62"
    assert value(p1, "category") == ["parkingGarage"]     # from the multiStorey layout


def test_datex2_edge_cases_closed_site_naive_time_and_missing_site():
    ctx = make_ctx(namespace="aachen")
    ents, errors = aachen(ctx, "datex2-aachen-static-constructed.xml", "datex2-aachen-status-constructed.xml")
    # P99 is not in the static table: dead-lettered with the reason, the others continue
    assert [(site, e.reason) for site, e in errors] == [("P99", "site-not-in-static-list")]
    assert isinstance(errors[0][1], MappingError) and "P99" in str(errors[0][1])
    assert "urn:ngsi-ld:OffStreetParking:aachen:P1" in ents
    p5 = ents["urn:ngsi-ld:OffStreetParking:aachen:P5"]
    assert check_entity(p5) == []
    assert value(p5, "status") == ["closed"]
    assert value(p5, "totalSpotNumber") == 300          # the static capacity, never the 0 override
    assert "occupancy" not in p5                         # no division by zero, no fake 0
    assert value(p5, "availableSpotNumber") == 0
    assert p5["status"]["observedAt"] == "2025-02-07T19:06:00.000Z"   # naive feed time → UTC
    assert value(p5, "category") == ["underground"] and "layout" not in p5   # DATEX layout underground


def test_closed_site_without_any_capacity_omits_total():
    ctx = make_ctx([{"id": "P5", "lat": 50.77, "lon": 6.08, "name": "P5"}], namespace="aachen")
    ents, errors = aachen(ctx, "datex2-aachen-status-constructed.xml", options={"static": "registry"})
    p5 = ents["urn:ngsi-ld:OffStreetParking:aachen:P5"]
    assert "totalSpotNumber" not in p5 and "occupancy" not in p5
    assert value(p5, "status") == ["closed"]
    assert check_entity(p5) == []
    # with static: registry a site missing from the registry is dead-lettered at once
    assert sorted(site for site, e in errors if e.reason == "site-not-in-static-list") == ["P1", "P99"]


def test_status_before_static_table_is_held_then_emitted():
    ctx = make_ctx(namespace="aachen")
    ents, errors = aachen(ctx, "datex2-aachen-status-P1.xml")
    assert ents == {}
    assert [(s, e.reason) for s, e in errors] == [("P1", "awaiting-static-table")]
    assert isinstance(errors[0][1], ReadingDropped)
    ents, errors = aachen(ctx, "datex2-aachen-static-constructed.xml")
    assert errors == []
    assert value(ents["urn:ngsi-ld:OffStreetParking:aachen:P1"], "availableSpotNumber") == 412
    assert not [k for k in ctx.state if k.startswith("parking:pending:")]


def test_datex2_feed_time_older_than_state_is_dropped():
    ctx = make_ctx(namespace="aachen")
    aachen(ctx, "datex2-aachen-static-constructed.xml", "datex2-aachen-status-P1.xml")
    xml = data("datex2-aachen-status-P1.xml").replace(b"2025-02-07T19:05:34.176Z", b"2025-02-07T18:05:34.176Z")
    _, errors = map_all(decode("datex2", http_message(xml, device="aachen")), ctx)
    assert [e.reason for _, e in errors] == ["older-than-state"]
    # the same observation polled again is written again (idempotent)
    ents, errors = aachen(ctx, "datex2-aachen-status-P1.xml")
    assert errors == [] and "urn:ngsi-ld:OffStreetParking:aachen:P1" in ents


def test_datex2_stuttgart_with_static_table_or_registry():
    doc = sample("datex2-stuttgart-parkingfacilitystatus.json")
    exp = doc["expected"]
    for how in ("table", "registry"):
        if how == "table":
            ctx = make_ctx(namespace="stuttgart")
            map_all(decode("datex2", http_message(data("datex2-stuttgart-static-constructed.xml"), "stgt")), ctx)
            opts = {}
        else:
            ctx = make_ctx([{"id": "12717289", "name": exp["name_from_static"], "lat": 48.7705, "lon": 9.171,
                             "total_spots": exp["totalParkingCapacity_static"], "layout": exp["layout_static"]}],
                           namespace="stuttgart")
            opts = {"static": "registry"}
        ents, errors = map_all(decode("datex2", http_message(data("datex2-stuttgart-status.xml"), "stgt"), opts), ctx)
        assert errors == []
        (e,) = ents
        assert check_entity(e) == []
        assert e["id"] == "urn:ngsi-ld:OffStreetParking:stuttgart:12717289"
        for attr in ("status", "availableSpotNumber", "occupiedSpotNumber", "totalSpotNumber", "occupancy"):
            assert value(e, attr) == exp["sdm"][attr], (how, attr)
        assert value(e, "name") == exp["name_from_static"]
        assert value(e, "layout") == ["singleLevel"] and value(e, "category") == ["parkingLot"]
        assert e["availableSpotNumber"]["observedAt"] == "2022-02-11T13:16:01.000Z"


def test_parkapi_v3_mannheim():
    doc = sample("parkapi-v3-push-json-mannheim.json")
    exp = doc["expected"]
    ctx = make_ctx(namespace="mannheim")
    ents, errors = map_all(decode("parkapi", http_message(json.dumps(doc["raw"]["json"]).encode(), "mannheim")), ctx)
    assert errors == []
    (e,) = ents
    assert check_entity(e) == []
    assert e["id"] == "urn:ngsi-ld:OffStreetParking:mannheim:P8_Parkdeck_Altstadt_Haagstrasse"
    for attr in ("totalSpotNumber", "availableSpotNumber", "occupiedSpotNumber", "occupancy"):
        assert value(e, attr) == exp[attr], attr
    assert value(e, "category") == exp["sdm"]["category"]
    assert value(e, "name") == exp["name"]
    assert "status" not in e                            # realtime_opening_status UNKNOWN
    assert e["location"]["value"]["coordinates"] == [exp["longitude"], exp["latitude"]]
    assert e["availableSpotNumber"]["observedAt"] == "2024-02-20T16:05:33.000Z"


def test_parkapi_v1_closed_lot_and_broken_lot():
    ctx = make_ctx(namespace="mannheim")
    ents, errors = map_all(decode("parkapi", http_message(data("parkapi-v1-constructed.json"), "v1")), ctx)
    ents = by_id(ents)
    assert_valid(ents.values())
    main = ents["urn:ngsi-ld:OffStreetParking:mannheim:mannheimhauptbahnhof"]
    assert value(main, "occupancy") == 0.7 and value(main, "status") == ["open"]
    assert value(main, "layout") == ["multiStorey"]
    assert main["status"]["observedAt"] == "2024-02-20T16:05:00.000Z"
    closed = ents["urn:ngsi-ld:OffStreetParking:mannheim:mannheimrathaus"]
    assert value(closed, "status") == ["closed"]
    assert "totalSpotNumber" not in closed and "occupancy" not in closed
    assert "urn:ngsi-ld:OffStreetParking:mannheim:mannheimnodata" not in ents
    assert [(s, e.reason) for s, e in errors] == [("mannheimbroken", "invalid-site-record")]


def test_registry_overrides_feed_and_level_becomes_parking_group():
    registry = [{"id": "P8_Parkdeck_Altstadt_Haagstrasse", "name": "P8 (Registry)", "layout": "multiStorey",
                 "category": "parkingGarage;public"},
                {"id": "P1-L1", "parent_site": "P1", "level": 1, "lat": 50.78, "lon": 6.09, "name": "P1 Ebene 1"}]
    ctx = make_ctx(registry, namespace="x")
    doc = sample("parkapi-v3-push-json-mannheim.json")
    (e,), _ = map_all(decode("parkapi", http_message(json.dumps(doc["raw"]["json"]).encode())), ctx)
    assert value(e, "name") == "P8 (Registry)"
    assert value(e, "category") == ["parkingGarage", "public"] and value(e, "layout") == ["multiStorey"]
    level = {"items": [{"uid": "P1-L1", "realtime_free_capacity": 10, "realtime_capacity": 40,
                        "realtime_data_updated_at": "2024-02-20T17:05:33+01:00"}]}
    (g,), errors = map_all(decode("parkapi", http_message(json.dumps(level).encode())), ctx)
    assert errors == []
    assert g["type"] == "ParkingGroup" and g["id"] == "urn:ngsi-ld:ParkingGroup:x:P1-L1"
    assert value(g, "refParkingSite") == "urn:ngsi-ld:OffStreetParking:x:P1"
    assert (value(g, "totalSpotNumber"), value(g, "availableSpotNumber")) == (40, 10)
    assert check_entity(g) == []


def test_unknown_reading_kind_is_a_mapping_error():
    ctx = make_ctx()
    with pytest.raises(MappingError):
        ADAPTER.mapper(Reading(device_id="x", profile="datex2", observed_at=T0, values={}, kind="weird"), ctx)
