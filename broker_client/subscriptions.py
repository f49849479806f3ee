"""``stadtlink subscriptions apply|list|delete``: declarative subscriptions.

NGSI-LD brokers by default; ``--kind ngsi-v2`` (with ``--service`` / ``--service-path``) makes the
same file's subscriptions on a classic Orion (see ``subscription_sync.apply_v2``)."""
from __future__ import annotations

import argparse
import asyncio
import sys

from .errors import BrokerUnavailable, NGSILDError, ResourceNotFound
from .subscription_sync import (
    ID_PREFIX,
    V2_DESCRIPTION_PREFIX,
    SubscriptionFileError,
    apply,
    apply_v2,
    load_file,
    subscription_id,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadtlink subscriptions", description="Declarative NGSI-LD subscriptions.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--broker", required=True, help="broker base URL, e.g. http://127.0.0.1:1026")
        sp.add_argument("--tenant")
        sp.add_argument("--context", help="@context URL for attribute names in the subscriptions")
        sp.add_argument("--kind", default="orion-ld", choices=["orion-ld", "scorpio", "stellio", "ngsi-v2"],
                        help="broker kind (default orion-ld); ngsi-v2 = classic Orion")
        sp.add_argument("--service", help="NGSI-v2: Fiware-Service (default: --tenant)")
        sp.add_argument("--service-path", default="/", help="NGSI-v2: Fiware-ServicePath (default /)")

    a = sub.add_parser("apply", help="make the broker's subscriptions match FILE")
    a.add_argument("file")
    a.add_argument("--prune", action="store_true", help=f"delete subscriptions with the prefix {ID_PREFIX} not in FILE")
    common(a)
    ls = sub.add_parser("list", help="list subscriptions")
    ls.add_argument("--all", action="store_true", help="also those not made by stadtlink")
    common(ls)
    d = sub.add_parser("delete", help="delete subscriptions by name (or full id)")
    d.add_argument("names", nargs="+")
    common(d)
    return p


async def _run_v2(args) -> int:
    from .backends import make_backend

    backend = make_backend({"kind": "ngsi-v2", "url": args.broker, "service": args.service or args.tenant,
                            "service_path": args.service_path}, key="--broker")
    async with backend:
        if args.command == "apply":
            report = await apply_v2(backend, load_file(args.file), prune=args.prune)
            for line in report.lines():
                print(line)
            return 0
        subs = [s async for s in backend.list_subscriptions()]
        if args.command == "list":
            for s in subs:
                desc = s.get("description") or ""
                if args.all or desc.startswith(V2_DESCRIPTION_PREFIX):
                    types = ",".join(e.get("type", "?") for e in s.get("subject", {}).get("entities", []))
                    n = s.get("notification", {})
                    url = (n.get("http") or n.get("httpCustom") or {}).get("url", "")
                    print(f"{s['id']}\t{desc}\t{types}\t{url}")
            return 0
        status = 0
        for name in args.names:
            found = [s for s in subs if s.get("id") == name or s.get("description") == V2_DESCRIPTION_PREFIX + name]
            if not found:
                print(f"not found {name}", file=sys.stderr)
                status = 1
            for s in found:
                await backend.delete_subscription(s["id"])
                print(f"deleted   {name} ({s['id']})")
        return status


async def _run(args) -> int:
    if args.kind == "ngsi-v2":
        return await _run_v2(args)
    from .backends import make_backend

    client = make_backend({"kind": args.kind, "url": args.broker, "tenant": args.tenant, "context": args.context},
                          key="--broker")
    async with client:
        if args.command == "apply":
            report = await apply(client, load_file(args.file), prune=args.prune)
            for line in report.lines():
                print(line)
            return 0
        if args.command == "list":
            async for s in client.list_subscriptions():
                if args.all or s.get("id", "").startswith(ID_PREFIX):
                    types = ",".join(e.get("type", "?") for e in s.get("entities", []))
                    uri = s.get("notification", {}).get("endpoint", {}).get("uri", "")
                    print(f"{s['id']}\t{types}\t{uri}")
            return 0
        status = 0
        for name in args.names:
            sid = name if name.startswith("urn:") else subscription_id(name)
            try:
                await client.delete_subscription(sid)
                print(f"deleted   {sid}")
            except ResourceNotFound:
                print(f"not found {sid}", file=sys.stderr)
                status = 1
        return status


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except SubscriptionFileError as exc:
        print(f"stadtlink subscriptions: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:   # BackendConfigError: a bad --broker / --service / --service-path
        print(f"stadtlink subscriptions: {exc}", file=sys.stderr)
        return 2
    except (BrokerUnavailable, NGSILDError) as exc:
        print(f"stadtlink subscriptions: broker error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
