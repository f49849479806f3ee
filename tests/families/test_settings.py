"""Settings are validated once, by the runtime, against the family's model; mappers read them typed.

Before, pv and water_level took their defaults silently whenever ``ctx.settings`` was not already
their model (a mapping handed to the pipeline was ignored); now every path that builds a mapping
context (pipeline, test kit, ``stadtlink decode``) goes through ``AdapterSpec.validate_settings``.
"""
from __future__ import annotations

import pytest

from stadtlink.adapters import climate, parking, pv, water_level
from stadtlink.adapters.core.deadletter import MemoryDeadLetters
from stadtlink.adapters.core.errors import ConfigError
from stadtlink.adapters.core.metrics import Metrics
from stadtlink.adapters.core.pipeline import Pipeline
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.core.testing import RecordingOutbox

FAMILIES = [parking.ADAPTER, climate.ADAPTER, water_level.ADAPTER, pv.ADAPTER]


def _pipeline(spec, settings):
    return Pipeline(spec, namespace="t", registry=DeviceRegistry(), settings=settings, outbox=RecordingOutbox(),
                    deadletters=MemoryDeadLetters(10), metrics=Metrics(spec.name), check="off")


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.name)
def test_the_mapping_context_holds_the_validated_model(spec):
    assert isinstance(_pipeline(spec, None).ctx.settings, spec.settings_model)
    assert isinstance(_pipeline(spec, {}).ctx.settings, spec.settings_model)


@pytest.mark.parametrize("spec", FAMILIES, ids=lambda s: s.name)
def test_an_unknown_settings_key_is_a_configuration_error(spec):
    with pytest.raises(ConfigError, match=r"settings\.no_such_key"):
        _pipeline(spec, {"no_such_key": 1})


def test_a_settings_mapping_is_not_silently_replaced_by_defaults():
    assert _pipeline(pv.ADAPTER, {"device_entities": False}).ctx.settings.device_entities is False
    assert _pipeline(water_level.ADAPTER, {"hysteresis_m": 0.2}).ctx.settings.hysteresis_m == 0.2
    with pytest.raises(ConfigError, match=r"settings\.hysteresis_m"):
        _pipeline(water_level.ADAPTER, {"hysteresis_m": -1})
