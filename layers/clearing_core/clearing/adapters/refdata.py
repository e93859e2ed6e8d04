"""Reference data sources: the bundled file (local runs, tests) and the DynamoDB table with a TTL cache."""

from __future__ import annotations

import time
from typing import Any

from clearing.domain.refdata import ReferenceData, bundled_reference_data_raw
from clearing.ports import ItemStore
from clearing.repositories.reference import ReferenceRecords


class StaticReferenceData:
    def __init__(self, data: ReferenceData | None = None):
        self.data = data or ReferenceData.from_dict(bundled_reference_data_raw())

    def current(self) -> ReferenceData:
        return self.data


def seed_reference_data(store: ItemStore, raw: dict[str, Any] | None = None) -> int:
    return ReferenceRecords(store).seed(raw or bundled_reference_data_raw())


def read_reference_data(store: ItemStore) -> ReferenceData:
    return ReferenceRecords(store).read()


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
