"""sent_at plausibility: checked against the Kafka record's timestamp (part of the input, never the
clock), within a configurable window, and within absolute bounds that keep every accepted order
clearable downstream."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from clearing.adapters.memory import InMemoryItemStore, InMemoryPublisher
from clearing.adapters.refdata import StaticReferenceData
from clearing.config import ConfigurationError, SentAtSettings, load_settings
from clearing.domain.orders import Rejection, SentAtWindow, check_sent_at, parse_order
from clearing.services.batch import records_from_event, run_partitions
from clearing.services.validate import ValidateOrders

from tests.unit.msk import msk_event, msk_record
from tests.unit.test_stream_services import order, run

WINDOW = SentAtWindow(max_age=timedelta(hours=24), max_lead=timedelta(minutes=5))
T0 = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)


def _check(sent_at: str, timestamp_ms: int, window: SentAtWindow = WINDOW):
    msg = parse_order(order("C1", sent_at=sent_at))
    assert not isinstance(msg, Rejection), msg
    return check_sent_at(msg, timestamp_ms, window)


@pytest.mark.parametrize(
    "sent_at, ok",
    [
        ("2026-11-24T14:30:00.000Z", True),
        ("2026-11-23T14:30:00.000Z", True),  # 24 h before the record: the edge of the window
        ("2026-11-23T14:29:59.999Z", False),
        ("2026-11-24T14:35:00.000Z", True),  # 5 min after it
        ("2026-11-24T14:35:00.001Z", False),
        ("9999-12-31T23:59:59.999Z", False),
        ("0001-01-01T00:00:00Z", False),
    ],
)
def test_sent_at_is_checked_against_the_record_timestamp(sent_at, ok):
    result = _check(sent_at, T0_MS)
    if ok:
        assert result is None
    else:
        assert result.reason == "STALE_OR_FUTURE_SENT_AT" and sent_at[:10] in result.message
        assert result.member_id == "MBR01" and result.client_order_id == "C1"


@pytest.mark.parametrize("timestamp", [-1, 0, None])
def test_without_a_record_timestamp_only_the_absolute_bounds_apply(timestamp):
    assert _check("2026-11-24T14:30:00Z", timestamp) is None
    assert _check("2000-01-01T00:00:00Z", timestamp) is None
    assert _check("2099-12-31T23:59:59.999Z", timestamp) is None
    for implausible in (
        "9999-12-31T23:59:59Z",
        "0001-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
    ):
        rejection = _check(implausible, timestamp)
        assert rejection is not None and rejection.reason == "STALE_OR_FUTURE_SENT_AT", implausible


def test_a_cancel_without_sent_at_needs_no_window():
    cancel = parse_order(
        json.dumps(
            {
                "action": "CANCEL",
                "client_order_id": "C2",
                "member_id": "MBR01",
                "symbol": "ACME",
                "orig_client_order_id": "C1",
            }
        ).encode()
    )
    assert check_sent_at(cancel, T0_MS, WINDOW) is None


def test_the_window_is_a_setting_with_defaults_24h_and_5min(monkeypatch):
    monkeypatch.delenv("SENT_AT_MAX_AGE_SECONDS", raising=False)
    monkeypatch.delenv("SENT_AT_MAX_LEAD_SECONDS", raising=False)
    default = load_settings(SentAtSettings).window()
    assert default == SentAtWindow(max_age=timedelta(hours=24), max_lead=timedelta(minutes=5))
    monkeypatch.setenv("SENT_AT_MAX_AGE_SECONDS", "60")
    monkeypatch.setenv("SENT_AT_MAX_LEAD_SECONDS", "1.5")
    assert load_settings(SentAtSettings).window() == SentAtWindow(
        timedelta(seconds=60), timedelta(seconds=1.5)
    )
    monkeypatch.setenv("SENT_AT_MAX_AGE_SECONDS", "-1")
    with pytest.raises(ConfigurationError, match="SENT_AT_MAX_AGE_SECONDS"):
        load_settings(SentAtSettings)


def test_validate_orders_rejects_implausible_sent_at_and_a_redelivery_decides_the_same():
    # Given orders whose sent_at is far from their records' timestamps, next to a plausible one
    store, pub, ref = InMemoryItemStore(), InMemoryPublisher(), StaticReferenceData()
    service = ValidateOrders(store, pub, ref, sent_at_window=WINDOW)
    event = msk_event(
        [
            msk_record(
                "orders.new",
                0,
                0,
                order("F1", sent_at="9999-12-31T23:59:59.999Z"),
                key="MBR01",
                timestamp=T0_MS,
            ),
            msk_record(
                "orders.new", 0, 1, order("F2", sent_at="0001-01-01T00:00:00Z"), key="MBR01", timestamp=T0_MS
            ),
            msk_record(
                "orders.new",
                0,
                2,
                order("OK", sent_at="2026-11-24T14:29:59.500Z"),
                key="MBR01",
                timestamp=T0_MS,
            ),
            # a record without timestamp: sent_at is not compared, only bounded
            msk_record(
                "orders.new", 0, 3, order("NT", sent_at="2026-11-24T14:30:00Z"), key="MBR01", timestamp=-1
            ),
        ]
    )
    report = run_partitions(event, service.validate_partition)
    assert report.failures == [] and report.accepted == 2 and report.rejected == 2
    rejected = [json.loads(m.value) for m in pub.on("orders.rejected")]
    assert [(r["client_order_id"], r["reason"]) for r in rejected] == [
        ("F1", "STALE_OR_FUTURE_SENT_AT"),
        ("F2", "STALE_OR_FUTURE_SENT_AT"),
    ]
    # the client order id is not used up: the OMS can send the order again with a good sent_at
    assert all(i["kind"] == "REJECTION" for i in store.scan("orders") if i.get("decision") == "REJECTED")
    # and a redelivery (a fresh container: cold caches) decides the same, whatever the clock says
    store.tables["state"] = {}
    again = InMemoryPublisher()
    [records] = records_from_event(event).values()
    ValidateOrders(store, again, ref, sent_at_window=WINDOW).validate_partition(records)
    assert [m.value for m in again.messages] == [m.value for m in pub.messages]


@pytest.mark.parametrize(
    "sent_at", ["2000-01-01T00:00:00Z", "2099-12-31T23:59:59.999Z", "2026-12-31T23:59:59Z"]
)
def test_every_sent_at_validate_orders_accepts_is_clearable(sent_at):
    # Given two crossing orders at the edges of what validate_orders accepts
    p, totals = run(
        [
            order("S1", member="MBR02", side="SELL", sent_at=sent_at),
            order("B1", sent_at=sent_at),
        ]
    )
    # Then the trade is cleared, with a settlement date, and nothing is dead-lettered
    assert totals["validate.accepted"] == 2 and totals["clear.accepted"] == 1
    assert p.log.values("trades.deadletter") == []
    [cleared] = [i for i in p.store.scan("trades") if i["sk"] == "CLEARED"]
    assert cleared["settlement_date"] > sent_at[:10]


def test_clearing_publish_stamps_each_record_with_its_orders_sent_at():
    # the simulator's clock is synthetic: its records carry CreateTime = sent_at, as an OMS's would
    from clearing_tools.local.oms import create_time_ms as _create_time_ms
    from clearing_tools.local.oms import generate_orders

    [msg] = generate_orders(1, seed=1)
    assert _create_time_ms(msg) == int(
        datetime.fromisoformat(msg.order["sent_at"].replace("Z", "+00:00")).timestamp() * 1000
    )
    assert _create_time_ms(type(msg)("K", b"not json", None)) is None
