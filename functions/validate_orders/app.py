"""validate_orders Lambda: pre-trade risk on orders.new; exposure release from orders.events."""

from clearing import bootstrap
from clearing.handlers import handle_stream_batch
from clearing.observability import logger, metrics, tracer
from clearing.topics import ORDERS_EVENTS


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, service=None):
    service = service or bootstrap.validate_orders_service()

    def process(records):
        if records[0].topic == ORDERS_EVENTS:
            return service.release_partition(records)
        return service.validate_partition(records)

    return handle_stream_batch(event, "validate_orders", process)
