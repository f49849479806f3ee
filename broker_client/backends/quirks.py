"""One table of quirks per NGSI-LD broker kind, read once when a backend is built.

Everything that differs between Orion-LD, Scorpio and Stellio for the write path lives in the
rows below -- nowhere else is there an ``if kind == ...``. What each row says was read in the
broker's own repository; docs/backends/<kind>.md names file and commit for every line.

The batch-answer *parser* (:func:`stadtlink.broker_client.results.parse_batch_response`) accepts the union
of every shape listed in ``batch_answers``: deployments run old images, and an answer shape from
another version must never be mistaken for success. Where an answer says nothing per entity (an
empty 207, or ids neither listed as success nor as error) the entities are re-sent (an upsert
is idempotent), never assumed written or failed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..client import MAX_PAGE_SIZE


@dataclass(frozen=True, slots=True)
class BrokerQuirks:
    kind: str
    label: str
    default_port: int
    #: request header that selects the tenant
    tenant_header: str
    #: what a tenant name may look like (checked at start-up, naming ``broker.tenant``)
    tenant_pattern: re.Pattern[str]
    tenant_hint: str
    #: most entities the broker takes in one batch request
    max_batch_entities: int
    #: default request-body budget (bytes), safely under the broker's own limit
    max_body_bytes: int
    #: the broker's own body limit, for the docs and the error message
    body_limit_note: str
    #: largest ``limit`` a query may use
    max_page_size: int
    #: every answer shape of ``POST /entityOperations/upsert`` the broker is known to give
    batch_answers: tuple[str, ...] = field(default=())
    #: how authentication is usually done in front of / inside the broker
    auth_note: str = ""
    #: subscription members (dotted paths) that GET may return as a bare value when they hold one
    #: element (JSON-LD array compaction without ``@container: @set``); compared as lists
    subscription_scalar_lists: tuple[str, ...] = ()
    #: what the broker answers to subscription create / retrieve / update / delete
    subscription_answers: tuple[str, ...] = field(default=())
    #: which answer of a notification receiver the broker counts as a delivered notification
    notification_success: str = "any 2xx"


_PLAIN_TENANT = re.compile(r"^[A-Za-z0-9_\-]{1,50}$")
# Stellio: tenant names are configured URNs (application.tenants[n].name), e.g. urn:ngsi-ld:tenant:default.
_URN_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._\-]{0,199}$")

QUIRKS: dict[str, BrokerQuirks] = {
    "orion-ld": BrokerQuirks(
        kind="orion-ld",
        label="Orion-LD",
        default_port=1026,
        tenant_header="NGSILD-Tenant",
        tenant_pattern=_PLAIN_TENANT,
        tenant_hint="1-50 letters, digits, '_' or '-'",
        max_batch_entities=1000,
        max_body_bytes=900_000,
        body_limit_note="1 MiB (-inReqPayloadMaxSize), 413 above it",
        max_page_size=MAX_PAGE_SIZE,
        batch_answers=(
            "201 [created ids] (experimental mode lists only the created ones)",
            "204 (every entity existed)",
            '207 {"success": [ids], "errors": [{"entityId", "error": {type, title, detail, status}}]}',
            "207 with placeholder ids (no entity::id) for entities without a usable id",
        ),
        auth_note="none built in; a PEP proxy (Wilma, Kong, APISIX) checks a bearer token",
        subscription_answers=(   # ../shared/reference/orion-ld.md section 4
            "POST 201 + Location /ngsi-ld/v1/subscriptions/<id>, existing id 409",
            "GET 200, PATCH 204, DELETE 204, unknown id 404",
        ),
    ),
    "scorpio": BrokerQuirks(
        kind="scorpio",
        label="Scorpio",
        default_port=9090,
        tenant_header="NGSILD-Tenant",
        tenant_pattern=_PLAIN_TENANT,
        tenant_hint="1-50 letters, digits, '_' or '-' (it becomes a database name)",
        max_batch_entities=1000,
        max_body_bytes=4_000_000,
        body_limit_note="no limit set by Scorpio: Quarkus quarkus.http.limits.max-body-size default (10240K), 413 above it",
        max_page_size=MAX_PAGE_SIZE,
        batch_answers=(
            "201 [created ids] (every entity new, or a mix)",
            "204 (every entity updated)",
            '207 {"success": [ids], "errors": [{"id", "type": "Upsert", "ProblemDetails": {...}}]}',
            '400 / 404 / 409 / 503 {"errors": [...]} when every entity failed (not 207)',
            "207 with an empty body (#329, Scorpio 2.1.22): nothing said per entity -> re-sent",
            "204 for a mixed create/update batch (#451): every entity written",
            '207 [{"id", "type": "Upsert", "success": [...]}, {"id", "type": "Upsert", "failure": [ProblemDetails]}] (#466)',
        ),
        auth_note="none built in; a PEP proxy in front checks a bearer token",
        # AppConstants.FORCE_ARRAY_FIELDS keeps entities / watchedAttributes / receiverInfo /
        # notifierInfo arrays; every other member is compacted by JSON-LD rules (docs/backends/scorpio.md)
        subscription_scalar_lists=("notification.attributes", "notificationTrigger"),
        subscription_answers=(
            "POST 201 + absolute Location (RestResponse.created), 409 AlreadyExists",
            "GET 200 the stored payload compacted with the request's Link context + status, jsonldContext, "
            "timesSent, timesFailed; one-element arrays as a bare value except FORCE_ARRAY_FIELDS",
            "PATCH 204 (top-level merge: subscription || patch), DELETE 204, unknown id 404 ResourceNotFound",
            "GET list: limit above scorpio.subscription.max-limit (1000) -> 403 TooManyResults",
        ),
        notification_success="any 2xx (SubscriptionService.sendNotification)",
    ),
    "stellio": BrokerQuirks(
        kind="stellio",
        label="Stellio",
        default_port=8080,
        tenant_header="NGSILD-Tenant",
        tenant_pattern=_URN_TENANT,
        tenant_hint="a tenant name configured in Stellio (application.tenants[n].name), e.g. urn:ngsi-ld:tenant:default",
        max_batch_entities=1000,
        max_body_bytes=1_900_000,
        body_limit_note="2 MiB (spring.http.codecs.max-in-memory-size=2097152), configurable",
        max_page_size=100,
        batch_answers=(
            "201 [created ids] (only the created ones; the others were updated)",
            "204 (every entity updated)",
            '207 {"success": [ids], "errors": [{"entityId", "error": {type, title, status?}, "registrationId": null}]}',
            '207 {"success": [], "errors": [...]} when every entity failed',
            '404 {"type": ".../NonexistentTenant"} for a tenant it does not know, on every request',
        ),
        auth_note="off by default; when on, a JWT from the tenant's Keycloak realm (client-credentials grant)",
        subscription_answers=(
            "POST 201 + relative Location /ngsi-ld/v1/subscriptions/<id>, 409 AlreadyExists, unknown member 400",
            "GET 200 the model rendered: defaults filled (notificationTrigger, format, endpoint.accept, status), "
            "isActive only when false, timesSent only when > 0, createdAt/modifiedAt only with options=sysAttrs",
            "PATCH 204 (top-level merge), DELETE 204, unknown id 404 ResourceNotFound",
            "GET list: limit above 100 -> 403 TooManyResults",
        ),
        notification_success="200 only: any other answer (204 too) marks the notification failed "
                             "(NotificationService.callSubscriber)",
    ),
}

NGSI_LD_KINDS = tuple(QUIRKS)


def quirks_for(kind: str) -> BrokerQuirks:
    try:
        return QUIRKS[kind]
    except KeyError:
        raise KeyError(f"unknown NGSI-LD broker kind {kind!r}; known: {', '.join(QUIRKS)}") from None
