"""MSK event decoding (services/batch.py) and the in-memory store's isolation (adapters/memory.py).

Both were rewritten for speed: these tests pin what must not change with it.
"""

from __future__ import annotations

import base64
from decimal import Decimal

from clearing.adapters.memory import InMemoryItemStore
from clearing.services.batch import records_from_event

from tests.unit.msk import msk_event, msk_record


def test_records_are_grouped_per_partition_in_offset_order_with_key_value_and_headers_decoded():
    # Given an event with two partitions, records out of order, a key, a missing key and a header
    with_header = msk_record("orders.new", 0, 7, b'{"a": 1}', key="MBR01")
    with_header["headers"] = [{"trace": [104, 105]}]
    event = msk_event(
        [
            with_header,
            msk_record("orders.new", 0, 5, b"first"),
            msk_record("orders.new", 1, 3, b"\x00\xffbinary", key=b"\x01"),
        ]
    )
    # When it is decoded
    parts = records_from_event(event)
    # Then each partition's records come in offset order with the bytes Lambda encoded
    assert [r.offset for r in parts[("orders.new", 0)]] == [5, 7]
    first, second = parts[("orders.new", 0)]
    assert (first.value, first.key, first.headers) == (b"first", None, ())
    assert (second.value, second.key, second.headers) == (b'{"a": 1}', b"MBR01", (("trace", b"hi"),))
    assert second.position == "orders.new/0/7" and second.timestamp == 1795530601000
    (other,) = parts[("orders.new", 1)]
    assert (other.value, other.key, other.partition) == (b"\x00\xffbinary", b"\x01", 1)


def test_a_record_without_a_value_and_an_empty_event():
    rec = msk_record("orders.new", 0, 1, b"x")
    del rec["value"]
    (decoded,) = records_from_event(msk_event([rec]))[("orders.new", 0)]
    assert decoded.value is None
    assert records_from_event({"records": {}}) == {}


def test_values_decode_like_base64_b64decode():
    raw = bytes(range(256)) * 3
    (decoded,) = records_from_event(msk_event([msk_record("t", 0, 0, raw)]))[("t", 0)]
    assert decoded.value == base64.b64decode(base64.b64encode(raw).decode()) == raw


def test_the_in_memory_store_does_not_share_mutable_state_with_its_callers():
    store = InMemoryItemStore()
    item = {
        "pk": "p",
        "sk": "s",
        "n": 1,
        "amount": Decimal("1.50"),
        "blob": b"z",
        "nested": {"applied": {"0": 5}},
        "marks": [1, [2, 3]],
        "pair": (1, [4]),
    }
    store.put_many("state", [item])
    # mutating what was put does not change the stored item
    item["n"] = 2
    item["nested"]["applied"]["0"] = 99
    item["marks"][1].append(9)
    item["pair"][1].append(9)
    got = store.get_many("state", [("p", "s")])[("p", "s")]
    assert got == {
        "pk": "p",
        "sk": "s",
        "n": 1,
        "amount": Decimal("1.50"),
        "blob": b"z",
        "nested": {"applied": {"0": 5}},
        "marks": [1, [2, 3]],
        "pair": (1, [4]),
    }
    # nor does mutating what was read
    got["nested"]["applied"]["0"] = 7
    got["marks"].append(0)
    again = store.get_many("state", [("p", "s")])[("p", "s")]
    assert again["nested"] == {"applied": {"0": 5}} and again["marks"] == [1, [2, 3]]
    # query, scan and conditional puts copy too
    store.query("state", "p")[0]["nested"]["applied"]["0"] = 1
    store.scan("state")[0]["marks"][1].append(1)
    versioned = {"pk": "c", "sk": "-", "version": 1, "books": {"ACME": 3}}
    store.put_if_version("state", versioned, None)
    versioned["books"]["ACME"] = 4
    assert store.get_many("state", [("p", "s")])[("p", "s")] == again
    assert store.get_many("state", [("c", "-")])[("c", "-")]["books"] == {"ACME": 3}


def test_the_in_memory_store_refuses_items_over_dynamodbs_400_kb_like_dynamodb():
    import pytest
    from clearing.adapters.memory import ItemTooLarge, item_size

    store = InMemoryItemStore()
    # an item just under the limit is stored; names and values both count
    store.put_many("orders", [{"pk": "p", "sk": "ok", "blob": b"z" * 390_000}])
    assert item_size({"pk": "p", "sk": "s", "text": "é" * 100}) == 2 + 1 + 2 + 1 + 4 + 200
    # one over it fails the whole write, as DynamoDB's ValidationException does
    with pytest.raises(ItemTooLarge):
        store.put_many("orders", [{"pk": "p", "sk": "big", "text": "x" * 410_000}])
    with pytest.raises(ItemTooLarge):
        store.put_many("orders", [{"pk": "p", "sk": "nested", "legs": [{"n": "x" * 300_000}] * 2}])
    with pytest.raises(ItemTooLarge):
        store.put_if_version("state", {"pk": "c", "sk": "-", "version": 1, "b": b"x" * 500_000}, None)
    assert ("p", "big") not in store.tables["orders"]
