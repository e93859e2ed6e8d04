"""Kafka adapter of the Publisher port (kafka-python), for MSK or any Kafka (Tansu locally).

One producer per container, reused by warm invocations: acks=all, retries with backoff, idempotent
ordering (one request in flight per connection, so retries cannot reorder a partition), and a
bounded flush: a broker that does not acknowledge in time raises InfrastructureError and the batch
is retried by the event-source mapping.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from clearing.config import KafkaSettings
from clearing.ports import InfrastructureError, OutboundMessage


def producer_config(settings: KafkaSettings) -> dict:
    config: dict = {
        "bootstrap_servers": settings.kafka_bootstrap_servers.split(","),
        "acks": "all",
        "retries": 5,
        "retry_backoff_ms": 100,
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 2,
        "batch_size": 256 * 1024,
        "request_timeout_ms": int(settings.kafka_flush_timeout_seconds * 1000),
        "security_protocol": settings.kafka_security_protocol,
        "client_id": "clearing-pipeline",
    }
    if settings.kafka_sasl_mechanism:
        config["sasl_mechanism"] = settings.kafka_sasl_mechanism
        if settings.kafka_sasl_mechanism.startswith("SCRAM"):
            user, password = _scram_credentials(settings)
            config["sasl_plain_username"], config["sasl_plain_password"] = user, password
    return config


def _scram_credentials(settings: KafkaSettings) -> tuple[str, str]:
    if not settings.kafka_sasl_secret_arn:
        raise InfrastructureError("KAFKA_SASL_SECRET_ARN is required for SCRAM authentication")
    import boto3

    secret = boto3.client("secretsmanager", region_name=settings.aws_region).get_secret_value(
        SecretId=settings.kafka_sasl_secret_arn
    )
    data = json.loads(secret["SecretString"])
    return data["username"], data["password"]


class KafkaPublisher:
    def __init__(self, settings: KafkaSettings, producer=None):
        self.settings = settings
        self._producer = producer

    @property
    def producer(self):
        if self._producer is None:
            from kafka import KafkaProducer
            from kafka.errors import KafkaError

            try:
                self._producer = KafkaProducer(**producer_config(self.settings))
            except KafkaError as exc:
                raise InfrastructureError(
                    f"cannot connect to Kafka {self.settings.kafka_bootstrap_servers}: {exc}"
                ) from exc
        return self._producer

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if not messages:
            return
        from kafka.errors import KafkaError

        producer = self.producer
        try:
            futures = [
                producer.send(m.topic, key=m.key, value=m.value, headers=list(m.headers) or None)
                for m in messages
            ]
            producer.flush(timeout=self.settings.kafka_flush_timeout_seconds)
            for f in futures:
                f.get(timeout=0)  # raises the send's error, if any
        except KafkaError as exc:
            raise InfrastructureError(f"Kafka publish failed: {exc!r}") from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close(timeout=5)
            self._producer = None


def true_end_offsets(consumer, tps: list, timeout: float = 5.0) -> dict:
    """The real next offset of each partition: ListOffsets(latest) of Tansu answers the base offset of
    the last record batch + 1, not the high-water mark, so this fetches that last batch and reads its
    real last offset (right for MSK too). Used by the RetainedLog adapter and the local runtime.

    Uses `consumer` as a probe: it is (re)assigned to `tps`, so pass a consumer used for nothing else.
    """
    reported = consumer.end_offsets(tps)
    ends = dict(reported)
    probe = [tp for tp in tps if reported[tp] > 0]
    if not probe:
        return ends
    consumer.assign(probe)
    for tp in probe:
        consumer.seek(tp, reported[tp] - 1)
    pending = set(probe)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200, max_records=100000).items():
            if records:
                ends[tp] = max(ends[tp], records[-1].offset + 1)
            pending.discard(tp)
            consumer.pause(tp)  # its last batch is read; keep the others polling
    consumer.resume(*probe)
    return ends
