"""The Lambda entry points with in-memory ports, driven by the events/ files `sam local invoke` uses."""

from __future__ import annotations

import base64
import json

from clearing.adapters.memory import InMemoryItemStore, InMemoryPublisher
from clearing.adapters.refdata import StaticReferenceData
from clearing.services.clear import ClearTrades
from clearing.services.match import MatchOrders
from clearing.services.validate import ValidateOrders

from tests.unit.handlers import FakeContext, load_event, load_handler


def services():
    store, pub, ref = InMemoryItemStore(), InMemoryPublisher(), StaticReferenceData()
    return store, pub, ref


def test_validate_orders_accepts_valid_orders_from_the_event_file():
    store, pub, ref = services()
    handler = load_handler("validate_orders")
    response = handler(
        load_event("validate_orders_valid.json"), FakeContext(), service=ValidateOrders(store, pub, ref)
    )
    assert response == {"batchItemFailures": []}
    accepted = [json.loads(m.value) for m in pub.on("orders.accepted")]
    assert [a["client_order_id"] for a in accepted] == ["EV-S1", "EV-B1", "EV-B2", "EV-S2", "EV-M1"]
    assert all(m.key == json.loads(m.value)["symbol"].encode() for m in pub.on("orders.accepted"))


def test_a_batch_mixing_malformed_records_succeeds_and_accounts_for_every_record():
    store, pub, ref = services()
    event = load_event("validate_orders_mixed_malformed.json")
    handler = load_handler("validate_orders")
    response = handler(event, FakeContext(), service=ValidateOrders(store, pub, ref))
    assert response == {"batchItemFailures": []}
    consumed = sum(len(v) for v in event["records"].values())
    rejected = [json.loads(m.value) for m in pub.on("orders.rejected")]
    assert len(pub.on("orders.accepted")) + len(rejected) == consumed
    reasons = {r["reason"] for r in rejected}
    assert {
        "MALFORMED",
        "BAD_TICK",
        "PRICE_OUTSIDE_COLLAR",
        "MEMBER_SUSPENDED",
        "UNKNOWN_SYMBOL",
        "DUPLICATE_CLORDID",
        "SYMBOL_HALTED",
        "NOTIONAL_LIMIT",
    } <= reasons
    # nothing is lost: each rejection carries its original bytes and position
    originals = {r["source"]["offset"]: base64.b64decode(r["original_b64"]) for r in rejected}
    assert originals[101] == b"this is not json"


def test_cancel_replace_event_file():
    store, pub, ref = services()
    load_handler("validate_orders")(
        load_event("validate_orders_cancel_replace.json"),
        FakeContext(),
        service=ValidateOrders(store, pub, ref),
    )
    accepted = [json.loads(m.value) for m in pub.on("orders.accepted")]
    assert [a["action"] for a in accepted] == ["NEW", "REPLACE", "CANCEL"]
    assert {a["order_id"] for a in accepted} == {"MBR01:EV-C1"}


def test_match_orders_event_file_produces_a_trade_and_order_events():
    store, pub, ref = services()
    response = load_handler("match_orders")(
        load_event("match_orders_accepted.json"), FakeContext(), service=MatchOrders(store, pub, ref)
    )
    assert response == {"batchItemFailures": []}
    [trade] = [json.loads(m.value) for m in pub.on("trades.executed")]
    assert trade["trade_id"] == "T-0-1-0" and trade["quantity"] == 60
    types = [json.loads(m.value)["type"] for m in pub.on("orders.events")]
    assert types == ["ACCEPTED", "PARTIALLY_FILLED", "FILLED"]


def test_clear_trades_event_file_dead_letters_an_unknown_member():
    store, pub, ref = services()
    response = load_handler("clear_trades")(
        load_event("clear_trades_executed.json"), FakeContext(), service=ClearTrades(store, pub, ref)
    )
    assert response == {"batchItemFailures": []}
    [dead] = [json.loads(m.value) for m in pub.on("trades.deadletter")]
    assert dead["reason"] == "UNKNOWN_MEMBER"
    assert len([i for i in store.scan("trades") if i["sk"] == "CLEARED"]) == 1


def test_a_down_broker_reports_the_partition_for_retry_and_a_retry_completes_it():
    store, pub, ref = services()
    handler = load_handler("validate_orders")
    service = ValidateOrders(store, pub, ref)
    pub.fail_next = True
    event = load_event("validate_orders_valid.json")
    response = handler(event, FakeContext(), service=service)
    assert response == {"batchItemFailures": [{"itemIdentifier": {"partition": "orders.new-0", "offset": 0}}]}
    assert handler(event, FakeContext(), service=service) == {"batchItemFailures": []}
    assert len(pub.on("orders.accepted")) == 5


def _order(cid: str, member: str = "MBR01", **extra) -> dict:
    return {
        "action": "NEW",
        "client_order_id": cid,
        "member_id": member,
        "account": f"{member}-HOUSE",
        "symbol": "ACME",
        "side": "BUY",
        "type": "LIMIT",
        "price": "125.40",
        "quantity": 100,
        "time_in_force": "GTC",
        "sent_at": "2026-11-24T14:30:00.000Z",
        **extra,
    }


def test_an_oversized_order_between_two_valid_ones_is_rejected_with_bounded_records():
    import hashlib

    from tests.unit.msk import msk_event, msk_record

    # Given a ~320 KB order published between two valid orders, in one batch
    big = json.dumps(_order("BIG", note="x" * 320_000)).encode()
    event = msk_event(
        [
            msk_record("orders.new", 0, 10, _order("A1"), key="MBR01"),
            msk_record("orders.new", 0, 11, big, key="MBR01"),
            msk_record("orders.new", 0, 12, _order("A2"), key="MBR01"),
        ]
    )
    store, pub, ref = services()  # the in-memory store refuses items over DynamoDB's 400 KB
    # When validate_orders handles the batch
    response = load_handler("validate_orders")(event, FakeContext(), service=ValidateOrders(store, pub, ref))
    # Then nothing fails: the two valid orders are accepted and the big one rejected MALFORMED
    assert response == {"batchItemFailures": []}
    assert [json.loads(m.value)["client_order_id"] for m in pub.on("orders.accepted")] == ["A1", "A2"]
    [message] = pub.on("orders.rejected")
    rejection = json.loads(message.value)
    assert rejection["reason"] == "MALFORMED" and str(len(big)) in rejection["message"]
    # with bounded records: a prefix, the length and SHA-256, and the offset holding the full bytes
    assert rejection["source"] == {"topic": "orders.new", "partition": 0, "offset": 11}
    assert rejection["original_length"] == len(big)
    assert rejection["original_sha256"] == hashlib.sha256(big).hexdigest()
    prefix = base64.b64decode(rejection["original_b64"])
    assert big.startswith(prefix) and 0 < len(prefix) <= 4096 and rejection["original_truncated"]
    assert len(message.value) < 16 * 1024
    [item] = [i for i in store.scan("orders") if i.get("decision") == "REJECTED"]
    assert item["original_length"] == len(big) and item["src"] == "orders.new/0/11"
    assert len(json.dumps(item, default=str)) < 16 * 1024
    # and the member is named when it can be read, so that the rejection goes to its partition
    assert message.key == b"MBR01"


def test_text_derived_from_input_is_bounded_in_rejections():
    from tests.unit.msk import msk_event, msk_record

    # Given messages under the size limit whose error texts would echo huge input
    unknown_key = json.dumps({**_order("K1"), "k" * 12_000: 1}).encode()
    long_ids = json.dumps(_order("C" * 5000, member="M" * 5000)).encode()
    event = msk_event(
        [
            msk_record("orders.new", 0, 0, unknown_key, key="MBR01"),
            msk_record("orders.new", 0, 1, long_ids, key="MBR01"),
        ]
    )
    store, pub, ref = services()
    response = load_handler("validate_orders")(event, FakeContext(), service=ValidateOrders(store, pub, ref))
    assert response == {"batchItemFailures": []}
    rejections = [json.loads(m.value) for m in pub.on("orders.rejected")]
    assert [r["reason"] for r in rejections] == ["MALFORMED", "MALFORMED"]
    for r in rejections:
        assert len(r["message"]) <= 1024
        assert all(len(r[f] or "") <= 64 for f in ("member_id", "client_order_id", "symbol"))
        assert len(base64.b64decode(r["original_b64"])) <= 4096
