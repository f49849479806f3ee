"""The Smart Data Models shipped in this package, declared as data (origin and licences: SOURCES.md).

Each row is ``(type, repository)``; the files follow the package layout every model uses
(``<Type>/schema.json``, ``<Type>/LICENSE.md``, ``common/contexts/<repository>/context.jsonld``,
``common/<file>`` for the ``$ref``-ed common schemas), so adding a bundled model is one row here
plus its files. Packages declare their own models the same way (``SmartDataModel``), see
docs/adding-a-model.md.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
COMMON_DIR = PACKAGE_DIR / "common"
CONTEXT_DIR = COMMON_DIR / "contexts"

#: upstream repository → commit the files were copied at
REPOSITORY_COMMIT: dict[str, str] = {
    "dataModel.Parking": "d49af3c051dfc06d08d43183d2a7a3586d2ba163",
    "dataModel.Weather": "adf1dd5918da36980208a0a46ed76c81fba91ea5",
    "dataModel.Environment": "f0150e5c97f41e4c0881a0bcfa05d559058bdea1",
    "dataModel.GreenEnergy": "b19350dafd922f5137975a5ad9506047b063db0b",
    "dataModel.Energy": "6e3d7dd59ada5d69b4d8c88b05f131097325ff88",
    "dataModel.Device": "96e38834eda502ed6a764e1fa7059a8c3561dcda",
    "dataModel.Alert": "30e367c08e5813b25466d4634f4588032fce4f47",
    "data-models": "865391b0cac142ddfabd8bd285034b83ecb1864f",
}

#: model → (upstream repository, the common schema files its $refs reach)
MODELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Alert": ("dataModel.Alert", ("common-schema.json", "alert-schema.json", "weather-schema.json")),
    "Device": ("dataModel.Device", ("common-schema.json", "device-schema.json")),
    "DeviceMeasurement": ("dataModel.Device", ("common-schema.json",)),
    "FloodMonitoring": ("dataModel.Environment", ("common-schema.json",)),
    "WaterObserved": ("dataModel.Environment", ("common-schema.json",)),
    "InverterDevice": ("dataModel.Energy", ("common-schema.json",)),
    "SolarEnergy": ("dataModel.Energy", ("common-schema.json",)),
    "ThreePhaseAcMeasurement": ("dataModel.Energy", ("common-schema.json",)),
    "OffStreetParking": ("dataModel.Parking", ("common-schema.json",)),
    "ParkingGroup": ("dataModel.Parking", ("common-schema.json",)),
    "ParkingSpot": ("dataModel.Parking", ("common-schema.json",)),
    "PhotovoltaicDevice": ("dataModel.GreenEnergy", ("common-schema.json",)),
    "PhotovoltaicMeasurement": ("dataModel.GreenEnergy", ("common-schema.json",)),
    "WeatherObserved": ("dataModel.Weather", ("common-schema.json", "weather-schema.json", "Environment-schema.json")),
}
BUNDLED_TYPES = frozenset(MODELS)

#: the common schemas in common/ (each registered under its $id, which is the URL models $ref)
COMMON_SCHEMA_FILES = ("common-schema.json", "Environment-schema.json", "weather-schema.json",
                       "device-schema.json", "alert-schema.json")


def repository_context_url(repo: str) -> str:
    if repo == "data-models":
        return "https://raw.githubusercontent.com/smart-data-models/data-models/master/context/common-context.jsonld"
    return f"https://raw.githubusercontent.com/smart-data-models/{repo}/master/context.jsonld"


def repository_context_file(repo: str) -> Path:
    name = "common-context.jsonld" if repo == "data-models" else "context.jsonld"
    return CONTEXT_DIR / repo / name


def repository_alias_urls(repo: str) -> tuple[str, ...]:
    """The smart-data-models.github.io URLs of the same file (SDM examples use both)."""
    if repo == "data-models":
        return ("https://smart-data-models.github.io/data-models/context.jsonld",
                "https://smart-data-models.github.io/data-models/common-context.jsonld")
    return (f"https://smart-data-models.github.io/{repo}/context.jsonld",)


#: stadtlink's extension @contexts: attributes the bundled families write that their model's own
#: @context does not define (no equivalent in the model; docs/adding-a-model.md), under the
#: ``https://stadtlink.github.io/terms/<Type>/`` namespace instead of the NGSI-LD default
#: vocabulary. Each type's entities are written with ``[<extension>, <model context>]`` (the model
#: comes last, so it wins any term). type → file name in contexts/
EXTENSION_FILES: dict[str, str] = {
    "DeviceMeasurement": "stadtlink-DeviceMeasurement-terms.jsonld",   # pv: a DC string's current/voltage/power
    "ParkingGroup": "stadtlink-ParkingGroup-terms.jsonld",             # parking: the level of a car park
    "WaterObserved": "stadtlink-WaterObserved-terms.jsonld",           # water level: PEGELONLINE states, levels
}
EXTENSION_BASE_URL = "https://raw.githubusercontent.com/stadtlink/stadtlink/main/schemas/contexts/"
