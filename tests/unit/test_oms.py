"""The OMS simulator: deterministic, valid where meant to be, invalid where meant to be."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import pytest
from clearing.domain.orders import CancelOrder, NewOrder, Rejection, ReplaceOrder, parse_order
from clearing.domain.refdata import load_bundled_reference_data
from clearing_tools.local.oms import INVALID_KINDS, OrderMix, generate_orders, orders_from_lines

REFDATA = load_bundled_reference_data()


def test_same_seed_gives_byte_identical_flow_and_another_seed_does_not():
    first = [m.value for m in generate_orders(500, seed=42)]
    assert first == [m.value for m in generate_orders(500, seed=42)]
    assert first != [m.value for m in generate_orders(500, seed=43)]


def test_valid_messages_parse_under_the_order_contract_and_are_keyed_by_member():
    for message in generate_orders(3000, seed=1):
        if message.invalid:
            continue
        parsed = parse_order(message.value)
        assert isinstance(parsed, NewOrder | CancelOrder | ReplaceOrder), (message.value, parsed)
        assert message.key == parsed.member_id
        assert REFDATA.members[parsed.member_id].is_active


def test_new_limit_prices_sit_on_the_tick_grid_within_three_percent_and_whole_lots():
    for message in generate_orders(3000, seed=2, invalid_fraction=0):
        order = message.order
        if order["action"] == "CANCEL":
            continue
        instrument = REFDATA.instruments[order["symbol"]]
        if "price" in order:
            price = Decimal(order["price"])
            assert instrument.to_ticks(price) is not None
            assert abs(price - instrument.reference_price) <= instrument.reference_price * Decimal("0.031")
        if "quantity" in order:
            assert order["quantity"] > 0 and order["quantity"] % instrument.lot_size == 0


def test_mix_is_realistic_and_flow_crosses_to_make_trades():
    messages = list(generate_orders(5000, seed=3, invalid_fraction=0))
    actions = Counter(m.action for m in messages)
    assert actions["NEW"] > 3000 and actions["CANCEL"] > 300 and actions["REPLACE"] > 200
    news = [m.order for m in messages if m.action == "NEW"]
    kinds = Counter((o["type"], o["time_in_force"], o.get("post_only", False)) for o in news)
    assert kinds[("MARKET", "IOC", False)] > 0 and kinds[("LIMIT", "FOK", False)] > 0
    assert sum(v for (t, tif, po), v in kinds.items() if po) > 0
    routes = Counter(o.get("route", "INTERNAL") for o in news)
    assert 0 < routes["EXCHANGE"] < 0.03 * len(news)
    # Crossing: some buy limit prices are above some sell limit prices of the same symbol.
    acme = [o for o in news if o["symbol"] == "ACME" and o["type"] == "LIMIT"]
    best_buy = max(Decimal(o["price"]) for o in acme if o["side"] == "BUY")
    best_sell = min(Decimal(o["price"]) for o in acme if o["side"] == "SELL")
    assert best_buy > best_sell


def test_cancels_and_replaces_target_the_members_own_earlier_orders():
    placed: dict[str, str] = {}  # latest client order id -> member
    for message in generate_orders(3000, seed=4, invalid_fraction=0):
        order = message.order
        if order["action"] == "NEW":
            placed[order["client_order_id"]] = order["member_id"]
        else:
            assert placed.get(order["orig_client_order_id"]) == order["member_id"]
            if order["action"] == "REPLACE":
                assert "price" in order or "quantity" in order
                placed[order["client_order_id"]] = order["member_id"]


def test_invalid_fraction_produces_each_kind_and_they_are_refused():
    messages = [m for m in generate_orders(6000, seed=5, invalid_fraction=0.25) if m.invalid]
    assert 1300 < len(messages) < 1700
    assert set(Counter(m.invalid for m in messages)) == set(INVALID_KINDS)
    for message in messages:
        parsed = parse_order(message.value)
        if message.invalid in ("NOT_JSON", "MISSING_FIELD"):
            assert isinstance(parsed, Rejection)
        elif message.invalid == "BAD_TICK":
            instrument = REFDATA.instruments[parsed.symbol]
            assert instrument.to_ticks(parsed.price) is None
        elif message.invalid == "BAD_LOT":
            assert parsed.quantity % REFDATA.instruments[parsed.symbol].lot_size != 0
        elif message.invalid == "OUTSIDE_COLLAR":
            instrument = REFDATA.instruments[parsed.symbol]
            assert abs(parsed.price - instrument.reference_price) > instrument.reference_price * Decimal(
                "0.10"
            )
        elif message.invalid == "UNKNOWN_SYMBOL":
            assert parsed.symbol not in REFDATA.instruments


def test_order_mix_parses_weights_and_rejects_unknown_kinds():
    assert OrderMix.parse("limit=1,cancel=0").cancel == 0
    only_markets = [
        m.order
        for m in generate_orders(
            200,
            seed=6,
            mix=OrderMix.parse("limit=0,market=1,ioc=0,fok=0,post_only=0,cancel=0,replace=0"),
            invalid_fraction=0,
        )
    ]
    assert {o["type"] for o in only_markets} == {"MARKET"} and all("price" not in o for o in only_markets)
    with pytest.raises(ValueError, match="unknown order kind"):
        OrderMix.parse("iceberg=1")


def test_orders_from_jsonl_and_csv_keep_the_member_key():
    jsonl = [json.dumps({"action": "NEW", "member_id": "MBR02", "quantity": 5}), "not json", ""]
    got = list(orders_from_lines(iter(jsonl), "jsonl"))
    assert [(m.key, m.invalid) for m in got] == [("MBR02", None), ("", "NOT_JSON")]
    csv_text = ["action,member_id,quantity,post_only,price", "NEW,MBR01,100,true,", "CANCEL,MBR03,,,"]
    rows = [m.order for m in orders_from_lines(iter(csv_text), "csv")]
    assert rows == [
        {"action": "NEW", "member_id": "MBR01", "quantity": 100, "post_only": True},
        {"action": "CANCEL", "member_id": "MBR03"},
    ]
