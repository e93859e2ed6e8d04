"""SPAN-like margin: the two-symbol worked example of docs/clearing.md (16-scenario table, IM, VM, call)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

from clearing.domain.clearing import NovatedTrade, novate
from clearing.domain.margin import (
    SPAN_SCENARIOS,
    margin_calls,
    margin_requirement,
    margin_requirements,
    member_net_quantities,
    risk_array,
    round_cents,
    scan_margin,
    variation_margin,
)
from clearing.domain.refdata import load_bundled_reference_data

from tests.support.clearing_state import ClearingState, apply_legs_once

REFDATA = load_bundled_reference_data()


def D(values: str) -> tuple[Decimal, ...]:
    return tuple(Decimal(v) for v in values.split())


# The worked example's table (loss > 0, gain < 0), scenarios 1..16 in SPAN order.
ACME_LONG_300 = D(
    "0.00 0.00 -1003.20 -1003.20 1003.20 1003.20 -2006.40 -2006.40 2006.40 2006.40 "
    "-3009.60 -3009.60 3009.60 3009.60 -3160.08 3160.08"
)
GLOBX_SHORT_300 = D(
    "0.00 0.00 386.00 386.00 -386.00 -386.00 772.00 772.00 -772.00 -772.00 "
    "1158.00 1158.00 -1158.00 -1158.00 1215.90 -1215.90"
)
PORTFOLIO = D(
    "0.00 0.00 -617.20 -617.20 617.20 617.20 -1234.40 -1234.40 1234.40 1234.40 "
    "-1851.60 -1851.60 1851.60 1851.60 -1944.18 1944.18"
)


def trade(trade_id: str, symbol: str, buyer: str, seller: str, quantity: int, price: str) -> dict:
    return {
        "trade_id": trade_id,
        "symbol": symbol,
        "price_ticks": int(Decimal(price) * 100),
        "price": price,
        "quantity": quantity,
        "trade_date": "2026-11-24",
        "buy": {"member_id": buyer, "account": f"{buyer}-HOUSE"},
        "sell": {"member_id": seller, "account": f"{seller}-HOUSE"},
    }


def example_state() -> ClearingState:
    """MBR06 buys 300 ACME at 127.00 from MBR01 and sells 300 GLOBX at 48.00 to MBR02."""
    legs = []
    for raw in (
        trade("T-0-7-0", "ACME", "MBR06", "MBR01", 300, "127.00"),
        trade("T-1-8-0", "GLOBX", "MBR02", "MBR06", 300, "48.00"),
    ):
        result = novate(raw, REFDATA)
        assert isinstance(result, NovatedTrade)
        legs.extend(result.legs)
    return apply_legs_once(ClearingState(), legs)


def test_sixteen_scenarios_in_span_order():
    assert len(SPAN_SCENARIOS) == 16
    assert [s.number for s in SPAN_SCENARIOS] == list(range(1, 17))
    moves = [(s.price_move, s.volatility, s.extreme) for s in SPAN_SCENARIOS]
    third = Fraction(1, 3)
    assert moves[:6] == [(0, "UP", False), (0, "DOWN", False), (third, "UP", False), (third, "DOWN", False),
                         (-third, "UP", False), (-third, "DOWN", False)]  # fmt: skip
    assert moves[14:] == [(1, "UP", True), (-1, "DOWN", True)]
    assert SPAN_SCENARIOS[14].label.startswith("extreme up")
    assert SPAN_SCENARIOS[2].label == "price up 1/3 range, vol up"


def test_risk_arrays_of_the_worked_example():
    acme, globx = REFDATA.instruments["ACME"], REFDATA.instruments["GLOBX"]
    assert risk_array(300, acme.last_settlement_price, acme.margin) == ACME_LONG_300
    assert risk_array(-300, globx.last_settlement_price, globx.margin) == GLOBX_SHORT_300


def test_volatility_shift_does_not_change_linear_losses():
    acme = REFDATA.instruments["ACME"]
    array = risk_array(300, acme.last_settlement_price, acme.margin)
    assert all(array[i] == array[i + 1] for i in range(0, 14, 2))


def test_portfolio_scan_of_the_worked_example():
    result = scan_margin({"ACME": 300, "GLOBX": -300}, REFDATA)
    assert result.risk_arrays == {"ACME": ACME_LONG_300, "GLOBX": GLOBX_SHORT_300}
    assert result.scenario_losses == PORTFOLIO
    assert result.worst_scenario == 16  # extreme down: 35% of 3 x 8% = 8.4% > the 8% full-range move
    assert result.initial_margin == Decimal("1944.18")
    assert result.to_dict()["initial_margin"] == "1944.18"


def test_variation_margin_of_the_worked_example():
    mbr06 = [p for p in example_state().positions.values() if p.member_id == "MBR06"]
    # ACME 300 x 125.40 - 38,100.00 = -480.00; GLOBX -300 x 48.25 + 14,400.00 = -75.00
    assert variation_margin(mbr06, REFDATA) == Decimal("-555.00")


def test_margin_call_of_the_worked_example():
    positions = list(example_state().positions.values())
    call = margin_requirement("MBR06", positions, REFDATA, collateral=Decimal("2000.00"))
    assert call.initial_margin == Decimal("1944.18")
    assert call.variation_margin == Decimal("-555.00")
    assert call.requirement == Decimal("2499.18")
    assert call.shortfall == Decimal("499.18")
    assert call.is_call and call.worst_scenario == 16
    assert call.to_dict() == {
        "member_id": "MBR06",
        "initial_margin": "1944.18",
        "variation_margin": "-555.00",
        "requirement": "2499.18",
        "collateral": "2000.00",
        "shortfall": "499.18",
        "worst_scenario": 16,
    }


def test_margin_calls_over_all_members():
    positions = list(example_state().positions.values())
    everyone = margin_requirements(positions, REFDATA, collateral={"MBR06": Decimal("2000.00")})
    summary = {
        r.member_id: (r.initial_margin, r.variation_margin, r.requirement, r.shortfall) for r in everyone
    }
    assert summary == {
        # MBR01 is short 300 ACME sold at 127.00: VM +480.00 (a gain does not reduce IM), IM scenario 15
        "MBR01": (Decimal("3160.08"), Decimal("480.00"), Decimal("3160.08"), Decimal("0.00")),
        # MBR02 is long 300 GLOBX bought at 48.00: VM +75.00, IM scenario 16
        "MBR02": (Decimal("1215.90"), Decimal("75.00"), Decimal("1215.90"), Decimal("0.00")),
        "MBR06": (Decimal("1944.18"), Decimal("-555.00"), Decimal("2499.18"), Decimal("499.18")),
    }
    calls = margin_calls(positions, REFDATA, collateral={"MBR06": Decimal("2000.00")})
    assert [c.member_id for c in calls] == ["MBR06"]
    # With the bundled collateral (MBR06 posts 250,000) nobody is called
    assert margin_calls(positions, REFDATA) == []


def test_obligations_margin_like_positions():
    state = example_state()
    assert member_net_quantities(state.obligations.values()) == member_net_quantities(
        state.positions.values()
    )
    assert member_net_quantities(state.positions.values())["MBR06"] == {"ACME": 300, "GLOBX": -300}
    mbr06 = [o for o in state.obligations.values() if o.member_id == "MBR06"]
    assert variation_margin(mbr06, REFDATA) == Decimal("-555.00")
    assert margin_requirements(state.obligations.values(), REFDATA) == margin_requirements(
        state.positions.values(), REFDATA
    )


def test_empty_and_flat_portfolios_need_no_margin():
    assert scan_margin({}, REFDATA).initial_margin == Decimal("0.00")
    assert scan_margin({"ACME": 0}, REFDATA).initial_margin == Decimal("0.00")


def test_prices_override_the_settlement_price():
    # ACME marked at 120.00: scan range 9.60, extreme 3 x 9.60 x 35% = 10.08 per share
    result = scan_margin({"ACME": 100}, REFDATA, prices={"ACME": Decimal("120.00")})
    assert result.initial_margin == Decimal("1008.00")


def test_round_cents_is_half_even():
    assert round_cents(Fraction(1, 200)) == Decimal("0.00")
    assert round_cents(Fraction(3, 200)) == Decimal("0.02")
    assert round_cents(Fraction(-3, 200)) == Decimal("-0.02")
