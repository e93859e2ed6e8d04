"""Helpers for the local event-source mapping tests: a tiny template around tests/integration/esm_app."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from clearing_tools.local.broker import create_topics
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.runtime import LocalRuntime
from kafka import KafkaProducer

APP_DIR = Path(__file__).parent / "esm_app"

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Parameters:
  ResultsFile: {{Type: String, Default: /dev/null}}
  TopicName: {{Type: String, Default: esm.test}}
  GroupId: {{Type: String, Default: esm-test}}
  SleepMs: {{Type: String, Default: "0"}}
Globals:
  Function:
    Timeout: 30
    MemorySize: 256
    Environment:
      Variables:
        RESULTS_FILE: !Ref ResultsFile
        SLEEP_MS: !Ref SleepMs
        ORDERS_TABLE: !Ref OrdersTable
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {code_uri}
      Handler: app.lambda_handler
      Events:
        Stream:
          Type: MSK
          Properties:
            Stream: arn:aws:kafka:us-east-1:123456789012:cluster/test/1
            Topics: [!Ref TopicName]
            StartingPosition: TRIM_HORIZON
            BatchSize: {batch_size}
            MaximumBatchingWindowInSeconds: 1
            ConsumerGroupId: !Ref GroupId
            MaximumRetryAttempts: {retries}
            BisectBatchOnFunctionError: {bisect}
            FunctionResponseTypes: [ReportBatchItemFailures]
            DestinationConfig:
              OnFailure:
                Destination: arn:aws:sqs:us-east-1:123456789012:esm-test-dlq
  OrdersTable:
    Type: AWS::DynamoDB::Table
    Properties:
      AttributeDefinitions: [{{AttributeName: pk, AttributeType: S}}]
      KeySchema: [{{AttributeName: pk, KeyType: HASH}}]
"""


class EsmHarness:
    """One test's mapping: its own topic, consumer group, state dir and results file."""

    def __init__(
        self,
        tmp_path: Path,
        bootstrap: str,
        moto_url: str,
        *,
        batch_size=10,
        retries=2,
        bisect=True,
        partitions=3,
        sleep_ms=0,
        **config,
    ):
        self.tmp = tmp_path
        self.bootstrap = bootstrap
        self.topic = f"esm.test.{uuid.uuid4().hex[:8]}"
        self.results = tmp_path / "results.jsonl"
        tmp_path.mkdir(parents=True, exist_ok=True)
        template = tmp_path / "template.yaml"
        template.write_text(
            TEMPLATE.format(
                code_uri=str(APP_DIR),
                batch_size=batch_size,
                retries=retries,
                bisect="true" if bisect else "false",
            )
        )
        create_topics(bootstrap, {self.topic: partitions})
        self.partitions = partitions
        self.config = RuntimeConfig(
            state_dir=tmp_path / "state",
            kafka_bootstrap_servers=bootstrap,
            dynamodb_endpoint_url=moto_url,
            template_path=template,
            table_prefix=f"esm-{uuid.uuid4().hex[:6]}-",
            template_parameters={
                "ResultsFile": str(self.results),
                "TopicName": self.topic,
                "GroupId": f"g-{self.topic}",
                "SleepMs": str(sleep_ms),
            },
            extra_topics=[],
            onfailure_topic=None,
            retry_backoff_s=0.01,
            **config,
        )
        self.runtime = LocalRuntime(self.config, owner_pid=os.getpid())
        self.producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=2)

    def __enter__(self) -> EsmHarness:
        self.runtime.start()
        return self

    def __exit__(self, *exc) -> None:
        self.producer.close()
        self.runtime.stop()

    def send(self, n: int, partition: int, fail: str | None = None, times: int = 1, key: str | None = None):
        value = json.dumps({"n": n, "fail": fail, "times": times}).encode()
        return self.producer.send(
            self.topic,
            value=value,
            partition=partition,
            key=(key or f"k{n}").encode(),
            headers=[("origin", b"test")],
        )

    def flush(self) -> None:
        self.producer.flush()

    def results_lines(self) -> list[dict]:
        if not self.results.exists():
            return []
        return [json.loads(line) for line in self.results.read_text().splitlines() if line]

    def invocations(self) -> list[dict]:
        path = Path(str(self.results) + ".invocations")
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def onfailure(self) -> list[dict]:
        path = self.config.state_path / "onfailure" / "EchoFunction.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def wait_idle(self, timeout=30.0) -> float:
        return self.runtime.wait_until_idle(timeout)

    def wait_for(self, predicate, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("condition not met in time")
