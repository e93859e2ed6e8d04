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


ACCEPTED_SELL = {
    "action": "NEW",
    "order_id": "MBR02:S1",
    "member_id": "MBR02",
    "account": "MBR02-HOUSE",
    "client_order_id": "S1",
    "orig_client_order_id": None,
    "symbol": "ACME",
    "side": "SELL",
    "type": "LIMIT",
    "price_ticks": 12540,
    "price": "125.40",
    "quantity": 100,
    "time_in_force": "GTC",
    "post_only": False,
    "stp": None,
    "route": "INTERNAL",
    "sent_at": "2026-11-24T14:30:00Z",
    "reserve_price_ticks": 12540,
    "source": {"topic": "orders.new", "partition": 0, "offset": 0},
}
ACCEPTED_BUY = {
    **ACCEPTED_SELL,
    "order_id": "MBR01:B1",
    "member_id": "MBR01",
    "account": "MBR01-HOUSE",
    "client_order_id": "B1",
    "side": "BUY",
    "quantity": 60,
    "source": {"topic": "orders.new", "partition": 0, "offset": 1},
}


def _dead_letter_checks(message, record_value: bytes, offset: int, topic: str) -> dict:
    import hashlib

    body = json.loads(message.value)
    assert body["source"] == {"topic": topic, "partition": 0, "offset": offset}
    assert body["original_length"] == len(record_value)
    assert body["original_sha256"] == hashlib.sha256(record_value).hexdigest()
    assert record_value.startswith(base64.b64decode(body["original_b64"]))
    assert len(message.value) < 16 * 1024 and len(body["message"]) <= 1024 and len(message.key) <= 64
    return body


def test_match_orders_dead_letters_records_it_cannot_read_and_goes_on_with_the_batch():
    from tests.unit.msk import msk_event, msk_record

    # Given orders.accepted holding, between two good orders, what a rogue producer could write
    bad = [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({**ACCEPTED_SELL, "symbol": ["ACME"], "order_id": "MBR02:X1"}).encode(),
        json.dumps(
            {k: v for k, v in ACCEPTED_SELL.items() if k != "source"} | {"order_id": "MBR02:X2"}
        ).encode(),
        json.dumps({**ACCEPTED_SELL, "quantity": "100", "order_id": "MBR02:X3"}).encode(),
        json.dumps({**ACCEPTED_SELL, "symbol": "NOPE", "order_id": "MBR02:X4"}).encode(),
        json.dumps({**ACCEPTED_SELL, "order_id": "MBR02:X5", "pad": "x" * 320_000}).encode(),
        json.dumps({**ACCEPTED_SELL, "order_id": "X6"}).encode(),  # no member:clordid
        json.dumps({**ACCEPTED_SELL, "quantity": 10**40, "order_id": "MBR02:X7"}).encode(),
        json.dumps({**ACCEPTED_SELL, "action": "AMEND", "order_id": "MBR02:X8"}).encode(),
        json.dumps({**ACCEPTED_SELL, "reserve_price_ticks": None, "order_id": "MBR02:X9"}).encode(),
    ]
    records = [msk_record("orders.accepted", 0, 0, ACCEPTED_SELL, key="ACME")]
    records += [msk_record("orders.accepted", 0, 1 + i, b, key="ACME") for i, b in enumerate(bad)]
    records.append(msk_record("orders.accepted", 0, 1 + len(bad), ACCEPTED_BUY, key="ACME"))
    store, pub, ref = services()
    # When match_orders handles the batch
    response = load_handler("match_orders")(
        msk_event(records), FakeContext(), service=MatchOrders(store, pub, ref)
    )
    # Then the batch succeeds, the good orders trade, and every bad record is dead-lettered with its
    # reason, a bounded copy and its source position
    assert response == {"batchItemFailures": []}
    [trade] = [json.loads(m.value) for m in pub.on("trades.executed")]
    assert trade["quantity"] == 60 and trade["source"]["offset"] == 1 + len(bad)
    dead = pub.on("orders.deadletter")
    assert len(dead) == len(bad)
    bodies = [
        _dead_letter_checks(m, b, 1 + i, "orders.accepted")
        for i, (m, b) in enumerate(zip(dead, bad, strict=True))
    ]
    assert all(b["deadletter_id"] == f"D-orders.accepted-0-{b['source']['offset']}" for b in bodies)
    assert bodies[6]["reason"] == "UNKNOWN_SYMBOL"
    assert {b["reason"] for i, b in enumerate(bodies) if i != 6} == {"MALFORMED_ACCEPTED_ORDER"}
    assert str(len(bad[7])) in bodies[7]["message"]
    # and a redelivery of the batch changes nothing (the checkpoint covers the dead-lettered offsets)
    before = {t: dict(rows) for t, rows in store.tables.items() if t != "state"}
    assert load_handler("match_orders")(
        msk_event(records), FakeContext(), service=MatchOrders(store, pub, ref)
    ) == {"batchItemFailures": []}
    assert len(pub.on("orders.deadletter")) == len(bad)
    assert {t: dict(rows) for t, rows in store.tables.items() if t != "state"} == before


def test_clear_trades_dead_letters_garbage_and_hostile_trades_and_goes_on_with_the_batch():
    from tests.unit.msk import msk_event, msk_record

    good = json.loads(
        base64.b64decode(load_event("clear_trades_executed.json")["records"]["trades.executed-0"][0]["value"])
    )
    second = {**good, "trade_id": "T-0-9-0", "source": {**good["source"], "offset": 9}}
    bad = [
        b"\x00\xff garbage",
        b'"a string"',
        json.dumps({**good, "symbol": ["ACME"]}).encode(),  # unhashable symbol
        json.dumps({**good, "symbol": {"x": 1}, "source": "nowhere"}).encode(),
        json.dumps({**good, "trade_id": "T" * 10_000, "source": {**good["source"], "offset": 3}}).encode(),
        json.dumps(
            {**good, "pad": "x" * 320_000, "trade_id": "T-0-4-0", "source": {**good["source"], "offset": 4}}
        ).encode(),
        json.dumps(
            {
                **good,
                "trade_date": "9999-12-31",
                "trade_id": "T-0-5-0",
                "source": {**good["source"], "offset": 5},
            }
        ).encode(),
        json.dumps(
            {**good, "quantity": 10**30, "trade_id": "T-0-6-0", "source": {**good["source"], "offset": 6}}
        ).encode(),
    ]
    records = [msk_record("trades.executed", 0, 0, good, key="ACME")]
    records += [msk_record("trades.executed", 0, 1 + i, b, key="ACME") for i, b in enumerate(bad)]
    records.append(msk_record("trades.executed", 0, 1 + len(bad), second, key="ACME"))
    store, pub, ref = services()
    response = load_handler("clear_trades")(
        msk_event(records), FakeContext(), service=ClearTrades(store, pub, ref)
    )
    assert response == {"batchItemFailures": []}
    cleared = sorted(i["trade_id"] for i in store.scan("trades") if i["sk"] == "CLEARED")
    assert cleared == ["T-0-1-0", "T-0-9-0"]
    dead = pub.on("trades.deadletter")
    assert len(dead) == len(bad)
    bodies = [
        _dead_letter_checks(m, b, 1 + i, "trades.executed")
        for i, (m, b) in enumerate(zip(dead, bad, strict=True))
    ]
    assert {b["reason"] for b in bodies} == {"MALFORMED_TRADE"}


def test_the_exposure_release_dead_letters_order_events_it_cannot_read_and_goes_on():
    from tests.unit.msk import msk_event, msk_record

    def event(offset: int, delta: str | None, **changes) -> dict:
        return {
            "event_id": f"E-0-{offset}-0",
            "type": "CANCELLED",
            "order_id": "MBR01:B1",
            "member_id": "MBR01",
            "symbol": "ACME",
            "exposure_delta": delta,
            "source": {"topic": "orders.accepted", "partition": 0, "offset": offset, "seq": 0},
            "cancelled_qty": 10,
            "reason": "USER",
            "filled_qty": 0,
            "remaining_qty": 0,
            **changes,
        }

    # Given orders.events holding, between two good events, what a rogue producer could write
    bad = [
        b"\x00garbage",
        json.dumps(event(2, "-1.00", member_id=["MBR01"])).encode(),  # unhashable member
        json.dumps(event(3, "-1.00", source="somewhere")).encode(),
        json.dumps(event(4, "-1.00", source={"partition": "x", "offset": 4})).encode(),
        json.dumps(event(5, "lots")).encode(),  # not a decimal
        json.dumps(event(6, "1e999999")).encode(),  # a decimal no exposure can be
        json.dumps(event(7, "-1.00", pad="x" * 320_000)).encode(),
    ]
    records = [msk_record("orders.events", 0, 0, event(1, "-100.00"), key="MBR01")]
    records += [msk_record("orders.events", 0, 1 + i, b, key="MBR01") for i, b in enumerate(bad)]
    records.append(msk_record("orders.events", 0, 1 + len(bad), event(8, "-25.50"), key="MBR01"))
    store, pub, ref = services()
    response = load_handler("validate_orders")(
        msk_event(records), FakeContext(), service=ValidateOrders(store, pub, ref)
    )
    # Then the batch succeeds, the good events are applied, and every bad one is dead-lettered
    assert response == {"batchItemFailures": []}
    released = store.get_many("state", [("EXPOSURE#MBR01", "RELEASED")])[("EXPOSURE#MBR01", "RELEASED")]
    assert released["adjustment"] == "-125.50"
    dead = pub.on("orders.deadletter")
    assert len(dead) == len(bad)
    bodies = [
        _dead_letter_checks(m, b, 1 + i, "orders.events")
        for i, (m, b) in enumerate(zip(dead, bad, strict=True))
    ]
    assert {b["reason"] for b in bodies} == {"MALFORMED_EVENT"}
