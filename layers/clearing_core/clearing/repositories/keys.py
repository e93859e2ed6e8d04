"""Where things live: the (table, pk, sk) layout of every stored record, in one place.

Logical table names (mapped to physical names by configuration): orders, trades, positions,
obligations, state, reference, margin. docs/data-model.md describes the access patterns.
"""

from __future__ import annotations

from typing import Any

ORDERS, TRADES, POSITIONS, OBLIGATIONS, STATE, REFERENCE, MARGIN = (
    "orders",
    "trades",
    "positions",
    "obligations",
    "state",
    "reference",
    "margin",
)
TABLES = (ORDERS, TRADES, POSITIONS, OBLIGATIONS, STATE, REFERENCE, MARGIN)


def validation_key(member_id: str, client_order_id: str) -> tuple[str, str]:
    """An order id's validation record (accepted or rejected); also what makes a client order id used."""
    return member_id, f"O#{client_order_id}#V"


def order_state_key(member_id: str, client_order_id: str) -> tuple[str, str]:
    """The order's current state as the matching engine sees it (client_order_id of the first NEW)."""
    return member_id, f"O#{client_order_id}#S"


def rejection_key(topic: str, partition: int, offset: int) -> tuple[str, str]:
    """A rejection that has no usable order identity (malformed, duplicate id): keyed by its position."""
    return f"REJ#{topic}#{partition}", f"{offset:020d}"


def checkpoint_key(stage: str, topic: str, partition: int) -> tuple[str, str]:
    return f"CKPT#{stage}#{topic}#{partition}", "-"


def exposure_key(member_id: str, part: str) -> tuple[str, str]:
    """part: RESERVED (written by validate_orders), RELEASED (written from orders.events) or EXCHANGE
    (written from exchange.executions)."""
    return f"EXPOSURE#{member_id}", part


def exchange_order_key(member_id: str, client_order_id: str) -> tuple[str, str]:
    """The exposure an exchange-routed order still holds (client_order_id of its NEW), written from
    exchange.executions by the one partition that carries the order's symbol."""
    return f"EXPOSURE#{member_id}", f"XO#{client_order_id}"


def book_key(symbol: str) -> tuple[str, str]:
    return f"BOOK#{symbol}", "-"


def trade_key(trade_id: str, part: str) -> tuple[str, str]:
    """part: EXECUTED (written by match_orders) or CLEARED (with both legs, by clear_trades)."""
    return trade_id, part


def clearing_state_key(symbol: str) -> tuple[str, str]:
    return f"CLEARSTATE#{symbol}", "-"


def position_key(member_id: str, symbol: str, account: str, settlement_date: str) -> tuple[str, str]:
    return member_id, f"{symbol}#{account}#{settlement_date}"


def obligation_key(member_id: str, symbol: str, settlement_date: str) -> tuple[str, str]:
    return settlement_date, f"{member_id}#{symbol}"


# Attributes that record when (wall clock) a record was processed, not what it is: excluded when
# comparing a replay or a redelivery with the original run.
PROCESSING_TIME_FIELDS = frozenset({"cleared_at", "written_by"})


def comparable(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in PROCESSING_TIME_FIELDS}
