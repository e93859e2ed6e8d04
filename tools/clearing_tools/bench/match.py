"""Matching-engine benchmark: generate an exchange-core-like workload and replay it through one book.

Workload file: JSON Lines, one operation per line (prices in ticks, quantities in shares):
  {"op": "new", "id": 7, "side": "buy", "type": "limit", "tif": "GTC", "price": 10012, "qty": 40}
  {"op": "cancel", "id": 7}
  {"op": "replace", "id": 7, "new_price": 10010, "new_qty": 40}
Fields an operation does not need are ignored; a replace keeps the order id; `new_qty` is the new
open quantity; a cancel or replace of an unknown id is ignored (the book rejects it, nobody cares).

The mix follows exchange-core's benchmark: a prefill of about 1,000 resting orders near the mid
price, then 9% new GTC limit orders, 3% IOC orders that cross the spread, 6% cancels and 82%
replaces (mostly price moves near the mid, a few of which cross and trade).
"""

from __future__ import annotations

import gc
import json
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from pathlib import Path
from typing import Any

from clearing.domain.book import OrderBook, cancel_command, replace_command, submit_command
from clearing.domain.book_events import ACCEPTED, CANCELLED, FILLED, TRADE

# Operation codes of the pre-parsed workload tuples
OP_NEW = 0
OP_CANCEL = 1
OP_REPLACE = 2

MIX = {"new_gtc": 0.09, "ioc": 0.03, "cancel": 0.06, "replace": 0.82}


@dataclass(frozen=True)
class MatchBenchResult:
    operations: int
    seconds: float
    trades: int
    traded_qty: int

    @property
    def ops_per_sec(self) -> float:
        return self.operations / self.seconds if self.seconds > 0 else float("inf")

    def as_json(self) -> dict[str, Any]:
        return {"ops_per_sec": self.ops_per_sec, "trades": self.trades, "traded_qty": self.traded_qty}


class _LiveOrders:
    """Ids resting in the generator's book, with O(1) add, remove and random pick."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.pos: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, order_id: int) -> None:
        if order_id not in self.pos:
            self.pos[order_id] = len(self.ids)
            self.ids.append(order_id)

    def discard(self, order_id: int) -> None:
        i = self.pos.pop(order_id, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != order_id:
            self.ids[i] = last
            self.pos[last] = i

    def pick(self, rng: random.Random) -> int:
        return self.ids[rng.randrange(len(self.ids))]


def generate_workload(
    operations: int, *, seed: int = 1, resting: int = 1000, mid_price: int = 10_000
) -> Iterator[dict[str, Any]]:
    """Yield `resting` prefill orders, then `operations` operations of the benchmark mix.

    The generator replays its own output through an OrderBook so that cancels and replaces aim at
    orders that are really resting (fills remove orders), and the mid price follows the book.
    Deterministic for a given seed.
    """
    rng = random.Random(seed)
    book = OrderBook("BENCH")
    live = _LiveOrders()
    next_id = 1
    mid = mid_price

    def offset() -> int:  # distance from the mid, most orders within a few ticks of the touch
        return 1 + int(rng.expovariate(1 / 6))

    def track(events: list) -> None:
        for ev in events:
            kind = ev[0]
            if kind == ACCEPTED:
                live.add(ev[1])
            elif kind == FILLED or kind == CANCELLED:
                live.discard(ev[1])

    def new_order(side: str, price: int, qty: int, tif: str) -> dict[str, Any]:
        nonlocal next_id
        line = {
            "op": "new",
            "id": next_id,
            "side": side,
            "type": "limit",
            "tif": tif,
            "price": price,
            "qty": qty,
        }
        track(book.submit(next_id, side.upper(), price, qty, tif=tif))
        next_id += 1
        return line

    for _ in range(resting):
        side = rng.choice(("buy", "sell"))
        price = mid - offset() if side == "buy" else mid + offset()
        yield new_order(side, price, rng.randint(1, 100), "GTC")

    cut_ioc = MIX["new_gtc"] + MIX["ioc"]
    cut_cancel = cut_ioc + MIX["cancel"]
    for _ in range(operations):
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            mid = (bid + ask) // 2
        r = rng.random()
        if r >= cut_cancel and live:
            order_id = live.pick(rng)
            current = book.order(order_id)
            assert current is not None
            side = current["side"]
            if rng.random() < 0.015:  # an aggressive move that crosses the spread and trades
                if side == "BUY":
                    new_price = (ask if ask is not None else mid) + rng.randint(0, 2)
                else:
                    new_price = (bid if bid is not None else mid) - rng.randint(0, 2)
            else:
                new_price = mid - offset() if side == "BUY" else mid + offset()
            u = rng.random()
            qty = current["qty"]
            new_qty = (
                qty if u < 0.8 else max(1, qty - rng.randint(1, 20)) if u < 0.9 else qty + rng.randint(1, 20)
            )
            track(book.replace(order_id, new_price, new_qty))
            yield {"op": "replace", "id": order_id, "new_price": new_price, "new_qty": new_qty}
            continue
        target_low, target_high = resting * 0.9, resting * 1.1
        if r < MIX["new_gtc"] or (cut_ioc <= r and len(live) < target_low) or not live:
            if r < MIX["new_gtc"] and len(live) > target_high:
                order_id = live.pick(rng)
                track(book.cancel(order_id))
                yield {"op": "cancel", "id": order_id}
                continue
            side = rng.choice(("buy", "sell"))
            price = mid - offset() if side == "buy" else mid + offset()
            yield new_order(side, price, rng.randint(1, 100), "GTC")
        elif r < cut_ioc:
            side = rng.choice(("buy", "sell"))
            if side == "buy":
                price = (ask if ask is not None else mid) + rng.randint(0, 3)
            else:
                price = (bid if bid is not None else mid) - rng.randint(0, 3)
            yield new_order(side, price, rng.randint(1, 60), "IOC")
        else:
            order_id = live.pick(rng)
            track(book.cancel(order_id))
            yield {"op": "cancel", "id": order_id}


def write_workload(
    path: Path, operations: int, *, seed: int = 1, resting: int = 1000, progress: bool = False
) -> int:
    """Write a generated workload to `path`; returns the number of lines written."""
    lines = generate_workload(operations, seed=seed, resting=resting)
    total = operations + resting
    written = 0
    with open(path, "w", encoding="utf-8") as out:
        if progress:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                task = bar.add_task("generating workload", total=total)
                for line in lines:
                    out.write(json.dumps(line, separators=(",", ":")) + "\n")
                    written += 1
                    if written % 10_000 == 0:
                        bar.update(task, completed=written)
        else:
            for line in lines:
                out.write(json.dumps(line, separators=(",", ":")) + "\n")
                written += 1
    return written


def parse_workload(lines: Iterable[str]) -> list[tuple]:
    """Pre-parse workload lines into tuples, so that the timed loop does no JSON or dict work.

    (OP_NEW, id, side, price, qty, type, tif) | (OP_CANCEL, id) | (OP_REPLACE, id, new_price, new_qty)
    """
    ops: list[tuple] = []
    for raw in lines:
        raw = raw.strip()
        if not raw:
            continue
        d = json.loads(raw)
        op = d["op"]
        if op == "new":
            order_type = d.get("type", "limit").upper()
            price = d.get("price") if order_type == "LIMIT" else None
            ops.append(
                (OP_NEW, d["id"], d["side"].upper(), price, d["qty"], order_type, d.get("tif", "GTC").upper())
            )
        elif op == "cancel":
            ops.append((OP_CANCEL, d["id"]))
        elif op == "replace":
            ops.append((OP_REPLACE, d["id"], d.get("new_price"), d.get("new_qty")))
        else:
            raise ValueError(f"unknown workload op {op!r}")
    return ops


def load_workload(path: Path) -> list[tuple]:
    with open(path, encoding="utf-8") as f:
        return parse_workload(f)


def run_workload(
    ops: list[tuple],
    symbol: str = "BENCH",
    *,
    api: str = "production",
    batch_size: int = 1000,
    clock: Any = time.perf_counter,
) -> MatchBenchResult:
    """Replay pre-parsed operations through one fresh book; times only the matching.

    api="production" (default): what match_orders runs. The operations are first turned into
    orders.accepted messages (untimed, like the parsing); the timed part is, per batch of
    `batch_size` records, `accepted_commands(messages)` (match_orders' command builder) plus one
    `OrderBook.apply`. Trades are counted from each batch's events outside the timed part.
    api="call": one `submit` / `cancel` / `replace` call per operation (match_orders before issue
    15); the loop consumes the events the way a caller would (counting trades and traded quantity).
    api="batch": `OrderBook.apply` on batches of plain commands built before timing (the book alone).
    api="production-call": the same messages as "production" through match_orders' per-call path
    before issue 15 (per record: owner list, `book.order` for a REPLACE, one method call).
    All build every domain event.
    """
    if api == "production":
        return _run_production(ops, symbol, batch_size, clock)
    if api == "production-call":
        return _run_production_calls(ops, symbol, batch_size, clock)
    if api == "call":
        return _run_calls(ops, symbol, clock)
    if api == "batch":
        return _run_batches(ops, symbol, batch_size, clock)
    raise ValueError(f"unknown api {api!r}")


MEMBERS = ("MBR01", "MBR02", "MBR03", "MBR04", "MBR05", "MBR06")


def to_accepted(ops: list[tuple], symbol: str = "BENCH") -> list[dict[str, Any]]:
    """Pre-parsed workload tuples -> orders.accepted messages as validate_orders writes them (untimed)."""
    return [m for batch in accepted_batches(ops, len(ops) or 1, symbol) for m in batch]


def accepted_batches(
    ops: list[tuple], batch_size: int, symbol: str = "BENCH"
) -> Iterator[list[dict[str, Any]]]:
    """Pre-parsed workload tuples -> batches of orders.accepted messages as validate_orders writes them.

    Made one batch at a time (a Lambda holds one MSK batch, not the whole day: keeping a million
    message dicts alive would make the garbage collector's full passes, not the matcher, the cost).
    Order ids are `member:client_order_id` strings like the pipeline's; the reserve price is the
    limit price (market orders: a price above the book). A replace carries the new *total* quantity
    (FIX OrderQty): the workload's new open quantity plus what the order has filled at that point,
    found by replaying the operations through a book here.
    """
    book = OrderBook(symbol)
    messages: list[dict[str, Any]] = []
    # ids derive from the workload id (no map kept: a million-entry dict would make the collector's
    # full passes the cost); a CANCEL / REPLACE carries an equal string, not the same object, as a
    # decoded message would
    for n, op in enumerate(ops):
        if len(messages) == batch_size:
            yield messages
            messages = []
        code = op[0]
        source = {"partition": n % 3, "offset": n // 3}
        sent_at = "2026-11-24T14:30:00.000Z"
        if code == OP_NEW:
            _, wid, side, price, qty, order_type, tif = op
            member = MEMBERS[wid % len(MEMBERS)]
            clordid = f"C{wid}"
            order_id = f"{member}:{clordid}"
            reserve = price if price is not None else 20_000
            messages.append(
                {
                    "action": "NEW",
                    "order_id": order_id,
                    "member_id": member,
                    "client_order_id": clordid,
                    "orig_client_order_id": None,
                    "symbol": symbol,
                    "price_ticks": price,
                    "price": None if price is None else f"{price / 100:.2f}",
                    "reserve_price_ticks": reserve,
                    "sent_at": sent_at,
                    "source": source,
                    "account": f"{member}-ACC",
                    "side": side,
                    "type": order_type,
                    "quantity": qty,
                    "time_in_force": tif,
                    "post_only": False,
                    "stp": None,
                    "route": "INTERNAL",
                }
            )
            book.submit(wid, side, price, qty, type=order_type, tif=tif)
            continue
        wid = op[1]
        member = MEMBERS[wid % len(MEMBERS)]
        order_id = f"{member}:C{wid}"
        base = {
            "order_id": order_id,
            "member_id": member,
            "client_order_id": f"X{n}",
            "orig_client_order_id": order_id.split(":", 1)[1],
            "symbol": symbol,
            "sent_at": sent_at,
            "source": source,
        }
        if code == OP_CANCEL:
            messages.append(
                {"action": "CANCEL", **base, "price_ticks": None, "price": None, "reserve_price_ticks": 1}
            )
            book.cancel(wid)
            continue
        _, _, new_price, new_qty = op
        resting = book.order(wid)
        total = None if new_qty is None else new_qty + (resting["filled"] if resting else 0)
        messages.append(
            {
                "action": "REPLACE",
                **base,
                "price_ticks": new_price,
                "price": None if new_price is None else f"{new_price / 100:.2f}",
                "reserve_price_ticks": new_price if new_price is not None else 1,
                "quantity": total,
                "side": resting["side"] if resting else "BUY",
            }
        )
        book.replace(wid, new_price, new_qty)
    if messages:
        yield messages


def _run_production(ops: list[tuple], symbol: str, batch_size: int, clock: Any) -> MatchBenchResult:
    """What match_orders runs per symbol and batch: `apply_accepted` (its command builder plus one
    `OrderBook.apply`) with the cyclic collector paused until the batch's events are released, as
    `MatchOrders` does around matching and translation. The release is timed too: it is where the
    paused collector's work would otherwise land."""
    from clearing.services.match import apply_accepted, cyclic_gc_paused

    book = OrderBook(symbol)
    elapsed = 0.0
    trades = 0
    traded_qty = 0
    for batch in accepted_batches(ops, batch_size, symbol):  # converted between the timed parts
        started = clock()
        with cyclic_gc_paused():
            events, _ends = apply_accepted(book, batch)
            for ev in events:
                if ev[0] == TRADE:
                    trades += 1
                    traded_qty += ev[6]
            del events, _ends
        elapsed += clock() - started
    return MatchBenchResult(len(ops), elapsed, trades, traded_qty)


def to_commands(ops: list[tuple]) -> list[tuple]:
    """Pre-parsed workload tuples -> OrderBook.apply commands (not timed)."""
    commands = []
    for op in ops:
        code = op[0]
        if code == OP_REPLACE:
            commands.append(replace_command(op[1], op[2], op[3]))
        elif code == OP_NEW:
            commands.append(submit_command(op[1], op[2], op[3], op[4], type=op[5], tif=op[6]))
        else:
            commands.append(cancel_command(op[1]))
    return commands


def _run_batches(ops: list[tuple], symbol: str, batch_size: int, clock: Any) -> MatchBenchResult:
    commands = to_commands(ops)
    batches = [commands[i : i + batch_size] for i in range(0, len(commands), batch_size)]
    book = OrderBook(symbol)
    apply = book.apply
    elapsed = 0.0
    trades = 0
    traded_qty = 0
    for batch in batches:
        started = clock()
        events, _ends = apply(batch)
        elapsed += clock() - started
        for ev in events:
            if ev[0] == TRADE:
                trades += 1
                traded_qty += ev[6]
        del events, _ends  # the consumer releases the batch's events, outside the timed part
    return MatchBenchResult(len(ops), elapsed, trades, traded_qty)


def per_call_apply(book: OrderBook, msg: dict[str, Any]) -> tuple[list, int | None]:
    """match_orders' `_apply` before issue 15: one book call per record, a REPLACE reads the book.
    Returns the events and the reserve in force before a replace (None otherwise). Kept as the
    like-for-like "before" of the production API, and by tests/support/reference_match.py."""
    action = msg["action"]
    if action == "NEW":
        owner = [
            msg["member_id"],
            msg["account"],
            msg["client_order_id"],
            msg["reserve_price_ticks"],
            msg["quantity"],
        ]
        return book.submit(
            msg["order_id"],
            msg["side"],
            msg["price_ticks"],
            msg["quantity"],
            type=msg["type"],
            tif=msg["time_in_force"],
            post_only=msg.get("post_only", False),
            member=msg["member_id"],
            stp=msg.get("stp"),
            owner=owner,
        ), None
    if action == "CANCEL":
        return book.cancel(msg["order_id"]), None
    resting = book.order(msg["order_id"])
    if resting is None:
        return book.replace(msg["order_id"], None, new_total_qty=msg.get("quantity")), None
    owner = list(resting["owner"])
    old_reserve = owner[3]
    owner[3] = msg["reserve_price_ticks"]
    if msg.get("quantity") is not None:
        owner[4] = msg["quantity"]
    new_price = msg["price_ticks"] if msg["price_ticks"] != resting["price"] else None
    return book.replace(
        msg["order_id"], new_price, new_total_qty=msg.get("quantity"), owner=owner
    ), old_reserve


def _run_production_calls(ops: list[tuple], symbol: str, batch_size: int, clock: Any) -> MatchBenchResult:
    book = OrderBook(symbol)
    elapsed = 0.0
    trades = 0
    traded_qty = 0
    for batch in accepted_batches(ops, batch_size, symbol):
        started = clock()
        results = [per_call_apply(book, msg)[0] for msg in batch]
        elapsed += clock() - started
        for events in results:
            for ev in events:
                if ev[0] == TRADE:
                    trades += 1
                    traded_qty += ev[6]
        del results
    return MatchBenchResult(len(ops), elapsed, trades, traded_qty)


def _run_calls(ops: list[tuple], symbol: str, clock: Any) -> MatchBenchResult:
    book = OrderBook(symbol)
    submit, cancel, replace = book.submit, book.cancel, book.replace
    trades = 0
    traded_qty = 0
    started = clock()
    for op in ops:
        code = op[0]
        if code == 2:
            events = replace(op[1], op[2], op[3])
        elif code == 0:
            events = submit(op[1], op[2], op[3], op[4], type=op[5], tif=op[6])
        else:
            events = cancel(op[1])
        if len(events) > 2:  # a trade always comes with two fill events
            for ev in events:
                if ev[0] == TRADE:
                    trades += 1
                    traded_qty += ev[6]
    elapsed = clock() - started
    return MatchBenchResult(len(ops), elapsed, trades, traded_qty)


class _BareOrder:
    __slots__ = ("order_id", "buy", "price", "qty", "level")
    order_id: Any
    buy: bool
    price: int
    qty: int
    level: Any


class _BareBonesBook:
    """Calibration only: the least a Python book can do on this workload (no events, no rules).

    Same data structures as OrderBook (dict levels, lazy heaps) but no validation, time in force
    beyond IOC, STP, post-only, arrival counter or events. Its speed measures the machine and
    interpreter of the moment, so OrderBook figures can be read as a fraction of it on a shared box.
    """

    __slots__ = ("orders", "bids", "asks", "bid_heap", "ask_heap")

    def __init__(self) -> None:
        self.orders: dict = {}
        self.bids: dict = {}
        self.asks: dict = {}
        self.bid_heap: list = []
        self.ask_heap: list = []

    def _rest(self, o: _BareOrder) -> None:
        if o.buy:
            levels, heap, key = self.bids, self.bid_heap, -o.price
        else:
            levels, heap, key = self.asks, self.ask_heap, o.price
        level = levels.get(o.price)
        if level is None:
            levels[o.price] = level = {}
            heappush(heap, key)
        level[o.order_id] = o
        o.level = level
        self.orders[o.order_id] = o

    def _match(self, o: _BareOrder) -> None:
        if o.buy:
            levels, heap, sign = self.asks, self.ask_heap, 1
        else:
            levels, heap, sign = self.bids, self.bid_heap, -1
        limit = o.price * sign
        q = o.qty
        while q and heap:
            key = heap[0]
            level = levels.get(key * sign)
            if level is None:
                heappop(heap)
                continue
            if key > limit:
                break
            done = []
            for m in level.values():
                if m.qty <= q:
                    q -= m.qty
                    done.append(m.order_id)
                    del self.orders[m.order_id]
                else:
                    m.qty -= q
                    q = 0
                    break
            if len(done) == len(level):
                del levels[key * sign]
                heappop(heap)
            else:
                for i in done:
                    del level[i]
        o.qty = q

    def submit(self, order_id, side, price, qty, order_type, tif) -> None:
        o = _BareOrder()
        o.order_id = order_id
        o.buy = side == "BUY"
        o.price = price if price is not None else (10**18 if o.buy else 0)  # market: no limit
        o.qty = qty
        self._match(o)
        if o.qty and tif != "IOC" and price is not None:
            self._rest(o)

    def cancel(self, order_id) -> None:
        o = self.orders.pop(order_id, None)
        if o is None:
            return
        level = o.level
        del level[order_id]
        if not level:
            del (self.bids if o.buy else self.asks)[o.price]

    def replace(self, order_id, price, qty) -> None:
        o = self.orders.pop(order_id, None)
        if o is None:
            return
        level = o.level
        del level[order_id]
        if not level:
            del (self.bids if o.buy else self.asks)[o.price]
        o.price = price
        o.qty = qty
        if o.buy:
            heap = self.ask_heap
            if heap and heap[0] <= price:
                self._match(o)
            levels = self.bids
        else:
            heap = self.bid_heap
            if heap and -heap[0] >= price:
                self._match(o)
            levels = self.asks
        if o.qty:
            level = levels.get(price)
            if level is None:
                self._rest(o)
            else:
                level[order_id] = o
                o.level = level
                self.orders[order_id] = o


def run_baseline(ops: list[tuple], clock: Any = time.perf_counter) -> MatchBenchResult:
    """Replay through `_BareBonesBook` (no events): the calibration figure. Trades are not counted."""
    book = _BareBonesBook()
    submit, cancel, replace = book.submit, book.cancel, book.replace
    started = clock()
    for op in ops:
        code = op[0]
        if code == 2:
            replace(op[1], op[2], op[3])
        elif code == 0:
            submit(op[1], op[2], op[3], op[4], op[5], op[6])
        else:
            cancel(op[1])
    return MatchBenchResult(len(ops), clock() - started, 0, 0)


class _LoopOrder:
    __slots__ = ("order_id", "buy", "price", "qty", "level")
    order_id: Any
    buy: bool
    price: int
    qty: int
    level: Any


class _BareBonesLoop:
    """Calibration only: the bare-bones book rebuilt with the structures and loop of OrderBook.apply.

    No events, validation, arrival counter, time in force beyond IOC, STP or post-only, but the same
    hot-path layout as the full book: one loop per batch, level dicts keyed by the order objects,
    emptied levels kept until a heap rebuild, heap tops in locals. Its speed is what the full book's
    structures give without events and rules; it counts trades so the replay can be checked.
    """

    def __init__(self) -> None:
        self.orders: dict[Any, _LoopOrder] = {}
        # price -> level, heap of -price (bids) / price (asks), heap rebuild limit
        self.bid_side: tuple[dict[int, Any], list[int], list[int]] = ({}, [], [64])
        self.ask_side: tuple[dict[int, Any], list[int], list[int]] = ({}, [], [64])
        self.trades = 0
        self.traded_qty = 0

    def apply(self, ops: list[tuple]) -> None:
        orders = self.orders
        bids, bid_heap, _ = self.bid_side
        asks, ask_heap, _ = self.ask_side
        inf = float("inf")
        ask_top = ask_heap[0] if ask_heap else inf
        bid_top = -bid_heap[0] if bid_heap else -inf
        for op in ops:
            code = op[0]
            if code == 2:
                _, order_id, price, qty = op
                try:
                    o = orders[order_id]
                except KeyError:
                    continue
                if price == o.price:
                    if qty <= o.qty:  # keeps its place in the queue
                        o.qty = qty
                        continue
                if o.buy:
                    if ask_top <= price:
                        pass
                    else:
                        del o.level[o]
                        o.price = price
                        o.qty = qty
                        try:
                            level = bids[price]
                        except KeyError:
                            level = None
                        if level:
                            level[o] = None
                            o.level = level
                        else:
                            self._open(o, self.bid_side, -price)
                            bid_top = -bid_heap[0]
                        continue
                elif bid_top >= price:
                    pass
                else:
                    del o.level[o]
                    o.price = price
                    o.qty = qty
                    try:
                        level = asks[price]
                    except KeyError:
                        level = None
                    if level:
                        level[o] = None
                        o.level = level
                    else:
                        self._open(o, self.ask_side, price)
                        ask_top = ask_heap[0]
                    continue
                del orders[order_id]  # crossing replace: match as a taker, rest what is left
                del o.level[o]
                o.price = price
                o.qty = qty
                self._take(order_id, o, False)
            elif code == 1:
                o = orders.pop(op[1], None)  # type: ignore[arg-type]  # None: not resting
                if o is not None:
                    del o.level[o]
                continue
            else:
                _, order_id, side, price, qty, _type, tif = op
                o = _LoopOrder()
                o.order_id = order_id
                o.buy = side == "BUY"
                o.price = price
                o.qty = qty
                self._take(order_id, o, tif == "IOC" or price is None)
            ask_top = ask_heap[0] if ask_heap else inf
            bid_top = -bid_heap[0] if bid_heap else -inf

    def _open(self, o: _LoopOrder, side: tuple, key: int) -> None:
        levels, heap, limit = side
        level = levels.get(o.price)
        if level is None:
            levels[o.price] = level = {}
        level[o] = None
        o.level = level
        heappush(heap, key)
        if len(heap) > limit[0]:
            for price in [p for p, lv in levels.items() if not lv]:
                del levels[price]
            heap[:] = [-p for p in levels] if side is self.bid_side else list(levels)
            heapify(heap)
            limit[0] = len(heap) + 64

    def _take(self, order_id: int, o: _LoopOrder, immediate: bool) -> None:
        if o.buy:
            levels, heap, _ = self.ask_side
            sign = 1
        else:
            levels, heap, _ = self.bid_side
            sign = -1
        limit = (10**18 if o.buy else 0) if o.price is None else o.price * sign
        q = o.qty
        while q and heap:
            key = heap[0]
            level = levels.get(key * sign)
            if not level:
                heappop(heap)
                continue
            if key > limit:
                break
            done = []
            for m in level:
                self.trades += 1
                if m.qty <= q:
                    q -= m.qty
                    self.traded_qty += m.qty
                    done.append(m)
                    if not q:
                        break
                else:
                    m.qty -= q
                    self.traded_qty += q
                    q = 0
                    break
            if len(done) == len(level):
                del levels[key * sign]
                heappop(heap)
            else:
                for m in done:
                    del level[m]
            for m in done:
                del self.orders[m.order_id]
        if q and not immediate:
            o.qty = q
            self.orders[order_id] = o
            side = self.bid_side if o.buy else self.ask_side
            level = side[0].get(o.price)
            if level:
                level[o] = None
                o.level = level
            else:
                self._open(o, side, -o.price if o.buy else o.price)


def run_bare_loop(
    ops: list[tuple], batch_size: int = 1000, clock: Any = time.perf_counter
) -> MatchBenchResult:
    """Replay through `_BareBonesLoop` in batches (the second calibration figure), trades counted."""
    book = _BareBonesLoop()
    batches = [ops[i : i + batch_size] for i in range(0, len(ops), batch_size)]
    apply = book.apply
    elapsed = 0.0
    for batch in batches:
        started = clock()
        apply(batch)
        elapsed += clock() - started
    return MatchBenchResult(len(ops), elapsed, book.trades, book.traded_qty)


# ------------------------------------------------------------------------------------------ CLI


def register_bench(bench_subparsers: Any) -> None:
    """Add `clearing bench match` (called by clearing_tools.cli.commands.bench)."""
    p = bench_subparsers.add_parser(
        "match",
        help="benchmark the matching engine on a JSON Lines workload",
        description="Replay a workload through one OrderBook (--workload), or generate one (--generate N --out FILE).",
    )
    p.add_argument("--workload", type=Path, help="JSON Lines workload to replay")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument("--generate", type=int, metavar="N", help="generate N operations of the benchmark mix")
    p.add_argument("--out", type=Path, help="file to write the generated workload to")
    p.add_argument("--seed", type=int, default=1, help="random seed of the generator (default 1)")
    p.add_argument(
        "--resting", type=int, default=1000, help="orders resting before the mix starts (default 1000)"
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="replay the workload this many times, report the best run"
    )
    p.add_argument(
        "--api",
        choices=("production", "batch", "call", "production-call"),
        default="production",
        help="production (default): what match_orders runs, its command builder (accepted_commands) plus "
        "OrderBook.apply per batch of orders.accepted messages; batch: OrderBook.apply on commands built "
        "before timing (the book alone); call: one method call per operation; production-call: the production "
        "messages through match_orders' per-call path before issue 15 (book read per REPLACE)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=1000,
        help="operations per OrderBook.apply batch, production and batch APIs (default 1000)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="also replay through a bare-bones book without events or rules, to calibrate the machine",
    )
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="divide by the process CPU time instead of wall time (steadier on a shared machine)",
    )
    p.set_defaults(func=_run_bench_match)


def _run_bench_match(args: Any) -> int:
    from rich.console import Console

    console = Console(stderr=True)
    if args.generate is not None:
        if args.out is None:
            console.print("[red]--generate needs --out FILE[/red]")
            return 2
        written = write_workload(
            args.out, args.generate, seed=args.seed, resting=args.resting, progress=args.generate >= 200_000
        )
        if args.json and args.workload is None:
            print(json.dumps({"written": written, "out": str(args.out)}))
        else:  # stderr, so that a replay's --json output stays one object
            console.print(f"wrote {written:,} operations to {args.out}")
        if args.workload is None:
            return 0
    if args.workload is None:
        console.print("[red]give --workload FILE (or --generate N --out FILE)[/red]")
        return 2
    ops = load_workload(args.workload)
    # The workload (a list of a million tuples) is input a Lambda never holds: frozen, so that the
    # collector's full passes (which the production API's allocations trigger) do not walk it
    # (about 20 ms a pass here). Every API and both baselines run in this state.
    gc.collect()
    gc.freeze()
    try:
        return _replay(args, ops, console)
    finally:
        gc.unfreeze()


def _replay(args: Any, ops: list[tuple], console: Any) -> int:
    clock = time.process_time if args.cpu_time else time.perf_counter
    runs = [
        run_workload(ops, api=args.api, batch_size=args.batch_size, clock=clock)
        for _ in range(max(1, args.repeat))
    ]
    best = min(runs, key=lambda r: r.seconds)
    if args.json:
        print(json.dumps(best.as_json()))
    else:
        print(
            f"{best.operations:,} operations in {best.seconds:.3f} s ({args.api} API): "
            f"{best.ops_per_sec:,.0f} ops/s, {best.trades:,} trades, traded quantity {best.traded_qty:,}"
        )
    if args.baseline:
        base = min((run_baseline(ops, clock) for _ in range(max(1, args.repeat))), key=lambda r: r.seconds)
        loop = min(
            (run_bare_loop(ops, args.batch_size, clock) for _ in range(max(1, args.repeat))),
            key=lambda r: r.seconds,
        )
        lines = [
            f"bare-bones book (no events, no rules): {base.ops_per_sec:,.0f} ops/s; "
            f"OrderBook ({args.api} API) reaches {best.ops_per_sec / base.ops_per_sec:.0%} of it",
            f"bare-bones loop (OrderBook.apply's structures, no events, no rules): "
            f"{loop.ops_per_sec:,.0f} ops/s, {loop.trades:,} trades; "
            f"OrderBook ({args.api} API) reaches {best.ops_per_sec / loop.ops_per_sec:.0%} of it",
        ]
        for line in lines:
            if args.json:
                console.print(line)  # stderr: stdout holds exactly one JSON object
            else:
                print(line)
        if (loop.trades, loop.traded_qty) != (best.trades, best.traded_qty):
            console.print(
                f"[red]the bare-bones loop counted {loop.trades:,} trades ({loop.traded_qty:,} shares), "
                f"OrderBook ({args.api} API) {best.trades:,} ({best.traded_qty:,}): the replays differ[/red]"
            )
            return 1
    return 0
