"""The UN/CEFACT → UCUM table covers every unit code the adapters emit, and converts them right."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stadtlink.adapters.climate.mapper import MEASUREMENT_ROWS, WEATHER_ROWS
from stadtlink.adapters.pv.mapper import (
    AC_PHASES,
    AC_TOTALS,
    DC_ATTRIBUTES,
    PV_ROWS,
    SITE_ENTITIES,
)
from stadtlink.broker_client.sensorthings.models import MEASURED
from stadtlink.broker_client.sensorthings.units import (
    QUDT,
    UNITS,
    UnknownUnit,
    cefact_of,
    unit_of_measurement,
)

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"

# every way a mapper names a unit code in its source: prop(..., unit="X"), Measure(src, attr, "X"),
SOURCE_PATTERNS = (
    re.compile(r"""unit\s*=\s*["']([A-Z0-9]{2,3})["']"""),
    re.compile(r"""(?:Measure|Row)\(\s*["'][^"']+["']\s*,\s*["'][^"']+["']\s*,\s*["']([A-Z0-9]{2,3})["']"""),
    re.compile(r"""unit_code:\s*([A-Z0-9]{2,3})\b"""),
)


def codes_in_adapter_sources() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in ADAPTERS.rglob("*.py"):
        if "tests" in path.parts or path.name.startswith("test_"):
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in SOURCE_PATTERNS:
            for code in pattern.findall(text):
                found.setdefault(code, set()).add(str(path.relative_to(ADAPTERS)))
    return found


def codes_in_adapter_tables() -> set[str]:
    rows = [*WEATHER_ROWS, *MEASUREMENT_ROWS, *AC_TOTALS, *DC_ATTRIBUTES, *PV_ROWS]
    rows += [row for _, site_rows in SITE_ENTITIES for row in site_rows]
    return {row.unit for row in [*rows, *AC_PHASES] if row.unit}


def test_every_code_the_adapters_emit_is_in_the_table():
    from_sources = codes_in_adapter_sources()
    from_tables = codes_in_adapter_tables()
    # the scan must see the codes the tables hold, and the parking/water-level literals
    assert from_tables <= set(from_sources), from_tables - set(from_sources)
    assert {"MTR", "DBM", "C62", "MQS", "WTT", "CEL", "KWT", "KWH", "A97", "D44", "D46"} <= set(from_sources)
    missing = {code: sorted(where) for code, where in from_sources.items() if code not in UNITS}
    assert not missing, f"unit codes without a UCUM conversion: {missing}"


def test_every_default_unit_of_the_model_table_is_in_the_table():
    for model, attributes in MEASURED.items():
        for attribute, how in attributes.items():
            if how.unit is not None:
                assert how.unit in UNITS, f"{model}.{attribute}: {how.unit}"


# hand-checked against UCUM (https://ucum.org/ucum) and the UN/CEFACT Recommendation 20 list
EXPECTED_UCUM = {
    "CEL": "Cel", "MTR": "m", "MMT": "mm", "KMT": "km", "KWT": "kW", "WTT": "W", "KWH": "kW.h",
    "WHR": "W.h", "A97": "hPa", "KPA": "kPa", "P1": "%", "C62": "1", "AMP": "A", "VLT": "V",
    "HTZ": "Hz", "MTS": "m/s", "KMH": "km/h", "MQS": "m3/s", "D54": "W/m2", "LUX": "lx", "DD": "deg",
    "H67": "mm/h", "DBM": "dB[mW]", "D46": "V.A", "D44": "V.A{reactive}", "KEL": "K",
}


@pytest.mark.parametrize("code", sorted(UNITS))
def test_conversion(code):
    unit = unit_of_measurement(code)
    assert unit["symbol"] == EXPECTED_UCUM[code]
    assert unit["name"] and unit["definition"].startswith(QUDT)
    assert " " not in unit["symbol"]                    # UCUM codes have no spaces
    assert cefact_of(unit) == code                      # reversible


def test_the_table_and_the_expectations_agree():
    assert set(EXPECTED_UCUM) == set(UNITS)
    assert len({u.qudt for u in UNITS.values()}) == len(UNITS)  # no two codes share a definition


def test_an_unknown_code_is_refused_not_guessed():
    with pytest.raises(UnknownUnit, match="'XYZ'"):
        unit_of_measurement("XYZ")
    assert unit_of_measurement(None) == {"name": "", "symbol": "", "definition": ""}
