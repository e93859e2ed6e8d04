"""Price-time priority order book for one instrument: the matching engine of match_orders.

Pure domain code: no clocks, ids, I/O or Kafka. Prices are integer ticks, quantities integer
shares. Every operation returns a list of domain events (plain tuples, layouts in
`clearing.domain.book_events`); the caller numbers them by their position in the list to derive
deterministic ids. Time priority comes from an internal arrival counter that is part of the
snapshot, so snapshot -> restore -> continue gives exactly the events of an uninterrupted run.

Data structures (chosen for the hot path, see docs/matching.md):
- `_orders`: order id -> RestingOrder, O(1) lookup for cancel / replace.
- `_bids` / `_asks`: price -> level, a level is a dict whose keys are its RestingOrders in arrival
  order (values unused; dicts keep insertion order, removing from the middle is O(1), and an order
  hashes by identity, so level look-ups never compare keys). A level that empties stays in
  the dict (an order moving back to that price finds it without allocating) until its key is
  dropped from the heap.
- `_bid_heap` / `_ask_heap`: heaps of level keys (bids stored as -price) with lazy deletion: a
  level is in the dict exactly while its key is in the heap, so resting at an existing price never
  touches the heap. An empty level is deleted with its key when the key reaches the top, or when
  the heap is rebuilt (which happens when the heap holds many more keys than there are levels).
"""

from __future__ import annotations

from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from itertools import accumulate
from typing import Any

from clearing.domain.book_events import (
    ACCEPTED,
    CANCELLED,
    FILLED,
    PARTIALLY_FILLED,
    REJECTED,
    REPLACED,
    TRADE,
    Event,
)

BUY = "BUY"
SELL = "SELL"
SIDES = frozenset((BUY, SELL))

LIMIT = "LIMIT"
MARKET = "MARKET"
ORDER_TYPES = frozenset((LIMIT, MARKET))

DAY = "DAY"
GTC = "GTC"
IOC = "IOC"
FOK = "FOK"
TIMES_IN_FORCE = frozenset((DAY, GTC, IOC, FOK))

CANCEL_NEWEST = "CANCEL_NEWEST"
CANCEL_OLDEST = "CANCEL_OLDEST"
CANCEL_BOTH = "CANCEL_BOTH"
STP_MODES = frozenset((None, CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH))

# Cancel reasons
USER = "USER"
IOC_REMAINDER = "IOC_REMAINDER"
FOK_UNFILLABLE = "FOK_UNFILLABLE"
POST_ONLY_WOULD_CROSS = "POST_ONLY_WOULD_CROSS"
STP = "STP"
EXPIRED = "EXPIRED"

# Reject reasons
DUPLICATE_ORDER_ID = "DUPLICATE_ORDER_ID"
UNKNOWN_ORDER = "UNKNOWN_ORDER"
INVALID_SIDE = "INVALID_SIDE"
INVALID_TYPE = "INVALID_TYPE"
INVALID_TIF = "INVALID_TIF"
INVALID_PRICE = "INVALID_PRICE"
INVALID_QTY = "INVALID_QTY"
INVALID_STP = "INVALID_STP"
INVALID_POST_ONLY = "INVALID_POST_ONLY"  # post-only on a market, IOC or FOK order: it could never rest
QTY_NOT_ABOVE_FILLED = "QTY_NOT_ABOVE_FILLED"  # replace to a total quantity <= quantity already filled
INVALID_REPLACE = "INVALID_REPLACE"  # new_qty and new_total_qty given together

# Command codes of `OrderBook.apply` (commands are 4-tuples: build them with submit_command /
# cancel_command / replace_command, whose docstrings say which codes carry validated arguments)
_SUBMIT = 0
_CANCEL = 1
_REPLACE = 2
_PLAIN_REPLACE = 3
_BUY_LIMIT = 4
_SELL_LIMIT = 5
# The one command callers may build as a plain tuple (apply checks its fields itself), for batch
# builders that cannot afford a call per command: (OWNER_REPLACE, order_id, new_price,
# (new_total_qty, where, values)) means replace(order_id, new_price, new_total_qty=new_total_qty,
# owner_update=(where, values)).
OWNER_REPLACE = _OWNER_REPLACE = 6

SNAPSHOT_VERSION = 1

# Rebuild a heap once it holds this many more keys than there are levels (stale keys).
_HEAP_SLACK = 64

_INF = float("inf")  # heap[0] bound of an empty side in `apply`
_NEG_INF = -_INF


class RestingOrder:
    """One live order of the book. `qty` is the open (remaining) quantity, `filled` the cumulative fill."""

    __slots__ = (
        "order_id",
        "side",
        "price",
        "qty",
        "filled",
        "arrival",
        "tif",
        "post_only",
        "member",
        "stp",
        "owner",
        "level",  # the price level dict the order rests in (None while not resting)
        "buy",  # side == BUY, the one test the hot replace path makes
    )

    def __init__(
        self,
        order_id: Any,
        side: str,
        price: Any,  # ticks; None only for a market order, which never rests
        qty: int,
        filled: int,
        arrival: int,
        tif: str,
        post_only: bool,
        member: Any,
        stp: str | None,
        owner: Any,
    ) -> None:
        self.order_id = order_id
        self.side = side
        self.price = price
        self.qty = qty
        self.filled = filled
        self.arrival = arrival
        self.tif = tif
        self.post_only = post_only
        self.member = member
        self.stp = stp
        self.owner = owner
        # the level's dict while resting (None otherwise): typed Any, as the hot paths delete from it
        # without a None test
        self.level: Any = None
        self.buy = side == BUY

    def as_dict(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "side": self.side,
            "price": self.price,
            "qty": self.qty,
            "filled": self.filled,
            "arrival": self.arrival,
            "tif": self.tif,
            "post_only": self.post_only,
            "member": self.member,
            "stp": self.stp,
            "owner": self.owner,
        }


def _is_positive_int(value: Any) -> bool:
    return value.__class__ is int and value > 0


class OrderBook:
    """The book of one instrument. See the module docstring and docs/matching.md for the rules."""

    __slots__ = (
        "symbol",
        "_orders",
        "_bids",
        "_asks",
        "_bid_heap",
        "_ask_heap",
        "_arrival",
        "_bid_heap_limit",
        "_ask_heap_limit",
    )

    def __init__(self, symbol: str):
        self.symbol = symbol
        self._orders: dict[Any, RestingOrder] = {}
        self._bids: dict[int, dict[RestingOrder, None]] = {}
        self._asks: dict[int, dict[RestingOrder, None]] = {}
        self._bid_heap: list[int] = []  # -price
        self._ask_heap: list[int] = []  # price
        self._arrival = 0
        # Rebuild a heap (dropping stale keys and empty levels) when it grows past this size.
        self._bid_heap_limit = _HEAP_SLACK
        self._ask_heap_limit = _HEAP_SLACK

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._orders)

    def best_bid(self) -> int | None:
        heap, levels = self._bid_heap, self._bids
        _drop_empty_top(heap, levels, -1)
        return -heap[0] if heap else None

    def best_ask(self) -> int | None:
        heap, levels = self._ask_heap, self._asks
        _drop_empty_top(heap, levels, 1)
        return heap[0] if heap else None

    def order(self, order_id: Any) -> dict[str, Any] | None:
        """The resting order `order_id` as a dict (qty = open quantity), or None if it is not in the book."""
        o = self._orders.get(order_id)
        return None if o is None else o.as_dict()

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        """Best `levels` price levels per side: (price, total open qty, number of orders)."""
        bids = [
            (-key, sum(o.qty for o in lvl), len(lvl))
            for key, lvl in _levels_in_order(self._bid_heap, self._bids, -1, levels)
        ]
        asks = [
            (key, sum(o.qty for o in lvl), len(lvl))
            for key, lvl in _levels_in_order(self._ask_heap, self._asks, 1, levels)
        ]
        return {"bids": bids, "asks": asks}

    # --------------------------------------------------------------- operations

    def submit(
        self,
        order_id: Any,
        side: str,
        price: int | None,
        qty: int,
        *,
        type: str = LIMIT,
        tif: str = GTC,
        post_only: bool = False,
        member: Any = None,
        stp: str | None = None,
        owner: Any = None,
    ) -> list[Event]:
        """Enter a new order; it matches against the book, then rests, or its remainder is cancelled."""
        orders = self._orders
        if order_id in orders:
            return [(REJECTED, order_id, owner, DUPLICATE_ORDER_ID)]
        if qty.__class__ is not int or qty <= 0:
            return [(REJECTED, order_id, owner, INVALID_QTY)]
        if type == LIMIT:
            if price.__class__ is not int or price <= 0:
                return [(REJECTED, order_id, owner, INVALID_PRICE)]
        elif type == MARKET:
            if price is not None:
                return [(REJECTED, order_id, owner, INVALID_PRICE)]
        else:
            return [(REJECTED, order_id, owner, INVALID_TYPE)]
        if tif not in TIMES_IN_FORCE:
            return [(REJECTED, order_id, owner, INVALID_TIF)]
        if stp not in STP_MODES:
            return [(REJECTED, order_id, owner, INVALID_STP)]
        if post_only and (price is None or tif == IOC or tif == FOK):
            return [(REJECTED, order_id, owner, INVALID_POST_ONLY)]

        # heap[0] never exceeds the true best key (stale keys sit anywhere, live ones are all in
        # the heap), so a price that does not cross heap[0] cannot cross the book: no cleaning needed.
        if side == BUY:
            side = BUY  # canonical constant, compared with `is` on the hot paths
            heap = self._ask_heap
            if heap and (price is None or heap[0] <= price):
                levels = self._asks
                _drop_empty_top(heap, levels, 1)
                crosses = heap and (price is None or heap[0] <= price)
            else:
                crosses = False
        elif side == SELL:
            side = SELL
            heap = self._bid_heap
            if heap and (price is None or -heap[0] >= price):
                levels = self._bids
                _drop_empty_top(heap, levels, -1)
                crosses = heap and (price is None or -heap[0] >= price)
            else:
                crosses = False
        else:
            return [(REJECTED, order_id, owner, INVALID_SIDE)]

        self._arrival = arrival = self._arrival + 1
        if not crosses:
            if price is None or tif == IOC or tif == FOK:
                return [(CANCELLED, order_id, owner, qty, FOK_UNFILLABLE if tif == FOK else IOC_REMAINDER, 0)]
            o = RestingOrder(order_id, side, price, qty, 0, arrival, tif, post_only, member, stp, owner)
            orders[order_id] = o
            level = (self._bids if side is BUY else self._asks).get(price)
            if level is not None:
                level[o] = None
                o.level = level
            else:
                self._open_level(o)
            return [(ACCEPTED, order_id, owner, side, price, qty, 0)]
        if post_only:
            return [(CANCELLED, order_id, owner, qty, POST_ONLY_WOULD_CROSS, 0)]
        o = RestingOrder(order_id, side, price, qty, 0, arrival, tif, post_only, member, stp, owner)
        if tif == FOK and not self._fillable(o):
            return [(CANCELLED, order_id, owner, qty, FOK_UNFILLABLE, 0)]
        events: list[Event] = []
        remaining, filled = self._match(order_id, owner, side, price, qty, 0, member, stp, events)
        if remaining:
            if remaining < 0:  # stopped by self-trade prevention; remainder already cancelled
                return events
            if price is None or tif == IOC:
                events.append((CANCELLED, order_id, owner, remaining, IOC_REMAINDER, filled))
            else:
                o.qty = remaining
                o.filled = filled
                self._rest(o)
                events.append((ACCEPTED, order_id, owner, side, price, remaining, filled))
        return events

    def cancel(self, order_id: Any, reason: str = USER) -> list[Event]:
        """Cancel a resting order (its whole open quantity)."""
        o = self._orders.pop(order_id, None)
        if o is None:
            return [(REJECTED, order_id, None, UNKNOWN_ORDER)]
        del o.level[o]  # an emptied level stays (see the module docstring)
        return [(CANCELLED, order_id, o.owner, o.qty, reason, o.filled)]

    def replace(
        self,
        order_id: Any,
        new_price: int | None = None,
        new_qty: int | None = None,
        *,
        new_total_qty: int | None = None,
        owner: Any = None,
        owner_update: tuple[Any, Any] | None = None,
    ) -> list[Event]:
        """Amend a resting order's price and/or open quantity.

        `new_qty` is the new open (remaining) quantity wanted, not counting what has already been
        filled. `new_total_qty` is the FIX-style alternative: the new total order quantity including
        fills (open quantity = new_total_qty - filled; rejected QTY_NOT_ABOVE_FILLED if that is <= 0).
        None keeps the current value. `owner`, when given, replaces the stored owner value.
        `owner_update` = (where, values), for an owner that is a list: the new owner is a copy of the
        resting order's owner with `owner[where] = values` (`where` an index or a slice), so a caller
        can change parts of the owner without reading the book; giving both is INVALID_REPLACE.

        Priority is kept when the price is unchanged and the open quantity does not rise; otherwise
        the order goes to the back of its (new) level. A new price that crosses the book matches at
        once like an incoming order (a post-only order is then rejected and left unchanged).

        This method is the hot path of the benchmark (most replaces move a price without crossing):
        it handles that case inline and hands everything else to `_replace_checked` / `_amend`.
        """
        o = self._orders.get(order_id)
        # Plain case: known order, two positive ints (None is not int), no total qty, no new owner.
        if (
            o is None
            or not (new_price.__class__ is int is new_qty.__class__)
            or not (new_price > 0 < new_qty)
            or not (new_total_qty is owner is owner_update is None)
        ):
            return self._replace_checked(order_id, o, new_price, new_qty, new_total_qty, owner, owner_update)
        old_price = o.price
        old_qty = o.qty
        if new_price == old_price and new_qty <= old_qty:
            o.qty = new_qty
            owner = o.owner
            return [
                (
                    REPLACED,
                    order_id,
                    owner,
                    new_price,
                    new_qty,
                    True,
                    old_price,
                    old_qty,
                    owner,
                    o.filled,
                    True,
                )
            ]
        if o.side is BUY:
            heap = self._ask_heap
            if heap and heap[0] <= new_price:  # may cross (see submit)
                return self._amend(o, new_price, new_qty)
            own = self._bids
        else:
            heap = self._bid_heap
            if heap and -heap[0] >= new_price:
                return self._amend(o, new_price, new_qty)
            own = self._asks
        del o.level[o]
        self._arrival = o.arrival = self._arrival + 1
        o.price = new_price
        o.qty = new_qty
        level = own.get(new_price)
        if level is not None:
            level[o] = None
            o.level = level
        else:
            self._open_level(o)
        owner = o.owner
        return [
            (REPLACED, order_id, owner, new_price, new_qty, False, old_price, old_qty, owner, o.filled, True)
        ]

    def _replace_checked(
        self,
        order_id: Any,
        o: RestingOrder | None,
        new_price: int | None,
        new_qty: int | None,
        new_total_qty: int | None,
        owner: Any,
        owner_update: tuple[Any, Any] | None = None,
    ) -> list[Event]:
        """`replace` for everything but the plain case: unknown order, defaults, validation, owner."""
        if o is None:
            return [(REJECTED, order_id, None, UNKNOWN_ORDER)]
        if owner_update is not None:
            if owner is not None or owner_update.__class__ is not tuple or len(owner_update) != 2:
                return [(REJECTED, order_id, o.owner, INVALID_REPLACE)]
            try:
                owner = list(o.owner)
                owner[owner_update[0]] = owner_update[1]
            except (TypeError, IndexError, ValueError):  # not a list, a bad index or slice
                return [(REJECTED, order_id, o.owner, INVALID_REPLACE)]
        if new_total_qty is not None:
            if new_qty is not None:
                return [(REJECTED, order_id, o.owner, INVALID_REPLACE)]
            if new_total_qty.__class__ is not int:
                return [(REJECTED, order_id, o.owner, INVALID_QTY)]
            new_qty = new_total_qty - o.filled
            if new_qty <= 0:
                return [(REJECTED, order_id, o.owner, QTY_NOT_ABOVE_FILLED)]
        if new_price is None:
            new_price = o.price
        elif new_price.__class__ is not int or new_price <= 0:
            return [(REJECTED, order_id, o.owner, INVALID_PRICE)]
        if new_qty is None:
            new_qty = o.qty
        elif new_qty.__class__ is not int or new_qty <= 0:
            return [(REJECTED, order_id, o.owner, INVALID_QTY)]
        return self._amend(o, new_price, new_qty, owner)

    def _would_cross(self, o: RestingOrder, price: int) -> bool:
        if o.side is BUY:
            best = self.best_ask()
            return best is not None and best <= price
        best = self.best_bid()
        return best is not None and best >= price

    def _amend(self, o: RestingOrder, new_price: int, new_qty: int, owner: Any = None) -> list[Event]:
        """Apply a validated replace to resting order `o` (general case, crossing included)."""
        order_id = o.order_id
        old_price = o.price
        old_qty = o.qty
        old_owner = o.owner
        if new_price == old_price and new_qty <= old_qty:
            if owner is not None:
                o.owner = owner
            o.qty = new_qty
            return [
                (
                    REPLACED,
                    order_id,
                    o.owner,
                    new_price,
                    new_qty,
                    True,
                    old_price,
                    old_qty,
                    old_owner,
                    o.filled,
                    True,
                )
            ]
        crosses = new_price != old_price and self._would_cross(o, new_price)
        if crosses and o.post_only:
            return [(REJECTED, order_id, o.owner, POST_ONLY_WOULD_CROSS)]
        if owner is not None:
            o.owner = owner
        del o.level[o]
        self._arrival = o.arrival = self._arrival + 1
        o.price = new_price
        o.qty = new_qty
        event = (
            REPLACED,
            order_id,
            o.owner,
            new_price,
            new_qty,
            False,
            old_price,
            old_qty,
            old_owner,
            o.filled,
            True,
        )
        if not crosses:
            self._rest(o)
            return [event]
        events: list[Event] = [event]
        del self._orders[order_id]  # matched as an incoming order, rests again if anything is left
        remaining, o.filled = self._match(
            order_id, o.owner, o.side, new_price, new_qty, o.filled, o.member, o.stp, events
        )
        if remaining > 0:
            o.qty = remaining
            self._rest(o)
        # the REPLACED event reports the state after the fills (what the caller would read next)
        events[0] = event[:9] + (o.filled, remaining > 0)
        return events

    def apply(self, commands: list[tuple[Any, ...]]) -> tuple[list[Event], list[int]]:
        """Run a batch of commands in order; the batch form of submit / cancel / replace.

        Commands are tuples built by `submit_command`, `cancel_command` and `replace_command`.
        Returns `(events, ends)`: one flat list with the events of all commands, and for command i
        the index one past its last event, so its events are `events[ends[i - 1]:ends[i]]`
        (from 0 for the first command). The events are exactly those the single calls return.

        Why it exists: a Lambda applies a whole MSK batch to the book at once, and doing it in one
        call saves a Python call, a list per command and attribute look-ups on every command.
        The common cases run inline in this one loop (a replace that moves or shrinks an order
        without crossing, a cancel, a GTC / DAY / IOC limit order, crossing or not);
        every other case goes through the single-call methods. The builders have validated the
        arguments of the inline commands (see `replace_command` and `submit_command`).

        The loop is written for CPython 3.11's specialising interpreter: a comparison is only
        specialised when the conditional jump right after it is short, so every `==`/`<` test
        here has a short true branch (`pass` meaning "general path") and the long bodies sit in
        the `else`; command codes are compared with `is` (small ints are unique objects).
        """
        events: list[Event] = []
        append = events.append
        # The inline paths emit exactly one event per command and record nothing; a path that
        # emits any other number k records (command index, k), the index being
        # len(events before it) - extra. `ends` is built from these after the loop.
        multi: list[tuple[int, int]] = []
        extra = 0  # events emitted so far beyond one per command
        orders = self._orders
        bids = self._bids
        asks = self._asks
        bid_heap = self._bid_heap
        ask_heap = self._ask_heap
        open_level = self._open_level
        match = self._match
        rest = self._rest
        new_order = object.__new__
        buy = BUY
        plain_replace = _PLAIN_REPLACE
        owner_replace = _OWNER_REPLACE
        cancel = _CANCEL
        buy_limit = _BUY_LIMIT
        sell_limit = _SELL_LIMIT
        # The arrival counter lives in a local on the inline paths; it is written back before
        # every call into the general methods (which use self._arrival) and read again after.
        arrival = self._arrival
        # heap[0] of each side as a price (inf when empty): never better than the true best price,
        # so a price that does not cross it cannot cross the book (see submit). Read again after
        # every call that may push or pop a heap.
        ask_top = ask_heap[0] if ask_heap else _INF
        bid_top = -bid_heap[0] if bid_heap else _NEG_INF
        # Every command is a 4-tuple; `price` and `qty` are what the inline codes carry there
        # (a cancel carries its reason in `price`, a limit order the rest of its fields in `qty`).
        for code, order_id, price, qty in commands:
            if code is plain_replace:  # replace(order_id, price, qty), both positive ints
                try:
                    o = orders[order_id]
                except KeyError:
                    append(("REJECTED", order_id, None, UNKNOWN_ORDER))
                    continue
                old_price = o.price
                old_qty = o.qty
                if price == old_price:
                    if qty <= old_qty:  # keeps its place in the queue
                        o.qty = qty
                        owner = o.owner
                        append(
                            (
                                "REPLACED",
                                order_id,
                                owner,
                                price,
                                qty,
                                True,
                                old_price,
                                old_qty,
                                owner,
                                o.filled,
                                True,
                            )
                        )
                        continue
                elif o.buy:
                    if ask_top <= price:  # may cross
                        pass
                    else:
                        del o.level[o]  # an emptied level stays (see the module docstring)
                        arrival += 1
                        o.arrival = arrival
                        o.price = price
                        o.qty = qty
                        try:
                            level = bids[price]
                        except KeyError:  # a new price: open its level
                            open_level(o)
                            bid_top = -bid_heap[0]
                        else:
                            level[o] = None
                            o.level = level
                        owner = o.owner
                        append(
                            (
                                "REPLACED",
                                order_id,
                                owner,
                                price,
                                qty,
                                False,
                                old_price,
                                old_qty,
                                owner,
                                o.filled,
                                True,
                            )
                        )
                        continue
                elif bid_top >= price:
                    pass
                else:
                    del o.level[o]
                    arrival += 1
                    o.arrival = arrival
                    o.price = price
                    o.qty = qty
                    try:
                        level = asks[price]
                    except KeyError:  # a new price: open its level
                        open_level(o)
                        ask_top = ask_heap[0]
                    else:
                        level[o] = None
                        o.level = level
                    owner = o.owner
                    append(
                        (
                            "REPLACED",
                            order_id,
                            owner,
                            price,
                            qty,
                            False,
                            old_price,
                            old_qty,
                            owner,
                            o.filled,
                            True,
                        )
                    )
                    continue
            elif code is owner_replace:
                # replace(order_id, price, new_total_qty=total, owner_update=(where, values)); callers
                # may build this command as a plain tuple, so its fields are checked here: the common
                # case (price a positive int, total None or an int above the filled quantity, the
                # owner a list the update applies to) runs inline, anything else takes the general path
                try:
                    o = orders[order_id]
                except KeyError:
                    append(("REJECTED", order_id, None, UNKNOWN_ORDER))
                    continue
                total, where, values = qty
                old_qty = o.qty
                if total is None:
                    new_qty = old_qty
                elif total.__class__ is int:
                    new_qty = total - o.filled
                else:
                    new_qty = 0  # not an int: the general path rejects it
                old_owner = o.owner
                if old_owner.__class__ is list:
                    owner = old_owner.copy()
                    try:
                        owner[where] = values
                    except (IndexError, TypeError, ValueError):
                        owner = None  # a bad index: the general path rejects it
                else:
                    owner = None  # the general path copies any sequence, or rejects
                if new_qty <= 0:
                    pass  # QTY_NOT_ABOVE_FILLED: general path
                elif owner is None:
                    pass
                elif price.__class__ is not int:
                    pass  # None (keep the price) or not a price: general path
                elif price <= 0:
                    pass
                else:
                    old_price = o.price
                    if price == old_price:
                        if new_qty <= old_qty:  # keeps its place in the queue
                            o.qty = new_qty
                            o.owner = owner
                            append(
                                (
                                    "REPLACED",
                                    order_id,
                                    owner,
                                    price,
                                    new_qty,
                                    True,
                                    old_price,
                                    old_qty,
                                    old_owner,
                                    o.filled,
                                    True,
                                )
                            )
                            continue
                    if o.buy:
                        if ask_top <= price:  # may cross
                            pass
                        else:
                            del o.level[o]
                            arrival += 1
                            o.arrival = arrival
                            o.price = price
                            o.qty = new_qty
                            o.owner = owner
                            try:
                                level = bids[price]
                            except KeyError:
                                open_level(o)
                                bid_top = -bid_heap[0]
                            else:
                                level[o] = None
                                o.level = level
                            append(
                                (
                                    "REPLACED",
                                    order_id,
                                    owner,
                                    price,
                                    new_qty,
                                    False,
                                    old_price,
                                    old_qty,
                                    old_owner,
                                    o.filled,
                                    True,
                                )
                            )
                            continue
                    elif bid_top >= price:
                        pass
                    else:
                        del o.level[o]
                        arrival += 1
                        o.arrival = arrival
                        o.price = price
                        o.qty = new_qty
                        o.owner = owner
                        try:
                            level = asks[price]
                        except KeyError:
                            open_level(o)
                            ask_top = ask_heap[0]
                        else:
                            level[o] = None
                            o.level = level
                        append(
                            (
                                "REPLACED",
                                order_id,
                                owner,
                                price,
                                new_qty,
                                False,
                                old_price,
                                old_qty,
                                old_owner,
                                o.filled,
                                True,
                            )
                        )
                        continue
            elif code is cancel:  # mirrors `cancel`; `price` holds the reason
                o = orders.pop(order_id, None)  # type: ignore[arg-type]  # None: not resting
                if o is None:
                    append(("REJECTED", order_id, None, UNKNOWN_ORDER))
                else:
                    del o.level[o]
                    append(("CANCELLED", order_id, o.owner, o.qty, price, o.filled))
                continue
            elif code is buy_limit:  # a valid GTC / DAY / IOC limit buy, not post-only
                if order_id in orders:
                    pass  # duplicate id: general path rejects it
                elif ask_top <= price:  # may cross: match, then cancel (IOC) or rest the remainder
                    q, tif, member, stp, owner = qty
                    arrival += 1
                    before = len(events)
                    remaining, filled = match(order_id, owner, buy, price, q, 0, member, stp, events)
                    ask_top = ask_heap[0] if ask_heap else _INF
                    if remaining <= 0:
                        pass  # filled, or stopped by self-trade prevention (remainder already cancelled)
                    elif tif == "IOC":
                        append(("CANCELLED", order_id, owner, remaining, IOC_REMAINDER, filled))
                    else:
                        rest(
                            RestingOrder(
                                order_id,
                                buy,
                                price,
                                remaining,
                                filled,
                                arrival,
                                tif,
                                False,
                                member,
                                stp,
                                owner,
                            )
                        )
                        bid_top = -bid_heap[0]
                        append(("ACCEPTED", order_id, owner, buy, price, remaining, filled))
                    k = len(events) - before
                    multi.append((before - extra, k))
                    extra += k - 1
                    continue
                else:
                    q, tif, member, stp, owner = qty
                    if tif == "IOC":
                        pass  # nothing to meet: general path cancels it
                    else:
                        arrival += 1
                        # built field by field: cheaper than a call to RestingOrder.__init__
                        o = new_order(RestingOrder)
                        o.order_id = order_id
                        o.side = buy
                        o.buy = True
                        o.price = price
                        o.qty = q
                        o.filled = 0
                        o.arrival = arrival
                        o.tif = tif
                        o.post_only = False
                        o.member = member
                        o.stp = stp
                        o.owner = owner
                        orders[order_id] = o
                        try:
                            level = bids[price]
                        except KeyError:  # a new price: open its level
                            open_level(o)
                            bid_top = -bid_heap[0]
                        else:
                            level[o] = None
                            o.level = level
                        append(("ACCEPTED", order_id, owner, buy, price, q, 0))
                        continue
            elif code is sell_limit:
                if order_id in orders:
                    pass
                elif bid_top >= price:
                    q, tif, member, stp, owner = qty
                    arrival += 1
                    before = len(events)
                    remaining, filled = match(order_id, owner, SELL, price, q, 0, member, stp, events)
                    bid_top = -bid_heap[0] if bid_heap else _NEG_INF
                    if remaining <= 0:
                        pass
                    elif tif == "IOC":
                        append(("CANCELLED", order_id, owner, remaining, IOC_REMAINDER, filled))
                    else:
                        rest(
                            RestingOrder(
                                order_id,
                                SELL,
                                price,
                                remaining,
                                filled,
                                arrival,
                                tif,
                                False,
                                member,
                                stp,
                                owner,
                            )
                        )
                        ask_top = ask_heap[0]
                        append(("ACCEPTED", order_id, owner, SELL, price, remaining, filled))
                    k = len(events) - before
                    multi.append((before - extra, k))
                    extra += k - 1
                    continue
                else:
                    q, tif, member, stp, owner = qty
                    if tif == "IOC":
                        pass
                    else:
                        arrival += 1
                        # built field by field: cheaper than a call to RestingOrder.__init__
                        o = new_order(RestingOrder)
                        o.order_id = order_id
                        o.side = SELL
                        o.buy = False
                        o.price = price
                        o.qty = q
                        o.filled = 0
                        o.arrival = arrival
                        o.tif = tif
                        o.post_only = False
                        o.member = member
                        o.stp = stp
                        o.owner = owner
                        orders[order_id] = o
                        try:
                            level = asks[price]
                        except KeyError:  # a new price: open its level
                            open_level(o)
                            ask_top = ask_heap[0]
                        else:
                            level[o] = None
                            o.level = level
                        append(("ACCEPTED", order_id, owner, SELL, price, q, 0))
                        continue
            # General path: whatever the inline paths above did not finish, through the single calls.
            before = len(events)
            self._arrival = arrival
            events += self._apply_one(code, order_id, price, qty)
            arrival = self._arrival
            ask_top = ask_heap[0] if ask_heap else _INF
            bid_top = -bid_heap[0] if bid_heap else _NEG_INF
            k = len(events) - before
            multi.append((before - extra, k))
            extra += k - 1
        self._arrival = arrival
        return events, _ends(len(commands), multi, len(events))

    def _apply_one(self, code: int, order_id: Any, price: Any, qty: Any) -> list[Event]:
        """One command through the single-call methods (the general path of `apply`)."""
        if code == _PLAIN_REPLACE:
            return self.replace(order_id, price, qty)
        if code == _CANCEL:
            return self.cancel(order_id, price)
        if code == _BUY_LIMIT or code == _SELL_LIMIT:
            qty, tif, member, stp, owner = qty
            side = BUY if code == _BUY_LIMIT else SELL
            return self.submit(order_id, side, price, qty, tif=tif, member=member, stp=stp, owner=owner)
        if code == _SUBMIT:
            side, qty, order_type, tif, post_only, member, stp, owner = qty
            return self.submit(
                order_id,
                side,
                price,
                qty,
                type=order_type,
                tif=tif,
                post_only=post_only,
                member=member,
                stp=stp,
                owner=owner,
            )
        if code == _OWNER_REPLACE:
            new_total_qty, where, values = qty
            return self.replace(order_id, price, new_total_qty=new_total_qty, owner_update=(where, values))
        if code == _REPLACE:
            new_qty, new_total_qty, owner, owner_update = qty
            return self.replace(
                order_id, price, new_qty, new_total_qty=new_total_qty, owner=owner, owner_update=owner_update
            )
        raise ValueError(f"unknown order book command code {code!r}")

    def expire_day(self) -> list[Event]:
        """End of day: cancel every DAY order (reason EXPIRED), in arrival order."""
        day_orders = sorted((o for o in self._orders.values() if o.tif == DAY), key=_arrival_of)
        events: list[Event] = []
        for o in day_orders:
            events.extend(self.cancel(o.order_id, EXPIRED))
        return events

    # ----------------------------------------------------------------- snapshot

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-serialisable state; `OrderBook.restore(snapshot)` continues exactly from here."""
        resting = sorted(self._orders.values(), key=_arrival_of)
        return {
            "version": SNAPSHOT_VERSION,
            "symbol": self.symbol,
            "arrival": self._arrival,
            "orders": [
                [
                    o.order_id,
                    o.side,
                    o.price,
                    o.qty,
                    o.filled,
                    o.arrival,
                    o.tif,
                    o.post_only,
                    o.member,
                    o.stp,
                    o.owner,
                ]
                for o in resting
            ],
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> OrderBook:
        if data.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported order book snapshot version {data.get('version')!r}")
        book = cls(data["symbol"])
        book._arrival = data["arrival"]
        # Snapshots list orders by arrival, which is also their order within each level.
        for row in data["orders"]:
            o = RestingOrder(*row)
            o.side = BUY if o.side == BUY else SELL  # canonical constants: the hot paths compare with `is`
            book._rest(o)
        return book

    # ---------------------------------------------------------------- internals

    def _rest(self, o: RestingOrder) -> None:
        self._orders[o.order_id] = o
        level = (self._bids if o.side is BUY else self._asks).get(o.price)
        if level is not None:
            level[o] = None
            o.level = level
        else:
            self._open_level(o)

    def _open_level(self, o: RestingOrder) -> None:
        """Rest `o` at a price that has no level yet: open the level and put its key on the heap."""
        price = o.price
        if o.side is BUY:
            levels, heap, key = self._bids, self._bid_heap, -price
        else:
            levels, heap, key = self._asks, self._ask_heap, price
        levels[price] = level = {o: None}
        o.level = level
        heappush(heap, key)
        if o.side is BUY:
            if len(heap) > self._bid_heap_limit:
                self._rebuild_heap(True)
        elif len(heap) > self._ask_heap_limit:
            self._rebuild_heap(False)

    def _rebuild_heap(self, bids: bool) -> None:
        """Drop empty levels and stale keys. In place: `apply` keeps the heaps and level dicts in locals."""
        levels = self._bids if bids else self._asks
        for price in [price for price, level in levels.items() if not level]:
            del levels[price]
        heap = self._bid_heap if bids else self._ask_heap
        heap[:] = [-p for p in levels] if bids else list(levels)
        heapify(heap)
        if bids:
            self._bid_heap_limit = len(heap) + _HEAP_SLACK
        else:
            self._ask_heap_limit = len(heap) + _HEAP_SLACK

    def _fillable(self, taker: RestingOrder) -> bool:
        """FOK pre-check: would `taker` fill completely (self-trade prevention included)?"""
        want = taker.qty
        if taker.side is BUY:
            heap, levels, sign = self._ask_heap, self._asks, 1
        else:
            heap, levels, sign = self._bid_heap, self._bids, -1
        limit = None if taker.price is None else taker.price * sign
        stp_on = taker.stp is not None and taker.member is not None
        for key, level in _levels_in_order(heap, levels, sign, None):
            if limit is not None and key > limit:
                return False
            for m in level:
                if stp_on and m.member == taker.member:
                    if taker.stp == CANCEL_OLDEST:
                        continue
                    return False
                want -= m.qty
                if want <= 0:
                    return True
        return False

    def _match(
        self,
        taker_id: Any,
        taker_owner: Any,
        side: str,
        limit: int | None,
        remaining: int,
        filled: int,
        member: Any,
        stp: str | None,
        events: list[Event],
    ) -> tuple[int, int]:
        """Match an incoming (taker) quantity against the opposite side; appends the events.

        Returns (open remainder, cumulative filled). If self-trade prevention stops the taker, its
        remainder is cancelled here (event appended) and the remainder returned is -1, so the
        caller neither rests it nor cancels it again.
        """
        orders = self._orders
        append = events.append
        if side is BUY:
            heap, opposite, sign = self._ask_heap, self._asks, 1
        else:
            heap, opposite, sign = self._bid_heap, self._bids, -1
        limit_key = limit * sign if limit is not None else _INF  # a market order has no limit
        stp_on = stp is not None and member is not None
        stopped = False
        while remaining and heap:
            key = heap[0]
            price = key * sign
            level = opposite.get(price)
            if not level:
                heappop(heap)
                if level is not None:
                    del opposite[price]  # an emptied level leaves with its key
                continue
            if key > limit_key:
                break
            done = []  # makers that leave the level (filled or STP-cancelled)
            for m in level:
                if stp_on and m.member == member:
                    if stp == CANCEL_OLDEST or stp == CANCEL_BOTH:
                        done.append(m)
                        del orders[m.order_id]
                        append((CANCELLED, m.order_id, m.owner, m.qty, STP, m.filled))
                        if stp == CANCEL_OLDEST:
                            continue
                    stopped = True
                    break
                mq = m.qty
                maker_id = m.order_id
                maker_owner = m.owner
                if mq > remaining:  # the maker keeps a remainder; the taker is done
                    q = remaining
                    filled += q
                    m.qty = mq = mq - q
                    m.filled = maker_filled = m.filled + q
                    append((TRADE, taker_id, taker_owner, maker_id, maker_owner, price, q, side, 0, mq))
                    append((PARTIALLY_FILLED, maker_id, maker_owner, maker_filled, mq, price, q))
                    append((FILLED, taker_id, taker_owner, filled, 0, price, q))
                    remaining = 0
                    break
                remaining -= mq
                filled += mq
                m.qty = 0
                m.filled = maker_filled = m.filled + mq
                done.append(m)
                del orders[maker_id]
                append((TRADE, taker_id, taker_owner, maker_id, maker_owner, price, mq, side, remaining, 0))
                append((FILLED, maker_id, maker_owner, maker_filled, 0, price, mq))
                if remaining:
                    append((PARTIALLY_FILLED, taker_id, taker_owner, filled, remaining, price, mq))
                else:
                    append((FILLED, taker_id, taker_owner, filled, 0, price, mq))
                    break
            if len(done) == len(level):
                del opposite[price]
                heappop(heap)  # key is still the top: nothing was pushed meanwhile
            else:
                for m in done:
                    del level[m]
            if stopped:
                break
        if stopped:
            append((CANCELLED, taker_id, taker_owner, remaining, STP, filled))
            return -1, filled
        return remaining, filled


def _arrival_of(o: RestingOrder) -> int:
    arrival: int = o.arrival
    return arrival


# _POSITIONS[k] == k: shared int objects that `_ends` slices instead of allocating new ints. Grown
# by replacing the list (never in place), so concurrent readers always see a consistent one.
_POSITIONS: list[int] = list(range(4096))
_POSITIONS_LIMIT = 1 << 16  # bigger batches build `ends` with accumulate (bounded memory)


def _ends(n: int, multi: list[tuple[int, int]], total: int) -> list[int]:
    """`ends` of `apply` for n commands emitting `total` events: one each except `multi` (index, count)."""
    global _POSITIONS
    positions = _POSITIONS
    if len(positions) <= total:
        if total >= _POSITIONS_LIMIT:
            counts = [1] * n
            for i, k in multi:
                counts[i] = k
            return list(accumulate(counts))
        _POSITIONS = positions = list(range(min(2 * total + 1, _POSITIONS_LIMIT + 1)))
    if not multi:
        return positions[1 : n + 1]
    ends: list[int] = []
    extend = ends.extend
    start = 0  # first command of the current run of one-event commands
    shift = 1  # inside that run, ends[i] = i + shift
    for i, k in multi:
        extend(positions[start + shift : i + shift])
        shift += k - 1
        ends.append(positions[i + shift])
        start = i + 1
    extend(positions[start + shift : n + shift])
    return ends


def _drop_empty_top(heap: list[int], levels: dict[int, Any], sign: int) -> None:
    """Pop the keys at the top of `heap` whose level is empty (deleting it) until a live level shows."""
    while heap:
        price = heap[0] * sign
        level = levels.get(price)
        if level:
            return
        heappop(heap)
        if level is not None:
            del levels[price]


def _levels_in_order(
    heap: list[int], levels: dict[int, Any], sign: int, limit: int | None
) -> Iterator[tuple[int, Any]]:
    """Yield (key, level) best first without popping `heap`: a best-first walk of the heap tree.

    Costs O(k log k) for k keys visited, so FOK checks and depth stay proportional to what they read.
    """
    n = len(heap)
    if not n or (limit is not None and limit <= 0):
        return
    frontier = [(heap[0], 0)]
    seen = set()
    count = 0
    while frontier:
        key, i = heappop(frontier)
        child = 2 * i + 1
        if child < n:
            heappush(frontier, (heap[child], child))
            if child + 1 < n:
                heappush(frontier, (heap[child + 1], child + 1))
        if key in seen:
            continue
        level = levels.get(key * sign)
        if not level:
            continue
        seen.add(key)
        yield key, level
        count += 1
        if limit is not None and count >= limit:
            return


def submit_command(
    order_id: Any,
    side: str,
    price: int | None,
    qty: int,
    *,
    type: str = LIMIT,
    tif: str = GTC,
    post_only: bool = False,
    member: Any = None,
    stp: str | None = None,
    owner: Any = None,
) -> tuple[Any, ...]:
    """Command for `OrderBook.apply` meaning `book.submit(...)` with the same arguments.

    A limit order whose fields are all valid (side, positive int price and quantity, time in force
    GTC, DAY or IOC, not post-only, a known STP mode) gets a code that `apply` runs inline without
    checking them again; anything else is checked (and possibly rejected) by `submit` itself.
    """
    if (
        type == LIMIT
        and price.__class__ is int
        and qty.__class__ is int
        and price > 0
        and qty > 0
        and not post_only
        and (tif == GTC or tif == DAY or tif == IOC)
        and (stp is None or stp == CANCEL_NEWEST or stp == CANCEL_OLDEST or stp == CANCEL_BOTH)
    ):
        if side == BUY:
            return (_BUY_LIMIT, order_id, price, (qty, tif, member, stp, owner))
        if side == SELL:
            return (_SELL_LIMIT, order_id, price, (qty, tif, member, stp, owner))
    return (_SUBMIT, order_id, price, (side, qty, type, tif, post_only, member, stp, owner))


def cancel_command(order_id: Any, reason: str = USER) -> tuple[Any, ...]:
    """Command for `OrderBook.apply` meaning `book.cancel(order_id, reason)`."""
    return (_CANCEL, order_id, reason, None)


def replace_command(
    order_id: Any,
    new_price: int | None = None,
    new_qty: int | None = None,
    *,
    new_total_qty: int | None = None,
    owner: Any = None,
    owner_update: tuple[Any, Any] | None = None,
) -> tuple[Any, ...]:
    """Command for `OrderBook.apply` meaning `book.replace(...)` with the same arguments.

    A new price and open quantity that are both positive ints, without a total quantity or owner,
    get a code that `apply` runs inline without checking them again. A replace with an
    `owner_update` (where, values) and no `new_qty` or `owner` (what match_orders builds for every
    REPLACE) gets the OWNER_REPLACE command, whose fields `apply` checks itself (cheaply, inline).
    """
    if owner_update is None:
        if (
            new_price.__class__ is int
            and new_qty.__class__ is int
            and new_price > 0
            and new_qty > 0
            and new_total_qty is None
            and owner is None
        ):
            return (_PLAIN_REPLACE, order_id, new_price, new_qty)
    elif new_qty is None and owner is None and owner_update.__class__ is tuple and len(owner_update) == 2:
        # `apply` checks this command's fields itself (see OWNER_REPLACE)
        return (_OWNER_REPLACE, order_id, new_price, (new_total_qty, owner_update[0], owner_update[1]))
    return (_REPLACE, order_id, new_price, (new_qty, new_total_qty, owner, owner_update))
