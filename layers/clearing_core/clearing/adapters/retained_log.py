"""Adapters of the RetainedLog port (clearing.services.replay): reading what Kafka still holds.

`KafkaRetainedLog` reads a partition of a real Kafka (MSK, or Tansu locally) without joining a
consumer group and without committing anything, so it never disturbs the event-source mappings.
`InMemoryRetainedLog` reads an in-memory log such as clearing_tools.bench.harness.InMemoryLog (unit tests).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from clearing.ports import InfrastructureError, KafkaRecord


class InMemoryRetainedLog:
    """The RetainedLog port over an in-memory log with `.partitions` and `.topics` (offset = list index),
    e.g. clearing_tools.bench.harness.InMemoryLog.

    `begin` ({(topic, partition): offset}) plays retention: offsets below it are gone.
    `timestamp_ms` (a number, or a function of (topic, partition, offset)) gives record timestamps."""

    def __init__(self, log, begin: dict[tuple[str, int], int] | None = None, timestamp_ms=0):
        self.log = log
        self.begin = dict(begin or {})
        self.timestamp_ms = timestamp_ms

    def partitions(self, topic: str) -> list[int]:
        return list(range(self.log.partitions)) if topic in self.log.topics else []

    def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (first retained offset, end offset = next offset to be written)."""
        if topic not in self.log.topics:
            return {}
        return {
            p: (
                min(self.begin.get((topic, p), 0), len(self.log.topics[topic][p])),
                len(self.log.topics[topic][p]),
            )
            for p in range(self.log.partitions)
        }

    def close(self) -> None:
        pass

    def _timestamp(self, topic: str, partition: int, offset: int) -> int:
        ts = self.timestamp_ms
        return int(ts(topic, partition, offset) if callable(ts) else ts)

    def partition_for(self, topic: str, key: bytes) -> int:
        from clearing.adapters.memory import partition_for

        return partition_for(key, self.log.partitions)

    def read(
        self, topic: str, partition: int, start: int = 0, end: int | None = None
    ) -> Iterator[KafkaRecord]:
        if topic not in self.log.topics:
            return
        rows = self.log.topics[topic][partition]
        stop = len(rows) if end is None else min(end, len(rows))
        for offset in range(max(start, self.begin.get((topic, partition), 0), 0), stop):
            key, value = rows[offset]
            yield KafkaRecord(topic, partition, offset, key, value, self._timestamp(topic, partition, offset))


class KafkaRetainedLog:
    """The RetainedLog port over kafka-python: assign + seek, never a group join, never a commit.

    `partition_for` is Kafka's default partitioner (murmur2 of the key), the one every producer of
    the pipeline uses (kafka-python, and Java clients such as the OMS)."""

    def __init__(self, bootstrap_servers: str, poll_timeout_s: float = 10.0, **consumer_config):
        self.bootstrap_servers = bootstrap_servers
        self.poll_timeout_s = poll_timeout_s
        self.consumer_config = consumer_config
        self._consumer = None
        self._probe = None
        self._partitions: dict[str, list[int]] = {}

    def _new_consumer(self, client_id: str):
        from kafka import KafkaConsumer

        return KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers.split(","),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            client_id=client_id,
            **self.consumer_config,
        )

    @property
    def consumer(self):
        if self._consumer is None:
            self._consumer = self._new_consumer("clearing-replay-reader")
        return self._consumer

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            parts = None
            deadline = time.monotonic() + 5
            while not parts and time.monotonic() < deadline:
                parts = self.consumer.partitions_for_topic(topic)
                if not parts:
                    time.sleep(0.1)
            if not parts:
                return []  # not cached: the topic may be created later
            self._partitions[topic] = sorted(parts)
        return self._partitions[topic]

    def partition_for(self, topic: str, key: bytes) -> int:
        from kafka.partitioner.default import murmur2

        parts = self.partitions(topic)
        if not parts:
            raise InfrastructureError(f"topic {topic!r} does not exist")
        return (murmur2(key) & 0x7FFFFFFF) % len(parts)

    def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition: (first retained offset, end offset = next offset to be written), both read
        when the call starts (the end from the last batch, which is right for Tansu and MSK alike)."""
        from kafka import TopicPartition

        from clearing.adapters.kafka import true_end_offsets

        tps = [TopicPartition(topic, p) for p in self.partitions(topic)]
        if not tps:
            return {}
        if self._probe is None:
            self._probe = self._new_consumer("clearing-replay-probe")
        ends = true_end_offsets(self._probe, tps)
        begins = self.consumer.beginning_offsets(tps)
        return {tp.partition: (int(begins[tp]), int(ends[tp])) for tp in tps}

    def _end_offset(self, tp) -> int:
        from clearing.adapters.kafka import true_end_offsets  # right for MSK too: reads the last batch

        if self._probe is None:  # a second consumer: true_end_offsets re-assigns the one it is given
            self._probe = self._new_consumer("clearing-replay-probe")
        return true_end_offsets(self._probe, [tp])[tp]

    def read(
        self, topic: str, partition: int, start: int = 0, end: int | None = None
    ) -> Iterator[KafkaRecord]:
        """Records [start, end) of one partition (end: the partition's end when the call starts)."""
        from kafka import TopicPartition

        if partition not in self.partitions(topic):
            return
        tp = TopicPartition(topic, partition)
        stop = self._end_offset(tp) if end is None else min(end, self._end_offset(tp))
        consumer = self.consumer
        begin = max(start, consumer.beginning_offsets([tp])[tp])
        if begin >= stop:
            return
        consumer.assign([tp])
        consumer.seek(tp, begin)
        next_offset = begin
        idle_deadline = time.monotonic() + self.poll_timeout_s
        while next_offset < stop:
            batch = consumer.poll(timeout_ms=200, max_records=5000).get(tp, [])
            if not batch:
                if consumer.position(tp) >= stop:
                    return  # the rest were control records or compacted away
                if time.monotonic() > idle_deadline:
                    raise InfrastructureError(
                        f"{topic}/{partition}: no records after offset {next_offset} "
                        f"within {self.poll_timeout_s} s (end {stop})"
                    )
                continue
            idle_deadline = time.monotonic() + self.poll_timeout_s
            for r in batch:
                if r.offset < next_offset:
                    continue  # a batch re-read after seek
                if r.offset >= stop:
                    return
                next_offset = r.offset + 1
                yield KafkaRecord(
                    topic,
                    partition,
                    r.offset,
                    r.key,
                    r.value,
                    int(r.timestamp or 0),
                    tuple((h[0], bytes(h[1])) for h in (r.headers or ())),
                )

    def close(self) -> None:
        for consumer in (self._consumer, self._probe):
            if consumer is not None:
                consumer.close()
        self._consumer = self._probe = None
