"""Local DynamoDB: moto_server, the template's tables, and the reference data seeded into them.

Reference data layout in the ReferenceTable (the one clearing.adapters.refdata reads; each item's
`data` attribute is the JSON text of the record, so decimals stay exact strings):
- pk="INSTRUMENT", sk=<symbol>, data=<instrument JSON>;
- pk="MEMBER", sk=<member_id>, data=<member JSON>;
- pk="CONFIG", sk="reference", data=<version, ccp_id, currency, fee_tiers_bps, holidays JSON>.
`read_reference_data(table)` turns these items back into the dict that
`clearing.domain.refdata.ReferenceData.from_dict` reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from clearing_tools import template_model
from clearing_tools.local.processes import RuntimeStartError, start_listening

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
INSTRUMENT_PK = "INSTRUMENT"
MEMBER_PK = "MEMBER"
CONFIG_PK = "CONFIG"
CONFIG_SK = "reference"
LOCAL_CLIENT_BOUNDS = {"connect_timeout": 2, "read_timeout": 20}


def moto_argv(host: str, port: int) -> list[str]:
    """moto's DynamoDB backend behind a keep-alive server (clearing_tools.local.moto_http11)."""
    try:
        import moto.server  # noqa: F401
        import waitress  # noqa: F401
    except ImportError as exc:
        raise RuntimeStartError(
            "moto or waitress not found: pip install 'moto[server,dynamodb]' waitress"
        ) from exc
    return [sys.executable, "-m", "clearing_tools.local.moto_http11", "-H", host, "-p", str(port)]


def start_moto(
    host: str, port: int, log_path: Path, pid_path: Path | None = None, detached: bool = True
) -> subprocess.Popen:
    """Start moto_server on host:port and wait until it answers."""
    return start_listening(
        "moto", moto_argv(host, port), host, port, log_path, pid_path, detached, timeout=30
    )


def dynamodb_resource(endpoint_url: str | None, region: str = "us-east-1"):
    """A boto3 DynamoDB resource for the endpoint (dummy credentials for a local one)."""
    creds = DUMMY_CREDENTIALS if endpoint_url else {}
    # A local endpoint answers in milliseconds or is down: bounded timeouts, few retries
    bounds = LOCAL_CLIENT_BOUNDS if endpoint_url else {}
    return boto3.resource(
        "dynamodb",
        endpoint_url=endpoint_url,
        region_name=region,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, **bounds),
        **creds,
    )


def create_tables(dynamodb, table_prefix: str, template: dict[str, Any] | None = None) -> dict[str, str]:
    """Create every AWS::DynamoDB::Table of the template as <prefix><LogicalId>; existing ones are kept.

    Returns {logical_id: table_name}.
    """
    client = dynamodb.meta.client
    existing = set(client.list_tables().get("TableNames", []))
    names = {}
    for logical_id, table in template_model.tables(template).items():
        name = f"{table_prefix}{logical_id}"
        names[logical_id] = name
        if name in existing:
            continue
        client.create_table(**template_model.create_table_kwargs(table, name))
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100}
        )
        ttl = template_model.ttl_kwargs(table, name)
        if ttl:
            client.update_time_to_live(**ttl)
    return names


def reference_items(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The ReferenceTable items for a reference-data dict (the layout in the module docstring)."""
    from clearing.repositories.reference import reference_items as items_for

    return items_for(raw)


def seed_reference_data(table, raw: dict[str, Any] | None = None) -> int:
    """Write the reference data (default: the bundled file) into the ReferenceTable. Returns items written."""
    if raw is None:
        from clearing.domain.refdata import bundled_reference_data_raw

        raw = bundled_reference_data_raw()
    items = reference_items(raw)
    with table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
        for item in items:
            batch.put_item(Item=item)
    return len(items)


def _query_all(table, pk: str) -> list[dict[str, Any]]:
    from boto3.dynamodb.conditions import Key

    items, kwargs = [], {"KeyConditionExpression": Key("pk").eq(pk), "ConsistentRead": True}
    while True:
        page = table.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def read_reference_data(table) -> dict[str, Any]:
    """The reference-data dict back from the ReferenceTable (input of ReferenceData.from_dict)."""
    config_item = table.get_item(Key={"pk": CONFIG_PK, "sk": CONFIG_SK}, ConsistentRead=True).get("Item")
    if config_item is None:
        raise LookupError(f"no reference data in table {table.name} (pk={CONFIG_PK}, sk={CONFIG_SK})")
    raw = json.loads(config_item["data"])
    raw["instruments"] = sorted(
        (json.loads(i["data"]) for i in _query_all(table, INSTRUMENT_PK)), key=lambda i: i["symbol"]
    )
    raw["members"] = sorted(
        (json.loads(m["data"]) for m in _query_all(table, MEMBER_PK)), key=lambda m: m["member_id"]
    )
    return raw


def wait_for_dynamodb(dynamodb, timeout: float = 30.0, error_grace: float = 3.0) -> None:
    """Until the endpoint answers ListTables. An endpoint that answers with an error (moto's 500) is
    broken, not starting: it fails after `error_grace` seconds instead of the whole timeout."""
    from botocore.exceptions import ClientError

    started = time.monotonic()
    deadline = started + timeout
    while True:
        try:
            dynamodb.meta.client.list_tables(Limit=1)
            return
        except Exception as exc:  # noqa: BLE001 - any failure means not ready yet
            answered = isinstance(exc, ClientError)
            if time.monotonic() > deadline or (answered and time.monotonic() - started > error_grace):
                endpoint = dynamodb.meta.client.meta.endpoint_url
                raise RuntimeStartError(f"DynamoDB endpoint {endpoint} not answering: {exc}") from exc
            time.sleep(0.1)


def local_store(cfg):
    """The ItemStore over the local runtime's tables (its DynamoDB endpoint and table prefix)."""
    from clearing.adapters.dynamodb import DynamoItemStore, dynamodb_client

    client = dynamodb_client(
        cfg.dynamodb_url,
        cfg.region,
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    )
    return DynamoItemStore(client, template_model.table_names(cfg.table_name))


def reference_data(store):
    """The reference data in `store`, else the bundled set (a store not seeded yet)."""
    from clearing.adapters.refdata import read_reference_data

    try:
        return read_reference_data(store)
    except LookupError:
        from clearing.domain.refdata import load_bundled_reference_data

        return load_bundled_reference_data()
