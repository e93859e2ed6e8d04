"""`clearing cost --orders-per-second R [--json]`: the monthly AWS cost and cost per million orders."""

from __future__ import annotations

import argparse
import json
from typing import Any

from clearing_tools.cost import Prices, Workload, estimate, prices_table

COMPONENT_LABELS = {
    "lambda_compute": "Lambda compute (arm64 GB-s)",
    "lambda_requests": "Lambda requests",
    "esm_pollers": "MSK ESM pollers (provisioned)",
    "dynamodb_requests": "DynamoDB on-demand requests",
    "dynamodb_storage": "DynamoDB storage + PITR",
    "msk_brokers": "MSK brokers",
    "msk_storage": "MSK storage",
    "nlb": "Network Load Balancer",
    "fargate_proxy": "Fargate FIX proxy",
}


DEFAULTS = Workload(orders_per_second=0)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cost",
        help="estimate AWS cost per month and per million orders (docs/cost.md)",
        description="Estimate the pipeline's AWS cost at an order rate (us-east-1 list prices).",
    )
    parser.add_argument(
        "--orders-per-second", "-r", type=float, required=True, help="orders/s during trading hours"
    )
    parser.add_argument(
        "--items-per-order",
        type=float,
        default=DEFAULTS.dynamodb_items_per_order,
        help="DynamoDB items written per order (measured; default %(default)s)",
    )
    parser.add_argument("--trades-per-order", type=float, default=DEFAULTS.trades_per_order)
    parser.add_argument(
        "--trading-hours",
        type=float,
        default=DEFAULTS.trading_hours_per_month,
        help="trading hours per month (default %(default)s)",
    )
    parser.add_argument("--partitions", type=int, default=DEFAULTS.partitions)
    parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
    parser.add_argument(
        "--window",
        type=float,
        default=DEFAULTS.batching_window_s,
        help="MaximumBatchingWindowInSeconds (template default 0)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.orders_per_second < 0:
        print("--orders-per-second must be >= 0")
        return 2
    workload = Workload(
        orders_per_second=args.orders_per_second,
        dynamodb_items_per_order=args.items_per_order,
        trades_per_order=args.trades_per_order,
        trading_hours_per_month=args.trading_hours,
        partitions=args.partitions,
        batch_size=args.batch_size,
        batching_window_s=args.window,
    )
    result = estimate(workload)
    if args.json:
        print(
            json.dumps({**result.as_dict(), "prices_usd": prices_table(Prices())}, indent=2, sort_keys=True)
        )
        return 0
    per_million = result.per_million_orders_usd
    print(
        f"Orders: {args.orders_per_second:,.0f}/s in trading hours = {result.orders_per_month / 1e6:,.1f} M/month"
        f" ({workload.dynamodb_items_per_order} DynamoDB items/order)"
    )
    print(f"{'component':34} {'USD/month':>12} {'USD/M orders':>13}")
    for key, usd in result.monthly_usd.items():
        print(f"{COMPONENT_LABELS.get(key, key):34} {usd:12,.2f} {per_million[key]:13,.4f}")
    print(f"{'total':34} {result.total_monthly_usd:12,.2f} {result.total_per_million_orders_usd:13,.4f}")
    d = result.details
    print(
        f"peak: {d['kafka_ingress_mb_s']:.1f} MB/s Kafka ingress, {d['msk_brokers']:.0f} brokers, "
        f"{d['esm_pollers_at_peak']:.0f} pollers, {d['dynamodb_write_units_per_second']:,.0f} WRU/s, "
        f"{d['lambda_invocations_per_second']:,.0f} invocations/s"
    )
    return 0
