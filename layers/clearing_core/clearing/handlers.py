"""What every stream handler does around its service: per-partition runs, metrics, the response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from clearing.observability import logger, record_batch_metrics
from clearing.ports import KafkaRecord
from clearing.services.batch import BatchReport, run_partitions


def handle_stream_batch(
    event: dict[str, Any], stage: str, process_partition: Callable[[list[KafkaRecord]], BatchReport]
) -> dict[str, Any]:
    def log_failure(records: list[KafkaRecord], exc: Exception) -> None:
        logger.warning(
            "partition batch failed; reported for retry",
            extra={
                "stage": stage,
                "topic": records[0].topic,
                "partition": records[0].partition,
                "first_offset": records[0].offset,
                "records": len(records),
                "error": str(exc),
            },
        )

    report = run_partitions(event, process_partition, on_failure=log_failure)
    summary = report.summary()
    record_batch_metrics(stage, summary)
    logger.info("batch processed", extra={"stage": stage, **summary})
    if not report.accounted:  # every consumed offset must be accounted for
        raise RuntimeError(f"{stage}: records unaccounted for: {summary}")
    return report.response()
