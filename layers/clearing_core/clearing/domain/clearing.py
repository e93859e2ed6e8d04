"""Clearing: novation of executed trades, settlement dates, fees and positions.

A matched trade (the `trades.executed` wire dict) is novated into two cleared legs with the CCP
in the middle: the buyer BUYs from the CCP and the seller SELLs to the CCP. Each leg carries its
notional, the member's fee, the settlement date and the signed cash. Positions per
(member, account, symbol, settlement date) are folded from legs with `position_after_leg`.

Conventions (see docs/clearing.md):
- money is Decimal, quantized to cents with ROUND_HALF_EVEN; quantities are ints;
- `principal_cash` is the signed notional (buyer -notional, seller +notional); across the two legs
  of a trade it sums to zero. Fees are kept apart: `cash_amount = principal_cash - fee`;
- settlement date: a trade date on a weekend/holiday first rolls forward to the next business
  day (that day is T), then `cycle_days` business days are added.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, TypeGuard

from clearing.domain.bounded import MAX_ID
from clearing.domain.refdata import Instrument, ReferenceData

CENT = Decimal("0.01")
BPS_DIVISOR = Decimal(10000)

BUY = "BUY"
SELL = "SELL"

# Reason codes of a ClearingRejection.
MALFORMED_TRADE = "MALFORMED_TRADE"
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
UNKNOWN_MEMBER = "UNKNOWN_MEMBER"
UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
UNKNOWN_FEE_TIER = "UNKNOWN_FEE_TIER"


def to_cents(amount: Decimal) -> Decimal:
    """Money rounded to the cent, half to even (unbiased over many legs)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


# --- settlement calendar -------------------------------------------------------------------


def is_business_day(day: date, holidays: frozenset[date] | set[date]) -> bool:
    return day.weekday() < 5 and day not in holidays


def next_business_day(day: date, holidays: frozenset[date] | set[date]) -> date:
    """`day` itself when it is a business day, else the next one (roll forward)."""
    while not is_business_day(day, holidays):
        day += timedelta(days=1)
    return day


def settlement_date(trade_date: date, cycle_days: int, holidays: frozenset[date] | set[date]) -> date:
    """T+cycle_days in business days. A weekend/holiday trade date first rolls to the next business day."""
    if cycle_days < 0:
        raise ValueError(f"settlement cycle must be >= 0, got {cycle_days}")
    day = next_business_day(trade_date, holidays)
    for _ in range(cycle_days):
        day = next_business_day(day + timedelta(days=1), holidays)
    return day


# --- fees ----------------------------------------------------------------------------------


def clearing_fee(notional: Decimal, fee_bps: Decimal) -> Decimal:
    """Fee in basis points of the notional, rounded to the cent half to even."""
    return to_cents(notional * fee_bps / BPS_DIVISOR)


# --- novation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClearedLeg:
    """One side of a novated trade: a member facing the CCP."""

    leg_id: str
    trade_id: str
    member_id: str
    account: str
    counterparty: str  # the CCP
    symbol: str
    side: str  # the member's side: BUY (from the CCP) or SELL (to the CCP)
    quantity: int
    price_ticks: int
    price: Decimal
    notional: Decimal
    fee_bps: Decimal
    fee: Decimal
    trade_date: date
    settlement_date: date
    principal_cash: Decimal  # -notional for the buyer, +notional for the seller
    cash_amount: Decimal  # principal_cash - fee: what the member pays (<0) or receives (>0)

    @property
    def signed_quantity(self) -> int:
        return self.quantity if self.side == BUY else -self.quantity

    def to_dict(self) -> dict[str, Any]:
        return {
            "leg_id": self.leg_id,
            "trade_id": self.trade_id,
            "member_id": self.member_id,
            "account": self.account,
            "counterparty": self.counterparty,
            "symbol": self.symbol,
            "side": self.side,
            "quantity": self.quantity,
            "price_ticks": self.price_ticks,
            "price": str(self.price),
            "notional": str(self.notional),
            "fee_bps": str(self.fee_bps),
            "fee": str(self.fee),
            "trade_date": self.trade_date.isoformat(),
            "settlement_date": self.settlement_date.isoformat(),
            "principal_cash": str(self.principal_cash),
            "cash_amount": str(self.cash_amount),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ClearedLeg:
        return cls(
            leg_id=raw["leg_id"],
            trade_id=raw["trade_id"],
            member_id=raw["member_id"],
            account=raw["account"],
            counterparty=raw["counterparty"],
            symbol=raw["symbol"],
            side=raw["side"],
            quantity=int(raw["quantity"]),
            price_ticks=int(raw["price_ticks"]),
            price=Decimal(raw["price"]),
            notional=Decimal(raw["notional"]),
            fee_bps=Decimal(raw["fee_bps"]),
            fee=Decimal(raw["fee"]),
            trade_date=date.fromisoformat(raw["trade_date"]),
            settlement_date=date.fromisoformat(raw["settlement_date"]),
            principal_cash=Decimal(raw["principal_cash"]),
            cash_amount=Decimal(raw["cash_amount"]),
        )


@dataclass(frozen=True, slots=True)
class NovatedTrade:
    """A trade replaced by two legs against the CCP: `{trade_id}-B` and `{trade_id}-S`."""

    trade_id: str
    symbol: str
    trade_date: date
    settlement_date: date
    buy_leg: ClearedLeg
    sell_leg: ClearedLeg

    @property
    def legs(self) -> tuple[ClearedLeg, ClearedLeg]:
        return (self.buy_leg, self.sell_leg)

    def to_dict(self) -> dict[str, Any]:
        return {
            "trade_id": self.trade_id,
            "symbol": self.symbol,
            "trade_date": self.trade_date.isoformat(),
            "settlement_date": self.settlement_date.isoformat(),
            "legs": [leg.to_dict() for leg in self.legs],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> NovatedTrade:
        buy_leg, sell_leg = (ClearedLeg.from_dict(leg) for leg in raw["legs"])
        return cls(
            trade_id=raw["trade_id"],
            symbol=raw["symbol"],
            trade_date=date.fromisoformat(raw["trade_date"]),
            settlement_date=date.fromisoformat(raw["settlement_date"]),
            buy_leg=buy_leg,
            sell_leg=sell_leg,
        )


@dataclass(frozen=True, slots=True)
class ClearingRejection:
    """A trade the CCP cannot novate, with a reason code (never an exception)."""

    trade_id: str | None
    reason_code: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"trade_id": self.trade_id, "reason_code": self.reason_code, "message": self.message}


@dataclass(frozen=True, slots=True)
class _TradeTerms:
    trade_id: str
    symbol: str
    quantity: int
    price_ticks: int | None
    price: Decimal | None
    trade_date: date
    buyer: tuple[str, str]  # (member_id, account)
    seller: tuple[str, str]


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _party(raw: Any) -> tuple[str, str] | None:
    if not isinstance(raw, dict):
        return None
    member_id, account = raw.get("member_id"), raw.get("account")
    if not (isinstance(member_id, str) and member_id and isinstance(account, str) and account):
        return None
    return member_id, account


def _parse_terms(trade: Any) -> _TradeTerms | str:
    """The trade's terms, or a message saying what is malformed."""
    if not isinstance(trade, Mapping):
        return "trade is not an object"
    trade_id, symbol, quantity = trade.get("trade_id"), trade.get("symbol"), trade.get("quantity")
    if not (isinstance(trade_id, str) and trade_id):
        return "trade_id missing"
    if len(trade_id) > MAX_ID:  # it keys the cleared trade (DynamoDB keys are bounded)
        return f"trade_id longer than {MAX_ID} characters"
    if not (isinstance(symbol, str) and symbol):
        return "symbol missing"
    executed_at = trade.get("executed_at")
    if executed_at is not None and not (isinstance(executed_at, str) and len(executed_at) <= MAX_ID):
        return f"executed_at must be a string of at most {MAX_ID} characters"
    if not _is_int(quantity) or quantity <= 0:
        return f"quantity must be a positive integer, got {quantity!r}"
    price_ticks = trade.get("price_ticks")
    if price_ticks is not None and (not _is_int(price_ticks) or price_ticks <= 0):
        return f"price_ticks must be a positive integer, got {price_ticks!r}"
    price: Decimal | None = None
    if trade.get("price") is not None:
        try:
            price = Decimal(str(trade["price"]))
        except InvalidOperation:
            return f"price is not a decimal: {trade['price']!r}"
        if not price.is_finite() or price <= 0:
            return f"price must be positive, got {trade['price']!r}"
    if price_ticks is None and price is None:
        return "price_ticks and price missing"
    try:
        trade_date = date.fromisoformat(str(trade.get("trade_date")))
    except ValueError:
        return f"trade_date is not an ISO date: {trade.get('trade_date')!r}"
    buyer, seller = _party(trade.get("buy")), _party(trade.get("sell"))
    if buyer is None or seller is None:
        return "buy/sell party needs member_id and account"
    return _TradeTerms(trade_id, symbol, quantity, price_ticks, price, trade_date, buyer, seller)


def _trade_price_ticks(terms: _TradeTerms, instrument: Instrument) -> int | str:
    """Integer ticks of the trade price; price_ticks is authoritative, `price` must agree."""
    from_price = instrument.to_ticks(terms.price) if terms.price is not None else None
    if terms.price is not None and from_price is None:
        return f"price {terms.price} is not on the {instrument.tick_size} tick grid"
    if terms.price_ticks is not None and from_price is not None and from_price != terms.price_ticks:
        return f"price {terms.price} disagrees with price_ticks {terms.price_ticks}"
    ticks = terms.price_ticks if terms.price_ticks is not None else from_price
    return ticks if ticks is not None else "no price"


def _check_party(party: tuple[str, str], refdata: ReferenceData, trade_id: str) -> ClearingRejection | None:
    member_id, account = party
    member = refdata.members.get(member_id)
    if member is None:
        return ClearingRejection(trade_id, UNKNOWN_MEMBER, f"unknown member {member_id}")
    if account not in member.accounts:
        return ClearingRejection(
            trade_id, UNKNOWN_ACCOUNT, f"account {account} is not an account of {member_id}"
        )
    if member.fee_tier not in refdata.fee_tiers_bps:
        return ClearingRejection(trade_id, UNKNOWN_FEE_TIER, f"fee tier {member.fee_tier} of {member_id}")
    return None


def _leg(
    terms: _TradeTerms,
    party: tuple[str, str],
    side: str,
    price_ticks: int,
    instrument: Instrument,
    settles: date,
    refdata: ReferenceData,
) -> ClearedLeg:
    member_id, account = party
    price = instrument.to_price(price_ticks)
    notional = to_cents(price * terms.quantity)
    fee_bps = refdata.fee_tiers_bps[refdata.members[member_id].fee_tier]
    fee = clearing_fee(notional, fee_bps)
    principal = -notional if side == BUY else notional
    return ClearedLeg(
        leg_id=f"{terms.trade_id}-{side[0]}",
        trade_id=terms.trade_id,
        member_id=member_id,
        account=account,
        counterparty=refdata.ccp_id,
        symbol=terms.symbol,
        side=side,
        quantity=terms.quantity,
        price_ticks=price_ticks,
        price=price,
        notional=notional,
        fee_bps=fee_bps,
        fee=fee,
        trade_date=terms.trade_date,
        settlement_date=settles,
        principal_cash=principal,
        cash_amount=principal - fee,
    )


def novate(trade: Mapping[str, Any], refdata: ReferenceData) -> NovatedTrade | ClearingRejection:
    """Replace an executed trade by buyer-vs-CCP and CCP-vs-seller legs, or reject it with a reason."""
    terms = _parse_terms(trade)
    if isinstance(terms, str):
        trade_id = trade.get("trade_id") if isinstance(trade, Mapping) else None
        return ClearingRejection(trade_id if isinstance(trade_id, str) else None, MALFORMED_TRADE, terms)
    instrument = refdata.instruments.get(terms.symbol)
    if instrument is None:
        return ClearingRejection(terms.trade_id, UNKNOWN_SYMBOL, f"unknown symbol {terms.symbol}")
    try:
        price_ticks = _trade_price_ticks(terms, instrument)
    except InvalidOperation:  # a price too large for the Decimal context
        price_ticks = f"price {terms.price} out of range"
    if isinstance(price_ticks, str):
        return ClearingRejection(terms.trade_id, MALFORMED_TRADE, price_ticks)
    for party in (terms.buyer, terms.seller):
        rejection = _check_party(party, refdata, terms.trade_id)
        if rejection is not None:
            return rejection
    try:
        settles = settlement_date(terms.trade_date, instrument.settlement_cycle_days, refdata.holidays)
    except OverflowError:  # a trade date at the end of the calendar
        return ClearingRejection(
            terms.trade_id, MALFORMED_TRADE, f"no settlement date after {terms.trade_date}"
        )
    try:
        buy_leg = _leg(terms, terms.buyer, BUY, price_ticks, instrument, settles, refdata)
        sell_leg = _leg(terms, terms.seller, SELL, price_ticks, instrument, settles, refdata)
    except InvalidOperation:  # notional beyond 28 significant digits: not a real trade
        return ClearingRejection(terms.trade_id, MALFORMED_TRADE, "notional out of range")
    return NovatedTrade(terms.trade_id, terms.symbol, terms.trade_date, settles, buy_leg, sell_leg)


# --- positions -----------------------------------------------------------------------------

PositionKey = tuple[str, str, str, date]  # (member_id, account, symbol, settlement_date)


def position_key(leg: ClearedLeg) -> PositionKey:
    return (leg.member_id, leg.account, leg.symbol, leg.settlement_date)


@dataclass(frozen=True, slots=True)
class Position:
    """A member account's cleared position in one symbol for one settlement date.

    `cash` is the signed principal (fees aside): -notional bought, +notional sold. `fees` is the
    sum of fees charged; what the account settles in cash is `cash - fees`.
    """

    member_id: str
    account: str
    symbol: str
    settlement_date: date
    net_quantity: int = 0
    buy_quantity: int = 0
    sell_quantity: int = 0
    cash: Decimal = Decimal("0.00")
    fees: Decimal = Decimal("0.00")
    leg_count: int = 0

    @property
    def key(self) -> PositionKey:
        return (self.member_id, self.account, self.symbol, self.settlement_date)

    @property
    def cash_after_fees(self) -> Decimal:
        return self.cash - self.fees

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "account": self.account,
            "symbol": self.symbol,
            "settlement_date": self.settlement_date.isoformat(),
            "net_quantity": self.net_quantity,
            "buy_quantity": self.buy_quantity,
            "sell_quantity": self.sell_quantity,
            "cash": str(self.cash),
            "fees": str(self.fees),
            "leg_count": self.leg_count,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Position:
        return cls(
            member_id=raw["member_id"],
            account=raw["account"],
            symbol=raw["symbol"],
            settlement_date=date.fromisoformat(raw["settlement_date"]),
            net_quantity=int(raw["net_quantity"]),
            buy_quantity=int(raw["buy_quantity"]),
            sell_quantity=int(raw["sell_quantity"]),
            cash=Decimal(raw["cash"]),
            fees=Decimal(raw["fees"]),
            leg_count=int(raw["leg_count"]),
        )


def position_after_leg(position: Position | None, leg: ClearedLeg) -> Position:
    """The position after one more leg (a new position when `position` is None)."""
    if position is None:
        position = Position(leg.member_id, leg.account, leg.symbol, leg.settlement_date)
    elif position.key != position_key(leg):
        raise ValueError(f"leg {leg.leg_id} does not belong to position {position.key}")
    bought = leg.quantity if leg.side == BUY else 0
    return replace(
        position,
        net_quantity=position.net_quantity + leg.signed_quantity,
        buy_quantity=position.buy_quantity + bought,
        sell_quantity=position.sell_quantity + leg.quantity - bought,
        cash=position.cash + leg.principal_cash,
        fees=position.fees + leg.fee,
        leg_count=position.leg_count + 1,
    )


def positions_from_legs(legs: Iterable[ClearedLeg]) -> dict[PositionKey, Position]:
    """Positions folded from legs (no deduplication: pass each leg once)."""
    positions: dict[PositionKey, Position] = {}
    for leg in legs:
        key = position_key(leg)
        positions[key] = position_after_leg(positions.get(key), leg)
    return positions
