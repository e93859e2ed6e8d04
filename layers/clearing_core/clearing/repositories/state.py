"""The state table: what each stage needs to apply a record exactly once.

Records (docs/data-model.md):
- checkpoints `(CKPT#{stage}#{topic}#{partition}, -)`: last applied offset and a version (fencing);
- book snapshots `(BOOK#{symbol}, -)`, with chunk items `(BOOK#{symbol}, v{version}#c{n})` for a
  deep book (match_orders);
- the exposure ledger `(EXPOSURE#{member}, RESERVED | RELEASED | EXCHANGE)` (validate_orders) and
  the exposure each exchange-routed order still holds `(EXPOSURE#{member}, XO#{client_order_id})`;
- clearing states `(CLEARSTATE#{symbol}, -)`: applied offset and source watermark (clear_trades).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from clearing.domain.book import OrderBook
from clearing.ports import Item, ItemStore, Key
from clearing.repositories.keys import (
    STATE,
    book_key,
    checkpoint_key,
    clearing_state_key,
    exchange_order_key,
    exposure_key,
)


# ------------------------------------------------------------------ checkpoints
class CheckpointRecords:
    """Per-(stage, topic, partition) checkpoints; services.batch.Checkpoints decides what they mean."""

    def __init__(self, store: ItemStore):
        self.store = store

    @staticmethod
    def key(stage: str, topic: str, partition: int) -> Key:
        return checkpoint_key(stage, topic, partition)

    def read(self, stage: str, topic: str, partition: int) -> Item | None:
        key = checkpoint_key(stage, topic, partition)
        return self.store.get_many(STATE, [key]).get(key)

    def read_with(
        self, stage: str, topic: str, partition: int, state_keys: Iterable[Key]
    ) -> tuple[Item | None, dict[Key, Item]]:
        """The checkpoint and the state items of `state_keys`, in one request."""
        ck_key = checkpoint_key(stage, topic, partition)
        found = self.store.get_many(STATE, [ck_key, *state_keys])
        return found.pop(ck_key, None), found

    def offsets(self, checkpoints: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], int]:
        """(stage, topic, partition) -> checkpointed offset of those that exist, in one request."""
        found = self.store.get_many(STATE, [checkpoint_key(*c) for c in checkpoints])
        return {(c["stage"], c["topic"], int(c["partition"])): int(c["offset"]) for c in found.values()}

    def write(
        self,
        stage: str,
        topic: str,
        partition: int,
        offset: int,
        version: int,
        expected: int | None,
        **extra: Any,
    ) -> None:
        """Put the checkpoint at `version` if the stored one still has version `expected` (None: none)."""
        pk, sk = checkpoint_key(stage, topic, partition)
        item = {
            "pk": pk,
            "sk": sk,
            "stage": stage,
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "version": version,
            **extra,
        }
        self.store.put_if_version(STATE, item, expected)


# ------------------------------------------------------------------ the exposure ledger
class ExposureLedger:
    """Each member's exposure: RESERVED (validate_orders, per orders.new partition the highest offset
    it includes), RELEASED (from orders.events, with a watermark per orders.accepted partition) and
    EXCHANGE (from exchange.executions, with a watermark per exchange.executions partition and a
    version: a member's exchange orders are spread over the partitions of their symbols, so several
    invocations may write it, each conditionally). Read together with a checkpoint
    (CheckpointRecords.read_with), written here."""

    def __init__(self, store: ItemStore, writer: str):
        self.store = store
        self.writer = writer

    @staticmethod
    def keys(member_id: str) -> tuple[Key, Key, Key]:
        return (
            exposure_key(member_id, "RESERVED"),
            exposure_key(member_id, "RELEASED"),
            exposure_key(member_id, "EXCHANGE"),
        )

    @staticmethod
    def exchange_key(member_id: str) -> Key:
        return exposure_key(member_id, "EXCHANGE")

    @staticmethod
    def exchange_order_key(member_id: str, client_order_id: str) -> Key:
        return exchange_order_key(member_id, client_order_id)

    @staticmethod
    def released_key(member_id: str) -> Key:
        return exposure_key(member_id, "RELEASED")

    @staticmethod
    def of_member(found: Mapping[Key, Item], member_id: str, partition: int) -> tuple[Decimal, int, Decimal]:
        """(reserved, highest orders.new offset of `partition` it includes or -1, released adjustment:
        from orders.events and from exchange.executions)."""
        res = found.get(exposure_key(member_id, "RESERVED"), {})
        rel = found.get(exposure_key(member_id, "RELEASED"), {})
        exch = found.get(exposure_key(member_id, "EXCHANGE"), {})
        return (
            Decimal(res.get("reserved", "0")),
            int(res.get("applied", {}).get(str(partition), -1)),
            Decimal(rel.get("adjustment", "0")) + Decimal(exch.get("adjustment", "0")),
        )

    @staticmethod
    def released_of(found: Mapping[Key, Item], member_id: str) -> tuple[Decimal, dict[str, Any]]:
        """(adjustment, watermarks per orders.accepted partition) of the member's RELEASED item."""
        rel = found.get(exposure_key(member_id, "RELEASED"), {})
        return Decimal(rel.get("adjustment", "0")), dict(rel.get("watermarks", {}))

    def save_reserved(
        self,
        found: Mapping[Key, Item],
        partition: int,
        reserved: Mapping[str, Decimal],
        last_offsets: Mapping[str, int],
    ) -> int:
        """RESERVED of each member in `last_offsets` (one put_many, even when empty): its reserved
        exposure and, for `partition`, the highest orders.new offset it includes."""
        items = []
        for member_id, offset in last_offsets.items():
            pk, sk = key = exposure_key(member_id, "RESERVED")
            prior = found.get(key, {}).get("applied", {})
            items.append(
                {
                    "pk": pk,
                    "sk": sk,
                    "member_id": member_id,
                    "reserved": str(reserved[member_id]),
                    "applied": {**prior, str(partition): offset},
                    "written_by": self.writer,
                }
            )
        self.store.put_many(STATE, items)
        return len(items)

    def save_exchange(
        self,
        member_id: str,
        item: Mapping[str, Any] | None,
        partition: int,
        deltas: list[tuple[int, Decimal]],
    ) -> bool:
        """Apply `deltas` ((exchange.executions offset, exposure delta) of `partition`, in offset
        order) above the item's watermark for `partition` to the member's EXCHANGE item `item` (None:
        none yet), on condition that it still has the version read. False: nothing to apply (a
        redelivery); StaleCheckpoint: another partition wrote it meanwhile (read it again, retry)."""
        item = item or {}
        marks = dict(item.get("watermarks", {}))
        mark = int(marks.get(str(partition), -1))
        todo = [d for offset, d in deltas if offset > mark]
        if not todo:
            return False
        version = item.get("version")
        pk, sk = exposure_key(member_id, "EXCHANGE")
        marks[str(partition)] = deltas[-1][0]
        self.store.put_if_version(
            STATE,
            {
                "pk": pk,
                "sk": sk,
                "member_id": member_id,
                "adjustment": str(Decimal(item.get("adjustment", "0")) + sum(todo, Decimal(0))),
                "watermarks": marks,
                "version": int(version or 0) + 1,
                "written_by": self.writer,
            },
            None if version is None else int(version),
        )
        return True

    def read_exchange(self, member_id: str) -> Item | None:
        key = exposure_key(member_id, "EXCHANGE")
        return self.store.get_many(STATE, [key]).get(key)

    def save_exchange_orders(self, orders: Mapping[tuple[str, str], Mapping[str, Any]]) -> int:
        """The exposure each exchange order still holds, keyed (member, client order id of its NEW)
        (one put_many, even when empty)."""
        items = []
        for (member_id, clordid), state in orders.items():
            pk, sk = exchange_order_key(member_id, clordid)
            items.append({"pk": pk, "sk": sk, "member_id": member_id, "client_order_id": clordid, **state})
        for item in items:
            item["written_by"] = self.writer
        self.store.put_many(STATE, items)
        return len(items)

    def save_released(self, released: Mapping[str, tuple[Decimal, dict[str, Any]]]) -> int:
        """RELEASED of each member: (adjustment, watermarks) (one put_many, even when empty)."""
        items = []
        for member_id, (adjustment, watermarks) in released.items():
            pk, sk = exposure_key(member_id, "RELEASED")
            items.append(
                {
                    "pk": pk,
                    "sk": sk,
                    "member_id": member_id,
                    "adjustment": str(adjustment),
                    "watermarks": watermarks,
                    "written_by": self.writer,
                }
            )
        self.store.put_many(STATE, items)
        return len(items)


# ------------------------------------------------------------------ book snapshots
@dataclass
class SymbolBook:
    book: OrderBook
    version: int = 0
    applied_offset: int = -1
    watermarks: dict[str, int] = field(default_factory=dict)


# A DynamoDB item holds at most 400 KB: a deep book's snapshot is split into chunk items keyed by the
# snapshot version (written first; the head item, written last, names the version and chunk count),
# so a crash between chunk writes never leaves a torn snapshot. Superseded chunks expire by TTL.
CHUNK_BYTES = 300_000
CHUNK_TTL_SECONDS = 2 * 24 * 3600


def encode_book(state: SymbolBook) -> bytes:
    return zlib.compress(orjson.dumps(state.book.snapshot()), 1)


def snapshot_items(symbol: str, state: SymbolBook, writer: str, now: float) -> list[Item]:
    """The head item of a symbol's snapshot, preceded by its chunk items when it is too big for one."""
    blob = encode_book(state)
    pk, sk = book_key(symbol)
    head = {
        "pk": pk,
        "sk": sk,
        "symbol": symbol,
        "version": state.version,
        "applied_offset": state.applied_offset,
        "watermarks": state.watermarks,
        "resting_orders": len(state.book),
        "written_by": writer,
    }
    if len(blob) <= CHUNK_BYTES:
        return [{**head, "book": blob, "chunks": 0}]
    parts = [blob[i : i + CHUNK_BYTES] for i in range(0, len(blob), CHUNK_BYTES)]
    chunks = [
        {"pk": pk, "sk": f"v{state.version}#c{n}", "book": part, "expires_at": int(now) + CHUNK_TTL_SECONDS}
        for n, part in enumerate(parts)
    ]
    return [*chunks, {**head, "chunks": len(parts)}]


def decode_book(item: Item, store: ItemStore | None = None) -> SymbolBook:
    blob: Any = item.get("book")
    if item.get("chunks"):
        wanted = [(item["pk"], f"v{item['version']}#c{n}") for n in range(int(item["chunks"]))]
        found = store.get_many(  # type: ignore[union-attr]  # a chunked book is decoded with its store
            STATE, wanted
        )
        blob = b"".join(found[k]["book"] for k in wanted)
    book = OrderBook.restore(orjson.loads(zlib.decompress(blob)))
    return SymbolBook(
        book, int(item["version"]), int(item["applied_offset"]), dict(item.get("watermarks", {}))
    )


class BookSnapshots:
    """Each symbol's order book as of the last orders.accepted offset it includes."""

    def __init__(self, store: ItemStore, writer: str):
        self.store = store
        self.writer = writer

    def load(self, symbols: Iterable[str]) -> dict[str, SymbolBook | None]:
        """The stored book of each symbol (None: none yet): one request, plus one for chunked books."""
        symbols = list(symbols)
        found = self.store.get_many(STATE, [book_key(s) for s in symbols])
        out: dict[str, SymbolBook | None] = {}
        for s in symbols:
            item = found.get(book_key(s))
            out[s] = decode_book(item, self.store) if item else None
        return out

    def save(self, books: Mapping[str, SymbolBook], now: float) -> int:
        """Write the snapshot of each book: the chunks of deep books first, then the heads (two
        put_many, even when empty), so that a head never names chunks not yet written."""
        chunks: list[Item] = []
        heads: list[Item] = []
        for symbol, state in books.items():
            *parts, head = snapshot_items(symbol, state, self.writer, now)
            chunks.extend(parts)
            heads.append(head)
        self.store.put_many(STATE, chunks)
        self.store.put_many(STATE, heads)
        return len(chunks) + len(heads)


# ------------------------------------------------------------------ clearing states
class ClearingStates:
    """Per symbol, what clear_trades has applied: the trades.executed offset and the source watermark
    ((orders.accepted offset, seq)) of the last trade."""

    def __init__(self, store: ItemStore, writer: str):
        self.store = store
        self.writer = writer

    @staticmethod
    def key(symbol: str) -> Key:
        return clearing_state_key(symbol)

    @staticmethod
    def mark_of(found: Mapping[Key, Item], symbol: str) -> dict[str, Any]:
        """The symbol's state as a mutable mark: `applied_offset` and `watermark` when it has one."""
        return found.get(clearing_state_key(symbol), {})

    def save(self, marks: Mapping[str, Mapping[str, Any]]) -> int:
        """Write the marks that hold an applied offset (one put_many, even when empty)."""
        items = []
        for symbol, mark in marks.items():
            if "applied_offset" in mark:
                pk, sk = clearing_state_key(symbol)
                items.append(
                    {
                        "pk": pk,
                        "sk": sk,
                        "symbol": symbol,
                        "applied_offset": mark["applied_offset"],
                        "watermark": mark["watermark"],
                        "written_by": self.writer,
                    }
                )
        self.store.put_many(STATE, items)
        return len(items)
