"""settle_eod Lambda (EventBridge schedule, end of day): settlement instructions for a settlement date.

The event may name the date ({"settlement_date": "YYYY-MM-DD"}); by default: today's date (UTC).
Instructions go to DynamoDB, and as CSV and JSON files: to s3://$SETTLEMENT_BUCKET/settlement/ in
AWS, or to SETTLEMENT_OUTPUT_DIR when set (local runs)."""

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from aws_lambda_powertools.metrics import MetricUnit
from clearing import bootstrap
from clearing.adapters.refdata import CachedReferenceData
from clearing.observability import logger, metrics, tracer
from clearing.services.reports import settle_eod


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, store=None, out_dir=None, s3=None):
    store = store or bootstrap.job_store()
    settings = bootstrap.job_settings()
    day = (event or {}).get("settlement_date") or datetime.now(UTC).date().isoformat()
    if out_dir is None:
        out_dir = Path(settings.settlement_output_dir or tempfile.mkdtemp(prefix="settlement-"))
    result = settle_eod(store, CachedReferenceData(store, ttl_seconds=0).current(), day, out_dir)
    if settings.settlement_bucket:
        s3 = s3 or bootstrap.s3_client()
        uploaded = []
        for path in result["files"].values():
            key = f"settlement/{Path(path).name}"
            s3.upload_file(path, settings.settlement_bucket, key)
            uploaded.append(f"s3://{settings.settlement_bucket}/{key}")
        result["files"] = {"s3": uploaded}
    metrics.add_metric(name="SettlementInstructions", unit=MetricUnit.Count, value=result["instructions"])
    logger.info(
        "settlement instructions written",
        extra={"settlement_date": day, "instructions": result["instructions"], "files": result["files"]},
    )
    return {k: v for k, v in result.items() if k != "rows"}
