"""The trades table: executed trades (match_orders) and cleared trades (clear_trades), by trade id.

Records (docs/data-model.md):
- `(trade_id, EXECUTED)`: the trade as published on trades.executed (gsi1: symbol,
  `{executed_at}#{trade_id}`);
- `(trade_id, CLEARED)`: the novated trade with both legs (gsi1: `CLEARED#{symbol}`,
  `{executed_at}#{trade_id}`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from clearing.domain.clearing import NovatedTrade
from clearing.ports import Item, ItemStore, Key
from clearing.repositories.keys import TRADES, trade_key

EXECUTED, CLEARED = "EXECUTED", "CLEARED"


class TradeRecords:
    def __init__(self, store: ItemStore, writer: str = ""):
        self.store = store
        self.writer = writer

    # ------------------------------------------------------------------ writes
    def record_executed(self, trades: Sequence[Mapping[str, Any]]) -> int:
        """The trades of a match_orders batch, as published on trades.executed (one put_many, even
        when empty)."""
        writer = self.writer
        items = []
        for t in trades:
            pk, sk = trade_key(t["trade_id"], EXECUTED)
            items.append(
                {
                    "pk": pk,
                    "sk": sk,
                    **t,
                    "gsi1pk": t["symbol"],
                    "gsi1sk": f"{t['executed_at']}#{t['trade_id']}",
                    "written_by": writer,
                }
            )
        self.store.put_many(TRADES, items)
        return len(items)

    def record_cleared(
        self, cleared: Sequence[tuple[NovatedTrade, Mapping[str, Any], str]], cleared_at_ms: int
    ) -> int:
        """The novated trades of a clear_trades batch: (novated trade, the executed trade it came from,
        its trades.executed position) each (one put_many, even when empty)."""
        writer = self.writer
        items = []
        for result, trade, position in cleared:
            pk, sk = trade_key(result.trade_id, CLEARED)
            items.append(
                {
                    "pk": pk,
                    "sk": sk,
                    **result.to_dict(),
                    "price": trade["price"],
                    "quantity": trade["quantity"],
                    "executed_at": trade.get("executed_at"),
                    "buy_member": result.buy_leg.member_id,
                    "sell_member": result.sell_leg.member_id,
                    "src": position,
                    "cleared_at": cleared_at_ms,
                    "gsi1pk": f"CLEARED#{result.symbol}",
                    "gsi1sk": f"{trade.get('executed_at')}#{result.trade_id}",
                    "written_by": writer,
                }
            )
        self.store.put_many(TRADES, items)
        return len(items)

    # ------------------------------------------------------------------ reads
    def by_ids(self, trade_ids: Iterable[str]) -> dict[Key, Item]:
        """The executed and cleared records of these trades, keyed (trade_id, EXECUTED | CLEARED)."""
        return self.store.get_many(TRADES, [trade_key(t, p) for t in trade_ids for p in (EXECUTED, CLEARED)])

    def executed_in(
        self, symbol: str, since: str = "", *, newest_first: bool = False, limit: int | None = None
    ) -> list[Item]:
        """Executed trades of a symbol in execution order (gsi1), from `since` (an executed_at prefix)."""
        return self.store.query(
            TRADES, symbol, sk_prefix=since, index="gsi1", newest_first=newest_first, limit=limit
        )

    def cleared_in(
        self, symbol: str, since: str = "", *, newest_first: bool = False, limit: int | None = None
    ) -> list[Item]:
        """Cleared trades of a symbol in execution order (gsi1), from `since` (an executed_at prefix)."""
        return self.store.query(
            TRADES, f"CLEARED#{symbol}", sk_prefix=since, index="gsi1", newest_first=newest_first, limit=limit
        )

    def all(self) -> list[Item]:
        """Every executed and cleared trade (a Scan: reports, verify and replay only)."""
        return self.store.scan(TRADES)
