"""The stored items are a contract (docs/data-model.md, `clearing verify`, replay comparisons): the
repositories (clearing.repositories) must write exactly these attributes, values and types.

One small flow through the in-memory services (validate -> match -> release -> clear, a margin run and
end of day) covers every record family; one record of each is compared whole, its types included
(1 and "1", None and a missing attribute, a list and a tuple differ). The expected items were taken
from the services before the repositories existed (commit 3ae7f00: the same flow gave these items).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from clearing.adapters.refdata import seed_reference_data
from clearing.services import reports
from clearing_tools.bench.harness import InMemoryPipeline

from tests.unit.test_stream_services import member_key, order


def cancel(cid, orig, member="MBR01"):
    body = {"action": "CANCEL", "client_order_id": cid, "orig_client_order_id": orig, "member_id": member}
    return json.dumps({**body, "symbol": "ACME", "sent_at": "2026-11-24T14:30:01.000Z"}).encode()


def replace(cid, orig, member="MBR01", **terms):
    body = {"action": "REPLACE", "client_order_id": cid, "orig_client_order_id": orig, "member_id": member}
    return json.dumps({**body, "symbol": "ACME", "sent_at": "2026-11-24T14:30:02.000Z", **terms}).encode()


@pytest.fixture(scope="module")
def store():
    p = InMemoryPipeline(partitions=1)
    p.clear.clock = lambda: 1_800_000_000.0
    p.publish_orders(
        [
            order("S1", member="MBR02", side="SELL", price="125.40", qty=100),
            order("B1", price="125.50", qty=60),  # trades 60 with S1
            order("B2", price="125.00", qty=10),  # rests
            replace("B3", "B2", price="125.10", quantity=20),
            cancel("S2", "S1", member="MBR02"),
            order("B1", price="125.50", qty=60),  # duplicate id: rejected by its position
            order("X4", member="MBR99"),  # suspended member
            order("X5", price="200.00"),  # outside the collar: uses up X5
            b"not json",
            order("BIG1", member="MBR05", side="SELL", price="125.40", qty=30000),
            order("BIG2", member="MBR06", side="BUY", price="125.40", qty=30000),  # a margin call
            # routed to the exchange: its REPLACE and CANCEL keep its route and terms (orders.exchange)
            order("E1", member="MBR03", price="125.20", qty=300, route="EXCHANGE"),
            replace("E2", "E1", member="MBR03", quantity=200),
            cancel("E3", "E2", member="MBR03"),
        ],
        member_key,
    )
    p.drain()
    seed_reference_data(p.store)
    ref = p.refdata.current()
    reports.run_margin(p.store, ref, run_at=datetime(2026, 11, 24, 18, 0, 0, tzinfo=UTC))
    for day in sorted({i["pk"] for i in p.store.scan("obligations")}):
        reports.settle_eod(p.store, ref, day)
    return p.store


def typed(value):
    """The value with the type of every part of it, for an equality that also compares types."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


EXPECTED = [
    (
        "orders",
        {
            "pk": "MBR01",
            "sk": "O#B1#V",
            "kind": "VALIDATION",
            "decision": "ACCEPTED",
            "src": "orders.new/0/1",
            "order_id": "MBR01:B1",
            "action": "NEW",
            "member_id": "MBR01",
            "client_order_id": "B1",
            "symbol": "ACME",
            "price_ticks": 12550,
            "reserve_ticks": 12550,
            "exposure_reserved": "7530.00",
            "sent_at": "2026-11-24T14:30:00Z",
            "written_by": "validate_orders",
            "side": "BUY",
            "quantity": 60,
            "account": "MBR01-HOUSE",
            "type": "LIMIT",
            "time_in_force": "GTC",
            "route": "INTERNAL",
        },
    ),
    (
        "orders",
        {
            "pk": "MBR01",
            "sk": "O#B3#V",
            "kind": "VALIDATION",
            "decision": "ACCEPTED",
            "src": "orders.new/0/3",
            "order_id": "MBR01:B2",
            "action": "REPLACE",
            "member_id": "MBR01",
            "client_order_id": "B3",
            "symbol": "ACME",
            "price_ticks": 12510,
            "reserve_ticks": 12510,
            "exposure_reserved": "0",
            "sent_at": "2026-11-24T14:30:02Z",
            "written_by": "validate_orders",
            "side": "BUY",
            "orig_client_order_id": "B2",
            "target_order_id": "MBR01:B2",
            "target_price_ticks": 12500,
            "target_quantity": 10,
            "target_reserve_ticks": 12500,
            "quantity": 20,
        },
    ),
    (
        "orders",
        {
            "pk": "MBR02",
            "sk": "O#S2#V",
            "kind": "VALIDATION",
            "decision": "ACCEPTED",
            "src": "orders.new/0/4",
            "order_id": "MBR02:S1",
            "action": "CANCEL",
            "member_id": "MBR02",
            "client_order_id": "S2",
            "symbol": "ACME",
            "price_ticks": 12540,
            "reserve_ticks": 12540,
            "exposure_reserved": "0",
            "sent_at": "2026-11-24T14:30:01Z",
            "written_by": "validate_orders",
            "side": "SELL",
            "orig_client_order_id": "S1",
            "target_order_id": "MBR02:S1",
            "target_price_ticks": 12540,
            "target_quantity": 100,
            "target_reserve_ticks": 12540,
            "quantity": 100,
        },
    ),
    (
        "orders",
        {
            "pk": "MBR03",
            "sk": "O#E2#V",
            "kind": "VALIDATION",
            "decision": "ACCEPTED",
            "src": "orders.new/0/12",
            "order_id": "MBR03:E1",
            "action": "REPLACE",
            "member_id": "MBR03",
            "client_order_id": "E2",
            "symbol": "ACME",
            "price_ticks": 12520,
            "reserve_ticks": 12520,
            "exposure_reserved": "0",
            "sent_at": "2026-11-24T14:30:02Z",
            "written_by": "validate_orders",
            "side": "BUY",
            "orig_client_order_id": "E1",
            "target_order_id": "MBR03:E1",
            "target_price_ticks": 12520,
            "target_quantity": 300,
            "target_reserve_ticks": 12520,
            "quantity": 200,
            "account": "MBR03-HOUSE",
            "type": "LIMIT",
            "time_in_force": "GTC",
            "route": "EXCHANGE",
        },
    ),
    (
        "orders",
        {
            "pk": "MBR03",
            "sk": "O#E3#V",
            "kind": "VALIDATION",
            "decision": "ACCEPTED",
            "src": "orders.new/0/13",
            "order_id": "MBR03:E1",
            "action": "CANCEL",
            "member_id": "MBR03",
            "client_order_id": "E3",
            "symbol": "ACME",
            "price_ticks": 12520,
            "reserve_ticks": 12520,
            "exposure_reserved": "0",
            "sent_at": "2026-11-24T14:30:01Z",
            "written_by": "validate_orders",
            "side": "BUY",
            "orig_client_order_id": "E2",
            "target_order_id": "MBR03:E1",
            "target_price_ticks": 12520,
            "target_quantity": 200,
            "target_reserve_ticks": 12520,
            "quantity": 200,
            "account": "MBR03-HOUSE",
            "type": "LIMIT",
            "time_in_force": "GTC",
            "route": "EXCHANGE",
        },
    ),
    (
        "orders",
        {
            "pk": "MBR01",
            "sk": "O#X5#V",
            "kind": "VALIDATION",
            "decision": "REJECTED",
            "src": "orders.new/0/7",
            "rejection_id": "R-orders.new-0-7",
            "reason": "PRICE_OUTSIDE_COLLAR",
            "message": "price 200.00 is outside the 10% collar around 125.40 [112.86, 137.94]",
            "member_id": "MBR01",
            "client_order_id": "X5",
            "symbol": "ACME",
            "original_b64": "eyJhY3Rpb24iOiAiTkVXIiwgImNsaWVudF9vcmRlcl9pZCI6ICJYNSIsICJtZW1iZXJfaWQiOiAiTUJSMDEiLCAiYWNjb3VudCI6ICJNQlIwMS1IT1VTRSIsICJzeW1ib2wiOiAiQUNNRSIsICJzaWRlIjogIkJVWSIsICJ0eXBlIjogIkxJTUlUIiwgInByaWNlIjogIjIwMC4wMCIsICJxdWFudGl0eSI6IDEwMCwgInRpbWVfaW5fZm9yY2UiOiAiR1RDIiwgInNlbnRfYXQiOiAiMjAyNi0xMS0yNFQxNDozMDowMC4wMDBaIn0=",
            "original_length": 239,
            "original_sha256": "4fd7917b03c1e1f10e011451892b53f9b82c941d991c388c0c09afc54ead8322",
            "original_truncated": False,
            "written_by": "validate_orders",
            "gsi1pk": "REJ#MBR01",
            "gsi1sk": "orders.new#0#00000000000000000007",
        },
    ),
    (
        "orders",
        {
            "pk": "REJ#orders.new#0",
            "sk": "00000000000000000005",
            "kind": "REJECTION",
            "decision": "REJECTED",
            "src": "orders.new/0/5",
            "rejection_id": "R-orders.new-0-5",
            "reason": "DUPLICATE_CLORDID",
            "message": "client order id B1 was already used by member MBR01",
            "member_id": "MBR01",
            "client_order_id": "B1",
            "symbol": "ACME",
            "original_b64": "eyJhY3Rpb24iOiAiTkVXIiwgImNsaWVudF9vcmRlcl9pZCI6ICJCMSIsICJtZW1iZXJfaWQiOiAiTUJSMDEiLCAiYWNjb3VudCI6ICJNQlIwMS1IT1VTRSIsICJzeW1ib2wiOiAiQUNNRSIsICJzaWRlIjogIkJVWSIsICJ0eXBlIjogIkxJTUlUIiwgInByaWNlIjogIjEyNS41MCIsICJxdWFudGl0eSI6IDYwLCAidGltZV9pbl9mb3JjZSI6ICJHVEMiLCAic2VudF9hdCI6ICIyMDI2LTExLTI0VDE0OjMwOjAwLjAwMFoifQ==",
            "original_length": 238,
            "original_sha256": "a6de42e262a1ac2fc527dd9feed0a4df0d704c010e03e4faad8153383209c793",
            "original_truncated": False,
            "written_by": "validate_orders",
            "gsi1pk": "REJ#MBR01",
            "gsi1sk": "orders.new#0#00000000000000000005",
        },
    ),
    (
        "orders",
        {
            "pk": "REJ#orders.new#0",
            "sk": "00000000000000000008",
            "kind": "REJECTION",
            "decision": "REJECTED",
            "src": "orders.new/0/8",
            "rejection_id": "R-orders.new-0-8",
            "reason": "MALFORMED",
            "message": "message: Invalid JSON: expected ident at line 1 column 2",
            "member_id": None,
            "client_order_id": None,
            "symbol": None,
            "original_b64": "bm90IGpzb24=",
            "original_length": 8,
            "original_sha256": "7ccfa1fbf3940e6f0c0375d87c0f9235a50514e14cb427bdfaf5077987b26ccf",
            "original_truncated": False,
            "written_by": "validate_orders",
        },
    ),
    (
        "orders",
        {
            "pk": "MBR01",
            "sk": "O#B1#S",
            "kind": "STATE",
            "order_id": "MBR01:B1",
            "member_id": "MBR01",
            "account": "MBR01-HOUSE",
            "client_order_id": "B1",
            "symbol": "ACME",
            "status": "FILLED",
            "filled_qty": 60,
            "remaining_qty": 0,
            "cancelled_qty": 0,
            "quantity": 60,
            "reason": None,
            "last_src": "orders.accepted/0/1",
            "gsi1pk": "ACME",
            "gsi1sk": "MBR01:B1",
            "written_by": "match_orders",
        },
    ),
    (
        "orders",
        {
            "pk": "MBR02",
            "sk": "O#S1#S",
            "kind": "STATE",
            "order_id": "MBR02:S1",
            "member_id": "MBR02",
            "account": "MBR02-HOUSE",
            "client_order_id": "S1",
            "symbol": "ACME",
            "status": "CANCELLED",
            "filled_qty": 60,
            "remaining_qty": 0,
            "cancelled_qty": 40,
            "quantity": 100,
            "reason": "USER",
            "last_src": "orders.accepted/0/4",
            "gsi1pk": "ACME",
            "gsi1sk": "MBR02:S1",
            "written_by": "match_orders",
        },
    ),
    (
        "trades",
        {
            "pk": "T-0-1-0",
            "sk": "EXECUTED",
            "trade_id": "T-0-1-0",
            "symbol": "ACME",
            "price_ticks": 12540,
            "price": "125.40",
            "quantity": 60,
            "trade_date": "2026-11-24",
            "executed_at": "2026-11-24T14:30:00Z",
            "aggressor": "BUY",
            "buy": {"member_id": "MBR01", "account": "MBR01-HOUSE", "order_id": "MBR01:B1"},
            "sell": {"member_id": "MBR02", "account": "MBR02-HOUSE", "order_id": "MBR02:S1"},
            "source": {"topic": "orders.accepted", "partition": 0, "offset": 1, "seq": 0},
            "gsi1pk": "ACME",
            "gsi1sk": "2026-11-24T14:30:00Z#T-0-1-0",
            "written_by": "match_orders",
        },
    ),
    (
        "trades",
        {
            "pk": "T-0-1-0",
            "sk": "CLEARED",
            "trade_id": "T-0-1-0",
            "symbol": "ACME",
            "trade_date": "2026-11-24",
            "settlement_date": "2026-11-25",
            "legs": [
                {
                    "leg_id": "T-0-1-0-B",
                    "trade_id": "T-0-1-0",
                    "member_id": "MBR01",
                    "account": "MBR01-HOUSE",
                    "counterparty": "CCP",
                    "symbol": "ACME",
                    "side": "BUY",
                    "quantity": 60,
                    "price_ticks": 12540,
                    "price": "125.40",
                    "notional": "7524.00",
                    "fee_bps": "0.5",
                    "fee": "0.38",
                    "trade_date": "2026-11-24",
                    "settlement_date": "2026-11-25",
                    "principal_cash": "-7524.00",
                    "cash_amount": "-7524.38",
                },
                {
                    "leg_id": "T-0-1-0-S",
                    "trade_id": "T-0-1-0",
                    "member_id": "MBR02",
                    "account": "MBR02-HOUSE",
                    "counterparty": "CCP",
                    "symbol": "ACME",
                    "side": "SELL",
                    "quantity": 60,
                    "price_ticks": 12540,
                    "price": "125.40",
                    "notional": "7524.00",
                    "fee_bps": "0.5",
                    "fee": "0.38",
                    "trade_date": "2026-11-24",
                    "settlement_date": "2026-11-25",
                    "principal_cash": "7524.00",
                    "cash_amount": "7523.62",
                },
            ],
            "price": "125.40",
            "quantity": 60,
            "executed_at": "2026-11-24T14:30:00Z",
            "buy_member": "MBR01",
            "sell_member": "MBR02",
            "src": "trades.executed/0/0",
            "cleared_at": 1800000000000,
            "gsi1pk": "CLEARED#ACME",
            "gsi1sk": "2026-11-24T14:30:00Z#T-0-1-0",
            "written_by": "clear_trades",
        },
    ),
    (
        "positions",
        {
            "pk": "MBR01",
            "sk": "ACME#MBR01-HOUSE#2026-11-25",
            "member_id": "MBR01",
            "account": "MBR01-HOUSE",
            "symbol": "ACME",
            "settlement_date": "2026-11-25",
            "net_quantity": 60,
            "buy_quantity": 60,
            "sell_quantity": 0,
            "cash": "-7524.00",
            "fees": "0.38",
            "leg_count": 1,
            "applied_offset": 0,
            "last_src": "trades.executed/0/0",
            "written_by": "clear_trades",
        },
    ),
    (
        "obligations",
        {
            "pk": "2026-11-25",
            "sk": "MBR01#ACME",
            "member_id": "MBR01",
            "symbol": "ACME",
            "settlement_date": "2026-11-25",
            "net_quantity": 60,
            "net_cash": "-7524.00",
            "fees": "0.38",
            "gross_quantity": 60,
            "gross_cash": "7524.00",
            "leg_count": 1,
            "applied_offset": 0,
            "last_src": "trades.executed/0/0",
            "gsi1pk": "MBR01",
            "gsi1sk": "2026-11-25#ACME",
            "written_by": "clear_trades",
        },
    ),
    (
        "obligations",
        {
            "pk": "INSTRUCTIONS#2026-11-25",
            "sk": "MBR01#000000",
            "kind": "INSTRUCTION",
            "settlement_date": "2026-11-25",
            "member_id": "MBR01",
            "counterparty": "CCP",
            "purpose": "PRINCIPAL",
            "symbol": "ACME",
            "securities": "RECEIVE",
            "quantity": 60,
            "cash": "PAY",
            "amount": "7524.00",
        },
    ),
    (
        "state",
        {
            "pk": "BOOK#ACME",
            "sk": "-",
            "symbol": "ACME",
            "version": 1,
            "applied_offset": 6,
            "watermarks": {"0": 10},
            "resting_orders": 1,
            "written_by": "match_orders",
            "chunks": 0,
        },
    ),
    (
        "state",
        {
            "pk": "CKPT#match_orders#orders.accepted#0",
            "sk": "-",
            "stage": "match_orders",
            "topic": "orders.accepted",
            "partition": 0,
            "offset": 6,
            "version": 1,
            "books": {"ACME": 1},
            "written_by": "match_orders",
        },
    ),
    (
        "state",
        {
            "pk": "CLEARSTATE#ACME",
            "sk": "-",
            "symbol": "ACME",
            "applied_offset": 1,
            "watermark": [6, 0],
            "written_by": "clear_trades",
        },
    ),
    (
        "state",
        {
            "pk": "EXPOSURE#MBR01",
            "sk": "RESERVED",
            "member_id": "MBR01",
            "reserved": "8780.00",
            "applied": {"0": 2},
            "written_by": "validate_orders",
        },
    ),
    (
        "state",
        {
            "pk": "EXPOSURE#MBR01",
            "sk": "RELEASED",
            "member_id": "MBR01",
            "adjustment": "-6278.00",
            "watermarks": {"0": [3, 0]},
            "written_by": "validate_orders",
        },
    ),
    (
        "margin",
        {
            "pk": "MBR06",
            "sk": "RUN#2026-11-24T18:00:00Z",
            "kind": "MARGIN",
            "run_id": "2026-11-24T18:00:00Z",
            "member_id": "MBR06",
            "initial_margin": "316008.00",
            "variation_margin": "0.00",
            "requirement": "316008.00",
            "collateral": "250000",
            "shortfall": "66008.00",
            "worst_scenario": 16,
            "is_call": True,
        },
    ),
    (
        "margin",
        {
            "pk": "CALL#2026-11-24",
            "sk": "MBR06#2026-11-24T18:00:00Z",
            "kind": "MARGIN_CALL",
            "run_id": "2026-11-24T18:00:00Z",
            "member_id": "MBR06",
            "initial_margin": "316008.00",
            "variation_margin": "0.00",
            "requirement": "316008.00",
            "collateral": "250000",
            "shortfall": "66008.00",
            "worst_scenario": 16,
            "gsi1pk": "MBR06",
            "gsi1sk": "2026-11-24T18:00:00Z",
        },
    ),
    (
        "reference",
        {
            "pk": "MEMBER",
            "sk": "MBR01",
            "data": '{"member_id": "MBR01", "name": "Member 1 Securities", "accounts": ["MBR01-HOUSE", '
            '"MBR01-CLIENT"], "credit_limit": "2500000000", "collateral": "4000000", "fee_tier": '
            '"GOLD", "status": "ACTIVE"}',
        },
    ),
]


@pytest.mark.parametrize(
    ("table", "expected"), EXPECTED, ids=[f"{t}:{e['pk']}:{e['sk']}" for t, e in EXPECTED]
)
def test_stored_items_keep_their_shape(store, table, expected):
    items = {(i["pk"], i["sk"]): i for i in store.scan(table)}
    item = dict(items[(expected["pk"], expected["sk"])])
    if "book" in item:  # a book snapshot: the compressed book is checked by the snapshot tests
        assert type(item.pop("book")) is bytes
    assert typed(item) == typed(expected)


def test_every_record_family_is_covered(store):
    """Every kind of record the flow wrote has its expected item above (a new family needs one)."""

    def family(table, item):
        pk, sk = item["pk"], item["sk"]
        if table == "orders":
            return (table, item.get("kind"), item.get("decision"), item.get("action"))
        if table == "trades":
            return (table, sk)
        if table == "state":
            return (table, pk.split("#")[0], sk if pk.startswith("EXPOSURE#") else "")
        if table == "obligations":
            return (table, item.get("kind"))
        if table == "margin":
            return (table, item.get("kind"))
        if table == "reference":
            return (table, "MEMBER" if pk == "MEMBER" else "other")
        return (table,)

    expected = {family(t, e) for t, e in EXPECTED}
    written = {
        family(t, i)
        for t in ("orders", "trades", "positions", "obligations", "state", "margin")
        for i in store.scan(t)
    }
    written.add(("reference", "MEMBER"))
    # a rejection is NEW-less (no action); the decisions here cover NEW, CANCEL and REPLACE
    assert written <= expected, sorted(written - expected)
