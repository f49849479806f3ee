"""Reason tags of facts only the climate family knows (dead-letter reasons and metric labels).

Facts every family shares are in :mod:`stadtlink.adapters.core.reasons`.
"""
from __future__ import annotations

UNSUPPORTED_MESSAGE_TYPE = "unsupported-message-type"  # a message type the decoder does not read

__all__ = [name for name in dir() if name.isupper()]
