"""The per-call match_orders (before issue 15 item 6), kept as the reference the batched one must equal.

`ReferenceMatchOrders` is `MatchOrders` with the per-record path of commit 3ae7f00: one
`submit` / `cancel` / `replace` call per accepted order, the REPLACE built from the resting order read
from the book (`book.order`) at the moment it is applied, and `_translate` reading `filled` from the
book after each call. Everything else (reading records, checkpoints, snapshots, item building) is
inherited, so a test that feeds the same records to both compares only the matching path.

Event tuples may have grown fields since: this code reads the fields it knew by position (slices),
so added trailing fields do not change what it does.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from clearing.domain import book_events as ev
from clearing.domain.book import OrderBook
from clearing.ports import KafkaRecord, OutboundMessage
from clearing.services.batch import BatchReport, dumps
from clearing.services.match import (
    STAGE,
    MatchOrders,
    dead_letter,
    read_accepted_order,
)
from clearing.topics import ORDERS_EVENTS, TRADES_EXECUTED
from clearing_tools.bench.match import per_call_apply

_MEMBER, _ACCOUNT, _CLORDID, _RESERVE, _QUANTITY = 0, 1, 2, 3, 4


class ReferenceMatchOrders(MatchOrders):
    """match_orders as it was: the per-call book API, the book read between records."""

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
                dead_letters.append(dead_letter(r, reason, problem))
                report.rejected += 1
                report.rejected_by_reason[reason] += 1
                continue
            messages.append((r, msg))
        symbols = {m["symbol"] for _, m in messages}
        self._load_books(symbols, ck_item.get("books", {}))

        states: dict[str, tuple[Any, ...]] = {}
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
            events, old_reserve = per_call_apply(sb.book, msg)  # the per-call book use, as it was
            self._reference_translate(
                record, msg, events, sb.book, tick, old_reserve, states, trades, outputs
            )
            report.accepted += 1

        # the writes as they were, through the repositories that now own the items (same items, same calls)
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

    def _reference_translate(
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
            exposure = 0
            body = None
            if kind == ev.TRADE:
                _, taker_id, taker, maker_id, maker, price, qty, taker_side, _, _ = e[:10]
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
                _, _, _, filled, remaining, last_price, last_qty = e[:7]
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
                _, _, _, qty, reason, filled = e[:6]
                exposure = -(owner[_RESERVE] * qty)
                body = {"cancelled_qty": qty, "reason": reason, "filled_qty": filled, "remaining_qty": 0}
                self._state(states, order_id, owner, symbol, "CANCELLED", filled, 0, qty, record, reason)
            elif kind == ev.ACCEPTED:
                _, _, _, side, price, qty = e[:6]
                body = {"remaining_qty": qty, "price_ticks": price, "side": side}
                r = book.order(order_id)
                self._state(
                    states, order_id, owner, symbol, "RESTING", r["filled"] if r else 0, qty, 0, record
                )
            elif kind == ev.REPLACED:
                _, _, _, price, qty, kept, old_price, old_qty = e[:8]
                r = book.order(order_id)
                filled = r["filled"] if r else 0
                assert old_reserve is not None
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
                _, _, _, reason = e[:4]
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
