"""The chart rendered by the real Helm engine: lint, Kubernetes schema validity, security, rollouts."""
from __future__ import annotations

import copy

import pytest

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

import helm_kit as hk  # noqa: E402

CI_NAMES = [p.name.removesuffix("-values.yaml") for p in hk.CI_VALUES]


def test_the_ci_values_sets_cover_the_issue():
    assert {"defaults", "all-adapters", "external-redis", "oauth2", "networkpolicy", "two-sinks"} <= set(CI_NAMES)


def test_the_engine_is_helm_v4_from_the_sdk():
    h = hk.helm()
    assert h.helm_sdk_version().startswith("v4."), h.helm_sdk_version()
    assert hk.chart().name == "stadtlink"
    assert hk.chart().schema is not None, "the chart ships values.schema.json"


@pytest.mark.parametrize("name", CI_NAMES)
def test_lint_strict_is_clean(name):
    report = hk.helm().lint(str(hk.CHART_DIR), hk.ci_values(name), strict=True, namespace=hk.NAMESPACE)
    assert report["errors"] == []
    assert report["total_charts_linted"] == 1
    assert report["messages"] == [], report["messages"]


def test_lint_reports_bad_values():
    """The lint really runs the schema (a finding, not an exception)."""
    values = hk.ci_values("defaults")
    values["adapters"] = {"pv": {"replicas": "two"}}
    report = hk.helm().lint(str(hk.CHART_DIR), values, strict=True)
    text = " ".join(m["error"] for m in report["messages"]) + " ".join(report["errors"])
    assert "replicas" in text and "want integer" in text


@pytest.mark.parametrize("name", CI_NAMES)
def test_every_manifest_is_valid_for_the_newest_kubernetes(name):
    version = kubernetes_validate.utils.latest_version()
    docs = hk.manifests(hk.ci_values(name))
    assert docs
    checked = 0
    for doc in docs:
        where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        if doc["kind"] in hk.CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {where} is invalid for Kubernetes {version}: {str(exc).splitlines()[0]}")
        checked += 1
        assert doc["metadata"]["namespace"] == hk.NAMESPACE, where
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == hk.RELEASE, where
    assert checked >= len(docs) - 1


def test_newest_kubernetes_is_recent():
    major, minor, *_ = (int(x) for x in kubernetes_validate.utils.latest_version().split("."))
    assert (major, minor) >= (1, 33)


def test_service_monitor_shape():
    docs = hk.manifests(hk.ci_values("all-adapters"))
    [sm] = hk.by_kind(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert sm["spec"]["endpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}]
    # it selects exactly the adapter Services
    sel = sm["spec"]["selector"]["matchLabels"]
    selected = [s["metadata"]["name"] for s in hk.by_kind(docs, "Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
    assert sorted(selected) == sorted(hk.adapter_name(a) for a in ("parking", "climate", "water_level", "pv"))
    assert not hk.by_kind(hk.manifests(hk.ci_values("defaults")), "ServiceMonitor")


# --- security --------------------------------------------------------------------------------------

def assert_locked_down(docs):
    pods = list(hk.pod_specs(docs))
    assert pods
    for where, template in pods:
        spec = template["spec"]
        assert spec["automountServiceAccountToken"] is False, where
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), where
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}, where
        assert psc.get("runAsUser", 1) != 0, where
        for vol in spec.get("volumes", []):
            assert "hostPath" not in vol, f"{where}: hostPath volume {vol['name']}"
        containers = spec["containers"] + spec.get("initContainers", [])
        for c in containers:
            at = f"{where} container {c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True, at
            assert sc["readOnlyRootFilesystem"] is True, at
            assert sc["allowPrivilegeEscalation"] is False, at
            assert sc["capabilities"]["drop"] == ["ALL"], at
            assert not sc["capabilities"].get("add"), at
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, at
            assert sc.get("privileged", False) is False, at
            assert "resources" in c and c["resources"].get("limits", {}).get("memory"), f"{at}: no memory limit"
            assert "@" in c["image"] or not c["image"].endswith(":latest"), at
    service_accounts = hk.by_kind(docs, "ServiceAccount")
    assert all(sa["automountServiceAccountToken"] is False for sa in service_accounts)
    # no Role/ClusterRole: nothing in stadtlink talks to the Kubernetes API
    assert not [d for d in docs if d["kind"] in ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]


@pytest.mark.parametrize("name", CI_NAMES)
def test_every_pod_is_locked_down(name):
    assert_locked_down(hk.manifests(hk.ci_values(name)))


@pytest.mark.parametrize("weaken", [
    {"containerSecurityContext": {"readOnlyRootFilesystem": False}},
    {"containerSecurityContext": {"allowPrivilegeEscalation": True}},
    {"containerSecurityContext": {"capabilities": {"drop": ["NET_RAW"]}}},
    {"podSecurityContext": {"seccompProfile": {"type": "Unconfined"}}},
    {"podSecurityContext": {"runAsNonRoot": False}},
    {"serviceAccount": {"automountServiceAccountToken": True}},
])
def test_the_security_check_catches_a_weakened_pod(weaken):
    """The values that set these fields really reach every pod (and the check above notices)."""
    with pytest.raises(AssertionError):
        assert_locked_down(hk.manifests(hk.with_base(weaken)))


# --- adapters ---------------------------------------------------------------------------------------

def test_one_deployment_per_enabled_adapter_and_shard_with_probes():
    docs = hk.manifests(hk.ci_values("all-adapters"))
    deployments = {d["metadata"]["name"]: d for d in hk.by_kind(docs, "Deployment")}
    expected = {hk.adapter_name(a) for a in ("parking", "climate", "water_level")} | {
        hk.adapter_name("pv") + "-0", hk.adapter_name("pv") + "-1", "rel-stadtlink-contexts"}
    assert set(deployments) == expected
    for name, d in deployments.items():
        if name.endswith("contexts"):
            continue
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["args"][0] == "run" and c["args"][2:] == ["--config", "/etc/stadtlink/config.yaml"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert c["ports"] == [{"name": "http", "containerPort": 9100, "protocol": "TCP"}]
        ann = d["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9100"
        assert ann["prometheus.io/path"] == "/metrics"
        assert len(ann["checksum/config"]) == 64
    # pull adapters: one replica, Recreate (never two pollers); MQTT with HPA: no fixed replicas
    assert deployments[hk.adapter_name("pv") + "-0"]["spec"]["replicas"] == 1
    assert deployments[hk.adapter_name("pv") + "-0"]["spec"]["strategy"] == {"type": "Recreate"}
    assert "replicas" not in deployments[hk.adapter_name("climate")]["spec"]
    [hpa] = hk.by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == hk.adapter_name("climate")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)   # defaults merged with own keys
    pdbs = {p["metadata"]["name"]: p for p in hk.by_kind(docs, "PodDisruptionBudget")}
    assert pdbs[hk.adapter_name("pv")]["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"app.kubernetes.io/name": "stadtlink", "app.kubernetes.io/instance": "rel",
                                     "app.kubernetes.io/component": "adapter", "stadtlink.io/adapter": "pv"}}}
    water = deployments[hk.adapter_name("water_level")]["spec"]["template"]["spec"]
    assert water["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert water["tolerations"][0]["key"] == "dedicated"


def test_shards_split_pull_targets_round_robin():
    values = hk.ci_values("all-adapters")
    docs = hk.manifests(values)
    shards = [hk.adapter_config(docs, "pv", i) for i in range(2)]
    all_targets = [(s["name"], t["device"]) for s in values["adapters"]["pv"]["config"]["sources"] for t in s["targets"]]
    got = [(s["name"], t["device"]) for cfg in shards for s in cfg["sources"] for t in s["targets"]]
    assert sorted(got) == sorted(all_targets) and len(got) == len(set(got))
    assert [t["device"] for t in shards[0]["sources"][0]["targets"]] == ["inv-rathaus", "inv-halle"]
    assert [t["device"] for t in shards[1]["sources"][0]["targets"]] == ["inv-schule"]
    # the one-target fronius source lands in shard 0 only (no empty source in shard 1)
    assert [s["name"] for s in shards[1]["sources"]] == ["sunspec-inverters"]


def test_config_change_rolls_only_that_adapter():
    values = hk.ci_values("all-adapters")
    before = hk.manifests(values)
    changed = copy.deepcopy(values)
    changed["adapters"]["climate"]["config"]["settings"]["rain_gauge_mm"] = 0.254
    after = hk.manifests(changed)
    climate, parking = hk.adapter_name("climate"), hk.adapter_name("parking")
    assert hk.checksum(before, climate) != hk.checksum(after, climate)
    assert hk.checksum(before, parking) == hk.checksum(after, parking)
    # same values → same checksum (no random input in it)
    assert hk.checksum(before, climate) == hk.checksum(hk.manifests(values), climate)
    # a registry file edit rolls the pods too
    changed2 = copy.deepcopy(values)
    changed2["adapters"]["parking"]["registryFiles"]["parking-devices.csv"] += "tps-nord-02,x,52.4,10.7,bosch-tps110,70b3d57ed0050002,pr-nord,pr-nord-02,0,offStreet,,,,\n"
    assert hk.checksum(hk.manifests(changed2), parking) != hk.checksum(before, parking)
    # a chart-level value that ends up in the config (the tenant) rolls every adapter
    changed3 = copy.deepcopy(values)
    changed3["broker"]["tenant"] = "other"
    assert hk.checksum(hk.manifests(changed3), parking) != hk.checksum(before, parking)


def test_registry_files_are_mounted_beside_the_config():
    docs = hk.manifests(hk.ci_values("all-adapters"))
    cm = hk.named(docs, "ConfigMap", hk.adapter_name("parking"))
    assert set(cm["data"]) == {"config.yaml", "parking-devices.csv"}
    assert cm["data"]["parking-devices.csv"].startswith("id,name,lat,lon")
    assert hk.adapter_config(docs, "parking")["registry_files"] == ["parking-devices.csv"]
    # a name listed in config.registry_files and in registryFiles appears once
    assert hk.adapter_config(docs, "climate")["registry_files"] == ["climate-stations.csv"]
    spec = hk.named(docs, "Deployment", hk.adapter_name("parking"))["spec"]["template"]["spec"]
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["config"] == {"name": "config", "mountPath": "/etc/stadtlink", "readOnly": True}
    assert mounts["secret-0"]["mountPath"] == "/var/run/secrets/mqtt"
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["secret-0"]["secret"]["secretName"] == "mqtt-credentials"


def test_in_chart_redis_statefulset_and_password_in_env():
    docs = hk.manifests(hk.ci_values("defaults"))
    [sts] = hk.by_kind(docs, "StatefulSet")
    assert sts["metadata"]["name"] == "rel-stadtlink-redis"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    secret = hk.named(docs, "Secret", "rel-stadtlink-redis")
    assert set(secret["data"]) == {"redis-password"}
    values = hk.ci_values("defaults")
    values["adapters"] = {"climate": {"enabled": True, "config": {"sources": [{"kind": "mqtt", "host": "mq"}]}}}
    docs = hk.manifests(values)
    env = {e["name"]: e for e in hk.named(docs, "Deployment", hk.adapter_name("climate"))
           ["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "rel-stadtlink-redis", "key": "redis-password"}
    assert env["STADTLINK_OUTBOX__URL"]["value"] == \
        "redis://:$(REDIS_PASSWORD)@rel-stadtlink-redis.iot.svc.cluster.local:6379/0"
    assert hk.adapter_config(docs, "climate")["outbox"] == {"kind": "redis", "key_prefix": "rel-stadtlink"}


def test_external_redis_from_a_secret():
    docs = hk.manifests(hk.ci_values("external-redis"))
    assert not hk.by_kind(docs, "StatefulSet")
    assert not [s for s in hk.by_kind(docs, "Secret")]
    c = hk.named(docs, "Deployment", hk.adapter_name("parking"))["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["STADTLINK_OUTBOX__URL"]["valueFrom"]["secretKeyRef"] == {"name": "stadtlink-redis-url", "key": "url"}
    assert "REDIS_PASSWORD" not in env
    assert hk.adapter_config(docs, "parking")["outbox"] == {"kind": "redis", "key_prefix": "aachen-stadtlink"}
    # a plain URL goes into the config itself
    values = hk.ci_values("external-redis")
    values["redis"]["external"] = {"url": "redis://redis.shared.svc:6379/3", "existingSecret": ""}
    docs = hk.manifests(values)
    assert hk.adapter_config(docs, "parking")["outbox"]["url"] == "redis://redis.shared.svc:6379/3"


def test_oauth2_and_token_auth_from_secrets():
    docs = hk.manifests(hk.ci_values("oauth2"))
    climate = hk.adapter_config(docs, "climate")
    assert climate["broker"] == {
        "url": "https://ngsi.stadt.example", "tenant": "energie",
        "context": "https://ngsi.stadt.example/contexts/stadtlink-context.jsonld",
        "auth": {"kind": "oauth2", "client_id": "stadtlink", "scope": "ngsi-ld",
                 "token_url": "https://login.stadt.example/realms/city/protocol/openid-connect/token",
                 "client_secret_file": "/var/run/secrets/stadtlink/broker-auth/client-secret"}}
    spec = hk.named(docs, "Deployment", hk.adapter_name("climate"))["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["broker-auth"]["secret"]["secretName"] == "stadtlink-oauth2"
    assert {"name": "broker-auth", "mountPath": "/var/run/secrets/stadtlink/broker-auth", "readOnly": True} \
        in spec["containers"][0]["volumeMounts"]
    env = {e["name"]: e for e in spec["containers"][0]["env"]}
    assert env["WEBHOOK_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "climate-webhook", "key": "token"}
    pv = hk.adapter_config(docs, "pv")
    assert pv["broker"]["auth"] == {"kind": "token", "file": "/var/run/secrets/stadtlink/broker-auth/token"}
    pv_vols = {v["name"]: v for v in hk.named(docs, "Deployment", hk.adapter_name("pv"))["spec"]["template"]["spec"]["volumes"]}
    assert pv_vols["broker-auth"]["secret"]["secretName"] == "stadtlink-pv-token"
    # memory outbox: no Redis at all, no context server
    assert not hk.by_kind(docs, "StatefulSet")
    assert pv["outbox"]["kind"] == "memory"
    assert not [d for d in docs if "contexts" in d["metadata"]["name"]]


def test_network_policy_limits_egress():
    docs = hk.manifests(hk.ci_values("networkpolicy"))
    pols = {p["metadata"]["name"]: p for p in hk.by_kind(docs, "NetworkPolicy")}
    assert set(pols) == {"rel-stadtlink-adapters", "rel-stadtlink-contexts", "rel-stadtlink-redis"}
    adapters = pols["rel-stadtlink-adapters"]["spec"]
    assert adapters["policyTypes"] == ["Ingress", "Egress"]
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in adapters["egress"]]
    assert ports == [[(53, "TCP"), (53, "UDP")], [(1026, "TCP")], [(1883, "TCP")], [(80, "TCP"), (443, "TCP")],
                     [(502, "TCP")], [(6379, "TCP")]]
    broker_rule = adapters["egress"][1]
    assert broker_rule["to"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "orion-ld"}
    redis_rule = adapters["egress"][5]
    assert redis_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    assert adapters["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"] == \
        {"kubernetes.io/metadata.name": "monitoring"}
    # the context server and Redis reach nothing; only adapters reach Redis
    assert pols["rel-stadtlink-contexts"]["spec"]["egress"] == []
    assert pols["rel-stadtlink-redis"]["spec"]["egress"] == []
    assert pols["rel-stadtlink-redis"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"][
        "app.kubernetes.io/component"] == "adapter"
    # the policies select the pods they are meant for
    for policy, component in (("rel-stadtlink-adapters", "adapter"), ("rel-stadtlink-redis", "redis"),
                              ("rel-stadtlink-contexts", "context-server")):
        sel = pols[policy]["spec"]["podSelector"]["matchLabels"]
        matching = [t["metadata"]["labels"]["app.kubernetes.io/component"] for _, t in hk.pod_specs(docs)
                    if all(t["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        assert matching and set(matching) == {component}, (policy, matching)
    assert {p["metadata"]["name"] for p in hk.by_kind(hk.manifests(hk.ci_values("defaults")), "NetworkPolicy")} \
        == {"rel-stadtlink-adapters", "rel-stadtlink-contexts", "rel-stadtlink-redis"}     # on by default


def test_notes_name_the_adapters_and_the_context_url():
    notes = hk.render(hk.ci_values("all-adapters"))["stadtlink/templates/NOTES.txt"]
    assert "pv: Deployment rel-stadtlink-pv-0..1" in notes
    assert "water_level: Deployment rel-stadtlink-water-level" in notes
    assert "http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/stadtlink-context.jsonld" in notes


# --- template guards (values the schema lets through) -------------------------------------------------

def _render_error(values) -> str:
    h = hk.helm()
    with pytest.raises(h.HelmError) as info:
        hk.render(values)
    return str(info.value)


def test_mqtt_replicas_need_a_shared_subscription():
    values = hk.with_base({"adapters": {"parking": {"enabled": True, "replicas": 2, "config": {
        "sources": [{"kind": "mqtt", "host": "mq"}]}}}})
    msg = _render_error(values)
    assert "adapters.parking.config.sources[0]" in msg and "shared_group" in msg


def test_fixed_mqtt_client_id_with_replicas_fails():
    values = hk.with_base({"adapters": {"parking": {"enabled": True, "replicas": 2, "config": {
        "sources": [{"kind": "mqtt", "host": "mq", "shared_group": "g", "client_id": "me"}]}}}})
    assert "client_id" in _render_error(values)


def test_shards_without_pull_sources_fail():
    values = hk.with_base({"adapters": {"climate": {"enabled": True, "shards": 2, "config": {
        "sources": [{"kind": "mqtt", "host": "mq", "shared_group": "g"}]}}}})
    assert "adapters.climate.shards" in _render_error(values)


def test_more_shards_than_targets_fail():
    values = hk.with_base({"adapters": {"pv": {"enabled": True, "shards": 3, "config": {
        "sources": [{"kind": "modbus", "targets": [{"host": "a", "device": "a"}, {"host": "b", "device": "b"}]}]}}}})
    assert "3 shards but at most 2 targets" in _render_error(values)


def test_auth_without_secret_fails():
    values = hk.with_base({"broker": {"auth": {"kind": "oauth2", "tokenUrl": "https://kc/token", "clientId": "x"}}})
    assert "broker.auth.existingSecret" in _render_error(values)


def test_redis_off_without_external_fails():
    values = hk.with_base({"redis": {"enabled": False}})
    assert "redis.external.url" in _render_error(values)


def test_registry_file_named_like_the_config_fails():
    values = hk.with_base({"adapters": {"climate": {"enabled": True, "registryFiles": {"config.yaml": "x"},
                                                    "config": {"sources": [{"kind": "mqtt"}]}}}})
    assert "config.yaml is the adapter's config" in _render_error(values)


def test_plugin_adapters_via_extra_adapters():
    values = hk.with_base({"extraAdapters": {"tram_stops": {"enabled": True, "config": {
        "sources": [{"kind": "webhook", "path": "/in"}], "settings": {"anything": 1}}}}})
    docs = hk.manifests(values)
    cfg = hk.adapter_config(docs, "tram_stops")
    assert cfg["adapter"] == "tram_stops" and cfg["settings"] == {"anything": 1}
    assert hk.named(docs, "Deployment", "rel-stadtlink-tram-stops")
    clash = hk.with_base({"extraAdapters": {"pv": {"enabled": False}}})
    assert "built-in adapter" in _render_error(clash)


def test_extra_volumes_for_a_large_registry():
    values = hk.with_base({"adapters": {"climate": {"enabled": True, "config": {
        "sources": [{"kind": "mqtt"}], "registry_files": ["/var/lib/stadtlink/registry/stations.geojson"]},
        "extraVolumes": [{"name": "registry", "configMap": {"name": "climate-stations-big"}}],
        "extraVolumeMounts": [{"name": "registry", "mountPath": "/var/lib/stadtlink/registry", "readOnly": True}]}}})
    docs = hk.manifests(values)
    spec = hk.named(docs, "Deployment", hk.adapter_name("climate"))["spec"]["template"]["spec"]
    assert {"name": "registry", "configMap": {"name": "climate-stations-big"}} in spec["volumes"]
    assert {"name": "registry", "mountPath": "/var/lib/stadtlink/registry", "readOnly": True} \
        in spec["containers"][0]["volumeMounts"]
    assert hk.adapter_config(docs, "climate")["registry_files"] == ["/var/lib/stadtlink/registry/stations.geojson"]
    for doc in docs:
        if doc["kind"] not in hk.CRD_KINDS:
            kubernetes_validate.validate(doc, kubernetes_validate.utils.latest_version(), strict=True)


def test_packaged_chart_renders_like_the_directory(tmp_path):
    """`helm package` keeps everything the templates read (files/, the schema)."""
    h = hk.helm()
    archive = h.package(str(hk.CHART_DIR), destination=str(tmp_path))
    assert archive.endswith("stadtlink-0.1.0.tgz")
    values = hk.ci_values("all-adapters")
    with h.Chart.load(archive) as packaged:
        assert packaged.schema == hk.chart().schema
        from_archive = packaged.render(values=values, name=hk.RELEASE, namespace=hk.NAMESPACE, is_install=True)
    from_dir = hk.render(values)
    volatile = "stadtlink/templates/redis.yaml"          # a freshly generated password each time
    assert {k: v for k, v in from_archive.items() if k != volatile} == {k: v for k, v in from_dir.items() if k != volatile}
    names = {f["name"] for f in h.Chart.load(archive).files}
    assert "files/stadtlink-context.jsonld" in names and "icon.svg" not in names


def test_autoscaling_needs_a_cpu_request():
    values = hk.with_base({"adapters": {"climate": {"enabled": True, "autoscaling": {"enabled": True},
                                                    "resources": {"limits": {"memory": "256Mi"}},
                                                    "config": {"sources": [{"kind": "mqtt", "shared_group": "g"}]}}}})
    # the values schema requires a CPU request wherever resources are given (tests/security/test_chart_security.py)
    assert "/adapters/climate/resources': missing property 'requests'" in _render_error(values)
