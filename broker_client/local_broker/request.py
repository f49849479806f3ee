"""NGSI-LD request rules common to every route (§1 of reference/orion-ld.md): URI parameters,
tenant headers, Accept negotiation, body reading and its size limit, the kind of payload."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from . import errors as E
from .contexts import CompiledContext
from .errors import NgsiError, bad_request, invalid_request
from .store import check_tenant_name

BASE = "/ngsi-ld/v1"
JSON = "application/json"
JSONLD = "application/ld+json"
GEOJSON = "application/geo+json"
MERGE_PATCH = "application/merge-patch+json"

KNOWN_PARAMS = {
    "id", "type", "idPattern", "attrs", "q", "geometry", "georel", "coordinates", "geoproperty",
    "geometryProperty", "csf", "limit", "offset", "count", "options", "format", "datasetId",
    "deleteAll", "timeproperty", "timerel", "timeAt", "endTimeAt", "lastN", "local", "details",
    "prettyPrint", "spaces", "lang", "scopeQ", "observedAt", "onlyIds", "entityMap", "pick", "omit",
    "join", "joinLevel", "containedBy", "attributeDetails", "orderBy", "collapse", "expandValues",
    "notificationTrigger", "reload", "kind", "url", "subscriptionId", "location", "doNotCompare",
}
KNOWN_OPTIONS = {"keyValues", "simplified", "concise", "normalized", "sysAttrs", "noOverwrite",
                 "update", "replace", "count", "append", "temporalValues", "aggregatedValues"}
_COMMON = {"prettyPrint", "spaces"}
QUERY_PARAMS = {"id", "type", "idPattern", "attrs", "q", "geometry", "georel", "coordinates",
                 "geoproperty", "geometryProperty", "csf", "limit", "offset", "count", "options",
                 "format", "lang", "pick", "omit", "local", "scopeQ", "datasetId", "join",
                 "joinLevel", "containedBy", "entityMap", "orderBy"}
RETRIEVE_PARAMS = {"attrs", "options", "format", "lang", "pick", "omit", "geometryProperty", "type",
                    "local", "datasetId", "join", "joinLevel", "containedBy", "entityMap"}


# NGSI-LD resources this stand-in does not serve: 501 rather than 404
_NOT_IMPLEMENTED = {"csourceRegistrations", "csourceSubscriptions", "jsonldContexts", "attributes",
                    "entityMap", "snapshots", "info"}



class Route:
    __slots__ = ("methods",)

    def __init__(self, methods: dict[str, tuple[Callable[..., Awaitable[web.StreamResponse]], set[str]]]):
        self.methods = methods


class Req:
    """What the handlers need about one request, after the common checks."""

    __slots__ = ("request", "params", "options", "tenant_name", "accept", "ctx", "body",
                 "content_type", "link_url", "path_args", "headers", "path")

    def __init__(self) -> None:
        self.params: dict[str, str] = {}
        self.options: set[str] = set()
        self.tenant_name: str | None = None
        self.accept = JSON
        self.ctx: CompiledContext | None = None
        self.body: Any = None
        self.content_type: str | None = None
        self.link_url: str | None = None
        self.path_args: tuple = ()
        self.headers: dict[str, str] = {}


# the deepest request body taken: an answer or a notification wraps a stored value in a few more
# levels (list, entity, attribute, MQTT envelope), which must stay below the encoder's limit
MAX_JSON_DEPTH = 100


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when arrays / objects in ``value`` nest more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def mime_type(value: str | None) -> str | None:
    if not value:
        return None
    return value.split(";", 1)[0].strip().lower()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj)


def error_response(err: NgsiError) -> web.Response:
    return web.Response(status=err.status, body=dumps(err.body()), content_type=JSON)



def check_params(request: web.Request, req: Req, supported: set[str]) -> None:
    for name, value in request.query.items():
        if name not in KNOWN_PARAMS:
            raise invalid_request("Unknown URI parameter", name)
        if name not in supported and name not in _COMMON:
            raise bad_request("Unsupported URI parameter", name)
        if value == "":
            raise bad_request("Empty right-hand-side for a URI parameter", name)
        if name == "options":
            for opt in value.split(","):
                if opt not in KNOWN_OPTIONS:
                    raise invalid_request("Invalid value for URI param /options/", opt)
                req.options.add(opt)
        elif name in req.params:
            req.params[name] += "," + value
        else:
            req.params[name] = value
    opts = req.options
    if "update" in opts and "replace" in opts:
        raise bad_request("URI Param Error", "options: both /update/ and /replace/ present")
    if sum(1 for group in (("keyValues", "simplified"), ("concise",), ("normalized",))
           if any(o in opts for o in group)) > 1:
        raise bad_request("Incoherent value for /options/ URI param",
                          "keyValues/simplified, concise and normalized are mutually exclusive")
    if "sysAttrs" in opts and ("keyValues" in opts or "simplified" in opts):
        raise bad_request("Incoherent value for /options/ URI param",
                          "sysAttrs cannot be combined with keyValues")


def check_tenant(request: web.Request, req: Req) -> None:
    ngsild = request.headers.get("NGSILD-Tenant")
    fiware = request.headers.get("Fiware-Service")
    if ngsild is not None and fiware is not None and ngsild.lower() != fiware.lower():
        raise bad_request("HTTP header duplication",
                          "NGSILD-Tenant and Fiware-Service with different values")
    name = ngsild if ngsild is not None else fiware
    if name is not None and name != "":
        req.tenant_name = check_tenant_name(name)


def negotiate_accept(request: web.Request) -> str:
    header = request.headers.get("Accept")
    if not header:
        return JSON
    best, best_q = None, -1.0
    for item in header.split(","):
        parts = [p.strip() for p in item.split(";")]
        mime = parts[0].lower()
        weight = 1.0
        for p in parts[1:]:
            if p.startswith("q="):
                try:
                    weight = float(p[2:])
                except ValueError:
                    weight = 0.0
        if mime in ("*/*", "application/*"):
            mime = JSON
        if mime not in (JSON, JSONLD, GEOJSON) or weight <= 0:
            continue
        if weight > best_q or (weight == best_q and mime == JSON):
            best, best_q = mime, weight
    if best is None:
        raise NgsiError(406, E.BAD_REQUEST_DATA, "Invalid Accept mime-type", header)
    return best


async def read_body(request: web.Request, req: Req, max_body: int) -> None:
    method = request.method
    length = request.content_length
    if length is not None and length > max_body:
        raise NgsiError(413, E.BAD_REQUEST_DATA, "Request Entity too large",
                        f"payload size: {length}, max size supported: {max_body}")
    if method in ("GET", "DELETE", "HEAD", "OPTIONS"):
        if (length or 0) > 0 or (length is None and request.body_exists):
            data = await request.content.read(1)
            if data:
                raise bad_request("Unexpected payload body", f"a {method} request has no payload")
        return
    ctype = mime_type(request.headers.get("Content-Type"))
    if method == "PATCH":
        if ctype not in (JSON, JSONLD, MERGE_PATCH):
            raise NgsiError(415, E.BAD_REQUEST_DATA, "unsupported format of payload",
                            "Content-Type must be application/json, application/ld+json or "
                            "application/merge-patch+json")
    elif method == "POST":
        if ctype not in (JSON, JSONLD):
            raise NgsiError(415, E.BAD_REQUEST_DATA, "unsupported format of payload",
                            "Content-Type must be application/json or application/ld+json")
    if ctype == MERGE_PATCH or ctype not in (JSON, JSONLD):
        ctype = JSON
    req.content_type = ctype
    link = request.headers.get("Link")
    if link is not None:
        if ctype == JSONLD:
            raise bad_request("invalid combination of HTTP headers Content-Type and Link",
                              "Content-Type is 'application/ld+json' and a Link header is present")
        req.link_url = link_url(link)
    buf = bytearray()
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        buf += chunk
        if len(buf) > max_body:
            raise NgsiError(413, E.BAD_REQUEST_DATA, "Request Entity too large",
                            f"payload size: >{max_body}, max size supported: {max_body}")
    if not buf.strip():
        raise bad_request("payload missing", "a payload body is needed")
    try:
        body = orjson.loads(bytes(buf))
    except orjson.JSONDecodeError as exc:
        raise invalid_request("JSON Parse Error", str(exc)) from None
    if not isinstance(body, (dict, list)):
        raise invalid_request("Invalid Payload Body", "the payload must be a JSON object or array")
    if nested_deeper_than(body, MAX_JSON_DEPTH):
        # stored, it could not be served back: JSON encoders stop at a nesting depth (orjson at 255)
        raise bad_request("Invalid Payload Body", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    req.body = body


def check_body_kind(req: Req, wants_array: bool) -> None:
    """Array where an object belongs (or the reverse) → InvalidRequest; {} / [] → BadRequestData."""
    body = req.body
    if body is None:
        return
    if isinstance(body, list) != wants_array:
        kind = "array" if wants_array else "object"
        raise invalid_request("Invalid Payload Body", f"the payload must be a JSON {kind}")
    if body == {}:
        raise bad_request("Invalid Payload Body", "Empty Object")
    if body == []:
        raise bad_request("Invalid Payload Body", "Empty Array")


def link_url(link: str) -> str:
    link = link.strip()
    if not link.startswith("<") or ">" not in link:
        raise bad_request("Invalid Link HTTP header", link)
    return link[1:link.index(">")].strip()
