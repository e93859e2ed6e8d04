"""The margin table: margin runs and margin calls (the scheduled margin job).

Records (docs/data-model.md):
- MARGIN `(member, RUN#{run_id})`: the member's requirement in one run;
- MARGIN_CALL `(CALL#{date}, {member}#{run_id})`: a requirement with a shortfall (gsi1: member, run_id).
"""

from __future__ import annotations

from collections.abc import Sequence

from clearing.domain.margin import MarginRequirement
from clearing.ports import Item, ItemStore
from clearing.repositories.keys import MARGIN


class MarginRecords:
    def __init__(self, store: ItemStore):
        self.store = store

    def record_run(self, run_id: str, requirements: Sequence[MarginRequirement]) -> int:
        """A margin run: every member's requirement, then a margin call for each shortfall (one
        put_many, even when empty)."""
        items = [
            {
                "pk": r.member_id,
                "sk": f"RUN#{run_id}",
                "kind": "MARGIN",
                "run_id": run_id,
                **r.to_dict(),
                "is_call": r.is_call,
            }
            for r in requirements
        ]
        items += [
            {
                "pk": f"CALL#{run_id[:10]}",
                "sk": f"{r.member_id}#{run_id}",
                "kind": "MARGIN_CALL",
                "run_id": run_id,
                **r.to_dict(),
                "gsi1pk": r.member_id,
                "gsi1sk": run_id,
            }
            for r in requirements
            if r.is_call
        ]
        self.store.put_many(MARGIN, items)
        return len(items)

    def runs_of(self, member_id: str, since: str = "") -> list[Item]:
        """The member's margin runs in run order, from `since` (a run id prefix: a date)."""
        return self.store.query(MARGIN, member_id, sk_prefix=f"RUN#{since}")

    def calls_of(self, member_id: str, since: str = "") -> list[Item]:
        """The member's margin calls in run order (gsi1), from `since` (a run id prefix: a date)."""
        return [
            m
            for m in self.store.query(MARGIN, member_id, sk_prefix=since, index="gsi1")
            if m.get("kind") == "MARGIN_CALL"
        ]

    def calls_on(self, day: str, member_id: str | None = None) -> list[Item]:
        """The margin calls of the runs of one date (of one member when given)."""
        return self.store.query(MARGIN, f"CALL#{day}", sk_prefix=f"{member_id}#" if member_id else "")
