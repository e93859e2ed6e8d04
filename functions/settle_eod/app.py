"""settle_eod Lambda (EventBridge schedule, end of day): settlement instructions for a settlement date.

The event may name the date ({"settlement_date": "YYYY-MM-DD"}); by default: today's date (UTC).
Instructions go to DynamoDB, and as CSV and JSON files to the settlement sink that bootstrap wires:
s3://$SETTLEMENT_BUCKET/settlement/ in AWS, SETTLEMENT_OUTPUT_DIR locally."""

from datetime import UTC, datetime

from aws_lambda_powertools.metrics import MetricUnit
from clearing import bootstrap
from clearing.observability import logger, metrics, tracer
from clearing.services.reports import settle_eod


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, store=None, refdata=None, sink=None):
    store = store or bootstrap.job_store()
    refdata = refdata or bootstrap.job_refdata()
    day = (event or {}).get("settlement_date") or datetime.now(UTC).date().isoformat()
    result = settle_eod(store, refdata.current(), day, sink or bootstrap.settlement_sink())
    metrics.add_metric(name="SettlementInstructions", unit=MetricUnit.Count, value=result["instructions"])
    logger.info(
        "settlement instructions written",
        extra={"settlement_date": day, "instructions": result["instructions"], "files": result["files"]},
    )
    return {k: v for k, v in result.items() if k != "rows"}
