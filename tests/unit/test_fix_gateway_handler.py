"""exchange_gateway handler and use case with a fake proxy (no network)."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from clearing import bootstrap
from clearing.config import ConfigurationError
from clearing.fix.client import ProxyUnavailableError
from clearing.fix.gateway_protocol import GatewayResponse, GatewayStatus, parse_request

ROOT = Path(__file__).resolve().parents[2]


def load_handler():
    spec = importlib.util.spec_from_file_location(
        "exchange_gateway_app", ROOT / "functions/exchange_gateway/app.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app = load_handler()


@dataclass
class LambdaContext:
    function_name: str = "exchange_gateway"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:exchange_gateway"
    aws_request_id: str = "req-1"


class FakeProxy:
    """Remembers request ids like the real proxy: second time is DUPLICATE."""

    def __init__(self, down: bool = False, reject: set[str] | None = None) -> None:
        self.down = down
        self.reject = reject or set()
        self.sent: list[dict] = []
        self.calls = 0

    def submit(self, request: dict) -> GatewayResponse:
        self.calls += 1
        if self.down:
            raise ProxyUnavailableError("connection refused")
        request_id = request["request_id"]
        if request_id in self.reject:
            return GatewayResponse(request_id=request_id, status=GatewayStatus.REJECTED, reason="no")
        if any(r["request_id"] == request_id for r in self.sent):
            return GatewayResponse(request_id=request_id, status=GatewayStatus.DUPLICATE, msg_seq_num=1)
        parse_request(request)  # what reaches the proxy must be a valid request
        self.sent.append(request)
        return GatewayResponse(
            request_id=request_id, status=GatewayStatus.SENT, msg_seq_num=len(self.sent) + 1
        )


def event(name: str) -> dict:
    return json.loads((ROOT / "events" / name).read_text())


def with_value(evt: dict, index: int, change) -> dict:
    evt = copy.deepcopy(evt)
    record = next(iter(evt["records"].values()))[index]
    value = json.loads(base64.b64decode(record["value"]))
    change(value)
    record["value"] = base64.b64encode(json.dumps(value).encode()).decode()
    return evt


def test_trades_become_trade_reports_keyed_by_trade_id():
    proxy = FakeProxy()

    summary = app.lambda_handler(event("exchange_gateway_trades.json"), LambdaContext(), proxy=proxy)

    assert summary["sent"] == 2 and summary["trade_reports"] == 2
    assert [r["request_id"] for r in proxy.sent] == ["T-0-41-0", "T-0-42-0"]
    assert proxy.sent[0]["kind"] == "TRADE_REPORT"
    assert proxy.sent[0]["trade_report_id"] == "T-0-41-0"
    assert proxy.sent[0]["buy"]["member_id"] == "MBR01"


def test_exchange_orders_become_new_order_singles_with_deterministic_cl_ord_id():
    proxy = FakeProxy()

    summary = app.lambda_handler(event("exchange_gateway_orders.json"), LambdaContext(), proxy=proxy)

    assert summary == {
        "sent": 2,
        "duplicates": 0,
        "rejected": 0,
        "skipped": 0,
        "trade_reports": 0,
        "orders": 2,
    }
    assert [(r["kind"], r["cl_ord_id"], r["order_type"]) for r in proxy.sent] == [
        ("NEW_ORDER", "MBR04:C-000101", "LIMIT"),
        ("NEW_ORDER", "MBR01:C-000102", "MARKET"),
    ]


def test_redelivered_batch_is_answered_duplicate_and_not_sent_again():
    proxy = FakeProxy()
    app.lambda_handler(event("exchange_gateway_trades.json"), LambdaContext(), proxy=proxy)

    again = app.lambda_handler(event("exchange_gateway_trades.json"), LambdaContext(), proxy=proxy)

    assert (again["sent"], again["duplicates"]) == (0, 2)
    assert len(proxy.sent) == 2


def test_proxy_down_fails_the_invocation_so_the_mapping_retries():
    proxy = FakeProxy(down=True)

    with pytest.raises(ProxyUnavailableError):
        app.lambda_handler(event("exchange_gateway_trades.json"), LambdaContext(), proxy=proxy)
    assert proxy.calls == 1  # stopped at the first record: order within the partition is kept


def test_invalid_record_is_rejected_without_blocking_the_batch():
    broken = with_value(event("exchange_gateway_trades.json"), 0, lambda v: v.update(quantity=-5))
    proxy = FakeProxy()

    summary = app.lambda_handler(broken, LambdaContext(), proxy=proxy)

    assert (summary["rejected"], summary["sent"]) == (1, 1)
    assert [r["request_id"] for r in proxy.sent] == ["T-0-42-0"]


def test_proxy_rejection_is_counted_not_retried():
    proxy = FakeProxy(reject={"T-0-41-0"})

    summary = app.lambda_handler(event("exchange_gateway_trades.json"), LambdaContext(), proxy=proxy)

    assert (summary["rejected"], summary["sent"]) == (1, 1)


def test_internal_orders_are_skipped_and_cancels_become_cancel_requests():
    evt = with_value(event("exchange_gateway_orders.json"), 0, lambda v: v.update(route="INTERNAL"))
    evt = with_value(
        evt,
        1,
        lambda v: v.update(action="CANCEL", client_order_id="C-000103", orig_client_order_id="C-000102"),
    )
    proxy = FakeProxy()

    summary = app.lambda_handler(evt, LambdaContext(), proxy=proxy)

    assert summary["skipped"] == 1
    assert [(r["kind"], r["cl_ord_id"], r["orig_cl_ord_id"]) for r in proxy.sent] == [
        ("CANCEL_ORDER", "MBR01:C-000103", "MBR01:C-000102")
    ]


def test_missing_configuration_is_reported_clearly_at_first_use(monkeypatch):
    monkeypatch.delenv("PROXY_HOST", raising=False)
    monkeypatch.delenv("PROXY_PORT", raising=False)
    bootstrap.exchange_proxy.cache_clear()

    with pytest.raises(ConfigurationError, match="PROXY_HOST"):
        app.lambda_handler(event("exchange_gateway_trades.json"), LambdaContext())
    bootstrap.exchange_proxy.cache_clear()


def test_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("PROXY_HOST", "proxy.nlb.internal")
    monkeypatch.setenv("PROXY_PORT", "9000")
    monkeypatch.setenv("PROXY_RESPONSE_TIMEOUT", "3.5")
    bootstrap.exchange_proxy.cache_clear()
    try:
        client = bootstrap.exchange_proxy()
        assert (client.host, client.port, client.connect_timeout, client.response_timeout) == (
            "proxy.nlb.internal",
            9000,
            2.0,
            3.5,
        )
    finally:
        bootstrap.exchange_proxy.cache_clear()
