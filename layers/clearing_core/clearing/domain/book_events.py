"""Domain events of the order book: plain tuples whose first field is the event kind.

Plain tuples because they are the cheapest thing CPython can build (about 4x cheaper than a
namedtuple or slotted instance), and the book emits one or more per operation. Every event has
`kind` at [0], the `order_id` it concerns at [1] and that order's `owner` at [2] (None when the
book does not know the order, e.g. UNKNOWN_ORDER). The namedtuples below document the layouts
and give readable views: `named(event)` returns the matching namedtuple (for tests, logs, callers
that prefer attributes); `event[FIELD_INDEX]` is the fast way.
"""

from __future__ import annotations

from collections import namedtuple
from typing import Any

ACCEPTED = "ACCEPTED"
TRADE = "TRADE"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELLED = "CANCELLED"
REPLACED = "REPLACED"
REJECTED = "REJECTED"

Event = tuple[Any, ...]  # one of the layouts below, as a plain tuple

# The order now rests in the book (after any fills); qty = its open quantity, filled = what it
# filled on entry (0 unless it crossed).
Accepted = namedtuple("Accepted", "kind order_id owner side price qty filled")
# One execution. order_id/owner are the taker's (the aggressor); price is the maker's price;
# taker_remaining / maker_remaining are the open quantities left after this fill.
Trade = namedtuple(
    "Trade",
    "kind order_id owner maker_order_id maker_owner price qty taker_side taker_remaining maker_remaining",
)
# Emitted for the maker and then for the taker after each Trade. filled = cumulative filled
# quantity, remaining = open quantity left, last_price / last_qty = this fill.
PartiallyFilled = namedtuple("PartiallyFilled", "kind order_id owner filled remaining last_price last_qty")
Filled = namedtuple("Filled", "kind order_id owner filled remaining last_price last_qty")
# qty = open quantity removed from the book; filled = what the order had filled before.
Cancelled = namedtuple("Cancelled", "kind order_id owner qty reason filled")
# price / qty = the new price and open quantity; old_price / old_qty / old_owner = before the replace
# (old_owner is owner when the replace did not change it). filled = the cumulative filled quantity
# after the whole replace (a crossing replace's fills included), resting = whether the order still
# rests after it (False when a crossing replace filled it completely or self-trade prevention
# cancelled it): what a caller applying a batch would otherwise read from the book afterwards.
Replaced = namedtuple(
    "Replaced", "kind order_id owner price qty priority_kept old_price old_qty old_owner filled resting"
)
Rejected = namedtuple("Rejected", "kind order_id owner reason")

LAYOUTS: dict[str, Any] = {
    ACCEPTED: Accepted,
    TRADE: Trade,
    PARTIALLY_FILLED: PartiallyFilled,
    FILLED: Filled,
    CANCELLED: Cancelled,
    REPLACED: Replaced,
    REJECTED: Rejected,
}


def named(event: Event) -> Any:
    """The namedtuple view of a plain event tuple (equal fields, attribute access)."""
    return LAYOUTS[event[0]]._make(event)
