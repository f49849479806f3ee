"""An adapter package brings its own Smart Data Model without touching the core.

A throwaway package (tests/plugins/wastebins_package.py: a WasteContainer model whose @context
redefines ``temperature`` and ``refDevice``, terms bundled models use) is built and installed into
a temporary folder with pip, its entry points (``stadtlink.adapters``, ``stadtlink.models``) in its
metadata. In fresh processes that only have that folder on their path:

* its entities pass ``check_entity`` and ``stadtlink validate``;
* ``stadtlink run`` writes them to the local broker, which holds the package's @context (found
  through the entry point), under the package's IRIs;
* the bundled families' entities still expand to their own IRIs;
* and no file of the core changed (``git status`` of the core folders is the same before and after).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest
import yaml

from stadtlink.adapters.core import tts_uplink
from stadtlink.adapters.core.testing import SHARED_MQTT, free_port, publish_uplinks, wait_for_port
from stadtlink.schemas import model_for, vocabulary
from stadtlink.schemas.bundled import MODELS
from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL

from tests.plugins.wastebins_package import CONTEXT_URL, IRI, write_package

ROOT = Path(__file__).resolve().parents[2]
CORE = ["adapters", "schemas", "broker_client", "stadtlink", "helm", "scripts", "pyproject.toml", "setup.py"]
WEATHER_IRI = "https://smartdatamodels.org/dataModel.Weather/"
LINK = '<{}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def core_status() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", *CORE], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    before = core_status()
    root = tmp_path_factory.mktemp("wastebins")
    site = root / "site"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                          "--no-build-isolation", "--target", str(site), str(write_package(root))],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    assert (site / "stadtlink_wastebins" / "sdm" / "context.jsonld").is_file()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STADTLINK_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    yield {"env": env, "site": site, "root": root}
    assert core_status() == before, "a core file changed while the plugin was built, installed and used"


def stadtlink(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def test_this_process_does_not_know_the_model():
    assert model_for("WasteContainer") is None   # only the processes given the install folder do


def test_the_packages_entities_pass_check_entity_and_validate(plugin, tmp_path):
    env = plugin["env"]
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"adapter": "wastebins", "namespace": "bins", "broker": {"url": "http://x:1"},
                                      "devices": [{"id": "bin-1", "lat": 49.95, "lon": 6.52}]}))
    res = stadtlink(["decode", "wastebins-lora", "2A15", "--fport", "1", "--device", "bin-1", "--entity",
                     "--config", str(config)], env)
    assert res.returncode == 0, res.stderr
    [entity] = json.loads(res.stdout)
    assert entity["type"] == "WasteContainer" and entity["fillingLevel"]["value"] == 0.42
    (tmp_path / "bin.json").write_text(json.dumps(entity))
    check = subprocess.run([sys.executable, "-c", """
import json, sys
from stadtlink.schemas import check_entity, vocabulary
from stadtlink.schemas.registry import model_for, model_origin
entity = json.load(open(sys.argv[1]))
model = model_for("WasteContainer")
print(json.dumps({"problems": [str(p) for p in check_entity(entity)], "origin": model_origin("WasteContainer"),
                  "schema": str(model.schema), "terms": [str(p) for p in vocabulary.vocabulary_problems(entity, model.context_url)],
                  "bad": [str(p) for p in check_entity(dict(entity, fillingLevel={"type": "Property", "value": 4.2}))]}))
""", str(tmp_path / "bin.json")], env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    found = json.loads(check.stdout)
    assert found["problems"] == [] and found["terms"] == []
    assert found["origin"].startswith("entry point wastebins = stadtlink_wastebins.models:MODELS")
    assert found["schema"].startswith(str(plugin["site"]))
    assert any("fillingLevel" in p for p in found["bad"])          # the package's schema is enforced
    # stadtlink validate: with the entity's model context and with the adapter's context
    for extra in ([], ["--context", CONTEXT_URL]):
        res = stadtlink(["validate", str(tmp_path / "bin.json"), *extra], env)
        assert res.returncode == 0, res.stdout + res.stderr
    # written with stadtlink's compound context instead, fillingLevel would fall back: reported
    res = stadtlink(["validate", str(tmp_path / "bin.json"), "--context", STADTLINK_CONTEXT_URL], env)
    assert res.returncode == 1
    assert ("$.fillingLevel: vocabulary: attribute 'fillingLevel' falls back to the default vocabulary: "
            "https://uri.etsi.org/ngsi-ld/default-context/fillingLevel") in res.stdout


async def _get(session, url, context=None):
    headers = {"Link": LINK.format(context)} if context else {}
    async with session.get(url, headers=headers) as resp:
        return resp.status, (await resp.json() if resp.status == 200 else None)


async def test_run_writes_the_packages_iris_and_the_bundled_families_keep_theirs(plugin, tmp_path):
    env = plugin["env"]
    broker_port, http_port = free_port(), free_port()
    app = f"wb{uuid.uuid4().hex[:8]}"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "adapter": "wastebins", "namespace": "bins", "log_level": "INFO",
        "broker": {"url": f"http://127.0.0.1:{broker_port}", "flush_ms": 50},
        "http": {"host": "127.0.0.1", "port": http_port},
        "sources": [{"kind": "mqtt", "topics": [f"v3/{app}@ttn/devices/+/up"], "profile": "wastebins-lora"}],
        "devices": [{"id": "bin-1", "lat": 49.95, "lon": 6.52}],
    }))
    broker = subprocess.Popen([sys.executable, "-m", "stadtlink.broker_client.local_broker", "--port", str(broker_port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = None
    try:
        await asyncio.to_thread(wait_for_port, "127.0.0.1", broker_port, 120, process=broker)
        run = subprocess.Popen([sys.executable, "-m", "stadtlink.adapters.core.cli", "run", "wastebins",
                                "--config", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        base = f"http://127.0.0.1:{broker_port}/ngsi-ld/v1/entities/"
        bin_id = "urn:ngsi-ld:WasteContainer:bins:bin-1"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async def ready():
                try:
                    async with session.get(f"http://127.0.0.1:{http_port}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            for _ in range(600):
                assert run.poll() is None, run.stderr.read().decode()[-2000:]
                if await ready():
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the plugin adapter never became ready")
            await publish_uplinks(*SHARED_MQTT, [tts_uplink("bin-1", b"\x2a\x15", f_port=1, f_cnt=1, application_id=app,
                                                                 received_at=_now())])
            for _ in range(600):
                status, stored = await _get(session, base + bin_id)
                if status == 200:
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"{bin_id} never reached the broker: {run.stderr.read1().decode()[-2000:]}")
            # read without a user context: the full IRIs the broker stored — the package's
            assert stored["type"] == IRI + "WasteContainer"
            assert stored[IRI + "fillingLevel"]["value"] == 0.42
            assert stored[IRI + "temperature"]["value"] == 21
            assert stored[IRI + "refDevice"]["object"] == "urn:ngsi-ld:Device:bins:bin-1"
            status, short = await _get(session, base + bin_id, CONTEXT_URL)
            assert short["type"] == "WasteContainer" and short["fillingLevel"]["value"] == 0.42
            # no vocabulary mismatch, nothing invalid
            async with session.get(f"http://127.0.0.1:{http_port}/metrics") as resp:
                metrics = await resp.text()
            assert "stadtlink_vocabulary_mismatches_total{" not in metrics
            assert 'stadtlink_invalid_total{adapter="wastebins"} 0.0' in metrics
            assert 'stadtlink_upserted_total{adapter="wastebins"} 1.0' in metrics

            # a bundled family's entity, decoded by the climate adapter in the same environment and
            # written with stadtlink's compound context, still expands to the Weather IRIs
            res = await asyncio.to_thread(stadtlink, [
                "decode", "barani-meteohelix", "6F19C10A393F28B00601FF", "--fport", "1", "--entity",
                "--config", str(ROOT / "adapters/climate/example-config.yaml"), "--device", "mhm-wasserturm"], env)
            assert res.returncode == 0, res.stderr
            weather = next(e for e in json.loads(res.stdout) if e["type"] == "WeatherObserved")
            async with session.post(f"http://127.0.0.1:{broker_port}/ngsi-ld/v1/entityOperations/upsert",
                                    json=[weather], headers={"Link": LINK.format(STADTLINK_CONTEXT_URL)}) as resp:
                assert resp.status in (200, 201, 204), await resp.text()
            status, stored_weather = await _get(session, base + weather["id"])
            assert stored_weather["type"] == WEATHER_IRI + "WeatherObserved"
            assert stored_weather[WEATHER_IRI + "temperature"]["value"] == weather["temperature"]["value"]
            assert IRI + "temperature" not in stored_weather
    finally:
        for proc in (run, broker):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


def test_the_bundled_models_vocabulary_is_unchanged_with_the_plugin_installed(plugin):
    here = sorted(str(p) for p in vocabulary.clashes(STADTLINK_CONTEXT_URL, MODELS))
    res = subprocess.run([sys.executable, "-c", """
import json
from stadtlink.schemas import vocabulary
from stadtlink.schemas.bundled import MODELS
from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL, context_url
from stadtlink.schemas.registry import model_for
assert model_for("WasteContainer") is not None
own = {m: vocabulary.clashes(context_url(m), [m]) for m in [*MODELS, "WasteContainer"]}
print(json.dumps({"compound": sorted(str(p) for p in vocabulary.clashes(STADTLINK_CONTEXT_URL, MODELS)),
                  "own": {m: [str(p) for p in v] for m, v in own.items()},
                  "weather": vocabulary.own_iri("WeatherObserved", "temperature")}))
"""], env=plugin["env"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    found = json.loads(res.stdout)
    assert found["compound"] == here                       # the package's context is not in the compound
    assert all(v == [] for v in found["own"].values())      # every model, the package's too, clash-free alone
    assert found["weather"] == WEATHER_IRI + "temperature"
