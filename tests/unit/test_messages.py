"""The typed message of every topic (clearing.messages): committed schemas, producers, consumers.

- the committed schemas/*.schema.json and docs/wire-format.md are what the types generate;
- a flow through the pipeline produces every kind of message, and each one validates against the
  committed JSON Schema file with an independent validator (jsonschema), as an OMS in another
  language would check it;
- the contract check of the in-memory publishers (tests/conftest.py) fails on a drifting producer;
- every consumer answers a record that breaks the contract with a reason naming the field.
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import jsonschema
import pytest
from clearing.adapters.memory import InMemoryPublisher
from clearing.domain.refdata import load_bundled_reference_data
from clearing.messages import ACCEPTED_ORDER, SCHEMA_TOPICS, TOPIC_MESSAGES, MessageError, parse
from clearing.ports import OutboundMessage
from clearing.services.clear import read_trade
from clearing.services.exchange_gateway import UnroutableRecord, exchange_request_for
from clearing.services.match import MALFORMED_ACCEPTED_ORDER, read_accepted_order
from clearing.services.validate import read_order_event
from clearing.topics import TOPICS
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.schemas import ROOT, schema_path, stale_files
from pydantic import ValidationError

from tests.unit.test_stream_services import member_key, order


def committed_schema(topic: str) -> dict:
    return json.loads(schema_path(topic).read_text(encoding="utf-8"))


def test_every_topic_has_a_committed_schema_and_they_are_not_stale():
    assert set(SCHEMA_TOPICS) == set(TOPICS), "a topic without a typed message"
    stale = [str(p.relative_to(ROOT)) for p in stale_files()]
    assert stale == [], f"run `clearing schemas` and commit: {stale}"
    for topic in SCHEMA_TOPICS:
        jsonschema.Draft202012Validator.check_schema(committed_schema(topic))


def a_day_of_orders() -> list[bytes]:
    """Orders that make the pipeline produce every kind of message."""
    return [
        order("S1", member="MBR02", side="SELL", price="125.40", qty=100),
        order("B1", price="125.50", qty=60),  # trade, PARTIALLY_FILLED maker, FILLED taker
        order("B2", price="125.00", qty=50),  # rests: ACCEPTED
        json.dumps(
            {
                "action": "REPLACE",
                "client_order_id": "B2R",
                "orig_client_order_id": "B2",
                "member_id": "MBR01",
                "symbol": "ACME",
                "price": "125.10",
                "quantity": 70,
                "sent_at": "2026-11-24T14:30:01.000Z",
            }
        ).encode(),  # REPLACED
        json.dumps(
            {
                "action": "CANCEL",
                "client_order_id": "B2C",
                "orig_client_order_id": "B2R",
                "member_id": "MBR01",
                "symbol": "ACME",
                "sent_at": "2026-11-24T14:30:02.000Z",
            }
        ).encode(),  # CANCELLED
        order("B3", price="125.40", qty=10, tif="IOC", post_only=True),  # post-only IOC: REJECTED by the book
        order("X1", member="NOBODY"),  # orders.rejected
        b"\x00 not json",  # orders.rejected (MALFORMED)
    ]


def test_the_pipeline_produces_every_kind_of_message_and_each_follows_the_committed_schema():
    # Given a day of orders through validate, match and clear (in memory)
    p = InMemoryPipeline()
    p.publish_orders(a_day_of_orders(), member_key)
    p.drain()
    # and a record no stage of ours wrote on orders.accepted and on trades.executed (dead letters)
    rogue = {b'{"action": "NEW"}', b"[]"}
    p.log.append("orders.accepted", b"ACME", b'{"action": "NEW"}')
    p.log.append("trades.executed", b"ACME", b"[]")
    p.drain()
    # Then every message produced follows its topic's committed JSON Schema (an independent validator)
    produced = Counter()
    kinds = Counter()
    for topic in TOPIC_MESSAGES:
        validator = jsonschema.Draft202012Validator(committed_schema(topic))
        for value in p.log.values(topic):
            if value in rogue:
                continue
            message = json.loads(value)
            errors = sorted(e.message for e in validator.iter_errors(message))
            assert errors == [], f"{topic}: {message} breaks the committed schema: {errors}"
            produced[topic] += 1
            if topic == "orders.events":
                kinds[message["type"]] += 1
    for topic in ("orders.accepted", "orders.rejected", "orders.events", "trades.executed"):
        assert produced[topic] > 0, f"nothing produced on {topic}"
    assert produced["orders.deadletter"] == 1 and produced["trades.deadletter"] == 1
    assert set(kinds) == {"ACCEPTED", "PARTIALLY_FILLED", "FILLED", "REPLACED", "CANCELLED", "REJECTED"}


def test_a_producer_that_drifts_from_the_contract_fails_the_test_that_made_it_produce():
    # Given a trade missing its source (what a drifting producer would write)
    trade = {
        "trade_id": "T-0-1-0",
        "symbol": "ACME",
        "price_ticks": 12540,
        "price": "125.40",
        "quantity": 10,
        "trade_date": "2026-11-24",
        "executed_at": None,
        "aggressor": "BUY",
        "buy": {"member_id": "MBR01", "account": "A", "order_id": "MBR01:B1"},
        "sell": {"member_id": "MBR02", "account": "B", "order_id": "MBR02:S1"},
    }
    publisher = InMemoryPublisher()
    # Then the contract check of the in-memory publisher refuses it
    with pytest.raises(ValidationError, match="source"):
        publisher.publish([OutboundMessage("trades.executed", b"ACME", json.dumps(trade).encode())])
    trade["source"] = {"topic": "orders.accepted", "partition": 0, "offset": 1, "seq": 0}
    publisher.publish([OutboundMessage("trades.executed", b"ACME", json.dumps(trade).encode())])
    assert len(publisher.on("trades.executed")) == 1


ACCEPTED_NEW = {
    "action": "NEW",
    "order_id": "MBR01:B1",
    "member_id": "MBR01",
    "client_order_id": "B1",
    "orig_client_order_id": None,
    "symbol": "ACME",
    "price_ticks": 12540,
    "price": "125.40",
    "reserve_price_ticks": 12540,
    "sent_at": "2026-11-24T14:30:00.000Z",
    "source": {"topic": "orders.new", "partition": 0, "offset": 7},
    "account": "MBR01-HOUSE",
    "side": "BUY",
    "type": "LIMIT",
    "quantity": 100,
    "time_in_force": "GTC",
    "post_only": False,
    "stp": None,
    "route": "INTERNAL",
}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"quantity": "100"}, "quantity"),  # a string where an integer belongs
        ({"quantity": 100.0}, "quantity"),  # a float is not an integer on this wire
        ({"quantity": 0}, "quantity"),
        ({"order_id": "no-colon"}, "order_id"),
        ({"side": "buy"}, "side"),
        ({"source": {"topic": "orders.new", "partition": -1, "offset": 7}}, "source.partition"),
        ({"action": "AMEND"}, "action"),
        ({"member_id": "M" * 65}, "member_id"),
    ],
)
def test_match_orders_names_what_breaks_the_orders_accepted_contract(change, named):
    refdata = load_bundled_reference_data()
    good, *_ = read_accepted_order(json.dumps(ACCEPTED_NEW).encode(), refdata.instruments)
    assert good == ACCEPTED_NEW
    msg, reason, problem = read_accepted_order(
        json.dumps({**ACCEPTED_NEW, **change}).encode(), refdata.instruments
    )
    assert msg is None and reason == MALFORMED_ACCEPTED_ORDER
    assert named in problem


def test_consumers_ignore_fields_they_do_not_know():
    # a later producer may add fields: the consumer neither fails nor passes them on
    msg = parse(ACCEPTED_ORDER, json.dumps({**ACCEPTED_NEW, "venue_hint": "X"}).encode())
    assert "venue_hint" not in msg and msg["order_id"] == "MBR01:B1"


def test_the_exposure_release_and_clear_trades_name_what_breaks_their_contract():
    event = {
        "event_id": "E-0-1-0",
        "type": "CANCELLED",
        "order_id": "MBR01:B1",
        "member_id": "MBR01",
        "symbol": "ACME",
        "exposure_delta": "-12.50",
        "source": {"topic": "orders.accepted", "partition": 0, "offset": 1, "seq": 0},
        "cancelled_qty": 10,
        "reason": "USER",
        "filled_qty": 0,
        "remaining_qty": 0,
    }
    assert read_order_event(json.dumps(event).encode()) == ("MBR01", ("0", [1, 0]), Decimal("-12.50"))
    assert "seq" in read_order_event(
        json.dumps({**event, "source": {"topic": "orders.accepted", "partition": 0, "offset": 1}}).encode()
    )
    assert "member_id" in read_order_event(json.dumps({**event, "member_id": 7}).encode())
    trade, problem, position = read_trade(json.dumps({"symbol": "ACME", "quantity": 1.5}).encode())
    assert trade is None and position is None and "trade_id" in problem


def test_the_exchange_gateway_refuses_a_record_that_breaks_its_topic_contract():
    with pytest.raises(UnroutableRecord, match="quantity"):
        exchange_request_for("orders.exchange", json.dumps({**ACCEPTED_NEW, "quantity": "lots"}).encode())
    with pytest.raises(MessageError):
        parse(ACCEPTED_ORDER, b"[1, 2]")


def test_what_the_fix_proxy_publishes_follows_the_exchange_executions_schema():
    import simplefix
    from clearing_fix.messages import decode_exchange_message

    report = simplefix.FixMessage()
    for tag, value in [
        (8, "FIX.4.4"),
        (35, "8"),
        (34, "12"),
        (49, "EXCH"),
        (56, "CCP"),
        (52, "20261124-14:30:00.000"),
        (11, "MBR01:B1"),
        (37, "X-1"),
        (17, "E-1"),
        (150, "F"),
        (39, "2"),
        (55, "ACME"),
        (54, "1"),
        (38, "100"),
        (32, "100"),
        (31, "125.40"),
        (151, "0"),
        (14, "100"),
    ]:
        report.append_pair(tag, value)
    record = decode_exchange_message(report)
    jsonschema.validate(record, committed_schema("exchange.executions"))
    assert record["msg_type"] == "ExecutionReport" and record["cum_qty"] == 100
