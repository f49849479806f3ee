"""Vocabularies shared by the feed decoders and the mapper: which feed values become which SDM enum values."""
from __future__ import annotations

#: OffStreetParking.status enum (DATEX II 2.3 ParkingSiteStatusEnum + opening status values the model lists).
SITE_STATUS = frozenset({"almostFull", "closed", "closedAbnormal", "full", "fullAtEntrance", "open",
                         "openingTimesInForce", "spacesAvailable"})

#: OffStreetParking.layout enum. DATEX II's ParkingLayoutEnum also has ``underground``, which the SDM
#: layout enum lacks: it becomes the *category* ``underground`` instead.
SITE_LAYOUT = frozenset({"automatedParkingGarage", "carports", "covered", "field", "garageBoxes", "multiLevel",
                         "multiStorey", "nested", "openSpace", "rooftop", "sheds", "singleLevel", "surface", "other"})

#: OffStreetParking.category enum.
SITE_CATEGORY = frozenset({"barrierAccess", "feeCharged", "forCustomers", "forDisabled", "forElectricalCharging",
                           "forEmployees", "forMembers", "forResidents", "forStudents", "forVisitors", "free",
                           "freeAccess", "gateAccess", "guarded", "ground", "longTerm", "mediumTerm",
                           "onlyResidents", "onlyWithPermit", "parkingGarage", "parkingLot", "private", "public",
                           "publicPrivate", "shortTerm", "staffed", "underground", "urbanDeterrentParking", "other"})

#: DATEX II layout → OffStreetParking.category (when the feed names no category itself).
LAYOUT_CATEGORY = {
    "multiStorey": "parkingGarage", "multiLevel": "parkingGarage", "automatedParkingGarage": "parkingGarage",
    "underground": "underground", "singleLevel": "parkingLot", "surface": "parkingLot", "openSpace": "parkingLot",
    "field": "parkingLot", "rooftop": "parkingGarage",
}

#: ParkAPI v3 ``type`` → (category, layout).
PARKAPI_V3_TYPE = {
    "CAR_PARK": (["parkingGarage"], None),
    "UNDERGROUND": (["underground"], None),
    "PARKING_LOT": (["parkingLot"], None),
    "OFF_STREET_PARKING_GROUND": (["parkingLot"], ["surface"]),
}

#: ParkAPI v1 ``lot_type`` (German free text in most cities) → (category, layout).
PARKAPI_V1_LOT_TYPE = {
    "parkhaus": (["parkingGarage"], ["multiStorey"]),
    "tiefgarage": (["underground"], None),
    "parkplatz": (["parkingLot"], ["surface"]),
    "garage": (["parkingGarage"], None),
    "underground": (["underground"], None),
    "lot": (["parkingLot"], None),
}

#: ParkAPI opening states → OffStreetParking.status (``unknown``/``nodata`` are dropped).
PARKAPI_OPENING = {"open": "open", "closed": "closed"}


def split_list(value) -> list[str]:
    """A registry cell or option given as ``a;b`` / ``a,b`` / list → list of non-empty strings."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value)
    for sep in (";", ","):
        if sep in text:
            return [p.strip() for p in text.split(sep) if p.strip()]
    return [text.strip()] if text.strip() else []


def unique(values) -> list[str]:
    seen: list[str] = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen
