"""Queries over a seeded in-memory run: what they answer matches what the pipeline published."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from clearing.adapters.retained_log import InMemoryRetainedLog
from clearing.services.queries import list_orders, list_trades, order_life
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.local.oms import generate_orders


class NoScanStore:
    """The store with Scan forbidden: per-member / per-symbol / per-order paths must use keys."""

    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        if name == "scan":
            raise AssertionError("Scan on a per-member / per-symbol / per-order path")
        return getattr(self.store, name)


@pytest.fixture(scope="module")
def seeded():
    p = InMemoryPipeline()
    for m in generate_orders(1500, seed=11):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=200)
    return p


def published(p, topic):
    return [json.loads(v) for v in p.log.values(topic)]


def fills_by_order(p):
    filled = defaultdict(int)
    for e in published(p, "orders.events"):
        if e["type"] in ("PARTIALLY_FILLED", "FILLED"):
            filled[e["order_id"]] += e["last_qty"]
    return filled


def test_a_members_orders_have_the_status_and_fills_the_engine_published(seeded):
    # Given the orders MBR02 sent, and the events the matching engine published for them
    sent = {
        m.order["client_order_id"]
        for m in generate_orders(1500, seed=11)
        if m.order
        and m.order.get("member_id") == "MBR02"
        and m.order.get("action") == "NEW"
        and m.invalid != "MISSING_FIELD"
    }  # malformed: no usable order identity, kept by position
    last_event = {}
    for e in published(seeded, "orders.events"):
        if e["member_id"] == "MBR02" and e["type"] != "REJECTED":
            last_event[e["order_id"]] = e
    # When MBR02's orders are listed (by key only)
    rows = list_orders(NoScanStore(seeded.store), member="MBR02", refdata=seeded.refdata.current())
    # Then every NEW it sent is there, and status / filled / remaining agree with the events
    assert {r["client_order_id"] for r in rows} >= sent - {None}
    filled = fills_by_order(seeded)
    checked = 0
    for r in rows:
        assert r["member_id"] == "MBR02"
        assert r["filled_qty"] == filled.get(r["order_id"], 0)
        assert (
            r["filled_qty"] + r["remaining_qty"] + r["cancelled_qty"] == r["quantity"]
            or r["status"] == "REJECTED"
        )
        ev = last_event.get(r["order_id"])
        if ev and ev["type"] == "FILLED":
            assert r["status"] == "FILLED" and r["remaining_qty"] == 0
            checked += 1
        elif ev and ev["type"] == "CANCELLED":
            assert r["status"] == "CANCELLED" and r["reason"] == ev["reason"]
            checked += 1
    assert checked > 50
    assert {r["status"] for r in rows} >= {"FILLED", "CANCELLED", "RESTING"}


def test_orders_by_symbol_and_status_use_the_index(seeded):
    rows = list_orders(NoScanStore(seeded.store), symbol="ACME")
    assert rows and all(r["symbol"] == "ACME" for r in rows)
    in_book = {
        e["order_id"]
        for e in published(seeded, "orders.events")
        if e["symbol"] == "ACME" and e["type"] != "REJECTED"
    }
    assert {r["order_id"] for r in rows} == in_book
    open_rows = list_orders(NoScanStore(seeded.store), symbol="ACME", status="open")
    assert open_rows and {r["status"] for r in open_rows} <= {"RESTING", "PARTIALLY_FILLED"}
    assert all(r["side"] and r["price_ticks"] for r in open_rows)  # terms joined from the validation item


def test_trades_by_symbol_and_member_are_the_published_trades_with_both_legs(seeded):
    trades = published(seeded, "trades.executed")
    rows = list_trades(NoScanStore(seeded.store), symbol="ACME")
    assert [r["trade_id"] for r in rows] == sorted(
        (t["trade_id"] for t in trades if t["symbol"] == "ACME"),
        key=lambda i: (next(t["executed_at"] for t in trades if t["trade_id"] == i), i),
    )
    for r in rows:
        assert r["status"] == "CLEARED" and len(r["legs"]) == 2
        buy_leg, sell_leg = sorted(r["legs"], key=lambda leg: leg["side"])
        assert (
            buy_leg["member_id"] == r["buy"]["member_id"] and sell_leg["member_id"] == r["sell"]["member_id"]
        )
        assert buy_leg["quantity"] == sell_leg["quantity"] == r["quantity"]
    mine = list_trades(NoScanStore(seeded.store), member="MBR03")
    expected = {t["trade_id"] for t in trades if "MBR03" in (t["buy"]["member_id"], t["sell"]["member_id"])}
    assert {r["trade_id"] for r in mine} == expected and expected


def test_trades_since_a_time(seeded):
    rows = list_trades(seeded.store, symbol="ACME")
    cut = rows[len(rows) // 2]["executed_at"]
    later = list_trades(seeded.store, symbol="ACME", since=cut)
    assert later and all(r["executed_at"] >= cut for r in later)
    assert len(later) < len(rows)


def _record_at(p, position):
    topic, partition, offset = position.split("/")
    return json.loads(p.log.topics[topic][int(partition)][int(offset)][1])


def test_an_orders_life_holds_every_step_with_its_kafka_position(seeded):
    # Given a filled order of MBR02 that was also the target of a later replace
    log = InMemoryRetainedLog(seeded.log)
    rows = list_orders(seeded.store, member="MBR02")
    order = next(r for r in rows if r["status"] == "FILLED")
    life = order_life(
        NoScanStore(seeded.store), log, "MBR02", order["client_order_id"], seeded.refdata.current()
    )
    steps = [s["step"] for s in life["steps"]]
    # Then it was received, accepted, filled, and each fill has its cleared leg
    assert steps[:2] == ["RECEIVED", "ACCEPTED"]
    assert "FILLED" in steps
    fills = [s for s in life["steps"] if s["step"] in ("PARTIALLY_FILLED", "FILLED")]
    legs = [s for s in life["steps"] if s["step"] == "CLEARED_LEG"]
    assert sum(s["last_qty"] for s in fills) == order["quantity"]
    assert sorted(s["trade_id"] for s in legs) == sorted(s["trade_id"] for s in fills)
    assert all(leg["side"] == order["side"] for leg in legs)
    # and every step names a Kafka record that really is about this order
    for s in life["steps"]:
        assert s["time"], s
        msg = _record_at(seeded, s["from"])
        if s["from"].startswith("orders.events"):
            assert msg["order_id"] == order["order_id"] and msg["type"] in (s["step"], "ACCEPTED")
        elif s["from"].startswith("orders.new"):
            assert (
                order["client_order_id"] in (msg["client_order_id"], msg.get("orig_client_order_id"))
                or msg["client_order_id"] in life["client_order_ids"]
            )
        elif s["from"].startswith("trades.executed"):
            assert msg["trade_id"] == s["trade_id"]
    times = [s["time"] for s in life["steps"]]
    assert times == sorted(times)


def test_a_replaced_order_is_found_by_its_later_client_order_id(seeded):
    log = InMemoryRetainedLog(seeded.log)
    replace = next(
        json.loads(v) for v in seeded.log.values("orders.accepted") if json.loads(v)["action"] == "REPLACE"
    )
    member, root = replace["order_id"].split(":", 1)
    by_new_id = order_life(seeded.store, log, member, replace["client_order_id"])
    by_root = order_life(seeded.store, log, member, root)
    assert by_new_id["order"]["order_id"] == by_root["order"]["order_id"] == replace["order_id"]
    assert by_new_id["steps"] == by_root["steps"]
    assert any(s["step"] == "RECEIVED" and s.get("action") == "REPLACE" for s in by_root["steps"])


def test_a_rejected_order_shows_its_reason_and_an_unknown_one_is_none(seeded):
    log = InMemoryRetainedLog(seeded.log)
    rej = next(
        json.loads(v)
        for v in seeded.log.values("orders.rejected")
        if json.loads(v)["reason"] == "PRICE_OUTSIDE_COLLAR"
    )
    life = order_life(seeded.store, log, rej["member_id"], rej["client_order_id"])
    assert [s["step"] for s in life["steps"]] == ["RECEIVED", "REJECTED"]
    assert life["steps"][1]["reason"] == "PRICE_OUTSIDE_COLLAR" and life["order"]["status"] == "REJECTED"
    assert order_life(seeded.store, log, "MBR02", "NO-SUCH-ORDER") is None


def test_without_the_log_the_life_is_what_the_tables_hold(seeded):
    order = next(r for r in list_orders(seeded.store, member="MBR01") if r["status"] == "FILLED")
    life = order_life(seeded.store, None, "MBR01", order["client_order_id"])
    assert life["order"]["status"] == "FILLED" and not life["log_read"]
    assert [s["step"] for s in life["steps"]] == ["ACCEPTED"]


def test_cli_orders_json_is_the_query_result(seeded, monkeypatch, capsys):
    import clearing_tools.cli.context as context
    from clearing_tools.cli.main import main

    monkeypatch.setattr(context, "data_store", lambda: seeded.store)
    assert main(["orders", "--member", "MBR04", "--status", "FILLED", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and rows == json.loads(
        json.dumps(
            list_orders(seeded.store, "MBR04", status="FILLED", refdata=seeded.refdata.current()), default=str
        )
    )
