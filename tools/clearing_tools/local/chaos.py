"""`clearing chaos`: the same order flow twice, once clean and once under injected faults; the two
final states must be equal item by item, with nothing lost and nothing doubled.

Faults injected in the chaotic run (each kind at least once, on a schedule while orders flow):
- SIGKILL of each mapping worker (the ESM supervisor restarts it, as Lambda retries a batch);
- SIGKILL of the FIX proxy and of the exchange simulator (restarted by an idempotent `up`, as ECS
  replaces a stopped Fargate task);
- an outage of the broker and of DynamoDB that keeps their state: SIGSTOP for some seconds, SIGCONT;
- DynamoDB throttling: a small HTTP proxy in front of moto answers a share of the calls with
  ProvisionedThroughputExceededException (400), as DynamoDB does; botocore retries some, the rest fail
  their batch, which the mapping retries;
- every batch delivered twice (the mapping invokes the function twice with the same payload);
- malformed and oversized records mixed into the order flow (in both runs: they are part of the flow,
  and must end as rejections in both).

A fault the local stack cannot survive (its in-memory broker or store restarted empty) is not injected:
it must end in a loud error (`clearing status` / `clearing verify`), which the tests check separately.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from clearing.repositories import keys
from clearing.topics import EXCHANGE_EXECUTIONS, ORDERS_NEW

from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import pid_alive, read_pid

FAULT_KINDS = (
    "worker-kill",
    "proxy-kill",
    "simulator-kill",
    "broker-pause",
    "dynamodb-pause",
    "dynamodb-throttle",
    "duplicate-delivery",
    "bad-records",
)
# Tables compared item by item (STATE holds checkpoints and versions, which count invocations;
# REFERENCE is seeded data).
COMPARED_TABLES = (keys.ORDERS, keys.TRADES, keys.POSITIONS, keys.OBLIGATIONS)
# Where in an intermediate topic a record was read: after a crash a stage re-produces its outputs
# (same ids, new offsets), so these transport positions legitimately differ from a clean run's. In the
# orders table `src` is the orders.new position (the input itself) and is compared.
TRANSPORT_POSITIONS = {"src", "applied_offset", "last_src"}
ORDERS_TRANSPORT_POSITIONS = {"applied_offset", "last_src"}


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float  # seconds after the first order was published
    recovered_s: float | None = None  # time until the target answered again
    detail: str = ""


@dataclass
class ChaosResult:
    orders: int
    faults: list[Fault] = field(default_factory=list)
    throttled_calls: int = 0
    dynamodb_calls: int = 0
    duplicate_deliveries: int = 0
    bad_records: int = 0
    lost: dict[str, list] = field(default_factory=dict)  # table -> keys in the clean run only
    doubled: dict[str, list] = field(default_factory=dict)  # table -> keys in the chaotic run only
    differing: dict[str, list] = field(default_factory=dict)  # table -> keys whose items differ
    exchange_acks: tuple[int, int] = (0, 0)  # distinct acknowledged ids: clean, chaotic
    exchange_ids_equal: bool = False
    items: dict[str, int] = field(default_factory=dict)  # table -> items in the clean run
    verify_clean: list[str] = field(default_factory=list)  # violations `clearing verify` found
    verify_chaos: list[str] = field(default_factory=list)
    clean_s: float = 0.0
    chaos_s: float = 0.0

    @property
    def orders_lost(self) -> int:
        return len(self.lost.get(keys.ORDERS, []))

    @property
    def orders_doubled(self) -> int:
        return len(self.doubled.get(keys.ORDERS, []))

    @property
    def equal(self) -> bool:
        return (
            not any(self.lost.values())
            and not any(self.doubled.values())
            and not any(self.differing.values())
            and self.exchange_ids_equal
            and not self.verify_clean
            and not self.verify_chaos
        )

    def to_dict(self) -> dict[str, Any]:
        per_kind: dict[str, dict[str, Any]] = {}
        for f in self.faults:
            entry = per_kind.setdefault(f.kind, {"injected": 0, "recovery_s": []})
            entry["injected"] += 1
            if f.recovered_s is not None:
                entry["recovery_s"].append(round(f.recovered_s, 2))
        per_kind.setdefault("dynamodb-throttle", {"injected": 0, "recovery_s": []})["injected"] = (
            self.throttled_calls
        )
        per_kind.setdefault("duplicate-delivery", {"injected": 0, "recovery_s": []})["injected"] = (
            self.duplicate_deliveries
        )
        per_kind.setdefault("bad-records", {"injected": 0, "recovery_s": []})["injected"] = self.bad_records
        return {
            "orders": self.orders,
            "faults": per_kind,
            "dynamodb_calls": self.dynamodb_calls,
            "items_compared": self.items,
            "orders_lost": self.orders_lost,
            "orders_doubled": self.orders_doubled,
            "lost": {t: [list(k) for k in v[:5]] for t, v in self.lost.items() if v},
            "doubled": {t: [list(k) for k in v[:5]] for t, v in self.doubled.items() if v},
            "differing": {t: [list(k) for k in v[:5]] for t, v in self.differing.items() if v},
            "exchange_acks": {"clean": self.exchange_acks[0], "chaos": self.exchange_acks[1]},
            "exchange_ids_equal": self.exchange_ids_equal,
            "verify": {
                "clean": self.verify_clean or "all checks hold",
                "chaos": self.verify_chaos or "all checks hold",
            },
            "equal_to_clean_run": self.equal,
            "clean_run_s": round(self.clean_s, 1),
            "chaos_run_s": round(self.chaos_s, 1),
        }


# ----------------------------------------------------------------------------- DynamoDB throttling
class ThrottlingProxy:
    """HTTP/1.1 keep-alive proxy in front of a DynamoDB endpoint that answers a share of the calls
    with DynamoDB's throttling error instead of forwarding them."""

    def __init__(self, upstream: str, rate: float, seed: int = 1, host: str = "127.0.0.1", port: int = 0):
        self.upstream = upstream.removeprefix("http://")
        self.rate = rate
        self.enabled = False
        self.calls = 0
        self.throttled = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy._should_throttle():
                    payload = json.dumps(
                        {
                            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                            "message": "The level of configured provisioned throughput for the table was exceeded "
                            "(injected by clearing chaos)",
                        }
                    ).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.0")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                status, headers, data = proxy._forward(self.command, self.path, dict(self.headers), body)
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in (
                        "content-length",
                        "connection",
                        "transfer-encoding",
                        "date",
                        "server",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST  # noqa: N815

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="throttling-proxy")

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _should_throttle(self) -> bool:
        with self._lock:
            self.calls += 1
            if self.enabled and self._rng.random() < self.rate:
                self.throttled += 1
                return True
            return False

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes):
        for attempt in (1, 2):  # a kept connection the server closed meanwhile: one fresh retry
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(self.upstream, timeout=120)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def __enter__(self) -> ThrottlingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# ----------------------------------------------------------------------------- the flow
def bad_records(seed: int) -> list[tuple[bytes, bytes]]:
    """Malformed and oversized records for orders.new (key, value): part of both runs' flow."""
    big = b'{"action":"NEW","member_id":"MBR01","client_order_id":"BIG-1","note":"' + b"x" * 320_000 + b'"}'
    return [
        (b"MBR01", b"not json at all"),
        (b"MBR02", b"\xff\xfe\x00garbage"),
        (b"MBR01", big),
        (b"MBR03", b'{"action":"NEW","side":"BUY","side":"SELL"}'),
        (b"MBR02", b"[]"),
        (b"MBR04", b""),
    ]


def _publish_bad(config: RuntimeConfig, records: list[tuple[bytes, bytes]]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=config.bootstrap_servers, acks="all", max_request_size=2_000_000
    )
    try:
        for key, value in records:
            producer.send(ORDERS_NEW, key=key, value=value, timestamp_ms=1_764_000_000_000)
        producer.flush(30)
    finally:
        producer.close(10)


def comparable_state(config: RuntimeConfig) -> dict[str, dict]:
    """Every compared table as {(pk, sk): item without processing-time fields and transport positions}."""
    from clearing_tools.local.demo import _store

    store = _store(config)
    out: dict[str, dict] = {}
    for table in COMPARED_TABLES:
        out[table] = {
            (i["pk"], i["sk"]): {
                k: v
                for k, v in keys.comparable(i).items()
                if k not in (ORDERS_TRANSPORT_POSITIONS if table == keys.ORDERS else TRANSPORT_POSITIONS)
            }
            for i in store.scan(table)
        }
    return out


def _verify(config: RuntimeConfig) -> list[str]:
    """`clearing verify` of the run: the retained log reconciled with the store, every invariant.
    [] when everything holds, else one line per violation (at most 20)."""
    from clearing.adapters.retained_log import KafkaRetainedLog
    from clearing.services.reports import verify

    from clearing_tools.local.demo import _store

    log = KafkaRetainedLog(config.bootstrap_servers)
    try:
        result = verify(_store(config), log)
    finally:
        log.close()
    if not result.reconciled:
        return ["verify did not read the retained log"]
    return [f"{v['code']}: {v['message']}" for v in result.violations[:20]]


def _exchange_ids(config: RuntimeConfig) -> set[str]:
    """Business ids (TradeReportID / ClOrdID) the exchange acknowledged, from exchange.executions."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=config.bootstrap_servers, enable_auto_commit=False)
    ids: set[str] = set()
    try:
        parts = consumer.partitions_for_topic(EXCHANGE_EXECUTIONS) or set()
        tps = [TopicPartition(EXCHANGE_EXECUTIONS, p) for p in parts]
        if not tps:
            return ids
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    with contextlib.suppress(ValueError, TypeError):
                        msg = json.loads(r.value)
                        ident = msg.get("trade_report_id") or msg.get("cl_ord_id") or msg.get("business_id")
                        if ident:
                            ids.add(str(ident))
    finally:
        consumer.close()
    return ids


# ----------------------------------------------------------------------------- faults
def _live_worker(config: RuntimeConfig, mapping_prefix: str, not_in: set[int]) -> int | None:
    from clearing_tools.local.esm import read_worker_states

    for state in read_worker_states(config):
        if state["mapping_id"].startswith(mapping_prefix) and state["pid"] not in not_in:
            try:
                os.kill(state["pid"], 0)
                return int(state["pid"])
            except ProcessLookupError:
                continue
    return None


def _wait(predicate: Callable[[], bool], timeout: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def _answers_dynamodb(url: str) -> bool:
    try:
        conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=1)
        conn.request(
            "POST",
            "/",
            body=b"{}",
            headers={
                "X-Amz-Target": "DynamoDB_20120810.ListTables",
                "Content-Type": "application/x-amz-json-1.0",
            },
        )
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


def _answers_kafka(config: RuntimeConfig) -> bool:
    """The broker answers a metadata request and an end-offsets request for orders.new."""
    from kafka import TopicPartition

    from clearing_tools.local.broker import probe_consumer

    try:
        consumer = probe_consumer(config.bootstrap_servers)
        try:
            return bool(consumer.end_offsets([TopicPartition(ORDERS_NEW, 0)]))
        finally:
            consumer.close()
    except Exception:  # noqa: BLE001 - any failure means "not answering yet"
        return False


class FaultInjector:
    """Runs the schedule in a thread while the orders flow; records each fault and its recovery."""

    def __init__(self, runtime, config: RuntimeConfig, moto_pid: int, moto_url: str, pause_s: float):
        self.runtime = runtime
        self.config = config
        self.moto_pid = moto_pid
        self.moto_url = moto_url
        self.pause_s = pause_s
        self.faults: list[Fault] = []
        self.errors: list[str] = []
        self.t0 = time.monotonic()
        self.killed: set[int] = set()

    def _pid(self, component: str) -> int | None:
        """The running pid of one of the runtime's components (from its pid file)."""
        found = [c for c in self.runtime.components if c.name == component]
        return read_pid(found[0].pid_path) if found else None

    def _record(self, kind: str, target: str, recovered: float | None, detail: str = "") -> None:
        self.faults.append(Fault(kind, target, time.monotonic() - self.t0, recovered, detail))
        if recovered is None:
            self.errors.append(f"{kind} {target}: did not recover")

    def kill_worker(self, mapping: str) -> None:
        pid = _live_worker(self.config, mapping, self.killed)
        if pid is None:
            self.errors.append(f"worker-kill {mapping}: no live worker")
            return
        os.kill(pid, signal.SIGKILL)
        self.killed.add(pid)
        recovered = _wait(lambda: _live_worker(self.config, mapping, self.killed) is not None, 60)
        self._record("worker-kill", mapping, recovered, f"pid {pid}")

    def kill_component(self, kind: str, component: str) -> None:
        pid = self._pid(component)
        if pid is None:
            self.errors.append(f"{kind}: {component} not running")
            return
        os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        started = time.monotonic()
        _wait(lambda: not pid_alive(pid), 10)
        self.runtime.start()  # idempotent `up`: starts what is missing, as ECS replaces a stopped task
        healthy = _wait(
            lambda: any(
                c.name == component and c.health().state == "running" for c in self.runtime.components
            ),
            60,
        )
        self._record(kind, component, None if healthy is None else time.monotonic() - started, f"pid {pid}")

    def pause(self, kind: str, pid: int | None, answers: Callable[[], bool]) -> None:
        if pid is None:
            self.errors.append(f"{kind}: no pid")
            return
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(self.pause_s)
        finally:
            os.kill(pid, signal.SIGCONT)
        started = time.monotonic()
        recovered = _wait(answers, 60)
        self._record(
            kind, str(pid), None if recovered is None else self.pause_s + (time.monotonic() - started)
        )

    def run(self, mappings: list[str], gap_s: float) -> None:
        steps: list[Callable[[], None]] = []
        for m in mappings:
            steps.append(functools.partial(self.kill_worker, m))
        steps.append(
            lambda: self.pause("broker-pause", self._pid("broker"), lambda: _answers_kafka(self.config))
        )
        steps.append(
            lambda: self.pause("dynamodb-pause", self.moto_pid, lambda: _answers_dynamodb(self.moto_url))
        )
        if any(c.name == "fix-proxy" for c in self.runtime.components):
            steps.append(lambda: self.kill_component("proxy-kill", "fix-proxy"))
        if any(c.name == "exchange-sim" for c in self.runtime.components):
            steps.append(lambda: self.kill_component("simulator-kill", "exchange-sim"))
        for step in steps:
            time.sleep(gap_s)
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - a failed injection is reported, not fatal
                self.errors.append(f"{step}: {exc!r}")


# ----------------------------------------------------------------------------- one run
def _one_run(
    config: RuntimeConfig,
    orders: int,
    seed: int,
    rate: float,
    chaos: bool,
    throttle: float,
    pause_s: float,
    log: Callable[[str], None],
) -> tuple[dict, set[str], dict[str, Any]]:
    from clearing_tools.local.demo import publish_orders
    from clearing_tools.local.dynamodb import start_moto
    from clearing_tools.local.esm import mapping_specs, read_worker_states
    from clearing_tools.local.processes import free_port, stop_pid
    from clearing_tools.local.runtime import LocalRuntime

    config.state_path.mkdir(parents=True, exist_ok=True)
    moto_port = free_port()
    moto = start_moto(config.host, moto_port, config.state_path / "logs" / "moto-chaos.log", detached=False)
    moto_url = f"http://{config.host}:{moto_port}"
    facts: dict[str, Any] = {}
    try:
        with ThrottlingProxy(moto_url, throttle, seed=seed) as proxy:
            cfg = config.model_copy(update={"dynamodb_endpoint_url": proxy.url, "duplicate_delivery": chaos})
            runtime = LocalRuntime(cfg, owner_pid=os.getpid())
            runtime.start()
            try:
                proxy.enabled = chaos and throttle > 0
                mappings = sorted({s.mapping_id for s in mapping_specs(cfg)})
                injector = FaultInjector(runtime, cfg, moto.pid, moto_url, pause_s) if chaos else None
                thread = None
                if injector is not None:
                    gap = max(0.5, (orders / rate if rate else 5.0) / (len(mappings) + 5))
                    thread = threading.Thread(target=injector.run, args=(mappings, gap), daemon=True)
                    thread.start()
                _publish_bad(cfg, bad_records(seed)[:3])
                publish_orders(cfg, orders, rate=rate, seed=seed, stamp=False, id_prefix="X-")
                _publish_bad(cfg, bad_records(seed)[3:])
                if thread is not None:
                    thread.join(timeout=600)
                log("waiting for every mapping to finish ...")
                runtime.wait_until_idle(timeout=max(300.0, orders / 20))
                proxy.enabled = False
                state = comparable_state(cfg)
                acks = _exchange_ids(cfg)
                facts["verify"] = _verify(cfg)
                facts["throttled"] = proxy.throttled
                facts["calls"] = proxy.calls
                facts["duplicate_deliveries"] = sum(
                    int(w.get("duplicate_deliveries", 0)) for w in read_worker_states(cfg)
                )
                if injector is not None:
                    facts["faults"] = injector.faults
                    facts["errors"] = injector.errors
                return state, acks, facts
            finally:
                runtime.stop()
    finally:
        stop_pid(moto.pid)
        with contextlib.suppress(Exception):
            moto.wait(timeout=10)


def _compare(clean: dict, chaos: dict, result: ChaosResult) -> None:
    for table in COMPARED_TABLES:
        a, b = clean.get(table, {}), chaos.get(table, {})
        result.items[table] = len(a)
        result.lost[table] = sorted(set(a) - set(b))
        result.doubled[table] = sorted(set(b) - set(a))
        result.differing[table] = sorted(k for k in set(a) & set(b) if a[k] != b[k])


def run_chaos(
    orders: int = 3000,
    seed: int = 11,
    rate: float = 400.0,
    throttle: float = 0.03,
    pause_s: float = 3.0,
    state_dir: Path = Path(".clearing-chaos"),
    base: RuntimeConfig | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> tuple[ChaosResult, list[str]]:
    """Clean run, then the chaotic run, of the same flow; returns the comparison and injection errors."""
    from clearing_tools.local.processes import free_port

    def config(name: str) -> RuntimeConfig:
        update = {
            "state_dir": state_dir / name,
            "broker_port": free_port(),
            "moto_port": free_port(),
            # one orders.new partition: the interleaving of members into each book is then the same
            # in every run, so two runs can be compared item by item
            "topic_partitions": {ORDERS_NEW: 1},
            "batching_window_cap_s": 0.05,
            "exchange_sim_port": free_port(),
            "exchange_sim_control_port": free_port(),
            "proxy_gateway_port": free_port(),
            "proxy_health_port": free_port(),
        }
        return (base or RuntimeConfig()).model_copy(update=update)

    result = ChaosResult(orders=orders, bad_records=len(bad_records(seed)))
    log(f"clean run: {orders:,} orders + {result.bad_records} malformed/oversized records ...")
    t = time.monotonic()
    clean_state, clean_acks, clean_facts = _one_run(
        config("clean"), orders, seed, rate, False, throttle, pause_s, log
    )
    result.verify_clean = clean_facts.get("verify", [])
    result.clean_s = time.monotonic() - t
    log(f"chaotic run: the same flow with faults (throttle {throttle:.0%}, pauses {pause_s:g} s) ...")
    t = time.monotonic()
    chaos_state, chaos_acks, facts = _one_run(
        config("chaos"), orders, seed, rate, True, throttle, pause_s, log
    )
    result.chaos_s = time.monotonic() - t
    result.faults = facts.get("faults", [])
    result.throttled_calls = facts.get("throttled", 0)
    result.dynamodb_calls = facts.get("calls", 0)
    result.duplicate_deliveries = facts.get("duplicate_deliveries", 0)
    result.verify_chaos = facts.get("verify", [])
    _compare(clean_state, chaos_state, result)
    result.exchange_acks = (len(clean_acks), len(chaos_acks))
    result.exchange_ids_equal = clean_acks == chaos_acks
    errors = list(facts.get("errors", []))
    injected = {f.kind for f in result.faults}
    if result.throttled_calls:
        injected.add("dynamodb-throttle")
    if result.duplicate_deliveries:
        injected.add("duplicate-delivery")
    if result.bad_records:
        injected.add("bad-records")
    errors += [f"fault kind {k} was not injected" for k in FAULT_KINDS if k not in injected]
    return result, errors


def print_chaos(result: ChaosResult, errors: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    summary = result.to_dict()
    table = Table(title=f"clearing chaos: {result.orders:,} orders, clean run vs run under faults")
    table.add_column("fault")
    table.add_column("injected", justify="right")
    table.add_column("recovery (s)", justify="right")
    for kind in FAULT_KINDS:
        entry = summary["faults"].get(kind, {"injected": 0, "recovery_s": []})
        rec = entry["recovery_s"]
        table.add_row(kind, f"{entry['injected']:,}", f"{min(rec):.1f} - {max(rec):.1f}" if rec else "-")
    console.print(table)
    results = Table(title="final state compared item by item")
    for col in ("table", "items (clean)", "lost", "doubled", "differing"):
        results.add_column(col, justify="right" if col != "table" else "left")
    for t in COMPARED_TABLES:
        results.add_row(
            t, f"{result.items.get(t, 0):,}", str(len(result.lost[t])), str(len(result.doubled[t])),
            str(len(result.differing[t])),
        )  # fmt: skip
    results.add_row(
        "exchange acks", f"{result.exchange_acks[0]:,}", "", "",
        "0" if result.exchange_ids_equal else f"chaos {result.exchange_acks[1]:,}",
    )  # fmt: skip
    console.print(results)
    for name, found in (("clean run", result.verify_clean), ("chaotic run", result.verify_chaos)):
        console.print(
            f"clearing verify of the {name}: "
            + (
                "[green]log and store reconcile, every invariant holds[/green]"
                if not found
                else "[red]FAILED[/red]"
            )
        )
        for line in found:
            console.print(f"  [red]{line}[/red]")
    console.print(
        f"orders lost: {result.orders_lost}   orders doubled: {result.orders_doubled}   "
        f"equal to the clean run: {'yes' if result.equal else 'NO'}   "
        f"(clean run {result.clean_s:.0f} s, chaotic run {result.chaos_s:.0f} s; "
        f"{result.throttled_calls:,} of {result.dynamodb_calls:,} DynamoDB calls throttled)"
    )
    for e in errors:
        console.print(f"[red]injection problem:[/red] {e}")
