"""Composition root: builds each service with its real adapters, once per container, lazily.

Nothing here runs at import time. Handlers call `validate_orders_service()` etc. on their first
invocation (the cold start); tests build services directly with in-memory adapters instead.
"""

from __future__ import annotations

from functools import cache

from clearing.config import (
    ConfigurationError,
    ExchangeGatewaySettings,
    QueryApiSettings,
    ScheduledJobSettings,
    StreamFunctionSettings,
    load_settings,
)


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


@cache
def job_refdata():
    """Reference data for the scheduled jobs: read fresh on every run (ttl 0)."""
    from clearing.adapters.refdata import CachedReferenceData

    return CachedReferenceData(job_store(), ttl_seconds=0)


def settlement_sink(out_dir=None):
    """Where settle_eod writes its files: `out_dir` (tests), S3 when SETTLEMENT_BUCKET is set (AWS),
    else SETTLEMENT_OUTPUT_DIR or a temporary folder (local runs)."""
    import tempfile
    from pathlib import Path

    from clearing.adapters.files import DirectorySink, S3Sink

    settings = job_settings()
    if out_dir is not None:
        return DirectorySink(Path(out_dir))
    if settings.settlement_bucket:
        return S3Sink(s3_client(), settings.settlement_bucket, prefix="settlement/")
    return DirectorySink(Path(settings.settlement_output_dir or tempfile.mkdtemp(prefix="settlement-")))


@cache
def exchange_proxy():
    """The FIX proxy client (the NLB's TLS listener in AWS), built at the first invocation."""
    from clearing.fix.client import ProxyClient

    settings = load_settings(ExchangeGatewaySettings)
    try:
        return ProxyClient(
            settings.proxy_host,
            settings.proxy_port,
            connect_timeout=settings.proxy_connect_timeout,
            response_timeout=settings.proxy_response_timeout,
            tls=settings.proxy_tls,
            ca_file=settings.proxy_tls_ca_file or None,
            server_name=settings.proxy_tls_server_name or None,
        )
    except OSError as exc:  # ssl.SSLError is one: an unreadable or invalid CA file
        raise ConfigurationError(
            f"ExchangeGatewaySettings: PROXY_TLS_CA_FILE {settings.proxy_tls_ca_file!r}: {exc}"
        ) from exc


@cache
def query_api():
    """The member API's resolver over the tables (no Kafka log, no local health: AWS)."""
    from clearing.adapters.refdata import CachedReferenceData
    from clearing.api.routes import QueryApiDeps, build_api

    settings = load_settings(QueryApiSettings)
    store = _store(settings)
    refdata = CachedReferenceData(store, ttl_seconds=settings.refdata_ttl_seconds)
    return build_api(QueryApiDeps(store=store, refdata=refdata.current))
