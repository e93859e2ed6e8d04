"""The DynamoDB adapter against moto (in-process): both item encodings read back the same items."""

from __future__ import annotations

import boto3
import pytest
from clearing.adapters.dynamodb import DynamoItemStore
from clearing.ports import StaleCheckpoint
from clearing_tools.template_model import create_table_kwargs, tables
from moto import mock_aws

ITEM = {
    "pk": "MBR01",
    "sk": "O#C1#V",
    "gsi1pk": "ACME",
    "gsi1sk": "x",
    "kind": "VALIDATION",
    "quantity": 100,
    "price": "125.40",
    "flags": {"post_only": False, "stp": None},
    "legs": [{"a": 1}, {"b": "2"}],
    "book": b"\x00\x01binary",
}


@pytest.fixture(params=["document", "attributes"])
def store(request):
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for logical, name in (("OrdersTable", "orders"), ("StateTable", "state")):
            client.create_table(**create_table_kwargs(tables()[logical], name))
        yield DynamoItemStore(client, {"orders": "orders", "state": "state"}, encoding=request.param)


def test_items_round_trip_through_get_query_and_scan(store):
    store.put_many("orders", [ITEM, {**ITEM, "sk": "O#C2#V", "quantity": 7}])
    assert store.get_many("orders", [("MBR01", "O#C1#V"), ("MBR01", "missing")]) == {
        ("MBR01", "O#C1#V"): ITEM
    }
    assert [i["quantity"] for i in store.query("orders", "MBR01", sk_prefix="O#")] == [100, 7]
    assert len(store.query("orders", "ACME", index="gsi1")) == 2
    assert sorted(i["sk"] for i in store.scan("orders")) == ["O#C1#V", "O#C2#V"]


def test_batches_larger_than_a_request_and_repeated_keys(store):
    items = [{"pk": f"P{i % 7}", "sk": str(i), "n": i} for i in range(260)]
    store.put_many("orders", items + [{"pk": "P0", "sk": "0", "n": -1}])  # the last write of a key wins
    got = store.get_many("orders", [(i["pk"], i["sk"]) for i in items])
    assert len(got) == 260 and got[("P0", "0")]["n"] == -1


def test_checkpoint_is_conditional_on_the_version(store):
    store.put_if_version("state", {"pk": "CKPT#x", "sk": "-", "offset": 1, "version": 1}, None)
    with pytest.raises(StaleCheckpoint):
        store.put_if_version("state", {"pk": "CKPT#x", "sk": "-", "offset": 2, "version": 2}, None)
    store.put_if_version("state", {"pk": "CKPT#x", "sk": "-", "offset": 2, "version": 2}, 1)
    with pytest.raises(StaleCheckpoint):
        store.put_if_version("state", {"pk": "CKPT#x", "sk": "-", "offset": 3, "version": 3}, 1)
    assert store.get_many("state", [("CKPT#x", "-")])[("CKPT#x", "-")]["offset"] == 2
