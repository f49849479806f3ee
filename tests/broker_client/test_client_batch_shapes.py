"""Every batch answer shape of reference/orion-ld.md §0 and §3, legacy and experimental mode,
served over a real socket; the fake also checks the headers the client sent."""

from __future__ import annotations

import pytest
from bc_fakes import ERR, Canned, entity, ids

from stadtlink.broker_client import BatchResult, BrokerUnavailable, InternalError

E1, E2, E3 = "urn:ngsi-ld:ParkingSpot:E1", "urn:ngsi-ld:ParkingSpot:E2", "urn:ngsi-ld:ParkingSpot:E3"


def by_id(result: BatchResult):
    return {f.entity_id: f for f in result.failed}


async def test_upsert_all_new_201_bare_id_array(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(201, [E1, E2]))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == [E1, E2] and result.failed == []
    sent = orion.calls("POST", "/entityOperations/upsert")[0]
    assert sent.q("options") == "update"
    assert [e["id"] for e in sent.json()] == [E1, E2]


async def test_upsert_all_existing_204_empty(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(204))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == [E1, E2] and result.failed == []


async def test_experimental_201_lists_only_created_ids_others_succeeded_too(orion, client):
    # -experimental: E2 was created, E1 and E3 updated; the 201 names only E2.
    orion.on("POST", "/entityOperations/upsert", Canned(201, [E2]))
    result = await client.upsert([entity(E1), entity(E2), entity(E3)])
    assert result.succeeded == [E1, E2, E3]
    assert result.failed == []


async def test_legacy_mixed_create_update_207_with_empty_errors(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(207, b'{"success":["%s","%s"],"errors":[]}' % (E1.encode(), E2.encode())))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == [E1, E2] and result.failed == []


async def test_replace_mode_on_request(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(204))
    await client.upsert([entity(E1)], mode="replace")
    assert orion.calls()[0].q("options") == "replace"
    with pytest.raises(ValueError):
        await client.upsert([entity(E1)], mode="merge")  # type: ignore[arg-type]


async def test_legacy_duplicate_entity_in_success_and_errors_failed_wins(orion, client):
    body = {
        "success": [E1, E2],
        "errors": [
            {
                "entityId": E1,
                "error": {"type": ERR + "BadRequestData", "title": "Duplicated Entity",
                          "detail": "previous instances merged into one", "status": 400},
            }
        ],
    }
    orion.on("POST", "/entityOperations/upsert", Canned(207, body))
    result = await client.upsert([entity(E1), entity(E1, status="occupied"), entity(E2)])
    assert result.succeeded == [E2]
    failure = by_id(result)[E1]
    assert failure.problem.type == ERR + "BadRequestData"
    assert failure.problem.status == 400 and failure.retryable is False


async def test_experimental_duplicate_in_batch_is_plain_201(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(201, [E1]))
    result = await client.upsert([entity(E1), entity(E1, status="occupied")])
    assert result.succeeded == [E1] and result.failed == []


async def test_207_zero_successes_every_entity_failed(orion, client):
    body = {
        "success": [],
        "errors": [
            {"entityId": E1, "error": {"type": ERR + "BadRequestData", "title": "non-matching entity type",
                                        "detail": "https://uri.fiware.org/ns/data-models#OffStreetParking", "status": 400}},
            {"entityId": E2, "error": {"type": ERR + "BadRequestData", "title": "Invalid Entity",
                                        "detail": "Mandatory field entity::type is missing", "status": 400}},
        ],
    }
    orion.on("POST", "/entityOperations/upsert", Canned(207, body))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == []
    assert set(result.failed_ids) == {E1, E2}
    assert by_id(result)[E2].problem.detail == "Mandatory field entity::type is missing"


@pytest.mark.parametrize("placeholder", ["no entity::id", "Invalid Entity::id", "invalid entity::id", "No Entity::id"])
async def test_placeholder_ids_are_matched_to_the_unreported_entity(orion, client, placeholder):
    body = {
        "success": [E1],
        "errors": [{"entityId": placeholder, "error": {"type": ERR + "BadRequestData", "title": "Invalid URI",
                                                        "detail": "The Entity ID must be a valid URI", "status": 400}}],
    }
    orion.on("POST", "/entityOperations/upsert", Canned(207, body))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == [E1]
    assert len(result.failed) == 1
    failure = result.failed[0]
    assert failure.entity_id == E2
    assert failure.problem.title == "Invalid URI" and failure.retryable is False


async def test_207_silent_about_an_entity_makes_it_a_retryable_failure(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(207, {"success": [E1], "errors": []}))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == [E1]
    assert result.failed[0].entity_id == E2 and result.failed[0].retryable is True


async def test_batch_create_existing_legacy_error_item_has_no_detail(orion, client):
    body = {"success": [E2], "errors": [{"entityId": E1, "error": {
        "type": ERR + "BadRequestData", "title": "entity already exists", "status": 400}}]}
    orion.on("POST", "/entityOperations/create", Canned(207, body))
    result = await client.create_many([entity(E1), entity(E2)])
    assert result.succeeded == [E2]
    problem = result.failed[0].problem
    assert (problem.status, problem.detail, problem.short_type) == (400, None, "BadRequestData")
    assert orion.calls()[0].q("options") is None  # options is not supported on batch create


async def test_batch_create_existing_experimental_error_item(orion, client):
    body = {"success": [], "errors": [{"entityId": E1, "error": {
        "type": ERR + "AlreadyExists", "title": "Entity already exists",
        "detail": "Cannot create an existing entity", "status": 409}}]}
    orion.on("POST", "/entityOperations/create", Canned(207, body))
    result = await client.create_many([entity(E1)])
    assert result.succeeded == []
    problem = result.failed[0].problem
    assert (problem.status, problem.short_type, problem.detail) == (409, "AlreadyExists", "Cannot create an existing entity")
    assert result.failed[0].retryable is False


async def test_batch_update_missing_entity_legacy_and_experimental(orion, client):
    legacy = {"success": [E2], "errors": [{"entityId": E1, "error": {
        "type": ERR + "BadRequestData", "title": "entity does not exist", "status": 400}}]}
    experimental = {"success": [E2], "errors": [{"entityId": E1, "error": {
        "type": ERR + "ResourceNotFound", "title": "Entity not found", "status": 404}}]}
    orion.on("POST", "/entityOperations/update", Canned(207, legacy), Canned(207, experimental))
    for expected in ("BadRequestData", "ResourceNotFound"):
        result = await client.update_many([entity(E1), entity(E2)])
        assert result.succeeded == [E2]
        assert result.failed[0].entity_id == E1
        assert result.failed[0].problem.short_type == expected
    orion.on("POST", "/entityOperations/update", Canned(204))
    result = await client.update_many([entity(E1)], no_overwrite=True)
    assert result.succeeded == [E1]
    assert orion.calls()[-1].q("options") == "noOverwrite"


async def test_batch_delete_204_and_207_all_unknown(orion, client):
    orion.on("POST", "/entityOperations/delete", Canned(204))
    result = await client.delete_many([E1, E2])
    assert result.succeeded == [E1, E2]
    assert orion.calls()[0].json() == [E1, E2]
    body = {"success": [], "errors": [
        {"entityId": E1, "error": {"type": ERR + "ResourceNotFound", "title": "Entity not found", "detail": E1, "status": 404}},
        {"entityId": E2, "error": {"type": ERR + "ResourceNotFound", "title": "Entity not found", "detail": E2, "status": 404}},
    ]}
    orion.on("POST", "/entityOperations/delete", Canned(207, body))
    result = await client.delete_many([E1, E2])
    assert result.succeeded == [] and set(result.failed_ids) == {E1, E2}
    assert all(f.problem.status == 404 and not f.retryable for f in result.failed)


async def test_per_entity_5xx_or_503_is_retryable(orion, client):
    body = {"success": [E2], "errors": [
        {"entityId": E1, "error": {"type": ERR + "LdContextNotAvailable", "title": "Unable to download context", "status": 503}},
        {"entityId": E3, "error": {"type": ERR + "InternalError", "title": "Database Error"}},  # no status, no detail
    ]}
    orion.on("POST", "/entityOperations/upsert", Canned(207, body))
    result = await client.upsert([entity(E1), entity(E2), entity(E3)])
    assert result.succeeded == [E2]
    assert by_id(result)[E1].retryable is True
    assert by_id(result)[E3].retryable is True and by_id(result)[E3].problem.status is None


async def test_whole_request_400_fails_every_entity_of_the_chunk(orion, client):
    # e.g. the ld+json + Link combination; top-level errors carry no status member.
    orion.on("POST", "/entityOperations/upsert", Canned(400, {
        "type": ERR + "BadRequestData", "title": "invalid combination of HTTP headers Content-Type and Link",
        "detail": "no detail"}))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == []
    assert result.failed_ids == [E1, E2]
    assert all(f.problem.status == 400 and f.problem.short_type == "BadRequestData" and not f.retryable for f in result.failed)


async def test_whole_request_404_non_existing_tenant_on_update(orion, client):
    orion.on("POST", "/entityOperations/update", Canned(404, {
        "type": ERR + "NonExistingTenant", "title": "No such tenant", "detail": "town7"}))
    result = await client.update_many([entity(E1)])
    assert result.failed[0].problem.short_type == "NonExistingTenant"
    assert result.failed[0].problem.status == 404


async def test_whole_request_429_is_retryable_failure(orion, client):
    orion.always("POST", "/entityOperations/upsert", Canned(429, b"", {"Retry-After": "0"}))
    result = await client.upsert([entity(E1)])
    assert result.failed[0].retryable is True
    assert len(orion.calls()) == 4  # idempotent: retried, then reported


async def test_5xx_after_retries_raises_with_partial_result(orion, client):
    client.batch_size = 1
    orion.on("POST", "/entityOperations/upsert", Canned(204))
    orion.always("POST", "/entityOperations/upsert", Canned(500, {"type": ERR + "InternalError", "title": "Database Error", "detail": "x"}))
    with pytest.raises(InternalError) as info:
        await client.upsert([entity(E1), entity(E2)])
    assert info.value.status == 500
    assert info.value.partial.succeeded == [E1]  # type: ignore[attr-defined]
    assert len(orion.calls()) == 1 + 4


async def test_503_without_body_after_retries_raises_broker_unavailable(orion, client):
    orion.always("POST", "/entityOperations/upsert", Canned(503))
    with pytest.raises(BrokerUnavailable):
        await client.upsert([entity(E1)])


async def test_malformed_207_body_makes_every_entity_retryable(orion, client):
    orion.on("POST", "/entityOperations/upsert", Canned(207, b'{"success":["urn:ngsi-ld:ParkingSpot:E1"'))
    result = await client.upsert([entity(E1), entity(E2)])
    assert result.succeeded == []
    assert result.failed_ids == [E1, E2] and all(f.retryable for f in result.failed)


async def test_scorpio_and_stellio_shapes_are_understood(orion, client):
    scorpio_207 = {"success": [E2], "errors": [{"id": E1, "type": "Upsert", "ProblemDetails": {
        "type": ERR + "BadRequestData", "title": "Bad Request", "status": 400}}]}
    scorpio_all_failed_400 = {"errors": [{"id": E1, "type": "Upsert", "ProblemDetails": {
        "type": ERR + "BadRequestData", "title": "Bad Request", "status": 400}}]}
    scorpio_array = [{"id": E1, "type": "Upsert", "success": [{"attributes": []}]},
                     {"id": E2, "type": "Upsert", "failure": [{"type": ERR + "BadRequestData", "title": "x", "status": 400}]}]
    stellio = {"success": [], "errors": [{"entityId": E1, "error": {"type": ERR + "BadRequestData", "title": "t", "status": 400},
                                          "registrationId": None}]}
    orion.on("POST", "/entityOperations/upsert", Canned(207, scorpio_207), Canned(400, scorpio_all_failed_400),
             Canned(207, scorpio_array), Canned(207, stellio))
    r = await client.upsert([entity(E1), entity(E2)])
    assert (r.succeeded, r.failed_ids) == ([E2], [E1])
    r = await client.upsert([entity(E1)])
    assert (r.succeeded, r.failed_ids) == ([], [E1]) and r.failed[0].problem.status == 400
    r = await client.upsert([entity(E1), entity(E2)])
    assert (r.succeeded, r.failed_ids) == ([E1], [E2])
    r = await client.upsert([entity(E1)])
    assert (r.succeeded, r.failed_ids) == ([], [E1])


async def test_write_is_backend_upsert_with_configured_mode(orion, client):
    from stadtlink.broker_client import Backend

    assert isinstance(client, Backend)
    orion.on("POST", "/entityOperations/upsert", Canned(201, [E1]))
    result = await client.write([entity(E1)])
    assert result.succeeded == [E1]
    assert orion.calls()[0].q("options") == "update"


async def test_many_entities_each_chunk_reported(orion, client):
    orion.always("POST", "/entityOperations/upsert", lambda rec: Canned(201, [e["id"] for e in rec.json()]))
    all_ids = ids("ParkingSpot", 450)
    result = await client.upsert([entity(i) for i in all_ids])
    assert result.succeeded == all_ids
    assert [len(c.json()) for c in orion.calls()] == [200, 200, 50]
