"""Pure invariant checks of the clearing state, for tests, reconciliation runs and audits.

Each check takes plain data and returns a list of violations (a code and a message); an empty
list means the invariant holds. Nothing here raises on bad data: it reports it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from clearing.domain.clearing import BUY, SELL, ClearedLeg, Position, PositionKey, positions_from_legs
from clearing.domain.netting import NetObligation

CCP_NOT_FLAT_QUANTITY = "CCP_NOT_FLAT_QUANTITY"
CCP_NOT_FLAT_CASH = "CCP_NOT_FLAT_CASH"
TRADE_LEG_COUNT = "TRADE_LEG_COUNT"
TRADE_LEGS_MISMATCH = "TRADE_LEGS_MISMATCH"
POSITION_MISMATCH = "POSITION_MISMATCH"
POSITION_WITHOUT_LEGS = "POSITION_WITHOUT_LEGS"
ORDER_QUANTITY_MISMATCH = "ORDER_QUANTITY_MISMATCH"


@dataclass(frozen=True, slots=True)
class Violation:
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def check_ccp_flat(obligations: Iterable[NetObligation]) -> list[Violation]:
    """Per symbol and settlement date, net quantities and net cash (fees aside) sum to zero
    across members: the CCP itself holds nothing."""
    quantity: dict[tuple[str, date], int] = defaultdict(int)
    cash: dict[tuple[str, date], Decimal] = defaultdict(Decimal)
    for o in obligations:
        quantity[(o.symbol, o.settlement_date)] += o.net_quantity
        cash[(o.symbol, o.settlement_date)] += o.net_cash
    violations = []
    for symbol, day in sorted(quantity):
        if quantity[(symbol, day)] != 0:
            violations.append(
                Violation(
                    CCP_NOT_FLAT_QUANTITY, f"{symbol} {day}: net quantity sums to {quantity[(symbol, day)]}"
                )
            )
        if cash[(symbol, day)] != 0:
            violations.append(
                Violation(CCP_NOT_FLAT_CASH, f"{symbol} {day}: net cash sums to {cash[(symbol, day)]}")
            )
    return violations


def _pair_mismatch(buy: ClearedLeg, sell: ClearedLeg) -> str | None:
    for name in ("symbol", "quantity", "price_ticks", "notional", "settlement_date"):
        if getattr(buy, name) != getattr(sell, name):
            return f"{name} differs: {getattr(buy, name)} vs {getattr(sell, name)}"
    if buy.principal_cash + sell.principal_cash != 0:
        return f"principal cash does not cancel: {buy.principal_cash} + {sell.principal_cash}"
    return None


def check_two_legs_per_trade(legs: Iterable[ClearedLeg]) -> list[Violation]:
    """Every trade has exactly two legs, one BUY and one SELL, with the same terms."""
    by_trade: dict[str, list[ClearedLeg]] = defaultdict(list)
    for leg in legs:
        by_trade[leg.trade_id].append(leg)
    violations = []
    for trade_id, trade_legs in sorted(by_trade.items()):
        sides = sorted(leg.side for leg in trade_legs)
        if sides != [BUY, SELL]:
            violations.append(
                Violation(TRADE_LEG_COUNT, f"trade {trade_id} has legs {sides}, expected BUY and SELL")
            )
            continue
        buy, sell = sorted(trade_legs, key=lambda leg: leg.side)
        mismatch = _pair_mismatch(buy, sell)
        if mismatch is not None:
            violations.append(Violation(TRADE_LEGS_MISMATCH, f"trade {trade_id}: {mismatch}"))
    return violations


def check_positions_match_legs(
    positions: Mapping[PositionKey, Position], legs: Iterable[ClearedLeg]
) -> list[Violation]:
    """Each position equals the fold of its legs; no position exists without legs and vice versa."""
    expected = positions_from_legs(legs)
    violations = []
    for key in sorted(set(expected) | set(positions)):
        held, folded = positions.get(key), expected.get(key)
        if held is None:
            violations.append(Violation(POSITION_MISMATCH, f"position {key} missing, legs give {folded}"))
        elif folded is None:
            violations.append(Violation(POSITION_WITHOUT_LEGS, f"position {key} has no legs"))
        elif held != folded:
            violations.append(
                Violation(
                    POSITION_MISMATCH, f"position {key} is {held.to_dict()}, legs give {folded.to_dict()}"
                )
            )
    return violations


def check_order_quantities(orders: Iterable[Mapping[str, Any]]) -> list[Violation]:
    """Every accepted order: quantity == filled + resting + cancelled.

    Each order is a plain mapping with `order_id`, `quantity`, `filled_qty`, `resting_qty`
    and `cancelled_qty` (ints)."""
    violations = []
    for order in orders:
        quantity = order["quantity"]
        accounted = order["filled_qty"] + order["resting_qty"] + order["cancelled_qty"]
        if quantity != accounted:
            violations.append(
                Violation(
                    ORDER_QUANTITY_MISMATCH,
                    f"order {order['order_id']}: quantity {quantity} != filled {order['filled_qty']} "
                    f"+ resting {order['resting_qty']} + cancelled {order['cancelled_qty']}",
                )
            )
    return violations
