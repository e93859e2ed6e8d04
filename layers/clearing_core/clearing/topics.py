"""The Kafka topics of the pipeline and what each is keyed by (one source of truth)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    key: str  # what the partition key is, in the trade's terms
    purpose: str


ORDERS_NEW = "orders.new"
ORDERS_ACCEPTED = "orders.accepted"
ORDERS_REJECTED = "orders.rejected"
ORDERS_EVENTS = "orders.events"
ORDERS_EXCHANGE = "orders.exchange"
ORDERS_DEADLETTER = "orders.deadletter"
TRADES_EXECUTED = "trades.executed"
TRADES_DEADLETTER = "trades.deadletter"
EXCHANGE_EXECUTIONS = "exchange.executions"

TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        Topic(ORDERS_NEW, "member_id", "orders from the OMS (NEW, CANCEL, REPLACE)"),
        Topic(ORDERS_ACCEPTED, "symbol", "orders that passed pre-trade risk, routed INTERNAL"),
        Topic(ORDERS_REJECTED, "member_id", "rejections with reason code and the original bytes"),
        Topic(ORDERS_EVENTS, "member_id", "order lifecycle events from the matching engine"),
        Topic(
            ORDERS_EXCHANGE,
            "symbol",
            "accepted orders routed to the exchange (route EXCHANGE) and their CANCEL / REPLACE",
        ),
        Topic(
            ORDERS_DEADLETTER,
            "symbol",
            "orders.accepted / orders.events / exchange.executions records match_orders / the exposure releases cannot read",
        ),
        Topic(TRADES_EXECUTED, "symbol", "trades from the matching engine"),
        Topic(
            TRADES_DEADLETTER,
            "symbol",
            "trades clear_trades could not clear (unreadable, unknown member/symbol)",
        ),
        Topic(EXCHANGE_EXECUTIONS, "symbol", "ExecutionReports and TradeCaptureReportAcks from the exchange"),
    )
}
