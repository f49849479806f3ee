"""What the chart writes into each adapter's ConfigMap is a config the real runtime accepts, once the
pod's environment (Secrets resolved, ``$(VAR)`` expanded) is applied the way Kubernetes does it."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

import helm_kit as hk  # noqa: E402
from helm_kit import configmaps_of_adapters, mount_broker_secrets, pod_env  # noqa: E402
from stadtlink.adapters.core.config import load_config  # noqa: E402
from stadtlink.adapters.core.plugins import load_adapters  # noqa: E402

class AnySecret(dict):
    """Any Secret key resolves; an external Redis URL Secret to a URL (as an operator would fill it)."""

    def __missing__(self, key):
        if key == ("stadtlink-redis-url", "url"):
            return "redis://:pw@redis.shared.svc:6379/2"
        return f"secret-of-{key[0]}-{key[1]}"


@pytest.mark.parametrize("name", [p.name.removesuffix("-values.yaml") for p in hk.CI_VALUES])
def test_every_rendered_config_loads_in_the_runtime(name, tmp_path, monkeypatch):
    adapters, _ = load_adapters()
    docs = hk.manifests(hk.ci_values(name))
    count = 0
    for deployment, cm, container in configmaps_of_adapters(docs):
        where = tmp_path / deployment["metadata"]["name"]
        where.mkdir()
        for file, text in cm["data"].items():
            (where / file).write_text(text, encoding="utf-8")
        text = mount_broker_secrets((where / "config.yaml").read_text(), container, where)
        data = yaml.safe_load(text)
        env = pod_env(container, AnySecret())
        for k, v in env.items():
            monkeypatch.setenv(k, v)     # *_env secrets are read from the process environment
        adapter_name = container["args"][1]
        config, base = load_config(data, adapter=adapters[adapter_name], env=env, base_dir=where)
        assert config.adapter == adapter_name
        assert config.http.port == 9100 and config.http.host == "0.0.0.0"
        for rel in config.registry_files:
            assert (base / rel).is_file(), f"{rel} is not mounted beside the config"
        if config.outbox.kind == "redis":
            assert config.outbox.url.startswith("redis://"), config.outbox.url
            assert "$(" not in config.outbox.url
        count += 1
    expected = {"defaults": 0, "all-adapters": 5, "external-redis": 1, "oauth2": 2, "networkpolicy": 1,
                "two-sinks": 2}
    assert count == expected.get(name, count)


def test_in_chart_redis_url_carries_the_password():
    values = hk.with_base({"adapters": {"climate": {"enabled": True, "config": {"sources": [{"kind": "mqtt"}]}}}})
    docs = hk.manifests(values)
    [(_, cm, container)] = list(configmaps_of_adapters(docs))
    env = pod_env(container, {("rel-stadtlink-redis", "redis-password"): "pw123"})
    adapters, _ = load_adapters()
    config, _ = load_config(yaml.safe_load(cm["data"]["config.yaml"]), adapter=adapters["climate"], env=env)
    assert config.outbox.url == "redis://:pw123@rel-stadtlink-redis.iot.svc.cluster.local:6379/0"
    assert config.outbox.key_prefix == "rel-stadtlink"
    assert config.broker.context == "http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/stadtlink-context.jsonld"
    assert config.namespace == "wolfsburg"


def test_adapter_config_overrides_chart_broker_defaults():
    values = hk.with_base({"broker": {"tenant": "city"}, "adapters": {"climate": {"enabled": True, "config": {
        "namespace": "mannheim", "broker": {"tenant": "weather", "batch_size": 50},
        "outbox": {"max_length": 5000}, "sources": [{"kind": "mqtt"}]}}}})
    cfg = hk.adapter_config(hk.manifests(values), "climate")
    assert cfg["broker"]["tenant"] == "weather" and cfg["broker"]["batch_size"] == 50
    assert cfg["broker"]["url"] == "http://orion-ld.fiware.svc.cluster.local:1026"
    assert cfg["namespace"] == "mannheim"
    assert cfg["outbox"] == {"kind": "redis", "key_prefix": "rel-stadtlink", "max_length": 5000}


def test_context_url_defaults_and_overrides():
    on = hk.adapter_config(hk.manifests(hk.with_base({"adapters": {"climate": {
        "enabled": True, "config": {"sources": [{"kind": "mqtt"}]}}}})), "climate")
    assert on["broker"]["context"].startswith("http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/")
    off = hk.adapter_config(hk.manifests(hk.with_base({"contextServer": {"enabled": False}, "adapters": {"climate": {
        "enabled": True, "config": {"sources": [{"kind": "mqtt"}]}}}})), "climate")
    assert "context" not in off["broker"]      # the adapter's built-in default applies
    own = hk.adapter_config(hk.manifests(hk.with_base({"broker": {"context": "https://ctx.example/c.jsonld"},
                                                       "adapters": {"climate": {"enabled": True, "config": {
                                                           "sources": [{"kind": "mqtt"}]}}}})), "climate")
    assert own["broker"]["context"] == "https://ctx.example/c.jsonld"


def test_examples_fit_the_chart_schema():
    """Each examples/<adapter>.yaml, minus the keys the chart owns, is a valid adapters.<name>.config."""
    examples = Path(hk.ROOT / "examples")
    found = 0
    for name in ("parking", "climate", "water_level", "pv"):
        path = examples / f"{name}.yaml"
        if not path.exists():
            continue
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        for key in ("adapter", "http"):
            config.pop(key, None)
        config.get("outbox", {}).pop("kind", None)
        config.get("outbox", {}).pop("url", None)
        hk.chart().validate_schema(hk.with_base({"adapters": {name: {"enabled": True, "config": config}}}))
        found += 1
    assert found >= 2
