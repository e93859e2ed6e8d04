"""The demo's HTML report, written to read like a clearing report.

Sections: run parameters, business date and currency; key figures with formatted amounts; rejections
by reason; obligations per member and settlement date with who pays and who receives; margin per
member with calls and shortfalls; charts (clearing rate with the publish burst drawn apart, latency,
gross vs signed net cash, margin); and, last, a developer section with the CPU and invocation figures.
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

# Latency reads as queueing when orders arrived this many times faster than the pipeline cleared them.
BURST_FACTOR = 1.5


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def money(value: Any, currency: str = "") -> str:
    """1234567.8 -> '1,234,567.80' (currency code appended when given)."""
    amount = Decimal(str(value)).quantize(Decimal("0.01"))
    text = f"{amount:,.2f}"
    return f"{text} {currency}".strip()


def obligations_by_member(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (settlement date, member): net securities per symbol and the net cash after fees, signed
    from the member's side (> 0: the member receives from the CCP, < 0: it pays)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["settlement_date"], r["member_id"])
        entry = out.setdefault(
            key,
            {"settlement_date": key[0], "member_id": key[1], "net_cash": Decimal(0), "gross_cash": Decimal(0),
             "fees": Decimal(0), "deliver": {}, "receive": {}},
        )  # fmt: skip
        entry["net_cash"] += Decimal(r["net_cash"]) - Decimal(r["fees"])
        entry["gross_cash"] += Decimal(r["gross_cash"])
        entry["fees"] += Decimal(r["fees"])
        qty = int(r["net_quantity"])
        if qty > 0:
            entry["receive"][r["symbol"]] = qty
        elif qty < 0:
            entry["deliver"][r["symbol"]] = -qty
    return [out[k] for k in sorted(out)]


def charts(summary: dict[str, Any]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = summary["_charts"]
    t0 = data["started"]
    out = {}

    # Clearing rate on its own axis; the publish burst below it, so a burst of 5,800/s does not flatten
    # a clearing rate of a few hundred per second into a line along the bottom.
    pub = Counter(int(t - t0) for t in data["published_at"])
    clr = Counter(int(t - t0) for t in data["cleared_at"])
    horizon = max([*pub, *clr, 0]) + 1
    seconds = list(range(horizon))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 4.4), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]}
    )
    top.plot(seconds, [clr.get(s, 0) for s in seconds], color="#2a7f3f", label="trades cleared / s")
    top.set_ylabel("trades cleared / s")
    top.set_title("Clearing rate over the run")
    top.legend(loc="upper right")
    bottom.bar(
        seconds, [pub.get(s, 0) for s in seconds], width=1.0, color="#8da0cb", label="orders published / s"
    )
    bottom.set_ylabel("published / s")
    bottom.set_xlabel("seconds since the first order was published")
    bottom.legend(loc="upper right")
    out["Clearing rate (publish burst below)"] = _png(fig)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 3.2))
    ax.hist(data["latencies"] or [0], bins=50, color="#4c72b0")
    ax.set_xlabel("ms from OMS publish to cleared leg")
    ax.set_ylabel("trades")
    ax.set_title(
        f"End-to-end latency (p50 {summary['latency_ms']['p50']:,.0f} ms, p99 {summary['latency_ms']['p99']:,.0f} ms)"
    )
    out["End-to-end latency"] = _png(fig)
    plt.close(fig)

    currency = summary.get("currency", "")
    per_member: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"gross": Decimal(0), "net": Decimal(0)})
    for row in obligations_by_member(data["netting_rows"]):
        per_member[row["member_id"]]["gross"] += row["gross_cash"]
        per_member[row["member_id"]]["net"] += row["net_cash"]
    members = sorted(per_member)
    fig, ax = plt.subplots(figsize=(8, 3.4))
    xs = list(range(len(members)))
    ax.bar([x - 0.2 for x in xs], [float(per_member[m]["gross"]) / 1e6 for m in members], width=0.4,
           color="#bbbbbb", label="gross cash (sum of |legs|)")  # fmt: skip
    nets = [float(per_member[m]["net"]) / 1e6 for m in members]
    ax.bar([x + 0.2 for x in xs], nets, width=0.4, color=["#2a7f3f" if n >= 0 else "#c0392b" for n in nets],
           label="net cash: receives (+) / pays (-)")  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(xs, members)
    ax.set_ylabel(f"million {currency}")
    ax.set_title("Gross vs net settlement cash per member (after fees)")
    ax.legend()
    out["Netting: gross vs signed net"] = _png(fig)
    plt.close(fig)

    margin = data["margin"]
    fig, ax = plt.subplots(figsize=(8, 3.2))
    names = [m["member_id"] for m in margin]
    xs = list(range(len(names)))
    ax.bar([x - 0.27 for x in xs], [float(m["requirement"]) / 1e6 for m in margin], width=0.27,
           label="requirement (IM + VM loss)")  # fmt: skip
    ax.bar(xs, [float(m["collateral"]) / 1e6 for m in margin], width=0.27, label="collateral")
    ax.bar([x + 0.27 for x in xs], [float(m["shortfall"]) / 1e6 for m in margin], width=0.27, color="#c0392b",
           label="shortfall (margin call)")  # fmt: skip
    ax.set_xticks(xs, names)
    ax.set_ylabel(f"million {currency}")
    ax.set_title("Margin per member")
    ax.legend()
    out["Margin per member"] = _png(fig)
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


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='{'num' if i in numeric else ''}'>{html.escape(str(c))}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(title: str, png: str) -> str:
    return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{png}"/></figure>'


def latency_note(summary: dict[str, Any]) -> str | None:
    """Say so when latency is mostly waiting behind a publish burst rather than processing."""
    publish = summary.get("publish_rate_orders_per_sec") or 0
    clearing = summary.get("throughput_orders_per_sec") or 0
    if clearing and publish > BURST_FACTOR * clearing:
        return (
            f"Orders were published at {publish:,.0f}/s, {publish / clearing:,.1f} times the rate the pipeline "
            f"cleared them ({clearing:,.0f}/s): the latency figures are mostly queueing behind that burst, "
            "not processing time. A paced run (`--rate`) measures the pipeline's own latency."
        )
    return None


def write_report(summary: dict[str, Any], path: Path) -> Path:
    images = charts(summary)
    currency = summary.get("currency", "")
    params = summary.get("parameters", {})
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ok = summary["invariants_ok"]

    header = _table(
        ["run", ""],
        [
            ["business (trade) date", summary.get("business_date", "-")],
            ["currency", currency or "-"],
            ["orders published", f"{summary['orders']:,}"],
            ["publish rate asked", "as fast as possible" if not params.get("rate") else f"{params['rate']:,.0f} orders/s"],
            ["seed", params.get("seed", "-")],
            ["report generated", generated],
        ],
    )  # fmt: skip
    key = _table(
        ["key figures", ""],
        [
            ["accepted", f"{summary['accepted']:,}"],
            ["rejected", f"{summary['rejected']:,}"],
            ["unaccounted for", f"{summary['unaccounted']:,}"],
            ["trades cleared", f"{summary['trades']:,}"],
            ["cleared notional", money(summary["cleared_notional"], currency)],
            ["netting efficiency (cash, 1 - net / gross)", f"{summary['netting_efficiency']:.2%}"],
            ["settlements gross -> net",
             f"{summary['netting']['gross_settlements']:,} -> {summary['netting']['net_settlements']:,}"],
            ["margin calls", f"{summary['margin_calls']:,}"],
            ["throughput end to end", f"{summary['throughput_orders_per_sec']:,.0f} orders/s"],
            ["latency publish -> cleared p50 / p99 / max",
             f"{summary['latency_ms']['p50']:,.0f} / {summary['latency_ms']['p99']:,.0f} / "
             f"{summary['latency_ms']['max']:,.0f} ms"],
            ["invariants", "all hold" if ok else f"{len(summary.get('violations', []))} violated"],
        ],
        numeric={1},
    )  # fmt: skip
    rejections = _table(
        ["reason code", "orders", "share of rejected"],
        [
            [reason, f"{count:,}", f"{count / max(summary['rejected'], 1):.1%}"]
            for reason, count in sorted(summary["rejected_by_reason"].items(), key=lambda kv: -kv[1])
        ],
        numeric={1, 2},
    )
    obligations = obligations_by_member(summary["_charts"]["netting_rows"])
    obligation_rows = [
        [
            o["settlement_date"],
            o["member_id"],
            money(-o["net_cash"], currency) if o["net_cash"] < 0 else "",
            money(o["net_cash"], currency) if o["net_cash"] > 0 else "",
            money(o["fees"], currency),
            ", ".join(f"{s} {q:,}" for s, q in sorted(o["deliver"].items())) or "-",
            ", ".join(f"{s} {q:,}" for s, q in sorted(o["receive"].items())) or "-",
        ]
        for o in obligations
    ]
    obligations_html = _table(
        ["settlement date", "member", "pays", "receives", "fees (in net)", "delivers", "receives securities"],
        obligation_rows,
        numeric={2, 3, 4},
    )
    margin_rows = [
        [
            m["member_id"],
            money(m["initial_margin"], currency),
            money(m["variation_margin"], currency),
            money(m["requirement"], currency),
            money(m["collateral"], currency),
            money(m["shortfall"], currency) if Decimal(str(m["shortfall"])) > 0 else "-",
            "CALL" if m.get("is_call") or Decimal(str(m["shortfall"])) > 0 else "",
        ]
        for m in summary["_charts"]["margin"]
    ]
    margin_html = _table(
        ["member", "initial margin", "variation margin", "requirement", "collateral", "shortfall", "call"],
        margin_rows,
        numeric={1, 2, 3, 4, 5},
    )
    violations = "".join(
        f"<li><b>{html.escape(v['code'])}</b> {html.escape(v['message'])}</li>"
        for v in summary.get("violations", [])
    )
    note = latency_note(summary)

    cpu = summary.get("cpu_seconds_by_component") or {}
    total_cpu = sum(cpu.values()) or 1e-9
    cpu_html = _table(
        ["component", "CPU s", "share", "ms / order"],
        [
            [n, f"{s:,.2f}", f"{s / total_cpu:.0%}", f"{1000 * s / max(summary['orders'], 1):.3f}"]
            for n, s in cpu.items()
        ],
        numeric={1, 2, 3},
    )
    calls_html = _table(
        ["event-source mapping worker", "invocations", "records / invocation", "mean ms / invocation"],
        [
            [
                n,
                f"{r['invocations']:,}",
                f"{r['records_per_invocation']:,.1f}",
                f"{r['mean_invocation_ms']:,.1f}",
            ]
            for n, r in sorted((summary.get("invocations") or {}).items())
        ],
        numeric={1, 2, 3},
    )
    business = [(t, p) for t, p in images.items() if t != "cpu"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Clearing report</title><style>"
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}th,td{padding:3px 10px;border-bottom:1px solid #ddd}"
        "th{text-align:left;background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}"
        ".ok{color:#2a7f3f}.bad{color:#c0392b}.note{background:#fff7e0;padding:0.6em 1em;border-left:4px solid #e0a800}"
        "h2{margin-top:1.6em;border-bottom:2px solid #444}</style></head><body>",
        "<h1>Clearing report: local end-to-end run</h1>",
        f"<p class='{'ok' if ok else 'bad'}'><b>{'Every invariant holds' if ok else 'INVARIANTS VIOLATED'}</b>"
        f" - {summary['accepted']:,} accepted, {summary['rejected']:,} rejected, "
        f"{summary['unaccounted']:,} unaccounted for.</p>",
        header,
        "<h2>Key figures</h2>",
        key,
        f"<p class='note'>{html.escape(note)}</p>" if note else "",
        f"<ul class='bad'>{violations}</ul>" if violations else "",
        "<h2>Rejections by reason</h2>",
        rejections,
        f"<h2>Settlement obligations ({html.escape(currency)})</h2>",
        "<p>Net per member and settlement date against the CCP, fees included; securities net per symbol.</p>",
        obligations_html,
        f"<h2>Margin ({html.escape(currency)})</h2>",
        margin_html,
        "<h2>Charts</h2>",
        *(f"<h3>{html.escape(t)}</h3>{_img(t, p)}" for t, p in business),
        "<h2>Developer section: where the CPU went and handler invocations</h2>",
        cpu_html,
        _img("cpu", images["cpu"]) if "cpu" in images else "",
        calls_html,
        "</body></html>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts))
    return path
