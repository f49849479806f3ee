"""End to end with the real parts: pymodbus Modbus TCP servers holding SunSpec maps and aiohttp servers
answering like Fronius data managers → the real runtime (Runner with its Modbus and HTTP poll sources,
pipeline, SDM check, outbox, batcher, NGSI-LD client) → the local NGSI-LD broker, queried over HTTP."""
from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from stadtlink.adapters.pv import ADAPTER
from stadtlink.adapters.pv.simulator import serve_fronius, serve_sunspec_inverter
from stadtlink.adapters.core.testing import entities_by_id, wait_until

from .helpers import join_chain, load_sample, model_body, sample_registers, split_chain

pytestmark = pytest.mark.timeout(60)



async def _silent_server():
    """Accepts TCP connections and never answers: an inverter that hangs."""
    conns = []

    async def handle(reader, writer):
        conns.append(writer)
        await reader.read()      # until the client gives up

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], conns


def _edge_case_registers() -> list[int]:
    """The shared block with: model 1 of 65 registers, an unknown vendor model in the chain, W with a
    negative scale factor, not-implemented AphB and WH (acc32 0)."""
    chain = split_chain(sample_registers())
    chain[0] = [1, 65, chain[0][2][:65]]
    chain.insert(1, [64050, 4, [0xDEAD, 0xBEEF, 1, 2]])
    body = model_body(chain, 103)
    body[12], body[13] = 25105, 0xFFFF     # W (int16) = 25105 · 10^-1 = 2510.5
    body[2] = 0xFFFF                       # AphB not implemented
    body[22:24] = [0, 0]                   # WH not implemented
    return join_chain(chain)


async def test_sunspec_inverters_over_modbus_tcp_become_entities_in_the_broker():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.broker_client.local_broker import running_broker

    ns = f"e2e-{uuid.uuid4().hex[:10]}"
    sample = await serve_sunspec_inverter("127.0.0.1", 0, registers=sample_registers())
    edge = await serve_sunspec_inverter("127.0.0.1", 0, registers=_edge_case_registers(), unit_ids=(3,),
                                        base_address=50000)
    silent, silent_port, conns = await _silent_server()
    try:
        async with running_broker() as broker_url:
            config = {
                "adapter": "pv", "namespace": ns,
                "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
                "outbox": {"kind": "memory"}, "check": "strict", "http": {"enabled": False},
                "sources": [{
                    "kind": "modbus", "name": "inverters", "profile": "sunspec", "interval_s": 0.5,
                    "timeout_s": 1.0, "concurrency": 2, "retry_min_s": 0.5, "ready_min_share": 0.6,
                    "targets": [
                        {"host": "127.0.0.1", "port": sample.port, "unit_id": 1, "device": "inv-sample"},
                        {"host": "127.0.0.1", "port": edge.port, "unit_id": 3, "device": "inv-edge"},
                        {"host": "127.0.0.1", "port": silent_port, "unit_id": 1, "device": "inv-dead"},
                    ],
                }],
                "devices": [{"id": "inv-sample", "name": "PV Rathaus", "lat": 49.9744, "lon": 6.5253,
                             "energy_metering_started": "2019-04-01T00:00:00Z", "peak_power_kw": 10},
                            {"id": "inv-edge", "name": "PV Schule", "lat": 49.97, "lon": 6.52,
                             "energy_metering_started": "2020-03-01T00:00:00Z"},
                            {"id": "inv-dead", "name": "PV Freibad", "lat": 49.96, "lon": 6.51,
                             "energy_metering_started": "2020-03-01T00:00:00Z"}],
                "settings": {"photovoltaic_measurement": True},
            }
            runner = Runner.from_config(config, adapter=ADAPTER)
            await runner.start()
            try:
                async with aiohttp.ClientSession() as session:
                    async def ac_entities():
                        found = await entities_by_id(broker_url, "ThreePhaseAcMeasurement", namespace=ns)
                        return found if len(found) == 2 else None

                    acs = await wait_until(ac_entities)
                    ac = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:inv-sample"]
                    assert ac["totalActivePower"]["value"] == 5021 and ac["totalActivePower"]["unitCode"] == "WTT"
                    assert ac["totalApparentPower"]["value"] == 5030 and ac["totalApparentPower"]["unitCode"] == "D46"
                    assert ac["totalReactivePower"]["value"] == -120
                    assert ac["totalPowerFactor"]["value"] == pytest.approx(0.998)
                    assert ac["frequency"]["value"] == pytest.approx(50.01)
                    assert ac["totalActiveEnergyExport"]["value"] == pytest.approx(30915.234)
                    assert ac["totalActiveEnergyExport"]["unitCode"] == "KWH"
                    assert ac["current"]["value"] == {"L1": 4.87, "L2": 4.86, "L3": 4.87}
                    assert ac["phaseVoltage"]["value"] == {"L1": 231.2, "L2": 231.5, "L3": 230.9}
                    assert ac["totalActivePower"]["observedAt"].endswith("Z")
                    assert ac["location"]["value"]["coordinates"] == [6.5253, 49.9744]

                    edge_ac = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:inv-edge"]
                    assert edge_ac["totalActivePower"]["value"] == 2510.5       # negative SF
                    assert "totalActiveEnergyExport" not in edge_ac                       # acc32 0
                    assert edge_ac["current"]["value"] == {"L1": 4.87, "L3": 4.87}         # AphB n/i

                    devices = await wait_until(lambda: _count(session, broker_url, "Device", ns, 2))
                    dev = devices[f"urn:ngsi-ld:Device:{ns}:inv-sample"]
                    assert dev["manufacturerName"]["value"] == "Fronius"
                    assert dev["modelName"]["value"] == "Symo 10.0-3-M"
                    assert dev["serialNumber"]["value"] == "31234567"
                    assert dev["firmwareVersion"]["value"] == "0.3.29.3"
                    assert dev["deviceState"]["value"] == "MPPT"
                    # model 1 with 65 registers + an unknown model: still the right serial and state
                    assert devices[f"urn:ngsi-ld:Device:{ns}:inv-edge"]["serialNumber"]["value"] == "31234567"

                    dms = await wait_until(lambda: _count(session, broker_url, "DeviceMeasurement", ns, 4))
                    dc1 = dms[f"urn:ngsi-ld:DeviceMeasurement:{ns}:inv-sample-dc1"]
                    assert dc1["voltage"]["value"] == 410.5 and dc1["power"]["value"] == 2759
                    assert f"urn:ngsi-ld:DeviceMeasurement:{ns}:inv-edge-dc2" in dms

                    pvs = await wait_until(lambda: _count(session, broker_url, "PhotovoltaicMeasurement", ns, 1))
                    pv = pvs[f"urn:ngsi-ld:PhotovoltaicMeasurement:{ns}:inv-sample"]
                    assert pv["activePower"]["value"] == pytest.approx(5.021) and pv["activePower"]["unitCode"] == "KWT"

                # the hanging inverter is counted as failing, the others keep being polled
                await asyncio.sleep(1.5)
                stats = runner.sources[0].stats()
                assert stats["targets_ok"] == 2 and stats["targets"] == 3
                assert runner.sources[0].ready            # 2 of 3 inverters answer ≥ ready_min_share 0.6
                assert stats["poll_failures"] >= 1
                assert stats["emitted"] >= 4
                assert runner.counters().get("dead_lettered", 0) == 0
            finally:
                await runner.stop()
    finally:
        await sample.stop()
        await edge.stop()
        for w in conns:
            w.close()
        silent.close()


async def _count(session, base, entity_type, ns, n):
    found = await entities_by_id(base, entity_type, namespace=ns)
    return found if len(found) >= n else None


def _docs(common: str | None = None, powerflow: str | None = None, three_phase: str | None = None) -> dict:
    out = {}
    for key, name in (("CommonInverterData", common), ("PowerFlow", powerflow), ("3PInverterData", three_phase)):
        if name:
            out[key] = load_sample(name)["raw"]["json"]
    return out


async def test_fronius_day_night_and_gen24_answers_become_entities_in_the_broker():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.broker_client.local_broker import running_broker

    ns = f"e2e-{uuid.uuid4().hex[:10]}"
    day = await serve_fronius("127.0.0.1", 0, documents=_docs(
        "fronius-solarapi-v1-inverter-realtime-symo.json", "fronius-solarapi-v1-powerflow-symo.json",
        "fronius-solarapi-v1-inverter-3p-symo-constructed.json"))
    night = await serve_fronius("127.0.0.1", 0, documents=_docs(
        "fronius-solarapi-v1-inverter-realtime-symo-night-constructed.json"))
    gen24 = await serve_fronius("127.0.0.1", 0, documents=_docs(
        "fronius-solarapi-v1-inverter-realtime-gen24-nulls-constructed.json",
        "fronius-solarapi-v1-powerflow-gen24-night-nulls-constructed.json"))
    gen24_night = await serve_fronius("127.0.0.1", 0, documents=_docs(
        "fronius-solarapi-v1-inverter-realtime-gen24-night-nulls-constructed.json"))
    inverter_path = "/solar_api/v1/GetInverterRealtimeData.cgi?Scope=Device&DeviceId=1&DataCollection="
    flow_path = "/solar_api/v1/GetPowerFlowRealtimeData.fcgi"
    try:
        async with running_broker() as broker_url:
            config = {
                "adapter": "pv", "namespace": ns,
                "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
                "outbox": {"kind": "memory"}, "check": "strict", "http": {"enabled": False},
                "sources": [{
                    "kind": "http-poll", "name": "fronius", "profile": "fronius-solarapi", "interval_s": 0.5,
                    "timeout_s": 2, "targets": [
                        {"url": day.url + inverter_path + "CommonInverterData", "device": "symo"},
                        {"url": day.url + inverter_path + "3PInverterData", "device": "symo"},
                        {"url": day.url + flow_path, "device": "site-symo"},
                        {"url": night.url + inverter_path + "CommonInverterData", "device": "symo-night"},
                        {"url": gen24.url + inverter_path + "CommonInverterData", "device": "gen24"},
                        {"url": gen24.url + flow_path, "device": "site-gen24"},
                        {"url": gen24_night.url + inverter_path + "CommonInverterData", "device": "gen24-night"},
                    ],
                }],
                "devices": [{"id": "symo", "name": "PV Bauhof", "lat": 50.2079, "lon": 6.4243}],
            }
            runner = Runner.from_config(config, adapter=ADAPTER)
            await runner.start()
            try:
                async with aiohttp.ClientSession() as session:
                    async def all_ac():
                        found = await entities_by_id(broker_url, "ThreePhaseAcMeasurement", namespace=ns)
                        symo = found.get(f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:symo", {})
                        # 4 inverters + grid/pv/load of two sites; symo merged from two answers
                        if len(found) >= 10 and "current" in symo and "totalActivePower" in symo:
                            return found
                        return None

                    acs = await wait_until(all_ac)
                    symo = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:symo"]
                    assert symo["totalActivePower"]["value"] == 1190
                    assert symo["totalActivePower"]["observedAt"] == "2021-10-07T08:01:17.000Z"
                    assert symo["frequency"]["value"] == 49.94
                    assert symo["totalActiveEnergyExport"]["value"] == 44188.0
                    assert symo["current"]["value"] == {"L1": 1.73, "L2": 1.72, "L3": 1.74}
                    assert symo["phaseVoltage"]["value"] == {"L1": 229.9, "L2": 230.4, "L3": 231.1}
                    assert symo["name"]["value"] == "PV Bauhof"

                    night_ac = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:symo-night"]
                    assert night_ac["totalActiveEnergyExport"]["value"] == 44186.9
                    for absent in ("totalActivePower", "frequency", "current", "phaseVoltage"):
                        assert absent not in night_ac

                    g24 = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:gen24"]
                    assert g24["totalActivePower"]["value"] == pytest.approx(1528.1)
                    assert g24["totalApparentPower"]["value"] == pytest.approx(1531.800049)
                    g24n = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:gen24-night"]
                    assert "totalActivePower" not in g24n and g24n["totalActiveEnergyExport"]["value"] == 3861.0005

                    grid = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:site-symo-grid"]
                    assert grid["totalActivePower"]["value"] == 1703.74
                    assert acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:site-gen24-grid"][
                        "totalActivePower"]["value"] == 412.3
                    assert "totalActivePower" not in acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:site-gen24-pv"]

                    devices = await wait_until(lambda: _count(session, broker_url, "Device", ns, 4))
                    assert devices[f"urn:ngsi-ld:Device:{ns}:symo"]["deviceState"]["value"] == "RUNNING"
                    assert devices[f"urn:ngsi-ld:Device:{ns}:symo-night"]["deviceState"]["value"] == "STANDBY"
                    dms = await wait_until(lambda: _count(session, broker_url, "DeviceMeasurement", ns, 4))
                    assert dms[f"urn:ngsi-ld:DeviceMeasurement:{ns}:gen24-dc2"]["voltage"]["value"] == \
                        pytest.approx(371.6, abs=1e-5)
                    assert f"urn:ngsi-ld:DeviceMeasurement:{ns}:gen24-night-dc1" not in dms
                assert runner.counters().get("dead_lettered", 0) == 0
            finally:
                await runner.stop()
    finally:
        for server in (day, night, gen24, gen24_night):
            await server.stop()


async def test_readiness_follows_the_share_of_answering_inverters():
    from stadtlink.adapters.core.runner import Runner
    from stadtlink.broker_client.local_broker import running_broker

    ns = f"e2e-{uuid.uuid4().hex[:10]}"
    sample = await serve_sunspec_inverter("127.0.0.1", 0, registers=sample_registers())
    silent, silent_port, conns = await _silent_server()
    try:
        async with running_broker() as broker_url:
            config = {
                "adapter": "pv", "namespace": ns,
                "broker": {"url": broker_url, "batch_size": 50, "flush_ms": 50},
                "outbox": {"kind": "memory"}, "check": "strict", "http": {"enabled": False},
                "sources": [{
                    "kind": "modbus", "profile": "sunspec", "interval_s": 0.3, "timeout_s": 0.5,
                    "retry_min_s": 0.3, "ready_min_share": 0.75,
                    "targets": [
                        {"host": "127.0.0.1", "port": sample.port, "unit_id": 1, "device": "inv-a"},
                        {"host": "127.0.0.1", "port": silent_port, "unit_id": 1, "device": "inv-b"},
                    ],
                }],
            }
            runner = Runner.from_config(config, adapter=ADAPTER)
            await runner.start()
            try:
                async def both_polled():
                    st = runner.sources[0].stats()
                    return st["emitted"] >= 2 and st["poll_failures"] >= 1
                await wait_until(both_polled, timeout=10)
                assert runner.sources[0].stats()["targets_ok"] == 1
                assert not runner.sources[0].ready          # 1 of 2 < 0.75
                assert not runner.readiness()[0]
            finally:
                await runner.stop()
    finally:
        await sample.stop()
        for w in conns:
            w.close()
        silent.close()


async def test_example_config_against_the_demo_simulators():
    """examples/pv.yaml (packaged copy) with the demo simulators on free ports: every entity type appears."""
    import yaml

    from stadtlink.adapters.core.runner import Runner
    from stadtlink.adapters.pv.simulator import free_port, start_demo_simulators
    from stadtlink.broker_client.local_broker import running_broker

    modbus_port, fronius_port = free_port(), free_port()
    servers = await start_demo_simulators(modbus_port=modbus_port, fronius_port=fronius_port, day_s=60.0)
    ns = f"e2e-{uuid.uuid4().hex[:10]}"
    try:
        async with running_broker() as broker_url:
            config = yaml.safe_load(ADAPTER.example_config.read_text(encoding="utf-8"))
            config.update(namespace=ns, http={"enabled": False},
                          broker={"url": broker_url, "batch_size": 50, "flush_ms": 50})
            modbus, http = config["sources"]
            modbus["interval_s"] = http["interval_s"] = 0.5
            modbus["targets"][0]["port"] = modbus_port
            for target in http["targets"]:
                target["url"] = target["url"].replace("127.0.0.1:8604", f"127.0.0.1:{fronius_port}")
            runner = Runner.from_config(config, adapter=ADAPTER, base_dir=ADAPTER.example_config.parent)
            await runner.start()
            try:
                async with aiohttp.ClientSession() as session:
                    acs = await wait_until(lambda: _count(session, broker_url, "ThreePhaseAcMeasurement", ns, 5))
                    assert {f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:{d}" for d in
                            ("inv-rathaus", "inv-bauhof", "site-bauhof-grid", "site-bauhof-pv",
                             "site-bauhof-load")} <= set(acs)
                    rathaus = acs[f"urn:ngsi-ld:ThreePhaseAcMeasurement:{ns}:inv-rathaus"]
                    assert 0 < rathaus["totalActivePower"]["value"] <= 29_700
                    assert rathaus["name"]["value"] == "PV Rathaus Bitburg"
                    pvs = await wait_until(lambda: _count(session, broker_url, "PhotovoltaicMeasurement", ns, 1))
                    pv = pvs[f"urn:ngsi-ld:PhotovoltaicMeasurement:{ns}:inv-rathaus"]
                    assert pv["activePower"]["unitCode"] == "KWT" and pv["nominalPeakPowerGeneration"]["value"] == 29.7
                    devices = await wait_until(lambda: _count(session, broker_url, "Device", ns, 2))
                    assert devices[f"urn:ngsi-ld:Device:{ns}:inv-rathaus"]["serialNumber"]["value"] == "RATHAUS-29K7"
                    await wait_until(lambda: _count(session, broker_url, "DeviceMeasurement", ns, 3))
                assert runner.counters().get("dead_lettered", 0) == 0
            finally:
                await runner.stop()
    finally:
        for server in servers:
            await server.stop()
