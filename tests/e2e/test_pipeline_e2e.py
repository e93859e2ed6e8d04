"""The whole local pipeline (Tansu broker, moto_server, local event-source mappings, real handlers).

- a small demo run: every order accounted for, trades cleared, invariants hold;
- SIGKILL the match_orders and clear_trades workers mid-run: the supervisor restarts them and the
  final state equals a clean run's (same trades, legs, positions, obligations and order states).
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from clearing.repositories import keys
from clearing_tools.local.chaos import comparable_state
from clearing_tools.local.config import RuntimeConfig
from clearing_tools.local.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

STREAM_FUNCTIONS = ["ValidateOrdersFunction", "MatchOrdersFunction", "ClearTradesFunction"]


def config(tmp_path, name: str) -> RuntimeConfig:
    return RuntimeConfig(
        state_dir=tmp_path / name,
        broker_port=free_port(),
        moto_port=free_port(),
        functions=STREAM_FUNCTIONS,
        # one orders.new partition: the interleaving of members into each book is then the same in
        # every run, so two runs can be compared item by item
        topic_partitions={"orders.new": 1},
        batching_window_cap_s=0.05,
    )


def test_small_demo_accounts_for_every_order_and_keeps_the_invariants(tmp_path):
    from clearing_tools.local.demo import run_demo

    summary = run_demo(
        3000, rate=0, seed=7, config=config(tmp_path, "demo"), quiet=True, report=tmp_path / "demo.html"
    )
    assert summary["orders"] == 3000
    assert summary["accepted"] + summary["rejected"] == 3000 and summary["unaccounted"] == 0
    assert summary["rejected"] > 0 and "MALFORMED" in summary["rejected_by_reason"]
    assert summary["trades"] > 300
    assert summary["invariants_ok"], summary["violations"]
    # verify reconciled the retained log with the store (not the store against itself only)
    checks = {c["check"]: c for c in summary["verify_checks"]}
    offsets = checks["orders.new offsets with exactly one decision"]
    assert offsets["expected"] == offsets["found"] == 3000 and offsets["status"] == "OK"
    trades = checks["trades on trades.executed cleared (2 legs) or dead-lettered"]
    assert trades["expected"] == trades["found"] >= summary["trades"]
    assert checks["exchange answers (trade reports, routed orders)"]["status"] == "SKIPPED"  # no gateway here
    assert 0 < summary["netting_efficiency"] < 1
    assert summary["latency_ms"]["p50"] > 0 and summary["throughput_orders_per_sec"] > 0
    # throughput, latency, netting, margin and where the CPU went
    assert (tmp_path / "demo.html").read_text().count("data:image/png") == 5
    cpu = summary["cpu_seconds_by_component"]
    assert {"broker", "moto", "MatchOrdersFunction.OrdersAccepted.w0"} <= set(cpu)
    assert cpu["moto"] > 0 and cpu["MatchOrdersFunction.OrdersAccepted.w0"] > 0
    assert abs(summary["cpu_ms_per_order"] - 1000 * sum(cpu.values()) / 3000) < 0.05  # components rounded
    calls = summary["invocations"]["MatchOrdersFunction.OrdersAccepted.w0"]
    assert calls["invocations"] > 0 and calls["records_per_invocation"] > 1


def _assert_verify_reconciles(cfg: RuntimeConfig) -> None:
    """verify reconciles the retained log with the store: after a crash too (re-produced duplicates on
    orders.accepted and trades.executed are accounted for once)."""
    from clearing.adapters.retained_log import KafkaRetainedLog
    from clearing.services.reports import verify
    from clearing_tools.local.demo import _store

    log = KafkaRetainedLog(cfg.bootstrap_servers)
    try:
        result = verify(_store(cfg), log, exchange=False)
    finally:
        log.close()
    assert result.ok, result.violations[:10]
    assert next(c for c in result.checks if c["check"].startswith("orders.new offsets"))["found"] == 3000


def _live_worker_pid(cfg: RuntimeConfig, mapping: str, killed: list[int], timeout: float = 60.0) -> int:
    """The pid of the mapping's worker once it runs, not one already killed (a restarted worker
    writes its state file only after its start-up imports)."""
    from clearing_tools.local.esm import read_worker_states

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for state in read_worker_states(cfg):
            if state["mapping_id"].startswith(mapping) and state["pid"] not in killed:
                try:
                    os.kill(state["pid"], 0)
                    return state["pid"]
                except ProcessLookupError:
                    pass
        time.sleep(0.2)
    raise AssertionError(f"no live worker of {mapping} within {timeout} s")


def _run(cfg: RuntimeConfig, kill: bool) -> tuple[dict, int]:
    from clearing_tools.local.demo import publish_orders
    from clearing_tools.local.runtime import LocalRuntime

    runtime = LocalRuntime(cfg, owner_pid=os.getpid())
    runtime.start()
    try:
        publish_orders(cfg, 3000, rate=0, seed=21, stamp=False, id_prefix="K-")
        killed: list[int] = []
        if kill:
            for mapping in ("MatchOrdersFunction", "ClearTradesFunction", "MatchOrdersFunction"):
                time.sleep(1.5)
                pid = _live_worker_pid(cfg, mapping, killed)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        runtime.wait_until_idle(timeout=300)
        restarts = sum(m.restarts for m in runtime.status().mappings)
        assert restarts >= len(killed)
        _assert_verify_reconciles(cfg)
        return comparable_state(cfg), restarts
    finally:
        runtime.stop()


def test_sigkill_of_workers_mid_run_leaves_the_state_of_a_clean_run(tmp_path, monkeypatch):
    # The flow is published unstamped (byte-identical runs): its sent_at is the generator's synthetic
    # clock (2026-11-24), the records' timestamps are the producer's clock. Widen validate_orders'
    # plausibility window (the workers inherit this environment) so the orders are decided on risk.
    monkeypatch.setenv("SENT_AT_MAX_AGE_SECONDS", str(10 * 365 * 86400))
    clean, _ = _run(config(tmp_path, "clean"), kill=False)
    killed, restarts = _run(config(tmp_path, "killed"), kill=True)
    assert restarts >= 3
    assert len(clean[keys.TRADES]) > 300
    for table in clean:
        differing = {
            k: (clean[table].get(k), killed[table].get(k))
            for k in set(clean[table]) | set(killed[table])
            if clean[table].get(k) != killed[table].get(k)
        }
        assert not differing, f"{table} differs after SIGKILL: {list(differing.items())[:2]}"
