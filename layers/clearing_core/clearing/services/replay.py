"""Replay: rebuild a stage's state from the retained Kafka log into fresh tables and compare with live.

The real stage services run over the log's records, in offset order per partition, in batches (the
same code path as the event-source mapping), into a *target* ItemStore (other tables: a prefix or
another endpoint). They publish into a `CollectingPublisher`, never to Kafka; what they would have
published is compared with what the live run did publish, by deterministic id.

What is compared, per stage (items through keys.comparable(): processing-time fields are ignored):
- validate_orders (orders.new, and the release stream orders.events): validation and rejection
  items, the exposure ledger (EXPOSURE#*); outputs orders.accepted / orders.exchange (by source
  position), orders.rejected (by rejection_id) and orders.deadletter of orders.events records;
- match_orders (orders.accepted): order states, executed trades, book snapshots (decoded; their
  `version` counts invocations, not content); outputs trades.executed (trade_id), orders.events
  (event_id), orders.deadletter of orders.accepted records (by source position);
- clear_trades (trades.executed): cleared trades with their legs, positions, obligations, clearing
  state (CLEARSTATE#*); outputs trades.deadletter (by source position).
Checkpoints are not compared (their versions count batches).

Credit decisions. validate_orders checks credit against exposure that is released asynchronously
from orders.events, so the live decisions depend on how the two streams interleaved in time, which
the log does not record. The replay therefore: (1) copies into the target, before it starts, the
live decisions that were CREDIT_LIMIT rejections (validate_orders then replays a stored decision for
the same source position instead of deciding again - the mechanism it uses for redeliveries);
(2) applies the whole release stream first, so the rebuild's credit is never tighter than live
credit was (reservations only grow over the log; releases only lower exposure); (3) decides every
other order afresh. Every non-credit decision is therefore verified; credit rejections are taken
as recorded and counted in the report; an order live accepted but rebuilt credit-rejected (or any
other difference) is reported.
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from clearing.ports import ItemStore, KafkaRecord, OutboundMessage, ReferenceDataSource
from clearing.repositories import keys
from clearing.services.batch import BatchReport
from clearing.topics import (
    EXCHANGE_EXECUTIONS,
    ORDERS_ACCEPTED,
    ORDERS_DEADLETTER,
    ORDERS_EVENTS,
    ORDERS_EXCHANGE,
    ORDERS_NEW,
    ORDERS_REJECTED,
    TRADES_DEADLETTER,
    TRADES_EXECUTED,
)

VALIDATE, MATCH, CLEAR = "validate_orders", "match_orders", "clear_trades"
STAGES = (VALIDATE, MATCH, CLEAR)
REPLAY_WRITER = "replay"


class RetainedLog(Protocol):
    """What a replay or an order's history needs from Kafka: read what a partition still holds."""

    def partitions(self, topic: str) -> list[int]:
        """The topic's partitions (empty when the topic does not exist)."""

    def partition_for(self, topic: str, key: bytes) -> int:
        """The partition a producer puts `key` in (the default partitioner)."""

    def read(
        self, topic: str, partition: int, start: int = 0, end: int | None = None
    ) -> Iterator[KafkaRecord]:
        """Records [start, end) in offset order; end None: up to the end when the call starts."""


class CollectingPublisher:
    """The replay's Publisher: keeps what a stage would publish, sends nothing anywhere."""

    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        self.messages.extend(messages)

    def on(self, *topics: str) -> list[OutboundMessage]:
        return [m for m in self.messages if m.topic in topics]


@dataclass
class Difference:
    where: str  # "orders" (a table) or "topic:trades.executed"
    key: str
    kind: str  # MISSING_IN_REBUILD, EXTRA_IN_REBUILD, DIFFERENT
    fields: dict[str, Any] = field(default_factory=dict)  # name -> {"live": ..., "rebuilt": ...}

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "key": self.key, "kind": self.kind, "fields": self.fields}


@dataclass
class ReplayReport:
    stages: list[str]
    records_read: dict[str, int] = field(default_factory=dict)  # topic -> records fed to a stage
    compared: dict[str, int] = field(default_factory=dict)  # table or topic -> items compared
    differences: list[Difference] = field(default_factory=list)
    differences_total: int = 0
    credit_decisions_as_recorded: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.differences_total == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "stages": self.stages,
            "records_read": self.records_read,
            "compared": self.compared,
            "differences_total": self.differences_total,
            "differences": [d.to_dict() for d in self.differences],
            "credit_decisions_as_recorded": self.credit_decisions_as_recorded,
            "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------ what each stage owns
def _decoded_book(item: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in item.items() if k != "version"}  # version counts invocations
    if isinstance(item.get("book"), bytes | bytearray):
        out["book"] = json.loads(zlib.decompress(item["book"]))
    return out


ItemFilter = Callable[[dict[str, Any]], bool]
STAGE_ITEMS: dict[str, list[tuple[str, ItemFilter]]] = {
    VALIDATE: [
        (keys.ORDERS, lambda i: i.get("kind") in ("VALIDATION", "REJECTION")),
        (keys.STATE, lambda i: i["pk"].startswith("EXPOSURE#")),
    ],
    MATCH: [
        (keys.ORDERS, lambda i: i.get("kind") == "STATE"),
        (keys.TRADES, lambda i: i["sk"] == "EXECUTED"),
        (keys.STATE, lambda i: i["pk"].startswith("BOOK#")),
    ],
    CLEAR: [
        (keys.TRADES, lambda i: i["sk"] == "CLEARED"),
        (keys.POSITIONS, lambda i: True),
        (keys.OBLIGATIONS, lambda i: i.get("kind") != "INSTRUCTION"),  # settle_eod writes those
        (keys.STATE, lambda i: i["pk"].startswith("CLEARSTATE#")),
    ],
}


def _source_id(msg: dict[str, Any]) -> str:
    s = msg.get("source") or {}
    return f"{s.get('topic')}/{s.get('partition')}/{s.get('offset')}"


def _dead_letter_of(source_topic: str) -> Callable[[dict[str, Any]], str | None]:
    """orders.deadletter holds two stages' dead letters: each stage compares those of its input."""

    def id_of(msg: dict[str, Any]) -> str | None:
        return _source_id(msg) if (msg.get("source") or {}).get("topic") == source_topic else None

    return id_of


# output topics of each stage -> how a message is identified (deterministic ids; None: another stage's)
STAGE_OUTPUTS: dict[str, list[tuple[str, Callable[[dict[str, Any]], str | None]]]] = {
    VALIDATE: [
        (ORDERS_ACCEPTED, _source_id),
        (ORDERS_EXCHANGE, _source_id),
        (ORDERS_REJECTED, lambda m: m["rejection_id"]),
        (ORDERS_DEADLETTER, _dead_letter_of(ORDERS_EVENTS)),
    ],
    MATCH: [
        (TRADES_EXECUTED, lambda m: m["trade_id"]),
        (ORDERS_EVENTS, lambda m: m["event_id"]),
        (ORDERS_DEADLETTER, _dead_letter_of(ORDERS_ACCEPTED)),
    ],
    CLEAR: [(TRADES_DEADLETTER, _source_id)],
}


def comparable_item(item: dict[str, Any]) -> dict[str, Any]:
    item = keys.comparable(item)
    if item.get("sk") == "EXCHANGE" and item.get("pk", "").startswith("EXPOSURE#"):
        item.pop("version", None)  # counts the invocations that wrote it (the batching), not what it holds
    return _decoded_book(item) if item.get("pk", "").startswith("BOOK#") else item


# ------------------------------------------------------------------ the replay
def _batches(
    log: RetainedLog, topic: str, start_offsets: dict[int, int], batch_size: int
) -> Iterator[list[KafkaRecord]]:
    for partition in log.partitions(topic):
        batch: list[KafkaRecord] = []
        for record in log.read(topic, partition, start_offsets.get(partition, 0)):
            batch.append(record)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch


def _run(
    log: RetainedLog,
    topic: str,
    from_offsets: dict[str, dict[int, int]] | None,
    batch_size: int,
    process: Callable[[list[KafkaRecord]], BatchReport],
    report: ReplayReport,
) -> None:
    for batch in _batches(log, topic, (from_offsets or {}).get(topic, {}), batch_size):
        process(batch)
        report.records_read[topic] = report.records_read.get(topic, 0) + len(batch)


class ScannedTables:
    """Each table of a store scanned once per replay (a Scan of moto or DynamoDB is the slow part)."""

    def __init__(self, store: ItemStore):
        self.store = store
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def scan(self, table: str) -> list[dict[str, Any]]:
        if table not in self.tables:
            self.tables[table] = self.store.scan(table)
        return self.tables[table]


def seed_credit_decisions(live: ItemStore | ScannedTables, target: ItemStore) -> int:
    """Copy the live CREDIT_LIMIT decisions into the target: validate_orders replays them as recorded."""
    credit = [
        i
        for i in live.scan(keys.ORDERS)
        if i.get("decision") == "REJECTED" and i.get("reason") == "CREDIT_LIMIT"
    ]
    target.put_many(keys.ORDERS, credit)
    return len(credit)


def replay(
    stages: Sequence[str],
    log: RetainedLog,
    live: ItemStore,
    target: ItemStore,
    refdata: ReferenceDataSource,
    from_offsets: dict[str, dict[int, int]] | None = None,
    batch_size: int = 500,
    max_differences: int = 200,
    recorded_credit: bool = True,
) -> ReplayReport:
    """Rebuild `stages` into `target` from the log, then compare target with live (see module doc).

    from_offsets: {topic: {partition: first offset}}; the target must then already hold the state as
    of those offsets (a restored backup), since the stages continue from what the target holds.
    recorded_credit=False decides credit afresh too (expect differences wherever credit was tight)."""
    from clearing.services.clear import ClearTrades
    from clearing.services.match import MatchOrders
    from clearing.services.validate import ValidateOrders

    started = time.monotonic()
    stages = list(STAGES) if "all" in stages else [s for s in STAGES if s in stages]
    report = ReplayReport(stages=stages)
    publisher = CollectingPublisher()
    live_tables = ScannedTables(live)
    if VALIDATE in stages:
        validate = ValidateOrders(target, publisher, refdata, writer=f"{REPLAY_WRITER}:{VALIDATE}")
        if recorded_credit:
            report.credit_decisions_as_recorded = seed_credit_decisions(live_tables, target)
        _run(log, ORDERS_EVENTS, from_offsets, batch_size, validate.release_partition, report)
        _run(log, ORDERS_NEW, from_offsets, batch_size, validate.validate_partition, report)
        # after orders.new: the exchange release reads the validation records of the orders it releases
        _run(log, EXCHANGE_EXECUTIONS, from_offsets, batch_size, validate.release_exchange_partition, report)
    if MATCH in stages:
        match = MatchOrders(target, publisher, refdata, writer=f"{REPLAY_WRITER}:{MATCH}")
        _run(log, ORDERS_ACCEPTED, from_offsets, batch_size, match.match_partition, report)
    if CLEAR in stages:
        clear = ClearTrades(target, publisher, refdata, writer=f"{REPLAY_WRITER}:{CLEAR}")
        _run(log, TRADES_EXECUTED, from_offsets, batch_size, clear.clear_partition, report)

    differences: list[Difference] = []
    target_tables = ScannedTables(target)
    for stage in stages:
        for table, wanted in STAGE_ITEMS[stage]:
            found = compare_items(
                table,
                [i for i in live_tables.scan(table) if wanted(i)],
                [i for i in target_tables.scan(table) if wanted(i)],
            )
            report.compared[table] = report.compared.get(table, 0) + found[0]
            differences += found[1]
        for topic, id_of in STAGE_OUTPUTS[stage]:
            live_msgs = read_topic(log, topic, id_of)
            rebuilt = _first_by_id((m.value, id_of) for m in publisher.on(topic))
            partial = bool(from_offsets)  # the rebuild then starts later than the live topic
            count, diffs = compare_messages(f"topic:{topic}", live_msgs, rebuilt, only_rebuilt=partial)
            report.compared[f"topic:{topic}"] = count
            differences += diffs
    report.differences_total = len(differences)
    report.differences = differences[:max_differences]
    report.seconds = time.monotonic() - started
    return report


def _first_by_id(
    pairs: Iterable[tuple[bytes, Callable[[dict[str, Any]], str | None]]],
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for value, id_of in pairs:
        msg = json.loads(value)
        key = id_of(msg)
        if key is not None:
            out.setdefault(key, msg)  # a duplicate re-produced after a crash carries the same id
    return out


def read_topic(
    log: RetainedLog, topic: str, id_of: Callable[[dict[str, Any]], str | None]
) -> dict[str, dict[str, Any]]:
    """Every message of a live topic by its deterministic id (first occurrence of duplicates).

    A message without one (not JSON, not ours: a rogue producer) is kept under its position, so that
    it is reported as live output the stage would not produce, rather than stopping the replay."""
    out: dict[str, dict[str, Any]] = {}
    for p in log.partitions(topic):
        for r in log.read(topic, p):
            try:
                msg = json.loads(r.value)  # type: ignore[arg-type]  # None: TypeError, caught
                key = id_of(msg)
            except (ValueError, TypeError, KeyError, AttributeError):
                key, msg = f"unreadable:{r.topic}/{r.partition}/{r.offset}", {"unreadable": True}
            if key is not None:
                out.setdefault(key, msg)
    return out


def _field_differences(live: dict[str, Any], rebuilt: dict[str, Any]) -> dict[str, Any]:
    return {
        k: {"live": live.get(k), "rebuilt": rebuilt.get(k)}
        for k in sorted(set(live) | set(rebuilt))
        if live.get(k) != rebuilt.get(k)
    }


def compare_items(
    table: str, live_items: list[dict[str, Any]], rebuilt_items: list[dict[str, Any]]
) -> tuple[int, list[Difference]]:
    live = {(i["pk"], i["sk"]): comparable_item(i) for i in live_items}
    rebuilt = {(i["pk"], i["sk"]): comparable_item(i) for i in rebuilt_items}
    diffs = []
    for key in sorted(set(live) | set(rebuilt)):
        name = f"{key[0]} | {key[1]}"
        if key not in rebuilt:
            diffs.append(Difference(table, name, "MISSING_IN_REBUILD"))
        elif key not in live:
            diffs.append(Difference(table, name, "EXTRA_IN_REBUILD"))
        elif live[key] != rebuilt[key]:
            diffs.append(
                Difference(table, name, "DIFFERENT", _printable(_field_differences(live[key], rebuilt[key])))
            )
    return len(set(live) | set(rebuilt)), diffs


def compare_messages(
    where: str,
    live: dict[str, dict[str, Any]],
    rebuilt: dict[str, dict[str, Any]],
    only_rebuilt: bool = False,
) -> tuple[int, list[Difference]]:
    ids = set(rebuilt) if only_rebuilt else set(live) | set(rebuilt)
    diffs = []
    for i in sorted(ids):
        if i not in rebuilt:
            diffs.append(Difference(where, i, "MISSING_IN_REBUILD"))
        elif i not in live:
            diffs.append(Difference(where, i, "EXTRA_IN_REBUILD"))
        elif live[i] != rebuilt[i]:
            diffs.append(
                Difference(where, i, "DIFFERENT", _printable(_field_differences(live[i], rebuilt[i])))
            )
    return len(ids), diffs


def _printable(value: Any) -> Any:
    """JSON-ready (book snapshots and other bytes are summarised)."""
    if isinstance(value, dict):
        return {k: _printable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_printable(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    return value


def load_offsets(text: str) -> dict[str, dict[int, int]]:
    """--from-offsets file: {"topic": {"partition": first_offset}} (JSON)."""
    raw = json.loads(text)
    return {topic: {int(p): int(o) for p, o in parts.items()} for topic, parts in raw.items()}


def stage_tables(stages: Sequence[str]) -> set[str]:
    stages = list(STAGES) if "all" in stages else stages
    return {table for s in stages for table, _ in STAGE_ITEMS[s]}


def checkpoints_in(target: ItemStore, stages: Sequence[str]) -> list[str]:
    """Checkpoints the target already holds for these stages (a --from-beginning target must have none)."""
    stages = list(STAGES) if "all" in stages else stages
    return sorted(
        i["pk"]
        for i in target.scan(keys.STATE)
        if i["pk"].startswith("CKPT#")
        and i["pk"].split("#")[1] in (*stages, "release_exposure", "release_exchange_exposure")
    )
