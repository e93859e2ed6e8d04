"""An in-memory pipeline: the real services over in-memory ports, fed through real MSK event shapes.

Used by unit tests (redelivery, crash between writes) and by `clearing bench handlers`. Messages a
stage publishes are appended to an in-memory log per (topic, partition) with offsets, exactly like
Kafka would, and delivered to the next stage as MSK events.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from clearing.adapters.memory import InMemoryItemStore, partition_for
from clearing.adapters.refdata import StaticReferenceData
from clearing.ports import OutboundMessage

DEFAULT_PARTITIONS = 3


class InMemoryLog:
    """Kafka-like log: topic -> partition -> list of (key, value); the offset is the list index."""

    def __init__(self, partitions: int = DEFAULT_PARTITIONS):
        self.partitions = partitions
        self.topics: dict[str, dict[int, list[tuple[bytes, bytes]]]] = defaultdict(lambda: defaultdict(list))

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        for m in messages:
            self.topics[m.topic][partition_for(m.key, self.partitions)].append((m.key, m.value))

    def append(self, topic: str, key: bytes, value: bytes) -> tuple[int, int]:
        p = partition_for(key, self.partitions)
        self.topics[topic][p].append((key, value))
        return p, len(self.topics[topic][p]) - 1

    def size(self, topic: str) -> int:
        return sum(len(v) for v in self.topics[topic].values())

    def values(self, topic: str) -> list[bytes]:
        return [v for p in sorted(self.topics[topic]) for _, v in self.topics[topic][p]]

    def event(self, topic: str, partition: int, start: int, end: int) -> dict[str, Any]:
        """An MSK event holding offsets [start, end) of one partition."""
        rows = self.topics[topic][partition][start:end]
        return {
            "eventSource": "aws:kafka",
            "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/clearing/local-1",
            "bootstrapServers": "memory",
            "records": {
                f"{topic}-{partition}": [
                    {
                        "topic": topic,
                        "partition": partition,
                        "offset": start + i,
                        "timestamp": 0,
                        "timestampType": "CREATE_TIME",
                        "key": base64.b64encode(k).decode(),
                        "value": base64.b64encode(v).decode(),
                        "headers": [],
                    }
                    for i, (k, v) in enumerate(rows)
                ]
            },
        }


class InMemoryPipeline:
    """validate_orders -> match_orders -> clear_trades over one in-memory store and log."""

    def __init__(self, partitions: int = DEFAULT_PARTITIONS, refdata=None, store=None):
        from clearing.services.match import MatchOrders
        from clearing.services.validate import ValidateOrders

        self.log = InMemoryLog(partitions)
        self.store = store or InMemoryItemStore()
        self.refdata = refdata or StaticReferenceData()
        self.validate = ValidateOrders(self.store, self.log, self.refdata)
        self.match = MatchOrders(self.store, self.log, self.refdata)
        from clearing.services.clear import ClearTrades

        self.clear = ClearTrades(self.store, self.log, self.refdata)
        self.consumed: dict[tuple[str, str, int], int] = defaultdict(
            int
        )  # (stage, topic, partition) -> next offset

    def publish_orders(self, orders: list[bytes], key_of) -> None:
        for raw in orders:
            self.log.append("orders.new", key_of(raw), raw)

    def stage_handlers(self):
        from clearing.services.batch import run_partitions

        stages = [
            ("validate", "orders.new", lambda ev: run_partitions(ev, self.validate.validate_partition)),
            ("match", "orders.accepted", lambda ev: run_partitions(ev, self.match.match_partition)),
            ("release", "orders.events", lambda ev: run_partitions(ev, self.validate.release_partition)),
            (
                "release_exchange",
                "exchange.executions",
                lambda ev: run_partitions(ev, self.validate.release_exchange_partition),
            ),
            ("clear", "trades.executed", lambda ev: run_partitions(ev, self.clear.clear_partition)),
        ]
        return stages

    def drain(self, batch_size: int = 1000, redeliver: bool = False) -> dict[str, Any]:
        """Run every stage until no stage has unconsumed records; optionally deliver each batch twice."""
        totals: dict[str, Any] = defaultdict(int)
        progress = True
        while progress:
            progress = False
            for stage, topic, run in self.stage_handlers():
                for partition in range(self.log.partitions):
                    start = self.consumed[(stage, topic, partition)]
                    end = min(len(self.log.topics[topic][partition]), start + batch_size)
                    if start >= end:
                        continue
                    event = self.log.event(topic, partition, start, end)
                    report = run(event)
                    if redeliver:
                        run(event)
                    if report.failures:
                        raise RuntimeError(f"{stage} failed: {report.failures}")
                    self.consumed[(stage, topic, partition)] = end
                    for k, v in report.summary().items():
                        if isinstance(v, int):
                            totals[f"{stage}.{k}"] += v
                    progress = True
        return dict(totals)
