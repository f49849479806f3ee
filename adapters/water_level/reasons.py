"""Reason tags of facts only the water-level family knows (dead-letter reasons and metric labels).

Facts every family shares are in :mod:`stadtlink.adapters.core.reasons`.
"""
from __future__ import annotations

# -- decoding: PEGELONLINE answers
UNEXPECTED_SHAPE = "unexpected-shape"              # neither a station object nor a list of stations
BAD_STATION = "bad-station"                        # a station without uuid / number
UNEXPECTED_UNIT = "unexpected-unit"                # a time series in a unit the decoder does not convert
NO_STATION = "no-station"                          # a current-measurement answer without the target's device

# -- deliberate drops (counted, not dead-lettered)
NO_CURRENT_MEASUREMENT = "no-current-measurement"  # no station in the answer has a current measurement

__all__ = [name for name in dir() if name.isupper()]
