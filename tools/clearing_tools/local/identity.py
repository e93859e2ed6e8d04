"""Which broker and which DynamoDB a local run's state belongs to: detect a reset (lost) broker or store.

The local broker (Tansu, `memory://`) and moto keep everything in memory: a restarted one is empty. Its
committed offsets, topics, checkpoints and tables are gone, and a mapping that carried on would skip or
lose records without a word. So `clearing up` stamps both with the run's identity and writes it down:

- broker: one record on the marker topic `clearing.runtime` (partition 0, offset 0) whose value is
  the run id;
- DynamoDB: one item `{"pk": "RUNTIME", "sk": "identity", "run_id": ...}` in the table
  `<prefix>LocalRuntime` (not a template table: nothing of the pipeline reads it);
- `<state>/identity.json`: the run id, when, and where.

`reset_problems(config)` compares the two with the file: a broker without the marker (or with another
run's), a store without the sentinel, a component that does not answer. It is what `clearing status`,
`clearing up` (state of a previous run whose broker or store is gone), the mappings (before going on
and before sending a batch to the on-failure destination) and `clearing verify` (later) call.
Only local components are stamped: a real Kafka or DynamoDB named with --bootstrap-servers /
--dynamodb-endpoint keeps its state.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import one_line, write_json_atomic

MARKER_TOPIC = "clearing.runtime"
SENTINEL_TABLE = "LocalRuntime"  # <table_prefix>LocalRuntime
SENTINEL_KEY = {"pk": {"S": "RUNTIME"}, "sk": {"S": "identity"}}
IDENTITY_FILE = "identity.json"


@dataclass(frozen=True)
class ResetProblem:
    component: str  # broker | moto
    reason: str
    lost: bool = True  # False: not answering (it may come back); True: its state is gone for good

    def __str__(self) -> str:
        return f"{self.component}: {self.reason}"


def identity_path(config: RuntimeConfig):
    return config.state_path / IDENTITY_FILE


def read_identity(config: RuntimeConfig) -> dict[str, Any] | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        return json.loads(identity_path(config).read_text())
    return None


def sentinel_table(config: RuntimeConfig) -> str:
    return f"{config.table_prefix}{SENTINEL_TABLE}"


def local_dynamodb_client(config: RuntimeConfig):
    """A DynamoDB client for the runtime's own checks: short timeouts, one retry (moto is local)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=config.dynamodb_url,
        region_name=config.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"}),
    )


# ----------------------------------------------------------------------------- stamping (at `up`)


def stamp(config: RuntimeConfig) -> dict[str, Any]:
    """Write the marker record and the sentinel item of a new run id; save identity.json."""
    from kafka import KafkaProducer

    from clearing_tools.local.broker import create_topics

    run_id = f"run-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    identity: dict[str, Any] = {"run_id": run_id, "created_at": time.time()}
    if config.local_broker:
        create_topics(config.bootstrap_servers, {MARKER_TOPIC: 1})
        producer = KafkaProducer(bootstrap_servers=config.bootstrap_servers, acks="all")
        try:
            meta = producer.send(MARKER_TOPIC, value=run_id.encode(), partition=0).get(timeout=10)
        finally:
            producer.close(5)
        identity["broker"] = {"bootstrap": config.bootstrap_servers, "marker": [MARKER_TOPIC, 0, meta.offset]}
    if config.local_dynamodb:
        client = local_dynamodb_client(config)
        table = sentinel_table(config)
        if table not in client.list_tables().get("TableNames", []):
            client.create_table(
                TableName=table,
                KeySchema=[
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "sk", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        client.put_item(TableName=table, Item={**SENTINEL_KEY, "run_id": {"S": run_id}})
        identity["moto"] = {"endpoint": config.dynamodb_url, "table": table}
    write_json_atomic(identity_path(config), json.dumps(identity, indent=2))
    return identity


# ----------------------------------------------------------------------------- checking


class BrokerMarkerReader:
    """Reads the marker record; keeps its consumer between checks (the mappings check every few s)."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap
        self.consumer = None

    def read(self, timeout: float = 3.0) -> str | None:
        """The run id on the marker topic; None when the topic or its record is missing. Raises when
        the broker does not answer."""
        from kafka import KafkaConsumer, TopicPartition

        if self.consumer is None:
            self.consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap,
                enable_auto_commit=False,
                group_id=None,
                fetch_max_wait_ms=100,
                request_timeout_ms=int(max(timeout, 2) * 1000) + 1000,
                client_id="clearing-local-identity",
            )
        tp = TopicPartition(MARKER_TOPIC, 0)
        topics = self.consumer.topics()  # a metadata round trip: raises when the broker is down
        if MARKER_TOPIC not in topics:
            return None
        self.consumer.assign([tp])
        self.consumer.seek(tp, 0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            records = self.consumer.poll(timeout_ms=200, max_records=1).get(tp)
            if records:
                return records[0].value.decode("utf-8", "replace")
        return None

    def close(self) -> None:
        if self.consumer is not None:
            with contextlib.suppress(Exception):
                self.consumer.close()
            self.consumer = None


def broker_problem(
    config: RuntimeConfig, identity: dict[str, Any], reader: BrokerMarkerReader | None = None
) -> ResetProblem | None:
    if "broker" not in identity:
        return None
    own = reader is None
    reader = reader or BrokerMarkerReader(config.bootstrap_servers)
    try:
        found = reader.read()
    except Exception as exc:  # noqa: BLE001 - unreachable is a finding, not a crash
        if not own:
            reader.close()  # a fresh consumer next time
        return ResetProblem(
            "broker", f"not answering at {config.bootstrap_servers} ({one_line(exc, 120)})", lost=False
        )
    finally:
        if own:
            reader.close()
    if found == identity["run_id"]:
        return None
    if found is None:
        return ResetProblem(
            "broker",
            f"was reset: the marker of run {identity['run_id']} is gone from {MARKER_TOPIC} (a restarted "
            "in-memory broker: topics, records and committed offsets of the run are lost)",
        )
    return ResetProblem("broker", f"belongs to run {found}, not to this state's run {identity['run_id']}")


def store_problem(config: RuntimeConfig, identity: dict[str, Any], client=None) -> ResetProblem | None:
    if "moto" not in identity:
        return None
    client = client or local_dynamodb_client(config)
    table = identity["moto"]["table"]
    try:
        item = client.get_item(TableName=table, Key=SENTINEL_KEY, ConsistentRead=True).get("Item")
    except client.exceptions.ResourceNotFoundException:
        item = None
    except Exception as exc:  # noqa: BLE001
        return ResetProblem(
            "moto", f"not answering at {config.dynamodb_url} ({one_line(exc, 120)})", lost=False
        )
    found = item["run_id"]["S"] if item else None
    if found == identity["run_id"]:
        return None
    if found is None:
        return ResetProblem(
            "moto",
            f"was reset: the sentinel of run {identity['run_id']} is gone from table {table} (a restarted "
            "in-memory DynamoDB: tables, checkpoints and every decision of the run are lost)",
        )
    return ResetProblem("moto", f"belongs to run {found}, not to this state's run {identity['run_id']}")


def reset_problems(config: RuntimeConfig, identity: dict[str, Any] | None = None) -> list[ResetProblem]:
    """What is wrong with the local broker and store of the run recorded in config's state dir:
    [] when both still hold that run's state (or nothing was recorded: no run, or real services).

    This is the function `clearing verify` can call before trusting the store or the log:
        from clearing_tools.local.identity import reset_problems
        problems = reset_problems(RuntimeConfig(...))   # [] = not reset
    """
    identity = identity if identity is not None else read_identity(config)
    if not identity:
        return []
    return [p for p in (broker_problem(config, identity), store_problem(config, identity)) if p]


def was_reset(config: RuntimeConfig) -> bool:
    """True when the local broker or store lost (or cannot show) the state of the recorded run."""
    return bool(reset_problems(config))
