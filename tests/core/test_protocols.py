"""What the runner calls on sources and sinks is declared (Source, Backend), every built-in one
implements all of it, and a source that does not is refused at start with what it lacks."""
from __future__ import annotations

import pytest
from aiohttp import web

from stadtlink.adapters.core.plugins import get_adapter
from stadtlink.adapters.core.runner import Runner
from stadtlink.adapters.core.sources import (HttpPollSource, HttpPollSourceConfig, ModbusSource, ModbusSourceConfig,
                                             MqttSource, MqttSourceConfig, WebhookSource, WebhookSourceConfig)
from stadtlink.adapters.core.sources.base import Source, SourceBase
from stadtlink.adapters.core.sources.polling import PollingSource, PollingSourceConfig
from stadtlink.broker_client.backend import Backend, BackendBase
from stadtlink.broker_client.backends import KINDS, make_backend



def built_in_sources():
    return [
        MqttSource(MqttSourceConfig(kind="mqtt", topics=["t/#"])),
        HttpPollSource(HttpPollSourceConfig(targets=[{"url": "http://127.0.0.1:9/x"}])),
        ModbusSource(ModbusSourceConfig(targets=[{"host": "127.0.0.1", "device": "inv-1"}],
                                        blocks=[{"address": 0, "count": 2}])),
        WebhookSource(WebhookSourceConfig(path="/hook"), http_app=web.Application()),
    ]


@pytest.mark.parametrize("source", built_in_sources(), ids=lambda s: type(s).__name__)
def test_every_built_in_source_is_a_source(source):
    assert isinstance(source, Source)
    assert isinstance(source.name, str) and isinstance(source.stats(), dict) and isinstance(source.ready, bool)


async def test_the_defaults_of_source_base():
    class Minimal(SourceBase):
        name = "minimal"

        async def run(self, emit):
            return None

    src = Minimal()
    assert isinstance(src, Source)
    assert src.ready is True and src.stats() == {} and await src.leave(1.0) is True


def test_http_and_modbus_share_one_polling_base():
    assert issubclass(HttpPollSource, PollingSource) and issubclass(ModbusSource, PollingSource)
    shared = set(PollingSourceConfig.model_fields)
    assert shared <= set(HttpPollSourceConfig.model_fields) and shared <= set(ModbusSourceConfig.model_fields)
    # each keeps its own defaults: devices are polled more often than feeds
    assert HttpPollSourceConfig.model_fields["interval_s"].default == 60.0
    assert ModbusSourceConfig.model_fields["interval_s"].default == 10.0
    for name in ("_poll_loop", "run", "ready", "stats"):          # the loop is written once
        assert name not in vars(HttpPollSource) and name not in vars(ModbusSource), name


@pytest.mark.parametrize("kind", KINDS)
def test_every_backend_kind_is_a_backend(kind):
    backend = make_backend({"kind": kind, "url": "http://127.0.0.1:9"})
    assert isinstance(backend, Backend), kind
    assert backend.kind == kind and backend.base_url.startswith("http://127.0.0.1:9")


async def test_backend_base_is_a_backend():
    class Double(BackendBase):
        async def write(self, entities):
            raise AssertionError("not called")

    double = Double()
    assert isinstance(double, Backend)
    assert await double.open() is double and (await double.probe()).status == 200 and await double.health()


class NoLeave:
    name = "old"
    ready = True

    def stats(self):
        return {}

    async def run(self, emit):
        return None


async def test_a_source_lacking_part_of_the_interface_is_refused_at_start():
    config = {"namespace": "t", "broker": {"url": "http://127.0.0.1:9", "check_at_start": "off"},
              "outbox": {"kind": "memory"}, "http": {"enabled": False}}
    runner = Runner.from_config(config, adapter=get_adapter("climate"), sources=[NoLeave()])
    with pytest.raises(TypeError, match="NoLeave is not a Source .*lacks leave"):
        await runner.start()
