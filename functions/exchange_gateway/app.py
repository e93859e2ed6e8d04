"""exchange_gateway Lambda: MSK (trades.executed, orders.exchange) -> FIX proxy (NLB) -> exchange."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.kafka_event import KafkaEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from clearing import bootstrap
from clearing.observability import logger, metrics, tracer
from clearing.ports import ExchangeProxy
from clearing.services.exchange_gateway import ExchangeBoundRecord, forward_to_exchange


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext, proxy: ExchangeProxy | None = None) -> dict:
    """Forward the batch in order; a proxy outage raises so the event-source mapping retries."""
    records = [
        ExchangeBoundRecord(topic=r.topic, partition=r.partition, offset=r.offset, value=r.decoded_value)
        for r in KafkaEvent(event).records
    ]
    outcome = forward_to_exchange(records, proxy or bootstrap.exchange_proxy(), logger)
    metrics.add_metric(name="ExchangeRequestsSent", unit=MetricUnit.Count, value=len(outcome.sent))
    metrics.add_metric(name="ExchangeRequestsDuplicate", unit=MetricUnit.Count, value=len(outcome.duplicates))
    metrics.add_metric(name="ExchangeRequestsRejected", unit=MetricUnit.Count, value=len(outcome.rejected))
    summary = outcome.summary()
    logger.info("batch forwarded to the exchange", extra=summary)
    return summary
