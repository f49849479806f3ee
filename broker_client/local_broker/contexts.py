"""JSON-LD @context handling: resolving context URLs and expanding / compacting NGSI-LD terms.

Only the part of JSON-LD an NGSI-LD broker needs is implemented: term definitions (strings,
``{"@id": ...}`` objects, compact IRIs with prefixes, ``@vocab``), nested context URLs and arrays.
The NGSI-LD core context is always applied last, so its terms cannot be redefined (as the
specification's ``@protected`` core context demands).

Context documents come from a :class:`ContextResolver`: the built-in core context (every
``ngsi-ld-core-context-v1.3`` … ``v1.9`` URL and the unversioned one), every @context the
``stadtlink.schemas`` model registry knows (the bundled Smart Data Models, stadtlink's compound
context and the contexts of models installed packages declare — read from there, never copied)
and any directory given with ``--context-dir`` are held and never fetched.
Any other URL is downloaded by :class:`HttpContextFetcher` (5 s timeout, 3 attempts, as Orion-LD
does) and kept in a bounded in-memory cache; only a failed download is answered with 503
LdContextNotAvailable. Failures are not cached, so a context server that comes back is used again
without a restart.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver
from yarl import URL

from .errors import LD_CONTEXT_NOT_AVAILABLE, NgsiError, bad_request

log = logging.getLogger(__name__)

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
_CORE_URL_RE = re.compile(r"^https://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.[3-9])?\.jsonld$")
NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"

Fetcher = Callable[[str], Awaitable[Any]]
MAX_CONTEXT_URLS = 32  # context URLs one @context may pull in, nesting included
_ABSOLUTE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_core_context_url(url: str) -> bool:
    return bool(_CORE_URL_RE.match(url))


def _load_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return json.load(fh)


def load_core_context() -> dict:
    from stadtlink.schemas.vocabulary import CORE_CONTEXT_FILE

    return _load_json(CORE_CONTEXT_FILE)["@context"]


def packaged_documents() -> dict[str, Any]:
    """URL → ``@context`` value of every context the schemas registry knows (bundled and the
    ``stadtlink.models`` entry points of installed packages)."""
    from stadtlink.schemas.contexts import all_contexts

    documents: dict[str, Any] = {}
    for url, path in all_contexts().items():
        doc = _load_json(path)
        documents[url] = doc["@context"] if isinstance(doc, dict) and "@context" in doc else doc
    return documents


def load_context_dir(directory: Path) -> dict[str, Any]:
    """URL → ``@context`` value for a directory of context files.

    ``index.json`` (``{"<url>": "<file name>"}``) maps URLs to files. Files not named in an index
    are registered under their top-level ``"@id"`` member when they have one, and under
    ``file://<absolute path>`` always.
    """
    documents: dict[str, Any] = {}
    directory = Path(directory)
    index_path = directory / "index.json"
    indexed: set[str] = set()
    if index_path.is_file():
        for url, name in _load_json(index_path).items():
            doc = _load_json(directory / name)
            documents[url] = doc["@context"] if isinstance(doc, dict) and "@context" in doc else doc
            indexed.add(name)
    for path in sorted(directory.iterdir()):
        if path.name == "index.json" or not path.suffix in (".json", ".jsonld") or not path.is_file():
            continue
        try:
            doc = _load_json(path)
        except (OSError, ValueError) as exc:
            log.warning("context file %s skipped: %s", path, exc)
            continue
        if not isinstance(doc, dict) or "@context" not in doc:
            continue
        documents[path.resolve().as_uri()] = doc["@context"]
        if path.name not in indexed and isinstance(doc.get("@id"), str):
            documents[doc["@id"]] = doc["@context"]
    return documents


class ContextNotAvailable(Exception):
    """A context URL could not be resolved; ``args[0]`` is the URL, ``args[1]`` (if any) why."""


UNREACHABLE = "the context server could not be reached"
MAX_REDIRECTS = 5


def address_allowed(address: str) -> bool:
    """A global unicast address (not loopback, link-local, private, multicast, reserved, unspecified)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _PublicOnlyResolver(AbstractResolver):
    """Resolves host names with aiohttp's default resolver and keeps only public addresses, so the
    check holds for the address actually connected to (no DNS rebinding between check and use)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):  # type: ignore[override]
        infos = await self._inner.resolve(host, port, family)
        allowed = [i for i in infos if address_allowed(i["host"])]
        if not allowed:
            raise OSError(f"{host} resolves to no public address")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


class _Refused(Exception):
    """A URL whose host may not be fetched from (the reason stays in the broker's log)."""


class HttpContextFetcher:
    """Downloads remote @context documents (``async fetcher(url) -> {"@context": ...}``).

    ``timeout`` seconds per attempt, ``attempts`` tries for connection errors, timeouts and 5xx
    answers (a 4xx or a document that is not a JSON-LD context fails at once). Documents above
    ``max_bytes`` are refused. Only http(s) URLs are fetched.

    Unless ``allow_private`` is set, only public addresses are fetched from: a URL (or a redirect)
    naming or resolving to a loopback, link-local, private or otherwise non-global address is
    refused, so a client cannot make the broker probe its own network. Every way of not reaching
    the server (refused address, connection refused, timeout, DNS failure) answers the client the
    same :data:`UNREACHABLE` detail; the cause is logged.
    """

    def __init__(self, *, timeout: float = 5.0, attempts: int = 3, retry_delay: float = 0.2,
                 max_bytes: int = 2 * 1024 * 1024, allow_private: bool = False) -> None:
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.retry_delay = retry_delay
        self.max_bytes = max_bytes
        self.allow_private = allow_private
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = None if self.allow_private else aiohttp.TCPConnector(resolver=_PublicOnlyResolver())
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout), trust_env=False,
                headers={"Accept": "application/ld+json, application/json;q=0.9, */*;q=0.1"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _check_host(self, url: URL) -> None:
        if url.scheme not in ("http", "https") or not url.host:
            raise _Refused(f"{url}: only http(s) URLs with a host are fetched")
        if self.allow_private:
            return
        host = url.host
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            if host.rstrip(".").lower() == "localhost" or host.rstrip(".").lower().endswith(".localhost"):
                raise _Refused(f"{host} is a loopback name") from None
            return      # a name: the resolver keeps only its public addresses
        if not address_allowed(host):
            raise _Refused(f"{host} is not a public address")

    async def _get(self, url: str) -> tuple[int, bytes | None]:
        """(status, body) following up to MAX_REDIRECTS redirects, each hop's host checked."""
        target = URL(url)
        for _ in range(MAX_REDIRECTS + 1):
            self._check_host(target)
            async with self._client().get(target, allow_redirects=False) as resp:
                if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                    target = target.join(URL(resp.headers["Location"]))
                    continue
                if resp.status != 200:
                    return resp.status, None
                if resp.content_length is not None and resp.content_length > self.max_bytes:
                    raise ContextNotAvailable(url, "context document too large")
                raw = await resp.content.read(self.max_bytes + 1)
                if len(raw) > self.max_bytes:
                    raise ContextNotAvailable(url, "context document too large")
                return 200, raw
        raise ContextNotAvailable(url, "too many redirects")

    async def __call__(self, url: str) -> Any:
        if not url.startswith(("http://", "https://")):
            raise ContextNotAvailable(url, "only http(s) context URLs can be downloaded")
        reason = UNREACHABLE
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.retry_delay)
            try:
                status, raw = await self._get(url)
            except _Refused as exc:
                log.warning("@context %s not fetched: %s", url, exc)
                raise ContextNotAvailable(url, UNREACHABLE) from None
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                log.info("@context %s: attempt %d failed: %s: %s", url, attempt + 1, type(exc).__name__, exc)
                reason = UNREACHABLE
                continue
            if status >= 500:
                reason = f"HTTP {status}"
                continue
            if status != 200 or raw is None:
                raise ContextNotAvailable(url, f"HTTP {status}")
            try:
                doc = json.loads(raw)
            except (ValueError, RecursionError):
                raise ContextNotAvailable(url, "the document is not JSON") from None
            if not isinstance(doc, dict) or "@context" not in doc:
                raise ContextNotAvailable(url, "the document has no @context member")
            return doc
        raise ContextNotAvailable(url, reason)


class CompiledContext:
    """An active context: term → IRI for expansion and IRI → term for compaction."""

    __slots__ = ("terms", "vocab", "reverse", "value", "link_url", "vocab_terms", "prefixes",
                 "_expand_cache")

    def __init__(self, terms: dict[str, str], vocab: str, value: Any, link_url: str,
                 vocab_terms: set[str]) -> None:
        self.terms = terms
        self.vocab = vocab
        self.value = value  # what goes into "@context" of ld+json answers
        self.link_url = link_url  # what goes into the Link header of json answers
        self.vocab_terms = vocab_terms  # IRIs whose values are vocabulary terms ("@type": "@vocab")
        reverse: dict[str, str] = {}
        for term, iri in terms.items():
            known = reverse.get(iri)
            if known is None or (len(term), term) < (len(known), known):
                reverse[iri] = term
        self.reverse = reverse
        # terms usable as prefixes of compact IRIs ("ngsi-ld:default-context/x"), as in JSON-LD 1.1
        self.prefixes = [(iri, term) for term, iri in terms.items()
                         if ":" not in term and iri[-1:] in ("/", "#", ":", "?", "[", "]", "@")]
        self._expand_cache: dict[str, str] = {}

    def expand(self, term: str) -> str:
        cached = self._expand_cache.get(term)
        if cached is not None:
            return cached
        iri = self.terms.get(term)
        if iri is None:
            if ":" in term:
                prefix, _, suffix = term.partition(":")
                base = self.terms.get(prefix)
                iri = base + suffix if base is not None and not suffix.startswith("//") else term
            else:
                iri = self.vocab + term
        if len(self._expand_cache) < 10000:
            self._expand_cache[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab):
            rest = iri[len(self.vocab):]
            if rest and rest not in self.terms:
                return rest
        best = None
        for prefix_iri, prefix in self.prefixes:
            if iri.startswith(prefix_iri) and len(iri) > len(prefix_iri):
                candidate = prefix + ":" + iri[len(prefix_iri):]
                if candidate in self.terms:
                    continue
                if best is None or (len(candidate), candidate) < (len(best), best):
                    best = candidate
        return best if best is not None else iri


_KEYWORD_ALIASES = {"@id", "@type"}


def _compile_terms(definitions: dict[str, Any]) -> tuple[dict[str, str], str, set[str]]:
    """Resolve raw term definitions (later ones already override earlier) into full IRIs."""
    vocab = definitions.get("@vocab") or DEFAULT_VOCAB
    raw: dict[str, str] = {}
    vocab_typed: set[str] = set()
    for term, definition in definitions.items():
        if term.startswith("@") or definition is None:
            continue
        if isinstance(definition, str):
            target = definition
        elif isinstance(definition, dict):
            target = definition.get("@id", term)
            if definition.get("@type") == "@vocab":
                vocab_typed.add(term)
            if not isinstance(target, str):
                continue
        else:
            continue
        if target in _KEYWORD_ALIASES:
            continue
        raw[term] = target

    resolved: dict[str, str] = {}

    def resolve(term: str, depth: int = 0) -> str:
        done = resolved.get(term)
        if done is not None:
            return done
        target = raw[term]
        if depth > 8:
            iri = target
        elif ":" in target:
            prefix, _, suffix = target.partition(":")
            if prefix in raw and prefix != term and not suffix.startswith("//"):
                iri = resolve(prefix, depth + 1) + suffix
            else:
                iri = target
        elif target in raw and target != term:
            iri = resolve(target, depth + 1)
        else:
            iri = vocab + target
        resolved[term] = iri
        return iri

    for term in raw:
        resolve(term)
    return resolved, vocab, {resolved[t] for t in vocab_typed if t in resolved}


def _link_url_for(value: Any) -> str:
    """The URL a Link header can name for a context value: its one non-core URL, else the core."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        urls = [v for v in value if not is_core_context_url(v)]
        if len(urls) == 1:
            return urls[0]
    return CORE_CONTEXT_URL


class ContextResolver:
    """Holds context documents by URL and compiles (and caches) active contexts.

    ``documents`` (URL → ``@context`` value) are held for good, as are the packaged ones.
    ``fetcher`` is an ``async (url) -> document`` for URLs that are not held (default: an
    :class:`HttpContextFetcher`; ``fetcher=False`` downloads nothing); the document it returns may
    be ``{"@context": ...}`` or the bare context value. Downloaded documents are kept in an LRU of
    ``fetched_cache_size`` entries; concurrent requests for one URL share one download.
    """

    def __init__(self, documents: dict[str, Any] | None = None, fetcher: Fetcher | None | bool = None,
                 cache_size: int = 512, fetched_cache_size: int = 256) -> None:
        self.core = load_core_context()
        self.documents: dict[str, Any] = {}
        self.documents.update(packaged_documents())
        if documents:
            self.documents.update(documents)
        if fetcher is None:
            fetcher = HttpContextFetcher()
        self.fetcher: Fetcher | None = fetcher or None
        self.fetched: OrderedDict[str, Any] = OrderedDict()
        self._fetched_cache_size = fetched_cache_size
        self._in_flight: dict[str, asyncio.Future] = {}
        self._cache: OrderedDict[str, CompiledContext] = OrderedDict()
        self._cache_size = cache_size
        self.core_context = self._build([], CORE_CONTEXT_URL, CORE_CONTEXT_URL)

    def add_document(self, url: str, context_value: Any) -> None:
        self.documents[url] = context_value
        self._cache.clear()

    async def close(self) -> None:
        """Abandon pending downloads and close the fetcher's HTTP session."""
        for task in list(self._in_flight.values()):
            task.cancel()
        close = getattr(self.fetcher, "close", None)
        if close is not None:
            await close()

    async def document(self, url: str) -> Any:
        if is_core_context_url(url):
            return None  # the core context is applied last anyway
        held = self.documents.get(url)
        if held is not None:
            return held
        value = self.fetched.get(url)
        if value is not None:
            self.fetched.move_to_end(url)
            return value
        if self.fetcher is None:
            raise ContextNotAvailable(url, "not held and downloading is off")
        # one download per URL, in its own task: a request that goes away does not cancel it
        task = self._in_flight.get(url)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._download(url))
            self._in_flight[url] = task
            task.add_done_callback(lambda t, u=url: self._download_done(u, t))
        return await asyncio.shield(task)

    def _download_done(self, url: str, task: asyncio.Task) -> None:
        self._in_flight.pop(url, None)
        if task.cancelled() or task.exception() is not None:
            return  # failures are not cached: the next request tries again
        self.fetched[url] = task.result()
        if len(self.fetched) > self._fetched_cache_size:
            self.fetched.popitem(last=False)

    async def _download(self, url: str) -> Any:
        try:
            doc = await self.fetcher(url)
        except ContextNotAvailable:
            raise
        except Exception as exc:  # a fetcher failure is an unavailable context
            raise ContextNotAvailable(url, str(exc) or type(exc).__name__) from exc
        value = doc["@context"] if isinstance(doc, dict) and "@context" in doc else doc
        if value is None or not isinstance(value, (str, list, dict)):
            raise ContextNotAvailable(url, "the document holds no usable @context")
        log.info("downloaded @context %s", url)
        return value

    async def compile(self, value: Any, *, link_url: str | None = None) -> CompiledContext:
        """The active context for a Link URL or a body ``@context`` value (None = core only).

        Raises NgsiError 503 LdContextNotAvailable for URLs that cannot be resolved and 400 for
        malformed context values.
        """
        if value is None or (isinstance(value, str) and is_core_context_url(value)):
            return self.core_context
        key = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        compiled = self._cache.get(key)
        if compiled is not None:
            self._cache.move_to_end(key)
            return compiled
        definitions: list[dict] = []
        try:
            await self._collect(value, definitions, set())
        except ContextNotAvailable as exc:
            detail = exc.args[0] if len(exc.args) < 2 else f"{exc.args[0]} ({exc.args[1]})"
            log.warning("@context not available: %s", detail)
            raise NgsiError(503, LD_CONTEXT_NOT_AVAILABLE, "Unable to download context",
                            detail) from None
        if link_url is None:
            link_url = _link_url_for(value)
        compiled = self._build(definitions, value, link_url)
        self._cache[key] = compiled
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled

    async def _collect(self, value: Any, out: list[dict], seen: set[str], base: str | None = None) -> None:
        if value is None:
            out.clear()
        elif isinstance(value, str):
            if base is not None and not _ABSOLUTE_RE.match(value):
                value = urljoin(base, value)
            if value in seen or is_core_context_url(value):
                return  # the core context is applied last anyway
            if len(seen) >= MAX_CONTEXT_URLS:
                raise bad_request("Invalid @context",
                                  f"more than {MAX_CONTEXT_URLS} context URLs in one @context")
            seen.add(value)
            await self._collect(await self.document(value), out, seen, value)
        elif isinstance(value, list):
            for item in value:
                await self._collect(item, out, seen, base)
        elif isinstance(value, dict):
            if "@context" in value and len(value) == 1:
                await self._collect(value["@context"], out, seen, base)
                return
            imported = value.get("@import")  # JSON-LD 1.1: a context naming a further URL
            if isinstance(imported, str):
                await self._collect(imported, out, seen, base)
                value = {k: v for k, v in value.items() if k != "@import"}
            out.append(value)
        else:
            raise bad_request("Invalid @context", "an @context must be a string, an object or an array")

    def _build(self, definitions: list[dict], value: Any, link_url: str) -> CompiledContext:
        merged: dict[str, Any] = {}
        for definition in definitions:
            merged.update(definition)
        merged.update(self.core)  # the core context comes last and wins
        terms, vocab, vocab_terms = _compile_terms(merged)
        return CompiledContext(terms, vocab, value, link_url, vocab_terms)
