"""``stadtlink subscriptions apply|list|delete``: declarative NGSI-LD subscriptions."""
from __future__ import annotations

import argparse
import asyncio
import sys

from .client import NGSILDClient
from .errors import NGSILDError, BrokerUnavailable, ResourceNotFound
from .subscription_sync import ID_PREFIX, SubscriptionFileError, apply, load_file, subscription_id


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stadtlink subscriptions", description="Declarative NGSI-LD subscriptions.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp):
        sp.add_argument("--broker", required=True, help="broker base URL, e.g. http://127.0.0.1:1026")
        sp.add_argument("--tenant")
        sp.add_argument("--context", help="@context URL for attribute names in the subscriptions")

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


async def _run(args) -> int:
    async with NGSILDClient(args.broker, tenant=args.tenant, context=args.context) as client:
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
    except (BrokerUnavailable, NGSILDError) as exc:
        print(f"stadtlink subscriptions: broker error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
