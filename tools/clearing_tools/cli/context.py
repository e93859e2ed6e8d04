"""Where CLI commands find the data: the deployed tables (env as in Lambda) or the local runtime's."""

from __future__ import annotations

import os


def data_store():
    """An ItemStore: from ORDERS_TABLE & co. when set (real DynamoDB or any endpoint), else the local
    runtime's moto_server and table prefix (clearing up)."""
    from clearing.adapters.dynamodb import DynamoItemStore, dynamodb_client

    if os.environ.get("ORDERS_TABLE"):
        from clearing.config import TableSettings, load_settings

        settings = load_settings(TableSettings)
        client = dynamodb_client(settings.dynamodb_endpoint_url, settings.aws_region)
        return DynamoItemStore(client, settings.table_names())
    from clearing_tools.local.config import RuntimeConfig

    cfg = RuntimeConfig()
    require_local_dynamodb(cfg)
    return local_store(cfg)


class StackNotRunning(RuntimeError):
    """The local stack this command reads is not up."""


def require_local_dynamodb(cfg) -> None:
    """Fail at once, in one line, when the local DynamoDB is not listening (instead of botocore's
    retries: half a minute before the same answer)."""
    from urllib.parse import urlparse

    from clearing_tools.local.processes import port_is_open

    url = urlparse(cfg.dynamodb_url)
    if not port_is_open(url.hostname or "127.0.0.1", url.port or 80, timeout=0.5):
        raise StackNotRunning(
            f"no DynamoDB at {cfg.dynamodb_url}: the local stack is not running (`clearing up`, or "
            "`clearing demo --keep-running`; `clearing status` shows what runs), or set ORDERS_TABLE & co. "
            "for deployed tables"
        )


def local_store(cfg):
    """The ItemStore over the local runtime's tables (clearing_tools.local.dynamodb.local_store)."""
    from clearing_tools.local.dynamodb import local_store

    return local_store(cfg)


def reference_data(store):
    """The reference data in `store`, else the bundled set (clearing_tools.local.dynamodb.reference_data)."""
    from clearing_tools.local.dynamodb import reference_data

    return reference_data(store)
