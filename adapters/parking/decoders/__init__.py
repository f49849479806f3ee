"""Pure decoders of the parking family: vendor bytes, DATEX II XML and ParkAPI JSON → plain dicts.

Every function here raises only :class:`~stadtlink.adapters.core.errors.DecodeError` (bad input) or
:class:`~stadtlink.adapters.core.errors.ReadingDropped` (a deliberate drop), whatever it is given.
"""
from .bosch import decode_tps110
from .nwave import decode_nps405

__all__ = ["decode_tps110", "decode_nps405"]
