"""The chart README's The Things Stack example ("LoRaWAN network servers"): it renders, the runtime
reads the rendered config with the preset applied, and more than one pod is refused (TTS has no
shared subscriptions)."""
from __future__ import annotations

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

import helm_kit as hk  # noqa: E402
from stadtlink.adapters.core.config import load_config  # noqa: E402
from stadtlink.adapters.core.plugins import load_adapters  # noqa: E402


def _readme_example() -> dict:
    text = (hk.CHART_DIR / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## LoRaWAN network servers"):]
    block = section[section.index("```yaml") + len("```yaml"):]
    return yaml.safe_load(block[: block.index("```")])


def test_the_readme_tts_example_renders_and_the_runtime_reads_it():
    values = hk.with_base(_readme_example())
    docs = hk.manifests(values)
    config = hk.adapter_config(docs, "parking")
    [src] = config["sources"]
    assert src["network"] == "tts" and src["tts"]["api_key_file"].startswith("/etc/stadtlink-secrets/tts/")
    adapters, _ = load_adapters()
    cfg, _ = load_config(config, adapter=adapters["parking"], env={})
    [mqtt] = cfg.sources
    assert (mqtt.protocol, mqtt.qos, mqtt.port, mqtt.username) == ("3.1.1", 0, 8883, "parking-wob@ttn")
    assert mqtt.tls is not None and mqtt.topics == ["v3/parking-wob@ttn/devices/+/up"]
    assert mqtt.password_file == "/etc/stadtlink-secrets/tts/api-key"
    deployment = hk.named(docs, "Deployment", hk.adapter_name("parking"))
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert any(m["mountPath"] == "/etc/stadtlink-secrets/tts" for m in mounts)


def test_more_than_one_pod_of_a_tts_adapter_is_refused():
    values = hk.with_base(_readme_example())
    values["adapters"]["parking"]["replicas"] = 2
    with pytest.raises(hk.helm().HelmError, match="shared_group"):
        hk.render(values)


def test_an_inline_tts_api_key_is_refused_by_the_values_schema():
    values = hk.with_base(_readme_example())
    tts = values["adapters"]["parking"]["config"]["sources"][0]["tts"]
    del tts["api_key_file"]
    tts["api_key"] = "NNSXS.WOULD.LAND.IN.A.CONFIGMAP"
    with pytest.raises(Exception, match="tts/api_key': 'not' failed"):
        hk.chart().validate_schema(values)
