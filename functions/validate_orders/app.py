"""validate_orders Lambda: pre-trade risk on orders.new; exposure release from orders.events and
exchange.executions."""

from clearing import bootstrap
from clearing.handlers import handle_stream_batch
from clearing.observability import logger, metrics, tracer
from clearing.topics import EXCHANGE_EXECUTIONS, ORDERS_EVENTS


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, service=None):
    service = service or bootstrap.validate_orders_service()
    # one MSK event source per topic, so an event holds records of one topic only
    topics = {key.rsplit("-", 1)[0] for key in (event.get("records") or {})}
    if topics == {ORDERS_EVENTS}:
        return handle_stream_batch(event, "release_exposure", service.release_partition)
    if topics == {EXCHANGE_EXECUTIONS}:
        return handle_stream_batch(event, "release_exchange_exposure", service.release_exchange_partition)
    return handle_stream_batch(event, "validate_orders", service.validate_partition)
