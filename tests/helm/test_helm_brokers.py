"""Several sinks per adapter in the chart: ``brokers`` (release-wide) and ``adapters.<name>.brokers``
render into the runtime's ``brokers:`` list, each sink's credentials from its own Secret; the
rendered config loads in the real runtime and yields those sinks; ambiguous values are refused."""
from __future__ import annotations

import copy

import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

import helm_kit as hk  # noqa: E402
from helm_kit import configmaps_of_adapters, mount_broker_secrets, pod_env  # noqa: E402

from stadtlink.adapters.core.runner import Runner  # noqa: E402
from stadtlink.broker_client import OAuth2ClientCredentials, StaticToken  # noqa: E402
from stadtlink.broker_client.backends import NGSILDBackend, NGSIv2Backend, make_backend  # noqa: E402

MQTT = {"sources": [{"kind": "mqtt", "host": "mq", "topics": ["t/#"], "profile": "decentlab-dl-atm41"}]}


def two_sinks() -> dict:
    return hk.ci_values("two-sinks")


def deployment(docs, adapter):
    return hk.named(docs, "Deployment", hk.adapter_name(adapter))


def test_two_sinks_render_into_the_runtime_brokers_list():
    docs = hk.manifests(two_sinks())
    cfg = hk.adapter_config(docs, "climate")
    assert "broker" not in cfg
    orion, v2 = cfg["brokers"]
    assert orion == {
        "name": "orion-ld", "kind": "orion-ld", "url": "http://orion-ld.fiware.svc.cluster.local:1026",
        "tenant": "wolfsburg",
        "context": "http://rel-stadtlink-contexts.iot.svc.cluster.local:8080/stadtlink-context.jsonld",
        "auth": {"kind": "oauth2", "client_id": "stadtlink",
                 "token_url": "https://login.stadt.example/realms/city/protocol/openid-connect/token",
                 "client_secret_file": "/var/run/secrets/stadtlink/broker-auth-0/client-secret"}}
    # NGSI-v2 has no @context: none is added; its own keys pass through
    assert v2 == {"name": "legacy-v2", "kind": "ngsi-v2", "url": "http://orion.fiware.svc.cluster.local:1026",
                  "service": "wolfsburg", "service_path": "/sensors", "when_full": "deadletter",
                  "auth": {"kind": "token", "file": "/var/run/secrets/stadtlink/broker-auth-1/bearer"}}
    # each sink's Secret is mounted at its own directory, nothing else of the auth is in the pod
    spec = deployment(docs, "climate")["spec"]["template"]["spec"]
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols["broker-auth-0"]["secret"]["secretName"] == "stadtlink-orion-ld-oauth2"
    assert vols["broker-auth-1"]["secret"]["secretName"] == "stadtlink-orion-v2-token"
    assert "broker-auth" not in vols
    mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["broker-auth-0"] == "/var/run/secrets/stadtlink/broker-auth-0"
    assert mounts["broker-auth-1"] == "/var/run/secrets/stadtlink/broker-auth-1"


def test_an_adapters_own_brokers_replace_the_release_list():
    docs = hk.manifests(two_sinks())
    [stellio] = hk.adapter_config(docs, "pv")["brokers"]
    assert stellio["kind"] == "stellio" and stellio["tenant"] == "urn:ngsi-ld:tenant:default"
    assert stellio["batch_size"] == 100 and "auth" not in stellio
    spec = deployment(docs, "pv")["spec"]["template"]["spec"]
    assert not [v for v in spec["volumes"] if v["name"].startswith("broker-auth")]
    # an adapter list under a single release broker works too, and that broker's auth is not mounted
    values = hk.ci_values("oauth2")
    values["adapters"]["climate"]["brokers"] = [{"name": "scorpio", "kind": "scorpio", "url": "http://scorpio:9090"}]
    docs = hk.manifests(values)
    assert hk.adapter_config(docs, "climate")["brokers"][0]["url"] == "http://scorpio:9090"
    assert "broker" not in hk.adapter_config(docs, "climate")
    assert not [v for v in deployment(docs, "climate")["spec"]["template"]["spec"]["volumes"]
                if v["name"].startswith("broker-auth")]
    assert hk.adapter_config(docs, "pv")["broker"]["url"] == "https://ngsi.stadt.example"


def test_no_secret_value_in_any_configmap(tmp_path):
    """Credentials reach the pod only as mounted Secret files: the ConfigMaps name files, never values."""
    docs = hk.manifests(two_sinks())
    for cm in hk.by_kind(docs, "ConfigMap"):
        for text in cm["data"].values():
            assert "client_secret:" not in text and "value:" not in text, cm["metadata"]["name"]
            assert "stadtlink-orion-ld-oauth2" not in text      # not even the Secret's name
    for _, cm, _ in configmaps_of_adapters(docs):
        for sink in yaml.safe_load(cm["data"]["config.yaml"])["brokers"]:
            if "auth" in sink:
                assert set(sink["auth"]) <= {"kind", "file", "client_id", "client_secret_file", "token_url",
                                             "scope", "audience"}


def test_rendered_two_sink_config_loads_in_the_runtime_and_yields_both_sinks(tmp_path):
    """The real loader (Runner.from_config) reads the rendered file with the Secrets mounted as the
    kubelet mounts them; the sinks it yields build the real backends with the mounted credentials."""
    docs = hk.manifests(two_sinks())
    found = {}
    for dep, cm, container in configmaps_of_adapters(docs):
        where = tmp_path / dep["metadata"]["name"]
        where.mkdir()
        for file, text in cm["data"].items():
            (where / file).write_text(text, encoding="utf-8")
        text = mount_broker_secrets(cm["data"]["config.yaml"], container, where, secret="from-the-secret")
        env = pod_env(container, {("rel-stadtlink-redis", "redis-password"): "pw"})
        runner = Runner.from_config(yaml.safe_load(text), env=env, base_dir=where)
        found[container["args"][1]] = runner.config.sink_configs()
    climate = found["climate"]
    assert [(name, key, b.kind) for name, key, b in climate] == [
        ("orion-ld", "brokers[0]", "orion-ld"), ("legacy-v2", "brokers[1]", "ngsi-v2")]
    orion_cfg, v2_cfg = climate[0][2], climate[1][2]
    assert orion_cfg.auth.client_secret.get_secret_value() == "from-the-secret"
    assert v2_cfg.service == "wolfsburg" and v2_cfg.service_path == "/sensors" and v2_cfg.when_full == "deadletter"
    orion = make_backend(orion_cfg, key="brokers[0]")
    v2 = make_backend(v2_cfg, key="brokers[1]")
    assert isinstance(orion, NGSILDBackend) and orion.kind == "orion-ld" and orion.tenant == "wolfsburg"
    assert isinstance(orion.auth, OAuth2ClientCredentials) and orion.auth.client_id == "stadtlink"
    assert isinstance(v2, NGSIv2Backend)
    assert isinstance(v2.http.auth, StaticToken)
    assert v2.http.auth._current() == "from-the-secret"     # read from the mounted Secret file
    assert [(n, b.kind) for n, _, b in found["pv"]] == [("stellio", "stellio")]


def _reject(values, *needles):
    h = hk.helm()
    with pytest.raises(h.HelmValuesError) as info:
        hk.chart().validate_schema(values)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    return msg


def _fails(values, *needles):
    """The template refuses the values (after the schema let them through) with a message naming the key."""
    h = hk.helm()
    hk.chart().validate_schema(values)
    with pytest.raises(h.HelmError) as info:
        hk.render(values, validate=False)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_schema_rejects_a_bad_kind_and_a_bad_sink():
    values = two_sinks()
    values["brokers"][1]["kind"] = "orion-v3"
    _reject(values, "/brokers/1/kind")
    values = two_sinks()
    values["adapters"]["pv"]["brokers"][0]["kind"] = "fiware"
    _reject(values, "/adapters/pv/brokers/0/kind")
    values = two_sinks()
    del values["brokers"][0]["url"]
    _reject(values, "/brokers/0", "url")
    values = two_sinks()
    values["brokers"][0]["auth"]["client_secret"] = "inline"     # values never carry secrets
    _reject(values, "/brokers/0/auth", "client_secret")
    values = two_sinks()
    values["brokers"][1]["batch_size"] = 5000
    _reject(values, "/brokers/1/batch_size")
    # and brokers inside an adapter's runtime config: the chart's key is adapters.<name>.brokers
    values = two_sinks()
    values["adapters"]["climate"]["config"]["brokers"] = [{"url": "http://x:1"}]
    _reject(values, "/adapters/climate/config", "'brokers' not allowed")


def test_schema_accepts_every_runtime_kind_in_brokers():
    from stadtlink.adapters.core.config import BrokerConfig

    kinds = BrokerConfig.model_json_schema()["properties"]["kind"]["enum"]
    assert {"orion-ld", "scorpio", "stellio", "ngsi-v2"} <= set(kinds)
    values = two_sinks()
    values["brokers"] = [{"name": k, "kind": k, "url": f"http://{k}:1"} for k in kinds]
    hk.chart().validate_schema(values)


@pytest.fixture(scope="module")
def schemaless_chart(tmp_path_factory):
    """The chart without values.schema.json: what ``--skip-schema-validation`` leaves, so the
    templates' own checks (which hold then too) can be seen."""
    import shutil

    where = tmp_path_factory.mktemp("chart") / "stadtlink"
    shutil.copytree(hk.CHART_DIR, where)
    (where / "values.schema.json").unlink()
    return hk.helm().Chart.load(str(where))


def _template_error(chart, values) -> str:
    with pytest.raises(hk.helm().HelmError) as info:
        chart.render(values=copy.deepcopy(values), name=hk.RELEASE, namespace=hk.NAMESPACE, is_install=True)
    return str(info.value)


def test_broker_and_brokers_together_are_refused(schemaless_chart):
    for key, value in (("url", "http://orion-ld:1026"), ("tenant", "x"), ("kind", "scorpio"),
                       ("context", "http://ctx/c.jsonld")):
        values = two_sinks()
        values["broker"] = {key: value}
        _reject(values, f"/broker/{key}", "value must be ''")
        assert f"broker.{key} and brokers: give broker (one sink) or brokers (several), not both" in \
            _template_error(schemaless_chart, values)
    values = two_sinks()
    values["broker"] = {"auth": {"kind": "token", "existingSecret": "s"}}
    _reject(values, "/broker/auth/kind")
    assert "broker.auth and brokers" in _template_error(schemaless_chart, values)


def test_neither_broker_nor_brokers_is_refused(schemaless_chart):
    values = two_sinks()
    del values["brokers"]
    _reject(values, "/broker/url")
    assert "broker.url is required (or brokers" in _template_error(schemaless_chart, values)


def test_adapter_broker_keys_with_several_sinks_are_refused():
    values = two_sinks()
    values["adapters"]["climate"]["config"]["broker"] = {"tenant": "weather"}
    _fails(values, "adapters.climate.config.broker: this adapter writes to several sinks (brokers)")
    values = two_sinks()
    values["adapters"]["pv"]["config"]["broker"] = {"batch_size": 10}
    _fails(values, "adapters.pv.config.broker", "adapters.pv.brokers")
    values = two_sinks()
    values["adapters"]["climate"]["brokerAuth"] = {"kind": "token", "existingSecret": "s"}
    _fails(values, "adapters.climate.brokerAuth", "brokers[i].auth")


def test_sink_checks_that_the_schema_cannot_make():
    values = two_sinks()
    values["brokers"][1]["name"] = "orion-ld"
    _fails(values, "brokers[1].name: \"orion-ld\" names two sinks")
    values = two_sinks()
    for sink in values["brokers"]:
        sink.pop("name")
        sink["kind"] = "orion-ld"
    values["brokers"][1].pop("service"), values["brokers"][1].pop("service_path")
    docs = hk.manifests(values)       # two unnamed sinks of one kind: orion-ld-0, orion-ld-1 (runtime rule)
    assert len(hk.adapter_config(docs, "climate")["brokers"]) == 2
    values["brokers"][1]["name"] = "orion-ld-0"
    _fails(values, "brokers[1].name: \"orion-ld-0\" names two sinks")
    values = two_sinks()
    del values["brokers"][0]["auth"]["existingSecret"]
    _fails(values, "brokers[0].auth.existingSecret")
    values = two_sinks()
    values["adapters"]["pv"]["brokers"][0]["auth"] = {"kind": "oauth2", "existingSecret": "s"}
    _fails(values, "adapters.pv.brokers[0].auth: oauth2 needs tokenUrl and clientId")


def test_skipping_the_schema_still_refuses_a_bad_sink(schemaless_chart):
    values = two_sinks()
    values["brokers"][0]["url"] = "orion-ld:1026"
    _reject(values, "/brokers/0/url")
    assert "brokers[0].url: the sink's base URL is required" in _template_error(schemaless_chart, values)
    values = two_sinks()
    values["adapters"]["pv"]["brokers"][0]["url"] = ""
    assert "adapters.pv.brokers[0].url" in _template_error(schemaless_chart, values)


def test_strict_lint_and_kubernetes_validation_of_the_two_sink_values():
    """(Also covered by the ci/ parametrisation; named here so the issue's check is explicit.)"""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    report = hk.helm().lint(str(hk.CHART_DIR), two_sinks(), strict=True, namespace=hk.NAMESPACE)
    assert report["errors"] == [] and report["messages"] == [], report
    version = kubernetes_validate.utils.latest_version()
    for doc in hk.manifests(two_sinks()):
        if doc["kind"] not in hk.CRD_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_single_broker_rendering_is_unchanged():
    values = copy.deepcopy(hk.ci_values("oauth2"))
    docs = hk.manifests(values)
    assert "brokers" not in hk.adapter_config(docs, "climate")
    assert hk.adapter_config(docs, "climate")["broker"]["auth"]["client_secret_file"] == \
        "/var/run/secrets/stadtlink/broker-auth/client-secret"
