"""exchange_gateway use case: hand executed trades and exchange-routed orders to the FIX proxy.

One MSK batch in, in record order: a `trades.executed` record becomes a TRADE_REPORT request
(TradeReportID = trade_id), an `orders.exchange` record a NEW_ORDER / CANCEL_ORDER / REPLACE_ORDER
request (ClOrdID = `member_id:client_order_id`, deterministic, so a redelivered record carries the
same id). The proxy answers SENT or DUPLICATE (idempotent by that id), REJECTED (never sendable:
counted and logged, not retried) or is unavailable: then ExchangeUnavailable propagates, the
invocation fails and the event-source mapping redelivers the batch (ExchangeUnavailable); what was already sent comes
back DUPLICATE, so nothing is lost and nothing reaches the exchange twice.

Why not a per-record partial-batch response: the records after a failed one would go ahead of it,
while a proxy outage affects every record alike; stopping at the first transient failure keeps the
partition's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from clearing.fix.gateway_protocol import GatewayStatus, parse_request
from clearing.messages import ACCEPTED_ORDER, EXECUTED_TRADE, ExecutedTrade, MessageError, parse
from clearing.ports import ExchangeProxy, ExchangeUnavailable
from clearing.topics import ORDERS_EXCHANGE, TRADES_EXECUTED

__all__ = [
    "ExchangeBoundRecord",
    "ExchangeProxy",
    "ExchangeUnavailable",
    "GatewayOutcome",
    "UnroutableRecord",
    "exchange_request_for",
    "forward_to_exchange",
]


class UnroutableRecord(Exception):
    """A record that can never become a valid exchange request (retrying would not help)."""


@dataclass(frozen=True)
class ExchangeBoundRecord:
    topic: str
    partition: int
    offset: int
    value: bytes

    @property
    def position(self) -> str:
        return f"{self.topic}-{self.partition}@{self.offset}"


@dataclass
class GatewayOutcome:
    sent: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    trade_reports: int = 0
    orders: int = 0

    def summary(self) -> dict[str, int]:
        return {
            "sent": len(self.sent),
            "duplicates": len(self.duplicates),
            "rejected": len(self.rejected),
            "skipped": len(self.skipped),
            "trade_reports": self.trade_reports,
            "orders": self.orders,
        }


def _trade_report(trade: ExecutedTrade) -> dict[str, Any]:
    return {
        "request_id": trade["trade_id"],
        "kind": "TRADE_REPORT",
        "trade_report_id": trade["trade_id"],
        "symbol": trade["symbol"],
        "price": trade["price"],
        "quantity": trade["quantity"],
        "trade_date": trade["trade_date"],
        "executed_at": trade["executed_at"],
        "aggressor": trade["aggressor"],
        "buy": trade["buy"],
        "sell": trade["sell"],
    }


def cl_ord_id_for(order: Mapping[str, Any]) -> str:
    """Deterministic ClOrdID: unique per member because validate_orders rejects reused client ids."""
    return f"{order['member_id']}:{order['client_order_id']}"


def _order_request(order: Mapping[str, Any]) -> dict[str, Any] | None:
    if order.get("route") != "EXCHANGE":
        return None
    cl_ord_id = cl_ord_id_for(order)
    common = {
        "request_id": cl_ord_id,
        "cl_ord_id": cl_ord_id,
        "member_id": order["member_id"],
        "account": order["account"],
        "symbol": order["symbol"],
        "side": order["side"],
        "quantity": order["quantity"],
        "sent_at": order["sent_at"],
    }
    priced = {
        "order_type": order.get("type"),
        "price": order.get("price"),
        "time_in_force": order.get("time_in_force") or "DAY",
    }
    action = order.get("action", "NEW")
    if action == "NEW":
        return {"kind": "NEW_ORDER", **common, **priced}
    if action == "CANCEL":
        return {"kind": "CANCEL_ORDER", **common, "orig_cl_ord_id": order["order_id"]}
    if action == "REPLACE":
        return {"kind": "REPLACE_ORDER", **common, **priced, "orig_cl_ord_id": order["order_id"]}
    raise UnroutableRecord(f"unknown order action {action!r}")


def exchange_request_for(topic: str, value: bytes) -> dict[str, Any] | None:
    """The proxy request for one record, None when the record is not for the exchange. The record is
    parsed with its topic's contract (clearing.messages); one that does not follow it is unroutable."""
    request: dict[str, Any] | None
    try:
        if topic == TRADES_EXECUTED:
            request = _trade_report(parse(EXECUTED_TRADE, value))
        elif topic == ORDERS_EXCHANGE:
            request = _order_request(parse(ACCEPTED_ORDER, value))
        else:
            raise UnroutableRecord(f"topic {topic!r} is not consumed by exchange_gateway")
    except MessageError as exc:
        raise UnroutableRecord(f"not a {topic} message: {exc}") from exc
    except KeyError as exc:
        raise UnroutableRecord(f"missing field {exc}") from exc
    if request is None:
        return None
    try:
        return parse_request(request).model_dump(mode="json")
    except ValidationError as exc:
        raise UnroutableRecord(f"invalid {request['kind']}: {exc.errors()[0]['msg']}") from exc


# Requests per pipelined call to the proxy (ProxyClient.submit_many); bounded so that one call's
# answers fit the response timeout and a failure resends little.
PIPELINE_DEPTH = 100


def forward_to_exchange(
    records: Iterable[ExchangeBoundRecord],
    proxy: ExchangeProxy,
    log: Any = None,
    pipeline_depth: int = PIPELINE_DEPTH,
) -> GatewayOutcome:
    """Send the batch's exchange requests in order, pipelined PIPELINE_DEPTH at a time when the proxy
    adapter can (`submit_many`); ExchangeUnavailable stops and propagates."""
    outcome = GatewayOutcome()
    pending: list[tuple[ExchangeBoundRecord, dict[str, Any]]] = []
    for record in records:
        try:
            request = exchange_request_for(record.topic, record.value)
        except UnroutableRecord as exc:
            _send(pending, proxy, outcome, log)  # keep the outcome in record order
            pending = []
            outcome.rejected.append({"position": record.position, "reason": str(exc)})
            if log is not None:
                log.error(
                    "record cannot be sent to the exchange",
                    extra={"position": record.position, "reason": str(exc)},
                )
            continue
        if request is None:
            outcome.skipped.append(record.position)
            continue
        pending.append((record, request))
        if len(pending) >= pipeline_depth:
            _send(pending, proxy, outcome, log)
            pending = []
    _send(pending, proxy, outcome, log)
    return outcome


def _send(
    pending: list[tuple[ExchangeBoundRecord, dict[str, Any]]],
    proxy: ExchangeProxy,
    outcome: GatewayOutcome,
    log: Any,
) -> None:
    if not pending:
        return
    requests = [request for _, request in pending]
    submit_many = getattr(proxy, "submit_many", None)
    responses = submit_many(requests) if submit_many is not None else [proxy.submit(r) for r in requests]
    for (record, request), response in zip(pending, responses, strict=True):
        request_id = request["request_id"]
        if request["kind"] == "TRADE_REPORT":
            outcome.trade_reports += 1
        else:
            outcome.orders += 1
        if response.status is GatewayStatus.SENT:
            outcome.sent.append(request_id)
        elif response.status is GatewayStatus.DUPLICATE:
            outcome.duplicates.append(request_id)
        elif response.status is GatewayStatus.REJECTED:
            outcome.rejected.append(
                {
                    "position": record.position,
                    "request_id": request_id,
                    "reason": response.reason or "rejected by proxy",
                }
            )
            if log is not None:
                log.error(
                    "proxy rejected the request",
                    extra={"position": record.position, "request_id": request_id, "reason": response.reason},
                )
        else:  # an adapter that returns UNAVAILABLE instead of raising
            raise ExchangeUnavailable(f"{request_id}: {response.reason}")
