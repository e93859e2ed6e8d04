"""In-memory adapters: the same ports as DynamoDB and Kafka, for unit tests and benchmarks."""

from __future__ import annotations

import pickle
import zlib
from collections.abc import Iterable, Sequence
from decimal import Decimal

import orjson

from clearing.ports import Item, Key, OutboundMessage, StaleCheckpoint

MAX_ITEM_BYTES = 400 * 1024  # DynamoDB's item size limit (names and values, UTF-8)


class ItemTooLarge(ValueError):
    """An item over DynamoDB's 400 KB: DynamoDB refuses the whole write (ValidationException), so the
    in-memory store does too, so that unit tests catch what would fail a batch in AWS."""


def _text_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _value_size(value) -> int:
    kind = type(value)
    if kind is str:
        return len(value) if value.isascii() else _text_size(value)
    if kind is bool or value is None:
        return 1
    if kind is int or kind is float or kind is Decimal:
        return min(21, len(str(value)) // 2 + 2)  # DynamoDB: about 1 byte per 2 digits, plus 1
    if kind is bytes or kind is bytearray:
        return len(value)
    if kind is dict:
        return 3 + sum(_text_size(str(k)) + 1 + _value_size(v) for k, v in value.items())
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return 3 + sum(1 + _value_size(v) for v in value)
    return _text_size(str(value))


def item_size(item: Item) -> int:
    """The approximate size DynamoDB counts for an item: attribute names plus values (UTF-8 strings,
    binary lengths, about half a byte per digit for numbers, 3 bytes plus 1 per element for lists and maps)."""
    return sum(_text_size(name) + _value_size(value) for name, value in item.items())


def _json_size(item: Item) -> int:
    """Length of the item as JSON (binary counted by its length): never less than 2/3 of item_size
    (a number list's worst case), computed in C at a seventh of the cost."""
    binary = 0

    def default(value):
        nonlocal binary
        if type(value) is bytes or type(value) is bytearray:
            binary += len(value)
            return None
        return str(value)

    return len(orjson.dumps(item, default=default)) + binary


def _check_size(item: Item) -> None:
    try:
        if _json_size(item) <= MAX_ITEM_BYTES // 2:  # the common case: far below the limit
            return
    except orjson.JSONEncodeError:  # an int beyond 64 bits, a key that is not a string: count it
        pass
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ItemTooLarge(
            f"item {str(item.get('pk'))[:64]!r}/{str(item.get('sk'))[:64]!r} is about {size} bytes; "
            f"DynamoDB's limit is {MAX_ITEM_BYTES}"
        )


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
        for item in items:  # checked first: DynamoDB refuses a batch holding an item that is too large
            _check_size(item)
        for item in items:
            t[(item["pk"], item["sk"])] = _copy(item)
        self.writes += len(items)

    def put_if_version(self, table: str, item: Item, expected_version: int | None) -> None:
        _check_size(item)
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


def partition_for(key: bytes, partitions: int) -> int:
    """A stable key -> partition map (Kafka's murmur2 is not needed for an in-memory log)."""
    return zlib.crc32(key) % partitions
