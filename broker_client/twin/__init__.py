"""The live twin view: subscribes to the broker, receives notifications, pushes changes to browsers
over Server-Sent Events and shows them on a map and in a table (``stadtlink twin``)."""
from .model import FAMILIES, TWIN_TYPES, TwinState, summarise
from .server import TwinServer, main

__all__ = ["FAMILIES", "TWIN_TYPES", "TwinState", "summarise", "TwinServer", "main"]
