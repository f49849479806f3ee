"""One vocabulary of reading values in every family (adapters/core/vocabulary.py).

Every sample input of every family is decoded by every profile that reads it; every value key the
decoders produce is snake_case and in the shared table (``firmware_version`` in every family, never
``firmwareVersion``; a battery level is a fraction, never a percentage).
"""
from __future__ import annotations

from stadtlink.adapters.climate.decoders import READING_KEYS as CLIMATE_KEYS
from stadtlink.adapters.core.errors import DecodeError, ReadingDropped
from stadtlink.adapters.core.registry import DeviceRegistry
from stadtlink.adapters.core.vocabulary import SNAKE_CASE, VOCABULARY

from .samples import FAMILIES, ROOT, _device_for, _inputs, _message


def _decoded_keys() -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for name, family in FAMILIES.items():
        registry = DeviceRegistry.load(files=[ROOT / "adapters" / family.folder / family.registry_csv])
        for profile_name, profile in family.spec.profiles.items():
            if profile_name in family.skip_profiles:
                continue
            device = _device_for(registry, family, profile_name)
            for input_name, shape, payload, f_port in _inputs(family.folder):
                message = _message(profile, shape, payload, f_port, device)
                if message is None:
                    continue
                try:
                    readings = profile.decode(message, {})
                except (DecodeError, ReadingDropped):
                    continue
                for reading in readings:
                    for key in reading.values:
                        seen.setdefault(key, set()).add(f"{name}/{profile_name}/{input_name}")
    return seen


def test_every_decoded_value_is_named_from_the_shared_vocabulary():
    seen = _decoded_keys()
    assert len(seen) > 50           # the samples reach most of the vocabulary
    unknown = {key: sorted(where)[:2] for key, where in seen.items() if key not in VOCABULARY}
    assert not unknown, f"reading keys not in adapters/core/vocabulary.py: {unknown}"
    assert all(SNAKE_CASE.match(key) for key in seen)


def test_family_key_tables_are_part_of_the_shared_vocabulary():
    assert set(CLIMATE_KEYS) <= set(VOCABULARY)
