"""The bundled @context files: URL per model, local copies, load_context."""

from __future__ import annotations

import pytest

from stadtlink.schemas import (
    CONTEXTS,
    STADTLINK_CONTEXT_URL,
    UnknownModel,
    context_url,
    known_models,
    load_context,
)

PARKING = "https://raw.githubusercontent.com/smart-data-models/dataModel.Parking/master/context.jsonld"


def test_context_url_per_model_and_repository():
    assert context_url("ParkingSpot") == PARKING
    assert context_url("OffStreetParking") == PARKING
    assert context_url("dataModel.Parking") == PARKING
    assert context_url("Parking") == PARKING
    assert context_url("WeatherObserved").endswith("/dataModel.Weather/master/context.jsonld")
    assert context_url("FloodMonitoring").endswith("/dataModel.Environment/master/context.jsonld")
    assert context_url("PhotovoltaicMeasurement").endswith("/dataModel.GreenEnergy/master/context.jsonld")
    assert context_url("ThreePhaseAcMeasurement").endswith("/dataModel.Energy/master/context.jsonld")
    assert context_url("DeviceMeasurement").endswith("/dataModel.Device/master/context.jsonld")
    assert context_url("data-models").endswith("/data-models/master/context/common-context.jsonld")


@pytest.mark.parametrize("model", known_models())
def test_every_model_context_is_local_and_defines_the_type(model):
    url = context_url(model)
    assert CONTEXTS[url].is_file()
    terms = load_context(url)["@context"]
    assert isinstance(terms, dict) and model in terms


def test_every_context_file_loads():
    from stadtlink.schemas.contexts import _BUNDLED_CONTEXTS

    assert len(_BUNDLED_CONTEXTS) == 18  # 8 files: canonical URLs, github.io aliases, the compound
    assert set(_BUNDLED_CONTEXTS) <= set(CONTEXTS)  # plus the contexts of models packages bring
    for url, path in CONTEXTS.items():
        assert path.is_file(), url
        assert "@context" in load_context(url)


def test_load_context_returns_a_fresh_copy():
    first = load_context(PARKING)
    first["@context"].clear()
    assert load_context(PARKING)["@context"]["ParkingSpot"]


def test_compound_stadtlink_context_names_only_bundled_contexts():
    urls = load_context(STADTLINK_CONTEXT_URL)["@context"]
    assert set(urls) <= set(CONTEXTS)
    assert {context_url(m) for m in known_models()} <= set(urls)


def test_stadtlink_context_url_matches_the_runtime_default():
    adapter = pytest.importorskip("stadtlink.adapters.core.adapter")
    assert adapter.STADTLINK_CONTEXT_URL == STADTLINK_CONTEXT_URL


def test_unknown_names_raise_lookup_errors():
    with pytest.raises(UnknownModel, match="no @context for 'Streetlight'"):
        context_url("Streetlight")
    with pytest.raises(LookupError, match="no local copy"):
        load_context("https://example.org/context.jsonld")
