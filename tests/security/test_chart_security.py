"""The Helm chart's security defaults (issue 19), rendered by the real Helm engine and its values schema.

* inline secrets (``password``, ``token``, ``client_secret``, ``api_key``, a token ``value``,
  credential headers) are refused by the values schema: they would land in a ConfigMap;
* the in-chart Redis always requires its password and keeps protected mode on;
* NetworkPolicy is on by default; the adapters' HTTP port (metrics, webhooks) is open only to the
  configured peers (Prometheus by default), the context server only to its readers;
* every container has a CPU request, and resources without one are refused.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helm"))
import helm_kit as hk  # noqa: E402

MQTT = {"kind": "mqtt", "host": "mosquitto.iot", "shared_group": "g"}


def _error(values) -> str:
    with pytest.raises(hk.helm().HelmError) as info:
        hk.render(values)
    return str(info.value)


def _parking(**config) -> dict:
    return hk.with_base({"adapters": {"parking": {"enabled": True, "config": {"sources": [MQTT], **config}}}})


@pytest.mark.parametrize("where, values", [
    ("/adapters/parking/config/sources/0/password",
     _parking(sources=[{**MQTT, "username": "u", "password": "hunter2-inline"}])),
    ("/adapters/climate/config/sources/0/token",
     hk.with_base({"adapters": {"climate": {"enabled": True, "config": {"sources": [
         {"kind": "webhook", "token": "hunter2-inline"}]}}}})),
    ("/adapters/parking/config/sources/0/tts/api_key",
     _parking(sources=[{**MQTT, "network": "tts", "tts": {"application_id": "app", "api_key": "hunter2-inline"}}])),
    ("/adapters/water_level/config/sources/0/headers",
     hk.with_base({"adapters": {"water_level": {"enabled": True, "config": {"sources": [
         {"kind": "http-poll", "targets": [{"url": "https://feed.example/x", "profile": "pegelonline"}],
          "headers": {"Authorization": "Bearer hunter2-inline"}}]}}}})),
    ("/adapters/parking/config/broker",
     _parking(broker={"auth": {"kind": "oauth2", "token_url": "https://kc/t", "client_id": "c",
                               "client_secret": "hunter2-inline"}})),
    ("/brokers/0/auth",
     {**{k: v for k, v in hk.with_base({}).items() if k != "broker"},
      "brokers": [{"name": "a", "url": "http://orion:1026", "auth": {"kind": "token", "value": "hunter2-inline"}}]}),
])
def test_inline_secrets_are_refused_by_the_values_schema(where, values):
    msg = _error(values)
    assert where in msg, msg
    assert "hunter2-inline" not in msg


def test_secrets_from_mounted_files_are_accepted_and_no_configmap_holds_a_secret():
    values = _parking(sources=[{**MQTT, "username": "u", "password_file": "/var/run/secrets/mqtt/password"}])
    values["adapters"]["parking"]["secretFiles"] = [{"secretName": "mqtt", "mountPath": "/var/run/secrets/mqtt"}]
    docs = hk.manifests(values)
    src = hk.adapter_config(docs, "parking")["sources"][0]
    assert src["password_file"] == "/var/run/secrets/mqtt/password" and "password" not in src
    for cm in hk.by_kind(docs, "ConfigMap"):
        for text in (cm.get("data") or {}).values():
            assert "password:" not in text and "client_secret:" not in text


def test_in_chart_redis_requires_its_password_and_keeps_protected_mode_on():
    docs = hk.manifests(hk.with_base({"adapters": {"parking": {"enabled": True, "config": {"sources": [MQTT]}}}}))
    conf = hk.named(docs, "ConfigMap", "rel-stadtlink-redis")["data"]["redis.conf"]
    assert "protected-mode yes" in conf and "protected-mode no" not in conf
    redis = hk.named(docs, "StatefulSet", "rel-stadtlink-redis")["spec"]["template"]["spec"]["containers"][0]
    assert "--requirepass" in redis["args"][0]
    assert redis["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "redis-password"
    msg = _error(hk.with_base({"redis": {"auth": {"enabled": False}}}))
    assert "/redis/auth/enabled" in msg


def _policies(values) -> dict[str, dict]:
    return {p["metadata"]["name"]: p["spec"] for p in hk.by_kind(hk.manifests(values), "NetworkPolicy")}


def test_network_policy_is_on_by_default_and_the_http_port_admits_prometheus_only():
    pols = _policies(hk.with_base({"adapters": {"parking": {"enabled": True, "config": {"sources": [MQTT]}}}}))
    assert set(pols) == {"rel-stadtlink-adapters", "rel-stadtlink-contexts", "rel-stadtlink-redis"}
    ingress = pols["rel-stadtlink-adapters"]["ingress"]
    assert len(ingress) == 1 and ingress[0]["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress[0]["from"] == [{"namespaceSelector": {},
                                   "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}}]
    assert all(rule.get("from") for rule in ingress)          # never "from anyone"
    assert pols["rel-stadtlink-redis"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "adapter"


def test_network_policy_peers_are_configurable_and_none_means_closed():
    broker_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fiware"}}}
    tts_ns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "lorawan"}}}
    pols = _policies(hk.with_base({"networkPolicy": {"ingress": {"metrics": [], "webhooks": [tts_ns],
                                                                 "contextServer": [broker_ns]}}}))
    assert pols["rel-stadtlink-adapters"]["ingress"][0]["from"] == [tts_ns]
    assert pols["rel-stadtlink-contexts"]["ingress"][0]["from"] == [broker_ns]
    closed = _policies(hk.with_base({"networkPolicy": {"ingress": {"metrics": [], "webhooks": [],
                                                                   "contextServer": []}}}))
    assert closed["rel-stadtlink-adapters"]["ingress"] == []
    assert closed["rel-stadtlink-contexts"]["ingress"] == []


def test_every_container_has_a_cpu_request_and_resources_without_one_are_refused():
    docs = hk.manifests(hk.ci_values("all-adapters"))
    seen = 0
    for name, template in hk.pod_specs(docs):
        for container in template["spec"]["containers"]:
            assert container.get("resources", {}).get("requests", {}).get("cpu"), (name, container["name"])
            seen += 1
    assert seen >= 3
    # an adapter's own resources replace the defaults: they must carry a CPU request themselves;
    # the chart's defaults cannot be emptied either (null removes a key in Helm)
    for values, where in (
            (_parking_with(resources={"limits": {"memory": "1Gi"}}), "/adapters/parking/resources"),
            (_parking_with(resources={"requests": {"memory": "1Gi"}}), "/adapters/parking/resources/requests"),
            (hk.with_base({"defaults": {"resources": {"requests": {"cpu": None}}}}), "/defaults/resources/requests"),
            (hk.with_base({"redis": {"resources": {"requests": {"cpu": None}}}}), "/redis/resources/requests"),
            (hk.with_base({"contextServer": {"resources": {"requests": None}}}), "/contextServer/resources")):
        assert where in _error(values)


def _parking_with(**knobs) -> dict:
    values = _parking()
    values["adapters"]["parking"].update(knobs)
    return values
