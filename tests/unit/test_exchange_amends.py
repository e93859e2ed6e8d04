"""CANCEL / REPLACE of an order routed to the exchange: validate_orders sends them where the order went
(orders.exchange, keyed by symbol) with what the exchange gateway needs for its FIX request, warm,
after a cold start and on redelivery; INTERNAL orders' amendments are unchanged (orders.accepted)."""

from __future__ import annotations

import json

import pytest
from clearing.adapters.memory import InMemoryItemStore, InMemoryPublisher
from clearing.adapters.refdata import StaticReferenceData
from clearing.ports import InfrastructureError
from clearing.repositories.orders import OrderRecords
from clearing.services.batch import run_partitions
from clearing.services.exchange_gateway import exchange_request_for
from clearing.services.reports import verify
from clearing.services.validate import ValidateOrders
from clearing.topics import EXCHANGE_EXECUTIONS, ORDERS_ACCEPTED, ORDERS_EVENTS, ORDERS_EXCHANGE, ORDERS_NEW
from clearing_tools.bench.harness import InMemoryPipeline

from tests.unit.msk import msk_event, msk_record
from tests.unit.test_stream_services import member_key, order
from tests.unit.test_verify_reconcile import NOW_MS, answer_everything, log_of, row


def cancel(cid, orig, member="MBR01", symbol="ACME"):
    body = {"action": "CANCEL", "client_order_id": cid, "orig_client_order_id": orig, "member_id": member}
    return json.dumps({**body, "symbol": symbol, "sent_at": "2026-11-24T14:30:01.000Z"}).encode()


def replace(cid, orig, member="MBR01", symbol="ACME", **terms):
    body = {"action": "REPLACE", "client_order_id": cid, "orig_client_order_id": orig, "member_id": member}
    return json.dumps({**body, "symbol": symbol, "sent_at": "2026-11-24T14:30:01.000Z", **terms}).encode()


def exchange_order(cid, **kw):
    return order(cid, route="EXCHANGE", **kw)


class Validation:
    """One orders.new partition (0) fed to validate_orders over an in-memory store and publisher."""

    def __init__(self, store=None):
        self.store = store if store is not None else InMemoryItemStore()
        self.refdata = StaticReferenceData()
        self.out = InMemoryPublisher()
        self.service = ValidateOrders(self.store, self.out, self.refdata)
        self.offset = 0

    def cold(self) -> Validation:
        """Another container (an empty cache) on the same store, where this one stopped."""
        other = Validation(self.store)
        other.offset = self.offset
        return other

    def batch(self, *values: bytes) -> dict:
        records = [msk_record(ORDERS_NEW, 0, self.offset + i, v, "MBR01") for i, v in enumerate(values)]
        self.offset += len(values)
        return msk_event(records)

    def deliver(self, event: dict) -> None:
        report = run_partitions(event, self.service.validate_partition)
        assert not report.failures, report.failures

    def send(self, *values: bytes) -> list:
        before = len(self.out.messages)
        self.deliver(self.batch(*values))
        return self.out.messages[before:]


def body(message) -> dict:
    return json.loads(message.value)


def request(message) -> dict:
    """What the exchange gateway makes of the message (None: not for the exchange)."""
    return exchange_request_for(message.topic, message.value)


def validation_items(store) -> dict:
    return {i["sk"]: i for i in store.scan("orders") if i.get("kind") == "VALIDATION"}


def test_a_cancel_of_an_exchange_routed_order_goes_to_orders_exchange_with_what_the_gateway_needs():
    v = Validation()
    new, cxl = v.send(exchange_order("E1", qty=300, tif="DAY"), cancel("C1", "E1"))
    assert new.topic == ORDERS_EXCHANGE
    # Then the cancel follows its order onto orders.exchange, keyed by symbol like the NEW
    assert (cxl.topic, cxl.key) == (ORDERS_EXCHANGE, b"ACME")
    sent = body(cxl)
    assert {k: sent[k] for k in ("action", "order_id", "client_order_id", "orig_client_order_id")} == {
        "action": "CANCEL",
        "order_id": "MBR01:E1",
        "client_order_id": "C1",
        "orig_client_order_id": "E1",
    }
    assert (sent["account"], sent["side"], sent["quantity"], sent["route"]) == (
        "MBR01-HOUSE",
        "BUY",
        300,
        "EXCHANGE",
    )
    assert not v.out.on(ORDERS_ACCEPTED)  # match_orders never sees it (it would answer UNKNOWN_ORDER)
    # and the gateway turns it into a 35=F naming the order's ClOrdID
    assert request(cxl) == {
        "v": 1,
        "request_id": "MBR01:C1",
        "kind": "CANCEL_ORDER",
        "cl_ord_id": "MBR01:C1",
        "member_id": "MBR01",
        "account": "MBR01-HOUSE",
        "symbol": "ACME",
        "side": "BUY",
        "quantity": 300,
        "sent_at": "2026-11-24T14:30:01Z",
        "orig_cl_ord_id": "MBR01:E1",
    }
    # and the cancel's decision keeps the target's route and terms (a later reload needs them)
    item = validation_items(v.store)["O#C1#V"]
    assert (item["route"], item["account"], item["type"], item["time_in_force"]) == (
        "EXCHANGE",
        "MBR01-HOUSE",
        "LIMIT",
        "DAY",
    )


def test_replace_then_cancel_of_an_exchange_order_across_invocations():
    v = Validation()
    v.send(exchange_order("E1", qty=300))
    # a REPLACE with a new price and quantity, then one that keeps the quantity, then a cancel of the
    # last, each in its own invocation (warm cache)
    [r1] = v.send(replace("R1", "E1", price="125.50", quantity=200))
    [r2] = v.send(replace("R2", "R1", price="125.60"))
    [c1] = v.send(cancel("C1", "R2"))
    assert [m.topic for m in (r1, r2, c1)] == [ORDERS_EXCHANGE] * 3
    assert not v.out.on(ORDERS_ACCEPTED) and not v.out.on("orders.rejected")
    first, second, last = body(r1), body(r2), body(c1)
    assert (first["quantity"], first["price"], first["type"], first["time_in_force"]) == (
        200,
        "125.50",
        "LIMIT",
        "GTC",
    )
    assert (first["account"], first["side"], first["route"]) == ("MBR01-HOUSE", "BUY", "EXCHANGE")
    # no quantity in the REPLACE: the order's current one (the FIX request always states one)
    assert (second["quantity"], second["price"], second["orig_client_order_id"]) == (200, "125.60", "R1")
    assert (last["quantity"], last["orig_client_order_id"], last["order_id"]) == (200, "R2", "MBR01:E1")
    assert request(r1)["kind"] == request(r2)["kind"] == "REPLACE_ORDER"
    assert (request(r2)["price"], request(r2)["order_type"], request(r2)["time_in_force"]) == (
        "125.60",
        "LIMIT",
        "GTC",
    )
    assert (request(r2)["cl_ord_id"], request(r2)["orig_cl_ord_id"], request(r2)["quantity"]) == (
        "MBR01:R2",
        "MBR01:E1",
        200,
    )
    assert (request(c1)["kind"], request(c1)["cl_ord_id"], request(c1)["quantity"]) == (
        "CANCEL_ORDER",
        "MBR01:C1",
        200,
    )


def test_amendments_of_internal_orders_are_unchanged():
    v = Validation()
    v.send(order("B1", qty=100))
    [r1] = v.send(replace("R1", "B1", quantity=50))
    [c1] = v.send(cancel("C1", "R1"))
    assert [m.topic for m in v.out.messages] == [ORDERS_ACCEPTED] * 3
    assert set(body(r1)) == {
        "action", "order_id", "member_id", "client_order_id", "orig_client_order_id", "symbol", "price_ticks",
        "price", "reserve_price_ticks", "sent_at", "source", "quantity", "side",
    }  # fmt: skip
    assert "account" not in body(c1) and "route" not in body(c1) and "quantity" not in body(c1)
    items = validation_items(v.store)
    for sk in ("O#R1#V", "O#C1#V"):
        assert not {"route", "account", "type", "time_in_force"} & set(items[sk]), items[sk]
    assert items["O#B1#V"]["route"] == "INTERNAL"


def test_a_cold_start_reloads_the_route_of_the_target():
    warm = Validation()
    warm.send(exchange_order("E1", qty=300), replace("R1", "E1", quantity=400), order("B1"))
    # What a reload from the store knows equals what the warm container knew
    cache = warm.service._cache[0].known["MBR01"]
    reloaded = {sk[2:-2]: OrderRecords.known_order(i) for sk, i in validation_items(warm.store).items()}
    assert reloaded == cache
    assert cache["R1"].route == "EXCHANGE" and cache["B1"].route is None
    # When another container (cold) takes the next batch: a cancel of the replace, a replace of it
    cold = warm.cold()
    r2, c1 = cold.send(replace("R2", "R1", price="125.30"), cancel("C1", "R2"))
    assert [m.topic for m in (r2, c1)] == [ORDERS_EXCHANGE] * 2
    assert (body(r2)["quantity"], body(r2)["account"], body(r2)["type"], body(r2)["time_in_force"]) == (
        400,
        "MBR01-HOUSE",
        "LIMIT",
        "GTC",
    )
    assert (body(c1)["quantity"], body(c1)["route"], body(c1)["orig_client_order_id"]) == (
        400,
        "EXCHANGE",
        "R2",
    )
    assert request(c1)["kind"] == "CANCEL_ORDER"


@pytest.mark.parametrize("cold", [False, True], ids=["same container", "another container"])
def test_a_redelivered_batch_rewrites_the_same_items_and_reproduces_the_same_messages(cold):
    v = Validation()
    v.send(exchange_order("E1", qty=300))
    event = v.batch(replace("R1", "E1", price="125.50", quantity=200), cancel("C1", "R1"), cancel("C2", "E1"))
    # Given the invocation died after publishing, before its checkpoint
    original = v.store.put_if_version

    def die_before_checkpoint(table, item, expected):
        if item.get("offset") == 3:
            raise InfrastructureError("dies after publishing, before the checkpoint")
        return original(table, item, expected)

    v.store.put_if_version = die_before_checkpoint
    assert run_partitions(event, v.service.validate_partition).failures
    v.store.put_if_version = original
    first = v.out.messages[1:]
    items = validation_items(v.store)
    assert [m.topic for m in first] == [ORDERS_EXCHANGE] * 3
    # When the batch is delivered again (to the same container, or to a cold one)
    again = v.cold() if cold else v
    put_many, rewritten = again.store.put_many, []

    def recording(table, batch):
        rewritten.extend(i for i in batch if table == "orders")
        return put_many(table, batch)

    again.store.put_many = recording
    before = len(again.out.messages)
    again.deliver(event)
    # Then the stored decisions are replayed: identical items, identical messages
    assert [(m.topic, m.key, m.value) for m in again.out.messages[before:]] == [
        (m.topic, m.key, m.value) for m in first
    ]
    assert {i["sk"]: i for i in rewritten} == {sk: items[sk] for sk in ("O#R1#V", "O#C1#V", "O#C2#V")}
    assert validation_items(again.store) == items
    # and a third delivery, after the checkpoint, publishes nothing
    before = len(again.out.messages)
    again.deliver(event)
    assert len(again.out.messages) == before


def test_the_pipeline_sends_exchange_amendments_to_the_gateway_only_and_verify_reconciles():
    p = InMemoryPipeline()
    p.publish_orders(
        [
            order("S1", member="MBR02", side="SELL", price="125.40", qty=100),
            order("B1", price="125.40", qty=60),
            exchange_order("E1", member="MBR03", qty=300),
            replace("R1", "E1", member="MBR03", quantity=200),
            cancel("C1", "R1", member="MBR03"),
            exchange_order("E2", member="MBR04", qty=100, symbol="GLOBX", price="48.10"),
            cancel("C2", "E2", member="MBR04", symbol="GLOBX"),
        ],
        member_key,
    )
    p.drain()
    exchange = [json.loads(v) for v in p.log.values(ORDERS_EXCHANGE)]
    assert sorted((m["member_id"], m["client_order_id"], m["action"]) for m in exchange) == [
        ("MBR03", "C1", "CANCEL"),
        ("MBR03", "E1", "NEW"),
        ("MBR03", "R1", "REPLACE"),
        ("MBR04", "C2", "CANCEL"),
        ("MBR04", "E2", "NEW"),
    ]
    # match_orders saw none of them: no UNKNOWN_ORDER rejection, no order state
    events = [json.loads(v) for v in p.log.values(ORDERS_EVENTS)]
    assert not [e for e in events if e.get("member_id") in ("MBR03", "MBR04")]
    assert not [
        i for i in p.store.scan("orders") if i.get("kind") == "STATE" and i["member_id"] in ("MBR03", "MBR04")
    ]
    # and `clearing verify` finds every decision published and every routed request answered
    answer_everything(p)
    # the exposure release reads the answers too (ExecutionReports NEW: no exposure effect, nothing
    # dead-lettered) and its checkpoint is one verify checks against the log
    totals = p.drain()
    assert (
        totals["release_exchange.consumed"]
        == totals["release_exchange.skipped"]
        == p.log.size(EXCHANGE_EXECUTIONS)
    )
    assert not p.log.values("orders.deadletter")
    result = verify(p.store, log_of(p), now_ms=NOW_MS)
    assert result.ok, result.violations
    assert row(result, "checkpoints within")["status"] == "OK"
    assert any(
        pk.startswith("CKPT#release_exchange_exposure#") for pk in (i["pk"] for i in p.store.scan("state"))
    )
    routed = row(result, "exchange-routed orders")
    assert routed["expected"] == routed["found"] == 5 and routed["status"] == "OK"
    assert row(result, "accepted decisions published")["missing"] == 0
    assert p.log.size(EXCHANGE_EXECUTIONS) > 0
