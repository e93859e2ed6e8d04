"""The reference table: reference data as items `(INSTRUMENT, symbol)`, `(MEMBER, member_id)` and
`(CONFIG, reference)`, each holding its JSON in `data`. docs/data-model.md."""

from __future__ import annotations

import json
from typing import Any

from clearing.domain.refdata import ReferenceData
from clearing.ports import Item, ItemStore
from clearing.repositories.keys import REFERENCE


def reference_items(raw: dict[str, Any]) -> list[Item]:
    """The reference data file as reference table items (pk INSTRUMENT/MEMBER/CONFIG)."""
    items = [{"pk": "INSTRUMENT", "sk": i["symbol"], "data": json.dumps(i)} for i in raw["instruments"]]
    items += [{"pk": "MEMBER", "sk": m["member_id"], "data": json.dumps(m)} for m in raw["members"]]
    config = {k: v for k, v in raw.items() if k not in ("instruments", "members")}
    items.append({"pk": "CONFIG", "sk": "reference", "data": json.dumps(config)})
    return items


class ReferenceRecords:
    def __init__(self, store: ItemStore):
        self.store = store

    def seed(self, raw: dict[str, Any]) -> int:
        """Store the reference data file (one put_many); returns the number of items."""
        items = reference_items(raw)
        self.store.put_many(REFERENCE, items)
        return len(items)

    def read(self) -> ReferenceData:
        """The stored reference data; LookupError when the table has not been seeded."""
        config_items = self.store.query(REFERENCE, "CONFIG")
        if not config_items:
            raise LookupError(
                "the reference table is empty: seed it (clearing up does) before processing orders"
            )
        raw = json.loads(config_items[0]["data"])
        raw["instruments"] = [json.loads(i["data"]) for i in self.store.query(REFERENCE, "INSTRUMENT")]
        raw["members"] = [json.loads(i["data"]) for i in self.store.query(REFERENCE, "MEMBER")]
        return ReferenceData.from_dict(raw)
