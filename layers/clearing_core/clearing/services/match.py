"""match_orders: one price-time book per symbol over a batch of `orders.accepted`.

Exactly-once effects without transactions (see docs/architecture.md):
- each symbol's book snapshot records the highest orders.accepted offset it includes
  (`applied_offset`) and, per orders.new partition, the highest source offset it has seen
  (`watermarks`). A record at or below `applied_offset` is already in the book; a record whose
  source offset is at or below the watermark is a duplicate validate_orders re-produced after a crash;
- matching is a pure function of (snapshot, ordered input), and every trade id derives from the
  order's position in orders.new (`T-{partition}-{offset}-{seq}`, the `source` validate_orders
  stamps), so a redelivered record rewrites identical items and re-produces identical messages
  (consumers deduplicate by id), and a crash of validate_orders that re-produces orders.accepted
  at new offsets leaves the trade ids of a clean run;
- write order: order states and trades -> produce trades and events -> book snapshots ->
  checkpoint (conditional on the version read at the start: fences a stale invocation).
Warm invocations keep books in memory and reload a symbol only when the checkpoint names a
different snapshot version than the cached one.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, TypedDict

from clearing.domain import book_events as ev
from clearing.domain.book import OWNER_REPLACE, OrderBook, cancel_command, submit_command
from clearing.domain.refdata import Instrument, ReferenceData
from clearing.messages import (
    ACCEPTED_ORDER,
    AcceptedOrder,
    EventSource,
    ExecutedTrade,
    MessageError,
    OrderAccepted,
    OrderActionRejected,
    OrderCancelled,
    OrderEvent,
    OrderFilled,
    OrderReplaced,
    TradeSide,
    parse_record,
)
from clearing.ports import ItemStore, KafkaRecord, OutboundMessage, Publisher, ReferenceDataSource
from clearing.repositories.orders import OrderRecords
from clearing.repositories.state import BookSnapshots, SymbolBook
from clearing.repositories.trades import TradeRecords
from clearing.services.batch import BatchReport, Checkpoints, bounded_dead_letter, dumps
from clearing.topics import ORDERS_DEADLETTER, ORDERS_EVENTS, TRADES_EXECUTED

STAGE = "match_orders"

# owner list stored with each resting order: [member, account, client_order_id, reserve_ticks, quantity];
# quantity is the order's total quantity as the OMS set it (NEW, then REPLACE), tracked apart from the
# book's fills so that `clearing verify` can check filled + resting + cancelled == quantity.
_MEMBER, _ACCOUNT, _CLORDID, _RESERVE, _QUANTITY = 0, 1, 2, 3, 4
_RESERVE_AND_QUANTITY = slice(_RESERVE, _QUANTITY + 1)


def apply_accepted(
    book: OrderBook, messages: Sequence[AcceptedOrder]
) -> tuple[list[tuple[Any, ...]], list[int]]:
    """One symbol's accepted order actions as one batch: `(events, ends)` of `OrderBook.apply`.
    What match_orders runs per symbol per invocation, and what `clearing bench match` times."""
    return book.apply(accepted_commands(messages))


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """Pause CPython's cyclic garbage collector for one batch's matching and translation.

    Matching allocates several containers per order (events, owner lists, message dicts) that live
    until the batch is translated; with the collector on, every 700 allocations a collection walks
    them again (and promotes them, to be walked again in older generations). Nothing in matching or
    translation creates a reference cycle, so reference counting frees all of it when the batch is
    done; the collector is switched back on (if it was on) whatever happens, and anything cyclic
    made meanwhile (by other code) is collected at its next run."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class _EventIds(TypedDict):
    """What identifies an order event (the rest of clearing.messages.OrderEventHeader is its exposure)."""

    event_id: str
    order_id: str
    member_id: str
    symbol: str
    source: EventSource


def accepted_commands(messages: Sequence[AcceptedOrder]) -> list[tuple[Any, ...]]:
    """`OrderBook.apply` commands for accepted orders of one symbol, built without reading the book.

    NEW: the order with its owner list. CANCEL: the order id. REPLACE: the new price as given (the
    book keeps the order's priority when it equals the resting price), the new total quantity
    (None keeps it) and an owner *update* (the new reserve, and the new total quantity when one is
    given) that the book writes into a copy of the resting order's owner; the REPLACED event
    reports the owner before (`old_owner`) for the exposure release. This is what match_orders runs,
    and what `clearing bench match` times by default.
    """
    commands: list[tuple[Any, ...]] = []
    append = commands.append
    replace = OWNER_REPLACE  # built as a plain tuple: no call per REPLACE (apply checks the fields)
    for msg in messages:
        if msg["action"] == "REPLACE":
            quantity = msg["quantity"]
            update: tuple[Any, Any, Any]  # (new total quantity, owner index or slice, value(s))
            if quantity is None:
                update = (None, _RESERVE, msg["reserve_price_ticks"])
            else:
                update = (quantity, _RESERVE_AND_QUANTITY, (msg["reserve_price_ticks"], quantity))
            append((replace, msg["order_id"], msg["price_ticks"], update))
        elif msg["action"] == "NEW":
            member = msg["member_id"]
            quantity = msg["quantity"]
            append(
                submit_command(
                    msg["order_id"],
                    msg["side"],
                    msg["price_ticks"],
                    quantity,
                    type=msg["type"],
                    tif=msg["time_in_force"],
                    post_only=msg.get("post_only", False),
                    member=member,
                    stp=msg.get("stp"),
                    owner=[
                        member,
                        msg["account"],
                        msg["client_order_id"],
                        msg["reserve_price_ticks"],
                        quantity,
                    ],
                )
            )
        else:
            append(cancel_command(msg["order_id"]))
    return commands


# ------------------------------------------------------------------ reading orders.accepted
MAX_RECORD_BYTES = 16 * 1024  # validate_orders writes ~500 bytes an order
MALFORMED_ACCEPTED_ORDER = "MALFORMED_ACCEPTED_ORDER"
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"


def read_accepted_order(
    value: bytes | None, instruments: Mapping[str, Instrument]
) -> tuple[AcceptedOrder | None, str, str]:
    """(message, "", "") for a record the matcher can use, else (None, reason code, what is wrong).

    The record is parsed with the orders.accepted contract (clearing.messages: types of ids, keys and
    numbers, the source position); the book validates order terms itself (it answers REJECTED)."""
    try:
        msg: AcceptedOrder = parse_record(ACCEPTED_ORDER, value, MAX_RECORD_BYTES)
    except MessageError as exc:
        return None, MALFORMED_ACCEPTED_ORDER, str(exc)
    if msg["symbol"] not in instruments:
        return None, UNKNOWN_SYMBOL, f"unknown symbol {msg['symbol']}"
    return msg, "", ""


def dead_letter(record: KafkaRecord, reason: str, problem: str) -> OutboundMessage:
    return bounded_dead_letter(ORDERS_DEADLETTER, record, reason, problem)


class MatchOrders:
    def __init__(
        self, store: ItemStore, publisher: Publisher, refdata: ReferenceDataSource, writer: str = STAGE
    ):
        self.store = store
        self.publisher = publisher
        self.refdata = refdata
        self.writer = writer
        self.checkpoints = Checkpoints(store)
        self.orders = OrderRecords(store, writer)
        self.trades = TradeRecords(store, writer)
        self.snapshots = BookSnapshots(store, writer)
        self.books: dict[str, SymbolBook] = {}  # warm cache across invocations

    def match_partition(self, records: list[KafkaRecord]) -> BatchReport:
        topic, partition = records[0].topic, records[0].partition
        try:
            return self._match_partition(records, topic, partition)
        except Exception:
            self.books.clear()  # a failed run may have advanced cached books: reload from the store
            raise

    def _load_books(self, symbols: set[str], named_versions: dict[str, int]) -> None:
        missing = [
            s for s in symbols if s not in self.books or self.books[s].version != named_versions.get(s, 0)
        ]
        if not missing:
            return
        for s, stored in self.snapshots.load(missing).items():
            self.books[s] = stored or SymbolBook(OrderBook(s))

    def _match_partition(self, records: list[KafkaRecord], topic: str, partition: int) -> BatchReport:
        report = BatchReport(consumed=len(records))
        fresh, ck_offset, version, ck_item = self.checkpoints.unapplied(STAGE, records, report)
        if not fresh:
            return report
        refdata = self.refdata.current()
        messages: list[tuple[KafkaRecord, AcceptedOrder]] = []
        dead_letters: list[OutboundMessage] = []
        for r in fresh:
            msg, reason, problem = read_accepted_order(r.value, refdata.instruments)
            if msg is None:
                # a record no stage of ours wrote (a rogue producer): dead-lettered with its position,
                # counted as rejected; the batch goes on
                dead_letters.append(dead_letter(r, reason, problem))
                report.rejected += 1
                report.rejected_by_reason[reason] += 1
                continue
            messages.append((r, msg))
        symbols = {m["symbol"] for _, m in messages}
        self._load_books(symbols, ck_item.get("books", {}))

        states: dict[str, tuple[Any, ...]] = {}  # order id -> its latest state in this batch
        trades: list[ExecutedTrade] = []
        outputs: list[OutboundMessage] = []
        # redelivered records and duplicates are skipped record by record, before any command is built
        applied: list[tuple[KafkaRecord, AcceptedOrder]] = []
        by_symbol: dict[str, list[AcceptedOrder]] = {}
        for pair in messages:
            record, msg = pair
            symbol = msg["symbol"]
            sb = self.books[symbol]
            src = msg["source"]
            src_part = str(src["partition"])
            if record.offset <= sb.applied_offset or src["offset"] <= sb.watermarks.get(src_part, -1):
                report.skipped += 1
                continue
            sb.watermarks[src_part] = src["offset"]
            sb.applied_offset = record.offset
            applied.append(pair)
            pending = by_symbol.get(symbol)
            if pending is None:
                by_symbol[symbol] = [msg]
            else:
                pending.append(msg)
        touched = set(by_symbol)
        # one apply per symbol; the events of each record are split back with `ends`, in record order
        with cyclic_gc_paused():  # the batch's events are freed before it ends (see cyclic_gc_paused)
            results = {s: apply_accepted(self.books[s].book, msgs) for s, msgs in by_symbol.items()}
            self._translate_batch(applied, results, refdata, states, trades, outputs)
            report.accepted += len(applied)
            del results

        self.orders.save_states(states)
        self.trades.record_executed(trades)
        self.publisher.publish(outputs + dead_letters)
        for s in touched:
            self.books[s].version += 1
        snapshots = self.snapshots.save({s: self.books[s] for s in touched}, time.time())
        named = dict(ck_item.get("books", {}))
        named.update({s: self.books[s].version for s in touched})
        self.checkpoints.advance(
            STAGE, topic, partition, fresh[-1].offset, version, books=named, written_by=self.writer
        )
        report.counters["trades"] += len(trades)
        report.counters["dead_lettered"] += len(dead_letters)
        report.counters["items_written"] += len(states) + len(trades) + snapshots + 1
        return report

    def _translate_batch(
        self,
        applied: list[tuple[KafkaRecord, AcceptedOrder]],
        results: dict[str, tuple[list[tuple[Any, ...]], list[int]]],
        refdata: ReferenceData,
        states: dict[str, tuple[Any, ...]],
        trades: list[ExecutedTrade],
        outputs: list[OutboundMessage],
    ) -> None:
        """Each record's events (split back from its symbol's batch with `ends`), in record order."""
        cursor = dict.fromkeys(results, 0)
        for record, msg in applied:
            symbol = msg["symbol"]
            events, ends = results[symbol]
            i = cursor[symbol]
            cursor[symbol] = i + 1
            tick = refdata.instruments[symbol].tick_size
            self._translate(
                record, msg, events[ends[i - 1] if i else 0 : ends[i]], tick, states, trades, outputs
            )

    def _translate(
        self,
        record: KafkaRecord,
        msg: AcceptedOrder,
        events: list[tuple[Any, ...]],
        tick: Decimal,
        states: dict[str, tuple[Any, ...]],
        trades: list[ExecutedTrade],
        outputs: list[OutboundMessage],
    ) -> None:
        """The trades.executed and orders.events messages (and order states) of one record's events."""
        p, o = record.partition, record.offset
        topic = record.topic
        symbol = msg["symbol"]
        src = msg["source"]
        trade_base = f"T-{src['partition']}-{src['offset']}-"
        seq = -1
        last_trade_id = ""
        sent_at = msg.get("sent_at")
        for e in events:
            seq += 1
            kind, order_id, owner = e[0], e[1], e[2]
            if kind == ev.TRADE:
                _, taker_id, taker, maker_id, maker, price, qty, taker_side, _, _ = e
                last_trade_id = f"{trade_base}{seq}"
                taker_leg: TradeSide = {
                    "member_id": taker[_MEMBER],
                    "account": taker[_ACCOUNT],
                    "order_id": taker_id,
                }
                maker_leg: TradeSide = {
                    "member_id": maker[_MEMBER],
                    "account": maker[_ACCOUNT],
                    "order_id": maker_id,
                }
                buy, sell = (taker_leg, maker_leg) if taker_side == "BUY" else (maker_leg, taker_leg)
                trade: ExecutedTrade = {
                    "trade_id": last_trade_id,
                    "symbol": symbol,
                    "price_ticks": price,
                    "price": str(tick * price),
                    "quantity": qty,
                    "trade_date": (sent_at or "1970-01-01")[:10],
                    "executed_at": sent_at,
                    "aggressor": taker_side,
                    "buy": buy,
                    "sell": sell,
                    "source": {"topic": topic, "partition": p, "offset": o, "seq": seq},
                }
                trades.append(trade)
                outputs.append(OutboundMessage(TRADES_EXECUTED, symbol.encode(), dumps(trade)))
                continue
            # what every order event carries (clearing.messages.OrderEventHeader, less the exposure)
            member = owner[_MEMBER] if owner else msg["member_id"]
            ids: _EventIds = {
                "event_id": f"E-{p}-{o}-{seq}",
                "order_id": order_id,
                "member_id": member,
                "symbol": symbol,
                "source": {"topic": topic, "partition": p, "offset": o, "seq": seq},
            }
            # exposure_delta: the change of open exposure (ticks x shares at the reserve price) x tick
            event: OrderEvent
            if kind == ev.PARTIALLY_FILLED or kind == ev.FILLED:
                _, _, _, filled, remaining, last_price, last_qty = e
                fill: OrderFilled = {
                    "type": kind,
                    **ids,
                    "exposure_delta": str(tick * -(owner[_RESERVE] * last_qty)),
                    "filled_qty": filled,
                    "remaining_qty": remaining,
                    "last_price_ticks": last_price,
                    "last_qty": last_qty,
                    "trade_id": last_trade_id,
                }
                event = fill
                self._state(states, order_id, owner, symbol, kind, filled, remaining, 0, record)
            elif kind == ev.CANCELLED:
                _, _, _, qty, reason, filled = e
                cancel: OrderCancelled = {
                    "type": kind,
                    **ids,
                    "exposure_delta": str(tick * -(owner[_RESERVE] * qty)) if qty else None,
                    "cancelled_qty": qty,
                    "reason": reason,
                    "filled_qty": filled,
                    "remaining_qty": 0,
                }
                event = cancel
                self._state(states, order_id, owner, symbol, "CANCELLED", filled, 0, qty, record, reason)
            elif kind == ev.ACCEPTED:
                _, _, _, side, price, qty, filled = e
                rest: OrderAccepted = {
                    "type": kind,
                    **ids,
                    "exposure_delta": None,
                    "remaining_qty": qty,
                    "price_ticks": price,
                    "side": side,
                }
                event = rest
                self._state(states, order_id, owner, symbol, "RESTING", filled, qty, 0, record)
            elif kind == ev.REPLACED:
                # the event says what the book held after the replace (the batch has moved on since)
                _, _, _, price, qty, kept, old_price, old_qty, old_owner, filled, resting = e
                if not resting:
                    filled = 0  # a crossing replace that filled or STP-cancelled the order
                # exposure follows the open quantity at the reserve price
                exposure = owner[_RESERVE] * qty - old_owner[_RESERVE] * old_qty
                amend: OrderReplaced = {
                    "type": kind,
                    **ids,
                    "exposure_delta": str(tick * exposure) if exposure else None,
                    "price_ticks": price,
                    "remaining_qty": qty,
                    "priority_kept": kept,
                    "filled_qty": filled,
                    "client_order_id": msg["client_order_id"],
                }
                event = amend
                if resting:
                    self._state(
                        states,
                        order_id,
                        owner,
                        symbol,
                        "PARTIALLY_FILLED" if filled else "RESTING",
                        filled,
                        qty,
                        0,
                        record,
                    )
            elif kind == ev.REJECTED:
                _, _, _, reason = e
                released = None
                if msg["action"] == "NEW":
                    released = str(tick * -(msg["reserve_price_ticks"] * msg["quantity"]))
                    self._state(
                        states,
                        order_id,
                        [
                            msg["member_id"],
                            msg.get("account"),
                            msg["client_order_id"],
                            msg["reserve_price_ticks"],
                            msg["quantity"],
                        ],
                        symbol,
                        "REJECTED",
                        0,
                        0,
                        msg["quantity"],
                        record,
                        reason,
                    )
                refusal: OrderActionRejected = {
                    "type": kind,
                    **ids,
                    "exposure_delta": released,
                    "reason": reason,
                    "action": msg["action"],
                    "client_order_id": msg["client_order_id"],
                }
                event = refusal
            else:
                continue
            outputs.append(OutboundMessage(ORDERS_EVENTS, member.encode(), dumps(event)))

    @staticmethod
    def _state(
        states: dict[str, tuple[Any, ...]],
        order_id: str,
        owner: list[Any],
        symbol: str,
        status: str,
        filled: int,
        remaining: int,
        cancelled: int,
        record: KafkaRecord,
        reason: str | None = None,
    ) -> None:
        """Record the order's latest state in this batch; the item is built once, for the last one."""
        states[order_id] = (
            owner[_MEMBER],
            owner[_ACCOUNT],
            owner[_QUANTITY],
            symbol,
            status,
            filled,
            remaining,
            cancelled,
            record,
            reason,
        )
