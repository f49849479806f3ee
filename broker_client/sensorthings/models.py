"""Which attributes of each Smart Data Model become Datastreams — one table for every model the
adapters emit (and the measured attributes of the models' own examples).

An attribute listed here is *measured*: each value becomes an Observation of a Datastream of the
entity's Thing. Every other attribute is *static* and goes to ``Thing.properties`` (key-values).

Kinds (→ SensorThings ``observationType``, OGC 18-088 Table 12):

``measurement``  a number with a unit                       → OM_Measurement
``count``        an integer count                           → OM_CountObservation
``category``     a code or a list of codes ("free", ["open"]) → OM_CategoryObservation
``phases``       an object of numbers per phase (``{"L1": 230.1, "L2": …}``): one Datastream
                 per member, named ``<attribute>/<member>``, each an OM_Measurement
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

from stadtlink.schemas import registry, vocabulary
from stadtlink.schemas.contexts import STADTLINK_CONTEXT_URL
from stadtlink.schemas.problems import UnknownModel

Kind = Literal["measurement", "count", "category", "phases"]

OM = "http://www.opengis.net/def/observationType/OGC-OM/2.0/"
OBSERVATION_TYPE: dict[str, str] = {
    "measurement": OM + "OM_Measurement",
    "count": OM + "OM_CountObservation",
    "category": OM + "OM_CategoryObservation",
    "phases": OM + "OM_Measurement",
}


class Measured(NamedTuple):
    kind: Kind
    unit: str | None = None  # UN/CEFACT default when the Property carries no unitCode


M = Measured


def _m(unit: str | None = None) -> Measured:
    return Measured("measurement", unit)


COUNT = Measured("count")
CATEGORY = Measured("category")


def _phases(unit: str) -> Measured:
    return Measured("phases", unit)


_DEVICE_HEALTH = {"batteryLevel": _m("C62"), "rssi": _m("DBM")}

#: SDM type → measured attribute → how it is observed
MEASURED: dict[str, dict[str, Measured]] = {
    "ParkingSpot": {"status": CATEGORY},
    "OffStreetParking": {
        "availableSpotNumber": COUNT, "occupiedSpotNumber": COUNT, "totalSpotNumber": COUNT,
        "occupancy": _m("C62"), "status": CATEGORY,
        "vehicleEntranceCount": COUNT, "vehicleExitCount": COUNT,
    },
    "ParkingGroup": {
        "availableSpotNumber": COUNT, "occupiedSpotNumber": COUNT, "totalSpotNumber": COUNT,
        "occupancy": _m("C62"),
    },
    "WeatherObserved": {
        "temperature": _m("CEL"), "relativeHumidity": _m("C62"), "atmosphericPressure": _m("A97"),
        "solarRadiation": _m("D54"), "illuminance": _m("LUX"), "windSpeed": _m("MTS"),
        "gustSpeed": _m("MTS"), "windDirection": _m("DD"), "precipitation": _m("MMT"),
        "dewPoint": _m("CEL"), "snowHeight": _m("MMT"), "pressureTendency": _m("A97"),
        "streamGauge": _m("MTR"), "uVIndexMax": _m("C62"), "visibility": _m("MTR"),
    },
    # one quantity per entity: the Datastream is named after controlledProperty (mapping.py)
    "DeviceMeasurement": {"numValue": _m(), "voltage": _m("VLT"), "current": _m("AMP"), "power": _m("WTT")},
    "FloodMonitoring": {
        "currentLevel": _m("MTR"), "measuredDistance": _m("MTR"), "referenceLevel": _m("MTR"),
        "alertLevel": _m("MTR"), "dangerLevel": _m("MTR"), "floodLevelStatus": CATEGORY,
    },
    "WaterObserved": {
        "waterLevel": _m("MTR"), "waterLevelAboveSeaLevel": _m("MTR"), "waterLevelRelativeToGaugeZero": _m("MTR"),
        "flow": _m("MQS"), "height": _m("MTR"), "stateMnwMhw": CATEGORY, "stateNswHsw": CATEGORY,
        "temperature": _m("CEL"),
    },
    "ThreePhaseAcMeasurement": {
        "totalActivePower": _m("WTT"), "totalApparentPower": _m("D46"), "totalReactivePower": _m("D44"),
        "totalPowerFactor": _m("C62"), "frequency": _m("HTZ"),
        "totalActiveEnergyExport": _m("KWH"), "totalActiveEnergyImport": _m("KWH"),
        "totalReactiveEnergyExport": _m("KWH"), "totalReactiveEnergyImport": _m("KWH"),
        "activePower": _phases("WTT"), "apparentPower": _phases("D46"), "reactivePower": _phases("D44"),
        "current": _phases("AMP"), "phaseVoltage": _phases("VLT"), "phaseToPhaseVoltage": _phases("VLT"),
        "powerFactor": _phases("C62"), "displacementPowerFactor": _phases("C62"),
        "thdCurrent": _phases("C62"), "thdVoltage": _phases("C62"),
    },
    "PhotovoltaicMeasurement": {"activePower": _m("KWT"), "current": _m("AMP"), "temperature": _m("CEL")},
    # not written by the adapters; its example carries measurements (units from its schema text)
    "SolarEnergy": {
        "totalActivePower": _m("WTT"), "totalReactivePower": _m("D44"), "voltage": _m("VLT"),
        "frequency": _m("HTZ"), "energyGenerated": _m(), "totalEnergyGenerated": _m(),
        "maxSolarPowerMeasure": _m(),
        "activePower": _phases("WTT"), "reactivePower": _phases("D44"), "phaseVoltage": _phases("VLT"),
        "phaseCurrent": _phases("AMP"), "current": _phases("AMP"), "powerFactor": _phases("C62"),
    },
    "Device": {**_DEVICE_HEALTH, "deviceState": CATEGORY},
    # an Alert is an event, not a measurement: Thing with properties only
    "Alert": {},
}

#: Attributes that never become Thing properties (they are the Thing itself, its Location or the
#: observation times).
STRUCTURAL = frozenset({"id", "type", "@context", "location"})
TIME_ATTRIBUTES = ("dateObserved", "observationDateTime")


def measured(entity_type: str) -> dict[str, Measured]:
    """The measured attributes of a model. A model an adapter package registers (not in the
    table) has its schema's numeric attributes measured (numbers → OM_Measurement, integers →
    OM_CountObservation); an unknown type has none (a Thing with properties)."""
    found = MEASURED.get(entity_type)
    if found is not None:
        return found
    return _registered_measured(entity_type, registry.version())


@functools.lru_cache(maxsize=64)
def _registered_measured(entity_type: str, version: int) -> dict[str, Measured]:
    if registry.model_for(entity_type) is None or registry.model_origin(entity_type) == "bundled":
        return {}  # a bundled model missing from the table is static (InverterDevice, ...)
    from stadtlink.schemas.validation import validator_for

    out: dict[str, Measured] = {}

    def walk(node) -> None:
        if not isinstance(node, dict):
            return
        for name, prop in (node.get("properties") or {}).items():
            kind = prop.get("type") if isinstance(prop, dict) else None
            if name in STRUCTURAL or name in TIME_ATTRIBUTES:
                continue
            if kind == "number":
                out[name] = _m()
            elif kind == "integer":
                out[name] = COUNT
        for key in ("allOf", "anyOf", "oneOf"):
            for sub in node.get(key) or ():
                walk(sub)

    walk(validator_for(entity_type).schema)
    return out


def attribute_iri(entity_type: str, attribute: str) -> str:
    """The attribute's Smart Data Models IRI: what the model's own @context expands it to (the
    model registry: bundled or registered by a package), else stadtlink's compound context's,
    else the NGSI-LD default vocabulary (what a broker would expand it to)."""
    try:
        iri = vocabulary.own_iri(entity_type, attribute)
    except UnknownModel:
        iri = None
    if iri is None:
        iri = vocabulary.expand(STADTLINK_CONTEXT_URL, attribute)
    return iri
