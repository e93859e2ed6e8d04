"""Where the proxy puts what the exchange sends back: the `exchange.executions` topic (a port).

`ExecutionPublisher` is the port; `KafkaExecutionPublisher` the production adapter (kafka-python,
acks=all, one blocking round trip per message in a worker thread so the FIX session only
advances its inbound sequence number once the record is safely in Kafka); `InMemoryExecutionPublisher`
serves tests and `LogExecutionPublisher` local runs without a broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class ExecutionPublisher(Protocol):
    async def publish(self, key: str, value: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


class InMemoryExecutionPublisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.fail_next = 0  # tests: make the next N publishes fail like a broker outage

    async def publish(self, key: str, value: dict[str, Any]) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("in-memory broker unavailable")
        self.records.append((key, value))

    async def close(self) -> None:
        return None


class LogExecutionPublisher:
    """No broker configured: write each record to the log (local runs only)."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger or _log

    async def publish(self, key: str, value: dict[str, Any]) -> None:
        self._log.info(f"exchange execution {key}: {json.dumps(value, sort_keys=True)}")

    async def close(self) -> None:
        return None


class KafkaExecutionPublisher:
    def __init__(
        self, bootstrap_servers: str, topic: str, *, send_timeout: float = 10.0, client_id: str = "fix-proxy"
    ) -> None:
        self.topic = topic
        self._bootstrap = [s.strip() for s in bootstrap_servers.split(",") if s.strip()]
        self._send_timeout = send_timeout
        self._client_id = client_id
        self._producer: Any = None

    def _producer_now(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer  # imported lazily: unit tests never need it

            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                linger_ms=0,
                retries=5,
                key_serializer=lambda k: k.encode("utf-8"),
                value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"),
            )
        return self._producer

    def _publish_blocking(self, key: str, value: dict[str, Any]) -> None:
        self._producer_now().send(self.topic, key=key, value=value).get(timeout=self._send_timeout)

    async def publish(self, key: str, value: dict[str, Any]) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._publish_blocking, key, value)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: (producer.flush(5), producer.close(5))
            )
