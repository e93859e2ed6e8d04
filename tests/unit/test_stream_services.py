"""validate_orders and match_orders over in-memory ports: decisions, matching, exactly-once effects."""

from __future__ import annotations

import json

import pytest
from clearing.ports import InfrastructureError
from clearing.repositories.keys import comparable
from clearing_tools.bench.harness import InMemoryPipeline


def order(cid, member="MBR01", side="BUY", price="125.40", qty=100, tif="GTC", symbol="ACME", **extra):
    body = {
        "action": "NEW",
        "client_order_id": cid,
        "member_id": member,
        "account": f"{member}-HOUSE",
        "symbol": symbol,
        "side": side,
        "type": "LIMIT",
        "price": price,
        "quantity": qty,
        "time_in_force": tif,
        "sent_at": "2026-11-24T14:30:00.000Z",
        **extra,
    }
    if body["type"] == "MARKET":
        body.pop("price")
    return json.dumps(body).encode()


def member_key(raw: bytes) -> bytes:
    try:
        return json.loads(raw)["member_id"].encode()
    except Exception:
        return b"UNKNOWN"


def run(orders, **kw):
    p = InMemoryPipeline()
    p.publish_orders(orders, member_key)
    totals = p.drain(**kw)
    return p, totals


def trades_of(p):
    return [json.loads(v) for v in p.log.values("trades.executed")]


def test_crossing_orders_trade_at_resting_price():
    # Given a resting sell at 125.40 and a buy at 125.50
    p, _ = run(
        [order("S1", member="MBR02", side="SELL", price="125.40"), order("B1", price="125.50", qty=60)]
    )
    # Then one trade of 60 at the resting order's price
    [trade] = trades_of(p)
    assert trade["price"] == "125.40" and trade["quantity"] == 60
    assert trade["buy"]["member_id"] == "MBR01" and trade["sell"]["member_id"] == "MBR02"
    assert trade["trade_id"].startswith("T-")
    states = {i["order_id"]: i for i in p.store.scan("orders") if i.get("kind") == "STATE"}
    assert states["MBR02:S1"]["status"] == "PARTIALLY_FILLED" and states["MBR02:S1"]["remaining_qty"] == 40
    assert states["MBR01:B1"]["status"] == "FILLED"


def test_invalid_orders_are_rejected_with_reason_and_original_bytes():
    bad = [
        b"not json",
        order("X1", symbol="NOPE"),
        order("X2", price="125.401"),
        order("X3", price="200.00"),
        order("X4", member="MBR99"),
        order("X5", qty=0),
    ]
    p, totals = run(bad + [order("X1", symbol="NOPE")])
    rejected = [json.loads(v) for v in p.log.values("orders.rejected")]
    reasons = sorted(r["reason"] for r in rejected)
    assert reasons == sorted(
        [
            "MALFORMED",
            "UNKNOWN_SYMBOL",
            "BAD_TICK",
            "PRICE_OUTSIDE_COLLAR",
            "MEMBER_SUSPENDED",
            "MALFORMED",
            "DUPLICATE_CLORDID",
        ]
    )
    assert all(r["original_b64"] for r in rejected)
    assert totals["validate.consumed"] == 7 == totals["validate.rejected"]


def test_cancel_and_replace_need_a_known_order():
    cancel = json.dumps(
        {
            "action": "CANCEL",
            "client_order_id": "C2",
            "member_id": "MBR01",
            "symbol": "ACME",
            "orig_client_order_id": "NOPE",
        }
    ).encode()
    p, _ = run([cancel])
    [rej] = [json.loads(v) for v in p.log.values("orders.rejected")]
    assert rej["reason"] == "UNKNOWN_ORDER"


def test_exposure_is_reserved_then_released_by_fills_and_cancels():
    cancel = json.dumps(
        {
            "action": "CANCEL",
            "client_order_id": "B1-c",
            "member_id": "MBR01",
            "symbol": "ACME",
            "orig_client_order_id": "B1",
        }
    ).encode()
    p, _ = run(
        [order("S1", member="MBR02", side="SELL", price="125.40", qty=40), order("B1", qty=100), cancel]
    )
    items = {(i["pk"], i["sk"]): i for i in p.store.scan("state")}
    reserved = float(items[("EXPOSURE#MBR01", "RESERVED")]["reserved"])
    adjustment = float(items[("EXPOSURE#MBR01", "RELEASED")]["adjustment"])
    assert reserved == pytest.approx(12540.0)
    assert reserved + adjustment == pytest.approx(0.0)  # 40 filled + 60 cancelled: nothing open


def test_redelivering_every_batch_gives_the_same_state():
    from clearing_tools.local.oms import generate_orders  # the OMS simulator's generator

    orders = [m.value for m in generate_orders(600, seed=7)]
    once, _ = run(orders, batch_size=50)
    twice, _ = run(orders, batch_size=50, redeliver=True)

    def strip(s):
        return {t: {k: comparable(v) for k, v in rows.items()} for t, rows in s.tables.items()}

    assert strip(once.store) == strip(twice.store)
    assert once.log.values("trades.executed") == [v for v in once.log.values("trades.executed")]
    assert {json.loads(v)["trade_id"] for v in once.log.values("trades.executed")} == {
        json.loads(v)["trade_id"] for v in twice.log.values("trades.executed")
    }


def test_crash_between_trade_write_and_checkpoint_then_redelivery_matches_a_clean_run():
    orders = [order(f"S{i}", member="MBR02", side="SELL", price="125.40", qty=10) for i in range(5)]
    orders += [order("B1", qty=45)]
    clean, _ = run(orders)

    p = InMemoryPipeline()
    p.publish_orders(orders, member_key)
    # the first match attempt dies after writing trades and producing, before snapshot and checkpoint
    original = p.store.put_many
    calls = {"n": 0}

    def crash_on_book_snapshot(table, items):
        if table == "state" and any(i["pk"].startswith("BOOK#") for i in items) and calls["n"] == 0:
            calls["n"] += 1
            raise InfrastructureError("crash after trades, before snapshot/checkpoint")
        return original(table, items)

    p.store.put_many = crash_on_book_snapshot
    with pytest.raises(RuntimeError):
        p.drain()
    p.drain()  # the mapping redelivers the batch

    def ids(pl):
        return sorted(json.loads(v)["trade_id"] for v in pl.log.values("trades.executed"))

    assert sorted(set(ids(p))) == ids(clean)  # duplicates on the topic carry the same ids

    def state(pl):
        return {k: v for k, v in pl.store.tables["orders"].items()}

    assert state(p) == state(clean)
    assert {k: comparable(v) for k, v in p.store.tables["trades"].items()} == {
        k: comparable(v) for k, v in clean.store.tables["trades"].items()
    }
    for table in ("positions", "obligations"):
        assert p.store.scan(table) == clean.store.scan(table)


def test_clearing_novates_each_trade_into_two_legs_and_nets_to_zero():
    orders = [
        order("S1", member="MBR02", side="SELL", price="125.40", qty=100),
        order("B1", member="MBR01", price="125.40", qty=60),
        order("B2", member="MBR03", price="125.40", qty=40),
    ]
    p, totals = run(orders)
    cleared = [i for i in p.store.scan("trades") if i["sk"] == "CLEARED"]
    assert len(cleared) == 2 and all(len(i["legs"]) == 2 for i in cleared)
    obligations = p.store.scan("obligations")
    assert sum(o["net_quantity"] for o in obligations) == 0
    assert sum(float(o["net_cash"]) for o in obligations) == pytest.approx(0.0)
    by_member = {o["member_id"]: o["net_quantity"] for o in obligations}
    assert by_member == {"MBR01": 60, "MBR02": -100, "MBR03": 40}
    assert totals["clear.accepted"] == 2


def test_redelivered_trades_do_not_double_positions():
    orders = [order("S1", member="MBR02", side="SELL", price="125.40", qty=100), order("B1", qty=100)]
    once, _ = run(orders)
    twice, _ = run(orders, redeliver=True)
    assert once.store.scan("positions") == twice.store.scan("positions")
    assert once.store.scan("obligations") == twice.store.scan("obligations")


def test_a_retry_on_another_warm_container_replays_the_decisions_the_dead_one_published():
    """Container A dies after publishing its decisions (before the checkpoint). Exposure is released
    meanwhile, so deciding again would now accept what A rejected. Container B, warm with a cache
    from an earlier batch, must replay A's stored decisions instead: downstream already saw them."""
    import dataclasses

    from clearing.adapters.memory import InMemoryItemStore, InMemoryPublisher
    from clearing.adapters.refdata import StaticReferenceData
    from clearing.domain.refdata import load_bundled_reference_data
    from clearing.repositories import keys as k
    from clearing.services.validate import ValidateOrders

    from tests.unit.msk import msk_event, msk_record

    ref = load_bundled_reference_data()
    tight = dataclasses.replace(ref.members["MBR01"], credit_limit=__import__("decimal").Decimal("20000"))
    refdata = StaticReferenceData(dataclasses.replace(ref, members={**ref.members, "MBR01": tight}))
    store = InMemoryItemStore()
    a_out, b_out = InMemoryPublisher(), InMemoryPublisher()
    container_a, container_b = ValidateOrders(store, a_out, refdata), ValidateOrders(store, b_out, refdata)
    batch1 = msk_event([msk_record("orders.new", 0, 0, order("B1"), "MBR01")])
    batch2 = msk_event([msk_record("orders.new", 0, 1, order("B2"), "MBR01")])
    from clearing.services.batch import run_partitions

    assert not run_partitions(batch1, container_b.validate_partition).failures  # B is warm now
    original = store.put_if_version

    def die_before_checkpoint(table, item, expected):
        if item.get("offset") == 1:
            raise InfrastructureError("container A dies after publishing, before its checkpoint")
        return original(table, item, expected)

    store.put_if_version = die_before_checkpoint
    assert run_partitions(batch2, container_a.validate_partition).failures
    store.put_if_version = original
    [a_decision] = [json.loads(m.value) for m in a_out.on("orders.rejected")]
    assert a_decision["reason"] == "CREDIT_LIMIT"
    # B1 is cancelled meanwhile: its exposure is released
    pk, sk = k.exposure_key("MBR01", "RELEASED")
    store.put_many("state", [{"pk": pk, "sk": sk, "adjustment": "-12540.00", "watermarks": {}}])
    assert not run_partitions(batch2, container_b.validate_partition).failures
    assert [json.loads(m.value)["reason"] for m in b_out.on("orders.rejected")] == ["CREDIT_LIMIT"]
    assert not [m for m in b_out.on("orders.accepted") if json.loads(m.value)["client_order_id"] == "B2"]


def test_a_deep_book_snapshot_is_split_into_chunks_and_restores_exactly(monkeypatch):
    from clearing.repositories import state

    monkeypatch.setattr(state, "CHUNK_BYTES", 2_000)  # force chunking with a small book
    orders = [
        order(
            f"R{i}",
            member="MBR0" + str(1 + i % 5),
            side="BUY" if i % 2 else "SELL",
            price=f"{125.40 + (0.01 if i % 2 else 0.05) * (1 + i % 40):.2f}"
            if i % 2 == 0
            else f"{125.40 - 0.01 * (1 + i % 40):.2f}",
            qty=10 + i,
        )
        for i in range(300)
    ]
    p, _ = run(orders)
    items = {(k[0], k[1]): v for k, v in p.store.tables["state"].items() if k[0] == "BOOK#ACME"}
    head = items[("BOOK#ACME", "-")]
    assert head["chunks"] > 1 and "book" not in head
    assert all(("BOOK#ACME", f"v{head['version']}#c{n}") in items for n in range(head["chunks"]))
    restored = state.decode_book(head, p.store)
    assert restored.book.snapshot() == p.match.books["ACME"].book.snapshot()
    assert len(restored.book) == head["resting_orders"] > 100
