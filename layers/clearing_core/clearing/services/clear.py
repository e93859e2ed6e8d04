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
from collections.abc import Callable, Mapping, Sequence
from datetime import date

from clearing.domain import clearing as novation
from clearing.domain import netting
from clearing.domain.bounded import MAX_ID, clip, payload_fields
from clearing.domain.clearing import ClearingRejection
from clearing.messages import EXECUTED_TRADE, ExecutedTrade, MessageError, TradeDeadLetter, parse_record
from clearing.ports import ItemStore, KafkaRecord, Key, OutboundMessage, Publisher, ReferenceDataSource
from clearing.repositories.obligations import ObligationRecords
from clearing.repositories.positions import PositionRecords
from clearing.repositories.state import ClearingStates
from clearing.repositories.trades import TradeRecords
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
        self.trades = TradeRecords(store, writer)
        self.positions = PositionRecords(store, writer)
        self.obligations = ObligationRecords(store, writer)
        self.clearing_states = ClearingStates(store, writer)

    def clear_partition(self, records: list[KafkaRecord]) -> BatchReport:
        report = BatchReport(consumed=len(records))
        topic, partition = records[0].topic, records[0].partition
        # decoded before the checkpoint is read: the symbols' clearing states come in the same request
        parsed = [(r, *read_trade(r.value)) for r in records]
        wanted = {ClearingStates.key(s) for _, t, s, _ in parsed if t is not None}
        fresh, ck_offset, version, _, found = self.checkpoints.unapplied_with(STAGE, records, report, wanted)
        if not fresh:
            return report
        refdata = self.refdata.current()
        if len(fresh) < len(records):
            parsed = [p for p in parsed if p[0].offset > ck_offset]
        symbols = {s for _, t, s, _ in parsed if t is not None}
        marks = {s: ClearingStates.mark_of(found, s) for s in symbols}

        cleared: list[tuple[novation.NovatedTrade, Mapping[str, object], str]] = []
        dead_letters, legs_by_offset = [], []
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
            cleared.append((result, trade, record.position))
            legs_by_offset.append((record.offset, result.legs))
            report.accepted += 1
            report.counters["legs"] += 2
            report.counters["cleared_notional"] += int(result.buy_leg.notional)

        self.trades.record_cleared(cleared, now_ms)
        self.publisher.publish(dead_letters)
        self._apply_to_positions_and_obligations(legs_by_offset, f"{topic}/{partition}")
        self.clearing_states.save(marks)
        self.checkpoints.advance(STAGE, topic, partition, fresh[-1].offset, version, written_by=self.writer)
        report.counters["dead_lettered"] += len(dead_letters)
        report.counters["trades_cleared"] += len(cleared)
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
                        PositionRecords.key(leg.member_id, leg.symbol, leg.account, day),
                        ObligationRecords.key(leg.member_id, leg.symbol, day),
                    )
                )
        positions = self.positions.load({pk for _, _, pk, _ in keyed})
        obligations = self.obligations.load({ok for _, _, _, ok in keyed})
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
        self.positions.save(new_pos, source)
        self.obligations.save(new_obl, source)

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
    try:
        trade: ExecutedTrade = parse_record(EXECUTED_TRADE, value, MAX_RECORD_BYTES)
    except MessageError as exc:
        return None, str(exc), None
    return trade, trade["symbol"], (trade["source"]["offset"], trade["source"]["seq"])
