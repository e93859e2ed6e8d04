"""Where the proxy puts what the exchange sends back: the `exchange.executions` topic (a port).

`ExecutionPublisher` is the port: `submit` hands a record over without waiting, `flush` returns once
everything submitted is durable (raises if anything is not). The FIX session submits every message
of one socket read and flushes once before it persists their sequence numbers, so the inbound
sequence number only advances past records that are safely in Kafka, at one produce round trip per
read instead of one per message (each kafka-python round trip costs ~2-3 ms of CPU here).
`KafkaExecutionPublisher` is the production adapter (kafka-python, acks=all);
`InMemoryExecutionPublisher` serves tests and `LogExecutionPublisher` local runs without a broker.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Protocol

_log = logging.getLogger(__name__)


class ExecutionPublisher(Protocol):
    def submit(self, key: str, value: dict[str, Any]) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class InMemoryExecutionPublisher:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []
        self.fail_next = 0  # tests: make the next N submits fail like a broker outage

    def submit(self, key: str, value: dict[str, Any]) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise ConnectionError("in-memory broker unavailable")
        self.records.append((key, value))

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


class LogExecutionPublisher:
    """No broker configured: write each record to the log (local runs only)."""

    def __init__(self, logger: Any = None) -> None:
        self._log = logger or _log

    def submit(self, key: str, value: dict[str, Any]) -> None:
        self._log.info(f"exchange execution {key}: {json.dumps(value, sort_keys=True)}")

    async def flush(self) -> None:
        return None

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
        self._in_flight: list[Any] = []  # futures of records submitted since the last flush

    def _producer_now(self) -> Any:
        if self._producer is None:
            from kafka import KafkaProducer  # imported lazily: unit tests never need it

            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                client_id=self._client_id,
                acks="all",
                linger_ms=5,  # flush() sends at once; a read's records share a produce request
                retries=5,
                key_serializer=lambda k: k.encode("utf-8"),
                value_serializer=lambda v: json.dumps(v, separators=(",", ":")).encode("utf-8"),
            )
        return self._producer

    def submit(self, key: str, value: dict[str, Any]) -> None:
        self._in_flight.append(self._producer_now().send(self.topic, key=key, value=value))

    def _wait_durable(self, futures: list[Any]) -> None:
        self._producer_now().flush(timeout=self._send_timeout)
        for future in futures:
            future.get(timeout=self._send_timeout)  # raises the send's error, if any

    async def flush(self) -> None:
        futures, self._in_flight = self._in_flight, []
        if futures:
            await asyncio.get_running_loop().run_in_executor(None, self._wait_durable, futures)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: (producer.flush(5), producer.close(5))
            )
