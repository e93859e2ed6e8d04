"""Multilateral netting: one net obligation per (member, symbol, settlement date) against the CCP.

Obligations are maintained incrementally from cleared legs (`obligation_after_leg`). Each keeps the net
quantity and net principal cash (fees aside, so they sum to zero across members per symbol and
date), the fees, and the gross figures (sum of |qty| and |cash| of its legs) from which netting
efficiency = 1 - net / gross is reported. `settlement_instructions` turns the obligations of one
settlement date into plain deliver/receive and pay/receive rows per member.

Replays are idempotent in the service (clear_trades stores which trades are cleared), not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from clearing.domain.clearing import ClearedLeg

ObligationKey = tuple[str, str, date]  # (member_id, symbol, settlement_date)
EFFICIENCY_PLACES = Decimal("0.0001")
ZERO = Decimal("0.00")


def obligation_key(leg: ClearedLeg) -> ObligationKey:
    return (leg.member_id, leg.symbol, leg.settlement_date)


@dataclass(frozen=True, slots=True)
class NetObligation:
    """A member's net obligation to/from the CCP in one symbol for one settlement date.

    net_quantity > 0: the member receives securities; net_cash < 0: the member pays cash.
    """

    member_id: str
    symbol: str
    settlement_date: date
    net_quantity: int = 0
    net_cash: Decimal = ZERO  # principal only, fees aside
    fees: Decimal = ZERO
    gross_quantity: int = 0  # sum of |qty| of the legs
    gross_cash: Decimal = ZERO  # sum of |principal cash| of the legs
    leg_count: int = 0

    @property
    def key(self) -> ObligationKey:
        return (self.member_id, self.symbol, self.settlement_date)

    @property
    def cash(self) -> Decimal:
        """Same as net_cash: lets margin treat obligations and positions alike."""
        return self.net_cash

    @property
    def is_flat(self) -> bool:
        return self.net_quantity == 0 and self.net_cash == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "symbol": self.symbol,
            "settlement_date": self.settlement_date.isoformat(),
            "net_quantity": self.net_quantity,
            "net_cash": str(self.net_cash),
            "fees": str(self.fees),
            "gross_quantity": self.gross_quantity,
            "gross_cash": str(self.gross_cash),
            "leg_count": self.leg_count,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NetObligation:
        return cls(
            member_id=raw["member_id"],
            symbol=raw["symbol"],
            settlement_date=date.fromisoformat(raw["settlement_date"]),
            net_quantity=int(raw["net_quantity"]),
            net_cash=Decimal(raw["net_cash"]),
            fees=Decimal(raw["fees"]),
            gross_quantity=int(raw["gross_quantity"]),
            gross_cash=Decimal(raw["gross_cash"]),
            leg_count=int(raw["leg_count"]),
        )


def obligation_after_leg(obligation: NetObligation | None, leg: ClearedLeg) -> NetObligation:
    """The net obligation after one more leg (a new one when `obligation` is None)."""
    if obligation is None:
        obligation = NetObligation(leg.member_id, leg.symbol, leg.settlement_date)
    elif obligation.key != obligation_key(leg):
        raise ValueError(f"leg {leg.leg_id} does not belong to obligation {obligation.key}")
    return replace(
        obligation,
        net_quantity=obligation.net_quantity + leg.signed_quantity,
        net_cash=obligation.net_cash + leg.principal_cash,
        fees=obligation.fees + leg.fee,
        gross_quantity=obligation.gross_quantity + leg.quantity,
        gross_cash=obligation.gross_cash + abs(leg.principal_cash),
        leg_count=obligation.leg_count + 1,
    )


def net_obligations(legs: Iterable[ClearedLeg]) -> dict[ObligationKey, NetObligation]:
    """Obligations folded from legs (no deduplication: pass each leg once)."""
    obligations: dict[ObligationKey, NetObligation] = {}
    for leg in legs:
        key = obligation_key(leg)
        obligations[key] = obligation_after_leg(obligations.get(key), leg)
    return obligations


def _obligation_sort(o: NetObligation) -> tuple[str, date, str]:
    return (o.symbol, o.settlement_date, o.member_id)


# --- netting report ------------------------------------------------------------------------


def efficiency(net: Decimal | int, gross: Decimal | int) -> Decimal:
    """1 - net/gross to 4 places (half even); 0 when there is nothing gross."""
    if gross == 0:
        return Decimal("0.0000")
    return (1 - Decimal(net) / Decimal(gross)).quantize(EFFICIENCY_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class NettingTotals:
    gross_settlements: int  # legs, i.e. settlements without netting
    net_settlements: int  # obligations that are not flat
    gross_quantity: int
    net_quantity: int  # sum of |net qty|
    gross_cash: Decimal
    net_cash: Decimal  # sum of |net cash|
    fees: Decimal
    settlement_efficiency: Decimal
    quantity_efficiency: Decimal
    cash_efficiency: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "gross_settlements": self.gross_settlements,
            "net_settlements": self.net_settlements,
            "gross_quantity": self.gross_quantity,
            "net_quantity": self.net_quantity,
            "gross_cash": str(self.gross_cash),
            "net_cash": str(self.net_cash),
            "fees": str(self.fees),
            "settlement_efficiency": str(self.settlement_efficiency),
            "quantity_efficiency": str(self.quantity_efficiency),
            "cash_efficiency": str(self.cash_efficiency),
        }


@dataclass(frozen=True, slots=True)
class NettingReport:
    rows: tuple[NetObligation, ...]
    totals: NettingTotals

    def to_dict(self) -> dict[str, Any]:
        return {"rows": [row.to_dict() for row in self.rows], "totals": self.totals.to_dict()}


def netting_report(
    obligations: Iterable[NetObligation], settlement_date: date | None = None
) -> NettingReport:
    """Rows (sorted by symbol, date, member), totals and efficiencies; optionally one date only."""
    rows = tuple(
        sorted(
            (o for o in obligations if settlement_date is None or o.settlement_date == settlement_date),
            key=_obligation_sort,
        )
    )
    gross_settlements = sum(o.leg_count for o in rows)
    net_settlements = sum(1 for o in rows if not o.is_flat)
    gross_quantity = sum(o.gross_quantity for o in rows)
    net_quantity = sum(abs(o.net_quantity) for o in rows)
    gross_cash = sum((o.gross_cash for o in rows), ZERO)
    net_cash = sum((abs(o.net_cash) for o in rows), ZERO)
    totals = NettingTotals(
        gross_settlements=gross_settlements,
        net_settlements=net_settlements,
        gross_quantity=gross_quantity,
        net_quantity=net_quantity,
        gross_cash=gross_cash,
        net_cash=net_cash,
        fees=sum((o.fees for o in rows), ZERO),
        settlement_efficiency=efficiency(net_settlements, gross_settlements),
        quantity_efficiency=efficiency(net_quantity, gross_quantity),
        cash_efficiency=efficiency(net_cash, gross_cash),
    )
    return NettingReport(rows, totals)


# --- settlement instructions ---------------------------------------------------------------

DELIVER, RECEIVE, PAY, NONE = "DELIVER", "RECEIVE", "PAY", "NONE"


def _instruction(o: NetObligation, ccp_id: str) -> dict[str, Any]:
    securities = RECEIVE if o.net_quantity > 0 else DELIVER if o.net_quantity < 0 else NONE
    cash = PAY if o.net_cash < 0 else RECEIVE if o.net_cash > 0 else NONE
    return {
        "settlement_date": o.settlement_date.isoformat(),
        "member_id": o.member_id,
        "counterparty": ccp_id,
        "purpose": "PRINCIPAL",
        "symbol": o.symbol,
        "securities": securities,
        "quantity": abs(o.net_quantity),
        "cash": cash,
        "amount": str(abs(o.net_cash)),
    }


def _fee_instruction(member_id: str, day: date, fees: Decimal, ccp_id: str) -> dict[str, Any]:
    return {
        "settlement_date": day.isoformat(),
        "member_id": member_id,
        "counterparty": ccp_id,
        "purpose": "FEES",
        "symbol": "",
        "securities": NONE,
        "quantity": 0,
        "cash": PAY,
        "amount": str(fees),
    }


def settlement_instructions(
    obligations: Iterable[NetObligation], settlement_date: date, ccp_id: str = "CCP"
) -> list[dict[str, Any]]:
    """Per member, for one date: one PRINCIPAL row per symbol (deliver/receive securities,
    pay/receive cash) for every non-flat obligation, then one FEES row (pay) when fees > 0.
    Plain rows with string amounts, sorted by member then symbol: ready for CSV or JSON."""
    due = sorted(
        (o for o in obligations if o.settlement_date == settlement_date),
        key=lambda o: (o.member_id, o.symbol),
    )
    rows: list[dict[str, Any]] = []
    fees_by_member: dict[str, Decimal] = {}
    for o in due:
        if not o.is_flat:
            rows.append(_instruction(o, ccp_id))
        fees_by_member[o.member_id] = fees_by_member.get(o.member_id, ZERO) + o.fees
    for member_id, fees in fees_by_member.items():
        if fees > 0:
            rows.append(_fee_instruction(member_id, settlement_date, fees, ccp_id))
    rows.sort(key=lambda r: (r["member_id"], r["purpose"] == "FEES", r["symbol"]))
    return rows
