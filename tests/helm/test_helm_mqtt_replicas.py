"""MQTT adapters with several pods on a shared subscription: each pod's MQTT client id is its pod
name (``client_id_env``, from the downward API), so a restarted container resumes its session and
the share queued in it; ``workload: statefulset`` keeps pod names across nodes too
(adapters/core/sources/mqtt.py, module docstring; the chart README "Scaling")."""
from __future__ import annotations

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

import helm_kit as hk  # noqa: E402
from stadtlink.adapters.core.config import load_config  # noqa: E402
from stadtlink.adapters.core.plugins import load_adapters  # noqa: E402
from stadtlink.adapters.core.sources import MqttSource  # noqa: E402
from helm_kit import pod_env  # noqa: E402

MQTT = {"kind": "mqtt", "host": "mq", "shared_group": "stadtlink-climate"}


def _climate(**entry) -> dict:
    return hk.with_base({"adapters": {"climate": {"enabled": True, "config": {"sources": [MQTT]}, **entry}}})


def _workload(docs, kind: str = "Deployment", name: str = "climate") -> dict:
    return hk.named(docs, kind, hk.adapter_name(name))


def _env(workload: dict) -> list[dict]:
    return workload["spec"]["template"]["spec"]["containers"][0]["env"]


def _client_ids(docs, workload: dict, pod_name: str, monkeypatch) -> list[str]:
    """The client ids the runtime gives the MQTT sources of this workload's pod ``pod_name``."""
    adapters, _ = load_adapters()
    container = workload["spec"]["template"]["spec"]["containers"][0]
    env = pod_env(container, {("rel-stadtlink-redis", "redis-password"): "pw"}, pod_name=pod_name)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cm = hk.named(docs, "ConfigMap", workload["metadata"]["name"])
    config, _ = load_config(yaml.safe_load(cm["data"]["config.yaml"]), adapter=adapters["climate"], env=env)
    return [MqttSource(s, adapter_name="climate").client_id for s in config.sources if s.kind == "mqtt"]


def test_several_pods_take_the_pod_name_as_client_id(monkeypatch):
    docs = hk.manifests(_climate(replicas=3))
    deployment = _workload(docs)
    [src] = hk.adapter_config(docs, "climate")["sources"]
    assert src["client_id_env"] == "POD_NAME" and "client_id" not in src
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in _env(deployment)
    assert _client_ids(docs, deployment, "rel-stadtlink-climate-7d9f8c-x2x4q", monkeypatch) == [
        "rel-stadtlink-climate-7d9f8c-x2x4q"]


def test_an_autoscaled_adapter_takes_the_pod_name_too():
    docs = hk.manifests(_climate(autoscaling={"enabled": True}, resources={"requests": {"cpu": "100m"}}))
    assert hk.adapter_config(docs, "climate")["sources"][0]["client_id_env"] == "POD_NAME"


def test_two_mqtt_sources_of_one_pod_get_two_client_ids(monkeypatch):
    second = {**MQTT, "host": "mq2", "topics": ["application/+/device/+/event/up"]}
    docs = hk.manifests(_climate(replicas=2, config={"sources": [MQTT, second]}))
    deployment = _workload(docs)
    sources = hk.adapter_config(docs, "climate")["sources"]
    assert [s["client_id_env"] for s in sources] == ["MQTT_CLIENT_ID_0", "MQTT_CLIENT_ID_1"]
    names = [e["name"] for e in _env(deployment)]
    assert names.index("POD_NAME") < names.index("MQTT_CLIENT_ID_0")   # $(POD_NAME) needs it defined first
    assert _client_ids(docs, deployment, "pod-a", monkeypatch) == ["pod-a-0", "pod-a-1"]


def test_one_pod_takes_the_pod_name_too(monkeypatch):
    """A single pod's container restart must resume its session as well: a random id would leave
    the old session (and what the broker queued in it meanwhile) behind."""
    docs = hk.manifests(_climate(replicas=1))
    deployment = _workload(docs)
    assert hk.adapter_config(docs, "climate")["sources"][0]["client_id_env"] == "POD_NAME"
    assert _client_ids(docs, deployment, "rel-stadtlink-climate-5f6d-abcde", monkeypatch) == [
        "rel-stadtlink-climate-5f6d-abcde"]


def test_an_own_fixed_client_id_of_one_pod_is_kept():
    own = {**MQTT, "client_id": "climate-prod"}
    docs = hk.manifests(_climate(replicas=1, config={"sources": [own]}))
    src = hk.adapter_config(docs, "climate")["sources"][0]
    assert src["client_id"] == "climate-prod" and "client_id_env" not in src
    assert "POD_NAME" not in {e["name"] for e in _env(_workload(docs))}


def test_an_own_client_id_env_is_kept():
    own = {**MQTT, "client_id_env": "MY_ID"}
    docs = hk.manifests(_climate(replicas=2, config={"sources": [own]},
                                 extraEnv=[{"name": "MY_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}}]))
    assert hk.adapter_config(docs, "climate")["sources"][0]["client_id_env"] == "MY_ID"
    assert "POD_NAME" not in {e["name"] for e in _env(_workload(docs))}


def test_statefulset_workload(monkeypatch):
    values = _climate(replicas=2, workload="statefulset")
    docs = hk.manifests(values)
    assert hk.adapter_name("climate") not in {d["metadata"]["name"] for d in hk.by_kind(docs, "Deployment")}
    sts = _workload(docs, "StatefulSet")
    spec = sts["spec"]
    assert spec["replicas"] == 2 and spec["serviceName"] == hk.adapter_name("climate")
    assert spec["podManagementPolicy"] == "Parallel" and spec["updateStrategy"] == {"type": "RollingUpdate"}
    assert "strategy" not in spec
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    # a StatefulSet's pod is <name>-<ordinal>, the same after a reschedule: so is its client id
    assert _client_ids(docs, sts, hk.adapter_name("climate") + "-1", monkeypatch) == [hk.adapter_name("climate") + "-1"]
    version = kubernetes_validate.utils.latest_version()
    kubernetes_validate.validate(sts, version, strict=True)
    notes = hk.render(values)["stadtlink/templates/NOTES.txt"]
    assert f"climate: StatefulSet {hk.adapter_name('climate')}" in notes


def test_statefulset_with_one_replica_and_with_an_hpa():
    docs = hk.manifests(_climate(workload="statefulset"))
    assert hk.adapter_config(docs, "climate")["sources"][0]["client_id_env"] == "POD_NAME"
    docs = hk.manifests(_climate(workload="statefulset", autoscaling={"enabled": True},
                                 resources={"requests": {"cpu": "100m"}}))
    assert "replicas" not in _workload(docs, "StatefulSet")["spec"]
    [hpa] = hk.by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "StatefulSet",
                                             "name": hk.adapter_name("climate")}


def test_statefulset_for_sharded_pull_adapters():
    values = hk.ci_values("all-adapters")
    values["adapters"]["pv"]["workload"] = "statefulset"
    docs = hk.manifests(values)
    for shard in (0, 1):
        sts = hk.named(docs, "StatefulSet", f"{hk.adapter_name('pv')}-{shard}")
        assert sts["spec"]["replicas"] == 1 and "strategy" not in sts["spec"]


def test_workload_values_are_checked():
    with pytest.raises(hk.helm().HelmError, match="workload"):
        hk.render(_climate(workload="daemonset"))
    long = _climate(replicas=2, workload="statefulset")
    long["fullnameOverride"] = "a-very-long-release-name-for-the-city-platform"
    with pytest.raises(hk.helm().HelmError, match="longer than 52"):
        hk.render(long)
