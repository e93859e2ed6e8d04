"""Invariant checks: each one passes on good data and names the violation on broken data."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from clearing.domain import invariants
from clearing.domain.clearing import NovatedTrade, novate, positions_from_legs
from clearing.domain.invariants import (
    Violation,
    check_ccp_flat,
    check_order_quantities,
    check_positions_match_legs,
    check_two_legs_per_trade,
)
from clearing.domain.netting import net_obligations
from clearing.domain.refdata import load_bundled_reference_data

REFDATA = load_bundled_reference_data()


def legs():
    result = []
    for trade_id, buyer, seller, qty, ticks in (
        ("T-1", "MBR01", "MBR03", 100, 12540),
        ("T-2", "MBR03", "MBR05", 60, 12550),
    ):
        raw = {
            "trade_id": trade_id,
            "symbol": "ACME",
            "price_ticks": ticks,
            "quantity": qty,
            "trade_date": "2026-11-24",
            "buy": {"member_id": buyer, "account": f"{buyer}-HOUSE"},
            "sell": {"member_id": seller, "account": f"{seller}-HOUSE"},
        }
        novated = novate(raw, REFDATA)
        assert isinstance(novated, NovatedTrade)
        result.extend(novated.legs)
    return result


def codes(violations: list[Violation]) -> list[str]:
    return [v.code for v in violations]


def test_good_state_has_no_violations():
    all_legs = legs()
    assert check_ccp_flat(net_obligations(all_legs).values()) == []
    assert check_two_legs_per_trade(all_legs) == []
    assert check_positions_match_legs(positions_from_legs(all_legs), all_legs) == []


def test_ccp_not_flat_when_a_leg_is_lost():
    violations = check_ccp_flat(net_obligations(legs()[1:]).values())
    assert codes(violations) == [invariants.CCP_NOT_FLAT_QUANTITY, invariants.CCP_NOT_FLAT_CASH]
    assert "ACME 2026-11-25" in violations[0].message
    assert violations[0].to_dict()["code"] == invariants.CCP_NOT_FLAT_QUANTITY


def test_ccp_not_flat_in_cash_only():
    obligations = net_obligations(legs())
    key = ("MBR01", "ACME", date(2026, 11, 25))
    obligations[key] = replace(obligations[key], net_cash=obligations[key].net_cash + Decimal("0.01"))
    assert codes(check_ccp_flat(obligations.values())) == [invariants.CCP_NOT_FLAT_CASH]


def test_trade_with_one_or_three_legs():
    all_legs = legs()
    assert codes(check_two_legs_per_trade(all_legs[1:])) == [invariants.TRADE_LEG_COUNT]
    assert codes(check_two_legs_per_trade([*all_legs, all_legs[0]])) == [invariants.TRADE_LEG_COUNT]


def test_trade_legs_with_different_terms():
    buy, sell, *rest = legs()
    tampered = replace(sell, quantity=99)
    assert codes(check_two_legs_per_trade([buy, tampered, *rest])) == [invariants.TRADE_LEGS_MISMATCH]
    tampered_cash = replace(sell, principal_cash=sell.principal_cash - 1)
    assert codes(check_two_legs_per_trade([buy, tampered_cash, *rest])) == [invariants.TRADE_LEGS_MISMATCH]


def test_position_that_differs_from_its_legs():
    all_legs = legs()
    positions = positions_from_legs(all_legs)
    key = ("MBR03", "MBR03-HOUSE", "ACME", date(2026, 11, 25))
    positions[key] = replace(positions[key], net_quantity=positions[key].net_quantity + 1)
    assert codes(check_positions_match_legs(positions, all_legs)) == [invariants.POSITION_MISMATCH]


def test_missing_position_and_position_without_legs():
    all_legs = legs()
    positions = positions_from_legs(all_legs[:-1])  # MBR05's leg never applied
    assert codes(check_positions_match_legs(positions, all_legs)) == [invariants.POSITION_MISMATCH]
    assert codes(check_positions_match_legs(positions_from_legs(all_legs), all_legs[:-1])) == [
        invariants.POSITION_WITHOUT_LEGS
    ]


def test_order_quantities():
    orders = [
        {"order_id": "MBR01:C-1", "quantity": 100, "filled_qty": 40, "resting_qty": 60, "cancelled_qty": 0},
        {"order_id": "MBR01:C-2", "quantity": 100, "filled_qty": 40, "resting_qty": 0, "cancelled_qty": 60},
        {"order_id": "MBR02:C-3", "quantity": 100, "filled_qty": 40, "resting_qty": 50, "cancelled_qty": 0},
    ]
    violations = check_order_quantities(orders)
    assert codes(violations) == [invariants.ORDER_QUANTITY_MISMATCH]
    assert "MBR02:C-3" in violations[0].message
