"""End to end with the real parts: the shared Mosquitto (SHARED_MQTT, unique topics per test), the
real runtime (Runner with its MQTT source, pipeline, SDM check, outbox, batcher, NGSI-LD client) and
the local NGSI-LD broker, queried over HTTP. TTS v3 and ChirpStack v4 uplinks → WeatherObserved."""
from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from stadtlink.adapters.climate import ADAPTER
from stadtlink.adapters.climate.simulator import encode_meteohelix
from stadtlink.adapters.core.lorawan import chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.testing import SHARED_MQTT, SHARED_REDIS_URL, entities_by_id, tts_time, wait_until

from .helpers import ATM41


MQTT_HOST, MQTT_PORT = SHARED_MQTT
#: the adapter writes with its @context; queries name types in the same context


@pytest.mark.needs_mqtt
async def test_tts_and_chirpstack_uplinks_become_weather_observed_in_the_broker():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns = f"e2e-{run}"
    tts_app = f"climate-{run}"
    cs_app = str(uuid.uuid4())
    helix_eui = "0004a30b" + run[:8]
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)

    async with running_broker() as broker_url:
        config = {
            "adapter": "climate",
            "namespace": ns,
            "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
            "outbox": {"kind": "memory"},
            "check": "strict",
            "http": {"enabled": False},
            "sources": [{
                "kind": "mqtt", "host": MQTT_HOST, "port": MQTT_PORT,
                "topics": [f"v3/{tts_app}@ttn/devices/+/up", f"application/{cs_app}/device/+/event/up"],
                "client_id": f"climate-e2e-{run}", "session_expiry_s": 0,
                "profile": "barani-meteohelix",
            }],
            "devices": [
                {"id": "mhm-quadrate-n1", "name": "Quadrate N1", "lat": 49.4875, "lon": 8.4660,
                 "profile": "decentlab-dl-atm41"},
                {"id": "mhm-luisenpark", "name": "Luisenpark", "lat": 49.48, "lon": 8.496,
                 "dev_eui": helix_eui, "rain_gauge_mm": 0.2},
                {"id": "mhm-jungbusch", "name": "Jungbusch", "lat": 49.493, "lon": 8.457,
                 "profile": "barani-meteohelix"},
            ],
            "settings": {"rain_gauge_mm": 0.2},
        }
        runner = Runner.from_config(config, adapter=ADAPTER)
        await runner.start()
        try:
            await wait_until(lambda: _ready(runner))
            helix = {"battery_voltage": 4.15, "air_temperature": 21.3, "air_temperature_min": 20.9,
                     "air_temperature_max": 21.8, "relative_humidity": 0.6, "atmospheric_pressure": 100985,
                     "solar_radiation": 412, "solar_radiation_max": 460}
            messages = [
                tts_uplink("mhm-quadrate-n1", bytes.fromhex(ATM41["raw"]["hex"]), f_port=1, f_cnt=41,
                           received_at=tts_time(t0), application_id=tts_app, rssi=-101.0),
                chirpstack_uplink(helix_eui, encode_meteohelix({**helix, "rain_counter": 254}), f_port=1, f_cnt=7,
                                  time=tts_time(t0), application_id=cs_app, rssi=-88.0),
                chirpstack_uplink(helix_eui, encode_meteohelix({**helix, "rain_counter": 3}), f_port=1, f_cnt=8,
                                  time=tts_time(t0 + timedelta(minutes=10)), application_id=cs_app, rssi=-87.0),
                # a retransmission of the same frame is dropped, not counted as rain again
                chirpstack_uplink(helix_eui, encode_meteohelix({**helix, "rain_counter": 3}), f_port=1, f_cnt=8,
                                  time=tts_time(t0 + timedelta(minutes=10)), application_id=cs_app, rssi=-95.0),
                # humidity 102 % (a wet sensor): that value is dropped, the rest is written
                tts_uplink("mhm-jungbusch", encode_meteohelix({**helix, "relative_humidity": 1.02, "rain_counter": 9}),
                           f_port=1, f_cnt=3, received_at=tts_time(t0), application_id=tts_app),
                # garbage bytes → dead letter, the adapter keeps going
                tts_uplink("mhm-quadrate-n1", b"\x07\x00", f_port=1, f_cnt=42,
                           received_at=tts_time(t0 + timedelta(minutes=1)), application_id=tts_app),
            ]
            assert await publish_uplinks(MQTT_HOST, MQTT_PORT, messages) == 6

            async with aiohttp.ClientSession() as session:
                async def weather():
                    found = await entities_by_id(broker_url, "WeatherObserved", namespace=ns)
                    helix_wo = found.get(f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-luisenpark")
                    if len(found) == 3 and helix_wo and "precipitation" in helix_wo:
                        return found
                    return None

                found = await wait_until(weather)
                atm = found[f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-quadrate-n1"]
                assert atm["temperature"]["value"] == 26.4
                assert atm["temperature"]["unitCode"] == "CEL"
                assert atm["relativeHumidity"]["value"] == pytest.approx(0.524)
                assert atm["atmosphericPressure"]["value"] == pytest.approx(959.6)
                assert atm["atmosphericPressure"]["unitCode"] == "A97"
                assert atm["windSpeed"]["value"] == 0.09 and atm["gustSpeed"]["value"] == 0.2
                assert atm["windDirection"]["unitCode"] == "DD"
                assert atm["temperature"]["observedAt"].startswith(t0.strftime("%Y-%m-%dT%H:%M:%S"))
                assert atm["location"]["value"]["coordinates"] == [8.466, 49.4875]
                assert atm["name"]["value"] == "Quadrate N1"

                hx = found[f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-luisenpark"]
                assert hx["temperature"]["value"] == 21.3
                assert hx["solarRadiation"]["value"] == 412
                assert hx["precipitation"]["value"] == pytest.approx(1.0)   # 254 → 3: wrap, 5 clicks × 0.2 mm
                assert hx["precipitation"]["unitCode"] == "MMT"
                assert "dewPoint" in hx

                wet = found[f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-jungbusch"]
                assert wet["temperature"]["value"] == 21.3 and wet["solarRadiation"]["value"] == 412
                assert "relativeHumidity" not in wet and "dewPoint" not in wet

                devices = await entities_by_id(broker_url, "Device", namespace=ns)
                dev = devices[f"urn:ngsi-ld:Device:{ns}:mhm-luisenpark"]
                assert dev["rssi"]["value"] == -87.0
                assert dev["batteryLevel"]["value"] == pytest.approx((4.15 - 3.3) / 0.9, abs=1e-3)
                measurements = await entities_by_id(broker_url, "DeviceMeasurement", namespace=ns)
                assert measurements[f"urn:ngsi-ld:DeviceMeasurement:{ns}:mhm-luisenpark-temperatureMax"][
                    "numValue"]["value"] == 21.8

            counters = runner.counters()
            assert counters["dead_lettered"] >= 1
            assert counters["dropped"].get("duplicate", 0) == 1
            assert counters["invalid"] == 0
            assert runner.pipeline.ctx.state["climate:rain:mhm-luisenpark"]["counter"] == 3
        finally:
            await runner.stop(grace=2)


async def _ready(runner) -> bool:
    return bool(runner.sources) and all(getattr(s, "ready", False) for s in runner.sources)


@pytest.mark.needs_mqtt
@pytest.mark.needs_redis
async def test_rain_baseline_survives_an_adapter_restart_with_the_redis_outbox():
    """The MeteoHelix counter baseline is in the outbox's store (Redis): after a restart the next
    message gives the rain since the last one — neither lost nor invented."""
    import redis.asyncio as aioredis

    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns, prefix, cs_app = f"e2e-{run}", f"climate-test-{run}", str(uuid.uuid4())
    eui = "0004a30b" + run[:8]
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=30)
    helix = {"battery_voltage": 4.0, "air_temperature": 17.0, "relative_humidity": 0.9,
             "atmospheric_pressure": 100500, "solar_radiation": 40}
    redis = aioredis.from_url(SHARED_REDIS_URL)
    try:
        async with running_broker() as broker_url, aiohttp.ClientSession() as session:
            config = {
                "namespace": ns,
                "broker": {"url": broker_url, "flush_ms": 50},
                "outbox": {"kind": "redis", "url": SHARED_REDIS_URL, "key_prefix": prefix,
                           "consumer": f"c-{run}"},
                "http": {"enabled": False},
                "sources": [{"kind": "mqtt", "host": MQTT_HOST, "port": MQTT_PORT,
                             "topics": [f"application/{cs_app}/device/+/event/up"],
                             "client_id": f"climate-e2e-{run}", "session_expiry_s": 0,
                             "profile": "barani-meteohelix"}],
                "devices": [{"id": "mhm-wasserturm", "lat": 49.484, "lon": 8.4755, "dev_eui": eui}],
            }
            wo_id = f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-wasserturm"

            async def observed(minute: int):
                async def check():
                    found = await entities_by_id(broker_url, "WeatherObserved", namespace=ns)
                    wo = found.get(wo_id)
                    stamp = (t0 + timedelta(minutes=minute)).strftime("%Y-%m-%dT%H:%M:%S")
                    return wo if wo and wo["temperature"]["observedAt"].startswith(stamp) else None
                return await wait_until(check)

            for minute, counter, f_cnt in ((0, 100, 1), (10, 104, 2)):
                runner = Runner.from_config(config, adapter=ADAPTER)
                await runner.start()
                try:
                    await wait_until(lambda r=runner: _ready(r))
                    await publish_uplinks(MQTT_HOST, MQTT_PORT, [chirpstack_uplink(
                        eui, encode_meteohelix({**helix, "rain_counter": counter}), f_port=1, f_cnt=f_cnt,
                        time=tts_time(t0 + timedelta(minutes=minute)), application_id=cs_app)])
                    wo = await observed(minute)
                finally:
                    await runner.stop(grace=2)
                if minute == 0:
                    assert "precipitation" not in wo                 # first message: baseline only
            assert wo["precipitation"]["value"] == pytest.approx(0.8)   # 100 → 104 across the restart
    finally:
        keys = [k async for k in redis.scan_iter(match=f"{prefix}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@pytest.mark.needs_mqtt
async def test_cli_runs_the_example_config():
    """`stadtlink run climate --config examples/climate.yaml` as a subprocess (env overrides only for the
    broker URL, HTTP port, namespace and unique topics): stations of the example registry arrive."""
    import os
    import sys
    from pathlib import Path

    from stadtlink.adapters.climate import PACKAGE_DIR
    from stadtlink.adapters.core.testing import free_port, publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    config = Path(__file__).resolve().parents[3] / "examples" / "climate.yaml"
    if not config.exists():
        config = PACKAGE_DIR / "example-config.yaml"
    run = uuid.uuid4().hex[:10]
    ns, tts_app, cs_app = f"e2e-{run}", f"climate-{run}", str(uuid.uuid4())
    http_port = free_port()
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    async with running_broker() as broker_url:
        env = {**os.environ,
               "STADTLINK_BROKER__URL": broker_url,
               "STADTLINK_NAMESPACE": ns,
               "STADTLINK_HTTP__PORT": str(http_port),
               "STADTLINK_SOURCES__0__TOPICS": f'["v3/{tts_app}@ttn/devices/+/up", "application/{cs_app}/device/+/event/up"]',
               "STADTLINK_SOURCES__0__CLIENT_ID": f"climate-cli-{run}",
               "STADTLINK_SOURCES__0__SESSION_EXPIRY_S": "0"}
        exe = Path(sys.executable).with_name("stadtlink")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "stadtlink.adapters.core.cli"]
        proc = await asyncio.create_subprocess_exec(*cmd, "run", "climate", "--config", str(config), env=env,
                                                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            async with aiohttp.ClientSession() as session:
                async def ready():
                    if proc.returncode is not None:
                        raise AssertionError(f"adapter exited: {(await proc.stderr.read()).decode()[-2000:]}")
                    try:
                        async with session.get(f"http://127.0.0.1:{http_port}/readyz") as resp:
                            return resp.status == 200
                    except aiohttp.ClientError:
                        return False

                await wait_until(ready)
                await publish_uplinks(MQTT_HOST, MQTT_PORT, [
                    tts_uplink("mhm-quadrate-n1", bytes.fromhex(ATM41["raw"]["hex"]), f_port=1, f_cnt=9,
                               received_at=tts_time(t0), application_id=tts_app),
                    chirpstack_uplink("0004a30b00000201", encode_meteohelix(
                        {"battery_voltage": 4.1, "air_temperature": 9.8, "relative_humidity": 0.88,
                         "atmospheric_pressure": 101200, "solar_radiation": 20, "rain_counter": 5}),
                        f_port=1, f_cnt=4, time=tts_time(t0), application_id=cs_app),
                ])

                async def both():
                    found = await entities_by_id(broker_url, "WeatherObserved", namespace=ns)
                    return found if len(found) == 2 else None

                found = await wait_until(both)
                assert found[f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-quadrate-n1"]["name"]["value"] == \
                    "Quadrate N1 (Innenstadt)"
                wt = found[f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-wasserturm"]
                assert wt["temperature"]["value"] == 9.8
                assert wt["location"]["value"]["coordinates"] == [8.4755, 49.484]
                # the example limits DeviceMeasurements: no tilt, no internal temperature
                measurements = await entities_by_id(broker_url, "DeviceMeasurement", namespace=ns)
                kinds = {m["controlledProperty"]["value"] for m in measurements.values()}
                assert "vapourPressure" in kinds and "tiltX" not in kinds and "sensorTemperature" not in kinds
                async with session.get(f"http://127.0.0.1:{http_port}/metrics") as resp:
                    assert resp.status == 200
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


@pytest.mark.needs_mqtt
async def test_500_stations_from_a_geojson_registry_end_to_end(tmp_path):
    """A generated 500-station GeoJSON registry; two 10-minute rounds of real uplinks (TTS and ChirpStack)
    through Mosquitto and the runtime: 500 WeatherObserved of the second round in the broker."""
    import json

    from stadtlink.adapters.climate.simulator import StationFleet
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns, tts_app, cs_app = f"e2e-{run}", f"climate-{run}", str(uuid.uuid4())
    features = []
    for i in range(500):
        props = {"id": f"mp-{i:03d}", "name": f"Messpunkt {i:03d}", "dev_eui": f"00{run[:6]}{i:08x}",
                 "profile": "barani-meteohelix" if i % 2 else "decentlab-dl-atm41"}
        features.append({"type": "Feature", "properties": props,
                         "geometry": {"type": "Point", "coordinates": [8.41 + (i // 25) * 0.009, 49.41 + (i % 25) * 0.007]}})
    (tmp_path / "stations.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    t0 = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(minutes=20)

    async with running_broker() as broker_url:
        config = {
            "namespace": ns,
            "broker": {"url": broker_url, "batch_size": 200, "flush_ms": 100},
            "outbox": {"kind": "memory"},
            "http": {"enabled": False},
            "sources": [{"kind": "mqtt", "host": MQTT_HOST, "port": MQTT_PORT, "client_id": f"climate-e2e-{run}",
                         "session_expiry_s": 0,
                         "topics": [f"v3/{tts_app}@ttn/devices/+/up", f"application/{cs_app}/device/+/event/up"]}],
            "registry_files": ["stations.geojson"],
            "settings": {"device_measurements": ["batteryVoltage"]},
        }
        runner = Runner.from_config(config, adapter=ADAPTER, base_dir=tmp_path)
        await runner.start()
        try:
            assert len(runner.registry) == 500
            await wait_until(lambda: _ready(runner))
            fleet = StationFleet([f["properties"] | {"lat": f["geometry"]["coordinates"][1],
                                                     "lon": f["geometry"]["coordinates"][0]} for f in features],
                                 network="mixed", tts_application_id=tts_app, chirpstack_application_id=cs_app)
            for slot in range(2):
                # one round at a time: Mosquitto queues at most 1000 messages for a subscriber
                await publish_uplinks(MQTT_HOST, MQTT_PORT, fleet.uplinks(t0 + timedelta(minutes=10 * slot)))

                async def round_received(n=500 * (slot + 1)):
                    return runner.counters()["received"] >= n

                await wait_until(round_received, timeout=120)
            second = (t0 + timedelta(minutes=10)).strftime("%Y-%m-%dT%H:%M:%S")

            async with aiohttp.ClientSession() as session:
                async def all_second_round():
                    found = await entities_by_id(broker_url, "WeatherObserved", namespace=ns)
                    fresh = [e for e in found.values() if e["temperature"]["observedAt"].startswith(second)]
                    return fresh if len(fresh) == 500 else None

                fresh = await wait_until(all_second_round, timeout=120)
            helix = [e for e in fresh if int(e["id"].rsplit("-", 1)[1]) % 2]
            assert len(helix) == 250 and all("precipitation" in e for e in helix)   # delta of the 2 rounds
            counters = runner.counters()
            assert counters["decoded"] == 1000 and counters["dead_lettered"] == 0 and counters["invalid"] == 0
        finally:
            await runner.stop(grace=5)


@pytest.mark.needs_mqtt
async def test_generic_decoded_station_with_the_json_map_example_config():
    """examples/climate-jsonmap.yaml as shipped (overrides: broker URL, namespace, topic, client id):
    a TTS uplink whose payload formatter already decoded the values becomes a WeatherObserved."""
    pytest.importorskip("stadtlink.adapters.core.jsonmap")
    from stadtlink.adapters.climate import PACKAGE_DIR
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.core.testing import publish_uplinks
    from stadtlink.broker_client.local_broker import running_broker

    run = uuid.uuid4().hex[:10]
    ns, app = f"e2e-{run}", f"klima-generic-{run}"
    t0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=3)
    async with running_broker() as broker_url:
        env = {"STADTLINK_BROKER__URL": broker_url, "STADTLINK_NAMESPACE": ns, "STADTLINK_HTTP__ENABLED": "false",
               "STADTLINK_SOURCES__0__TOPICS": f'["v3/{app}@ttn/devices/+/up"]',
               "STADTLINK_SOURCES__0__CLIENT_ID": f"climate-jm-{run}", "STADTLINK_SOURCES__0__SESSION_EXPIRY_S": "0"}
        runner = Runner.from_config(PACKAGE_DIR / "example-jsonmap.yaml", adapter=ADAPTER, env=env)
        await runner.start()
        try:
            await wait_until(lambda: _ready(runner))
            topic, up = tts_uplink("mhm-generic-01", b"\x00", f_port=3, f_cnt=12, received_at=tts_time(t0),
                                   application_id=app)
            up["uplink_message"]["decoded_payload"] = {
                "temperature": 23.1, "humidity": 48.0, "pressure": 1011.4, "wind_speed_kmh": 9.0,
                "wind_direction": 250, "gust_kmh": 21.6, "rain_mm": 0.0, "illuminance": 41000, "battery_pct": 64}
            await publish_uplinks(MQTT_HOST, MQTT_PORT, [(topic, up)])
            async with aiohttp.ClientSession() as session:
                async def weather():
                    return (await entities_by_id(broker_url, "WeatherObserved", namespace=ns)).get(
                        f"urn:ngsi-ld:WeatherObserved:{ns}:mhm-generic-01")

                wo = await wait_until(weather)
                device = (await entities_by_id(broker_url, "Device", namespace=ns))[f"urn:ngsi-ld:Device:{ns}:mhm-generic-01"]
            assert wo["temperature"]["value"] == 23.1
            assert wo["relativeHumidity"]["value"] == pytest.approx(0.48)
            assert wo["atmosphericPressure"]["value"] == pytest.approx(1011.4)
            assert wo["windSpeed"]["value"] == pytest.approx(2.5) and wo["gustSpeed"]["value"] == pytest.approx(6.0)
            assert wo["precipitation"]["value"] == 0.0 and wo["illuminance"]["value"] == 41000
            assert wo["name"]["value"] == "Herzogenriedpark (generic station)"
            assert device["batteryLevel"]["value"] == pytest.approx(0.64)
        finally:
            await runner.stop(grace=2)
