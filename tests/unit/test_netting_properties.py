"""Property tests: conservation across members, idempotent replay, positions equal their legs."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from clearing.domain.clearing import NovatedTrade, novate, positions_from_legs
from clearing.domain.invariants import check_ccp_flat, check_positions_match_legs, check_two_legs_per_trade
from clearing.domain.netting import net_obligations, netting_report
from clearing.domain.refdata import load_bundled_reference_data
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.clearing_state import ClearingState, apply_legs_once

REFDATA = load_bundled_reference_data()
MEMBERS = sorted(REFDATA.members)
SYMBOLS = sorted(REFDATA.instruments)


@st.composite
def trades(draw, min_size: int = 0, max_size: int = 30) -> list[dict]:
    """Valid trades.executed records with distinct trade ids."""
    count = draw(st.integers(min_size, max_size))
    result = []
    for n in range(count):
        symbol = draw(st.sampled_from(SYMBOLS))
        buyer, seller = draw(st.sampled_from(MEMBERS)), draw(st.sampled_from(MEMBERS))
        ticks = draw(st.integers(1, 2_000_000))
        result.append(
            {
                "trade_id": f"T-0-{n}-0",
                "symbol": symbol,
                "price_ticks": ticks,
                "quantity": draw(st.integers(1, 100_000)),
                "trade_date": (date(2026, 11, 20) + timedelta(days=draw(st.integers(0, 45)))).isoformat(),
                "buy": {
                    "member_id": buyer,
                    "account": draw(st.sampled_from(REFDATA.members[buyer].accounts)),
                },
                "sell": {
                    "member_id": seller,
                    "account": draw(st.sampled_from(REFDATA.members[seller].accounts)),
                },
            }
        )
    return result


def legs_of(raw_trades: list[dict]):
    legs = []
    for raw in raw_trades:
        result = novate(raw, REFDATA)
        assert isinstance(result, NovatedTrade), result
        legs.extend(result.legs)
    return legs


@settings(max_examples=150, deadline=None)
@given(trades())
def test_net_quantity_and_net_cash_sum_to_zero_per_symbol_and_date(raw_trades):
    legs = legs_of(raw_trades)
    obligations = net_obligations(legs).values()
    quantity: dict = defaultdict(int)
    cash: dict = defaultdict(Decimal)
    for o in obligations:
        quantity[(o.symbol, o.settlement_date)] += o.net_quantity
        cash[(o.symbol, o.settlement_date)] += o.net_cash
    assert all(q == 0 for q in quantity.values())
    assert all(c == 0 for c in cash.values())
    assert check_ccp_flat(obligations) == []
    # Fees are what the CCP keeps: members' cash after fees sums to minus the fees
    assert sum((leg.cash_amount for leg in legs), Decimal(0)) == -sum((leg.fee for leg in legs), Decimal(0))


@settings(max_examples=100, deadline=None)
@given(trades())
def test_every_trade_has_two_matching_legs_and_positions_equal_their_legs(raw_trades):
    legs = legs_of(raw_trades)
    assert check_two_legs_per_trade(legs) == []
    state = apply_legs_once(ClearingState(), legs)
    assert check_positions_match_legs(state.positions, legs) == []
    assert state.positions == positions_from_legs(legs)
    assert state.obligations == net_obligations(legs)


@settings(max_examples=100, deadline=None)
@given(trades(min_size=1), st.data())
def test_replay_with_duplicates_gives_the_same_state(raw_trades, data):
    legs = legs_of(raw_trades)
    once = apply_legs_once(ClearingState(), legs)
    # Redelivery: some legs again, in any order, split over batches that overlap what was applied
    duplicates = data.draw(st.lists(st.sampled_from(legs), max_size=len(legs) * 2))
    replay = data.draw(st.permutations(legs + duplicates))
    cut = data.draw(st.integers(0, len(replay)))
    state = apply_legs_once(ClearingState(), replay[:cut])
    state = apply_legs_once(state, replay)
    state = apply_legs_once(state, replay[cut:])
    assert state == once


@settings(max_examples=100, deadline=None)
@given(trades())
def test_netting_never_increases_what_settles(raw_trades):
    totals = netting_report(net_obligations(legs_of(raw_trades)).values()).totals
    assert totals.net_quantity <= totals.gross_quantity
    assert totals.net_cash <= totals.gross_cash
    assert totals.net_settlements <= totals.gross_settlements
    assert Decimal(0) <= totals.cash_efficiency <= Decimal(1)


@settings(max_examples=50, deadline=None)
@given(trades(min_size=1))
def test_state_survives_a_plain_dict_round_trip(raw_trades):
    state = apply_legs_once(ClearingState(), legs_of(raw_trades))
    assert ClearingState.from_dict(state.to_dict()) == state
