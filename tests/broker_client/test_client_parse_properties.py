"""Invariants of the batch answer parser over generated 207 bodies (hypothesis)."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from stadtlink.broker_client import parse_batch_response
from stadtlink.broker_client.results import parse_attribute_update

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
IDS = [f"urn:ngsi-ld:T:{i}" for i in range(12)]
PLACEHOLDERS = ["no entity::id", "Invalid Entity::id", "invalid entity::id", "No Entity::id"]

error_item = st.fixed_dictionaries(
    {
        "entityId": st.sampled_from(IDS + PLACEHOLDERS),
        "error": st.fixed_dictionaries(
            {"type": st.sampled_from([ERR + "BadRequestData", ERR + "ResourceNotFound", ERR + "InternalError"]),
             "title": st.text(max_size=10)},
            optional={"detail": st.text(max_size=10), "status": st.sampled_from([400, 404, 409, 500, 503])},
        ),
    }
)


@settings(max_examples=300, deadline=None)
@given(
    sent=st.lists(st.sampled_from(IDS), min_size=1, max_size=12),
    success=st.lists(st.sampled_from(IDS), max_size=12),
    errors=st.lists(error_item, max_size=8),
)
def test_every_sent_id_is_accounted_exactly_once(sent, success, errors):
    body = orjson.dumps({"success": success, "errors": errors})
    result = parse_batch_response(207, body, sent)
    unique_sent = list(dict.fromkeys(sent))
    failed_sent = [f.entity_id for f in result.failed if f.entity_id in unique_sent]
    # each sent id exactly once, in succeeded or failed, never both
    assert sorted(result.succeeded + failed_sent) == sorted(unique_sent)
    assert not set(result.succeeded) & set(failed_sent)
    # an id the broker named as an error is never reported as a success
    erred = {e["entityId"] for e in errors}
    assert not set(result.succeeded) & erred
    # successes are only ids the broker listed as successes
    assert set(result.succeeded) <= set(success)
    # retryable follows the status class
    for f in result.failed:
        if f.problem.status is not None and f.problem.status < 500:
            assert f.retryable is False


@given(sent=st.lists(st.sampled_from(IDS), min_size=1, max_size=12), status=st.sampled_from([200, 201, 204]),
       created=st.lists(st.sampled_from(IDS), max_size=12))
def test_201_and_204_mean_every_entity_written(sent, status, created):
    body = orjson.dumps(created) if status == 201 else b""
    result = parse_batch_response(status, body, sent)
    assert result.succeeded == list(dict.fromkeys(sent)) and result.failed == []


@given(body=st.binary(max_size=64))
def test_garbage_never_crashes(body):
    result = parse_batch_response(207, body, IDS[:3])
    assert len(result.succeeded) + len([f for f in result.failed if f.entity_id in IDS[:3]]) == 3
    try:
        parse_attribute_update(body)
    except ValueError:
        pass  # orjson.JSONDecodeError is a ValueError: the client maps it to InvalidResponse
