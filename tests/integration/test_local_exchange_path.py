"""The exchange path of the local runtime: orders -> validate -> match -> exchange_gateway -> FIX proxy ->
exchange simulator -> exchange.executions, every function running under its local event-source mapping.

One LocalRuntime (own state dir, free ports): broker, moto, exchange simulator, FIX proxy, mappings.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from decimal import Decimal

import pytest
from clearing.topics import EXCHANGE_EXECUTIONS, ORDERS_NEW, TRADES_EXECUTED
from clearing_tools.exchange.local import proxy_health, simulator_status
from clearing_tools.local.broker import probe_consumer, topic_partitions
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.runtime import LocalRuntime
from kafka import KafkaProducer

from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _order(member: str, cid: str, symbol: str, side: str, price: str, qty: int, route: str = "INTERNAL"):
    return {
        "action": "NEW", "client_order_id": cid, "member_id": member, "account": f"{member}-HOUSE",
        "symbol": symbol, "side": side, "type": "LIMIT", "price": price, "quantity": qty,
        "time_in_force": "GTC", "route": route, "sent_at": _now(),
    }  # fmt: skip


def _amend(action: str, member: str, cid: str, orig: str, symbol: str, **terms):
    """A CANCEL or REPLACE (no route: it goes where the order named by `orig` went)."""
    return {
        "action": action, "client_order_id": cid, "member_id": member, "symbol": symbol,
        "orig_client_order_id": orig, "sent_at": _now(), **terms,
    }  # fmt: skip


def _now() -> str:
    """sent_at as the OMS stamps it: validate_orders checks it against the record's timestamp
    (CreateTime, the producer's clock), within 24 h back and 5 min ahead."""
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _read_all(bootstrap: str, topic: str, expected: int, timeout: float = 15.0) -> list[dict]:
    """Every record of `topic`, waiting until at least `expected` are there."""
    consumer = probe_consumer(bootstrap)
    try:
        consumer.assign(topic_partitions(consumer, [topic]))
        consumer.seek_to_beginning()
        records: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=200).values():
                records += [json.loads(r.value) for r in batch]
        return records
    finally:
        consumer.close()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    config = RuntimeConfig(
        state_dir=tmp_path_factory.mktemp("exchange-path") / "state",
        broker_port=free_port(),
        moto_port=free_port(),
        exchange_sim_port=free_port(),
        exchange_sim_control_port=free_port(),
        proxy_gateway_port=free_port(),
        proxy_health_port=free_port(),
        kafka_bootstrap_servers=None,  # whatever the caller's shell exports: everything local
        dynamodb_endpoint_url=None,
        exchange_endpoint=None,
        proxy_endpoint=None,
        table_prefix=f"xp-{uuid.uuid4().hex[:6]}-",
        default_partitions=2,
    )
    local = LocalRuntime(config, owner_pid=os.getpid())
    local.start()
    try:
        yield local
    finally:
        local.stop()


def test_the_gateway_reaches_the_simulator_through_the_local_proxy(runtime):
    config = runtime.config
    # Given the runtime decided to run the exchange side (the gateway's mappings run) and started it in order
    names = [c.name for c in runtime.components]
    assert names == ["broker", "moto", "exchange-sim", "fix-proxy", "esm-supervisor"]
    assert json.loads((config.state_path / "runtime.json").read_text())["start_exchange"] is True
    # and the gateway's local environment points at the local proxy, in plain TCP
    env = runtime.env_for_function("ExchangeGatewayFunction")
    assert (env["PROXY_HOST"], env["PROXY_PORT"], env["PROXY_TLS"]) == (
        "127.0.0.1", str(config.proxy_gateway_port), "false",
    )  # fmt: skip
    # and status shows both up, the proxy logged on
    health = {c.name: c for c in runtime.status(with_lag=False).components}
    assert health["exchange-sim"].state == "running" and "logged on" in health["exchange-sim"].detail
    assert health["fix-proxy"].state == "running" and "LOGGED_ON" in health["fix-proxy"].detail
    endpoint = f"127.0.0.1_{config.exchange_sim_port}"  # one store per exchange endpoint
    assert (config.state_path / "fix" / "fix-proxy" / endpoint / "CLEARHOUSE-EXCHANGE" / "seqnums").is_file()

    # When crossing ACME orders (two trades, whatever order they reach the book in) and one order
    # routed to the exchange, then a REPLACE of it and a CANCEL of the REPLACE, go through the pipeline
    run = uuid.uuid4().hex[:6]
    exchange_cid, replace_cid, cancel_cid = f"XP-{run}-X1", f"XP-{run}-X2", f"XP-{run}-X3"
    orders = [
        _order("MBR02", f"XP-{run}-S1", "ACME", "SELL", "125.40", 100),
        _order("MBR01", f"XP-{run}-B1", "ACME", "BUY", "125.40", 60),
        _order("MBR03", f"XP-{run}-B2", "ACME", "BUY", "125.45", 40),
        _order("MBR04", exchange_cid, "GLOBX", "BUY", "48.10", 500, route="EXCHANGE"),
        _amend("REPLACE", "MBR04", replace_cid, exchange_cid, "GLOBX", price="48.20", quantity=400),
        _amend("CANCEL", "MBR04", cancel_cid, replace_cid, "GLOBX"),
    ]
    producer = KafkaProducer(bootstrap_servers=config.bootstrap_servers, acks="all")
    for order in orders:
        producer.send(ORDERS_NEW, key=order["member_id"].encode(), value=json.dumps(order).encode())
    producer.flush()
    producer.close()
    waited = runtime.wait_until_idle(timeout=40)

    # Then match executed two trades for 100 shares in all
    trades = _read_all(config.bootstrap_servers, TRADES_EXECUTED, expected=2)
    assert len(trades) == 2 and sum(t["quantity"] for t in trades) == 100
    # and the exchange acknowledged a trade report for each and filled the exchange-routed order:
    # the proxy published the exchange's answers on exchange.executions
    executions = _read_all(config.bootstrap_servers, EXCHANGE_EXECUTIONS, expected=6)
    acks = [e for e in executions if e["msg_type"] == "TradeCaptureReportAck"]
    assert sorted(a["trade_report_id"] for a in acks) == sorted(t["trade_id"] for t in trades)
    assert all(a["trd_rpt_status"] == "ACCEPTED" for a in acks)
    order_id = f"MBR04:{exchange_cid}"
    reports = [e for e in executions if e["msg_type"] == "ExecutionReport" and e["cl_ord_id"] == order_id]
    assert [r["exec_type"] for r in reports] == ["NEW", "TRADE"]
    assert reports[-1]["cum_qty"] == 500 and reports[-1]["last_px"] == "48.10"
    # and the REPLACE and the CANCEL reached the exchange (35=G, 35=F, OrigClOrdID the order's id):
    # validate_orders sent them to orders.exchange, where the order went, not to our book
    amended = {
        e["cl_ord_id"]: (e["exec_type"], e.get("orig_cl_ord_id"))
        for e in executions
        if e["msg_type"] == "ExecutionReport" and e["cl_ord_id"] != order_id
    }
    assert amended == {
        f"MBR04:{replace_cid}": ("REPLACED", order_id),
        f"MBR04:{cancel_cid}": ("CANCELED", order_id),
    }
    assert not [e for e in executions if e["msg_type"] in ("Reject", "BusinessMessageReject")]
    # and the simulator received exactly those five messages, once each
    assert simulator_status(config.host, config.exchange_sim_control_port)["received"] == 5
    code, body = proxy_health(config.host, config.proxy_health_port)
    assert code == 200 and body["published"] == len(executions) == 6

    # and no mapping failed or sent anything to the on-failure destination
    mappings = {m.mapping_id: m for m in runtime.status().mappings}
    assert mappings["ExchangeGatewayFunction.TradesExecuted"].records_done == 2
    assert mappings["ExchangeGatewayFunction.OrdersExchange"].records_done == 3
    for mapping in mappings.values():
        assert (mapping.function_errors, mapping.onfailure_records, mapping.lag) == (0, 0, 0), mapping
    assert not list((config.state_path / "onfailure").glob("*.jsonl"))
    assert waited < 40
    # and validate_orders' third mapping read every exchange answer and gave the exchange-routed
    # order's exposure back (the simulator filled it; its REPLACED / CANCELED release nothing more):
    # no order is left open, so no member holds any exposure, INTERNAL (orders.events) or not
    assert mappings["ValidateOrdersFunction.ExchangeExecutions"].records_done == 6
    assert _exposures(config, ["MBR01", "MBR02", "MBR03", "MBR04"]) == dict.fromkeys(
        ["MBR01", "MBR02", "MBR03", "MBR04"], Decimal(0)
    )
    assert _exchange_order(config, "MBR04", exchange_cid)["open_qty"] == 0


def _exposures(config: RuntimeConfig, members: list[str]) -> dict[str, Decimal]:
    """Each member's exposure as validate_orders reads it: reserved + released (both sources)."""
    from clearing.repositories.keys import STATE
    from clearing.repositories.state import ExposureLedger
    from clearing_tools.local.dynamodb import local_store

    found = local_store(config).get_many(STATE, [k for m in members for k in ExposureLedger.keys(m)])
    out = {}
    for m in members:
        reserved, _, adjustment = ExposureLedger.of_member(found, m, 0)
        out[m] = reserved + adjustment
    return out


def _exchange_order(config: RuntimeConfig, member: str, client_order_id: str) -> dict:
    from clearing.repositories.keys import STATE
    from clearing.repositories.state import ExposureLedger
    from clearing_tools.local.dynamodb import local_store

    key = ExposureLedger.exchange_order_key(member, client_order_id)
    return local_store(config).get_many(STATE, [key])[key]


# ----------------------------------------------------------------------------- choosing what starts


def _names(**settings) -> list[str]:
    config = RuntimeConfig(state_dir="/nonexistent-state", kafka_bootstrap_servers=None,
                           dynamodb_endpoint_url=None, **settings)  # fmt: skip
    return [c.name for c in LocalRuntime(config).components]


def test_the_exchange_side_starts_when_the_gateway_mappings_run_and_can_be_turned_off():
    core = ["broker", "moto"]
    assert _names() == [*core, "exchange-sim", "fix-proxy", "esm-supervisor"]
    assert _names(start_exchange=False) == [*core, "esm-supervisor"]
    # no mapping talks to the proxy: nothing to start, unless asked for
    assert _names(start_esm=False) == core
    assert _names(functions=["validate_orders", "match_orders"]) == [*core, "esm-supervisor"]
    assert _names(start_esm=False, start_exchange=True) == [*core, "exchange-sim", "fix-proxy"]
    assert _names(start_esm=False, extra_components=["fix-proxy"]) == [*core, "fix-proxy"]


def test_real_endpoints_replace_the_local_exchange_side(monkeypatch):
    # A real FIX acceptor: the local proxy logs on to it, no simulator runs
    config = RuntimeConfig(state_dir="/nonexistent-state", exchange_endpoint="fix-uat.example:9880")
    runtime = LocalRuntime(config)
    sim = next(c for c in runtime.components if c.name == "exchange-sim")
    assert sim.health().state == "external"
    proxy = next(c for c in runtime.components if c.name == "fix-proxy")
    assert (proxy.env["EXCHANGE_HOST"], proxy.env["EXCHANGE_PORT"]) == ("fix-uat.example", "9880")
    # one FIX store per exchange endpoint: another exchange never sees this session's sequence numbers
    assert proxy.env["FIX_STORE_DIR"].endswith("/fix/fix-proxy/fix-uat.example_9880")
    # A running TLS proxy: nothing of the exchange side starts, the gateway speaks TLS to it
    monkeypatch.setenv("PROXY_TLS_CA_FILE", "/etc/pki/private-ca.pem")
    config = RuntimeConfig(
        state_dir="/nonexistent-state", proxy_endpoint="proxy.internal:9443", proxy_tls=True
    )
    runtime = LocalRuntime(config)
    assert [c.name for c in runtime.components if c.name in ("exchange-sim", "fix-proxy")] == ["fix-proxy"]
    assert runtime.components[2].health().state == "external"
    env = runtime.env_for_function("ExchangeGatewayFunction")
    assert (env["PROXY_HOST"], env["PROXY_PORT"], env["PROXY_TLS"]) == ("proxy.internal", "9443", "true")
    assert env["PROXY_TLS_CA_FILE"] == "/etc/pki/private-ca.pem"


def test_a_taken_proxy_health_port_is_named_before_anything_starts(tmp_path):
    import socket

    from clearing_tools.exchange.local import fix_proxy_component
    from clearing_tools.local.processes import RuntimeStartError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = RuntimeConfig(state_dir=tmp_path, proxy_gateway_port=free_port(), proxy_health_port=port)
        with pytest.raises(
            RuntimeStartError, match=f"127.0.0.1:{port} for fix-proxy health.*--proxy-health-port"
        ):
            fix_proxy_component(config).start()
    assert not (tmp_path / "pids" / "fix-proxy.pid").exists()


def test_the_proxy_keeps_one_fix_store_per_exchange_endpoint(tmp_path):
    from clearing_tools.exchange.local import fix_proxy_component, simulated_session_dirs

    # The same SenderCompID/TargetCompID against two exchanges: two stores, never one session's numbers
    # against the other (the proxy logged on with 34=23 where the new exchange expected 1)
    simulator = RuntimeConfig(state_dir=tmp_path, exchange_sim_port=19878, exchange_endpoint=None)
    real = RuntimeConfig(state_dir=tmp_path, exchange_endpoint="fix.example:9880")
    sim_store = fix_proxy_component(simulator).env["FIX_STORE_DIR"]
    real_store = fix_proxy_component(real).env["FIX_STORE_DIR"]
    assert sim_store == str(tmp_path.resolve() / "fix" / "fix-proxy" / "127.0.0.1_19878")
    assert real_store == str(tmp_path.resolve() / "fix" / "fix-proxy" / "fix.example_9880")
    # and what `down` / a cold `up` wipes is the simulated session only, never a real exchange's
    wiped = {str(p) for p in simulated_session_dirs(real)}
    assert sim_store in wiped and real_store not in wiped


def test_the_proxy_logs_on_to_another_exchange_with_a_fresh_session(tmp_path, kafka_broker):
    from clearing_tools.exchange.local import exchange_sim_component, fix_proxy_component

    def ports() -> dict:
        return {"exchange_sim_port": free_port(), "exchange_sim_control_port": free_port()}

    common = {"kafka_bootstrap_servers": kafka_broker, "dynamodb_endpoint_url": None, "proxy_endpoint": None,
              "proxy_gateway_port": free_port(), "proxy_health_port": free_port(), "fix_logon_timeout": 15}  # fmt: skip
    state = tmp_path / "state"
    first = RuntimeConfig(state_dir=state, exchange_endpoint=None, **ports(), **common)
    other = RuntimeConfig(state_dir=tmp_path / "other", exchange_endpoint=None, **ports(), **common)
    started = []
    try:
        # Given the proxy had a session with the local simulator (its inbound sequence number moved on)
        for component in (exchange_sim_component(first), fix_proxy_component(first)):
            started.append(component)
            component.start()
        started.pop().stop()
        # When it is pointed at another exchange (a fresh acceptor that starts at MsgSeqNum 1)
        sim = exchange_sim_component(other)
        started.append(sim)
        sim.start()
        moved = first.model_copy(update={"exchange_endpoint": f"127.0.0.1:{other.exchange_sim_port}"})
        proxy = fix_proxy_component(moved)
        started.append(proxy)
        # Then it logs on at once with a fresh session: with the simulator's store it expected 34=3, got
        # 34=1 and logged out "MsgSeqNum too low" (a real exchange then loops on it; the simulator, whose
        # own numbers move on with each logon, let a later attempt through)
        before = proxy.log_path.stat().st_size
        proxy.start()
        with proxy.log_path.open() as log:
            log.seek(before)
            text = log.read()
        assert "MsgSeqNum too low" not in text
        assert "logged on (next out 2, next in 2)" in text
    finally:
        for component in reversed(started):
            component.stop()
