"""Reason tags every family uses for the same fact: dead-letter reasons and metric labels.

A decoder or mapper raises ``DecodeError(UNKNOWN_FPORT, detail)`` rather than spelling the tag, so
one fact has one label on every dashboard (``stadtlink_dead_lettered_by_reason{reason=...}``).
Tags of facts only one family knows (``sunspec-no-marker``, ``awaiting-static-table`` …) stay in
that family; the values refused by a measure row are in :mod:`.entity` (``REJECT_*``).
"""
from __future__ import annotations

# -- decoding: the frame or document
UNKNOWN_FPORT = "unknown-fport"              # a LoRaWAN port the device sends no measurements on
BAD_LENGTH = "bad-length"                    # shorter or longer than its layout (or too short for a header)
UNSUPPORTED_VERSION = "unsupported-version"  # a protocol version byte the decoder does not know
UNKNOWN_SENSOR_GROUP = "unknown-sensor-group"  # flags naming sensor groups the device does not have
UNKNOWN_CHANNEL = "unknown-channel"          # a TLV channel / type the decoder does not know
EMPTY_FRAME = "empty-frame"                  # a frame without any measurement
TRUNCATED = "truncated"                      # a TLV item cut off by the end of the frame
BAD_PAYLOAD = "bad-payload"                  # not the kind of payload the profile reads (type, shape)
INVALID_JSON = "invalid-json"
INVALID_XML = "invalid-xml"
BAD_TIMESTAMP = "bad-timestamp"
EMPTY_DOCUMENT = "empty-document"            # a feed answered with an empty body
HTTP_ERROR = "http-error"                    # a polled feed answered with an HTTP error status
BAD_OPTION = "bad-option"                    # a profile option (poll target / config) the profile cannot use
NO_DEVICE = "no-device"                      # the message names no device and the profile cannot tell it

# -- mapping: the registry
UNKNOWN_DEVICE = "unknown-device"            # the device is not in the registry
REGISTRY_FIELD_MISSING = "registry-field-missing"
REGISTRY_FIELD_INVALID = "registry-field-invalid"  # present in the registry, but not a usable value

# -- deliberate drops (counted, not dead-lettered)
OLDER_THAN_STATE = "older-than-state"        # older than what the adapter already wrote for it

__all__ = [name for name in dir() if name.isupper()]
