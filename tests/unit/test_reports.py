"""Reports over a seeded in-memory run: verify holds, and fails when state is tampered with."""

from __future__ import annotations

from decimal import Decimal

import pytest
from clearing.adapters.files import DirectorySink
from clearing.repositories import keys
from clearing.services.reports import obligations_report, run_margin, settle_eod, verify
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.local.oms import generate_orders


@pytest.fixture(scope="module")
def seeded():
    p = InMemoryPipeline()
    for m in generate_orders(1500, seed=11):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain(batch_size=200)
    return p


def test_a_clean_run_satisfies_every_invariant(seeded):
    result = verify(seeded.store)
    assert result.ok, result.violations
    assert result.checked["cleared_trades"] == result.checked["trades"] > 100


def test_verify_catches_a_position_that_is_not_the_sum_of_its_legs(seeded):
    store = seeded.store
    key, item = next(iter(store.tables[keys.POSITIONS].items()))
    original = dict(item)
    try:
        store.tables[keys.POSITIONS][key] = {**item, "net_quantity": item["net_quantity"] + 1}
        codes = {v["code"] for v in verify(store).violations}
        assert "POSITION_MISMATCH" in codes
    finally:
        store.tables[keys.POSITIONS][key] = original


def test_verify_catches_a_lost_cleared_trade(seeded):
    store = seeded.store
    key = next(k for k in store.tables[keys.TRADES] if k[1] == "CLEARED")
    item = store.tables[keys.TRADES].pop(key)
    try:
        codes = {v["code"] for v in verify(store).violations}
        assert {"TRADE_NOT_CLEARED", "POSITION_MISMATCH", "OBLIGATION_MISMATCH"} <= codes
    finally:
        store.tables[keys.TRADES][key] = item


def test_obligations_net_to_zero_and_netting_is_efficient(seeded):
    report = obligations_report(seeded.store)
    assert sum(r["net_quantity"] for r in report["rows"]) == 0
    assert sum(Decimal(r["net_cash"]) for r in report["rows"]) == 0
    assert report["totals"]["net_settlements"] < report["totals"]["gross_settlements"]
    assert 0 < Decimal(report["totals"]["settlement_efficiency"]) < 1


def test_margin_run_stores_requirements_and_calls(seeded):
    result = run_margin(seeded.store, seeded.refdata.current())
    assert result["requirements"] and all(Decimal(r["initial_margin"]) >= 0 for r in result["requirements"])
    stored = seeded.store.scan(keys.MARGIN)
    assert len([i for i in stored if i["kind"] == "MARGIN"]) == len(result["requirements"])
    assert len([i for i in stored if i["kind"] == "MARGIN_CALL"]) == len(result["margin_calls"])


def test_settlement_instructions_files(seeded, tmp_path):
    day = obligations_report(seeded.store)["rows"][0]["settlement_date"]
    result = settle_eod(seeded.store, seeded.refdata.current(), day, DirectorySink(tmp_path))
    assert result["instructions"] > 0
    assert (tmp_path / f"settlement-{day}.csv").read_text().count("\n") == result["instructions"] + 1
