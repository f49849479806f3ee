"""Tell a broker's kind from its answers, for a URL given without one (``stadtlink demo --also-to URL``).

What each kind answers (first match wins):

* ``sensorthings``: the service root (the URL itself, with a trailing slash for
  django-ogc-sensorthings) is a JSON object whose ``value`` lists the entity sets, ``Things`` among
  them (OGC 18-088, 9.2.1 "Resource Path"; FROST-Server and django-ogc-sensorthings answer so);
* ``orion-ld``: ``GET /ngsi-ld/ex/v1/version`` answers JSON with an ``orionld version`` key
  (Orion-LD's ``orionldVersionGet``; reference/orion-ld.md);
* ``ngsi-v2``: ``GET /v2`` answers the classic Orion entry point (``entities_url`` ...) and
  ``GET /version`` an ``orion`` object (Orion's orion-api.md, "API Entry Point" and "Version").

An NGSI-LD broker that is not Orion-LD (``GET /ngsi-ld/v1/types`` answers, the version route does
not) is Scorpio or Stellio, which answer nothing that tells them apart reliably: the error asks for
``scorpio+URL`` or ``stellio+URL`` rather than guessing. Every answer is read to at most 64 KiB.
"""
from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

MAX_ANSWER = 64 * 1024


class UnknownBackend(ValueError):
    """The URL answered nothing that names a broker kind (the message says what it answered)."""


async def _get_json(session: aiohttp.ClientSession, url: str) -> tuple[int | None, Any]:
    """(status, parsed JSON or None); status None when the server could not be reached."""
    try:
        async with session.get(url, allow_redirects=True) as response:
            body = await response.content.read(MAX_ANSWER + 1)
            if len(body) > MAX_ANSWER:
                return response.status, None
            try:
                return response.status, orjson.loads(body)
            except orjson.JSONDecodeError:
                return response.status, None
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
        return None, None


def _is_sensorthings_root(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("value"), list) and any(
        isinstance(item, dict) and item.get("name") == "Things" for item in doc["value"])


async def detect_kind(url: str, *, timeout_s: float = 5.0) -> str:
    """The broker kind at ``url`` (``sensorthings``, ``orion-ld`` or ``ngsi-v2``), or
    :class:`UnknownBackend` saying what the server answered."""
    base = url.rstrip("/")
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        (root_status, root), (_, root_slash), (ld_status, ld_version), (types_status, _), (v2_status, v2), \
            (_, version) = await asyncio.gather(
                _get_json(session, base), _get_json(session, base + "/"),
                _get_json(session, base + "/ngsi-ld/ex/v1/version"), _get_json(session, base + "/ngsi-ld/v1/types"),
                _get_json(session, base + "/v2"), _get_json(session, base + "/version"))
    if _is_sensorthings_root(root) or _is_sensorthings_root(root_slash):
        return "sensorthings"
    if ld_status == 200 and isinstance(ld_version, dict) and any("orionld" in str(k) for k in ld_version):
        return "orion-ld"
    if v2_status == 200 and isinstance(v2, dict) and "entities_url" in v2 \
            or isinstance(version, dict) and isinstance(version.get("orion"), dict):
        return "ngsi-v2"
    if root_status is None:
        raise UnknownBackend(f"cannot reach {url}")
    if types_status == 200:
        raise UnknownBackend(f"{url} answers NGSI-LD but is not Orion-LD (no /ngsi-ld/ex/v1/version): Scorpio and "
                             "Stellio cannot be told apart from their answers, name the kind: scorpio+URL or "
                             "stellio+URL")
    raise UnknownBackend(f"{url} is neither a SensorThings service root, nor Orion-LD, nor an NGSI-v2 Orion "
                         f"(its root answered {root_status}); name the kind: KIND+URL")
