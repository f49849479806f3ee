"""Typed errors: chosen by ProblemDetails type URI and HTTP status, never by title text."""

from __future__ import annotations

import pytest
from bc_fakes import ERR, Canned

import stadtlink.broker_client as bc
from stadtlink.broker_client import error_class_for, error_from_response

E1 = "urn:ngsi-ld:ParkingSpot:E1"

TYPE_CASES = [
    ("InvalidRequest", 400, bc.InvalidRequest),
    ("BadRequestData", 400, bc.BadRequestData),
    ("AlreadyExists", 409, bc.AlreadyExists),
    ("OperationNotSupported", 501, bc.OperationNotSupported),
    ("ResourceNotFound", 404, bc.ResourceNotFound),
    ("InternalError", 500, bc.InternalError),
    ("InternalError", 400, bc.InternalError),  # Orion-LD: invalid geometry in a GET query
    ("TooComplexQuery", 403, bc.TooComplexQuery),
    ("TooManyResults", 403, bc.TooManyResults),
    ("LdContextNotAvailable", 503, bc.LdContextNotAvailable),
    ("NoMultiTenantSupport", 501, bc.NoMultiTenantSupport),
    ("NonExistingTenant", 404, bc.NonExistingTenant),
]


@pytest.mark.parametrize("short,status,cls", TYPE_CASES)
async def test_each_type_uri_over_the_wire(orion, client, short, status, cls):
    # The title is deliberately misleading: only type and status may decide.
    orion.always("GET", f"/entities/{E1}", Canned(status, {"type": ERR + short, "title": "Entity already exists", "detail": "d"}))
    with pytest.raises(cls) as info:
        await client.get_entity(E1)
    err = info.value
    assert type(err) is cls
    assert (err.status, err.type, err.detail) == (status, ERR + short, "d")
    assert isinstance(err, bc.NGSILDError)
    assert err.body == {"type": ERR + short, "title": "Entity already exists", "detail": "d"}


@pytest.mark.parametrize(
    "status,body,cls",
    [
        (405, b"", bc.MethodNotAllowed),
        (406, {"type": ERR + "BadRequestData", "title": "Invalid Accept mime-type", "detail": "text/plain"}, bc.NotAcceptable),
        (413, {"type": ERR + "BadRequestData", "title": "Request Entity too large",
               "detail": "payload size: 1048577, max size supported: 1048576"}, bc.PayloadTooLarge),
        (415, {"type": ERR + "BadRequestData", "title": "unsupported format of payload", "detail": "text/plain"}, bc.UnsupportedMediaType),
        (401, b"", bc.Unauthorized),
        (403, b"", bc.Forbidden),
        (429, b"", bc.TooManyRequests),
        (404, b"<html>nginx</html>", bc.ResourceNotFound),
        (409, b"", bc.AlreadyExists),
        (502, b"Bad Gateway", bc.BrokerUnavailable),
        (500, b"", bc.InternalError),
        (418, b"", bc.BadRequestData),
    ],
)
def test_status_mapping(status, body, cls):
    import orjson

    raw = orjson.dumps(body) if isinstance(body, dict) else body
    err = error_from_response(status, raw)
    assert type(err) is cls and err.status == status
    if cls in (bc.NotAcceptable, bc.PayloadTooLarge, bc.UnsupportedMediaType):
        assert isinstance(err, bc.BadRequestData)


def test_unknown_type_uri_falls_back_to_status():
    assert error_class_for(404, "https://example.org/errors/Whatever") is bc.ResourceNotFound
    assert error_class_for(400, None) is bc.BadRequestData
    assert error_class_for(None, None) is bc.NGSILDError


def test_retryable_flags():
    assert error_from_response(503, b"").retryable
    assert error_from_response(500, b"").retryable
    assert not error_from_response(501, b"").retryable
    assert not error_from_response(400, b"").retryable
    assert error_from_response(429, b"").retryable


async def test_405_empty_body_with_allow_header(orion, client):
    orion.on("PUT", f"/entities/{E1}", Canned(405, None, {"Allow": "GET,DELETE,PATCH"}))
    with pytest.raises(bc.MethodNotAllowed) as info:
        await client.replace_entity(E1, {"id": E1, "type": "T"})
    assert info.value.body is None


async def test_413_answer_for_single_entity_request(orion, client):
    orion.on("POST", "/entities", Canned(413, {"type": ERR + "BadRequestData", "title": "Request Entity too large",
                                               "detail": "payload size: 2000000, max size supported: 1048576"}))
    with pytest.raises(bc.PayloadTooLarge) as info:
        await client.create_entity({"id": E1, "type": "T"})
    assert "max size supported" in info.value.detail


async def test_malformed_json_in_success_answer_is_invalid_response(orion, client):
    orion.on("GET", f"/entities/{E1}", Canned(200, b'{"id": "urn:ngsi-ld:ParkingSpot:E1", "type": '))
    with pytest.raises(bc.InvalidResponse) as info:
        await client.get_entity(E1)
    assert info.value.status == 200


async def test_json_array_where_entity_expected_is_invalid_response(orion, client):
    orion.on("GET", f"/entities/{E1}", Canned(200, [1, 2]))
    with pytest.raises(bc.InvalidResponse):
        await client.get_entity(E1)


async def test_malformed_json_in_error_answer_still_typed(orion, client):
    orion.on("GET", f"/entities/{E1}", Canned(404, b'{"type": "https://uri.etsi.org/ngsi-ld/errors/Res'))
    with pytest.raises(bc.ResourceNotFound) as info:
        await client.get_entity(E1)
    assert info.value.type is None and info.value.status == 404


async def test_malformed_attribute_207_is_invalid_response(orion, client):
    orion.on("PATCH", f"/entities/{E1}/attrs", Canned(207, b"{not json"))
    with pytest.raises(bc.InvalidResponse):
        await client.update_attributes(E1, {"a": {"type": "Property", "value": 1}})


def test_error_repr_and_problem():
    err = error_from_response(404, b'{"type":"https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound","title":"Entity Not Found","detail":"x"}')
    assert "ResourceNotFound" in repr(err)
    assert err.problem.short_type == "ResourceNotFound" and err.problem.status == 404
    assert "404" in str(err)
