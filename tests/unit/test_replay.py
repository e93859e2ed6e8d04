"""Replay over in-memory ports: a rebuild from the log equals the live state exactly, differences are caught."""

from __future__ import annotations

import json
import pickle

import pytest
from clearing.adapters.memory import InMemoryItemStore
from clearing.adapters.refdata import StaticReferenceData
from clearing.adapters.retained_log import InMemoryRetainedLog
from clearing.domain.refdata import ReferenceData, bundled_reference_data_raw
from clearing.repositories import keys
from clearing.services.replay import STAGE_ITEMS, replay
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.local.oms import generate_orders


def seeded_run(n=1500, seed=11, refdata=None, batch_size=200):
    p = InMemoryPipeline(refdata=refdata)
    for m in generate_orders(n, seed=seed):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=batch_size)
    return p


def tight_credit():
    raw = bundled_reference_data_raw()
    for m in raw["members"]:
        if m["member_id"] in ("MBR05", "MBR06"):
            m["credit_limit"] = "3000000"
    return StaticReferenceData(ReferenceData.from_dict(raw))


@pytest.fixture(scope="module")
def seeded():
    return seeded_run()


def rebuild(p, stages=("all",), **kw):
    target = InMemoryItemStore()
    report = replay(list(stages), InMemoryRetainedLog(p.log), p.store, target, p.refdata, **kw)
    return target, report


def comparable_tables(store, tables):
    return {t: {k: keys.comparable(v) for k, v in store.tables.get(t, {}).items()} for t in tables}


def test_replaying_the_whole_log_rebuilds_orders_trades_legs_positions_obligations_exactly(seeded):
    sizes = {t: seeded.log.size(t) for t in seeded.log.topics}
    target, report = rebuild(seeded, batch_size=333)  # other batch boundaries than the live run
    assert report.ok, [d.to_dict() for d in report.differences[:5]]
    # the comparison really covered everything: same items, same content, table by table
    tables = (keys.ORDERS, keys.TRADES, keys.POSITIONS, keys.OBLIGATIONS)
    assert comparable_tables(target, tables) == comparable_tables(seeded.store, tables)

    def legs(s):
        return sorted(
            json.dumps(leg, sort_keys=True)
            for i in s.tables[keys.TRADES].values()
            if i["sk"] == "CLEARED"
            for leg in i["legs"]
        )

    assert legs(target) == legs(seeded.store) and len(legs(target)) == 2 * seeded.log.size("trades.executed")
    assert report.compared["topic:trades.executed"] == seeded.log.size("trades.executed")
    assert report.compared["topic:orders.events"] == seeded.log.size("orders.events")
    assert report.records_read["orders.new"] == 1500
    # and nothing was published to the live log
    assert {t: seeded.log.size(t) for t in seeded.log.topics} == sizes
    assert all(
        i["written_by"].startswith("replay:")
        for t in tables
        for i in target.tables[t].values()
        if i.get("kind") != "VALIDATION" or i.get("reason") != "CREDIT_LIMIT"
    )


@pytest.mark.parametrize("stage", ["match_orders", "clear_trades", "validate_orders"])
def test_each_stage_replays_on_its_own(seeded, stage):
    target, report = rebuild(seeded, stages=[stage])
    assert report.ok and report.stages == [stage]
    owned = {t for t, _ in STAGE_ITEMS[stage]}
    assert set(report.compared) >= owned
    assert not set(target.tables) - owned - {keys.STATE}  # wrote only its own tables (+ checkpoints)


def test_a_tampered_live_position_and_a_lost_cleared_trade_are_reported(seeded):
    store = seeded.store
    pkey, position = next(iter(store.tables[keys.POSITIONS].items()))
    tkey = next(k for k in store.tables[keys.TRADES] if k[1] == "CLEARED")
    trade = store.tables[keys.TRADES].pop(tkey)
    store.tables[keys.POSITIONS][pkey] = {**position, "net_quantity": position["net_quantity"] + 100}
    try:
        _, report = rebuild(seeded, stages=["clear_trades"])
    finally:
        store.tables[keys.POSITIONS][pkey] = position
        store.tables[keys.TRADES][tkey] = trade
    assert not report.ok
    found = {(d.where, d.kind) for d in report.differences}
    assert ("positions", "DIFFERENT") in found and ("trades", "EXTRA_IN_REBUILD") in found
    diff = next(d for d in report.differences if d.where == "positions")
    assert diff.fields["net_quantity"] == {
        "live": position["net_quantity"] + 100,
        "rebuilt": position["net_quantity"],
    }


def test_a_live_trade_message_that_the_rebuild_would_not_produce_is_reported(seeded):
    rows = seeded.log.topics["trades.executed"][0]
    k, v = rows[0]
    rows.append((k, json.dumps({**json.loads(v), "trade_id": "T-9-9-9"}).encode()))
    try:
        _, report = rebuild(seeded, stages=["match_orders"])
    finally:
        rows.pop()
    assert [(d.where, d.key, d.kind) for d in report.differences] == [
        ("topic:trades.executed", "T-9-9-9", "MISSING_IN_REBUILD")
    ]


def test_duplicates_reproduced_after_a_crash_are_handled_as_the_stages_handle_them():
    # Given a live run whose match and clear stages re-produced part of their output (crash before checkpoint)
    p = InMemoryPipeline()
    for m in generate_orders(600, seed=5):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=100)
    for topic in ("orders.accepted", "trades.executed", "orders.events"):
        for _part, rows in p.log.topics[topic].items():
            rows.extend(rows[: len(rows) // 3])  # the same messages again, at new offsets
    p.drain(batch_size=100)
    # When the log is replayed, Then the rebuild equals the live state and duplicates count once
    target, report = rebuild(p)
    assert report.ok, [d.to_dict() for d in report.differences[:5]]
    assert report.records_read["trades.executed"] > report.compared["topic:trades.executed"]


def test_credit_decisions_are_taken_as_recorded_and_differ_when_decided_afresh():
    # Given a run where two members hit their credit limit while fills released exposure asynchronously
    p = seeded_run(refdata=tight_credit(), batch_size=50)
    credit = [
        json.loads(v) for v in p.log.values("orders.rejected") if json.loads(v)["reason"] == "CREDIT_LIMIT"
    ]
    assert len(credit) > 20
    # When replayed with the recorded credit decisions, Then everything else is re-decided and equal
    _, report = rebuild(p)
    assert report.ok and report.credit_decisions_as_recorded == len(credit)
    # When credit is decided afresh (releases applied up front), Then at least those decisions differ
    # (and what follows from them, e.g. a cancel of an order that was credit-rejected live)
    _, fresh = rebuild(p, stages=["validate_orders"], recorded_credit=False, max_differences=100_000)
    assert not fresh.ok
    rejected_diffs = {d.key for d in fresh.differences if d.where == "topic:orders.rejected"}
    assert rejected_diffs >= {r["rejection_id"] for r in credit}


def test_from_offsets_continues_a_restored_backup(seeded):
    # Given a backup of the live tables taken after the first part of the log
    p = InMemoryPipeline()
    orders = list(generate_orders(900, seed=3))
    for m in orders[:500]:
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=100)
    backup = pickle.loads(pickle.dumps(p.store))
    ends = {t: {part: len(rows) for part, rows in p.log.topics[t].items()} for t in p.log.topics}
    for m in orders[500:]:
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=100)
    # When the rest of the log is replayed onto the restored backup
    report = replay(["all"], InMemoryRetainedLog(p.log), p.store, backup, p.refdata, from_offsets=ends)
    # Then the continued backup equals the live state
    assert report.ok, [d.to_dict() for d in report.differences[:5]]
    assert report.records_read["orders.new"] == 400


def test_records_dead_lettered_live_are_dead_lettered_alike_by_the_replay():
    # Given a live run whose orders.accepted and orders.events also hold records a rogue producer wrote
    p = InMemoryPipeline()
    for m in generate_orders(300, seed=4):
        p.log.append("orders.new", m.key.encode(), m.value)
    accepted_at = p.log.append("orders.accepted", b"ACME", b"not an order")
    event_at = p.log.append("orders.events", b"MBR01", json.dumps({"member_id": ["x"]}).encode())
    p.drain(batch_size=100)
    assert p.log.size("orders.deadletter") == 2
    # When every stage is replayed, Then the dead letters are compared, each by the stage that made it
    for stage in ("validate_orders", "match_orders"):
        _, report = rebuild(p, stages=[stage])
        assert report.compared["topic:orders.deadletter"] == 1, stage
    # and the rogue records are reported as live output no stage would produce (not a crash)
    _, report = rebuild(p)
    assert sorted((d.where, d.key, d.kind) for d in report.differences) == [
        (
            "topic:orders.accepted",
            "unreadable:orders.accepted/{}/{}".format(*accepted_at),
            "MISSING_IN_REBUILD",
        ),
        ("topic:orders.events", "unreadable:orders.events/{}/{}".format(*event_at), "MISSING_IN_REBUILD"),
    ]
