"""A local, in-memory NGSI-LD broker that stands in for Orion-LD.

For development, tests, integrators and the demo only: all state lives in the memory of one
process and is lost when it stops. It is NOT a production broker. See README.md in this folder.

    from stadtlink.broker_client.local_broker import running_broker

    async with running_broker() as url:      # http://127.0.0.1:<free port>
        ...                                  # talk NGSI-LD to f"{url}/ngsi-ld/v1/..."
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from ..netaddr import is_loopback_host
from .app import BROKER_KEY, BrokerApp, create_app

__all__ = ["create_app", "serve", "main", "running_broker", "BrokerApp", "BROKER_KEY"]


async def serve(host: str = "127.0.0.1", port: int = 1026, **kw: Any) -> web.AppRunner:
    """Start the broker on host:port; returns the started AppRunner (``await runner.cleanup()`` stops it).

    Keyword arguments go to :func:`create_app`. With ``port=0`` a free port is chosen; read it from
    ``runner.addresses``. Unless ``context_allow_private`` is given, a broker listening on a
    loopback address only may download @context documents from private addresses (its clients
    are on this machine and reach them anyway); one listening on any other address may not.
    """
    if kw.get("context_allow_private") is None:
        kw["context_allow_private"] = is_loopback_host(host)
    app = create_app(**kw)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    return runner


def runner_url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@contextlib.asynccontextmanager
async def running_broker(port: int = 0, host: str = "127.0.0.1", **kw: Any) -> AsyncIterator[str]:
    """Run a broker for the duration of the block and yield its base URL (``http://127.0.0.1:PORT``)."""
    runner = await serve(host, port, **kw)
    try:
        yield runner_url(runner)
    finally:
        await runner.cleanup()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stadtlink broker",
        description="Local in-memory NGSI-LD broker standing in for Orion-LD "
                    "(development, tests, demo; not for production).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1026, help="port (default 1026; 0 = any free port)")
    parser.add_argument("--context-dir", default=None,
                        help="directory of extra @context files to preload (see README.md)")
    parser.add_argument("--allow-private-contexts", action=argparse.BooleanOptionalAction, default=None,
                        help="download @context documents from loopback, link-local and private addresses "
                             "too (default: only when listening on a loopback address)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                        help="log level; DEBUG logs one line per request")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point (``stadtlink broker`` and ``python -m stadtlink.broker_client.local_broker``)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log = logging.getLogger("stadtlink.broker_client.local_broker")

    async def run() -> None:
        runner = await serve(args.host, args.port, context_dir=args.context_dir,
                             context_allow_private=args.allow_private_contexts)
        log.info("local NGSI-LD broker (in memory, not for production) listening on %s/ngsi-ld/v1",
                 runner_url(runner))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    return 0
