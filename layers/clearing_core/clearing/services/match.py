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

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from clearing.domain import book_events as ev
from clearing.domain.book import OrderBook
from clearing.domain.refdata import Instrument
from clearing.messages import ACCEPTED_ORDER, AcceptedOrder, MessageError, parse
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
    if value is None:
        return None, MALFORMED_ACCEPTED_ORDER, "empty record (no value)"
    if len(value) > MAX_RECORD_BYTES:
        return (
            None,
            MALFORMED_ACCEPTED_ORDER,
            f"record is {len(value)} bytes; the limit is {MAX_RECORD_BYTES}",
        )
    try:
        msg: AcceptedOrder = parse(ACCEPTED_ORDER, value)
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
        messages: list[tuple[KafkaRecord, Any]] = []  # typed AcceptedOrder; the book reads it by key
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
        trades: list[dict[str, Any]] = []
        outputs: list[OutboundMessage] = []
        touched: set[str] = set()
        for record, msg in messages:
            sb = self.books[msg["symbol"]]
            src = msg["source"]
            src_part = str(src["partition"])
            if record.offset <= sb.applied_offset or src["offset"] <= sb.watermarks.get(src_part, -1):
                report.skipped += 1
                continue
            sb.watermarks[src_part] = src["offset"]
            sb.applied_offset = record.offset
            touched.add(msg["symbol"])
            tick = refdata.instruments[msg["symbol"]].tick_size
            events, old_reserve = self._apply(sb.book, msg)
            self._translate(record, msg, events, sb.book, tick, old_reserve, states, trades, outputs)
            report.accepted += 1

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

    @staticmethod
    def _apply(book: OrderBook, msg: dict[str, Any]) -> tuple[list[tuple[Any, ...]], int | None]:
        """Run one accepted order action; also returns the reserve price in force before a replace."""
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
        old_reserve = owner[_RESERVE]
        owner[_RESERVE] = msg["reserve_price_ticks"]
        if msg.get("quantity") is not None:
            owner[_QUANTITY] = msg["quantity"]
        new_price = msg["price_ticks"] if msg["price_ticks"] != resting["price"] else None
        return book.replace(
            msg["order_id"], new_price, new_total_qty=msg.get("quantity"), owner=owner
        ), old_reserve

    def _translate(
        self,
        record: KafkaRecord,
        msg: dict[str, Any],
        events: list[tuple[Any, ...]],
        book: OrderBook,
        tick: Decimal,
        old_reserve: int | None,
        states: dict[str, tuple[Any, ...]],
        trades: list[dict[str, Any]],
        outputs: list[OutboundMessage],
    ) -> None:
        p, o = record.partition, record.offset
        topic = record.topic
        symbol = msg["symbol"]
        src = msg["source"]
        trade_base = f"T-{src['partition']}-{src['offset']}-"
        seq = 0
        last_trade_id = None
        sent_at = msg.get("sent_at")
        for e in events:
            kind, order_id, owner = e[0], e[1], e[2]
            exposure = 0  # change of open exposure in ticks x shares; one Decimal multiply below
            body = None
            if kind == ev.TRADE:
                _, taker_id, taker, maker_id, maker, price, qty, taker_side, _, _ = e
                last_trade_id = f"{trade_base}{seq}"
                taker_leg = {"member_id": taker[_MEMBER], "account": taker[_ACCOUNT], "order_id": taker_id}
                maker_leg = {"member_id": maker[_MEMBER], "account": maker[_ACCOUNT], "order_id": maker_id}
                buy, sell = (taker_leg, maker_leg) if taker_side == "BUY" else (maker_leg, taker_leg)
                trade = {
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
            elif kind == ev.PARTIALLY_FILLED or kind == ev.FILLED:
                _, _, _, filled, remaining, last_price, last_qty = e
                exposure = -(owner[_RESERVE] * last_qty)
                body = {
                    "filled_qty": filled,
                    "remaining_qty": remaining,
                    "last_price_ticks": last_price,
                    "last_qty": last_qty,
                    "trade_id": last_trade_id,
                }
                self._state(states, order_id, owner, symbol, kind, filled, remaining, 0, record)
            elif kind == ev.CANCELLED:
                _, _, _, qty, reason, filled = e
                exposure = -(owner[_RESERVE] * qty)
                body = {"cancelled_qty": qty, "reason": reason, "filled_qty": filled, "remaining_qty": 0}
                self._state(states, order_id, owner, symbol, "CANCELLED", filled, 0, qty, record, reason)
            elif kind == ev.ACCEPTED:
                _, _, _, side, price, qty = e
                body = {"remaining_qty": qty, "price_ticks": price, "side": side}
                r = book.order(order_id)
                self._state(
                    states, order_id, owner, symbol, "RESTING", r["filled"] if r else 0, qty, 0, record
                )
            elif kind == ev.REPLACED:
                _, _, _, price, qty, kept, old_price, old_qty = e
                r = book.order(order_id)
                filled = r["filled"] if r else 0
                # exposure follows the open quantity at the reserve price
                exposure = owner[_RESERVE] * qty - old_reserve * old_qty
                body = {
                    "price_ticks": price,
                    "remaining_qty": qty,
                    "priority_kept": kept,
                    "filled_qty": filled,
                    "client_order_id": msg["client_order_id"],
                }
                if r is not None:
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
                if msg["action"] == "NEW":
                    exposure = -(msg["reserve_price_ticks"] * msg["quantity"])
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
                body = {"reason": reason, "action": msg["action"], "client_order_id": msg["client_order_id"]}
            if body is not None:
                member = owner[_MEMBER] if owner else msg["member_id"]
                body["event_id"] = f"E-{p}-{o}-{seq}"
                body["type"] = kind
                body["order_id"] = order_id
                body["member_id"] = member
                body["symbol"] = symbol
                body["exposure_delta"] = str(tick * exposure) if exposure else None
                body["source"] = {"topic": topic, "partition": p, "offset": o, "seq": seq}
                outputs.append(OutboundMessage(ORDERS_EVENTS, member.encode(), dumps(body)))
            seq += 1

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
