"""clear_trades Lambda: novation, positions and net obligations from trades.executed."""

from clearing import bootstrap
from clearing.handlers import handle_stream_batch
from clearing.observability import logger, metrics, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, service=None):
    service = service or bootstrap.clear_trades_service()
    return handle_stream_batch(event, "clear_trades", service.clear_partition)
