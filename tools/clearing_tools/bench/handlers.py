"""`clearing bench handlers`: 1,000-record MSK batches through the stream handlers.

Two runs over the same generated order flow:
- memory: the real handlers (functions/*/app.py, Powertools decorators included) with in-memory
  ports: the CPU cost of our code per order;
- moto: the same handlers against DynamoDB served by moto_server (started here on a free loopback
  port unless --dynamodb-endpoint is given), Kafka still in memory: where the time goes when
  every item is really written over HTTP.
Each stage is timed on its own (validate_orders, match_orders, clear_trades, the exposure release)
and the DynamoDB items written per order are counted.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
from typing import Any

import orjson

from clearing_tools.bench.harness import InMemoryLog


def _orders(n: int, seed: int) -> list[bytes]:
    from clearing_tools.local.oms import generate_orders

    return [m.value for m in generate_orders(n, seed=seed)]


def _member_key(raw: bytes) -> bytes:
    try:
        return str(orjson.loads(raw).get("member_id", "UNKNOWN")).encode()
    except Exception:
        return b"UNKNOWN"


def _context():
    from clearing_tools.local.invoke import LambdaContext

    return LambdaContext("bench", 1024, timeout_s=900)


def _load(function: str):
    from clearing_tools.local.invoke import load_handler
    from clearing_tools.template_model import find_template

    return load_handler(
        find_template().parent / "functions" / function / "app.py", "lambda_handler", function
    )


def bench_pipeline(store, orders: list[bytes], batch_size: int = 1000, partitions: int = 3) -> dict[str, Any]:
    from clearing.adapters.refdata import StaticReferenceData
    from clearing.services.clear import ClearTrades
    from clearing.services.match import MatchOrders
    from clearing.services.validate import ValidateOrders

    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "ClearingBench")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    log = InMemoryLog(partitions)
    ref = StaticReferenceData()
    for raw in orders:
        log.append("orders.new", _member_key(raw), raw)
    validate = ValidateOrders(store, log, ref)
    stages = [
        ("validate_orders", "orders.new", _load("validate_orders"), validate),
        ("match_orders", "orders.accepted", _load("match_orders"), MatchOrders(store, log, ref)),
        ("release_exposure", "orders.events", _load("validate_orders"), validate),
        ("clear_trades", "trades.executed", _load("clear_trades"), ClearTrades(store, log, ref)),
    ]
    ctx = _context()
    sink = io.StringIO()
    figures: dict[str, Any] = {}
    for name, topic, handler, service in stages:
        writes_before = store.writes
        records = 0
        elapsed = cpu = 0.0
        for p in range(partitions):
            size = len(log.topics[topic][p])
            for start in range(0, size, batch_size):
                event = log.event(topic, p, start, min(size, start + batch_size))
                t0, c0 = time.perf_counter(), time.process_time()
                with contextlib.redirect_stdout(sink):  # EMF metric lines: written, not shown
                    response = handler(event, ctx, service=service)
                elapsed += time.perf_counter() - t0
                cpu += time.process_time() - c0
                if response["batchItemFailures"]:
                    raise RuntimeError(f"{name} reported failures: {response}")
                records += min(size, start + batch_size) - start
        figures[name] = {
            "records": records,
            "seconds": round(elapsed, 4),
            "records_per_sec": round(records / elapsed, 1) if elapsed else None,
            # CPU time of this process: on a shared machine the figure that wall time hides
            "cpu_seconds": round(cpu, 4),
            "records_per_cpu_sec": round(records / cpu, 1) if cpu else None,
            "items_written": store.writes - writes_before,
        }
    total_items = sum(f["items_written"] for f in figures.values())
    n = len(orders)
    figures["orders"] = n
    figures["trades"] = log.size("trades.executed")
    figures["items_written_per_order"] = round(total_items / n, 3) if n else None
    pipeline_seconds = sum(f["seconds"] for k, f in figures.items() if isinstance(f, dict))
    figures["pipeline_orders_per_sec"] = round(n / pipeline_seconds, 1) if pipeline_seconds else None
    pipeline_cpu = sum(f["cpu_seconds"] for k, f in figures.items() if isinstance(f, dict))
    figures["pipeline_orders_per_cpu_sec"] = round(n / pipeline_cpu, 1) if pipeline_cpu else None
    return figures


def _moto_store(endpoint: str | None):
    from clearing.adapters.dynamodb import DynamoItemStore

    from clearing_tools.template_model import create_table_kwargs, table_names, tables

    proc = None
    if endpoint is None:
        import subprocess

        from clearing_tools.local.dynamodb import moto_argv
        from clearing_tools.local.processes import free_port, wait_for_port

        port = free_port()  # the same moto launcher as `clearing up` (docs/local-runtime.md)
        proc = subprocess.Popen(
            moto_argv("127.0.0.1", port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        endpoint = f"http://127.0.0.1:{port}"
    from clearing.adapters.dynamodb import dynamodb_client

    try:
        if proc is not None:
            wait_for_port("127.0.0.1", port, 30, proc)
        client = dynamodb_client(
            endpoint, "us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
        )
        prefix = f"bench-{int(time.time())}-"
        defs = tables()
        names = table_names(lambda logical: prefix + logical)
        for logical in defs:
            if prefix + logical in names.values():
                client.create_table(**create_table_kwargs(defs[logical], prefix + logical))
    except BaseException:
        if proc is not None:  # a failed start leaves no moto behind
            from clearing_tools.local.processes import stop_started

            stop_started(proc)
        raise
    return DynamoItemStore(client, names), proc


def register_bench(bench_sub) -> None:
    parser = bench_sub.add_parser("handlers", help="1,000-record MSK batches through the stream handlers")
    parser.add_argument("--orders", type=int, default=20_000, help="orders in the memory run (default 20000)")
    parser.add_argument(
        "--moto-orders", type=int, default=5_000, help="orders in the moto_server run (0: skip)"
    )
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--dynamodb-endpoint", default=None, help="use this DynamoDB endpoint instead of starting local moto"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from clearing.adapters.memory import InMemoryItemStore

    result: dict[str, Any] = {}
    result["memory"] = bench_pipeline(InMemoryItemStore(), _orders(args.orders, args.seed), args.batch_size)
    if args.moto_orders:
        store, proc = _moto_store(args.dynamodb_endpoint)
        try:
            result["moto"] = bench_pipeline(store, _orders(args.moto_orders, args.seed), args.batch_size)
        finally:
            if proc is not None:
                proc.terminate()
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for run_name, figures in result.items():
        table = Table(
            title=f"bench handlers: {run_name} ({figures['orders']} orders, {figures['trades']} trades)"
        )
        for col in ("stage", "records", "seconds", "records/s", "records/CPU s", "items written"):
            table.add_column(col, justify="right" if col != "stage" else "left")
        for stage, f in figures.items():
            if isinstance(f, dict):
                table.add_row(
                    stage,
                    str(f["records"]),
                    str(f["seconds"]),
                    str(f["records_per_sec"]),
                    str(f["records_per_cpu_sec"]),
                    str(f["items_written"]),
                )
        console.print(table)
        console.print(
            f"  pipeline: {figures['pipeline_orders_per_sec']} orders/s (sum of stage times; "
            f"{figures['pipeline_orders_per_cpu_sec']} per CPU second), "
            f"{figures['items_written_per_order']} DynamoDB items written per order"
        )
    return 0
