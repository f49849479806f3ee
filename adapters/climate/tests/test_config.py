"""The example config (examples/climate.yaml and its packaged copy) is valid and complete, and a
500-station registry (CSV and GeoJSON, generated here) loads and is handled at a 10-minute cadence."""
from __future__ import annotations

import csv
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from stadtlink.adapters.climate import ADAPTER, PACKAGE_DIR
from stadtlink.adapters.climate.decoders import decode_dl_atm41, decode_meteohelix
from stadtlink.adapters.climate.mapper import map_reading
from stadtlink.adapters.climate.settings import ClimateSettings
from stadtlink.adapters.climate.simulator import SimulatedStation
from stadtlink.adapters.core.adapter import MapContext, StateStore
from stadtlink.adapters.core.config import load_config
from stadtlink.adapters.core.reading import Reading
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.schemas import check_entity

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "climate.yaml"


@pytest.mark.parametrize("path", [EXAMPLE, PACKAGE_DIR / "example-config.yaml"], ids=["examples", "packaged"])
def test_example_config_loads_with_its_registry(path):
    if not path.exists():
        pytest.skip(f"{path} not present (installed wheel without the repository's examples/)")
    cfg, base = load_config(path, adapter=ADAPTER)
    assert isinstance(cfg.settings, ClimateSettings)
    assert cfg.namespace == "mannheim"
    registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=base)
    assert len(registry) >= 5
    for rec in registry:
        assert rec.profile in ADAPTER.profiles, rec.id
        assert rec.has_location and rec.name
        assert 49.3 < rec.lat < 49.7 and 8.3 < rec.lon < 8.7      # Mannheim, not swapped


def test_packaged_copy_matches_the_examples():
    if not EXAMPLE.exists():
        pytest.skip("no repository examples/")
    assert ADAPTER.example_config == PACKAGE_DIR / "example-config.yaml"
    assert ADAPTER.example_config.read_text() == EXAMPLE.read_text()
    assert (PACKAGE_DIR / "climate-stations.csv").read_text() == (EXAMPLE.parent / "climate-stations.csv").read_text()


def _stations(n: int = 500) -> list[dict]:
    rnd = random.Random(500)
    out = []
    for i in range(n):
        profile = "barani-meteohelix" if i % 3 else "decentlab-dl-atm41"
        out.append({"id": f"mhm-{i:03d}", "dev_eui": f"0004a30b{i:08x}", "name": f"Messpunkt {i:03d}",
                    "lat": round(49.41 + rnd.random() * 0.17, 5), "lon": round(8.41 + rnd.random() * 0.18, 5),
                    "profile": profile, "rain_gauge_mm": 0.2})
    return out


def _write_csv(path: Path, stations: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(stations[0]))
        writer.writeheader()
        writer.writerows(stations)


def _write_geojson(path: Path, stations: list[dict]) -> None:
    features = [{"type": "Feature", "geometry": {"type": "Point", "coordinates": [s["lon"], s["lat"]]},
                 "properties": {k: v for k, v in s.items() if k not in ("lat", "lon")}} for s in stations]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "geojson"])
def test_500_station_registry_loads(tmp_path, fmt):
    stations = _stations()
    path = tmp_path / f"stations.{fmt}"
    (_write_csv if fmt == "csv" else _write_geojson)(path, stations)
    config = {"namespace": "mannheim", "registry_files": [path.name], "broker": {"url": "http://127.0.0.1:1026"},
              "sources": [{"kind": "mqtt", "topics": ["v3/+/devices/+/up"]}]}
    cfg, base = load_config(config, adapter=ADAPTER, base_dir=tmp_path)
    registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=base)
    assert len(registry) == 500
    rec = registry.lookup("0004a30b000001f3")          # station 499 by its dev EUI (ChirpStack)
    assert rec.id == "mhm-499" and rec.lon == stations[499]["lon"] and rec.lat == stations[499]["lat"]
    assert rec.get("rain_gauge_mm") == 0.2


def test_500_stations_every_10_minutes_for_an_hour(tmp_path):
    """500 stations × 7 reports (one hour at 10 minutes): every report becomes a valid
    WeatherObserved, MeteoHelix rain accumulates correctly, state stays one entry per station."""
    stations = _stations()
    _write_csv(tmp_path / "stations.csv", stations)
    registry = DeviceRegistry.load(files=["stations.csv"], base_dir=tmp_path)
    ctx = MapContext(namespace="mannheim", registry=registry, settings=ClimateSettings(), state=StateStore())
    sims = [SimulatedStation(s["id"], profile=s["profile"], lat=s["lat"], lon=s["lon"], seed=i, device_serial=i)
            for i, s in enumerate(stations)]
    start = datetime(2026, 7, 1, 11, 0, tzinfo=timezone.utc)
    weather_ids: set[str] = set()
    rain_entities = 0
    for slot in range(7):
        when = start + timedelta(minutes=10 * slot)
        for i, (station, sim) in enumerate(zip(stations, sims)):
            port, f_cnt, payload = sim.uplink(when + timedelta(seconds=i % 600))
            decode = decode_dl_atm41 if sim.profile == "decentlab-dl-atm41" else decode_meteohelix
            values = decode(payload, port)
            values.pop("kind", None)
            reading = Reading(station["dev_eui"], sim.profile, when + timedelta(seconds=i % 600), values,
                              meta={"f_cnt": f_cnt, "rssi": -90.0, "dev_eui": station["dev_eui"], "network": "chirpstack-v4"})
            entities = map_reading(reading, ctx)
            assert "dropped" not in reading.meta, reading.meta
            wo = entities[0]
            assert wo["type"] == "WeatherObserved" and wo["id"].endswith(station["id"])
            weather_ids.add(wo["id"])
            if sim.profile == "barani-meteohelix":
                assert ("precipitation" in wo) == (slot > 0)
                rain_entities += "precipitation" in wo
            else:
                assert "precipitation" in wo
            if slot in (0, 6) and i % 50 == 0:        # the SDM check on a spread of stations and times
                for e in entities:
                    assert check_entity(e) == [], e["id"]
    assert len(weather_ids) == 500
    assert rain_entities == 6 * sum(1 for s in stations if s["profile"] == "barani-meteohelix")
    assert len(ctx.state) == sum(1 for s in stations if s["profile"] == "barani-meteohelix")
