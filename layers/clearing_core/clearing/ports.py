"""Ports: what the services need from the outside world, as Protocols.

Adapters implement them: DynamoDB and Kafka for real runs (clearing.adapters.dynamodb / .kafka),
dictionaries and lists for unit tests and benchmarks (clearing.adapters.memory).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from clearing.domain.refdata import ReferenceData

Item = dict[str, Any]
Key = tuple[str, str]  # (pk, sk)


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One record of an MSK event, decoded (key and value as bytes)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def position(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = field(default=())


class InfrastructureError(Exception):
    """A dependency failed (throttling, broker down) after bounded retries: the batch must be retried."""


class StaleCheckpoint(InfrastructureError):
    """The checkpoint moved since it was read: another invocation owns this partition now (fenced)."""


class Publisher(Protocol):
    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        """Send and wait for acknowledgement (acks=all), or raise InfrastructureError."""


class ItemStore(Protocol):
    """Key-value items in named tables (logical names: orders, trades, positions, ...)."""

    def get_many(self, table: str, keys: Iterable[Key]) -> dict[Key, Item]:
        """Strongly consistent reads; missing keys are absent from the result."""

    def put_many(self, table: str, items: Sequence[Item]) -> None:
        """Unconditional idempotent puts (batch writes)."""

    def put_if_version(self, table: str, item: Item, expected_version: int | None) -> None:
        """Put `item` only if the stored item's `version` equals expected_version (None: absent).

        Raises StaleCheckpoint when the condition fails."""

    def query(
        self,
        table: str,
        pk: str,
        sk_prefix: str = "",
        index: str | None = None,
        *,
        newest_first: bool = False,
        limit: int | None = None,
    ) -> list[Item]:
        """Items of one partition key (optionally in the gsi1 index), sorted by sort key (descending
        with newest_first); at most `limit` of them (the first ones in that order) when given."""

    def scan(self, table: str) -> list[Item]:
        """Every item of a table: reports, verify and replay only, never a per-order path."""


class ReferenceDataSource(Protocol):
    def current(self) -> ReferenceData:
        """The reference data in force (cached with a short TTL by adapters)."""


class ExchangeProxy(Protocol):
    """Port to the FIX proxy (clearing.fix.client.ProxyClient in production, a fake in unit tests).
    An adapter may also offer `submit_many(requests) -> responses` (pipelined, answers in order); it
    is used when present. Raises ExchangeUnavailable when the proxy cannot answer."""

    def submit(self, request: dict[str, Any]) -> Any:  # -> clearing.fix.gateway_protocol.GatewayResponse
        ...


class ExchangeUnavailable(InfrastructureError):
    """The FIX proxy could not be reached, answered too late or has no session: retry the batch."""


class SettlementFileSink(Protocol):
    """Where end-of-day settlement files go: a folder locally, S3 in AWS."""

    def write(self, name: str, content: bytes) -> str:
        """Store the file; returns where it went (a path or an s3:// URI)."""
