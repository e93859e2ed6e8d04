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
