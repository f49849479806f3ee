"""A small HTTP server for the JSON-LD @context files, so a broker resolves ``Link`` headers offline.

Orion-LD fetches the @context URL an adapter names in its ``Link`` header. Inside a cluster without
internet access those URLs must be served locally: this server answers every @context file shipped
in :data:`schemas.CONTEXTS` at a path that mirrors its upstream URL (``/<host><path>``, see
:func:`served_path`), plus the files of ``--dir`` directories at ``/<file name>`` (the Helm chart
mounts its generated compound context there; it names the in-cluster URLs of the nested files).

    python -m stadtlink.adapters.core.context_server --port 8080 --dir /etc/stadtlink/contexts
    python -m stadtlink.adapters.core.context_server --list          # the paths it would serve

Every file is read and parsed once at start-up (a broken file stops the start with a clear message),
then served from memory with ``Content-Type: application/ld+json``, an ``ETag`` and
``Access-Control-Allow-Origin: *``; ``GET /healthz`` answers ``ok``; ``GET /`` lists the paths.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence
from urllib.parse import urlsplit

from aiohttp import web

JSONLD = "application/ld+json"


class ContextFileError(Exception):
    """A context file that cannot be read or is not a JSON object."""


@dataclass(frozen=True)
class ServedFile:
    path: str          # URL path, starting with "/"
    body: bytes
    etag: str
    source: str        # where it came from (upstream URL or file path), for --list


def served_path(url: str) -> str:
    """``https://raw.githubusercontent.com/a/b/context.jsonld`` → ``/raw.githubusercontent.com/a/b/context.jsonld``."""
    parts = urlsplit(url)
    if not parts.netloc or not parts.path:
        raise ValueError(f"not an absolute http(s) URL with a path: {url!r}")
    return "/" + parts.netloc + parts.path


def _load(path: Path, url_path: str, source: str) -> ServedFile:
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise ContextFileError(f"cannot read {path}: {exc.strerror}") from None
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise ContextFileError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "@context" not in doc:
        raise ContextFileError(f"{path} is not a JSON-LD context document (no top-level @context)")
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return ServedFile(url_path, body, etag, source)


def packaged_files() -> list[ServedFile]:
    """Every @context file this package ships, at its mirrored upstream path."""
    from stadtlink.schemas.contexts import CONTEXTS

    return [_load(Path(file), served_path(url), url) for url, file in sorted(CONTEXTS.items())]


def directory_files(directory: str | Path) -> list[ServedFile]:
    """``*.json`` / ``*.jsonld`` files directly in ``directory`` (hidden names such as a ConfigMap's
    ``..data`` are skipped), served at ``/<name>``."""
    d = Path(directory)
    if not d.is_dir():
        raise ContextFileError(f"--dir {d}: not a directory")
    out = []
    for p in sorted(d.iterdir()):
        if p.name.startswith(".") or p.suffix not in (".json", ".jsonld") or not p.is_file():
            continue
        out.append(_load(p, "/" + p.name, str(p)))
    return out


def collect(dirs: Iterable[str | Path] = (), *, packaged: bool = True) -> dict[str, ServedFile]:
    files: dict[str, ServedFile] = {}
    for f in (packaged_files() if packaged else []) + [f for d in dirs for f in directory_files(d)]:
        files[f.path] = f          # a --dir file may replace a packaged one of the same path
    return files


def create_app(files: dict[str, ServedFile]) -> web.Application:
    index = json.dumps(sorted(files), indent=1).encode()

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def listing(request: web.Request) -> web.Response:
        return web.Response(body=index, content_type="application/json")

    async def serve(request: web.Request) -> web.StreamResponse:
        f = files.get(request.path)
        if f is None:
            return web.Response(status=404, text=f"no @context at {request.path}\n")
        headers = {"ETag": f.etag, "Cache-Control": "public, max-age=3600",
                   "Access-Control-Allow-Origin": "*"}
        if f.etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=f.body, content_type=JSONLD, headers=headers)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", listing)
    app.router.add_get("/{tail:.+}", serve)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stadtlink contexts serve",
                                     description="serve the JSON-LD @context files for a broker")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--dir", action="append", default=[],
                        help="also serve the *.json/*.jsonld files of this directory at /<name> (repeatable)")
    parser.add_argument("--no-packaged", action="store_true", help="serve only the --dir files")
    parser.add_argument("--list", action="store_true", help="print the served paths and exit")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:          # as `stadtlink contexts serve ...`
        argv = argv[1:]
    args = parser.parse_args(argv)
    try:
        files = collect(args.dir, packaged=not args.no_packaged)
    except ContextFileError as exc:
        print(f"stadtlink: {exc}", file=sys.stderr)
        return 2
    if args.list:
        for path, f in sorted(files.items()):
            print(f"{path}\t{f.source}")
        return 0
    print(f"serving {len(files)} @context files on {args.host}:{args.port}", file=sys.stderr, flush=True)
    web.run_app(create_app(files), host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
