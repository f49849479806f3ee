"""OGC SensorThings API v1.1 as a stadtlink sink (FROST-Server and others).

    backend = SensorThingsBackend("http://frost:8080/FROST-Server/v1.1", auth=StaticToken(env="STA_TOKEN"))
    async with backend:
        result = await backend.write(entities)   # BatchResult, like every Backend

Mapping: :mod:`.mapping` (entity → Thing, Location, Datastreams, Observations), :mod:`.models`
(which attributes are measured, per model), :mod:`.units` (UN/CEFACT → UCUM). Documentation:
docs/backends/sensorthings.md.
"""

from .backend import SensorThingsBackend, StaRejected, StaTransient
from .mapping import EntityNotMappable, ThingPlan, plan_entity
from .models import MEASURED, attribute_iri, measured
from .units import UNITS, UnknownUnit, unit_of_measurement

__all__ = [
    "MEASURED",
    "UNITS",
    "EntityNotMappable",
    "SensorThingsBackend",
    "StaRejected",
    "StaTransient",
    "ThingPlan",
    "UnknownUnit",
    "attribute_iri",
    "measured",
    "plan_entity",
    "unit_of_measurement",
]
