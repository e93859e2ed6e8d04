"""Reference data sources: the bundled file (local runs, tests) and the DynamoDB table with a TTL cache."""

from __future__ import annotations

import json
import time
from typing import Any

from clearing.domain.refdata import ReferenceData, bundled_reference_data_raw
from clearing.ports import ItemStore
from clearing.repositories import keys


class StaticReferenceData:
    def __init__(self, data: ReferenceData | None = None):
        self.data = data or ReferenceData.from_dict(bundled_reference_data_raw())

    def current(self) -> ReferenceData:
        return self.data


def reference_items(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The reference data file as ReferenceTable items (pk INSTRUMENT/MEMBER/CONFIG)."""
    items = [{"pk": "INSTRUMENT", "sk": i["symbol"], "data": json.dumps(i)} for i in raw["instruments"]]
    items += [{"pk": "MEMBER", "sk": m["member_id"], "data": json.dumps(m)} for m in raw["members"]]
    config = {k: v for k, v in raw.items() if k not in ("instruments", "members")}
    items.append({"pk": "CONFIG", "sk": "reference", "data": json.dumps(config)})
    return items


def seed_reference_data(store: ItemStore, raw: dict[str, Any] | None = None) -> int:
    items = reference_items(raw or bundled_reference_data_raw())
    store.put_many(keys.REFERENCE, items)
    return len(items)


def read_reference_data(store: ItemStore) -> ReferenceData:
    config_items = store.query(keys.REFERENCE, "CONFIG")
    if not config_items:
        raise LookupError("the reference table is empty: seed it (clearing up does) before processing orders")
    raw = json.loads(config_items[0]["data"])
    raw["instruments"] = [json.loads(i["data"]) for i in store.query(keys.REFERENCE, "INSTRUMENT")]
    raw["members"] = [json.loads(i["data"]) for i in store.query(keys.REFERENCE, "MEMBER")]
    return ReferenceData.from_dict(raw)


class CachedReferenceData:
    """Reads the reference table at most once per `ttl_seconds` (warm Lambdas keep the copy)."""

    def __init__(self, store: ItemStore, ttl_seconds: float = 60.0):
        self.store = store
        self.ttl = ttl_seconds
        self._data: ReferenceData | None = None
        self._loaded_at = 0.0

    def current(self) -> ReferenceData:
        now = time.monotonic()
        if self._data is None or now - self._loaded_at > self.ttl:
            self._data = read_reference_data(self.store)
            self._loaded_at = now
        return self._data
