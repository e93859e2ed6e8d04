"""margin_run and settle_eod handlers over a seeded in-memory run; settlement files to S3 (moto)."""

from __future__ import annotations

import boto3
import pytest
from clearing import bootstrap
from clearing.adapters.refdata import seed_reference_data
from clearing.repositories import keys
from clearing_tools.bench.harness import InMemoryPipeline
from clearing_tools.local.oms import generate_orders
from moto import mock_aws

from tests.unit.handlers import FakeContext, load_handler

TABLE_ENV = {f"{t.upper()}_TABLE": f"t-{t}" for t in keys.TABLES}


@pytest.fixture()
def seeded(monkeypatch):
    for k, v in TABLE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SETTLEMENT_BUCKET", "clearing-settlement-test")
    bootstrap.job_settings.cache_clear()
    p = InMemoryPipeline()
    seed_reference_data(p.store)
    for m in generate_orders(800, seed=5):
        p.log.append("orders.new", m.key.encode(), m.value)
    p.drain()
    yield p
    bootstrap.job_settings.cache_clear()


def test_margin_run_handler_stores_requirements(seeded):
    response = load_handler("margin_run")({}, FakeContext(), store=seeded.store, refdata=seeded.refdata)
    assert (
        response["members"] == len([i for i in seeded.store.scan(keys.MARGIN) if i["kind"] == "MARGIN"]) > 0
    )


def test_settle_eod_writes_instructions_to_dynamodb_and_files_to_s3(seeded):
    day = sorted({i["settlement_date"] for i in seeded.store.scan(keys.OBLIGATIONS)})[0]
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="clearing-settlement-test")
        bootstrap.s3_client.cache_clear()
        sink = bootstrap.settlement_sink()  # SETTLEMENT_BUCKET set: the S3 sink, as in AWS
        response = load_handler("settle_eod")(
            {"settlement_date": day}, FakeContext(), store=seeded.store, refdata=seeded.refdata, sink=sink
        )
        bootstrap.s3_client.cache_clear()
        names = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="clearing-settlement-test")["Contents"])
        csv = s3.get_object(Bucket="clearing-settlement-test", Key=f"settlement/settlement-{day}.csv")[
            "Body"
        ].read()
    assert names == [f"settlement/settlement-{day}.csv", f"settlement/settlement-{day}.json"]
    assert response["instructions"] > 0 and csv.decode().count("\n") == response["instructions"] + 1
    stored = seeded.store.query(keys.OBLIGATIONS, f"INSTRUCTIONS#{day}")
    assert len(stored) == response["instructions"]
