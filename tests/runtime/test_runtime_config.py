"""Config: YAML + env overrides + secrets; errors name the key; `stadtlink run` exits 2 on them."""
from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from stadtlink.adapters.core.config import apply_env_overrides, load_config
from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.runner import Runner
from rt_helpers import FakeBroker, base_config
from rt_toy_adapter import ADAPTER


def good(**over):
    cfg = {"namespace": "t", "broker": {"url": "http://127.0.0.1:1026"},
           "sources": [{"kind": "mqtt", "topics": ["v3/+/devices/+/up"], "profile": "toy-lora"}]}
    cfg.update(over)
    return cfg


def error_of(data, env=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(data, adapter=ADAPTER, env=env or {})
    return str(info.value)


def test_defaults():
    cfg, _ = load_config(good(), adapter=ADAPTER, env={})
    assert cfg.broker.batch_size == 200 and cfg.broker.flush_ms == 500
    assert cfg.outbox.kind == "memory" and cfg.check == "strict" and cfg.shutdown_grace_s == 20
    assert cfg.settings.offset == 0.0                       # the adapter's settings model, defaulted
    assert cfg.sources[0].kind == "mqtt" and cfg.sources[0].port == 1883


def test_unknown_key_is_named():
    assert error_of(good(brokr={})) == "brokr: unknown key (not allowed here)"
    assert "broker.batchsize: unknown key" in error_of(good(broker={"url": "http://x:1", "batchsize": 3}))


def test_wrong_type_in_a_source_names_the_path():
    cfg = good(sources=[{"kind": "mqtt", "port": "abc"}])
    assert error_of(cfg) == "sources[0].port: Input should be a valid integer, unable to parse string as an integer"


def test_missing_broker_url():
    assert error_of(good(broker={})) == "broker.url: required key is missing"
    assert "broker: required key is missing" in error_of({"namespace": "x"})


def test_unknown_source_kind_and_bad_settings():
    msg = error_of(good(sources=[{"kind": "carrier-pigeon"}]))
    assert msg.startswith("sources[0]") and "mqtt" in msg and "carrier-pigeon" in msg
    assert error_of(good(settings={"offset": "warm"})).startswith("settings.offset: Input should be a valid number")


def test_several_errors_one_line_each():
    msg = error_of(good(broker={"url": "ftp://x"}, check="sometimes"))
    lines = msg.splitlines()
    assert len(lines) == 2
    assert any(line.startswith("broker: url must start with http") for line in lines)
    assert any(line.startswith("check: Input should be 'strict', 'warn' or 'off'") for line in lines)


def test_env_overrides():
    env = {"STADTLINK_BROKER__URL": "http://orion:1026", "STADTLINK_OUTBOX__KIND": "redis",
           "STADTLINK_BROKER__BATCH_SIZE": "50", "STADTLINK_SOURCES__0__PORT": "8883",
           "STADTLINK_TEST_ARTIFACTS": "/tmp/x", "STADTLINK_CHECK": "warn"}
    cfg, _ = load_config(good(), adapter=ADAPTER, env=env)
    assert cfg.broker.url == "http://orion:1026" and cfg.outbox.kind == "redis"
    assert cfg.broker.batch_size == 50 and cfg.sources[0].port == 8883 and cfg.check == "warn"
    with pytest.raises(ConfigError, match="index 3 is out of range"):
        apply_env_overrides({"sources": []}, {"STADTLINK_SOURCES__3__PORT": "1"})


def test_yaml_file_and_registry_relative_to_it(tmp_path):
    (tmp_path / "devices.csv").write_text("id,name,lat,lon,profile\nst-1,Station,52.1,10.2,toy-lora\n")
    (tmp_path / "c.yaml").write_text("adapter: toy\nnamespace: t\nbroker: {url: 'http://127.0.0.1:1'}\n"
                                     "registry_files: [devices.csv]\n")
    runner = Runner.from_config(tmp_path / "c.yaml", adapter=ADAPTER)
    assert runner.base_dir == tmp_path
    from stadtlink.adapters.core.registry import DeviceRegistry

    reg = DeviceRegistry.load(inline=runner.config.devices, files=runner.config.registry_files,
                              base_dir=runner.base_dir)
    assert reg.lookup("st-1").lat == 52.1


def test_config_for_another_adapter_is_refused():
    assert "adapter: the config is for 'parking'" in error_of(good(adapter="parking"))


async def test_secrets_never_in_repr_or_logs(caplog, monkeypatch):
    monkeypatch.setenv("RT_BROKER_TOKEN", "tok-SECRET-123")
    fb = await FakeBroker().start()
    try:
        cfg = base_config(fb.url, broker={"auth": {"kind": "token", "env": "RT_BROKER_TOKEN"}},
                          log_level="DEBUG")
        cfg["sources"] = [{"kind": "mqtt", "topics": ["rt/none"], "password": "mqtt-SECRET-456",
                           "username": "u"}]
        caplog.set_level(logging.DEBUG)
        runner = Runner.from_config(cfg, adapter=ADAPTER)
        text = repr(runner.config) + str(runner.config.model_dump())
        assert "mqtt-SECRET-456" not in text
        await runner.start()
        await runner.stop(grace=0.5)
        logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
        assert "SECRET" not in logged
    finally:
        await fb.stop()


def test_oauth2_secret_from_file(tmp_path):
    (tmp_path / "secret").write_text("s3cr3t\n")
    cfg, _ = load_config(good(broker={"url": "http://x:1", "auth": {
        "kind": "oauth2", "token_url": "http://kc/token", "client_id": "adapter",
        "client_secret_file": str(tmp_path / "secret")}}), adapter=ADAPTER, env={})
    assert cfg.broker.auth.client_secret.get_secret_value() == "s3cr3t"
    assert "s3cr3t" not in repr(cfg) and "s3cr3t" not in repr(cfg.broker.auth.build())
    assert "client_secret_env: environment variable NOPE_NOT_SET is not set" in error_of(
        good(broker={"url": "http://x:1", "auth": {"kind": "oauth2", "token_url": "http://kc/t", "client_id": "a",
                                                   "client_secret_env": "NOPE_NOT_SET"}}))


def run_cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "stadtlink.adapters.core.cli", *args], env=env, capture_output=True,
                          text=True, timeout=60, **kw)


def test_stadtlink_run_config_errors_exit_2_without_traceback(tmp_path, cli_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("namespace: t\nbroker: {url: 'http://127.0.0.1:1'}\nsources:\n  - kind: mqtt\n    port: abc\n"
                   "colour: blue\n")
    res = run_cli(["run", "toy", "--config", str(bad)], cli_env)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "sources[0].port: Input should be a valid integer" in res.stderr
    assert "colour: unknown key" in res.stderr
    missing = tmp_path / "missing.yaml"
    missing.write_text("namespace: t\n")
    res = run_cli(["run", "toy", "--config", str(missing)], cli_env)
    assert res.returncode == 2 and "broker: required key is missing" in res.stderr
    res = run_cli(["run", "nosuch", "--config", str(missing)], cli_env)
    assert res.returncode == 2 and "no adapter named 'nosuch'" in res.stderr
    res = run_cli(["run", "toy", "--config", str(tmp_path / "absent.yaml")], cli_env)
    assert res.returncode == 2 and "cannot read config file" in res.stderr


def test_env_override_reaches_stadtlink_run(tmp_path, cli_env):
    bad = tmp_path / "c.yaml"
    bad.write_text("namespace: t\nbroker: {url: 'http://127.0.0.1:1'}\n")
    res = run_cli(["run", "toy", "--config", str(bad)], {**cli_env, "STADTLINK_BROKER__BATCH_SIZE": "many"})
    assert res.returncode == 2 and "broker.batch_size: Input should be a valid integer" in res.stderr


def test_source_without_kind():
    assert error_of(good(sources=[{"port": 1}])).startswith("sources[0].kind: required key is missing (one of 'mqtt'")


async def test_redis_password_not_shown_when_redis_is_unreachable(cli_env, tmp_path):
    from rt_helpers import free_port

    port = free_port()
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"namespace: t\nbroker: {{url: 'http://127.0.0.1:1'}}\n"
                   f"outbox: {{kind: redis, url: 'redis://:hunter2@127.0.0.1:{port}/0', startup_wait_s: 0.5}}\n"
                   f"http: {{enabled: false}}\n")
    res = run_cli(["run", "toy", "--config", str(cfg)], cli_env)
    assert res.returncode == 1
    assert "cannot start" in res.stderr and "redis://:***@127.0.0.1" in res.stderr
    assert "hunter2" not in res.stderr + res.stdout


def test_registry_errors_are_config_errors(tmp_path, cli_env):
    with pytest.raises(ConfigError, match="registry file not found"):
        Runner.from_config(good(registry_files=["nope.csv"]), adapter=ADAPTER, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"devices\[0\]: record x: lat 95 out of range"):
        Runner.from_config(good(devices=[{"id": "x", "lat": 95, "lon": 8}]), adapter=ADAPTER)
    (tmp_path / "c.yaml").write_text("namespace: t\nbroker: {url: 'http://127.0.0.1:1'}\nregistry_files: [gone.csv]\n")
    res = run_cli(["run", "toy", "--config", str(tmp_path / "c.yaml")], cli_env)
    assert res.returncode == 2 and "registry file not found" in res.stderr and "Traceback" not in res.stderr
