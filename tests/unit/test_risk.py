"""Pre-trade risk: one test per reason code, on the bundled reference data."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from clearing.domain.orders import parse_order
from clearing.domain.refdata import load_bundled_reference_data
from clearing.domain.risk import Acceptance, CreditState, KnownOrder, assess_order

REF = load_bundled_reference_data()


def new(**changes):
    body = {
        "action": "NEW",
        "client_order_id": "C1",
        "member_id": "MBR01",
        "account": "MBR01-HOUSE",
        "symbol": "ACME",
        "side": "BUY",
        "type": "LIMIT",
        "price": "125.40",
        "quantity": 100,
        "time_in_force": "GTC",
        "sent_at": "2026-11-24T14:30:00Z",
        **changes,
    }
    if body["type"] == "MARKET":
        body.pop("price", None)
    return parse_order(json.dumps(body).encode())


def assess(order, exposure="0", known=None):
    return assess_order(order, REF, CreditState(Decimal(exposure)), known or {})


@pytest.mark.parametrize(
    "order, reason",
    [
        (new(member_id="NOBODY"), "UNKNOWN_MEMBER"),
        (new(member_id="MBR99", account="MBR99-HOUSE"), "MEMBER_SUSPENDED"),
        (new(account="MBR02-HOUSE"), "UNKNOWN_ACCOUNT"),
        (new(symbol="NOPE"), "UNKNOWN_SYMBOL"),
        (new(symbol="HALT", price="10.00"), "SYMBOL_HALTED"),
        (new(price="125.405"), "BAD_TICK"),
        (new(symbol="TYRL", price="5.42", quantity=150), "BAD_LOT"),
        (new(price="138.00"), "PRICE_OUTSIDE_COLLAR"),
        (new(price="112.80"), "PRICE_OUTSIDE_COLLAR"),
        (new(quantity=100_001), "QTY_LIMIT"),
        (new(quantity=40_000), "NOTIONAL_LIMIT"),
    ],
)
def test_each_check_has_its_reason(order, reason):
    result = assess(order)
    assert not isinstance(result, Acceptance) and result.reason == reason and result.message


def test_collar_edges_are_inside():
    assert isinstance(assess(new(price="137.94")), Acceptance)  # 125.40 * 1.10 = 137.94
    assert isinstance(assess(new(price="112.86")), Acceptance)


def test_credit_limit_counts_open_exposure_plus_the_new_order():
    limit = REF.members["MBR01"].credit_limit
    assert isinstance(assess(new(), exposure=str(limit - Decimal("12540"))), Acceptance)
    result = assess(new(), exposure=str(limit - Decimal("12539.99")))
    assert result.reason == "CREDIT_LIMIT"


def test_market_orders_reserve_at_the_far_edge_of_the_collar():
    result = assess(new(type="MARKET", time_in_force="IOC", quantity=10))
    assert isinstance(result, Acceptance)
    assert result.reserve_ticks == 13794 and result.exposure_reserved == Decimal("1379.40")


def test_duplicate_client_order_id_and_unknown_orders():
    known = {"C1": KnownOrder("MBR01:C1", "ACME", "BUY", 12540, 100, 12540)}
    assert assess(new(), known=known).reason == "DUPLICATE_CLORDID"
    assert assess(new(), known={"C1": None}).reason == "DUPLICATE_CLORDID"  # used up by a rejection
    cancel = parse_order(
        json.dumps(
            {
                "action": "CANCEL",
                "client_order_id": "C2",
                "member_id": "MBR01",
                "symbol": "ACME",
                "orig_client_order_id": "C9",
            }
        ).encode()
    )
    assert assess(cancel, known=known).reason == "UNKNOWN_ORDER"
    ok = parse_order(
        json.dumps(
            {
                "action": "CANCEL",
                "client_order_id": "C2",
                "member_id": "MBR01",
                "symbol": "ACME",
                "orig_client_order_id": "C1",
            }
        ).encode()
    )
    assert isinstance(assess(ok, known=known), Acceptance)


def test_replace_is_checked_like_a_new_order_and_for_the_credit_increase():
    known = {"C1": KnownOrder("MBR01:C1", "ACME", "BUY", 12540, 100, 12540)}
    limit = REF.members["MBR01"].credit_limit

    def replace(**c):
        return parse_order(
            json.dumps(
                {
                    "action": "REPLACE",
                    "client_order_id": "C2",
                    "member_id": "MBR01",
                    "symbol": "ACME",
                    "orig_client_order_id": "C1",
                    **c,
                }
            ).encode()
        )

    assert assess(replace(price="125.401"), known=known).reason == "BAD_TICK"
    assert assess(replace(quantity=200), exposure=str(limit), known=known).reason == "CREDIT_LIMIT"
    assert isinstance(
        assess(replace(quantity=50), exposure=str(limit), known=known), Acceptance
    )  # a decrease
    accepted = assess(replace(price="125.50"), known=known)
    assert (
        isinstance(accepted, Acceptance) and accepted.order_id == "MBR01:C1" and accepted.price_ticks == 12550
    )
