"""clear_trades: novation, positions and multilateral net obligations from `trades.executed`.

trades.executed is keyed by symbol, so every position and obligation item (member, symbol, ...)
has exactly one writer partition. Exactly-once effects without transactions:
- each position / obligation item records `applied_offset`, the highest trades.executed offset
  whose legs it includes; a redelivered trade at or below it is not applied again to that item;
- each symbol's clearing state holds a watermark of the trade's source position (orders.accepted
  offset, seq): a trade match_orders re-produced after a crash (same trade_id, new offset) is a
  duplicate and is skipped;
- cleared trades (legs inside the trade item) are idempotent puts keyed by trade id;
- write order: cleared trades and dead letters -> positions and obligations -> clearing state ->
  checkpoint (conditional).
A trade naming an unknown member or symbol goes to `trades.deadletter` with the reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import date

from clearing.domain import clearing as novation
from clearing.domain import netting
from clearing.domain.bounded import MAX_ID, clip, payload_fields
from clearing.domain.clearing import ClearingRejection
from clearing.messages import EXECUTED_TRADE, ExecutedTrade, MessageError, TradeDeadLetter, parse
from clearing.ports import ItemStore, KafkaRecord, Key, OutboundMessage, Publisher, ReferenceDataSource
from clearing.services import keys
from clearing.services.batch import BatchReport, Checkpoints, dumps
from clearing.topics import TRADES_DEADLETTER

STAGE = "clear_trades"


class ClearTrades:
    def __init__(
        self,
        store: ItemStore,
        publisher: Publisher,
        refdata: ReferenceDataSource,
        writer: str = STAGE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.refdata = refdata
        self.writer = writer
        self.clock = clock
        self.checkpoints = Checkpoints(store)

    def clear_partition(self, records: list[KafkaRecord]) -> BatchReport:
        report = BatchReport(consumed=len(records))
        topic, partition = records[0].topic, records[0].partition
        # decoded before the checkpoint is read: the symbols' clearing states come in the same request
        parsed = [(r, *read_trade(r.value)) for r in records]
        wanted = {keys.clearing_state_key(s) for _, t, s, _ in parsed if t is not None}
        fresh, ck_offset, version, _, found = self.checkpoints.unapplied_with(STAGE, records, report, wanted)
        if not fresh:
            return report
        refdata = self.refdata.current()
        if len(fresh) < len(records):
            parsed = [p for p in parsed if p[0].offset > ck_offset]
        symbols = {s for _, t, s, _ in parsed if t is not None}
        marks = {s: found.get(keys.clearing_state_key(s), {}) for s in symbols}

        cleared_items, dead_letters, legs_by_offset = [], [], []
        now_ms = int(self.clock() * 1000)
        for record, trade, symbol, src in parsed:
            if trade is None:  # unreadable: `symbol` says what is wrong with it
                dead_letters.append(self._dead_letter(record, None, "MALFORMED_TRADE", symbol))
                report.rejected += 1
                report.rejected_by_reason["MALFORMED_TRADE"] += 1
                continue
            mark = marks[symbol]
            pos: tuple[int, int] = src  # type: ignore[assignment]  # read_trade gives every trade its position
            if record.offset <= int(mark.get("applied_offset", -1)) or list(pos) <= list(
                mark.get("watermark", [-1, -1])
            ):
                report.skipped += 1
                continue
            mark["applied_offset"], mark["watermark"] = record.offset, list(pos)
            result = novation.novate(trade, refdata)
            if isinstance(result, ClearingRejection):
                dead_letters.append(self._dead_letter(record, trade, result.reason_code, result.message))
                report.rejected += 1
                report.rejected_by_reason[result.reason_code] += 1
                continue
            pk, sk = keys.trade_key(result.trade_id, "CLEARED")
            cleared_items.append(
                {
                    "pk": pk,
                    "sk": sk,
                    **result.to_dict(),
                    "price": trade["price"],
                    "quantity": trade["quantity"],
                    "executed_at": trade.get("executed_at"),
                    "buy_member": result.buy_leg.member_id,
                    "sell_member": result.sell_leg.member_id,
                    "src": record.position,
                    "cleared_at": now_ms,
                    "gsi1pk": f"CLEARED#{result.symbol}",
                    "gsi1sk": f"{trade.get('executed_at')}#{result.trade_id}",
                    "written_by": self.writer,
                }
            )
            legs_by_offset.append((record.offset, result.legs))
            report.accepted += 1
            report.counters["legs"] += 2
            report.counters["cleared_notional"] += int(result.buy_leg.notional)

        self.store.put_many(keys.TRADES, cleared_items)
        self.publisher.publish(dead_letters)
        self._apply_to_positions_and_obligations(legs_by_offset, f"{topic}/{partition}")
        state_items = []
        for s in symbols:
            if "applied_offset" in marks[s]:
                pk, sk = keys.clearing_state_key(s)
                state_items.append(
                    {
                        "pk": pk,
                        "sk": sk,
                        "symbol": s,
                        "applied_offset": marks[s]["applied_offset"],
                        "watermark": marks[s]["watermark"],
                        "written_by": self.writer,
                    }
                )
        self.store.put_many(keys.STATE, state_items)
        self.checkpoints.advance(STAGE, topic, partition, fresh[-1].offset, version, written_by=self.writer)
        report.counters["dead_lettered"] += len(dead_letters)
        report.counters["trades_cleared"] += len(cleared_items)
        return report

    def _apply_to_positions_and_obligations(
        self, legs_by_offset: Sequence[tuple[int, tuple[novation.ClearedLeg, ...]]], source: str
    ) -> None:
        if not legs_by_offset:
            return
        iso_dates: dict[date, str] = {}  # a batch has a handful of settlement dates: format each once
        keyed = []
        for offset, legs in legs_by_offset:
            for leg in legs:
                day = iso_dates.get(leg.settlement_date)
                if day is None:
                    day = iso_dates[leg.settlement_date] = leg.settlement_date.isoformat()
                keyed.append(
                    (
                        offset,
                        leg,
                        keys.position_key(leg.member_id, leg.symbol, leg.account, day),
                        keys.obligation_key(leg.member_id, leg.symbol, day),
                    )
                )
        stored_pos = self.store.get_many(keys.POSITIONS, {pk for _, _, pk, _ in keyed})
        stored_obl = self.store.get_many(keys.OBLIGATIONS, {ok for _, _, _, ok in keyed})
        positions = {
            k: (novation.Position.from_dict(v), int(v["applied_offset"])) for k, v in stored_pos.items()
        }
        obligations = {
            k: (netting.NetObligation.from_dict(v), int(v["applied_offset"])) for k, v in stored_obl.items()
        }
        new_pos: dict[Key, tuple[novation.Position, int]] = {}
        new_obl: dict[Key, tuple[netting.NetObligation, int]] = {}
        for offset, leg, pk, ok in keyed:
            stored, applied = positions.get(pk, (None, -1))
            if offset > applied:  # not yet in the stored item (single writer: this partition)
                current = new_pos[pk][0] if pk in new_pos else stored
                new_pos[pk] = (novation.position_after_leg(current, leg), offset)
            stored_o, applied = obligations.get(ok, (None, -1))
            if offset > applied:
                current_o = new_obl[ok][0] if ok in new_obl else stored_o
                new_obl[ok] = (netting.obligation_after_leg(current_o, leg), offset)
        self.store.put_many(
            keys.POSITIONS,
            [
                {
                    "pk": k[0],
                    "sk": k[1],
                    **p.to_dict(),
                    "applied_offset": o,
                    "last_src": f"{source}/{o}",
                    "written_by": self.writer,
                }
                for k, (p, o) in new_pos.items()
            ],
        )
        self.store.put_many(
            keys.OBLIGATIONS,
            [
                {
                    "pk": k[0],
                    "sk": k[1],
                    **ob.to_dict(),
                    "applied_offset": o,
                    "last_src": f"{source}/{o}",
                    "gsi1pk": ob.member_id,
                    "gsi1sk": f"{ob.settlement_date.isoformat()}#{ob.symbol}",
                    "written_by": self.writer,
                }
                for k, (ob, o) in new_obl.items()
            ],
        )

    def _dead_letter(
        self, record: KafkaRecord, trade: ExecutedTrade | None, reason: str, message: str
    ) -> OutboundMessage:
        """Bounded whatever the record: reason, clipped text, a prefix of the record with its length and
        SHA-256, and its position (which holds the full bytes). `trade` is the decoded trade when the
        record is small enough to be kept whole (the prefix then holds all of it too)."""
        original = payload_fields(record.value)
        symbol = trade.get("symbol") if isinstance(trade, dict) else None
        symbol = clip(symbol, MAX_ID) if isinstance(symbol, str) and symbol else None
        trade_id = trade.get("trade_id") if isinstance(trade, dict) else None
        body: TradeDeadLetter = {
            "deadletter_id": f"D-{record.topic}-{record.partition}-{record.offset}",
            "reason": reason,
            "message": clip(message),
            "trade_id": clip(trade_id, MAX_ID) if isinstance(trade_id, str) else None,
            "symbol": symbol,
            "trade": trade if not original["original_truncated"] else None,
            "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
            **original,
        }
        return OutboundMessage(TRADES_DEADLETTER, (symbol or "UNKNOWN").encode(), dumps(body))


MAX_RECORD_BYTES = 16 * 1024  # match_orders writes ~400 bytes a trade


def read_trade(value: bytes | None) -> tuple[ExecutedTrade | None, str, tuple[int, int] | None]:
    """(trade, symbol, source (offset, seq)) of a trades.executed record, or (None, what is wrong, None).

    The record is parsed with the trades.executed contract (clearing.messages); the trade's terms are
    the domain's (clearing.domain.clearing.novate), which dead-letters a trade it cannot clear."""
    if value is None:
        return None, "empty record (no value)", None
    if len(value) > MAX_RECORD_BYTES:
        return None, f"record is {len(value)} bytes; the limit is {MAX_RECORD_BYTES}", None
    try:
        trade: ExecutedTrade = parse(EXECUTED_TRADE, value)
    except MessageError as exc:
        return None, str(exc), None
    return trade, trade["symbol"], (trade["source"]["offset"], trade["source"]["seq"])
