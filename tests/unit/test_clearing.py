"""Novation, settlement dates, fees and positions: the worked examples of docs/clearing.md."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from clearing.domain import clearing
from clearing.domain.clearing import (
    BUY,
    SELL,
    ClearedLeg,
    ClearingRejection,
    NovatedTrade,
    Position,
    clearing_fee,
    novate,
    position_after_leg,
    positions_from_legs,
    settlement_date,
)
from clearing.domain.refdata import load_bundled_reference_data
from hypothesis import given, settings
from hypothesis import strategies as st

REFDATA = load_bundled_reference_data()
HOLIDAYS = REFDATA.holidays


def trade(
    trade_id: str,
    buyer: str,
    seller: str,
    quantity: int,
    price: str,
    symbol: str = "ACME",
    trade_date: str = "2026-11-24",
) -> dict:
    """A trades.executed record as match_orders writes it (tick size 0.01 for ACME/GLOBX)."""
    return {
        "trade_id": trade_id,
        "symbol": symbol,
        "price_ticks": int(Decimal(price) / REFDATA.instruments[symbol].tick_size),
        "price": price,
        "quantity": quantity,
        "trade_date": trade_date,
        "executed_at": f"{trade_date}T14:30:00.123Z",
        "aggressor": "BUY",
        "buy": {"member_id": buyer, "account": f"{buyer}-HOUSE", "order_id": f"{buyer}:C-1"},
        "sell": {"member_id": seller, "account": f"{seller}-CLIENT", "order_id": f"{seller}:C-2"},
        "source": {"topic": "orders.accepted", "partition": 0, "offset": 41, "seq": 0},
    }


def novated(raw: dict) -> NovatedTrade:
    result = novate(raw, REFDATA)
    assert isinstance(result, NovatedTrade), result
    return result


def test_reference_data_matches_the_values_the_worked_examples_use():
    # docs/clearing.md quotes these; if the bundled file changes, the doc must change too.
    assert REFDATA.fee_tiers_bps == {
        "GOLD": Decimal("0.5"),
        "SILVER": Decimal("1.0"),
        "BRONZE": Decimal("2.0"),
    }
    assert [REFDATA.members[m].fee_tier for m in ("MBR01", "MBR03", "MBR05")] == ["GOLD", "SILVER", "BRONZE"]
    assert {date(2026, 11, 26), date(2026, 12, 25)} <= HOLIDAYS
    assert REFDATA.instruments["ACME"].settlement_cycle_days == 1
    assert REFDATA.instruments["UMBR"].settlement_cycle_days == 2


class TestSettlementDate:
    @pytest.mark.parametrize(
        ("trade_date", "cycle", "expected"),
        [
            (date(2026, 11, 24), 1, date(2026, 11, 25)),  # Tue -> Wed
            (date(2026, 11, 25), 1, date(2026, 11, 27)),  # Wed -> Fri, Thu 26 Nov is a holiday
            (date(2026, 11, 25), 2, date(2026, 11, 30)),  # Wed T+2 -> Fri, Mon
            (date(2026, 11, 27), 1, date(2026, 11, 30)),  # Fri -> Mon over the weekend
            (date(2026, 11, 28), 1, date(2026, 12, 1)),  # Sat rolls to Mon (T), T+1 = Tue
            (date(2026, 11, 26), 1, date(2026, 11, 30)),  # holiday rolls to Fri (T), T+1 = Mon
            (date(2026, 12, 24), 1, date(2026, 12, 28)),  # Thu -> Mon: Christmas and a weekend
            (date(2026, 11, 28), 0, date(2026, 11, 30)),  # T+0 of a Saturday trade is the roll itself
        ],
    )
    def test_worked_examples(self, trade_date, cycle, expected):
        assert settlement_date(trade_date, cycle, HOLIDAYS) == expected

    def test_negative_cycle_is_a_programming_error(self):
        with pytest.raises(ValueError):
            settlement_date(date(2026, 11, 24), -1, HOLIDAYS)

    def test_novated_legs_carry_the_instruments_cycle(self):
        # Given a T+2 instrument (UMBR, tick 0.05) traded on Wed 25 Nov 2026
        result = novated(
            trade("T-0-9-0", "MBR01", "MBR02", 10, "212.10", symbol="UMBR", trade_date="2026-11-25")
        )
        # Then both legs settle Mon 30 Nov (Thu holiday, weekend)
        assert result.settlement_date == date(2026, 11, 30)
        assert {leg.settlement_date for leg in result.legs} == {date(2026, 11, 30)}


class TestFees:
    def test_fee_worked_example(self):
        # Given MBR01 (GOLD, 0.5 bp) buys 100 ACME at 125.40 from MBR05 (BRONZE, 2 bp)
        result = novated(trade("T-0-41-0", "MBR01", "MBR05", 100, "125.40"))
        buy, sell = result.buy_leg, result.sell_leg
        # Then notional 12,540.00; buyer fee 0.627 -> 0.63; seller fee 2.508 -> 2.51
        assert buy.notional == sell.notional == Decimal("12540.00")
        assert (buy.fee, sell.fee) == (Decimal("0.63"), Decimal("2.51"))
        assert buy.cash_amount == Decimal("-12540.63")
        assert sell.cash_amount == Decimal("12537.49")
        # And principal cancels across the CCP; the CCP keeps the fees
        assert buy.principal_cash + sell.principal_cash == 0
        assert -(buy.cash_amount + sell.cash_amount) == Decimal("3.14")

    @pytest.mark.parametrize(
        ("notional", "expected"),
        [("250.00", "0.02"), ("750.00", "0.08"), ("12540.00", "1.25")],
    )
    def test_half_even_rounding_at_one_basis_point(self, notional, expected):
        # 0.025 -> 0.02 and 0.075 -> 0.08: ties go to the even cent (HALF_UP would give 0.03)
        assert clearing_fee(Decimal(notional), Decimal("1.0")) == Decimal(expected)

    def test_half_even_through_novation(self):
        # MBR03 (SILVER, 1 bp) buys 2 ACME at 125.00: notional 250.00, fee 0.025 -> 0.02
        assert novated(trade("T-0-5-0", "MBR03", "MBR05", 2, "125.00")).buy_leg.fee == Decimal("0.02")
        assert novated(trade("T-0-6-0", "MBR03", "MBR05", 6, "125.00")).buy_leg.fee == Decimal("0.08")


class TestNovation:
    def test_two_legs_against_the_ccp(self):
        result = novated(trade("T-0-41-0", "MBR01", "MBR05", 100, "125.40"))
        buy, sell = result.legs
        assert (buy.leg_id, sell.leg_id) == ("T-0-41-0-B", "T-0-41-0-S")
        assert (buy.member_id, buy.account, buy.side) == ("MBR01", "MBR01-HOUSE", BUY)
        assert (sell.member_id, sell.account, sell.side) == ("MBR05", "MBR05-CLIENT", SELL)
        assert buy.counterparty == sell.counterparty == "CCP"
        assert buy.price == sell.price == Decimal("125.40")
        assert buy.price_ticks == 12540
        assert (buy.signed_quantity, sell.signed_quantity) == (100, -100)
        assert (buy.principal_cash, sell.principal_cash) == (Decimal("-12540.00"), Decimal("12540.00"))
        assert result.trade_date == date(2026, 11, 24)
        assert result.settlement_date == date(2026, 11, 25)

    def test_novation_is_deterministic(self):
        raw = trade("T-0-41-0", "MBR01", "MBR05", 100, "125.40")
        assert novate(raw, REFDATA) == novate(dict(raw), REFDATA)

    def test_price_ticks_alone_is_enough(self):
        raw = trade("T-1", "MBR01", "MBR05", 3, "330.55", symbol="STARK")
        raw["price_ticks"] = 6611  # STARK tick 0.05 -> 330.55
        del raw["price"]
        assert novated(raw).buy_leg.price == Decimal("330.55")

    def test_wire_round_trip(self):
        result = novated(trade("T-0-41-0", "MBR01", "MBR05", 100, "125.40"))
        as_dict = result.to_dict()
        assert as_dict["legs"][0]["cash_amount"] == "-12540.63"
        assert NovatedTrade.from_dict(as_dict) == result
        assert ClearedLeg.from_dict(result.sell_leg.to_dict()) == result.sell_leg


class TestRejections:
    @pytest.mark.parametrize(
        ("mutate", "code"),
        [
            (lambda t: t.update(symbol="NOPE"), clearing.UNKNOWN_SYMBOL),
            (lambda t: t["buy"].update(member_id="MBR77"), clearing.UNKNOWN_MEMBER),
            (lambda t: t["sell"].update(member_id="MBR77"), clearing.UNKNOWN_MEMBER),
            (lambda t: t["buy"].update(account="MBR02-HOUSE"), clearing.UNKNOWN_ACCOUNT),
            (lambda t: t.update(quantity=0), clearing.MALFORMED_TRADE),
            (lambda t: t.update(quantity=True), clearing.MALFORMED_TRADE),
            (lambda t: t.update(quantity="100"), clearing.MALFORMED_TRADE),
            (lambda t: t.pop("trade_id"), clearing.MALFORMED_TRADE),
            (lambda t: t.update(trade_date="24/11/2026"), clearing.MALFORMED_TRADE),
            (lambda t: t.pop("sell"), clearing.MALFORMED_TRADE),
            (lambda t: t.update(price="125.405"), clearing.MALFORMED_TRADE),  # off the tick grid
            (lambda t: t.update(price="125.41"), clearing.MALFORMED_TRADE),  # disagrees with ticks
            (lambda t: t.update(price="abc"), clearing.MALFORMED_TRADE),
            (lambda t: t.update(price=None, price_ticks=None), clearing.MALFORMED_TRADE),
            (lambda t: t.update(price_ticks=-5, price=None), clearing.MALFORMED_TRADE),
            (lambda t: t.update(trade_date="9999-12-31"), clearing.MALFORMED_TRADE),  # no date after it
            (lambda t: t.update(quantity=10**30), clearing.MALFORMED_TRADE),  # notional out of range
            (lambda t: t.update(price="1E+40", price_ticks=None), clearing.MALFORMED_TRADE),
        ],
    )
    def test_reason_codes(self, mutate, code):
        raw = trade("T-0-41-0", "MBR01", "MBR05", 100, "125.40")
        mutate(raw)
        result = novate(raw, REFDATA)
        assert isinstance(result, ClearingRejection)
        assert result.reason_code == code
        assert result.to_dict()["reason_code"] == code

    @pytest.mark.parametrize("raw", [None, [], "trade", 42, {}])
    def test_non_objects_are_malformed_not_exceptions(self, raw):
        result = novate(raw, REFDATA)  # type: ignore[arg-type]
        assert isinstance(result, ClearingRejection)
        assert result.reason_code == clearing.MALFORMED_TRADE


class TestPositions:
    def test_apply_leg_folds_quantities_cash_and_fees(self):
        # Given MBR01-HOUSE buys 100 ACME at 125.40 and later sells 30 at 125.60 (same settlement date)
        bought = novated(trade("T-0-1-0", "MBR01", "MBR03", 100, "125.40")).buy_leg
        sold_raw = trade("T-0-3-0", "MBR05", "MBR01", 30, "125.60")
        sold_raw["sell"]["account"] = "MBR01-HOUSE"
        sold = novated(sold_raw).sell_leg
        # When both legs are applied
        position = position_after_leg(position_after_leg(None, bought), sold)
        # Then
        assert position == Position(
            member_id="MBR01",
            account="MBR01-HOUSE",
            symbol="ACME",
            settlement_date=date(2026, 11, 25),
            net_quantity=70,
            buy_quantity=100,
            sell_quantity=30,
            cash=Decimal("-8772.00"),
            fees=Decimal("0.82"),
            leg_count=2,
        )
        assert position.cash_after_fees == Decimal("-8772.82")

    def test_round_trip_through_plain_dict(self):
        leg = novated(trade("T-0-1-0", "MBR01", "MBR03", 100, "125.40")).buy_leg
        position = position_after_leg(None, leg)
        as_dict = position.to_dict()
        assert as_dict["cash"] == "-12540.00" and as_dict["fees"] == "0.63"
        assert Position.from_dict(as_dict) == position

    def test_leg_of_another_position_is_refused(self):
        result = novated(trade("T-0-1-0", "MBR01", "MBR03", 100, "125.40"))
        with pytest.raises(ValueError):
            position_after_leg(position_after_leg(None, result.buy_leg), result.sell_leg)

    def test_positions_are_per_account(self):
        result = novated(trade("T-0-1-0", "MBR01", "MBR03", 100, "125.40"))
        positions = positions_from_legs(result.legs)
        assert set(positions) == {
            ("MBR01", "MBR01-HOUSE", "ACME", date(2026, 11, 25)),
            ("MBR03", "MBR03-CLIENT", "ACME", date(2026, 11, 25)),
        }


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(  # fields of a valid trade replaced by anything
        {},
        optional={
            "trade_id": st.one_of(st.text(max_size=5), st.integers(), st.none()),
            "symbol": st.one_of(st.sampled_from(["ACME", "UMBR", "NOPE"]), st.integers(), st.none()),
            "price_ticks": st.one_of(
                st.integers(-(10**40), 10**40), st.text(max_size=4), st.none(), st.booleans()
            ),
            "price": st.one_of(
                st.decimals(allow_nan=True, allow_infinity=True).map(str),
                st.text(max_size=6),
                st.floats(),
                st.none(),
            ),
            "quantity": st.one_of(
                st.integers(-(10**40), 10**40), st.floats(), st.text(max_size=3), st.none()
            ),
            "trade_date": st.one_of(st.dates().map(str), st.text(max_size=10), st.integers(), st.none()),
            "buy": st.one_of(
                st.fixed_dictionaries(
                    {"member_id": st.sampled_from(["MBR01", "X"]), "account": st.just("MBR01-HOUSE")}
                ),
                st.none(),
                st.text(max_size=3),
            ),
            "sell": st.one_of(
                st.fixed_dictionaries(
                    {"member_id": st.sampled_from(["MBR05", ""]), "account": st.just("MBR05-HOUSE")}
                ),
                st.none(),
                st.lists(st.integers(), max_size=2),
            ),
        },
    )
)
def test_novate_never_raises_on_any_input(overrides):
    raw = trade("T-0-41-0", "MBR01", "MBR05", 100, "125.40") | overrides
    result = novate(raw, REFDATA)
    assert isinstance(result, NovatedTrade | ClearingRejection)
    if isinstance(result, NovatedTrade):
        assert result.buy_leg.principal_cash + result.sell_leg.principal_cash == 0
