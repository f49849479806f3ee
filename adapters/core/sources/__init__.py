"""Sources: where raw messages come from (MQTT, HTTP polling, Modbus polling, webhooks).

The runtime validates each ``sources:`` entry of a config file against :data:`SOURCE_CONFIGS`
(a discriminated union on ``kind``) and turns it into a running :class:`Source` with
:func:`build_source`.
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from ..adapter import AdapterSpec
from ..errors import ConfigError
from .base import Emit, Source
from .http_poll import HttpPollSource, HttpPollSourceConfig, HttpTarget
from .modbus import ModbusSource, ModbusSourceConfig, ModbusTarget, RegisterBlock
from .mqtt import MqttSource, MqttSourceConfig, TlsConfig
from .webhook import WebhookSource, WebhookSourceConfig

#: Every source config model; each has a ``kind`` Literal discriminator.
SOURCE_CONFIGS = (MqttSourceConfig, HttpPollSourceConfig, ModbusSourceConfig, WebhookSourceConfig)

#: ``list[SourceConfig]`` validates a config file's ``sources:`` list.
SourceConfig = Annotated[Union[MqttSourceConfig, HttpPollSourceConfig, ModbusSourceConfig, WebhookSourceConfig],
                         Field(discriminator="kind")]


def build_source(config, *, adapter: AdapterSpec, http_app=None) -> Source:
    """A source for one validated config entry. Webhooks mount their route on ``http_app`` now
    (before the app starts); Modbus takes the profile's ``modbus_reader`` if it has one."""
    if isinstance(config, MqttSourceConfig):
        return MqttSource(config, adapter_name=adapter.name)
    if isinstance(config, HttpPollSourceConfig):
        return HttpPollSource(config)
    if isinstance(config, ModbusSourceConfig):
        reader = None
        if config.profile:
            profile = adapter.profiles.get(config.profile)
            if profile is None:
                raise ConfigError(f"modbus source {config.name or ''}: adapter {adapter.name!r} has no profile "
                                  f"{config.profile!r}")
            reader = getattr(profile, "modbus_reader", None)
        if reader is None and not config.blocks:
            raise ConfigError("modbus source: its profile has no modbus_reader, so `blocks` must be configured")
        return ModbusSource(config, reader=reader)
    if isinstance(config, WebhookSourceConfig):
        if http_app is None:
            raise ConfigError(f"webhook source {config.path}: needs the adapter's HTTP app (http: section)")
        return WebhookSource(config, http_app=http_app)
    raise ConfigError(f"unknown source config {type(config).__name__}")


__all__ = ["SOURCE_CONFIGS", "SourceConfig", "build_source", "Emit", "Source",
           "MqttSource", "MqttSourceConfig", "TlsConfig", "HttpPollSource", "HttpPollSourceConfig", "HttpTarget",
           "ModbusSource", "ModbusSourceConfig", "ModbusTarget", "RegisterBlock",
           "WebhookSource", "WebhookSourceConfig"]
