"""Hand-built normalized entities, one per model the adapters emit.

Values come from the device samples (decoded and converted as in the SDM mapping tables):
MeteoHelix station, Aachen P1 DATEX II status, DL-MBX level sensor, PEGELONLINE Würzburg,
Fronius Symo realtime data. Every measured Property carries observedAt and unitCode.
"""

from __future__ import annotations

from typing import Any, Callable

T = "2025-02-07T19:05:34.176Z"


def prop(value: Any, unit: str | None = None, observed_at: str | None = T) -> dict:
    out: dict[str, Any] = {"type": "Property", "value": value}
    if unit:
        out["unitCode"] = unit
    if observed_at:
        out["observedAt"] = observed_at
    return out


def when(ts: str = T) -> dict:
    return {"type": "Property", "value": {"@type": "DateTime", "@value": ts}}


def rel(obj: str | list[str]) -> dict:
    return {"type": "Relationship", "object": obj}


def point(lon: float, lat: float) -> dict:
    return {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}}


def weather_observed() -> dict:
    # Barani MeteoHelix: 12.7 °C, 56.8 % RH, 101065 Pa, 176 W/m²
    return {
        "id": "urn:ngsi-ld:WeatherObserved:mannheim:helix-01",
        "type": "WeatherObserved",
        "dateObserved": when(),
        "location": point(8.4660, 49.4875),
        "temperature": prop(12.7, "CEL"),
        "relativeHumidity": prop(0.568, "C62"),
        "atmosphericPressure": prop(1010.65, "A97"),
        "solarRadiation": prop(176, "D54"),
        "windSpeed": prop(3.2, "MTS"),
        "windDirection": prop(225, "DD"),
        "precipitation": prop(0.2, "MMT"),
        "refDevice": rel("urn:ngsi-ld:Device:mannheim:helix-01"),
        "@context": "https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld",
    }


def parking_spot() -> dict:
    return {
        "id": "urn:ngsi-ld:ParkingSpot:wolfsburg:pr-nord-1",
        "type": "ParkingSpot",
        "status": prop("occupied", None),
        "category": prop(["onStreet"], observed_at=None),
        "refParkingSite": rel("urn:ngsi-ld:OnStreetParking:wolfsburg:pr-nord"),
        "refDevice": rel(["urn:ngsi-ld:Device:wolfsburg:tps110-0001"]),
        "location": point(10.78, 52.42),
        "name": prop("P+R Nord 1", observed_at=None),
    }


def off_street_parking() -> dict:
    # DATEX II Aachen P1: 560 spaces, 412 vacant, 148 occupied, 26.43 % → 0.2643
    return {
        "id": "urn:ngsi-ld:OffStreetParking:aachen:P1",
        "type": "OffStreetParking",
        "name": prop("P1 Kármán-Straße", observed_at=None),
        "location": point(6.0626, 50.7781),
        "category": prop(["parkingGarage", "public", "feeCharged"], observed_at=None),
        "layout": prop(["multiStorey"], observed_at=None),
        "totalSpotNumber": prop(560),
        "availableSpotNumber": prop(412),
        "occupiedSpotNumber": prop(148),
        "occupancy": prop(0.2643, "C62"),
        "status": prop(["spacesAvailable", "open"]),
        "occupancyModified": when(),
    }


def parking_group() -> dict:
    return {
        "id": "urn:ngsi-ld:ParkingGroup:aachen:P1-level-1",
        "type": "ParkingGroup",
        "refParkingSite": rel("urn:ngsi-ld:OffStreetParking:aachen:P1"),
        "category": prop(["completeFloor", "feeCharged"], observed_at=None),
        "totalSpotNumber": prop(120),
        "availableSpotNumber": prop(37),
        "location": point(6.0626, 50.7781),
    }


def flood_monitoring() -> dict:
    # Decentlab DL-MBX: distance 1234 mm → 1.234 m; sensor 4.0 m above the gauge datum
    return {
        "id": "urn:ngsi-ld:FloodMonitoring:bitburg-pruem:pegel-01",
        "type": "FloodMonitoring",
        "location": point(6.5255, 49.9747),
        "measuredDistance": prop(1.234, "MTR"),
        "referenceLevel": prop(4.0, "MTR", observed_at=None),
        "currentLevel": prop(2.766, "MTR"),
        "alertLevel": prop(3.2, "MTR", observed_at=None),
        "dangerLevel": prop(3.6, "MTR", observed_at=None),
        "floodLevelStatus": prop("Normal"),
        "stationID": prop("pegel-01", observed_at=None),
        "observationDateTime": when(),
    }


def water_observed() -> dict:
    # PEGELONLINE Würzburg (Main): W 182 cm → 1.82 m, Q 98.3 m³/s
    return {
        "id": "urn:ngsi-ld:WaterObserved:pegelonline:24300600",
        "type": "WaterObserved",
        "dateObserved": when("2025-02-07T18:00:00Z"),
        "location": point(9.925968763247354, 49.79620901036012),
        "waterLevel": prop(1.82, "MTR", "2025-02-07T18:00:00Z"),
        "flow": prop(98.3, "MQS", "2025-02-07T18:00:00Z"),
        "name": prop("WÜRZBURG", observed_at=None),
    }


def three_phase_ac_measurement() -> dict:
    # Fronius Symo: PAC 1190 W, FAC 49.94 Hz, TOTAL_ENERGY 44188000 Wh → 44188 kWh
    t = "2021-10-07T08:01:17Z"
    return {
        "id": "urn:ngsi-ld:ThreePhaseAcMeasurement:stadtwerke:symo-01",
        "type": "ThreePhaseAcMeasurement",
        "dateObserved": when(t),
        "totalActivePower": prop(1190, "WTT", t),
        "totalApparentPower": prop(1210, "D46", t),
        "totalReactivePower": prop(-35.2, "D44", t),
        "totalPowerFactor": prop(0.98, "C62", t),
        "frequency": prop(49.94, "HTZ", t),
        "current": prop({"L1": 1.73, "L2": 1.74, "L3": 1.72}, "AMP", t),
        "phaseVoltage": prop({"L1": 229.1, "L2": 227.9, "L3": 230.4}, "VLT", t),
        "phaseToPhaseVoltage": prop({"L12": 400.5, "L23": 401.0, "L31": 399.8}, "VLT", t),
        "totalActiveEnergyExport": prop(44188, "KWH", t),
        "refDevice": rel(["urn:ngsi-ld:InverterDevice:stadtwerke:symo-01"]),
    }


def photovoltaic_measurement() -> dict:
    t = "2021-10-07T08:01:17Z"
    return {
        "id": "urn:ngsi-ld:PhotovoltaicMeasurement:stadtwerke:symo-01",
        "type": "PhotovoltaicMeasurement",
        "location": point(8.4660, 49.4875),
        "dateObserved": when(t),
        "refPhotovoltaicDevice": rel("urn:ngsi-ld:PhotovoltaicDevice:stadtwerke:symo-01"),
        "dateEnergyMeteringStarted": when("2019-04-01T00:00:00Z"),
        "temperature": prop(34.5, "CEL", t),
        "activePower": prop(1.19, "KWT", t),
    }


def device() -> dict:
    return {
        "id": "urn:ngsi-ld:Device:wolfsburg:tps110-0001",
        "type": "Device",
        "controlledProperty": prop(["occupancy"], observed_at=None),
        "category": prop(["sensor"], observed_at=None),
        "supportedProtocol": prop(["lora"], observed_at=None),
        "batteryLevel": prop(0.9, "C62"),
        "rssi": prop(-97),
        "dateLastValueReported": when(),
        "deviceState": prop("ok"),
        "serialNumber": prop("0004A30B001C0530", observed_at=None),
        "location": point(10.78, 52.42),
    }


def device_measurement() -> dict:
    # MeteoHelix battery 4.15 V, no SDM home in WeatherObserved
    return {
        "id": "urn:ngsi-ld:DeviceMeasurement:mannheim:helix-01-battery",
        "type": "DeviceMeasurement",
        "numValue": prop(4.15, "VLT"),
        "unit": prop("VLT", observed_at=None),
        "controlledProperty": prop("batteryVoltage", observed_at=None),
        "measurementType": prop("measured", observed_at=None),
        "dateObserved": when(),
        "refDevice": rel("urn:ngsi-ld:Device:mannheim:helix-01"),
        "location": point(8.4660, 49.4875),
    }


def alert() -> dict:
    return {
        "id": "urn:ngsi-ld:Alert:bitburg-pruem:pegel-01-alert",
        "type": "Alert",
        "category": prop("naturalDisaster", observed_at=None),
        "subCategory": prop("flood", observed_at=None),
        "severity": prop("medium"),
        "alertSource": rel("urn:ngsi-ld:FloodMonitoring:bitburg-pruem:pegel-01"),
        "dateIssued": when(),
        "description": prop("currentLevel 3.25 m above alertLevel 3.2 m", observed_at=None),
        "location": point(6.5255, 49.9747),
    }


BUILDERS: dict[str, Callable[[], dict]] = {
    "WeatherObserved": weather_observed,
    "ParkingSpot": parking_spot,
    "OffStreetParking": off_street_parking,
    "ParkingGroup": parking_group,
    "FloodMonitoring": flood_monitoring,
    "WaterObserved": water_observed,
    "ThreePhaseAcMeasurement": three_phase_ac_measurement,
    "PhotovoltaicMeasurement": photovoltaic_measurement,
    "Device": device,
    "DeviceMeasurement": device_measurement,
    "Alert": alert,
}

