"""What the demo reports about itself: CPU per component, handler invocations, paced publishing."""

from __future__ import annotations

import os
import time

from clearing_tools.local.cpu import SELF, component_pids, cpu_snapshot, cpu_spent, process_cpu_seconds
from clearing_tools.local.demo import invocations_during
from clearing_tools.local.oms import PACING_TICK_S, wait_until_due


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_cpu_seconds_reads_proc_and_grows():
    before = process_cpu_seconds(os.getpid())
    _burn(0.1)
    after = process_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert after - before >= 0.05
    assert process_cpu_seconds(2**22 + 12345) is None  # no such process


def test_snapshot_reads_the_pid_files_and_spent_counts_restarts_whole(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    (pids / "moto.pid").write_text(str(os.getpid()))
    (pids / "esm-worker-MatchOrdersFunction.OrdersAccepted.w0.pid").write_text(str(os.getpid()))
    (pids / "broken.pid").write_text("not a pid")
    assert component_pids(tmp_path) == {
        "moto": os.getpid(),
        "MatchOrdersFunction.OrdersAccepted.w0": os.getpid(),
    }
    snap = cpu_snapshot(tmp_path)
    assert set(snap) == {"moto", "MatchOrdersFunction.OrdersAccepted.w0", SELF}

    before = {"moto": (10, 5.0), "worker": (11, 2.0), "gone": (12, 1.0)}
    after = {"moto": (10, 7.5), "worker": (99, 0.75)}  # the worker was restarted: new pid
    assert cpu_spent(before, after) == {"moto": 2.5, "worker": 0.75}
    assert list(cpu_spent(before, {"a": (1, 1.0), "b": (2, 3.0)})) == ["b", "a"]  # largest first


def test_invocations_during_takes_differences_per_worker():
    before = [
        {"worker_id": "v", "invocations": 10, "records_done": 1000, "invocation_ms_total": 500.0},
        {"worker_id": "idle", "invocations": 3, "records_done": 3, "invocation_ms_total": 9.0},
    ]
    after = [
        {"worker_id": "v", "invocations": 14, "records_done": 1400, "invocation_ms_total": 900.0},
        {"worker_id": "idle", "invocations": 3, "records_done": 3, "invocation_ms_total": 9.0},
        {"worker_id": "new", "invocations": 2, "records_done": 5},
    ]  # started after the first reading
    assert invocations_during(before, after) == {
        "v": {"invocations": 4, "records_per_invocation": 100.0, "mean_invocation_ms": 100.0},
        "new": {"invocations": 2, "records_per_invocation": 2.5, "mean_invocation_ms": 0.0},
    }


def test_paced_publishing_sleeps_in_ticks_and_keeps_the_rate(monkeypatch):
    now = [100.0]
    slept = []

    def fake_sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    monkeypatch.setattr(time, "sleep", fake_sleep)
    sent_at = []
    for i in range(500):  # 500 messages at 1,000/s: 0.5 s
        wait_until_due(100.0, i, 1000.0, clock=lambda: now[0])
        sent_at.append(now[0])
    wait_until_due(100.0, 7, 0, clock=lambda: now[0])  # rate 0: as fast as possible
    assert all(s >= PACING_TICK_S for s in slept)  # never one short sleep per message
    assert len(slept) <= 0.5 / PACING_TICK_S + 1
    assert abs(sent_at[-1] - 100.0 - 0.499) < PACING_TICK_S + 1e-9  # the average rate holds
    assert all(sent_at[i] >= 100.0 + i / 1000.0 - 1e-9 for i in range(500))  # nothing early
