"""The positions table: each member account's cleared position per symbol and settlement date
(clear_trades), keyed `(member, {symbol}#{account}#{settlement_date})`. docs/data-model.md."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from clearing.domain.clearing import Position
from clearing.ports import Item, ItemStore, Key
from clearing.repositories.keys import POSITIONS, position_key


class PositionRecords:
    def __init__(self, store: ItemStore, writer: str = ""):
        self.store = store
        self.writer = writer

    key = staticmethod(position_key)  # (member_id, symbol, account, settlement_date as ISO text)

    def load(self, keys: Iterable[Key]) -> dict[Key, tuple[Position, int]]:
        """Stored positions of these keys with the highest trades.executed offset each includes."""
        return {
            k: (Position.from_dict(v), int(v["applied_offset"]))
            for k, v in self.store.get_many(POSITIONS, keys).items()
        }

    def save(self, positions: Mapping[Key, tuple[Position, int]], source: str) -> int:
        """Write each position with the trades.executed offset (of partition `source`,
        "topic/partition") it includes up to (one put_many, even when empty)."""
        writer = self.writer
        self.store.put_many(
            POSITIONS,
            [
                {
                    "pk": k[0],
                    "sk": k[1],
                    **p.to_dict(),
                    "applied_offset": o,
                    "last_src": f"{source}/{o}",
                    "written_by": writer,
                }
                for k, (p, o) in positions.items()
            ],
        )
        return len(positions)

    def all(self) -> list[Position]:
        """Every position (a Scan: reports only)."""
        return [Position.from_dict(i) for i in self.store.scan(POSITIONS)]

    def of_member(self, member_id: str, symbol: str | None = None) -> list[Item]:
        """The member's position records (of one symbol when given), by symbol."""
        return self.store.query(POSITIONS, member_id, sk_prefix=f"{symbol}#" if symbol else "")
