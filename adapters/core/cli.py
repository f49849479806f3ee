"""The ``stadtlink`` command.

    stadtlink run ADAPTER --config FILE         run one adapter until SIGTERM/SIGINT
    stadtlink adapters [--json]                 installed adapters and their profiles
    stadtlink decode PROFILE INPUT [--fport N] [--entity] [--config FILE] [--adapter NAME]
    stadtlink config schema [--adapter NAME]    JSON Schema of a config file
    stadtlink deadletter list|replay ADAPTER --config FILE [--url http://HOST:PORT]
    stadtlink validate FILE...                  check entities against the SDM schemas
    stadtlink broker ...                        the local development broker
    stadtlink new-adapter NAME                  scaffold a device family
    stadtlink demo | twin | subscriptions ...

Exit codes: 0 ok, 1 bad input / runtime failure, 2 configuration or usage error.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import importlib
import os
import re
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import orjson

from .errors import ConfigError, DecodeError, MappingError, ReadingDropped

#: Sub-commands implemented elsewhere: name → (module, function). Imported only when used.
DELEGATES: dict[str, tuple[str, str, str]] = {
    "validate": ("stadtlink.schemas.validate_cli", "main", "check entities against the Smart Data Models schemas"),
    "broker": ("stadtlink.broker_client.local_broker", "main", "run the local development NGSI-LD broker"),
    "new-adapter": ("stadtlink.adapters.core.scaffold", "main", "create the skeleton of a new device family"),
    "demo": ("stadtlink.adapters.core.demo", "main", "run the demo (broker, simulators, adapters, map)"),
    "twin": ("stadtlink.broker_client.twin", "main", "follow entity changes like a digital twin does"),
    "subscriptions": ("stadtlink.broker_client.subscriptions", "main", "apply, list or delete NGSI-LD subscriptions"),
    "contexts": ("stadtlink.adapters.core.context_server", "main", "serve the JSON-LD @context files (the chart's context server)"),
    "context-server": ("stadtlink.adapters.core.context_server", "main", "serve the @context files (offline clusters)"),
}


def _dump(obj: Any) -> str:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2, default=str).decode()


def _err(msg: str) -> None:
    print(f"stadtlink: {msg}", file=sys.stderr)


def _delegate(name: str, argv: list[str]) -> int:
    module_name, func, _ = DELEGATES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            _err(f"'{name}' is not installed in this build (module {module_name} is missing)")
            return 1
        raise
    main = getattr(module, func, None)
    if main is None:
        _err(f"'{name}' is not available ({module_name} has no {func}())")
        return 1
    try:
        result = main(argv)
    except SystemExit as exc:      # argparse in the delegate: keep its exit code
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return int(result or 0)


# --- run ----------------------------------------------------------------------------------------------

def cmd_run(args) -> int:
    from .runner import Runner
    from .logging import setup_logging

    runner = Runner.from_config(args.config, adapter=args.adapter)
    setup_logging(runner.config.log_level, adapter=runner.adapter.name)
    try:
        asyncio.run(runner.run_until_signal())
    except KeyboardInterrupt:  # pragma: no cover - signal handler normally catches it
        pass
    return 0


# --- adapters -------------------------------------------------------------------------------------------

def cmd_adapters(args) -> int:
    from .plugins import load_adapters

    adapters, errors = load_adapters()
    if args.json:
        print(_dump({
            "adapters": [{"name": a.name, "description": a.description, "semantics": a.semantics,
                          "entity_types": list(a.entity_types),
                          "profiles": [{"name": p.name, "kind": p.kind, "description": p.description}
                                       for p in a.profiles.values()]} for a in sorted(adapters.values(),
                                                                                      key=lambda a: a.name)],
            "broken": [{"name": e.name, "target": e.target, "error": e.error} for e in errors]}))
    else:
        if not adapters:
            print("no adapters installed")
        for a in sorted(adapters.values(), key=lambda a: a.name):
            print(f"{a.name}  ({a.semantics}) {a.description}")
            if a.entity_types:
                print(f"  entities: {', '.join(a.entity_types)}")
            for p in a.profiles.values():
                print(f"  {p.name:<24} {p.kind:<8} {p.description}")
        for e in errors:
            print(f"broken plugin {e.name} ({e.target}): {e.error}", file=sys.stderr)
    return 0


# --- decode ----------------------------------------------------------------------------------------------

_HEX = re.compile(r"^(?:0x)?[0-9a-fA-F\s]+$")


_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]+={0,2}$")


def _read_input(spec: str) -> bytes:
    """INPUT: ``-`` (stdin), a file, or the payload inline — hex (``0x`` and spaces allowed),
    base64, or a JSON document. An existing file of that name wins."""
    if spec == "-":
        return sys.stdin.buffer.read()
    path = Path(spec)
    if path.is_file():
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DecodeError("input", f"cannot read {spec}: {exc.strerror}") from None
    text = spec.strip()
    looks_like_path = text.startswith(("/", "./", "../", "~")) or (
        "/" in text and Path(text).parent.is_dir() and str(Path(text).parent) not in ("", "."))
    if text[:1] in ("{", "[", "<") or _HEX.match(text) or (
            not looks_like_path and _BASE64.match(text) and len(re.sub(r"\s+", "", text)) % 4 == 0):
        return text.encode()
    if looks_like_path:
        raise DecodeError("input", f"cannot read {spec}: No such file")
    raise DecodeError("input", f"{spec!r} is neither a file nor inline hex, base64 or JSON")


def _raw_bytes(text: str) -> bytes:
    compact = re.sub(r"\s+", "", text)
    if compact.lower().startswith("0x"):
        compact = compact[2:]
    if compact and _HEX.match(compact) and len(compact) % 2 == 0:
        return bytes.fromhex(compact)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("input", "not hex, base64, JSON or XML") from None


def decode_input(profile, data: bytes, *, f_port: int | None, device: str | None,
                 options: dict[str, Any]) -> list:
    """Readings of one CLI input for ``profile`` (see the module doc for what INPUT may be)."""
    from .lorawan import parse_uplink
    from .reading import RawMessage, Uplink

    now = datetime.now(timezone.utc)
    text = data.strip()
    doc = None
    if text[:1] in (b"{", b"["):
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("invalid-json", str(exc)) from None
    if profile.kind == "lorawan" or hasattr(profile, "decode_uplink"):
        if isinstance(doc, dict):
            uplink = parse_uplink(doc)
            if f_port is not None and uplink.f_port is None:
                uplink.f_port = f_port
        elif doc is not None:
            raise DecodeError("not-an-uplink", "a JSON array is not a LoRaWAN uplink")
        else:
            payload = _raw_bytes(text.decode("ascii", errors="replace"))
            uplink = Uplink(network="cli", device_id=device or CLI_DEVICE, dev_eui=None, application_id=None,
                            tenant=None, f_port=f_port, f_cnt=0, payload=payload, received_at=now,
                            gateway_time=None, rssi=None, snr=None, decoded=None)
        if hasattr(profile, "decode_uplink"):
            return profile.decode_uplink(uplink)
        return profile.decode(RawMessage("cli", uplink, now, None, device), options)
    payload: Any = data
    if profile.kind == "modbus":
        if doc is None:
            raise DecodeError("input", "a modbus profile reads a JSON register dump")
        payload = doc
    msg = RawMessage(source="cli", payload=payload, received_at=now, topic=None, device_hint=device,
                     attributes={"options": options} if options else {})
    return profile.decode(msg, options)


#: what the CLI names a device when the input does not and --device was not given
CLI_DEVICE = "cli"


def decode_cli_input(profile, data: bytes, *, f_port: int | None, device: str | None,
                     options: dict[str, Any]) -> list:
    """:func:`decode_input` with the CLI's defaults instead of demands.

    Raw LoRaWAN bytes go to the decoder without a port when ``--fport`` is not given: most
    decoders never read it. One that dispatches on the port refuses the frame (a reason tag naming
    the port), and the error then says to give ``--fport``. A polled answer that names no device (a
    PEGELONLINE current measurement, a Fronius answer) is decoded again as device ``cli`` when the
    first attempt refused it and ``--device`` was not given, with a note on stderr.
    """
    try:
        return decode_input(profile, data, f_port=f_port, device=device, options=options)
    except DecodeError as exc:
        if f_port is None and "port" in exc.reason and _is_raw(data):
            raise DecodeError(exc.reason, f"{exc.detail} (this profile reads the LoRaWAN port: give --fport N)"
                              if exc.detail else "this profile reads the LoRaWAN port: give --fport N") from None
        if device is not None or _is_raw(data) and (profile.kind == "lorawan" or hasattr(profile, "decode_uplink")):
            raise
        try:
            readings = decode_input(profile, data, f_port=f_port, device=CLI_DEVICE, options=options)
        except DecodeError:
            raise exc from None
        print(f"note: the input names no device ({exc.reason}); decoded as device {CLI_DEVICE!r}, "
              f"give --device ID to name it", file=sys.stderr)
        return readings


def _is_raw(data: bytes) -> bool:
    """Raw payload bytes (hex or base64), not a JSON or XML document."""
    return data.strip()[:1] not in (b"{", b"[", b"<")


def cmd_decode(args) -> int:
    from . import plugins
    from .adapter import MapContext
    from .registry import DeviceRegistry

    try:
        options = orjson.loads(args.options) if args.options else {}
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"--options: not JSON: {exc}") from None
    spec, profile = plugins.find_profile(args.profile, args.adapter)
    data = _read_input(args.input)
    try:
        readings = decode_cli_input(profile, data, f_port=args.fport, device=args.device, options=options)
    except (DecodeError, ReadingDropped):
        raise
    except Exception as exc:  # noqa: BLE001 - a decoder bug is reported, not a traceback
        raise DecodeError("decoder-crash", f"{type(exc).__name__}: {exc}") from None
    if not args.entity:
        print(_dump([r.as_json() for r in readings]))
        return 0
    settings = None
    namespace = "cli"
    registry = DeviceRegistry()
    config_path = args.config or (str(spec.example_config) if spec.example_config else None)
    if config_path:
        from .config import load_config

        cfg, base = load_config(config_path, adapter=spec)
        registry = DeviceRegistry.load(inline=cfg.devices, files=cfg.registry_files, base_dir=base)
        settings, namespace = cfg.settings, cfg.namespace
    else:
        settings = spec.validate_settings(None)
    ctx = MapContext(namespace=namespace, registry=registry, settings=settings, lenient=True,
                     now=datetime.now(timezone.utc))
    entities = []
    for reading in readings:
        try:
            entities.extend(spec.mapper(reading, ctx))
        except ReadingDropped as exc:
            print(f"reading of {reading.device_id} dropped: {exc}", file=sys.stderr)
    for miss in dict.fromkeys(ctx.missing):
        print(f"missing: {miss}", file=sys.stderr)
    print(_dump(entities))
    return 0


# --- config schema ----------------------------------------------------------------------------------------

def cmd_config(args) -> int:
    from .config import config_json_schema, config_model
    from .plugins import get_adapter, load_adapters

    if args.adapter:
        spec = get_adapter(args.adapter)
        schema = config_model(spec).model_json_schema()
    else:
        adapters, errors = load_adapters()
        for e in errors:
            print(f"broken plugin {e.name} ({e.target}): {e.error}", file=sys.stderr)
        schema = config_json_schema(adapters)
    print(_dump(schema))
    return 0


# --- dead letters -----------------------------------------------------------------------------------------

async def _deadletter(args) -> int:
    from .runner import Runner

    runner = Runner.from_config(args.config, adapter=args.adapter)
    if runner.config.outbox.kind != "redis" or args.url:
        if args.action == "list":
            return await _deadletter_list_http(args, runner.config)
        _err("dead letters of an adapter with the memory outbox live only inside its process: "
             "`stadtlink deadletter list` shows them through its HTTP port; to replay them, "
             "configure `outbox: {kind: redis}`")
        return 1
    if args.action == "list":
        await runner._setup_core()
        try:
            records = await runner.deadletters.list(args.limit)
            total = await runner.deadletters.count()
        finally:
            await runner.outbox.close()
            if runner.backend is not None and hasattr(runner.backend, "close"):
                await runner.backend.close()
            if runner._redis_client is not None:
                await runner._redis_client.aclose()
        if args.json:
            print(_dump({"total": total, "records": [{"id": i, **r} for i, r in records]}))
        else:
            print(f"{total} dead letter(s)" + (f", showing {len(records)}" if total > len(records) else ""))
            for rec_id, r in records:
                print(f"{rec_id}  {r.get('time')}  {r.get('reason')} [{r.get('stage')}]  "
                      f"device={r.get('device_id')}  {r.get('error')}")
        return 0
    await runner.start(sources=False, http=False)
    try:
        stats = await runner.replay_deadletters(args.limit)
    finally:
        await runner.stop(grace=args.grace)
    print(_dump({**stats, "upserted": runner.metrics.counts["upserted"],
                 "dead_lettered_again": runner.metrics.counts["dead_lettered"]}))
    return 0


async def _deadletter_list_http(args, cfg) -> int:
    """The dead letters of a running adapter, through its HTTP port (``GET /deadletters``)."""
    import aiohttp

    url = args.url
    if not url:
        if not cfg.http.enabled:
            _err("the adapter's HTTP server is disabled (http.enabled: false): its memory outbox's dead "
                 "letters cannot be read from outside; give --url of a running adapter")
            return 1
        host = cfg.http.host if cfg.http.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        url = f"http://{host}:{cfg.http.port}"
    target = url.rstrip("/") + "/deadletters"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(target, params={"limit": str(args.limit)}) as resp:
                if resp.status != 200:
                    _err(f"{target} answered HTTP {resp.status}: {(await resp.text())[:200]}")
                    return 1
                data = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        _err(f"no running adapter answers at {url} ({type(exc).__name__}: {exc}); the memory outbox's dead "
             "letters live in the running process: start it, or give --url of its HTTP port")
        return 1
    if args.json:
        print(_dump({"total": data.get("total"), "records": data.get("records", [])}))
        return 0
    records = data.get("records", [])
    total = data.get("total", len(records))
    print(f"{total} dead letter(s)" + (f", showing {len(records)}" if total > len(records) else ""))
    for r in records:
        print(f"{r.get('id')}  {r.get('time')}  {r.get('reason')} [{r.get('stage')}]  "
              f"device={r.get('device_id')}  {r.get('error')}")
    return 0


def cmd_deadletter(args) -> int:
    return asyncio.run(_deadletter(args))


# --- main ---------------------------------------------------------------------------------------------------

def _startup_error():
    from .runner import StartupError

    return StartupError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadtlink", description="Device data → FIWARE Smart Data Models in an "
                                "NGSI-LD broker.", epilog="Also: " + ", ".join(
                                    f"{k} ({v[2]})" for k, v in DELEGATES.items()))
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run one adapter until SIGTERM/SIGINT")
    r.add_argument("adapter", nargs="?", default=os.environ.get("STADTLINK_ADAPTER"),
                   help="adapter name (default: env STADTLINK_ADAPTER, else `adapter:` in the config)")
    r.add_argument("--config", "-c", default=os.environ.get("STADTLINK_CONFIG"),
                   required=not os.environ.get("STADTLINK_CONFIG"), help="YAML config file (env STADTLINK_CONFIG)")
    r.set_defaults(func=cmd_run)

    a = sub.add_parser("adapters", help="list installed adapters and their profiles")
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_adapters)

    d = sub.add_parser("decode", help="decode one payload with a profile (and map it with --entity)")
    d.add_argument("profile")
    d.add_argument("input", help="the payload inline (hex such as 0x01A4 or '01 a4', base64, JSON) or a "
                                 "file or '-' holding hex/base64 bytes, a TTS v3 / ChirpStack v4 uplink, API JSON/XML")
    d.add_argument("--fport", type=int, default=None,
                   help="LoRaWAN port of raw bytes, for profiles whose frames depend on it")
    d.add_argument("--device", default=None,
                   help=f"device id for raw bytes / polled answers that name none (default: {CLI_DEVICE!r})")
    d.add_argument("--options", default=None, help="profile options as a JSON object")
    d.add_argument("--entity", action="store_true", help="print the normalized NGSI-LD entities")
    d.add_argument("--config", default=None, help="config whose registry and settings --entity uses")
    d.add_argument("--adapter", default=None, help="the adapter owning PROFILE (if several do)")
    d.set_defaults(func=cmd_decode)

    c = sub.add_parser("config", help="configuration helpers")
    csub = c.add_subparsers(dest="config_command", required=True)
    cs = csub.add_parser("schema", help="print the JSON Schema of a config file")
    cs.add_argument("--adapter", default=None, help="only this adapter's config (settings typed)")
    cs.set_defaults(func=cmd_config)

    dl = sub.add_parser("deadletter", help="list or replay dead letters (list: any outbox; the memory "
                        "outbox's through the running adapter's HTTP port; replay: redis outbox)")
    dl.add_argument("action", choices=["list", "replay"])
    dl.add_argument("adapter", nargs="?")
    dl.add_argument("--config", "-c", required=True)
    dl.add_argument("--limit", type=int, default=100)
    dl.add_argument("--json", action="store_true")
    dl.add_argument("--url", default=None,
                    help="list: the running adapter's HTTP base URL (default: http://127.0.0.1:<http.port> "
                         "of the config when the outbox is memory)")
    dl.add_argument("--grace", type=float, default=20.0, help="replay: seconds to write the entities")
    dl.set_defaults(func=cmd_deadletter)

    for name, (_, _, helptext) in DELEGATES.items():
        sub.add_parser(name, help=helptext, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATES:
        return _delegate(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        text = str(exc)
        if "\n" in text:
            _err("configuration error:\n  " + text.replace("\n", "\n  "))
        else:
            _err(f"configuration error: {text}")
        return 2
    except _startup_error() as exc:
        _err(f"cannot start: {exc}")
        return 1
    except DecodeError as exc:
        _err(f"cannot decode: {exc.reason}: {exc.detail}" if exc.detail else f"cannot decode: {exc.reason}")
        return 1
    except MappingError as exc:
        _err(f"cannot map: {exc}")
        return 1
    except ReadingDropped as exc:
        _err(f"reading dropped: {exc}")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
