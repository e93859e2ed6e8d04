"""The main job: the whole pipeline on this machine, end to end, with a summary and an HTML report.

`clearing demo` starts the local stack if it is not running, publishes N orders from the OMS simulator
to orders.new (sent_at stamped at publish time), waits until every mapping is idle, runs
`clearing verify`, and summarises: orders accepted/rejected by reason, trades, cleared notional,
netting efficiency, margin calls, throughput and end-to-end latency (OMS publish -> cleared leg).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from clearing.repositories import keys
from clearing.topics import ORDERS_NEW

from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.cpu import cpu_snapshot, cpu_spent
from clearing_tools.local.esm import read_worker_states


@dataclass
class DemoRun:
    orders: int
    published_at: list[float] = field(default_factory=list)  # wall clock of each publish (s)
    start_offsets: dict[int, int] = field(default_factory=dict)
    end_offsets: dict[int, int] = field(default_factory=dict)
    started: float = 0.0
    published: float = 0.0
    idle: float = 0.0
    cpu_seconds: dict[str, float] = field(default_factory=dict)  # component -> CPU s during the run
    cpu_before: dict[str, tuple[int, float]] = field(default_factory=dict)  # readings at the first publish
    invocations: dict[str, dict[str, float]] = field(default_factory=dict)  # worker -> handler invocations


def _utc_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(raw: bytes, now: float) -> bytes:
    """Set sent_at to the publish time (the generator's clock is synthetic); other bytes untouched."""
    if not raw.startswith(b"{"):
        return raw
    try:
        body = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(body, dict) or "sent_at" not in body:
        return raw
    body["sent_at"] = _utc_iso(now)
    return json.dumps(body, separators=(",", ":")).encode()


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    from clearing_tools.local.broker import probe_consumer, topic_partitions, true_end_offsets

    consumer = probe_consumer(bootstrap)
    try:
        ends = true_end_offsets(consumer, topic_partitions(consumer, [topic]))
        return {tp.partition: off for tp, off in ends.items()}
    finally:
        consumer.close()


def publish_orders(
    config: RuntimeConfig,
    n: int,
    rate: float,
    seed: int,
    progress=None,
    task=None,
    stamp: bool = True,
    id_prefix: str | None = None,
) -> DemoRun:
    """Publish n simulated OMS orders; `stamp` sets sent_at to the publish time (latency), off for
    runs that must be byte-for-byte reproducible."""
    from kafka import KafkaProducer

    from clearing_tools.local.oms import create_time_ms, generate_orders, wait_until_due

    run = DemoRun(orders=n)
    run.start_offsets = _end_offsets(config.bootstrap_servers, ORDERS_NEW)
    producer = KafkaProducer(
        bootstrap_servers=config.bootstrap_servers,
        acks="all",
        linger_ms=5,
        batch_size=256 * 1024,
        max_in_flight_requests_per_connection=1,
    )
    prefix = id_prefix if id_prefix is not None else f"D{int(time.time())}-"
    # The order flow is generated before the clock starts, as a load generator does: the OMS is
    # not part of the pipeline, and generating (~0.2 ms of CPU per order here) would take CPU
    # from it on a 2-core machine. Only stamping sent_at and sending happen in the timed part.
    flow = list(generate_orders(n, seed=seed, id_prefix=prefix))
    run.cpu_before = cpu_snapshot(config.state_path)
    run.started = time.time()
    for i, msg in enumerate(flow):
        wait_until_due(run.started, i, rate, clock=time.time)
        now = time.time()
        if stamp:
            producer.send(
                ORDERS_NEW, key=msg.key.encode(), value=_stamp(msg.value, now), timestamp_ms=int(now * 1000)
            )
        else:  # reproducible runs: the record's timestamp is the order's own sent_at, as an OMS would set it
            producer.send(ORDERS_NEW, key=msg.key.encode(), value=msg.value, timestamp_ms=create_time_ms(msg))
        run.published_at.append(now)
        if progress is not None and i % 500 == 0:
            progress.update(task, completed=i)
    producer.flush(30)
    producer.close(10)
    run.published = time.time()
    if progress is not None:
        progress.update(task, completed=n)
    run.end_offsets = _end_offsets(config.bootstrap_servers, ORDERS_NEW)
    return run


def invocations_during(before: list[dict], after: list[dict]) -> dict[str, dict[str, float]]:
    """Per worker: handler invocations, records per invocation and mean wall ms per invocation
    between two readings of the workers' state files (what each hop adds to latency)."""
    earlier = {w["worker_id"]: w for w in before}
    out = {}
    for w in after:
        b = earlier.get(w["worker_id"], {})
        calls = w["invocations"] - b.get("invocations", 0)
        if calls <= 0:
            continue
        records = w["records_done"] - b.get("records_done", 0)
        ms = w.get("invocation_ms_total", 0.0) - b.get("invocation_ms_total", 0.0)
        out[w["worker_id"]] = {
            "invocations": calls,
            "records_per_invocation": round(records / calls, 1),
            "mean_invocation_ms": round(ms / calls, 1),
        }
    return out


def _in_run(src: str, run: DemoRun) -> bool:
    topic, partition, offset = src.rsplit("/", 2)
    p, o = int(partition), int(offset)
    return topic == ORDERS_NEW and run.start_offsets.get(p, 0) <= o < run.end_offsets.get(p, 0)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[k]


def summarise(store, refdata, run: DemoRun, log=None, exchange: bool = True) -> dict[str, Any]:
    """`log` (a RetainedLog): verify reconciles it with the store; None: the store against itself."""
    from clearing.services.reports import ScanOnce, obligations_report, run_margin, verify

    store = ScanOnce(store)
    orders = store.scan(keys.ORDERS)
    accepted = rejected = 0
    by_reason: dict[str, int] = {}
    for item in orders:
        if item.get("kind") not in ("VALIDATION", "REJECTION") or not _in_run(item.get("src", "x/0/0"), run):
            continue
        if item["decision"] == "ACCEPTED":
            accepted += 1
        else:
            rejected += 1
            by_reason[item["reason"]] = by_reason.get(item["reason"], 0) + 1
    since = _utc_iso(run.started - 0.001)
    trades = [
        t for t in store.scan(keys.TRADES) if t["sk"] == "CLEARED" and (t.get("executed_at") or "") >= since
    ]
    latencies = []
    cleared_notional = Decimal(0)
    for t in trades:
        executed = datetime.fromisoformat(t["executed_at"].replace("Z", "+00:00")).timestamp()
        latencies.append(t["cleared_at"] - executed * 1000)
        cleared_notional += Decimal(t["legs"][0]["notional"])
    end = max([t["cleared_at"] / 1000 for t in trades] + [run.published])
    invariants = verify(store, log, exchange=exchange)
    netting = obligations_report(store)
    margin = run_margin(store, refdata)
    trade_dates = Counter(t["legs"][0].get("trade_date") for t in trades if t.get("legs"))
    summary = {
        "orders": run.orders,
        "business_date": trade_dates.most_common(1)[0][0] if trade_dates else _utc_iso(run.started)[:10],
        "currency": getattr(refdata, "currency", "USD"),
        "accepted": accepted,
        "rejected": rejected,
        "unaccounted": run.orders - accepted - rejected,
        "rejected_by_reason": dict(sorted(by_reason.items())),
        "trades": len(trades),
        "cleared_notional": str(cleared_notional),
        "throughput_orders_per_sec": round(run.orders / max(end - run.started, 1e-9), 1),
        "publish_rate_orders_per_sec": round(run.orders / max(run.published - run.started, 1e-9), 1),
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50), 1),
            "p99": round(_percentile(latencies, 0.99), 1),
            "max": round(max(latencies, default=0.0), 1),
        },
        "netting_efficiency": float(netting["totals"]["cash_efficiency"]),
        "netting": netting["totals"],
        "margin_calls": len(margin["margin_calls"]),
        "invariants_ok": invariants.ok,
        "violations": invariants.violations[:20],
        "checked": invariants.checked,
        "verify_checks": invariants.checks,
        "verify_seconds": invariants.seconds,
        "seconds": round(end - run.started, 2),
        "cpu_seconds_by_component": {k: round(v, 2) for k, v in run.cpu_seconds.items()},
        "cpu_ms_per_order": round(1000 * sum(run.cpu_seconds.values()) / max(run.orders, 1), 3),
        "cpu_cores": os.cpu_count(),
        "invocations": run.invocations,
    }
    summary["_charts"] = {
        "published_at": run.published_at,
        "cleared_at": [t["cleared_at"] / 1000 for t in trades],
        "latencies": latencies,
        "netting_rows": netting["rows"],
        "margin": margin["requirements"],
        "started": run.started,
    }
    return summary


def run_demo(
    orders: int,
    rate: float,
    seed: int,
    config: RuntimeConfig,
    keep_running: bool = False,
    quiet: bool = False,
    report: Path | None = None,
) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from clearing_tools.local.dynamodb import reference_data
    from clearing_tools.local.runtime import LocalRuntime

    console = Console(stderr=True, quiet=quiet)
    runtime = LocalRuntime(config, owner_pid=None if keep_running else os.getpid())
    status = runtime.status(with_lag=False)
    running = all(c.state in ("running", "external") for c in status.components)
    if not running:
        with console.status(
            "starting the local stack (broker, moto_server, exchange simulator, FIX proxy, event-source mappings) ..."
        ):
            t0 = time.time()
            runtime.start()
        console.print(f"local stack up in {time.time() - t0:.1f} s (state in {config.state_path})")
    try:
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=quiet,
        ) as progress:
            pub = progress.add_task("published to orders.new", total=orders)
            workers_before = read_worker_states(config)
            run = publish_orders(config, orders, rate, seed, progress, pub)
            done = progress.add_task("validated (committed)", total=orders)
            _follow(runtime, config, run, progress, done)
        runtime.wait_until_idle(timeout=max(120.0, orders / 200))
        run.idle = time.time()
        run.cpu_seconds = cpu_spent(run.cpu_before, cpu_snapshot(config.state_path))
        run.invocations = invocations_during(workers_before, read_worker_states(config))
        store = _store(config)
        from clearing.adapters.retained_log import KafkaRetainedLog
        from clearing.topics import ORDERS_EXCHANGE

        from clearing_tools.local.esm import mapping_specs

        log = KafkaRetainedLog(config.bootstrap_servers)
        try:  # verify's exchange checks only when exchange_gateway runs (it alone reads orders.exchange)
            exchange = any(ORDERS_EXCHANGE in s.topics for s in mapping_specs(config))
            summary = summarise(store, reference_data(store), run, log, exchange)
        finally:
            log.close()
        summary["parameters"] = {"orders": orders, "rate": rate, "seed": seed}
        if report is not None:
            from clearing_tools.local.report import write_report

            write_report(summary, Path(report))
            summary["report"] = str(report)
        return summary
    finally:
        if not running and not keep_running:
            runtime.down()  # the in-memory broker and store are gone: so is the run's state


def _follow(runtime, config: RuntimeConfig, run: DemoRun, progress, task) -> None:
    """Live progress: how much of this run's orders.new validate_orders has committed."""
    from clearing_tools.local.esm import mapping_specs
    from clearing_tools.local.runtime import LagProbe

    spec = next((s for s in mapping_specs(config) if ORDERS_NEW in s.topics), None)
    if spec is None:
        return
    probe = LagProbe(config)
    try:
        deadline = time.time() + max(300.0, run.orders / 100)
        next_check = time.time() + 5.0
        while time.time() < deadline:
            if time.time() >= next_check:  # a dead or reset component: say which, do not wait it out
                runtime._raise_if_down("orders not validated")
                next_check = time.time() + 5.0
            try:
                offsets = probe.offsets(spec.group_id, [ORDERS_NEW])
            except Exception:
                runtime._raise_if_down("orders not validated")
                raise
            done = sum(
                max(0, committed - run.start_offsets.get(int(k.rsplit("-", 1)[1]), 0))
                for k, (_, committed) in offsets.items()
            )
            progress.update(task, completed=min(done, run.orders))
            if done >= run.orders:
                return
            time.sleep(0.5)  # each probe costs ~10 ms of CPU, taken from the pipeline
    finally:
        probe.close()


def _store(config: RuntimeConfig):
    from clearing_tools.local.dynamodb import local_store

    return local_store(config)


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="clearing demo", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("orders published", f"{summary['orders']:,}"),
        ("accepted", f"{summary['accepted']:,}"),
        ("rejected", f"{summary['rejected']:,}"),
        *[(f"  rejected {k}", f"{v:,}") for k, v in summary["rejected_by_reason"].items()],
        ("unaccounted", str(summary["unaccounted"])),
        ("trades (cleared)", f"{summary['trades']:,}"),
        ("cleared notional", f"{float(summary['cleared_notional']):,.2f}"),
        ("netting efficiency (cash, 1 - net/gross)", f"{summary['netting_efficiency']:.2%}"),
        (
            "settlements gross -> net",
            f"{summary['netting']['gross_settlements']:,} -> {summary['netting']['net_settlements']:,}",
        ),
        ("margin calls", str(summary["margin_calls"])),
        ("publish rate", f"{summary['publish_rate_orders_per_sec']:,.0f} orders/s"),
        ("throughput end to end", f"{summary['throughput_orders_per_sec']:,.0f} orders/s"),
        (
            "latency publish -> cleared p50 / p99 / max",
            f"{summary['latency_ms']['p50']:,.0f} / {summary['latency_ms']['p99']:,.0f} / {summary['latency_ms']['max']:,.0f} ms",
        ),
        ("invariants", "[green]OK[/green]" if summary["invariants_ok"] else "[red]VIOLATED[/red]"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)
    cpu = summary.get("cpu_seconds_by_component") or {}
    if cpu:
        total = sum(cpu.values()) or 1e-9
        where = Table(
            title=f"where the CPU went ({summary['cpu_ms_per_order']:.2f} ms of CPU per order, "
            f"{summary.get('cpu_cores')} cores)"
        )
        for column in ("component", "CPU s", "share", "ms / order"):
            where.add_column(column, justify="left" if column == "component" else "right")
        for name, seconds in cpu.items():
            where.add_row(
                name,
                f"{seconds:.2f}",
                f"{seconds / total:.0%}",
                f"{1000 * seconds / max(summary['orders'], 1):.3f}",
            )
        console.print(where)
    if summary.get("invocations"):
        calls = Table(title="handler invocations during the run")
        for column in (
            "event-source mapping worker",
            "invocations",
            "records / invocation",
            "mean ms / invocation",
        ):
            calls.add_column(
                column, justify="left" if column.startswith("event") else "right", overflow="fold"
            )
        for name, row in sorted(summary["invocations"].items()):
            calls.add_row(
                name,
                f"{row['invocations']:,}",
                f"{row['records_per_invocation']:,.1f}",
                f"{row['mean_invocation_ms']:,.1f}",
            )
        console.print(calls)
    if summary.get("verify_checks"):
        checks = Table(title=f"clearing verify ({summary.get('verify_seconds', 0):.1f} s)")
        for column in ("check", "expected", "found", "missing", "pending", "status"):
            checks.add_column(column, justify="left" if column in ("check", "status") else "right")
        for c in summary["verify_checks"]:
            checks.add_row(
                c["check"],
                f"{c['expected']:,}",
                f"{c['found']:,}",
                f"{c['missing']:,}",
                f"{c['pending']:,}" if c["pending"] else "",
                c["status"],
            )
        console.print(checks)
    for v in summary.get("violations", []):
        console.print(f"[red]{v['code']}[/red] {v['message']}")
    if summary.get("report"):
        console.print(f"report: {summary['report']}")
