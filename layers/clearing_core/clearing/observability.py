"""One Logger / Tracer / Metrics setup for every function, and the business metrics of a batch."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
# The template sets POWERTOOLS_METRICS_NAMESPACE (Globals); the default keeps a function run outside it
# (clearing invoke, tests) on the template's namespace instead of failing at the first metric.
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "ClearingPipeline")


def record_batch_metrics(stage: str, summary: dict) -> None:
    """One metric per business event; consumed = accepted + rejected + skipped + failed is visible."""
    metrics.add_metric(name="RecordsConsumed", unit=MetricUnit.Count, value=summary["consumed"])
    metrics.add_metric(name="RecordsAccepted", unit=MetricUnit.Count, value=summary["accepted"])
    metrics.add_metric(name="RecordsRejected", unit=MetricUnit.Count, value=summary["rejected"])
    metrics.add_metric(name="RecordsSkipped", unit=MetricUnit.Count, value=summary["skipped"])
    metrics.add_metric(name="RecordsFailed", unit=MetricUnit.Count, value=summary["failed"])
    for reason, count in summary.get("rejected_by_reason", {}).items():
        metrics.add_metric(
            name=f"Rejected{reason.title().replace('_', '')}", unit=MetricUnit.Count, value=count
        )
    # the business metrics the template's alarms and dashboard read (dimension: service)
    if stage == "validate_orders":
        metrics.add_metric(name="OrdersAccepted", unit=MetricUnit.Count, value=summary["accepted"])
        metrics.add_metric(name="OrdersRejected", unit=MetricUnit.Count, value=summary["rejected"])
    if summary.get("trades"):
        metrics.add_metric(name="TradesExecuted", unit=MetricUnit.Count, value=summary["trades"])
    if summary.get("trades_cleared"):
        metrics.add_metric(name="TradesCleared", unit=MetricUnit.Count, value=summary["trades_cleared"])
    for name in ("legs", "cleared_notional", "dead_lettered"):
        if summary.get(name):
            metrics.add_metric(
                name=name.title().replace("_", ""), unit=MetricUnit.Count, value=float(summary[name])
            )
