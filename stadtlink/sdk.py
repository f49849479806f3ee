"""Everything an adapter author needs, from one import: ``from stadtlink.sdk import ...``.

A device family (built in or an integrator's package) is a small declared object. This module
only re-exports; each name is defined (and documented) where the runtime keeps it, and it is the
same object there. What is not here is the runtime's own business (sources, pipeline, outbox,
batching, config loading) and may change without notice; what is here is the contract.

Declaring an adapter
    :class:`AdapterSpec` (name, profiles, mapper, settings model, write semantics, models, demo),
    the decoding profiles :class:`LoRaWANProfile` (vendor bytes in TTS v3 / ChirpStack v4
    uplinks) and :class:`FunctionProfile` (any other payload), :class:`Profile` (the protocol
    both implement), :class:`DemoSimulators` (how ``stadtlink demo`` simulates the family),
    :class:`SmartDataModel` (a model the package brings), :func:`register_adapter` (in-process).

Decoding and mapping
    :class:`RawMessage` (what a source delivers), :class:`Uplink` (a parsed LoRaWAN envelope),
    :class:`Reading` (what a decoder returns: value names from :data:`VOCABULARY`),
    :class:`MapContext` (what a mapper gets: namespace, registry, typed settings, state),
    :class:`StateStore`, :class:`DeviceRegistry` / :class:`DeviceRecord`.

Entities
    :class:`Measure` rows and :func:`set_measurements` (the declarative measure table: valid
    ranges, sentinels; a refused value is counted with :data:`REJECT_SENTINEL`,
    :data:`REJECT_IMPLAUSIBLE` or :data:`REJECT_NOT_A_NUMBER`), the helpers :func:`entity_id`,
    :func:`new_entity`, :func:`prop`, :func:`rel`, :func:`geo_point`, :func:`datetime_prop`,
    :data:`STADTLINK_CONTEXT_URL`.

Errors and reason tags
    :class:`DecodeError` (dead-lettered), :class:`MappingError` (dead-lettered),
    :class:`ReadingDropped` (counted), :class:`ConfigError`, all a :class:`StadtlinkError`;
    :mod:`reasons` names the tags every
    family uses (``reasons.UNKNOWN_FPORT`` …).

Time
    :func:`parse_time` (any ISO 8601 a device sends → aware UTC), :func:`iso_ms` (Orion-LD's
    millisecond ``…Z``), :data:`UTC`, :class:`TimeFormatError`.

Test kit (``pytest -p stadtlink.adapters.core.pytest_plugin`` adds its fixtures)
    :func:`run_profile`, :func:`map_fixture`, :func:`fixture_message`, :func:`assert_entities_match`,
    :func:`assert_terms_expand`, :func:`load_json`; envelopes :func:`tts_uplink`,
    :func:`chirpstack_uplink`, :func:`parse_uplink`, :func:`publish_uplinks`; servers
    :func:`local_broker`, :class:`MosquittoProcess`, :class:`RedisProcess`.
"""
from __future__ import annotations

from stadtlink.adapters.core import reasons
from stadtlink.adapters.core.adapter import (STADTLINK_CONTEXT_URL, AdapterSpec, DemoSimulators, FunctionProfile,
                                             LoRaWANProfile, MapContext, Profile, StateStore)
from stadtlink.adapters.core.entity import (REJECT_IMPLAUSIBLE, REJECT_NOT_A_NUMBER, REJECT_SENTINEL, Measure,
                                            datetime_prop, entity_id, geo_point, new_entity, prop, rel,
                                            set_measurements)
from stadtlink.adapters.core.errors import ConfigError, DecodeError, MappingError, ReadingDropped, StadtlinkError
from stadtlink.adapters.core.lorawan import chirpstack_uplink, parse_uplink, tts_uplink
from stadtlink.adapters.core.plugins import register_adapter
from stadtlink.adapters.core.reading import RawMessage, Reading, Uplink
from stadtlink.adapters.core.registry import DeviceRecord, DeviceRegistry
from stadtlink.adapters.core.testing import (MosquittoProcess, RedisProcess, assert_entities_match,
                                             assert_terms_expand, fixture_message, load_json, local_broker,
                                             map_fixture, publish_uplinks, run_profile)
from stadtlink.adapters.core.vocabulary import VOCABULARY
from stadtlink.schemas.registry import SmartDataModel
from stadtlink.timeutil import UTC, TimeFormatError, iso_ms, parse_time

__all__ = [
    # declaring an adapter
    "AdapterSpec", "LoRaWANProfile", "FunctionProfile", "Profile", "DemoSimulators", "SmartDataModel",
    "register_adapter",
    # decoding and mapping
    "RawMessage", "Uplink", "Reading", "MapContext", "StateStore", "DeviceRegistry", "DeviceRecord", "VOCABULARY",
    # entities
    "Measure", "set_measurements", "REJECT_SENTINEL", "REJECT_IMPLAUSIBLE", "REJECT_NOT_A_NUMBER",
    "entity_id", "new_entity", "prop", "rel", "geo_point", "datetime_prop", "STADTLINK_CONTEXT_URL",
    # errors and reason tags
    "StadtlinkError", "DecodeError", "MappingError", "ReadingDropped", "ConfigError", "reasons",
    # time
    "parse_time", "iso_ms", "UTC", "TimeFormatError",
    # test kit
    "run_profile", "map_fixture", "fixture_message", "assert_entities_match", "assert_terms_expand", "load_json",
    "tts_uplink", "chirpstack_uplink", "parse_uplink", "publish_uplinks", "local_broker", "MosquittoProcess",
    "RedisProcess",
]
