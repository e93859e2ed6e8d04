"""What every stream stage shares: MSK event decoding, per-partition runs, checkpoints, reports.

A batch from an MSK event-source mapping may hold several partitions. Each partition is processed
on its own, in offset order, and checkpointed on its own: a failure in one partition does not undo
the others. The failure report names, for each failed partition, its lowest unprocessed offset;
Lambda's Kafka semantics retry that record and everything after it in the partition.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aws_lambda_powertools.utilities.data_classes import KafkaEvent

from clearing.ports import InfrastructureError, ItemStore, KafkaRecord
from clearing.services import keys


@dataclass
class BatchReport:
    """What happened to every consumed record: consumed = accepted + rejected + skipped (+ failed)."""

    consumed: int = 0
    accepted: int = 0
    rejected: int = 0
    skipped: int = 0  # at or below the checkpoint, or duplicates by deterministic id
    failed: int = 0  # in partitions reported back for retry
    rejected_by_reason: Counter = field(default_factory=Counter)
    counters: Counter = field(default_factory=Counter)  # stage-specific business counts (trades, legs ...)
    failures: list[dict[str, Any]] = field(default_factory=list)  # batchItemFailures entries

    def merge(self, other: BatchReport) -> None:
        self.consumed += other.consumed
        self.accepted += other.accepted
        self.rejected += other.rejected
        self.skipped += other.skipped
        self.failed += other.failed
        self.rejected_by_reason.update(other.rejected_by_reason)
        self.counters.update(other.counters)
        self.failures.extend(other.failures)

    @property
    def accounted(self) -> bool:
        return self.consumed == self.accepted + self.rejected + self.skipped + self.failed

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": list(self.failures)}

    def summary(self) -> dict[str, Any]:
        return {
            "consumed": self.consumed,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "skipped": self.skipped,
            "failed": self.failed,
            "rejected_by_reason": dict(self.rejected_by_reason),
            **dict(self.counters),
        }


def records_from_event(event: dict[str, Any]) -> dict[tuple[str, int], list[KafkaRecord]]:
    """Decode an MSK event (records keyed "topic-partition", base64 key/value, headers as byte lists)
    with Powertools' KafkaEvent into per-partition lists in offset order."""
    out: dict[tuple[str, int], list[KafkaRecord]] = {}
    if not event.get("records"):
        return out
    b64decode = base64.b64decode
    for wrapped in KafkaEvent(event).records:
        r = wrapped.raw_event  # the plain dict: attribute access through the wrapper costs ~10x more
        key, value = r.get("key"), r.get("value")
        rec = KafkaRecord(
            r["topic"],
            int(r["partition"]),
            int(r["offset"]),
            b64decode(key) if key else None,
            b64decode(value) if value is not None else None,
            int(r.get("timestamp") or 0),
            tuple((name, bytes(data)) for h in (r.get("headers") or ()) for name, data in h.items()),
        )
        out.setdefault((rec.topic, rec.partition), []).append(rec)
    for recs in out.values():
        recs.sort(key=lambda x: x.offset)
    return out


def run_partitions(
    event: dict[str, Any],
    process_partition: Callable[[list[KafkaRecord]], BatchReport],
    on_failure: Callable[[list[KafkaRecord], Exception], None] | None = None,
) -> BatchReport:
    """Process each partition of the event; infrastructure failures become batch item failures."""
    total = BatchReport()
    for (topic, partition), records in records_from_event(event).items():
        try:
            total.merge(process_partition(records))
        except InfrastructureError as exc:
            if on_failure:
                on_failure(records, exc)
            total.consumed += len(records)
            total.failed += len(records)
            total.failures.append({"itemIdentifier": {"partition": f"{topic}-{partition}", "offset": records[0].offset}})
    return total


class Checkpoints:
    """The per-(stage, topic, partition) checkpoint: last applied offset plus a version (fencing)."""

    def __init__(self, store: ItemStore):
        self.store = store

    def read(self, stage: str, topic: str, partition: int) -> tuple[int, int | None, dict[str, Any]]:
        """(last applied offset or -1, version or None, the whole item)."""
        key = keys.checkpoint_key(stage, topic, partition)
        item = self.store.get_many(keys.STATE, [key]).get(key)
        if item is None:
            return -1, None, {}
        return int(item["offset"]), int(item["version"]), item

    def unapplied(self, stage: str, records: list[KafkaRecord], report: BatchReport):
        """Records of one partition above the checkpoint (the rest count as skipped in `report`),
        with the checkpoint's offset, version and item."""
        ck_offset, version, item = self.read(stage, records[0].topic, records[0].partition)
        fresh = [r for r in records if r.offset > ck_offset]
        report.skipped += len(records) - len(fresh)
        return fresh, ck_offset, version, item

    def advance(self, stage: str, topic: str, partition: int, offset: int, version: int | None, **extra: Any) -> int:
        pk, sk = keys.checkpoint_key(stage, topic, partition)
        new_version = (version or 0) + 1
        item = {"pk": pk, "sk": sk, "stage": stage, "topic": topic, "partition": partition,
                "offset": offset, "version": new_version, **extra}
        self.store.put_if_version(keys.STATE, item, version)
        return new_version


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes for Kafka values (orjson: ~15x faster than json.dumps on this hot path)."""
    return orjson.dumps(obj, default=str)


loads = orjson.loads
