"""Proxy <-> exchange simulator over loopback TCP: the FIX session behaviour end to end.

HeartBtInt is 1 s so heartbeat/TestRequest scenarios take a couple of seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from clearing.fix.client import ProxyClient, ProxyUnavailableError
from clearing.fix.gateway_protocol import GatewayStatus
from clearing_fix import messages as fix
from clearing_fix.proxy import FixProxy
from clearing_fix.publisher import InMemoryExecutionPublisher
from clearing_fix.session import SessionConfig
from clearing_fix.store import FileSessionStore
from clearing_tools.exchange.simulator import ExchangeSimulator

pytestmark = [pytest.mark.integration]
log = logging.getLogger("test.fix")

ORDER = {
    "request_id": "MBR04:C-000101",
    "kind": "NEW_ORDER",
    "cl_ord_id": "MBR04:C-000101",
    "member_id": "MBR04",
    "account": "MBR04-HOUSE",
    "symbol": "GLOBX",
    "side": "BUY",
    "quantity": 500,
    "order_type": "LIMIT",
    "price": "48.10",
    "time_in_force": "DAY",
    "sent_at": "2026-11-24T14:31:02.001Z",
}


def order(n: int) -> dict:
    cl_ord_id = f"MBR04:C-{n:06d}"
    return {**ORDER, "request_id": cl_ord_id, "cl_ord_id": cl_ord_id}


def trade(trade_id: str) -> dict:
    return {
        "request_id": trade_id,
        "kind": "TRADE_REPORT",
        "trade_report_id": trade_id,
        "symbol": "ACME",
        "price": "125.40",
        "quantity": 100,
        "trade_date": "2026-11-24",
        "executed_at": "2026-11-24T14:30:00.123Z",
        "aggressor": "BUY",
        "buy": {"member_id": "MBR01", "account": "MBR01-HOUSE", "order_id": "MBR01:C-000001"},
        "sell": {"member_id": "MBR02", "account": "MBR02-CLIENT", "order_id": "MBR02:C-000007"},
    }


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def make_proxy(store_dir: Path, exchange_port: int, publisher=None, password: str | None = None) -> FixProxy:
    config = SessionConfig("CLEARHOUSE", "EXCHANGE", heartbeat_interval=1, password=password, logon_timeout=2)
    return FixProxy(
        session_config=config,
        store=FileSessionStore(store_dir, config.session_id, fsync=False),
        publisher=publisher or InMemoryExecutionPublisher(),
        exchange_host="127.0.0.1",
        exchange_port=exchange_port,
        reconnect_min_backoff=0.05,
        reconnect_max_backoff=0.2,
        logger=log,
    )


@contextlib.asynccontextmanager
async def exchange_link(store_dir: Path, **sim_kwargs) -> AsyncIterator[tuple[ExchangeSimulator, FixProxy]]:
    sim = ExchangeSimulator(heartbeat_interval=1, **sim_kwargs)
    await sim.start()
    proxy = make_proxy(store_dir, sim.port)
    await proxy.start()
    try:
        await proxy.wait_logged_on(5)
        yield sim, proxy
    finally:
        await proxy.stop()
        await sim.stop()


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 30))


def records_for(proxy: FixProxy, request_id: str) -> list[dict]:
    return [value for _, value in proxy.publisher.records if value.get("request_id") == request_id]


async def http_status(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: proxy\r\n\r\n")
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


# ------------------------------------------------------------------ logon, health, heartbeats


def test_logon_makes_health_200_and_losing_the_exchange_makes_it_503(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            assert await http_status(proxy.health_port) == 200
            assert sim.logged_on and sim.session.stats["logons"] == 1
            await sim.stop()
            await wait_until(lambda: not proxy.session.logged_on, what="proxy to notice")
            assert await http_status(proxy.health_port) == 503

    run(scenario())


def test_idle_session_exchanges_heartbeats_without_test_requests(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            await asyncio.sleep(2.6)
            assert proxy.session.stats["heartbeats_sent"] >= 2
            assert sim.session.stats["heartbeats_sent"] >= 2
            assert proxy.session.stats["test_requests_sent"] == 0
            assert proxy.session.logged_on and proxy.connections == 1

    run(scenario())


def test_silent_exchange_gets_a_test_request_then_the_proxy_reconnects(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            sim.stop_heartbeats()
            await wait_until(lambda: proxy.session.stats["heartbeat_timeouts"] == 1, 5, "heartbeat timeout")
            assert proxy.session.stats["test_requests_sent"] >= 1
            assert fix.TEST_REQUEST in sim.session.received_log
            sim.resume_heartbeats()
            await wait_until(lambda: proxy.connections >= 2 and proxy.session.logged_on, 5, "re-logon")
            assert (await proxy.submit(order(1))).status is GatewayStatus.SENT

    run(scenario())


# ------------------------------------------------------------------ sequence numbers


def test_gap_in_exchange_seqnums_is_resent_and_nothing_is_lost(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            sim.skip_sequence_numbers(3)
            assert (await proxy.submit(order(1))).status is GatewayStatus.SENT
            await wait_until(lambda: len(records_for(proxy, "MBR04:C-000001")) == 2, what="both executions")
            assert proxy.session.stats["resend_requests_sent"] == 1
            assert proxy.session.stats["gap_fills_received"] >= 1
            assert [r["exec_type"] for r in records_for(proxy, "MBR04:C-000001")] == ["NEW", "TRADE"]
            assert all(r["poss_dup"] for r in records_for(proxy, "MBR04:C-000001"))
            await wait_until(
                lambda: proxy.store.next_target_seq == sim.store.next_sender_seq, what="seq sync"
            )

    run(scenario())


def test_exchange_resend_request_gets_possdup_copies_and_gap_fills(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            first = await proxy.submit(order(1))
            await proxy.submit(order(2))
            await wait_until(lambda: len(sim.received) == 2, what="orders at the exchange")
            sim.request_resend(1, 0)
            await wait_until(lambda: proxy.session.stats["resend_requests_received"] == 1, what="resend")
            await asyncio.sleep(0.2)
            assert proxy.session.stats["messages_resent"] == 2
            assert proxy.session.stats["gap_fills_sent"] >= 1  # the Logon at least
            assert first.msg_seq_num == 2
            # The exchange saw each order exactly once even though both came again as PossDup.
            assert sim.received_ids == {"MBR04:C-000001": 1, "MBR04:C-000002": 1}
            assert proxy.session.logged_on

    run(scenario())


def test_proxy_restart_continues_the_sequence_and_remembers_what_it_sent(tmp_path):
    async def scenario():
        sim = ExchangeSimulator(heartbeat_interval=1)
        await sim.start()
        try:
            first = make_proxy(tmp_path, sim.port)
            await first.start()
            await first.wait_logged_on(5)
            assert (await first.submit(order(1))).status is GatewayStatus.SENT
            await wait_until(lambda: len(first.publisher.records) == 2, what="executions")
            await first.stop()
            next_out, next_in = first.store.next_sender_seq, first.store.next_target_seq
            assert next_out > 3

            second = make_proxy(tmp_path, sim.port)
            await second.start()
            await second.wait_logged_on(5)
            try:
                # Logon carried the next number, not 1: no reset, no resend needed on either side.
                assert sim.session.stats["logons"] == 2
                assert sim.session.stats["resend_requests_sent"] == 0
                assert second.session.stats["resend_requests_sent"] == 0
                assert second.store.next_target_seq > next_in
                again = await second.submit(order(1))
                assert (again.status, again.msg_seq_num) == (GatewayStatus.DUPLICATE, 2)
                assert (await second.submit(order(2))).status is GatewayStatus.SENT
                await wait_until(lambda: len(sim.received) == 2, what="second order")
                assert sim.received_ids == {"MBR04:C-000001": 1, "MBR04:C-000002": 1}
            finally:
                await second.stop()
        finally:
            await sim.stop()

    run(scenario())


# ------------------------------------------------------------------ idempotency, reconnect, loss


def test_duplicate_requests_are_suppressed_even_when_concurrent(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            answers = await asyncio.gather(*(proxy.submit(trade("T-0-41-0")) for _ in range(5)))
            assert sorted(a.status.value for a in answers) == ["DUPLICATE"] * 4 + ["SENT"]
            await wait_until(lambda: len(records_for(proxy, "T-0-41-0")) == 1, what="ack")
            await asyncio.sleep(0.1)
            assert sim.received_ids == {"T-0-41-0": 1}
            ack = records_for(proxy, "T-0-41-0")[0]
            assert (ack["msg_type"], ack["trd_rpt_status"]) == ("TradeCaptureReportAck", "ACCEPTED")

    run(scenario())


def test_reconnect_after_dropped_connection(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            sim.drop_connection()
            await wait_until(lambda: proxy.connections == 2 and proxy.session.logged_on, 5, "reconnect")
            assert (await proxy.submit(order(1))).status is GatewayStatus.SENT
            await wait_until(lambda: len(records_for(proxy, "MBR04:C-000001")) == 2, what="executions")

    run(scenario())


def test_message_lost_in_transit_is_resent_after_reconnect(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            sim.drop_on_next_message()
            assert (await proxy.submit(order(7))).status is GatewayStatus.SENT
            await wait_until(
                lambda: len(records_for(proxy, "MBR04:C-000007")) == 2, 5, "executions after resend"
            )
            assert proxy.connections == 2
            assert proxy.session.stats["messages_resent"] == 1
            assert sim.received_ids == {"MBR04:C-000007": 1}

    run(scenario())


def test_unavailable_while_not_logged_on(tmp_path):
    async def scenario():
        proxy = make_proxy(tmp_path, exchange_port=1)  # nothing listens there
        await proxy.start()
        try:
            answer = await proxy.submit(order(1))
            assert answer.status is GatewayStatus.UNAVAILABLE
            assert proxy.store.seq_for_request("MBR04:C-000001") is None  # not remembered: retry will send
            assert await http_status(proxy.health_port) == 503
        finally:
            await proxy.stop()

    run(scenario())


def test_publish_failure_does_not_lose_the_execution(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            proxy.publisher.fail_next = 1
            await proxy.submit(order(3))
            await wait_until(lambda: len(records_for(proxy, "MBR04:C-000003")) == 2, 5, "executions")
            assert proxy.connections == 2  # the failure dropped the link; the resend brought it back
            assert [r["exec_type"] for r in records_for(proxy, "MBR04:C-000003")] == ["NEW", "TRADE"]

    run(scenario())


# ------------------------------------------------------------------ rejects, logon refusal, logout


@pytest.mark.parametrize(
    ("how", "msg_type"),
    [("session", "Reject"), ("business", "BusinessMessageReject"), ("app", "TradeCaptureReportAck")],
)
def test_exchange_rejections_are_published_and_raise_the_alarm_metric(tmp_path, how, msg_type, capsys):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            sim.reject_next(how, "instrument halted")
            await proxy.submit(trade("T-0-50-0"))
            await wait_until(lambda: proxy.metrics.total == 1, what="alarm")
            (record,) = records_for(proxy, "T-0-50-0")
            assert record["msg_type"] == msg_type
            assert record["text"] == "instrument halted"
            assert proxy.metrics.counts == {msg_type: 1}
            assert proxy.session.logged_on

    run(scenario())
    assert '"ExchangeRejects"' in capsys.readouterr().out  # the EMF metric line


def test_wrong_password_is_refused_and_the_proxy_stays_down(tmp_path):
    async def scenario():
        sim = ExchangeSimulator(heartbeat_interval=1, password="right")
        await sim.start()
        proxy = make_proxy(tmp_path, sim.port, password="wrong")
        await proxy.start()
        try:
            await wait_until(lambda: proxy.connections >= 2, 5, "retries")
            assert not proxy.session.logged_on
            assert await http_status(proxy.health_port) == 503
        finally:
            await proxy.stop()
            await sim.stop()

    run(scenario())


def test_graceful_stop_sends_logout(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            pass
        assert fix.LOGOUT in sim.session.received_log
        assert fix.LOGOUT in proxy.session.received_log  # the exchange answered it

    run(scenario())


# ------------------------------------------------------------------ the gateway client over TCP


def test_pipelined_requests_are_answered_in_order_and_reach_the_exchange_in_order(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            client = ProxyClient("127.0.0.1", proxy.gateway_port, connect_timeout=1, response_timeout=2)
            reports = [trade(f"T-0-{n}-0") for n in range(40)]
            first = await asyncio.to_thread(client.submit_many, reports)
            assert [r.request_id for r in first] == [t["request_id"] for t in reports]
            assert {r.status for r in first} == {GatewayStatus.SENT}
            again = await asyncio.to_thread(client.submit_many, reports[:5] + [{**order(9), "quantity": 0}])
            assert [r.status for r in again] == [GatewayStatus.DUPLICATE] * 5 + [GatewayStatus.REJECTED]
            await wait_until(lambda: len(sim.received) == 40, 5, "trade reports at the exchange")
            assert [m.get(571).decode() for m in sim.received] == [t["trade_report_id"] for t in reports]
            await wait_until(lambda: proxy.published == 40, 5, "acks published")
            client.close()

    run(scenario())


def test_pipelining_stops_at_unavailable_and_nothing_after_it_is_sent(tmp_path):
    async def scenario():
        proxy = make_proxy(tmp_path, exchange_port=1)  # never logged on: every request is UNAVAILABLE
        await proxy.start()
        try:
            client = ProxyClient("127.0.0.1", proxy.gateway_port, connect_timeout=1, response_timeout=2)
            with pytest.raises(ProxyUnavailableError):
                await asyncio.to_thread(client.submit_many, [order(1), order(2), order(3)])
            assert proxy.requests["UNAVAILABLE"] == 1  # the proxy read no request after the first answer
        finally:
            await proxy.stop()

    run(scenario())


def test_proxy_client_round_trip_and_bounded_failures(tmp_path):
    async def scenario():
        async with exchange_link(tmp_path) as (sim, proxy):
            client = ProxyClient("127.0.0.1", proxy.gateway_port, connect_timeout=1, response_timeout=2)
            first = await asyncio.to_thread(client.submit, order(1))
            second = await asyncio.to_thread(client.submit, order(1))
            bad = await asyncio.to_thread(client.submit, {**order(2), "quantity": 0})
            assert (first.status, second.status, bad.status) == (
                GatewayStatus.SENT,
                GatewayStatus.DUPLICATE,
                GatewayStatus.REJECTED,
            )
            client.close()

        # A proxy that accepts but never answers: the response timeout bounds the wait.
        async def silent(reader, writer):
            await asyncio.sleep(5)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = ProxyClient("127.0.0.1", port, connect_timeout=1, response_timeout=0.3)
        started = asyncio.get_running_loop().time()
        with pytest.raises(ProxyUnavailableError):
            await asyncio.to_thread(client.submit, order(3))
        assert asyncio.get_running_loop().time() - started < 1.5
        server.close()

        # Nobody listening at all.
        with pytest.raises(ProxyUnavailableError):
            await asyncio.to_thread(ProxyClient("127.0.0.1", port, connect_timeout=0.5).submit, order(4))

    run(scenario())
