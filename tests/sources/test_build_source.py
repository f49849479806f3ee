"""SOURCE_CONFIGS (the discriminated union the runtime validates `sources:` with) and build_source."""
from __future__ import annotations

import pytest
from aiohttp import web
from pydantic import TypeAdapter, ValidationError

from stadtlink.adapters.core.adapter import AdapterSpec
from stadtlink.adapters.core.sources import (SOURCE_CONFIGS, HttpPollSource, ModbusSource, MqttSource, SourceConfig,
                                   WebhookSource, build_source)
from stadtlink.adapters.core.sources.base import Source

SPEC = AdapterSpec(name="demo", description="", profiles={}, mapper=lambda r, c: [])
SOURCES = TypeAdapter(list[SourceConfig])


def test_every_config_has_a_kind_literal():
    kinds = {model.model_fields["kind"].annotation.__args__[0] for model in SOURCE_CONFIGS}
    assert kinds == {"mqtt", "http-poll", "modbus", "webhook"}


def test_yaml_like_list_builds_every_kind():
    configs = SOURCES.validate_python([
        {"kind": "mqtt", "topics": ["v3/+/devices/+/up"], "shared_group": "demo", "profile": "p"},
        {"kind": "http-poll", "targets": [{"url": "http://127.0.0.1:1/x", "device": "a"}]},
        {"kind": "modbus", "targets": [{"host": "127.0.0.1", "device": "inv"}], "blocks": [{"address": 0, "count": 2}]},
        {"kind": "webhook", "path": "/up", "token": "x"},
    ])
    app = web.Application()
    built = [build_source(c, adapter=SPEC, http_app=app) for c in configs]
    assert [type(s) for s in built] == [MqttSource, HttpPollSource, ModbusSource, WebhookSource]
    assert all(isinstance(s, Source) for s in built)
    assert all(not s.ready for s in built)
    assert all(isinstance(v, float) for s in built for v in s.stats().values())
    assert any(r.method == "POST" and r.resource.canonical == "/up" for r in app.router.routes())
    assert built[0].client_id.startswith("stadtlink-demo-")


@pytest.mark.parametrize("entry", [{"kind": "amqp"}, {"topics": ["x"]}, {"kind": "mqtt", "port": "many"},
                                   {"kind": "http-poll", "targets": [{"url": "http://x", "bogus": 1}]}])
def test_invalid_entries(entry):
    with pytest.raises(ValidationError):
        SOURCES.validate_python([entry])
