"""In-memory adapters: the same ports as DynamoDB and Kafka, for unit tests and benchmarks."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from decimal import Decimal

from clearing.ports import Item, Key, OutboundMessage, StaleCheckpoint

# values that cannot be changed in place: shared between the caller and the store, never copied
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes, Decimal})


def _copy(value):
    """A deep copy of plain item data. Items are mostly flat dicts of strings and numbers, so walking
    them copies only the containers (~20x cheaper than a pickle round trip); anything unexpected
    still gets a full deep copy."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _IMMUTABLE else _copy(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _IMMUTABLE else _copy(v) for v in value]
    if kind in _IMMUTABLE:
        return value
    if kind is tuple:
        return tuple(v if type(v) in _IMMUTABLE else _copy(v) for v in value)
    return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


class InMemoryItemStore:
    """Tables as dicts keyed by (pk, sk). Items are deep-copied in and out, like a real store."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[Key, Item]] = {}
        self.writes = 0  # items written, the figure that sets DynamoDB cost

    def _table(self, table: str) -> dict[Key, Item]:
        return self.tables.setdefault(table, {})

    def get_many(self, table: str, keys: Iterable[Key]) -> dict[Key, Item]:
        t = self._table(table)
        return {k: _copy(t[k]) for k in keys if k in t}

    def put_many(self, table: str, items: Sequence[Item]) -> None:
        if not items:
            return
        t = self._table(table)
        for item in items:
            t[(item["pk"], item["sk"])] = _copy(item)
        self.writes += len(items)

    def put_if_version(self, table: str, item: Item, expected_version: int | None) -> None:
        t = self._table(table)
        current = t.get((item["pk"], item["sk"]))
        current_version = None if current is None else current.get("version")
        if current_version != expected_version:
            raise StaleCheckpoint(f"{item['pk']}: version is {current_version}, expected {expected_version}")
        t[(item["pk"], item["sk"])] = _copy(item)
        self.writes += 1

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
        pk_attr, sk_attr = ("gsi1pk", "gsi1sk") if index else ("pk", "sk")
        rows = [
            _copy(i)
            for i in self._table(table).values()
            if i.get(pk_attr) == pk and str(i.get(sk_attr, "")).startswith(sk_prefix)
        ]
        rows.sort(key=lambda i: str(i.get(sk_attr, "")), reverse=newest_first)
        return rows if limit is None else rows[:limit]

    def scan(self, table: str) -> list[Item]:
        return [_copy(i) for i in self._table(table).values()]


class InMemoryPublisher:
    """Collects published messages per topic; `fail_next` makes the next publish raise (a down broker)."""

    def __init__(self) -> None:
        self.messages: list[OutboundMessage] = []
        self.fail_next = False

    def publish(self, messages: Sequence[OutboundMessage]) -> None:
        if self.fail_next:
            self.fail_next = False
            from clearing.ports import InfrastructureError

            raise InfrastructureError("injected broker failure")
        self.messages.extend(messages)

    def on(self, topic: str) -> list[OutboundMessage]:
        return [m for m in self.messages if m.topic == topic]
