"""The runtime every stadtlink adapter shares: sources, pipeline, outbox, batching sink, config,
health, metrics, CLI, plugin registry and test kit."""
from .adapter import (STADTLINK_CONTEXT_URL, AdapterSpec, FunctionProfile, LoRaWANProfile, MapContext, Profile,
                      StateStore)
from .entity import Measure, datetime_prop, entity_id, geo_point, new_entity, prop, rel, set_measurements
from .errors import ConfigError, DecodeError, MappingError, ReadingDropped
from .lorawan import chirpstack_uplink, parse_uplink, tts_uplink
from .reading import RawMessage, Reading, Uplink
from .registry import DeviceRecord, DeviceRegistry
from .timeutil import iso_ms, parse_time

__all__ = [
    "STADTLINK_CONTEXT_URL", "AdapterSpec", "FunctionProfile", "LoRaWANProfile", "MapContext", "Profile",
    "StateStore", "Measure", "datetime_prop", "entity_id", "geo_point", "new_entity", "prop", "rel",
    "set_measurements", "ConfigError", "DecodeError", "MappingError", "ReadingDropped", "chirpstack_uplink",
    "parse_uplink", "tts_uplink", "RawMessage", "Reading", "Uplink", "DeviceRecord", "DeviceRegistry",
    "iso_ms", "parse_time",
]
