"""validate_orders: pre-trade risk over a batch of `orders.new`, and the exposure ledger.

Exactly-once effects without transactions:
- every decision is stored under the client order id it used up (or under its Kafka position when it
  has no usable id: malformed, duplicate id) together with its source position; a redelivered record
  finds its own decision and replays it instead of deciding again (a decision can depend on exposure
  released meanwhile, so deciding again could differ);
- the member's RESERVED exposure item records the highest orders.new offset it includes, so a
  redelivery after a crash does not reserve twice;
- outputs carry deterministic ids (source position), so a duplicate produced after a crash is
  recognised downstream (match_orders: per-symbol source watermarks; OMS: rejection_id);
- the checkpoint is written last, conditionally on the version read at the start.

The exposure of an INTERNAL order comes back from orders.events (`release_partition`), that of an
order routed to the exchange from exchange.executions (`release_exchange_partition`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

import orjson

from clearing.domain.bounded import MAX_ID, clip, payload_fields
from clearing.domain.orders import (
    NewOrder,
    Rejection,
    RejectReason,
    ReplaceOrder,
    Route,
    SentAtWindow,
    check_sent_at,
    parse_order,
)
from clearing.domain.refdata import ReferenceData
from clearing.domain.risk import Acceptance, CreditState, KnownOrder, assess_order
from clearing.messages import (
    ORDER_EVENT_HEADER,
    AcceptedCancel,
    AcceptedNewOrder,
    AcceptedReplace,
    MessageError,
    OrderEventHeader,
    OrderRejection,
    Source,
    parse_record,
)
from clearing.ports import ItemStore, KafkaRecord, OutboundMessage, Publisher, ReferenceDataSource
from clearing.repositories.orders import OrderDecisions, OrderRecords
from clearing.repositories.state import ExposureLedger
from clearing.services.batch import BatchReport, Checkpoints, bounded_dead_letter, dumps
from clearing.services.exchange_exposure import ExchangeExposureRelease
from clearing.topics import ORDERS_ACCEPTED, ORDERS_DEADLETTER, ORDERS_EXCHANGE, ORDERS_REJECTED

STAGE = "validate_orders"
_EXCHANGE = str(Route.EXCHANGE)
# rejections that do not use up the client order id (the OMS may send the order again under it)
_NOT_USING_UP_ID = frozenset((RejectReason.DUPLICATE_CLORDID, RejectReason.STALE_OR_FUTURE_SENT_AT))
RELEASE_STAGE = "release_exposure"


def _iso(value: datetime | None) -> str | None:
    """ISO-8601 with a Z suffix (sent_at is UTC by contract); orjson writes the same text as
    isoformat() with +00:00 replaced, at a fraction of the cost of pydantic's tzinfo."""
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)[1:-1].decode() if value is not None else None


@dataclass
class _PartitionCache:
    """Per orders.new partition: the version of the checkpoint it matches and, per loaded member,
    client order id -> what was accepted (None: used up by a rejection) and the source position."""

    version: int | None
    loaded: set[str] = field(default_factory=set)
    known: dict[str, dict[str, KnownOrder | None]] = field(default_factory=dict)
    sources: dict[str, dict[str, str]] = field(default_factory=dict)
    items: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # full items from a cold load


MALFORMED_EVENT = "MALFORMED_EVENT"
_SIDE_TEXT: dict[str, Literal["BUY", "SELL"]] = {"BUY": "BUY", "SELL": "SELL"}  # a Side (StrEnum) is a str
MAX_EVENT_BYTES = 16 * 1024  # match_orders writes ~400 bytes an event
MAX_EXPOSURE = Decimal(10) ** 30  # far above any exposure a contract order can carry


def read_order_event(value: bytes | None) -> tuple[str, tuple[str, list[int]], Decimal | None] | str:
    """(member id, (source partition, [offset, seq]), exposure delta or None) of an orders.events
    record, or a text saying why it cannot be applied."""
    try:
        # the part of the orders.events contract every event shares (clearing.messages)
        ev: OrderEventHeader = parse_record(ORDER_EVENT_HEADER, value, MAX_EVENT_BYTES)
    except MessageError as exc:
        return str(exc)
    src, text = ev["source"], ev["exposure_delta"]
    delta = None
    if text is not None:
        delta = Decimal(text)  # the contract's pattern: a finite decimal of at most 64 characters
        if abs(delta) >= MAX_EXPOSURE:
            return f"exposure_delta must be a decimal string below {MAX_EXPOSURE:.0E} in size"
    member_id, partition, offset, seq = ev["member_id"], src["partition"], src["offset"], src["seq"]
    return member_id, (str(partition), [offset, seq]), delta


class ValidateOrders:
    """Pre-trade risk for one partition of orders.new at a time."""

    def __init__(
        self,
        store: ItemStore,
        publisher: Publisher,
        refdata: ReferenceDataSource,
        writer: str = STAGE,
        sent_at_window: SentAtWindow | None = None,
    ):
        self.store = store
        self.publisher = publisher
        self.refdata = refdata
        self.writer = writer
        self.checkpoints = Checkpoints(store)
        self.orders = OrderRecords(store, writer)
        self.exposure = ExposureLedger(store, writer)
        self.exchange_release = ExchangeExposureRelease(store, publisher, refdata, self.orders, writer)
        self._cache: dict[int, _PartitionCache] = {}
        if sent_at_window is None:  # the function's setting (SENT_AT_MAX_*): replays decide like live
            from clearing.config import SentAtSettings, load_settings

            sent_at_window = load_settings(SentAtSettings).window()
        self.sent_at_window = sent_at_window

    # ------------------------------------------------------------------ orders.new
    def validate_partition(self, records: list[KafkaRecord]) -> BatchReport:
        try:
            return self._validate_partition(records)
        except Exception:
            self._cache.pop(records[0].partition, None)  # a failed run may have advanced it: reload
            raise

    def _member_orders(self, partition: int, version: int | None, members: set[str]) -> _PartitionCache:
        """What validation knows of each member's client order ids, warm across invocations.

        Members are keyed to one orders.new partition, so this function is the only writer of their
        validation records: a cache built by a full query of the member and kept up to date by our own
        writes is complete, as long as the checkpoint still has the version we wrote last."""
        cache = self._cache.get(partition)
        if cache is None or cache.version != version:
            cache = self._cache[partition] = _PartitionCache(version)
        for member_id in members - cache.loaded:
            known: dict[str, KnownOrder | None] = {}
            sources: dict[str, Any] = {}  # client order id -> "topic/partition/offset" of its record
            items: dict[str, dict[str, Any]] = {}
            for clordid, item in self.orders.member_decisions(member_id):
                known[clordid], sources[clordid], items[clordid] = (
                    OrderRecords.known_order(item),
                    item.get("src"),
                    item,
                )
            cache.known[member_id], cache.sources[member_id], cache.items[member_id] = known, sources, items
            cache.loaded.add(member_id)
        return cache

    def _validate_partition(self, records: list[KafkaRecord]) -> BatchReport:
        report = BatchReport(consumed=len(records))
        topic, partition = records[0].topic, records[0].partition
        # Parsed before the checkpoint is read, so that the members' exposure ledger comes in the same
        # request. Reading the ledger before our claim rather than after it reads the same items: only
        # an invocation of this partition writes RESERVED, and one that claimed before us is over.
        parsed = [(r, parse_order(r.value)) for r in records]
        ledger_keys = {
            k for _, m in parsed if not isinstance(m, Rejection) for k in ExposureLedger.keys(m.member_id)
        }
        fresh, ck_offset, version, _, ledger = self.checkpoints.unapplied_with(
            STAGE, records, report, ledger_keys
        )
        if not fresh:
            return report
        if len(fresh) < len(records):
            parsed = [(r, m) for r, m in parsed if r.offset > ck_offset]
        refdata = self.refdata.current()
        members = {m.member_id for _, m in parsed if not isinstance(m, Rejection)}
        cache = self._member_orders(partition, version, members)
        # Claim the partition before any effect: an invocation that dies after writing decisions
        # leaves the version moved on, so every warm cache built before it reloads from the store.
        version = cache.version = self.checkpoints.advance(
            STAGE, topic, partition, ck_offset, version, claimed_by=self.writer
        )

        credit: dict[str, CreditState] = {}
        reserved: dict[str, Decimal] = {}
        applied: dict[str, int] = {}
        for m in members:
            reserved[m], applied[m], adjustment = ExposureLedger.of_member(ledger, m, partition)
            credit[m] = CreditState(exposure=reserved[m] + adjustment)
        known = cache.known
        window = self.sent_at_window

        decisions = self.orders.decisions()
        outputs: list[OutboundMessage] = []
        last_offset_of_member: dict[str, int] = {}
        for record, msg in parsed:
            if isinstance(msg, Rejection):
                self._reject(record, msg, None, decisions, outputs, report)
                continue
            member_id = msg.member_id
            if cache.sources[member_id].get(msg.client_order_id) == record.position:
                # our own earlier attempt (a redelivery): replay its stored decision
                previous = cache.items[member_id].get(msg.client_order_id)
                if previous is None:
                    previous = self.orders.decision(member_id, msg.client_order_id)
                decision = OrderRecords.replayed(previous, msg)
            else:
                decision = check_sent_at(msg, record.timestamp, window) or assess_order(
                    msg, refdata, credit[member_id], known[member_id]
                )
            if isinstance(decision, Rejection):
                # an id another record already holds keeps that record's decision: this rejection
                # (unknown or suspended member, checked before duplicates) is keyed by its position
                held_by = cache.sources[member_id].get(msg.client_order_id, record.position)
                used_up = decision.reason not in _NOT_USING_UP_ID and held_by == record.position
                uses_up = (member_id, msg.client_order_id) if used_up else None
                self._reject(record, decision, uses_up, decisions, outputs, report)
                if used_up:
                    known[member_id][msg.client_order_id] = None
                    cache.sources[member_id][msg.client_order_id] = record.position
                continue
            if decision.exposure_reserved and record.offset > applied[member_id]:
                credit[member_id].exposure += decision.exposure_reserved
                reserved[member_id] += decision.exposure_reserved
                last_offset_of_member[member_id] = record.offset
            known[member_id][msg.client_order_id] = self._known_after(decision)
            cache.sources[member_id][msg.client_order_id] = record.position
            outputs.append(self._accepted(record, msg, decision, refdata, decisions))
            report.accepted += 1

        written = decisions.save()
        self.publisher.publish(outputs)
        written += self.exposure.save_reserved(ledger, partition, reserved, last_offset_of_member)
        cache.version = self.checkpoints.advance(
            STAGE, topic, partition, fresh[-1].offset, version, written_by=self.writer
        )
        for member_items in cache.items.values():
            member_items.clear()  # full items serve replays right after a cold load only
        report.counters["items_written"] += written + 2
        return report

    @staticmethod
    def _known_after(decision: Acceptance) -> KnownOrder:
        msg = decision.order
        if type(msg) is NewOrder:
            if msg.route == _EXCHANGE:  # what a later CANCEL / REPLACE sends to the exchange
                return KnownOrder(
                    decision.order_id,
                    msg.symbol,
                    str(msg.side),
                    decision.price_ticks,
                    msg.quantity,
                    decision.reserve_ticks,
                    _EXCHANGE,
                    msg.account,
                    str(msg.type),
                    str(msg.time_in_force),
                )
            return KnownOrder(
                decision.order_id,
                msg.symbol,
                str(msg.side),
                decision.price_ticks,
                msg.quantity,
                decision.reserve_ticks,
            )
        target: KnownOrder = decision.known  # type: ignore[assignment]  # a CANCEL/REPLACE has its target
        if type(msg) is ReplaceOrder:
            qty = msg.quantity if msg.quantity is not None else target.quantity
            # the route, account, type and time in force stay the target's
            return target._replace(
                price_ticks=decision.price_ticks, quantity=qty, reserve_ticks=decision.reserve_ticks
            )
        return target

    def _accepted(
        self,
        record: KafkaRecord,
        msg: Any,
        decision: Acceptance,
        refdata: ReferenceData,
        decisions: OrderDecisions,
    ) -> OutboundMessage:
        """Record the acceptance in `decisions`; returns its orders.accepted / orders.exchange message."""
        price_ticks = decision.price_ticks
        sent_at = _iso(msg.sent_at)
        member_id, clordid, symbol = msg.member_id, msg.client_order_id, msg.symbol
        price = str(refdata.instruments[symbol].to_price(price_ticks)) if price_ticks is not None else None
        source: Source = {"topic": record.topic, "partition": record.partition, "offset": record.offset}
        decisions.record_acceptance(record.position, msg, decision, sent_at)
        topic = ORDERS_ACCEPTED
        if type(msg) is NewOrder:
            # str() of a StrEnum member is its value (several times cheaper than .value)
            side, route, order_type, tif = (
                _SIDE_TEXT[msg.side],
                str(msg.route),
                str(msg.type),
                str(msg.time_in_force),
            )
            account, quantity = msg.account, msg.quantity
            body: AcceptedNewOrder | AcceptedCancel | AcceptedReplace = {
                "action": "NEW",
                "order_id": decision.order_id,
                "member_id": member_id,
                "client_order_id": clordid,
                "orig_client_order_id": None,
                "symbol": symbol,
                "price_ticks": price_ticks,
                "price": price,
                "reserve_price_ticks": decision.reserve_ticks,
                "sent_at": sent_at,
                "source": source,
                "account": account,
                "side": side,
                "type": order_type,
                "quantity": quantity,
                "time_in_force": tif,
                "post_only": msg.post_only,
                "stp": str(msg.stp) if msg.stp else None,
                "route": route,
            }
            if route == _EXCHANGE:
                topic = ORDERS_EXCHANGE
        else:
            t: KnownOrder = decision.known  # type: ignore[assignment]  # a CANCEL/REPLACE has its target
            # a CANCEL / REPLACE goes where its target went: an order routed to the exchange is not in
            # our book, so its amendments are for the exchange gateway (orders.exchange), with the
            # terms of the FIX request (the target's account, side, type, time in force; a quantity)
            exchange = t.route == _EXCHANGE
            amend: dict[str, Any] = {
                "action": msg.action,
                "order_id": decision.order_id,
                "member_id": member_id,
                "client_order_id": clordid,
                "orig_client_order_id": msg.orig_client_order_id,
                "symbol": symbol,
                "price_ticks": price_ticks,
                "price": price,
                "reserve_price_ticks": decision.reserve_ticks,
                "sent_at": sent_at,
                "source": source,
            }
            if type(msg) is ReplaceOrder:
                # a FIX 35=G always states a quantity: on the exchange, the target's when none is given
                total = msg.quantity if msg.quantity is not None or not exchange else t.quantity
                amend["quantity"] = total
                amend["side"] = _SIDE_TEXT[t.side]
                if exchange:
                    amend["account"] = t.account
                    amend["type"] = t.order_type
                    amend["time_in_force"] = t.time_in_force
                    amend["route"] = _EXCHANGE
            elif exchange:
                amend["account"] = t.account
                amend["side"] = _SIDE_TEXT[t.side]
                amend["quantity"] = t.quantity
                amend["route"] = _EXCHANGE
            # one builder for both amendments: the keys each one has are those of AcceptedCancel /
            # AcceptedReplace (every message the tests publish is checked against its contract)
            body = cast(AcceptedCancel | AcceptedReplace, amend)
            if exchange:
                topic = ORDERS_EXCHANGE
        return OutboundMessage(topic, symbol.encode(), dumps(body))

    def _reject(
        self,
        record: KafkaRecord,
        rejection: Rejection,
        uses_up: tuple[str, str] | None,
        decisions: OrderDecisions,
        outputs: list[OutboundMessage],
        report: BatchReport,
    ) -> None:
        # bounded whatever the input (a DynamoDB item holds 400 KB): a prefix of the original, its length
        # and SHA-256; the source position holds the full bytes
        original = payload_fields(record.value)
        reason = str(rejection.reason)  # a StrEnum's str() is its value
        member_id, rejection_id = (
            clip(rejection.member_id, MAX_ID),
            f"R-{record.topic}-{record.partition}-{record.offset}",
        )
        message, clordid, symbol = (
            clip(rejection.message),
            clip(rejection.client_order_id, MAX_ID),
            clip(rejection.symbol, MAX_ID),
        )
        body: OrderRejection = {
            "rejection_id": rejection_id,
            "reason": reason,
            "message": message,
            "member_id": member_id,
            "client_order_id": clordid,
            "symbol": symbol,
            "source": {"topic": record.topic, "partition": record.partition, "offset": record.offset},
            **original,
        }
        decisions.record_rejection(
            record,
            rejection_id=rejection_id,
            reason=reason,
            message=message,
            member_id=member_id,
            client_order_id=clordid,
            symbol=symbol,
            original=original,
            uses_up=uses_up,
        )
        key = (member_id or "UNKNOWN").encode()
        outputs.append(OutboundMessage(ORDERS_REJECTED, key, dumps(body)))
        report.rejected += 1
        report.rejected_by_reason[reason] += 1

    # ------------------------------------------------------------------ orders.events
    def release_partition(self, records: list[KafkaRecord]) -> BatchReport:
        """Apply `exposure_delta` of order events to each member's RELEASED item, once per event.

        Events of one member from one orders.accepted partition arrive in source order, so a
        watermark of (source offset, seq) per source partition recognises duplicates that
        match_orders re-produced after a crash."""
        report = BatchReport(consumed=len(records))
        topic, partition = records[0].topic, records[0].partition
        # decoded before the checkpoint is read: the RELEASED items come in the same request
        decoded = [(r, read_order_event(r.value)) for r in records]
        wanted = {ExposureLedger.released_key(d[0]) for _, d in decoded if type(d) is tuple}
        fresh, ck_offset, version, _, items = self.checkpoints.unapplied_with(
            RELEASE_STAGE, records, report, wanted
        )
        if not fresh:
            return report
        events, dead_letters = [], []
        for r, d in decoded:
            if r.offset <= ck_offset:
                continue
            if type(d) is str:  # what is wrong with it: set aside, the batch goes on
                dead_letters.append(bounded_dead_letter(ORDERS_DEADLETTER, r, MALFORMED_EVENT, d))
                report.rejected += 1
                report.rejected_by_reason[MALFORMED_EVENT] += 1
                continue
            events.append((r, *d))
        members = {m for _, m, _, _ in events}
        adjustment, marks = {}, {}
        for m in members:
            adjustment[m], marks[m] = ExposureLedger.released_of(items, m)
        touched = set()
        for _, member_id, (src_part, position), delta in events:
            mark = marks[member_id].get(src_part)
            if mark is not None and position <= list(mark):
                report.skipped += 1
                continue
            marks[member_id][src_part] = position
            if delta:
                adjustment[member_id] += delta
            touched.add(member_id)
            report.accepted += 1
        self.exposure.save_released({m: (adjustment[m], marks[m]) for m in touched})
        self.publisher.publish(dead_letters)
        report.counters["dead_lettered"] += len(dead_letters)
        self.checkpoints.advance(
            RELEASE_STAGE, topic, partition, fresh[-1].offset, version, written_by=self.writer
        )
        return report

    # ------------------------------------------------------------------ exchange.executions
    def release_exchange_partition(self, records: list[KafkaRecord]) -> BatchReport:
        """Release the exposure of exchange-routed orders from the exchange's ExecutionReports, once
        per report (services/exchange_exposure.py)."""
        return self.exchange_release.release_partition(records)
