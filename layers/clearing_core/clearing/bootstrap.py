"""Composition root: builds each service with its real adapters, once per container, lazily.

Nothing here runs at import time. Handlers call `validate_orders_service()` etc. on their first
invocation (the cold start); tests build services directly with in-memory adapters instead.
"""

from __future__ import annotations

from functools import cache

from clearing.config import ScheduledJobSettings, StreamFunctionSettings, load_settings


def _store(settings):
    from clearing.adapters.dynamodb import DynamoItemStore, dynamodb_client

    client = dynamodb_client(settings.dynamodb_endpoint_url, settings.aws_region)
    return DynamoItemStore(client, settings.table_names())


@cache
def stream_settings() -> StreamFunctionSettings:
    return load_settings(StreamFunctionSettings)


@cache
def shared_store():
    return _store(stream_settings())


@cache
def shared_publisher():
    from clearing.adapters.kafka import KafkaPublisher

    return KafkaPublisher(stream_settings())


@cache
def shared_refdata():
    from clearing.adapters.refdata import CachedReferenceData

    return CachedReferenceData(shared_store(), ttl_seconds=stream_settings().refdata_ttl_seconds)


def _writer(stage: str) -> str:
    s = stream_settings()
    return f"{s.function_name}:{s.function_version}"


@cache
def validate_orders_service():
    from clearing.services.validate import ValidateOrders

    return ValidateOrders(
        shared_store(),
        shared_publisher(),
        shared_refdata(),
        writer=_writer("validate_orders"),
        sent_at_window=stream_settings().window(),
    )


@cache
def match_orders_service():
    from clearing.services.match import MatchOrders

    return MatchOrders(shared_store(), shared_publisher(), shared_refdata(), writer=_writer("match_orders"))


@cache
def clear_trades_service():
    from clearing.services.clear import ClearTrades

    return ClearTrades(shared_store(), shared_publisher(), shared_refdata(), writer=_writer("clear_trades"))


@cache
def job_settings() -> ScheduledJobSettings:
    return load_settings(ScheduledJobSettings)


@cache
def job_store():
    return _store(job_settings())


@cache
def s3_client():
    import boto3

    return boto3.client("s3", region_name=job_settings().aws_region)
