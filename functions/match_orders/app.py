"""match_orders Lambda: price-time matching of orders.accepted, one book per symbol."""

from clearing import bootstrap
from clearing.handlers import handle_stream_batch
from clearing.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, service=None):
    service = service or bootstrap.match_orders_service()
    return handle_stream_batch(event, "match_orders", service.match_partition)
