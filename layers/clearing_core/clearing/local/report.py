"""The demo's HTML report: summary table and charts (matplotlib, embedded as PNG)."""

from __future__ import annotations

import base64
import html
import io
from collections import Counter
from pathlib import Path
from typing import Any


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def charts(summary: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = summary["_charts"]
    t0 = data["started"]
    out = {}

    fig, ax = plt.subplots(figsize=(8, 3.2))
    pub = Counter(int(t - t0) for t in data["published_at"])
    clr = Counter(int(t - t0) for t in data["cleared_at"])
    horizon = max([*pub, *clr, 0]) + 1
    ax.plot(range(horizon), [pub.get(s, 0) for s in range(horizon)], label="orders published / s")
    ax.plot(range(horizon), [clr.get(s, 0) for s in range(horizon)], label="trades cleared / s")
    ax.set_xlabel("seconds since first publish")
    ax.set_title("Throughput over time")
    ax.legend()
    out["throughput"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist(data["latencies"] or [0], bins=50, color="#4c72b0")
    ax.set_xlabel("ms from OMS publish to cleared leg")
    ax.set_ylabel("trades")
    ax.set_title(
        f"End-to-end latency (p50 {summary['latency_ms']['p50']:.0f} ms, p99 {summary['latency_ms']['p99']:.0f} ms)"
    )
    out["latency"] = _png(fig)
    plt.close(fig)

    gross: Counter = Counter()
    net: Counter = Counter()
    for row in data["netting_rows"]:
        gross[row["member_id"]] += float(row["gross_cash"])
        net[row["member_id"]] += abs(float(row["net_cash"]))
    members = sorted(gross)
    fig, ax = plt.subplots(figsize=(8, 3.2))
    xs = range(len(members))
    ax.bar([x - 0.2 for x in xs], [gross[m] / 1e6 for m in members], width=0.4, label="gross cash")
    ax.bar([x + 0.2 for x in xs], [net[m] / 1e6 for m in members], width=0.4, label="net cash (|sum|)")
    ax.set_xticks(list(xs), members)
    ax.set_ylabel("million")
    ax.set_title("Gross vs net settlement per member")
    ax.legend()
    out["netting"] = _png(fig)
    plt.close(fig)

    margin = data["margin"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    names = [m["member_id"] for m in margin]
    xs = range(len(names))
    ax.bar(
        [x - 0.27 for x in xs],
        [float(m["initial_margin"]) / 1e6 for m in margin],
        width=0.27,
        label="initial margin",
    )
    ax.bar(
        list(xs), [max(0.0, -float(m["variation_margin"])) / 1e6 for m in margin], width=0.27, label="VM loss"
    )
    ax.bar(
        [x + 0.27 for x in xs], [float(m["collateral"]) / 1e6 for m in margin], width=0.27, label="collateral"
    )
    ax.set_xticks(list(xs), names)
    ax.set_ylabel("million")
    ax.set_title("Margin per member")
    ax.legend()
    out["margin"] = _png(fig)
    plt.close(fig)

    cpu = summary.get("cpu_seconds_by_component") or {}
    if cpu:
        names = list(cpu)[::-1]  # largest at the top
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) + 1.2))
        ax.barh(names, [1000 * cpu[n] / max(summary["orders"], 1) for n in names], color="#dd8452")
        ax.set_xlabel("ms of CPU per order")
        ax.set_title(
            f"Where the CPU went ({summary['cpu_ms_per_order']:.2f} ms per order on "
            f"{summary.get('cpu_cores')} cores)"
        )
        out["cpu"] = _png(fig)
        plt.close(fig)
    return out


def write_report(summary: dict[str, Any], path: Path) -> Path:
    images = charts(summary)
    plain = {k: v for k, v in summary.items() if not k.startswith("_")}
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in plain.items()
    )
    body = "".join(
        f'<h2>{html.escape(name)}</h2><img src="data:image/png;base64,{png}"/>'
        for name, png in images.items()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>clearing demo</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:1em}"
        "td{font-family:monospace}</style></head><body><h1>Clearing pipeline: local end-to-end run</h1>"
        f"<table>{rows}</table>{body}</body></html>"
    )
    return path
