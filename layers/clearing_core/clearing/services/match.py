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
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeGuard

import orjson

from clearing.domain import book_events as ev
from clearing.domain.book import OWNER_REPLACE, OrderBook, cancel_command, submit_command
from clearing.domain.bounded import MAX_ID
from clearing.domain.refdata import Instrument
from clearing.ports import ItemStore, KafkaRecord, OutboundMessage, Publisher, ReferenceDataSource
from clearing.services import keys
from clearing.services.batch import BatchReport, Checkpoints, bounded_dead_letter, dumps, loads
from clearing.topics import ORDERS_DEADLETTER, ORDERS_EVENTS, TRADES_EXECUTED

STAGE = "match_orders"

# owner list stored with each resting order: [member, account, client_order_id, reserve_ticks, quantity];
# quantity is the order's total quantity as the OMS set it (NEW, then REPLACE), tracked apart from the
# book's fills so that `clearing verify` can check filled + resting + cancelled == quantity.
_MEMBER, _ACCOUNT, _CLORDID, _RESERVE, _QUANTITY = 0, 1, 2, 3, 4
_RESERVE_AND_QUANTITY = slice(_RESERVE, _QUANTITY + 1)


def accepted_commands(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
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
        action = msg["action"]
        if action == "REPLACE":
            quantity = msg.get("quantity")
            update: tuple[Any, Any, Any]  # (new total quantity, owner index or slice, value(s))
            if quantity is None:
                update = (None, _RESERVE, msg["reserve_price_ticks"])
            else:
                update = (quantity, _RESERVE_AND_QUANTITY, (msg["reserve_price_ticks"], quantity))
            append((replace, msg["order_id"], msg["price_ticks"], update))
        elif action == "NEW":
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


@dataclass
class SymbolBook:
    book: OrderBook
    version: int = 0
    applied_offset: int = -1
    watermarks: dict[str, int] = field(default_factory=dict)


# A DynamoDB item holds at most 400 KB: a deep book's snapshot is split into chunk items keyed by the
# snapshot version (written first; the head item, written last, names the version and chunk count),
# so a crash between chunk writes never leaves a torn snapshot. Superseded chunks expire by TTL.
CHUNK_BYTES = 300_000
CHUNK_TTL_SECONDS = 2 * 24 * 3600


def encode_book(state: SymbolBook) -> bytes:
    return zlib.compress(orjson.dumps(state.book.snapshot()), 1)


def snapshot_items(symbol: str, state: SymbolBook, writer: str, now: float) -> list[dict[str, Any]]:
    """The head item of a symbol's snapshot, preceded by its chunk items when it is too big for one."""
    blob = encode_book(state)
    pk, sk = keys.book_key(symbol)
    head = {
        "pk": pk,
        "sk": sk,
        "symbol": symbol,
        "version": state.version,
        "applied_offset": state.applied_offset,
        "watermarks": state.watermarks,
        "resting_orders": len(state.book),
        "written_by": writer,
    }
    if len(blob) <= CHUNK_BYTES:
        return [{**head, "book": blob, "chunks": 0}]
    parts = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)]
    chunks = [
        {"pk": pk, "sk": f"v{state.version}#c{n}", "book": part, "expires_at": int(now) + CHUNK_TTL_SECONDS}
        for n, part in enumerate(parts)
    ]
    return [*chunks, {**head, "chunks": len(parts)}]


def decode_book(item: dict[str, Any], store: ItemStore | None = None) -> SymbolBook:
    blob: Any = item.get("book")
    if item.get("chunks"):
        wanted = [(item["pk"], f"v{item['version']}#c{n}") for n in range(int(item["chunks"]))]
        found = store.get_many(  # type: ignore[union-attr]  # a chunked book is decoded with its store
            keys.STATE, wanted
        )
        blob = b"".join(found[k]["book"] for k in wanted)
    book = OrderBook.restore(orjson.loads(zlib.decompress(blob)))
    return SymbolBook(
        book, int(item["version"]), int(item["applied_offset"]), dict(item.get("watermarks", {}))
    )


# ------------------------------------------------------------------ reading orders.accepted
MAX_RECORD_BYTES = 16 * 1024  # validate_orders writes ~500 bytes an order
MAX_NUMBER = (
    10**18
)  # ticks, shares: above anything validate accepts (price < 1e9 on a tick >= 1e-8, quantity <= 1e9), far below DynamoDB's 38 digits
MALFORMED_ACCEPTED_ORDER = "MALFORMED_ACCEPTED_ORDER"
UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
_ACTIONS = frozenset(("NEW", "CANCEL", "REPLACE"))
_SIDES = frozenset(("BUY", "SELL"))


def _text(value: Any, limit: int = MAX_ID) -> TypeGuard[str]:
    return type(value) is str and 0 < len(value) <= limit


def _number(value: Any, optional: bool = False) -> bool:
    if value is None:
        return optional
    return type(value) is int and 0 < value <= MAX_NUMBER


def _shape_problem(msg: Any) -> str | None:
    """What makes a decoded orders.accepted message unusable by the matcher, or None.

    The book validates order terms itself (it answers REJECTED); this checks what this service reads
    unguarded: the types of ids, keys and numbers, and that the source position is there."""
    if type(msg) is not dict:
        return "not a JSON object"
    action = msg.get("action")
    if action not in _ACTIONS:
        return "action must be NEW, CANCEL or REPLACE"
    for name in ("symbol", "member_id", "client_order_id"):
        if not _text(msg.get(name)):
            return f"{name} must be a string of 1-{MAX_ID} characters"
    order_id = msg.get("order_id")
    if not _text(order_id, 2 * MAX_ID + 1) or ":" not in order_id:
        return "order_id must be 'member_id:client_order_id'"
    src = msg.get("source")
    if (
        type(src) is not dict
        or type(src.get("partition")) is not int
        or type(src.get("offset")) is not int
        or src["partition"] < 0
        or src["offset"] < 0
    ):
        return "source must name the orders.new partition and offset"
    sent_at = msg.get("sent_at")
    if sent_at is not None and not _text(sent_at):
        return "sent_at must be a string"
    if action == "NEW":
        if not _text(msg.get("account")) or msg.get("side") not in _SIDES:
            return "a NEW needs an account and a side BUY or SELL"
        if not _number(msg.get("quantity")) or not _number(msg.get("reserve_price_ticks")):
            return f"quantity and reserve_price_ticks must be integers in 1..{MAX_NUMBER}"
        if not _number(msg.get("price_ticks"), optional=True):
            return f"price_ticks must be null or an integer in 1..{MAX_NUMBER}"
        if type(msg.get("type")) is not str or type(msg.get("time_in_force")) is not str:
            return "type and time_in_force must be strings"
        if type(msg.get("post_only", False)) is not bool or not (msg.get("stp") is None or _text(msg["stp"])):
            return "post_only must be a boolean and stp null or a string"
    elif action == "REPLACE":
        if not _number(msg.get("reserve_price_ticks")):
            return f"reserve_price_ticks must be an integer in 1..{MAX_NUMBER}"
        if not _number(msg.get("price_ticks"), optional=True) or not _number(
            msg.get("quantity"), optional=True
        ):
            return f"price_ticks and quantity must be null or integers in 1..{MAX_NUMBER}"
    return None


def read_accepted_order(
    value: bytes | None, instruments: Mapping[str, Instrument]
) -> tuple[dict[str, Any] | None, str, str]:
    """(message, "", "") for a record the matcher can use, else (None, reason code, what is wrong)."""
    if value is None:
        return None, MALFORMED_ACCEPTED_ORDER, "empty record (no value)"
    if len(value) > MAX_RECORD_BYTES:
        return (
            None,
            MALFORMED_ACCEPTED_ORDER,
            f"record is {len(value)} bytes; the limit is {MAX_RECORD_BYTES}",
        )
    try:
        msg = loads(value)
    except (ValueError, TypeError) as exc:
        return None, MALFORMED_ACCEPTED_ORDER, f"not JSON: {exc}"
    problem = _shape_problem(msg)
    if problem is not None:
        return None, MALFORMED_ACCEPTED_ORDER, problem
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
        found = self.store.get_many(keys.STATE, [keys.book_key(s) for s in missing])
        for s in missing:
            item = found.get(keys.book_key(s))
            self.books[s] = decode_book(item, self.store) if item else SymbolBook(OrderBook(s))

    def _match_partition(self, records: list[KafkaRecord], topic: str, partition: int) -> BatchReport:
        report = BatchReport(consumed=len(records))
        fresh, ck_offset, version, ck_item = self.checkpoints.unapplied(STAGE, records, report)
        if not fresh:
            return report
        refdata = self.refdata.current()
        messages = []
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
        # redelivered records and duplicates are skipped record by record, before any command is built
        applied: list[tuple[KafkaRecord, dict[str, Any]]] = []
        by_symbol: dict[str, list[dict[str, Any]]] = {}
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
        results = {s: self._apply(self.books[s].book, msgs) for s, msgs in by_symbol.items()}
        cursor = dict.fromkeys(by_symbol, 0)
        for record, msg in applied:
            symbol = msg["symbol"]
            events, ends = results[symbol]
            i = cursor[symbol]
            cursor[symbol] = i + 1
            tick = refdata.instruments[symbol].tick_size
            self._translate(
                record, msg, events[ends[i - 1] if i else 0 : ends[i]], tick, states, trades, outputs
            )
            report.accepted += 1

        trade_items = []
        for t in trades:
            pk, sk = keys.trade_key(t["trade_id"], "EXECUTED")
            trade_items.append(
                {
                    "pk": pk,
                    "sk": sk,
                    **t,
                    "gsi1pk": t["symbol"],
                    "gsi1sk": f"{t['executed_at']}#{t['trade_id']}",
                    "written_by": self.writer,
                }
            )
        self.store.put_many(keys.ORDERS, [self._state_item(order_id, st) for order_id, st in states.items()])
        self.store.put_many(keys.TRADES, trade_items)
        self.publisher.publish(outputs + dead_letters)
        snapshots, heads = [], []
        now = time.time()
        for s in touched:
            sb = self.books[s]
            sb.version += 1
            *chunks, head = snapshot_items(s, sb, self.writer, now)
            snapshots.extend(chunks)
            heads.append(head)
        self.store.put_many(keys.STATE, snapshots)  # chunks of deep books first, then the heads
        self.store.put_many(keys.STATE, heads)
        snapshots += heads
        named = dict(ck_item.get("books", {}))
        named.update({s: self.books[s].version for s in touched})
        self.checkpoints.advance(
            STAGE, topic, partition, fresh[-1].offset, version, books=named, written_by=self.writer
        )
        report.counters["trades"] += len(trades)
        report.counters["dead_lettered"] += len(dead_letters)
        report.counters["items_written"] += len(states) + len(trade_items) + len(snapshots) + 1
        return report

    @staticmethod
    def _apply(book: OrderBook, messages: list[dict[str, Any]]) -> tuple[list[tuple[Any, ...]], list[int]]:
        """Run one symbol's accepted order actions as one batch: (events, ends) of `OrderBook.apply`."""
        return book.apply(accepted_commands(messages))

    def _translate(
        self,
        record: KafkaRecord,
        msg: dict[str, Any],
        events: list[tuple[Any, ...]],
        tick: Decimal,
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
                _, _, _, side, price, qty, filled = e
                body = {"remaining_qty": qty, "price_ticks": price, "side": side}
                self._state(states, order_id, owner, symbol, "RESTING", filled, qty, 0, record)
            elif kind == ev.REPLACED:
                # the event says what the book held after the replace (the batch has moved on since)
                _, _, _, price, qty, kept, old_price, old_qty, old_owner, filled, resting = e
                if not resting:
                    filled = 0  # a crossing replace that filled or STP-cancelled the order
                # exposure follows the open quantity at the reserve price
                exposure = owner[_RESERVE] * qty - old_owner[_RESERVE] * old_qty
                body = {
                    "price_ticks": price,
                    "remaining_qty": qty,
                    "priority_kept": kept,
                    "filled_qty": filled,
                    "client_order_id": msg["client_order_id"],
                }
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

    def _state_item(self, order_id: str, state: tuple[Any, ...]) -> dict[str, Any]:
        member, account, quantity, symbol, status, filled, remaining, cancelled, record, reason = state
        clordid = order_id.split(":", 1)[1]
        if status == ev.PARTIALLY_FILLED or status == ev.FILLED:
            status = "FILLED" if remaining == 0 else "PARTIALLY_FILLED"
        elif status == "RESTING" and filled:
            status = "PARTIALLY_FILLED"
        pk, sk = keys.order_state_key(member, clordid)
        return {
            "pk": pk,
            "sk": sk,
            "kind": "STATE",
            "order_id": order_id,
            "member_id": member,
            "account": account,
            "client_order_id": clordid,
            "symbol": symbol,
            "status": status,
            "filled_qty": filled,
            "remaining_qty": remaining,
            "cancelled_qty": cancelled,
            "quantity": quantity,
            "reason": reason,
            "last_src": record.position,
            "gsi1pk": symbol,
            "gsi1sk": order_id,
            "written_by": self.writer,
        }
