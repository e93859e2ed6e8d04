"""Replay against the real local services: a seeded run through Tansu + moto, rebuilt into fresh
prefixed tables by `clearing replay`, equals the live state; a tampered live item fails the replay.

The "live" run drives the real stage services the way the event-source mapping does (per partition,
in offset order, in batches), reading Tansu with the replay's own reader and publishing with the
Kafka adapter, over tables created from template.yaml in moto_server.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ORDERS = 250


def drive_pipeline(log, store, publisher, refdata, batch_size=100, timeout=60.0):
    """A minimal event-source mapping: every stage consumes its topic until nothing is left."""
    from clearing.services.clear import ClearTrades
    from clearing.services.match import MatchOrders
    from clearing.services.validate import ValidateOrders

    validate = ValidateOrders(store, publisher, refdata)
    stages = [
        ("orders.new", validate.validate_partition),
        ("orders.accepted", MatchOrders(store, publisher, refdata).match_partition),
        ("orders.events", validate.release_partition),
        ("trades.executed", ClearTrades(store, publisher, refdata).clear_partition),
    ]
    consumed: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout
    progress = True
    while progress:
        assert time.monotonic() < deadline, "pipeline did not drain"
        progress = False
        for topic, process in stages:
            for partition in log.partitions(topic):
                start = consumed.get((topic, partition), 0)
                records = list(log.read(topic, partition, start, start + batch_size))
                if records:
                    process(records)
                    consumed[(topic, partition)] = records[-1].offset + 1
                    progress = True


@pytest.fixture
def live_env(kafka_broker, moto_server, dynamodb_tables, monkeypatch):
    from clearing.topics import TOPICS
    from clearing_tools.local.broker import create_topics
    from clearing_tools.template_model import table_env_vars

    create_topics(kafka_broker, {t: 3 for t in TOPICS})
    for env, logical in table_env_vars().items():
        monkeypatch.setenv(env, dynamodb_tables[logical])
    monkeypatch.setenv("DYNAMODB_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_broker)
    # The generated flow's sent_at is a synthetic clock (2026-11-24); the broker's record timestamps
    # are the producer's clock. Widen validate_orders' sent_at window (live run and replay alike).
    monkeypatch.setenv("SENT_AT_MAX_AGE_SECONDS", str(10 * 365 * 86400))
    return kafka_broker


def test_replay_of_a_seeded_runs_log_into_fresh_prefixed_tables_equals_live(live_env, capsys):
    from clearing.adapters.kafka import KafkaPublisher
    from clearing.adapters.refdata import StaticReferenceData, seed_reference_data
    from clearing.adapters.retained_log import KafkaRetainedLog
    from clearing.config import KafkaSettings
    from clearing.ports import OutboundMessage
    from clearing.repositories import keys
    from clearing_tools.cli.context import data_store
    from clearing_tools.cli.main import main
    from clearing_tools.local.oms import generate_orders

    started = time.monotonic()
    live = data_store()
    seed_reference_data(live)
    publisher = KafkaPublisher(KafkaSettings())
    publisher.publish(
        [OutboundMessage("orders.new", m.key.encode(), m.value) for m in generate_orders(ORDERS, seed=21)]
    )
    log = KafkaRetainedLog(live_env)
    try:
        drive_pipeline(log, live, publisher, StaticReferenceData())
    finally:
        publisher.close()
        log.close()
    trades = len([i for i in live.scan(keys.TRADES) if i["sk"] == "CLEARED"])
    assert trades > 30
    live_run_s = time.monotonic() - started

    # When the whole log is replayed into fresh tables under a new prefix
    prefix = f"rp-{uuid.uuid4().hex[:6]}-"
    code = main(["replay", "--stage", "all", "--from-beginning", "--target-prefix", prefix, "--json"])
    result = json.loads(capsys.readouterr().out)
    # Then the rebuilt orders, trades (with legs), positions and obligations equal the live ones exactly
    assert code == 0 and result["ok"], result["differences"][:5]
    assert result["records_read"]["orders.new"] == ORDERS
    assert result["compared"]["topic:trades.executed"] == trades
    from clearing_tools.cli.commands.replay import target_store

    target = target_store(live, None, prefix)
    for table in (keys.ORDERS, keys.TRADES, keys.POSITIONS, keys.OBLIGATIONS):

        def strip(items):
            return sorted(json.dumps(keys.comparable(i), sort_keys=True, default=str) for i in items)

        assert strip(target.scan(table)) == strip(live.scan(table)), table

    # And a replay of clear_trades against a tampered live position reports it and exits non-zero
    position = live.scan(keys.POSITIONS)[0]
    live.put_many(keys.POSITIONS, [{**position, "net_quantity": position["net_quantity"] + 1}])
    code = main(
        [
            "replay",
            "--stage",
            "clear_trades",
            "--from-beginning",
            "--target-prefix",
            prefix + "b-",
            "--drop-target",
            "--json",
        ]
    )
    tampered = json.loads(capsys.readouterr().out)
    assert code == 1 and tampered["differences_total"] == 1
    assert tampered["differences"][0]["fields"]["net_quantity"]["rebuilt"] == position["net_quantity"]
    # A target that already holds a rebuild is refused
    assert main(["replay", "--stage", "all", "--from-beginning", "--target-prefix", prefix]) == 2
    print(f"live run {live_run_s:.1f} s, replay {result['seconds']} s, {trades} trades")
