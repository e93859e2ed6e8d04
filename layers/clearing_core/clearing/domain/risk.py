"""Pre-trade risk: the checks an order passes before it may reach the book.

Pure: reference data, the member's credit state and what is known of the member's earlier orders
come in; an `Acceptance` or a `Rejection` (stable reason code + message) goes out. The order of the
checks is fixed (identity, instrument, price grid, limits, credit, duplicates) so that an order
failing several checks always gets the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

from clearing.domain.orders import (
    CancelOrder,
    NewOrder,
    OrderType,
    Rejection,
    RejectReason,
    ReplaceOrder,
    Side,
)
from clearing.domain.refdata import Instrument, ReferenceData

_HUNDRED = Decimal(100)
# enum members bound once: looking them up on the enum class costs more than the comparison
_LIMIT = OrderType.LIMIT
_BUY = Side.BUY


# KnownOrder and Acceptance are immutable named tuples rather than frozen dataclasses: one of each is
# built per order on the validation hot path, and a frozen dataclass pays a setattr call per field.
class KnownOrder(NamedTuple):
    """What validation remembers of an accepted order (by the client order id it was placed with)."""

    order_id: str  # "member:client_order_id" of the order as first placed
    symbol: str
    side: str
    price_ticks: int | None
    quantity: int
    reserve_ticks: int  # the price exposure was reserved at
    # Of an order routed to the exchange only (None for INTERNAL, the default): its route and the terms
    # a CANCEL / REPLACE of it carries to orders.exchange for the exchange gateway's FIX request.
    route: str | None = None
    account: str | None = None
    order_type: str | None = None
    time_in_force: str | None = None


@dataclass(slots=True)
class CreditState:
    """A member's open exposure (resting notional at reserve prices) against the credit limit."""

    exposure: Decimal


class Acceptance(NamedTuple):
    """An order that passed pre-trade risk, in integer ticks, with the exposure it reserves."""

    order: NewOrder | CancelOrder | ReplaceOrder
    order_id: str
    price_ticks: int | None
    reserve_ticks: int
    exposure_reserved: Decimal  # added to the member's exposure now (NEW only)
    known: KnownOrder | None = None  # the order a CANCEL/REPLACE acts on


def order_id_for(member_id: str, client_order_id: str) -> str:
    return f"{member_id}:{client_order_id}"


def _reject(reason: RejectReason, message: str, order: Any) -> Rejection:
    return Rejection(
        reason=reason,
        message=message,
        member_id=order.member_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
    )


def reserve_ticks_for(instrument: Instrument, side: str, price_ticks: int | None) -> int:
    """The price exposure is reserved at: the limit price, or the far edge of the collar for a market order."""
    if price_ticks is not None:
        return price_ticks
    ref = instrument.reference_ticks
    band = int(ref * instrument.collar_pct / _HUNDRED)
    return ref + band if side == _BUY else max(ref - band, 1)


def _check_price(instrument: Instrument, price: Decimal, order: Any) -> int | Rejection:
    ticks = instrument.to_ticks(price)
    if ticks is None:
        return _reject(
            RejectReason.BAD_TICK,
            f"price {price} is not a multiple of tick size {instrument.tick_size}",
            order,
        )
    ref = instrument.reference_price
    band = ref * instrument.collar_pct / _HUNDRED
    if not (ref - band <= price <= ref + band):
        return _reject(
            RejectReason.PRICE_OUTSIDE_COLLAR,
            f"price {price} is outside the {instrument.collar_pct}% collar around {ref} "
            f"[{ref - band}, {ref + band}]",
            order,
        )
    return ticks


def _check_size(instrument: Instrument, quantity: int, reserve_ticks: int, order: Any) -> Rejection | Decimal:
    if quantity % instrument.lot_size:
        return _reject(
            RejectReason.BAD_LOT,
            f"quantity {quantity} is not a multiple of lot size {instrument.lot_size}",
            order,
        )
    if quantity > instrument.max_quantity:
        return _reject(
            RejectReason.QTY_LIMIT,
            f"quantity {quantity} exceeds the maximum {instrument.max_quantity}",
            order,
        )
    notional = instrument.to_price(reserve_ticks) * quantity
    if notional > instrument.max_notional:
        return _reject(
            RejectReason.NOTIONAL_LIMIT,
            f"notional {notional} exceeds the maximum {instrument.max_notional}",
            order,
        )
    return notional


def assess_order(
    order: NewOrder | CancelOrder | ReplaceOrder,
    refdata: ReferenceData,
    credit: CreditState,
    known_orders: dict[str, KnownOrder | None],
) -> Acceptance | Rejection:
    """Run pre-trade risk on one order.

    `known_orders` maps the member's client order ids seen so far to what was accepted under them
    (an id mapped to None was seen but rejected: it is still used up). `credit` is the member's
    current exposure; the caller applies `exposure_reserved` of an acceptance to it.
    """
    member = refdata.members.get(order.member_id)
    if member is None:
        return _reject(
            RejectReason.UNKNOWN_MEMBER, f"member {order.member_id} is not a clearing member", order
        )
    if not member.is_active:
        return _reject(RejectReason.MEMBER_SUSPENDED, f"member {order.member_id} is {member.status}", order)
    if order.client_order_id in known_orders:
        return _reject(
            RejectReason.DUPLICATE_CLORDID,
            f"client order id {order.client_order_id} was already used by member {order.member_id}",
            order,
        )
    instrument = refdata.instruments.get(order.symbol)
    if instrument is None:
        return _reject(RejectReason.UNKNOWN_SYMBOL, f"symbol {order.symbol} is not listed", order)
    if not instrument.is_open:
        return _reject(RejectReason.SYMBOL_HALTED, f"symbol {order.symbol} is {instrument.status}", order)

    if type(order) is NewOrder:
        if order.account not in member.accounts:
            return _reject(
                RejectReason.UNKNOWN_ACCOUNT,
                f"account {order.account} does not belong to {member.member_id}",
                order,
            )
        price_ticks = None
        if order.type is _LIMIT:
            checked = _check_price(instrument, order.price, order)  # type: ignore[arg-type]  # LIMIT: priced
            if isinstance(checked, Rejection):
                return checked
            price_ticks = checked
        reserve = reserve_ticks_for(instrument, order.side, price_ticks)
        notional = _check_size(instrument, order.quantity, reserve, order)
        if isinstance(notional, Rejection):
            return notional
        if credit.exposure + notional > member.credit_limit:
            return _reject(
                RejectReason.CREDIT_LIMIT,
                f"open exposure {credit.exposure} + {notional} exceeds credit limit {member.credit_limit}",
                order,
            )
        return Acceptance(
            order, order_id_for(order.member_id, order.client_order_id), price_ticks, reserve, notional
        )

    amend: CancelOrder | ReplaceOrder = order  # type: ignore[assignment]  # NEW returned above
    order = amend
    target = known_orders.get(order.orig_client_order_id)
    if target is None or target.symbol != order.symbol:
        return _reject(
            RejectReason.UNKNOWN_ORDER,
            f"no accepted order {order.orig_client_order_id} of member {order.member_id} in {order.symbol}",
            order,
        )
    if type(order) is CancelOrder:
        return Acceptance(
            order, target.order_id, target.price_ticks, target.reserve_ticks, Decimal(0), target
        )
    replace: ReplaceOrder = order  # type: ignore[assignment]  # CANCEL returned above
    order = replace

    # REPLACE: check the new terms like a new order; credit only for the increase (exact exposure
    # change is computed by the matching engine, which knows the filled quantity).
    price_ticks = target.price_ticks
    if order.price is not None:
        if target.price_ticks is None:
            return _reject(RejectReason.MALFORMED, "a MARKET order has no price to replace", order)
        checked = _check_price(instrument, order.price, order)
        if isinstance(checked, Rejection):
            return checked
        price_ticks = checked
    quantity = order.quantity if order.quantity is not None else target.quantity
    reserve = reserve_ticks_for(instrument, target.side, price_ticks)
    notional = _check_size(instrument, quantity, reserve, order)
    if isinstance(notional, Rejection):
        return notional
    increase = notional - instrument.to_price(target.reserve_ticks) * target.quantity
    if increase > 0 and credit.exposure + increase > member.credit_limit:
        return _reject(
            RejectReason.CREDIT_LIMIT,
            f"open exposure {credit.exposure} + increase {increase} exceeds credit limit {member.credit_limit}",
            order,
        )
    return Acceptance(order, target.order_id, price_ticks, reserve, Decimal(0), target)
