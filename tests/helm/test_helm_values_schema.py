"""values.schema.json: generated from the runtime's config models, up to date, and strict."""
from __future__ import annotations

import importlib.util
import json
from importlib.metadata import entry_points

import jsonschema
import pytest
import yaml

pytest.importorskip("helm_python", reason="helm-python-sdk (the Helm engine) is a test dependency")

import helm_kit as hk  # noqa: E402

SCHEMA_PATH = hk.CHART_DIR / "values.schema.json"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_values_schema", hk.ROOT / "scripts" / "gen_values_schema.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_schema_and_chart_files_are_up_to_date():
    gen = _generator()
    for path, text in gen.render().items():
        assert path.read_text(encoding="utf-8") == text, \
            f"{path.relative_to(hk.ROOT)} is stale: run python scripts/gen_values_schema.py"
    assert gen.main(["--check"]) == 0


def test_schema_is_valid_draft_2020_12():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_knows_every_builtin_adapter_and_values_yaml_lists_them():
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    builtin = {ep.name for ep in entry_points(group="stadtlink.adapters")
               if ep.dist is None or ep.dist.name == "stadtlink"}
    assert set(schema["properties"]["adapters"]["properties"]) == builtin
    defaults = yaml.safe_load((hk.CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    assert set(defaults["adapters"]) == builtin


def test_adapter_settings_come_from_the_adapter_models():
    """adapters.<name>.config.settings is the adapter's own settings model (not a loose object)."""
    from stadtlink.adapters.core.plugins import load_adapters

    adapters, _ = load_adapters()
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    for name in ("parking", "climate", "water_level", "pv"):
        settings = schema["$defs"][f"config.{name}"]["properties"]["settings"]
        refs = [x["$ref"] for x in settings["anyOf"] if "$ref" in x]
        assert refs, name
        target = schema["$defs"][refs[0].rsplit("/", 1)[-1]]
        model_fields = set(adapters[name].settings_model.model_fields)
        assert set(target["properties"]) == model_fields, name


def _reject(values, *needles):
    h = hk.helm()
    with pytest.raises(h.HelmValuesError) as info:
        hk.chart().validate_schema(values)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, msg
    # install/template run the same check
    with pytest.raises(h.HelmError):
        hk.chart().render(values=values, name=hk.RELEASE, namespace=hk.NAMESPACE)
    return msg


def test_defaults_plus_required_keys_pass():
    hk.chart().validate_schema(hk.ci_values("defaults"))
    for path in hk.CI_VALUES:
        hk.chart().validate_schema(yaml.safe_load(path.read_text(encoding="utf-8")))


def test_rejects_replicas_as_text():
    _reject(hk.with_base({"adapters": {"climate": {"replicas": "two"}}}),
            "/adapters/climate/replicas", "want integer")


def test_rejects_unknown_key_in_an_adapter():
    _reject(hk.with_base({"adapters": {"parking": {"replica": 2}}}), "/adapters/parking", "'replica' not allowed")


def test_rejects_unknown_adapter():
    _reject(hk.with_base({"adapters": {"traffic": {"enabled": True}}}), "/adapters", "'traffic' not allowed")


def test_rejects_missing_broker_url():
    values = hk.ci_values("defaults")
    del values["broker"]["url"]
    _reject(values, "/broker/url")
    _reject(hk.with_base({"broker": {"url": "orion-ld:1026"}}), "/broker/url", "pattern")


def test_rejects_missing_entity_namespace():
    values = hk.ci_values("defaults")
    del values["entityNamespace"]
    _reject(values, "/entityNamespace")


def test_rejects_unknown_key_inside_the_runtime_config():
    _reject(hk.with_base({"adapters": {"climate": {"enabled": True, "config": {
        "sources": [{"kind": "mqtt", "hots": "mq"}]}}}}), "/adapters/climate/config/sources/0")
    _reject(hk.with_base({"adapters": {"climate": {"config": {"chek": "strict"}}}}),
            "/adapters/climate/config", "'chek' not allowed")


def test_rejects_bad_runtime_values():
    _reject(hk.with_base({"adapters": {"climate": {"config": {"log_level": "LOUD"}}}}),
            "/adapters/climate/config/log_level")
    _reject(hk.with_base({"adapters": {"pv": {"config": {"broker": {"batch_size": 5000}}}}}),
            "/adapters/pv/config/broker/batch_size")
    _reject(hk.with_base({"adapters": {"pv": {"enabled": True, "config": {"sources": [
        {"kind": "modbus", "targets": [{"host": "inv", "port": 70000, "device": "x"}]}]}}}}),
        "/adapters/pv/config/sources/0")


def test_rejects_unknown_key_in_adapter_settings():
    _reject(hk.with_base({"adapters": {"pv": {"config": {"settings": {"device_entitys": True}}}}}),
            "/adapters/pv/config/settings")


def test_rejects_chart_owned_runtime_keys():
    """adapter/http/broker.auth/outbox.kind are set by the chart; writing them in config is a mistake."""
    for config, where in (({"http": {"port": 8000}}, "'http' not allowed"),
                          ({"adapter": "pv"}, "'adapter' not allowed"),
                          ({"broker": {"auth": {"kind": "token", "value": "x"}}}, "'auth' not allowed"),
                          ({"outbox": {"kind": "memory"}}, "'kind' not allowed")):
        _reject(hk.with_base({"adapters": {"pv": {"config": config}}}), where)


def test_rejects_more_than_one_replica_of_a_pull_adapter():
    pull = {"sources": [{"kind": "http-poll", "targets": [{"url": "http://x/y", "device": "d"}]}]}
    _reject(hk.with_base({"adapters": {"water_level": {"enabled": True, "replicas": 2, "config": pull}}}),
            "/adapters/water_level/replicas", "maximum")
    _reject(hk.with_base({"adapters": {"water_level": {"enabled": True, "config": pull,
                                                       "autoscaling": {"enabled": True}}}}),
            "/adapters/water_level/autoscaling/enabled")
    # but shards are the way to scale it
    hk.chart().validate_schema(hk.with_base({"adapters": {"water_level": {"enabled": True, "shards": 1, "config": pull}}}))


def test_rejects_enabled_adapter_without_sources():
    _reject(hk.with_base({"adapters": {"pv": {"enabled": True}}}), "/adapters/pv")


def test_rejects_source_without_kind():
    _reject(hk.with_base({"adapters": {"climate": {"enabled": True, "config": {"sources": [{"host": "mq"}]}}}}),
            "/adapters/climate/config/sources/0")


def test_rejects_bad_auth_and_redis_values():
    _reject(hk.with_base({"broker": {"auth": {"kind": "basic"}}}), "/broker/auth/kind")
    _reject(hk.with_base({"outbox": {"kind": "kafka"}}), "/outbox/kind")
    _reject(hk.with_base({"redis": {"external": {"url": "http://redis:6379"}}}), "/redis/external/url")
    _reject(hk.with_base({"httpPort": 80}), "/httpPort")


def test_python_jsonschema_agrees_with_helm():
    """The same verdicts from an independent Draft 2020-12 validator (after Helm's default merge)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    good = hk.chart().merge_values(hk.ci_values("all-adapters"))
    assert list(validator.iter_errors(good)) == []
    bad = hk.chart().merge_values(hk.with_base({"adapters": {"pv": {"replicas": "two"}}}))
    assert [list(e.absolute_path) for e in validator.iter_errors(bad)] == [["adapters", "pv", "replicas"]]
