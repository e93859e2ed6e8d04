"""The exposure of exchange-routed orders comes back from the exchange's ExecutionReports.

validate_orders reserves exposure (reserve price x quantity) for an accepted NEW routed EXCHANGE;
its third mapping (exchange.executions, `ValidateOrders.release_exchange_partition`) gives it back on
fills, cancels, expiries and rejects, and moves it to the new reserve x open quantity on a replace:
exactly once under redelivery, never more than the order holds, and anything unreadable or unknown is
dead-lettered or skipped with a reason without failing the batch."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from clearing.ports import InfrastructureError, StaleCheckpoint
from clearing.repositories.keys import STATE
from clearing.repositories.state import ExposureLedger
from clearing.services.batch import run_partitions
from clearing.services.exchange_exposure import Execution, Skip, read_execution
from clearing.services.validate import ValidateOrders
from clearing.topics import EXCHANGE_EXECUTIONS, ORDERS_DEADLETTER

from tests.unit.msk import msk_event, msk_record
from tests.unit.test_exchange_amends import Validation, cancel, exchange_order, replace
from tests.unit.test_stream_services import order

ACME_100 = Decimal("125.40") * 100  # reserve price x quantity of exchange_order("X1")


def er(cl_ord_id: str, exec_type: str, *, orig: str | None = None, seq: int = 1, **fields) -> dict:
    """An ExecutionReport as the FIX proxy publishes it (clearing_fix.messages.decode_exchange_message)."""
    return {
        "msg_type": "ExecutionReport",
        "msg_seq_num": seq,
        "sending_time": "20261124-14:30:02.000",
        "poss_dup": False,
        "sender_comp_id": "EXCH",
        "target_comp_id": "CCP",
        "request_id": cl_ord_id,
        "cl_ord_id": cl_ord_id,
        "orig_cl_ord_id": orig,
        "order_id": "O-1",
        "exec_id": f"X-{seq}",
        "exec_type": exec_type,
        "symbol": "ACME",
        "side": "BUY",
        "last_qty": 0,
        "leaves_qty": 0,
        "cum_qty": 0,
        **fields,
    }


class Exchange:
    """validate_orders (one orders.new partition) plus the exchange's answers on exchange.executions."""

    def __init__(self, store=None):
        self.v = Validation(store)
        self.offsets: dict[int, int] = {}

    @property
    def service(self) -> ValidateOrders:
        return self.v.service

    def event(self, *messages, partition: int = 0) -> dict:
        start = self.offsets.get(partition, 0)
        records = []
        for i, m in enumerate(messages):
            value = m if isinstance(m, bytes) else json.dumps(m).encode()
            records.append(msk_record(EXCHANGE_EXECUTIONS, partition, start + i, value, "ACME"))
        self.offsets[partition] = start + len(messages)
        return msk_event(records)

    def deliver(self, event: dict):
        report = run_partitions(event, self.service.release_exchange_partition)
        assert not report.failures, report.failures
        assert report.accounted, report.summary()
        return report

    def answer(self, *messages, partition: int = 0):
        return self.deliver(self.event(*messages, partition=partition))

    def exposure(self, member: str = "MBR01") -> Decimal:
        found = self.v.store.get_many(STATE, list(ExposureLedger.keys(member)))
        reserved, _, adjustment = ExposureLedger.of_member(found, member, 0)
        return reserved + adjustment

    def dead_letters(self) -> list[dict]:
        return [json.loads(m.value) for m in self.v.out.messages if m.topic == ORDERS_DEADLETTER]


@pytest.fixture
def x() -> Exchange:
    return Exchange()


def test_an_accepted_exchange_routed_new_reserves_its_exposure(x):
    [msg] = x.v.send(exchange_order("X1"))
    assert msg.topic == "orders.exchange"
    assert x.exposure() == ACME_100


def test_a_full_fill_releases_the_whole_order(x):
    x.v.send(exchange_order("X1"))
    report = x.answer(
        er("MBR01:X1", "NEW", leaves_qty=100), er("MBR01:X1", "TRADE", seq=2, last_qty=100, cum_qty=100)
    )
    assert x.exposure() == 0
    assert report.accepted == 1 and report.skipped == 1  # NEW: no exposure effect
    assert report.counters["exposure_changes"] == 1


@pytest.mark.parametrize("fill", ["PARTIAL_FILL", "TRADE"])
def test_a_partial_fill_releases_the_filled_quantity_and_a_cancel_the_rest(x, fill):
    x.v.send(exchange_order("X1"), cancel("C1", "X1"))
    x.answer(er("MBR01:X1", fill, last_qty=40, cum_qty=40, leaves_qty=60))
    assert x.exposure() == Decimal("125.40") * 60
    x.answer(er("MBR01:C1", "CANCELED", orig="MBR01:X1", seq=2, cum_qty=40))
    assert x.exposure() == 0


@pytest.mark.parametrize("closing", ["EXPIRED", "DONE_FOR_DAY", "REJECTED"])
def test_an_expiry_or_a_reject_of_the_new_releases_the_open_quantity(x, closing):
    x.v.send(exchange_order("X1"))
    x.answer(er("MBR01:X1", closing))
    assert x.exposure() == 0


def test_a_rejected_cancel_leaves_the_order_and_its_exposure_open(x):
    x.v.send(exchange_order("X1"), cancel("C1", "X1"))
    x.answer(er("MBR01:C1", "REJECTED", orig="MBR01:X1"))
    assert x.exposure() == ACME_100


def test_a_replace_moves_the_exposure_to_the_new_reserve_and_open_quantity(x):
    x.v.send(exchange_order("X1"), replace("R1", "X1", price="125.50", quantity=200))
    assert x.exposure() == ACME_100  # validation reserves nothing more for a REPLACE
    x.answer(er("MBR01:X1", "PARTIAL_FILL", last_qty=30, cum_qty=30, leaves_qty=70))
    assert x.exposure() == Decimal("125.40") * 70
    x.answer(er("MBR01:R1", "REPLACED", orig="MBR01:X1", seq=2, order_qty=200, cum_qty=30, leaves_qty=170))
    assert x.exposure() == Decimal("125.50") * 170
    # later fills name the REPLACE's ClOrdID and release at its reserve
    x.answer(er("MBR01:R1", "TRADE", seq=3, last_qty=70, cum_qty=100, leaves_qty=100))
    assert x.exposure() == Decimal("125.50") * 100


def test_an_answer_to_an_order_already_filled_releases_nothing_more(x):
    # the local simulator fills every NEW at once and still answers CANCELED / REPLACED
    x.v.send(exchange_order("X1"), replace("R1", "X1", quantity=200), cancel("C1", "X1"))
    x.answer(
        er("MBR01:X1", "TRADE", last_qty=100, cum_qty=100),
        er("MBR01:R1", "REPLACED", orig="MBR01:X1", seq=2, leaves_qty=200),
        er("MBR01:C1", "CANCELED", orig="MBR01:X1", seq=3),
    )
    assert x.exposure() == 0


def test_an_amend_answered_without_orig_cl_ord_id_finds_its_order_by_the_amends_record(x):
    x.v.send(exchange_order("X1"), cancel("C1", "X1"))
    x.answer(er("MBR01:C1", "CANCELED"))
    assert x.exposure() == 0


def test_a_redelivered_batch_releases_once(x):
    x.v.send(exchange_order("X1"), exchange_order("X2"))
    event = x.event(er("MBR01:X1", "TRADE", last_qty=100), er("MBR01:X2", "TRADE", seq=2, last_qty=40))
    x.deliver(event)
    again = x.deliver(event)
    assert again.skipped == 2 and again.accepted == 0
    assert x.exposure() == Decimal("125.40") * 60


@pytest.mark.parametrize("dies_at", ["EXCHANGE", "XO#", "CKPT#"])
def test_a_crash_after_any_write_then_a_redelivery_releases_once(x, dies_at):
    x.v.send(exchange_order("X1"), exchange_order("X2"))
    store = x.v.store
    event = x.event(er("MBR01:X1", "TRADE", last_qty=100), er("MBR01:X2", "TRADE", seq=2, last_qty=40))
    put_many, put_if_version = store.put_many, store.put_if_version
    died = []

    def dying_put_many(table, items):
        put_many(table, items)
        if not died and any(i["sk"].startswith(dies_at) for i in items):
            died.append(dies_at)
            raise InfrastructureError("the container died")

    def dying_put_if_version(table, item, expected):
        put_if_version(table, item, expected)
        if not died and (item["sk"] == dies_at or item["pk"].startswith(dies_at)):
            died.append(dies_at)
            raise InfrastructureError("the container died")

    store.put_many, store.put_if_version = dying_put_many, dying_put_if_version
    report = run_partitions(event, x.service.release_exchange_partition)
    assert died and report.failures  # the mapping retries the batch
    store.put_many, store.put_if_version = put_many, put_if_version
    x.deliver(event)
    assert x.exposure() == Decimal("125.40") * 60


def test_a_resent_answer_at_a_new_offset_is_recognised_by_its_exec_id(x):
    x.v.send(exchange_order("X1"))
    fill = er("MBR01:X1", "TRADE", last_qty=40)
    x.answer(fill)
    report = x.answer({**fill, "poss_dup": True})
    assert report.skipped == 1 and x.exposure() == Decimal("125.40") * 60


def test_partitions_of_different_symbols_release_the_same_members_exposure(x):
    x.v.send(exchange_order("X1"), exchange_order("G1", symbol="GLOBX", price="48.25"))
    assert x.exposure() == ACME_100 + Decimal("48.25") * 100
    x.answer(er("MBR01:X1", "TRADE", last_qty=100), partition=0)
    x.answer(er("MBR01:G1", "TRADE", last_qty=50, symbol="GLOBX"), partition=1)
    assert x.exposure() == Decimal("48.25") * 50


def test_a_concurrent_write_of_the_members_exchange_item_is_read_again_and_applied_once(x):
    x.v.send(exchange_order("X1"), exchange_order("G1", symbol="GLOBX", price="48.25"))
    store = x.v.store
    put_if_version = store.put_if_version
    raced = []

    def racing(table, item, expected):
        if item["sk"] == "EXCHANGE" and not raced:
            raced.append(1)  # partition 1 writes the item between our read and our write
            Exchange.answer(other, er("MBR01:G1", "TRADE", last_qty=50, symbol="GLOBX"), partition=1)
        put_if_version(table, item, expected)

    other = Exchange(store)
    store.put_if_version = racing
    x.answer(er("MBR01:X1", "TRADE", last_qty=100))
    store.put_if_version = put_if_version
    assert raced and x.exposure() == Decimal("48.25") * 50


def test_a_write_that_keeps_conflicting_fails_the_batch_for_a_retry(x, monkeypatch):
    x.v.send(exchange_order("X1"))
    store = x.v.store
    put_if_version = store.put_if_version

    def always_stale(table, item, expected):
        if item["sk"] == "EXCHANGE":
            raise StaleCheckpoint("someone else")
        put_if_version(table, item, expected)

    store.put_if_version = always_stale
    report = run_partitions(
        x.event(er("MBR01:X1", "TRADE", last_qty=100)), x.service.release_exchange_partition
    )
    assert report.failures
    store.put_if_version = put_if_version
    x.answer(er("MBR01:X1", "TRADE", last_qty=100))  # not re-numbered: the same record again
    assert x.exposure() == 0


def test_unknown_ids_and_garbage_are_dead_lettered_with_a_reason_and_the_batch_goes_on(x):
    x.v.send(exchange_order("X1"), order("I1"))  # I1 is INTERNAL: its exposure comes from orders.events
    report = x.answer(
        b"not json",
        {"msg_type": "ExecutionReport"},  # not the contract
        er("MBR01:NOPE", "TRADE", last_qty=10),  # no such order
        er("MBR01:I1", "TRADE", last_qty=10),  # not exchange-routed
        er("no-member-id", "TRADE", last_qty=10),
        er("MBR01:X1", "TRADE", last_qty=0),  # a fill of nothing
        {**er("MBR01:X1", "NEW"), "msg_type": "TradeCaptureReportAck"},
        er("MBR01:X1", "NEW", leaves_qty=100),
        er("MBR01:X1", "TRADE", last_qty=100),
    )
    reasons = [d["reason"] for d in x.dead_letters()]
    assert (
        reasons == ["MALFORMED_EXECUTION"] * 2 + ["UNKNOWN_EXCHANGE_ORDER"] * 2 + ["MALFORMED_EXECUTION"] * 2
    )
    assert all(d["message"] for d in x.dead_letters())
    assert [d["source"]["offset"] for d in x.dead_letters()] == [0, 1, 2, 3, 4, 5]
    assert report.rejected == 6 and report.skipped == 2 and report.accepted == 1  # skipped: the ack, NEW
    assert x.exposure() == Decimal("125.40") * 100  # I1's reserve only: X1 was filled


def test_read_execution_says_what_it_reads():
    assert read_execution(None) == "empty record (no value)"
    assert isinstance(read_execution(b"x" * 70_000), str)
    assert read_execution(json.dumps(er("MBR01:X1", "PENDING_NEW")).encode()) == Skip(
        "exec_type PENDING_NEW (no exposure effect)"
    )
    got = read_execution(json.dumps(er("MBR01:C1", "CANCELED", orig="MBR01:X1", cum_qty=5)).encode())
    assert got == Execution("MBR01", "C1", "X1", "CANCELED", "X-1", 0, 0, 5)
    # an OrigClOrdID of another member is not trusted
    got = read_execution(json.dumps(er("MBR01:C1", "CANCELED", orig="MBR02:X1")).encode())
    assert isinstance(got, Execution) and got.orig_client_order_id is None


def test_the_lambda_routes_exchange_executions_to_the_exchange_release():
    from tests.unit.handlers import FakeContext, load_handler

    handler = load_handler("validate_orders")
    x = Exchange()
    x.v.send(exchange_order("X1"))
    response = handler(x.event(er("MBR01:X1", "TRADE", last_qty=100)), FakeContext(), service=x.service)
    assert response == {"batchItemFailures": []}
    assert x.exposure() == 0
