"""settle_eod Lambda (EventBridge schedule, end of day): settlement instructions for a settlement date.

The event may name the date ({"settlement_date": "YYYY-MM-DD"}); by default: today's date (UTC).
Instructions go to DynamoDB, and as CSV/JSON to SETTLEMENT_OUTPUT_DIR when set (S3 in AWS via the
SettlementBucket, see template.yaml)."""

from datetime import datetime, timezone
from pathlib import Path

from aws_lambda_powertools.metrics import MetricUnit

from clearing import bootstrap
from clearing.adapters.refdata import CachedReferenceData
from clearing.observability import logger, metrics, tracer
from clearing.services.reports import settle_eod


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, store=None, out_dir=None):
    store = store or bootstrap.job_store()
    day = (event or {}).get("settlement_date") or datetime.now(timezone.utc).date().isoformat()
    if out_dir is None and bootstrap.job_settings().settlement_output_dir:
        out_dir = Path(bootstrap.job_settings().settlement_output_dir)
    result = settle_eod(store, CachedReferenceData(store, ttl_seconds=0).current(), day, out_dir)
    metrics.add_metric(name="SettlementInstructions", unit=MetricUnit.Count, value=result["instructions"])
    logger.info("settlement instructions written", extra={"settlement_date": day, "instructions": result["instructions"]})
    return {k: v for k, v in result.items() if k != "rows"}
