"""UN/CEFACT common codes (what Smart Data Models put in ``unitCode``) → SensorThings
``unitOfMeasurement`` with a UCUM symbol.

One table, tested against every code the adapters emit (tests/sensorthings/test_units.py).
``definition`` is the QUDT unit IRI: UCUM has no per-unit IRIs, QUDT has, and it names the UCUM
code of each unit too.
"""

from __future__ import annotations

from typing import NamedTuple


class Unit(NamedTuple):
    name: str
    symbol: str  # UCUM (case-sensitive form)
    qudt: str    # local name in http://qudt.org/vocab/unit/


QUDT = "http://qudt.org/vocab/unit/"

#: UN/CEFACT code → unit. Keep sorted by code.
UNITS: dict[str, Unit] = {
    "A97": Unit("hectopascal", "hPa", "HectoPA"),
    "AMP": Unit("ampere", "A", "A"),
    "C62": Unit("one", "1", "UNITLESS"),
    "CEL": Unit("degree Celsius", "Cel", "DEG_C"),
    "D44": Unit("volt-ampere reactive", "V.A{reactive}", "V-A_Reactive"),
    "D46": Unit("volt-ampere", "V.A", "V-A"),
    "D54": Unit("watt per square metre", "W/m2", "W-PER-M2"),
    "DBM": Unit("decibel-milliwatt", "dB[mW]", "DeciB_M"),
    "DD": Unit("degree (angle)", "deg", "DEG"),
    "H67": Unit("millimetre per hour", "mm/h", "MilliM-PER-HR"),
    "HTZ": Unit("hertz", "Hz", "HZ"),
    "KEL": Unit("kelvin", "K", "K"),
    "KMH": Unit("kilometre per hour", "km/h", "KiloM-PER-HR"),
    "KMT": Unit("kilometre", "km", "KiloM"),
    "KPA": Unit("kilopascal", "kPa", "KiloPA"),
    "KWH": Unit("kilowatt hour", "kW.h", "KiloW-HR"),
    "KWT": Unit("kilowatt", "kW", "KiloW"),
    "LUX": Unit("lux", "lx", "LUX"),
    "MMT": Unit("millimetre", "mm", "MilliM"),
    "MQS": Unit("cubic metre per second", "m3/s", "M3-PER-SEC"),
    "MTR": Unit("metre", "m", "M"),
    "MTS": Unit("metre per second", "m/s", "M-PER-SEC"),
    "P1": Unit("percent", "%", "PERCENT"),
    "VLT": Unit("volt", "V", "V"),
    "WHR": Unit("watt hour", "W.h", "W-HR"),
    "WTT": Unit("watt", "W", "W"),
}

#: unitOfMeasurement of a Datastream whose values have no unit (categories). OGC 18-088 allows null
#: members there, but django-ogc-sensorthings 1.2.0 requires strings: empty strings pass both.
NO_UNIT: dict[str, str] = {"name": "", "symbol": "", "definition": ""}
#: unitOfMeasurement of a count (OM_CountObservation): UCUM annotation ``{count}``.
COUNT_UNIT: dict[str, str] = {"name": "count", "symbol": "{count}", "definition": QUDT + "NUM"}


class UnknownUnit(ValueError):
    def __init__(self, code: str) -> None:
        super().__init__(f"no UCUM conversion for UN/CEFACT unit code {code!r}: add it to broker_client/sensorthings/units.py")
        self.code = code


def unit_of_measurement(code: str | None) -> dict[str, str]:
    """The SensorThings ``unitOfMeasurement`` for a UN/CEFACT code (``None`` → :data:`NO_UNIT`).
    Raises :class:`UnknownUnit` for a code missing from the table: guessing would mislabel data."""
    if code is None:
        return dict(NO_UNIT)
    unit = UNITS.get(code)
    if unit is None:
        raise UnknownUnit(code)
    return {"name": unit.name, "symbol": unit.symbol, "definition": QUDT + unit.qudt}


def cefact_of(unit_of_measurement_: dict) -> str | None:
    """The UN/CEFACT code back from a ``unitOfMeasurement`` this module wrote (reverse mapping)."""
    definition = unit_of_measurement_.get("definition") if isinstance(unit_of_measurement_, dict) else None
    for code, unit in UNITS.items():
        if definition == QUDT + unit.qudt:
            return code
    return None
