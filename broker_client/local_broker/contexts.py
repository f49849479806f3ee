"""JSON-LD @context handling: resolving context URLs and expanding / compacting NGSI-LD terms.

Only the part of JSON-LD an NGSI-LD broker needs is implemented: term definitions (strings,
``{"@id": ...}`` objects, compact IRIs with prefixes, ``@vocab``), nested context URLs and arrays.
The NGSI-LD core context is always applied last, so its terms cannot be redefined (as the
specification's ``@protected`` core context demands).

Context documents come from a :class:`ContextResolver`: the built-in core context, the Smart Data
Models files shipped in ``contexts/`` and any directory given with ``--context-dir``. A URL it does
not hold is answered with 503 LdContextNotAvailable unless a ``fetcher`` is plugged in.
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .errors import LD_CONTEXT_NOT_AVAILABLE, NgsiError, bad_request

log = logging.getLogger(__name__)

CONTEXTS_DIR = Path(__file__).parent / "contexts"
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld"
_CORE_URL_RE = re.compile(r"^https?://uri\.etsi\.org/ngsi-ld/v1/ngsi-ld-core-context(-v1\.\d+)?\.jsonld$")
NGSI_LD = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"

Fetcher = Callable[[str], Awaitable[Any]]


def is_core_context_url(url: str) -> bool:
    return bool(_CORE_URL_RE.match(url))


def _load_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return json.load(fh)


def load_core_context() -> dict:
    return _load_json(CONTEXTS_DIR / "ngsi-ld-core-context.jsonld")["@context"]


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
    pass


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

    ``fetcher`` is an optional ``async (url) -> document`` used for URLs that are not held; the
    document it returns may be ``{"@context": ...}`` or the bare context value.
    """

    def __init__(self, documents: dict[str, Any] | None = None, fetcher: Fetcher | None = None,
                 cache_size: int = 512) -> None:
        self.core = load_core_context()
        self.documents: dict[str, Any] = {}
        self.documents.update(load_context_dir(CONTEXTS_DIR))
        if documents:
            self.documents.update(documents)
        self.fetcher = fetcher
        self._cache: OrderedDict[str, CompiledContext] = OrderedDict()
        self._cache_size = cache_size
        self.core_context = self._build([], CORE_CONTEXT_URL, CORE_CONTEXT_URL)

    def add_document(self, url: str, context_value: Any) -> None:
        self.documents[url] = context_value
        self._cache.clear()

    async def document(self, url: str) -> Any:
        if is_core_context_url(url):
            return None  # the core context is applied last anyway
        if url in self.documents:
            return self.documents[url]
        if self.fetcher is not None:
            try:
                doc = await self.fetcher(url)
            except Exception as exc:  # a fetcher failure is an unavailable context
                raise ContextNotAvailable(url) from exc
            value = doc["@context"] if isinstance(doc, dict) and "@context" in doc else doc
            self.documents[url] = value
            return value
        raise ContextNotAvailable(url)

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
            raise NgsiError(503, LD_CONTEXT_NOT_AVAILABLE, "Unable to download context",
                            str(exc.args[0])) from None
        if link_url is None:
            link_url = _link_url_for(value)
        compiled = self._build(definitions, value, link_url)
        self._cache[key] = compiled
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled

    async def _collect(self, value: Any, out: list[dict], seen: set[str]) -> None:
        if value is None:
            out.clear()
        elif isinstance(value, str):
            if value in seen or is_core_context_url(value):
                return  # the core context is applied last anyway
            seen.add(value)
            await self._collect(await self.document(value), out, seen)
        elif isinstance(value, list):
            for item in value:
                await self._collect(item, out, seen)
        elif isinstance(value, dict):
            if "@context" in value and len(value) == 1:
                await self._collect(value["@context"], out, seen)
            else:
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
