"""The cost model (clearing_tools.cost) and `clearing cost`: formulas, scaling, and the CLI output."""

from __future__ import annotations

import json

import pytest
from clearing_tools.cli.main import main
from clearing_tools.cost import Prices, Workload, estimate


def test_dynamodb_request_cost_is_items_per_order_times_write_price():
    # Given 1,000 orders/s for 100 trading hours with 3.5 items per order and no reads
    w = Workload(
        orders_per_second=1000,
        trading_hours_per_month=100,
        dynamodb_reads_per_order=0,
        dynamodb_items_per_order=3.5,
    )
    # When estimated
    result = estimate(w)
    # Then 360 M orders x 3.5 WRU x $0.625 per million WRU
    assert result.orders_per_month == pytest.approx(360e6)
    assert result.monthly_usd["dynamodb_requests"] == pytest.approx(360 * 3.5 * 0.625)
    assert result.per_million_orders_usd["dynamodb_requests"] == pytest.approx(3.5 * 0.625)


def test_fewer_items_per_order_cost_less_and_everything_else_is_unchanged():
    lean, fat = (
        estimate(Workload(5000, dynamodb_items_per_order=2)),
        estimate(Workload(5000, dynamodb_items_per_order=4)),
    )
    assert lean.monthly_usd["dynamodb_requests"] < fat.monthly_usd["dynamodb_requests"]
    assert lean.monthly_usd["msk_brokers"] == fat.monthly_usd["msk_brokers"]


def test_fixed_costs_dominate_at_low_rates_and_amortise_at_high_rates():
    low, high = estimate(Workload(10)), estimate(Workload(50_000))
    assert low.total_per_million_orders_usd > 10 * high.total_per_million_orders_usd
    assert high.details["msk_brokers"] > low.details["msk_brokers"] >= 3
    assert high.details["msk_brokers"] % 3 == 0  # one broker per AZ
    assert high.monthly_usd["fargate_proxy"] == low.monthly_usd["fargate_proxy"]  # one FIX session


def test_larger_batches_spread_the_per_batch_overhead():
    small = estimate(Workload(50_000, batch_size=50))
    large = estimate(Workload(50_000, batch_size=1000))
    assert large.details["lambda_gb_seconds_per_order"] < small.details["lambda_gb_seconds_per_order"]
    assert large.details["lambda_invocations_per_second"] < small.details["lambda_invocations_per_second"]


def test_custom_prices_are_used():
    free_dynamo = Prices(dynamodb_write_per_million=0.0, dynamodb_read_per_million=0.0)
    assert estimate(Workload(1000), free_dynamo).monthly_usd["dynamodb_requests"] == 0


def test_negative_rate_is_refused():
    with pytest.raises(ValueError):
        estimate(Workload(-1))


def test_cli_prints_a_table_with_the_total(capsys):
    assert main(["cost", "--orders-per-second", "50000"]) == 0
    out = capsys.readouterr().out
    assert "DynamoDB on-demand requests" in out and "total" in out and "USD/M orders" in out


def test_cli_json_matches_the_model(capsys):
    assert main(["cost", "--orders-per-second", "2000", "--items-per-order", "2.5", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    expected = estimate(Workload(2000, dynamodb_items_per_order=2.5))
    assert data["total_monthly_usd"] == pytest.approx(expected.total_monthly_usd)
    assert data["prices_usd"]["dynamodb_write_per_million"] == 0.625
    assert set(data["monthly_usd"]) >= {
        "lambda_compute",
        "dynamodb_requests",
        "msk_brokers",
        "nlb",
        "fargate_proxy",
    }


def test_batches_are_self_clocked_without_a_window_and_filled_by_one():
    from clearing_tools.cost import effective_batch

    # 2,083 records/s on a partition, 60 ms per invocation + 0.15 ms per record, no window:
    # what arrives during one invocation is the next batch, B = r t0 / (1 - r tr)
    assert abs(effective_batch(2083, 0.0, 1000, 60, 0.15) - 2083 * 0.06 / (1 - 2083 * 0.00015)) < 1e-9
    assert effective_batch(2083, 1.0, 1000, 60, 0.15) == 1000  # the 1 s window fills the batch
    assert effective_batch(10_000, 0.0, 1000, 60, 0.15) == 1000  # cannot keep up: full batches
    assert effective_batch(0.5, 0.0, 1000, 60, 0.15) == 1.0  # quiet: one record per invocation
    no_window = estimate(Workload(5_000))
    window = estimate(Workload(5_000, batching_window_s=1.0))
    assert no_window.total_monthly_usd > window.total_monthly_usd  # latency costs invocations at low rates
