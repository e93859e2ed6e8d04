"""match_orders drives the book with one `apply` per symbol per invocation; its output must be
exactly that of the per-call path it replaced (tests/support/reference_match.py): same items in
every table (order states, trades, book snapshots, checkpoints), same published messages (in order;
values equal as JSON: the typed orders.events messages put the event's ids before its fields, the old
path after), same reports, over a seeded random stream with redeliveries, duplicates, crashes and cold
starts."""

from __future__ import annotations

import collections
import random

import orjson
import pytest
from clearing.adapters.memory import InMemoryItemStore, InMemoryPublisher
from clearing.adapters.refdata import StaticReferenceData
from clearing.ports import InfrastructureError
from clearing.services.match import MatchOrders

from tests.support.accepted_stream import accepted_messages, records
from tests.support.reference_match import ReferenceMatchOrders


class _Side:
    def __init__(self, cls: type[MatchOrders]) -> None:
        self.cls = cls
        self.store = InMemoryItemStore()
        self.out = InMemoryPublisher()
        self.refdata = StaticReferenceData()
        self.service = cls(self.store, self.out, self.refdata)
        self.reports: list[object] = []

    def run(self, batch, fail_checkpoint: bool = False) -> None:
        original = self.store.put_if_version
        if fail_checkpoint:

            def die(table, item, expected):
                raise InfrastructureError("crash before the checkpoint")

            self.store.put_if_version = die  # type: ignore[method-assign]
        try:
            self.reports.append(self.service.match_partition(batch))
        except InfrastructureError as exc:
            self.reports.append(repr(exc))
        finally:
            self.store.put_if_version = original  # type: ignore[method-assign]

    def cold_start(self) -> None:
        self.service = self.cls(self.store, self.out, self.refdata)


def _report_tuple(r):
    if isinstance(r, str):
        return r
    return (
        r.consumed,
        r.accepted,
        r.rejected,
        r.skipped,
        r.failed,
        dict(r.rejected_by_reason),
        dict(r.counters),
    )


def _as_json(messages):
    return [(m.topic, m.key, orjson.loads(m.value)) for m in messages]


def _drive(seed: int, n: int):
    rng = random.Random(seed)
    recs = records(accepted_messages(n, seed))
    old, new = _Side(ReferenceMatchOrders), _Side(MatchOrders)
    start = 0
    while start < len(recs):
        size = rng.randint(1, 90)
        batch = recs[start : start + size]
        choice = rng.random()
        if choice < 0.15 and start:
            back = rng.randint(1, min(start, 40))  # a redelivery overlapping the previous batch
            batch = recs[start - back : start + size]
        for side in (old, new):
            if choice > 0.9:  # crash after snapshots, before the checkpoint; then redelivered
                side.run(batch, fail_checkpoint=True)
            side.run(batch)
            if 0.85 < choice <= 0.9:
                side.run(batch)  # the whole batch again: below the checkpoint
                side.cold_start()  # a new container: books come from the snapshots
        start += size
    return old, new


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_batched_match_orders_equals_the_per_call_path(seed):
    old, new = _drive(seed, 700)
    assert [_report_tuple(r) for r in new.reports] == [_report_tuple(r) for r in old.reports]
    assert _as_json(new.out.messages) == _as_json(old.out.messages)
    assert new.store.tables == old.store.tables
    # the stream exercised what it is meant to
    kinds = collections.Counter(
        m.value.split(b'"type":"', 1)[1].split(b'"', 1)[0] for m in old.out.on("orders.events")
    )
    assert kinds[b"REPLACED"] > 20 and kinds[b"FILLED"] > 20 and kinds[b"REJECTED"] > 10
    assert kinds[b"CANCELLED"] > 10 and kinds[b"ACCEPTED"] > 20 and kinds[b"PARTIALLY_FILLED"] > 5
    assert old.out.on("orders.deadletter")
    assert any(not isinstance(r, str) and r.skipped for r in old.reports)


def test_the_cyclic_collector_is_paused_only_for_the_batch_and_restored_on_failure():
    import gc

    from clearing.services.match import cyclic_gc_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError), cyclic_gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("a failing batch")
    assert gc.isenabled()
    gc.disable()  # a host that runs without the collector keeps it off
    try:
        with cyclic_gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_match_orders_invocation_failing_mid_batch_leaves_the_collector_on(monkeypatch):
    import gc

    side = _Side(MatchOrders)

    def broken(*args, **kwargs):
        assert not gc.isenabled()  # translation runs with the collector paused
        raise RuntimeError("translation failed")

    monkeypatch.setattr(side.service, "_translate_batch", broken)
    with pytest.raises(RuntimeError, match="translation failed"):
        side.service.match_partition(records(accepted_messages(40, 3)))
    assert gc.isenabled()
