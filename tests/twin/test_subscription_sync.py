"""`subscriptions apply`: stable ids, idempotent, patches changes, recreates on removed fields,
prunes only its own subscriptions — against the local broker over real sockets."""
import subprocess
import sys
import textwrap

import pytest
import yaml

from stadtlink.broker_client import NGSILDClient
from stadtlink.broker_client.local_broker import running_broker
from stadtlink.broker_client.subscription_sync import ID_PREFIX, SubscriptionFileError, apply, desired_from_document, load_file

DOC = {
    "subscriptions": [
        {"name": "parking-changes", "entities": [{"type": "ParkingSpot"}], "watchedAttributes": ["status"],
         "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify"}, "attributes": ["status"]},
         "throttling": 5},
        {"name": "gauges", "entities": [{"type": "FloodMonitoring"}], "q": "currentLevel>2.0",
         "notification": {"endpoint": {"uri": "http://127.0.0.1:9/notify",
                                       "receiverInfo": [{"key": "X-Stadtlink-Secret", "value": "s"}]},
                          "format": "keyValues"}},
    ]
}


@pytest.fixture
async def client():
    async with running_broker() as url:
        async with NGSILDClient(url) as c:
            yield c


async def ids(client):
    return sorted([s["id"] async for s in client.list_subscriptions()])


async def test_apply_twice_changes_nothing(client):
    first = await apply(client, desired_from_document(DOC))
    assert sorted(first.created) == [ID_PREFIX + "gauges", ID_PREFIX + "parking-changes"]
    second = await apply(client, desired_from_document(DOC))
    assert not second.changed, second.lines()
    assert sorted(second.unchanged) == sorted(first.created)
    assert await ids(client) == sorted(first.created)


async def test_changed_subscription_is_patched(client):
    await apply(client, desired_from_document(DOC))
    changed = yaml.safe_load(yaml.safe_dump(DOC))
    changed["subscriptions"][0]["throttling"] = 10
    changed["subscriptions"][1]["q"] = "currentLevel>2.5"
    report = await apply(client, desired_from_document(changed))
    assert sorted(report.patched) == [ID_PREFIX + "gauges", ID_PREFIX + "parking-changes"]
    sub = await client.get_subscription(ID_PREFIX + "parking-changes")
    assert float(sub["throttling"]) == 10
    assert (await client.get_subscription(ID_PREFIX + "gauges"))["q"] == "currentLevel>2.5"
    assert not (await apply(client, desired_from_document(changed))).changed


async def test_removed_field_recreates(client):
    await apply(client, desired_from_document(DOC))
    changed = yaml.safe_load(yaml.safe_dump(DOC))
    del changed["subscriptions"][0]["throttling"]
    report = await apply(client, desired_from_document(changed))
    assert report.recreated == [ID_PREFIX + "parking-changes"]
    assert "throttling" not in await client.get_subscription(ID_PREFIX + "parking-changes")


async def test_prune_deletes_only_our_unlisted_subscriptions(client):
    await apply(client, desired_from_document(DOC))
    foreign = await client.create_subscription({"type": "Subscription", "entities": [{"type": "X"}],
                                                "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}})
    only_gauges = {"subscriptions": [DOC["subscriptions"][1]]}
    report = await apply(client, desired_from_document(only_gauges), prune=False)
    assert not report.deleted
    report = await apply(client, desired_from_document(only_gauges), prune=True)
    assert report.deleted == [ID_PREFIX + "parking-changes"]
    assert await ids(client) == sorted([ID_PREFIX + "gauges", foreign])


@pytest.mark.parametrize("doc,message", [
    ({"subscriptions": [{"entities": [{"type": "A"}], "notification": {}}]}, "needs a 'name'"),
    ({"subscriptions": [{"name": "a", "entities": [{"type": "A"}]}]}, "'notification' is required"),
    ({"subscriptions": [{"name": "a", "notification": {"endpoint": {"uri": "http://x"}}}]}, "at least one of"),
    ({"subscriptions": [{"name": "bad name!", "entities": [{"type": "A"}], "notification": {}}]}, "use letters"),
    ({"subscriptions": [{"name": "a", "id": "urn:x", "entities": [{"type": "A"}], "notification": {}}]}, "remove 'id'"),
    ({"subs": []}, "'subscriptions:' list"),
])
def test_bad_files_are_clear_errors(doc, message):
    with pytest.raises(SubscriptionFileError, match=message):
        desired_from_document(doc)


async def test_cli_apply_list_delete(tmp_path):
    path = tmp_path / "subs.yaml"
    path.write_text(yaml.safe_dump(DOC))
    async with running_broker() as url:
        def cli(*args):
            return subprocess.run([sys.executable, "-m", "stadtlink.broker_client.subscriptions", *args],
                                  capture_output=True, text=True, timeout=60)
        import asyncio
        r = await asyncio.to_thread(cli, "apply", str(path), "--broker", url)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("created") == 2
        r = await asyncio.to_thread(cli, "apply", str(path), "--broker", url)
        assert r.stdout.count("unchanged") == 2 and "created" not in r.stdout
        r = await asyncio.to_thread(cli, "list", "--broker", url)
        assert ID_PREFIX + "gauges" in r.stdout and ID_PREFIX + "parking-changes" in r.stdout
        r = await asyncio.to_thread(cli, "delete", "gauges", "--broker", url)
        assert r.returncode == 0, r.stderr
        r = await asyncio.to_thread(cli, "list", "--broker", url)
        assert ID_PREFIX + "gauges" not in r.stdout
        bad = tmp_path / "bad.yaml"
        bad.write_text("subscriptions: [{name: x}]")
        r = await asyncio.to_thread(cli, "apply", str(bad), "--broker", url)
        assert r.returncode == 2 and "notification" in r.stderr and "Traceback" not in r.stderr
