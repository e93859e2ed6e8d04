"""The obligations table: net obligations (clear_trades) and settlement instructions (end of day).

Records (docs/data-model.md):
- net obligations `(settlement_date, {member}#{symbol})` (gsi1: member, `{settlement_date}#{symbol}`);
- INSTRUCTION `(INSTRUCTIONS#{settlement_date}, {member}#{n:06d})`: the end-of-day settlement
  instructions of one date.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from clearing.domain.netting import NetObligation
from clearing.ports import Item, ItemStore, Key
from clearing.repositories.keys import OBLIGATIONS, obligation_key


class ObligationRecords:
    def __init__(self, store: ItemStore, writer: str = ""):
        self.store = store
        self.writer = writer

    key = staticmethod(obligation_key)  # (member_id, symbol, settlement_date as ISO text)

    # ------------------------------------------------------------------ net obligations
    def load(self, keys: Iterable[Key]) -> dict[Key, tuple[NetObligation, int]]:
        """Stored obligations of these keys with the highest trades.executed offset each includes."""
        return {
            k: (NetObligation.from_dict(v), int(v["applied_offset"]))
            for k, v in self.store.get_many(OBLIGATIONS, keys).items()
        }

    def save(self, obligations: Mapping[Key, tuple[NetObligation, int]], source: str) -> int:
        """Write each obligation with the trades.executed offset (of partition `source`) it includes
        up to (one put_many, even when empty)."""
        writer = self.writer
        self.store.put_many(
            OBLIGATIONS,
            [
                {
                    "pk": k[0],
                    "sk": k[1],
                    **ob.to_dict(),
                    "applied_offset": o,
                    "last_src": f"{source}/{o}",
                    "gsi1pk": ob.member_id,
                    "gsi1sk": f"{ob.settlement_date.isoformat()}#{ob.symbol}",
                    "written_by": writer,
                }
                for k, (ob, o) in obligations.items()
            ],
        )
        return len(obligations)

    def items(self, settlement_date: str | None = None, member: str | None = None) -> list[Item]:
        """Net obligation records of a date, of a member (from a date prefix), or all (a Scan)."""
        if settlement_date and not member:
            items = self.store.query(OBLIGATIONS, settlement_date)
        elif member:
            items = self.store.query(OBLIGATIONS, member, sk_prefix=settlement_date or "", index="gsi1")
        else:
            items = self.store.scan(OBLIGATIONS)
        return [i for i in items if i.get("kind") != "INSTRUCTION"]

    def find(self, settlement_date: str | None = None, member: str | None = None) -> list[NetObligation]:
        return [NetObligation.from_dict(i) for i in self.items(settlement_date, member)]

    # ------------------------------------------------------------------ settlement instructions
    def record_instructions(self, settlement_date: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """The settlement instructions of one date (one put_many, even when empty)."""
        items = [
            {
                "pk": f"INSTRUCTIONS#{settlement_date}",
                "sk": f"{r['member_id']}#{n:06d}",
                "kind": "INSTRUCTION",
                **{k: (str(v) if isinstance(v, Decimal | date) else v) for k, v in r.items()},
            }
            for n, r in enumerate(rows)
        ]
        self.store.put_many(OBLIGATIONS, items)
        return len(items)

    def instructions(self, settlement_date: str, member: str | None = None) -> list[Item]:
        """The settlement instructions of one date (of one member when given)."""
        return self.store.query(
            OBLIGATIONS, f"INSTRUCTIONS#{settlement_date}", sk_prefix=f"{member}#" if member else ""
        )
