"""margin_run Lambda (EventBridge schedule): IM by scenario scan, VM, margin calls per member."""

from aws_lambda_powertools.metrics import MetricUnit
from clearing import bootstrap
from clearing.observability import logger, metrics, tracer
from clearing.services.reports import run_margin


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event, context, store=None, refdata=None):
    store = store or bootstrap.job_store()
    refdata = refdata or bootstrap.job_refdata()
    result = run_margin(store, refdata.current())
    metrics.add_metric(name="MarginCalls", unit=MetricUnit.Count, value=len(result["margin_calls"]))
    logger.info(
        "margin run",
        extra={
            "run_id": result["run_id"],
            "members": len(result["requirements"]),
            "margin_calls": len(result["margin_calls"]),
        },
    )
    return {
        "run_id": result["run_id"],
        "members": len(result["requirements"]),
        "margin_calls": result["margin_calls"],
    }
