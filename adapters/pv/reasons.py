"""Reason tags of facts only the PV family knows (dead-letter reasons and metric labels).

Facts every family shares are in :mod:`stadtlink.adapters.core.reasons`.
"""
from __future__ import annotations

# -- SunSpec over Modbus
SUNSPEC_BAD_REGISTERS = "sunspec-bad-registers"      # registers are not a list of integers 0..65535
SUNSPEC_NO_MARKER = "sunspec-no-marker"              # the block does not start with 'SunS'
SUNSPEC_TRUNCATED = "sunspec-truncated"              # a model header or body runs past the block
SUNSPEC_LENGTH_MISMATCH = "sunspec-length-mismatch"  # a model's length differs from its definition
SUNSPEC_NO_KNOWN_MODEL = "sunspec-no-known-model"    # the chain holds no model the adapter decodes
SUNSPEC_NOT_FOUND = "sunspec-not-found"              # no 'SunS' marker at any base address tried
SUNSPEC_CHAIN_INVALID = "sunspec-chain-invalid"      # the model chain read from the device is not walkable
SUNSPEC_READ_FAILED = "sunspec-read-failed"          # a Modbus read of a model failed

# -- Fronius Solar API
FRONIUS_NOT_SOLAR_API = "fronius-not-solar-api"          # not a Solar API answer (no JSON object / Body.Data)
FRONIUS_UNSUPPORTED_SCOPE = "fronius-unsupported-scope"  # a Solar API scope/collection the decoder does not read

#: ``fronius-status-<code>``: a counted drop when the data manager could not ask the inverter. Codes are
#: small integers (Solar API v1, Head.Status.Code); anything else from the device becomes one label.
FRONIUS_STATUS_OTHER = "fronius-status-other"


def fronius_status(code: object) -> str:
    """The reason tag of a non-zero Solar API status code (bounded: the code comes from the device)."""
    if isinstance(code, int) and not isinstance(code, bool) and 0 < code < 1000:
        return f"fronius-status-{code}"
    return FRONIUS_STATUS_OTHER


__all__ = [name for name in dir() if name.isupper()] + ["fronius_status"]
