"""DynamoDB requests per invocation: each stage reads its checkpoint and the state it needs in one
request, so that small batches (steady low rates) pay as few round trips as possible."""

from __future__ import annotations

import json
from collections import Counter

from clearing.adapters.memory import InMemoryItemStore
from clearing_tools.bench.harness import InMemoryPipeline

from tests.unit.test_stream_services import member_key, order


class CountingStore(InMemoryItemStore):
    """Counts calls the way the DynamoDB adapter turns them into requests (one per call here)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter = Counter()

    def get_many(self, table, keys):
        self.calls["get_many"] += 1
        return super().get_many(table, keys)

    def put_many(self, table, items):
        if items:
            self.calls["put_many"] += 1
        return super().put_many(table, items)

    def put_if_version(self, table, item, expected_version):
        self.calls["put_if_version"] += 1
        return super().put_if_version(table, item, expected_version)

    def query(self, table, pk, sk_prefix="", index=None):
        self.calls["query"] += 1
        return super().query(table, pk, sk_prefix, index)


def test_each_stage_reads_checkpoint_and_state_in_one_request_per_invocation():
    store = CountingStore()
    p = InMemoryPipeline(partitions=1, store=store)
    p.publish_orders(
        [order("B1", member="MBR01", side="BUY"), order("S1", member="MBR02", side="SELL")], member_key
    )
    stages = {name: run for name, _, run in p.stage_handlers()}

    def invoke(stage, topic):
        store.calls.clear()
        report = stages[stage](p.log.event(topic, 0, 0, len(p.log.topics[topic][0])))
        assert not report.failures
        return dict(store.calls)

    # validate: checkpoint + exposure ledger in one read, a query per member seen for the first time,
    # the claim, the decisions, the exposure, the checkpoint
    assert invoke("validate", "orders.new") == {"get_many": 1, "query": 2, "put_if_version": 2, "put_many": 2}
    # match (cold: the book is read once); release: one read, one write, the checkpoint
    assert invoke("match", "orders.accepted")["get_many"] == 2
    assert invoke("release", "orders.events") == {"get_many": 1, "put_many": 1, "put_if_version": 1}
    # clear: checkpoint + clearing state in one read, then positions and obligations
    assert invoke("clear", "trades.executed")["get_many"] == 3

    # a redelivered validate batch (warm members, everything at or below the checkpoint) reads once
    p.consumed.clear()
    assert invoke("validate", "orders.new") == {"get_many": 1}


def test_the_exchange_release_reads_validation_records_once_and_state_once_per_invocation():
    from clearing.services.batch import run_partitions

    from tests.unit.test_exchange_amends import exchange_order
    from tests.unit.test_exchange_exposure import er

    store = CountingStore()
    p = InMemoryPipeline(partitions=1, store=store)
    p.publish_orders([exchange_order(f"X{i}") for i in range(5)], member_key)
    p.drain()
    for i in range(5):
        p.log.append(
            "exchange.executions",
            b"ACME",
            json.dumps(er(f"MBR01:X{i}", "TRADE", seq=i, last_qty=100)).encode(),
        )
    store.calls.clear()
    event = p.log.event("exchange.executions", 0, 0, 5)
    report = run_partitions(event, p.validate.release_exchange_partition)
    assert not report.failures and report.accepted == 5
    # the validation records of the batch (one read), checkpoint + EXCHANGE + XO items (one read),
    # the member's EXCHANGE item (conditional), the XO items (one batch), the checkpoint
    assert dict(store.calls) == {"get_many": 2, "put_if_version": 2, "put_many": 1}
