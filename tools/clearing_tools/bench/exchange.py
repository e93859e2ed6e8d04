"""`clearing bench exchange`: trade reports through ProxyClient -> FIX proxy -> exchange simulator.

The proxy and the simulator run in this process (asyncio, loopback FIX session, session store on disk
without fsync, in-memory execution publisher); the gateway's blocking client runs in a thread, as in the
Lambda. Two ways of sending the same number of trade reports are timed:
- sequential: one `submit` round trip per request (what the gateway did before pipelining);
- pipelined: `submit_many` with up to PIPELINE_DEPTH requests per round trip (what it does now).
For each: SENT answers per second at the client, and how long until every exchange ack was handed to the
execution publisher (the proxy's inbound side, one flush per socket read).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from clearing.services.exchange_gateway import PIPELINE_DEPTH


def trade_report(trade_id: str) -> dict[str, Any]:
    return {
        "request_id": trade_id, "kind": "TRADE_REPORT", "trade_report_id": trade_id, "symbol": "ACME",
        "price": "125.40", "quantity": 100, "trade_date": "2026-11-24", "executed_at": "2026-11-24T14:30:00.123Z",
        "aggressor": "BUY",
        "buy": {"member_id": "MBR01", "account": "MBR01-HOUSE", "order_id": "MBR01:C-000001"},
        "sell": {"member_id": "MBR02", "account": "MBR02-CLIENT", "order_id": "MBR02:C-000007"},
    }  # fmt: skip


async def bench_exchange(reports: int, store_dir: Path, depth: int = PIPELINE_DEPTH) -> dict[str, Any]:
    from clearing.fix.client import ProxyClient
    from clearing.fix.gateway_protocol import GatewayStatus
    from clearing_fix.proxy import FixProxy
    from clearing_fix.publisher import InMemoryExecutionPublisher
    from clearing_fix.session import SessionConfig
    from clearing_fix.store import FileSessionStore

    from clearing_tools.exchange.simulator import ExchangeSimulator

    quiet = logging.getLogger("clearing_tools.bench.exchange")
    quiet.setLevel(logging.WARNING)
    sim = ExchangeSimulator(heartbeat_interval=30)
    await sim.start()
    config = SessionConfig("CLEARHOUSE", "EXCHANGE", heartbeat_interval=30)
    proxy = FixProxy(session_config=config, store=FileSessionStore(store_dir, config.session_id, fsync=False),
                     publisher=InMemoryExecutionPublisher(), exchange_host="127.0.0.1", exchange_port=sim.port,
                     logger=quiet)  # fmt: skip
    figures: dict[str, Any] = {"reports": reports, "pipeline_depth": depth}
    try:  # the simulator is stopped too when the proxy fails to start
        await proxy.start()
        await proxy.wait_logged_on(10)
        client = ProxyClient("127.0.0.1", proxy.gateway_port, response_timeout=30)
        for mode in ("sequential", "pipelined"):
            batch = [trade_report(f"T-{mode}-{n}") for n in range(reports)]
            published_before = proxy.published
            started = time.perf_counter()
            if mode == "sequential":
                answers = await asyncio.to_thread(lambda b=batch: [client.submit(r) for r in b])  # type: ignore[misc]
            else:
                answers = await asyncio.to_thread(
                    lambda b=batch: [  # type: ignore[misc]
                        a for i in range(0, len(b), depth) for a in client.submit_many(b[i : i + depth])
                    ]
                )
            sent = time.perf_counter() - started
            if [a.status for a in answers] != [GatewayStatus.SENT] * reports:
                raise RuntimeError(f"{mode}: not every report was SENT")
            while proxy.published - published_before < reports:  # the simulator acks every report
                if time.perf_counter() - started > 120:
                    raise RuntimeError(f"{mode}: acks missing")
                await asyncio.sleep(0.005)
            acked = time.perf_counter() - started
            figures[mode] = {
                "sent_per_sec": round(reports / sent, 1),
                "acked_per_sec": round(reports / acked, 1),
            }
        client.close()
    finally:
        await proxy.stop()
        await sim.stop()
    return figures


def register_bench(bench_sub) -> None:
    parser = bench_sub.add_parser(
        "exchange", help="trade reports through the FIX proxy: sequential vs pipelined"
    )
    parser.add_argument("--reports", type=int, default=2000, help="trade reports per mode (default 2000)")
    parser.add_argument("--depth", type=int, default=PIPELINE_DEPTH, help="requests per pipelined round trip")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as tmp:
        figures = asyncio.run(bench_exchange(args.reports, Path(tmp), args.depth))
    if args.json:
        print(json.dumps(figures))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"bench exchange: {args.reports} trade reports per mode (proxy + simulator in-process)"
    )
    for column in ("mode", "SENT answers/s", "exchange acks published/s"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode in ("sequential", "pipelined"):
        table.add_row(
            mode if mode == "sequential" else f"pipelined ({args.depth} per round trip)",
            f"{figures[mode]['sent_per_sec']:,.0f}",
            f"{figures[mode]['acked_per_sec']:,.0f}",
        )
    Console().print(table)
    return 0
