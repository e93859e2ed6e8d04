"""Multilateral netting: the three-member worked example of docs/clearing.md, report, instructions."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from clearing.domain.clearing import NovatedTrade, novate
from clearing.domain.invariants import check_ccp_flat
from clearing.domain.netting import (
    NetObligation,
    efficiency,
    net_obligations,
    netting_report,
    obligation_after_leg,
    settlement_instructions,
)
from clearing.domain.refdata import load_bundled_reference_data

from tests.support.clearing_state import ClearingState, apply_legs_once

REFDATA = load_bundled_reference_data()
SETTLES = date(2026, 11, 25)  # ACME is T+1; trades on Tue 24 Nov 2026


def trade(trade_id: str, buyer: str, seller: str, quantity: int, price: str) -> dict:
    return {
        "trade_id": trade_id,
        "symbol": "ACME",
        "price_ticks": int(Decimal(price) * 100),
        "price": price,
        "quantity": quantity,
        "trade_date": "2026-11-24",
        "buy": {"member_id": buyer, "account": f"{buyer}-HOUSE"},
        "sell": {"member_id": seller, "account": f"{seller}-HOUSE"},
    }


# The worked example: MBR01 (GOLD), MBR03 (SILVER), MBR05 (BRONZE) trade ACME in a circle.
EXAMPLE_TRADES = [
    trade("T-0-1-0", "MBR01", "MBR03", 100, "125.40"),
    trade("T-0-2-0", "MBR03", "MBR05", 60, "125.50"),
    trade("T-0-3-0", "MBR05", "MBR01", 30, "125.60"),
]


def example_legs():
    legs = []
    for raw in EXAMPLE_TRADES:
        result = novate(raw, REFDATA)
        assert isinstance(result, NovatedTrade)
        legs.extend(result.legs)
    return legs


def test_six_gross_settlements_net_to_three():
    obligations = net_obligations(example_legs())
    assert {k: (o.net_quantity, o.net_cash, o.fees) for k, o in obligations.items()} == {
        ("MBR01", "ACME", SETTLES): (70, Decimal("-8772.00"), Decimal("0.82")),
        ("MBR03", "ACME", SETTLES): (-40, Decimal("5010.00"), Decimal("2.00")),
        ("MBR05", "ACME", SETTLES): (-30, Decimal("3762.00"), Decimal("2.26")),
    }
    assert check_ccp_flat(obligations.values()) == []


def test_gross_figures_per_obligation():
    obligations = net_obligations(example_legs())
    mbr01 = obligations[("MBR01", "ACME", SETTLES)]
    assert (mbr01.gross_quantity, mbr01.gross_cash, mbr01.leg_count) == (130, Decimal("16308.00"), 2)


def test_netting_report_totals_and_efficiency():
    report = netting_report(net_obligations(example_legs()).values())
    totals = report.totals
    assert [row.member_id for row in report.rows] == ["MBR01", "MBR03", "MBR05"]
    assert (totals.gross_settlements, totals.net_settlements) == (6, 3)
    assert (totals.gross_quantity, totals.net_quantity) == (380, 140)
    assert (totals.gross_cash, totals.net_cash) == (Decimal("47676.00"), Decimal("17544.00"))
    assert totals.fees == Decimal("5.08")
    assert totals.settlement_efficiency == Decimal("0.5000")
    assert totals.quantity_efficiency == Decimal("0.6316")  # 1 - 140/380
    assert totals.cash_efficiency == Decimal("0.6320")  # 1 - 17544/47676
    as_dict = report.to_dict()
    assert as_dict["totals"]["cash_efficiency"] == "0.6320"
    assert as_dict["rows"][0]["net_cash"] == "-8772.00"


def test_report_filters_by_settlement_date_and_handles_nothing():
    obligations = net_obligations(example_legs()).values()
    empty = netting_report(obligations, settlement_date=date(2026, 11, 27))
    assert empty.rows == () and empty.totals.gross_settlements == 0
    assert empty.totals.cash_efficiency == Decimal("0.0000")
    assert efficiency(0, 0) == Decimal("0.0000")


def test_settlement_instructions_per_member():
    rows = settlement_instructions(net_obligations(example_legs()).values(), SETTLES)
    compact = [
        (r["member_id"], r["purpose"], r["symbol"], r["securities"], r["quantity"], r["cash"], r["amount"])
        for r in rows
    ]
    assert compact == [
        ("MBR01", "PRINCIPAL", "ACME", "RECEIVE", 70, "PAY", "8772.00"),
        ("MBR01", "FEES", "", "NONE", 0, "PAY", "0.82"),
        ("MBR03", "PRINCIPAL", "ACME", "DELIVER", 40, "RECEIVE", "5010.00"),
        ("MBR03", "FEES", "", "NONE", 0, "PAY", "2.00"),
        ("MBR05", "PRINCIPAL", "ACME", "DELIVER", 30, "RECEIVE", "3762.00"),
        ("MBR05", "FEES", "", "NONE", 0, "PAY", "2.26"),
    ]
    assert all(r["settlement_date"] == "2026-11-25" and r["counterparty"] == "CCP" for r in rows)
    assert settlement_instructions(net_obligations(example_legs()).values(), date(2026, 11, 26)) == []


def test_flat_obligation_gives_only_a_fee_row():
    # MBR01 buys 10 and sells 10 at the same price: flat, but fees are still due
    legs = example_legs()[:0]
    for raw in (trade("T-1", "MBR01", "MBR03", 10, "125.00"), trade("T-2", "MBR03", "MBR01", 10, "125.00")):
        legs.extend(novate(raw, REFDATA).legs)
    rows = [
        r
        for r in settlement_instructions(net_obligations(legs).values(), SETTLES)
        if r["member_id"] == "MBR01"
    ]
    assert [(r["purpose"], r["amount"]) for r in rows] == [
        ("FEES", "0.12")
    ]  # 2 x 1250.00 x 0.5bp = 2 x 0.0625


def test_apply_leg_refuses_a_leg_of_another_obligation():
    buy, sell = example_legs()[:2]
    with pytest.raises(ValueError):
        obligation_after_leg(obligation_after_leg(None, buy), sell)


def test_obligation_round_trip():
    for obligation in net_obligations(example_legs()).values():
        assert NetObligation.from_dict(obligation.to_dict()) == obligation


def test_replaying_a_batch_changes_nothing():
    legs = example_legs()
    once = apply_legs_once(ClearingState(), legs)
    # When the batch is redelivered, in part and whole, the state is the same
    again = apply_legs_once(apply_legs_once(once, legs[:3]), legs)
    assert again == once
    assert once.applied_leg_ids == {leg.leg_id for leg in legs}
    assert len(once.positions) == 3 and len(once.obligations) == 3


def test_state_round_trip():
    state = apply_legs_once(ClearingState(), example_legs())
    assert ClearingState.from_dict(state.to_dict()) == state
