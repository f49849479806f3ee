"""Fuzzing the pipeline of every built-in adapter with hypothesis: random bytes in real envelopes,
truncated envelopes and API answers, wrong fPorts, invalid JSON and XML. Every input ends as
entities, a counted drop, or a dead letter with a reason — never a crash, and the adapter keeps
taking input."""
from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from stadtlink.adapters.core import RawMessage, chirpstack_uplink, tts_uplink
from stadtlink.adapters.core.plugins import get_adapter
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.core.runner import Runner
from stadtlink.broker_client.backend import BackendBase
from stadtlink.broker_client.results import BatchResult

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)


class CountingBackend(BackendBase):
    """Accepts every entity (the fuzz is about the pipeline, not the broker)."""

    def __init__(self):
        self.written = 0

    async def write(self, entities):
        self.written += len(entities)
        return BatchResult(succeeded=[e["id"] for e in entities], failed=[])


def example(name):
    spec = get_adapter(name)
    path = Path(spec.example_config)
    raw = yaml.safe_load(path.read_text())
    raw.update(outbox={"kind": "memory"}, http={"enabled": False}, log_level="CRITICAL")
    raw.setdefault("broker", {})["url"] = "http://127.0.0.1:9"
    return spec, raw, path.parent


async def runner_for(name):
    spec, raw, base = example(name)
    runner = Runner.from_config(raw, adapter=spec, base_dir=base, backend=CountingBackend(), sources=[])
    await runner.start(sources=False, http=False)
    registry = DeviceRegistry.load(inline=raw.get("devices", []), files=raw.get("registry_files", []), base_dir=base)
    return runner, list(registry)


class Fleet:
    """One event loop and one started runner per built-in adapter, shared by every fuzz example
    (starting a runner per example would dominate the run)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.runners = {}

    def get(self, name):
        if name not in self.runners:
            self.runners[name] = self.loop.run_until_complete(runner_for(name))
        return self.runners[name]

    def process(self, runner, message, profile, options):
        return self.loop.run_until_complete(runner.pipeline.process(message, profile, options))

    def close(self):
        for runner, _ in self.runners.values():
            self.loop.run_until_complete(runner.stop(grace=1))
        self.loop.close()


@pytest.fixture(scope="module")
def fleet():
    f = Fleet()
    yield f
    f.close()


LORA = [("parking", "bosch-tps110"), ("parking", "nwave-nps405"), ("climate", "decentlab-dl-atm41"),
        ("climate", "barani-meteohelix"), ("water_level", "decentlab-dl-mbx"),
        ("water_level", "milesight-em500-udl"), ("water_level", "dragino-ldds75")]

#: Each profile's real fPorts and frame lengths: most generated frames look right at first sight,
#: so the fuzz reaches the decoders' and mappers' inner paths, not only their length checks.
FRAMES = {"bosch-tps110": ([1, 2, 3], [1, 2, 17]), "nwave-nps405": ([1, 2], [1, 3]),
          "decentlab-dl-atm41": ([1], [7, 41]), "barani-meteohelix": ([1], [11]),
          "decentlab-dl-mbx": ([1], [7, 9, 11]), "milesight-em500-udl": ([85], [3, 4, 7, 11, 13]),
          "dragino-ldds75": ([2], [8])}


def _frames(lora):
    ports, lengths = FRAMES[lora[1]]
    plausible = st.tuples(st.sampled_from(lengths).flatmap(lambda n: st.binary(min_size=n, max_size=n)),
                          st.sampled_from(ports))
    anything = st.tuples(st.binary(max_size=48), st.integers(0, 255))
    return st.tuples(st.just(lora), st.one_of(plausible, plausible, anything))


lora_inputs = st.sampled_from(LORA).flatmap(_frames).flatmap(lambda t: st.tuples(
    st.just(t[0]), st.just(t[1][0]), st.just(t[1][1]), st.integers(0, 2**16),
    st.sampled_from(["tts", "tts", "chirpstack", "truncated", "garbage-json", "raw-bytes"]), st.integers(1, 200)))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lora_inputs)
def test_lorawan_pipeline_never_crashes(fleet, case):
    (name, profile), payload, f_port, f_cnt, shape, cut = case
    runner, records = fleet.get(name)
    rec = next((r for r in records if r.profile == profile), None)
    device = rec.id if rec else "unknown-device"
    stamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    if shape == "chirpstack" and rec is not None and rec.dev_eui:
        topic, doc = chirpstack_uplink(rec.dev_eui, payload, f_port=f_port, f_cnt=f_cnt, time=stamp)
        body = orjson.dumps(doc)
    else:
        topic, doc = tts_uplink(device, payload, f_port=f_port, f_cnt=f_cnt, received_at=stamp)
        body = orjson.dumps(doc)
        if shape == "truncated":
            body = body[: cut % max(1, len(body))]
        elif shape == "garbage-json":
            body = orjson.dumps({"uplink_message": {"frm_payload": base64.b64encode(payload).decode(),
                                                    "f_port": "x" * (cut % 3)}, "end_device_ids": [cut]})
        elif shape == "raw-bytes":
            body = payload
    c0 = runner.counters()
    fleet.process(runner, RawMessage("mqtt", body, NOW, topic=topic), profile, {})
    c1 = runner.counters()
    assert c1["received"] == c0["received"] + 1
    assert c1["errors"] == 0, c1["dead_letter_reasons"]      # no decoder or mapper crashed
    handled = ((c1["dead_lettered"] - c0["dead_lettered"]) + (c1["dropped_total"] - c0["dropped_total"])
               + (c1["decoded"] - c0["decoded"]))
    assert handled >= 1, "every input is decoded, dropped with a reason, or dead-lettered"
    assert all(reason for reason in c1["dead_letter_reasons"])


HTTP_SAMPLES = {
    "datex2": ("parking", Path("adapters/parking/testdata/datex2-aachen-status-P1.xml"), {"role": "status", "id_prefix": "aachen-"}),
    "parkapi": ("parking", Path("adapters/parking/testdata/parkapi-v3-mannheim.json"), {"id_prefix": "mannheim-"}),
    "pegelonline": ("water_level", None, {}),
    "fronius-solarapi": ("pv", None, {}),
}


def _sample_body(profile):
    name, path, options = HTTP_SAMPLES[profile]
    root = Path(__file__).resolve().parents[2]
    if path is not None:
        return (root / path).read_bytes(), options
    if profile == "pegelonline":
        doc = json.loads((root / "adapters/water_level/testdata/pegelonline-rest-v2-station-with-timeseries.json").read_text())
        return orjson.dumps(doc["raw"]["json"]), options
    from stadtlink.adapters.pv.simulator import fronius_documents
    return orjson.dumps(fronius_documents(5000.0, energy_wh=1e6)["CommonInverterData"]), options


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(profile=st.sampled_from(sorted(HTTP_SAMPLES)), cut=st.integers(0, 5000), junk=st.binary(max_size=40),
       mode=st.sampled_from(["truncate", "splice", "junk"]))
def test_polled_api_answers_never_crash(fleet, profile, cut, junk, mode):
    name = HTTP_SAMPLES[profile][0]
    runner, records = fleet.get(name)
    body, options = _sample_body(profile)
    if mode == "truncate":
        body = body[: cut % max(1, len(body))]
    elif mode == "splice":
        at = cut % max(1, len(body))
        body = body[:at] + junk + body[at:]
    else:
        body = junk
    device = next((r.id for r in records), "x")
    c0 = runner.counters()
    fleet.process(runner, RawMessage("http", body, NOW, topic="http://127.0.0.1/x", device_hint=device,
                                     attributes={"options": options}), profile, options)
    c1 = runner.counters()
    assert c1["errors"] == 0, c1["dead_letter_reasons"]
    assert c1["received"] == c0["received"] + 1
