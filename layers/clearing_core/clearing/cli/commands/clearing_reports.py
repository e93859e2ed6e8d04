"""`clearing obligations`, `clearing verify`, `clearing margin`, `clearing settle`: the CCP's reports."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "obligations", help="net obligations per member/symbol/date, gross vs net, netting efficiency"
    )
    p.add_argument("--date", help="settlement date YYYY-MM-DD")
    p.add_argument("--member", help="member id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_obligations)

    p = sub.add_parser("verify", help="check every clearing invariant; non-zero exit on a violation")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_verify)

    p = sub.add_parser("margin", help="run initial (scenario scan) and variation margin; store margin calls")
    p.add_argument("--json", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="compute only, write nothing")
    p.set_defaults(func=_margin)

    p = sub.add_parser(
        "settle", help="end of day: settlement instructions per member for a date (CSV, JSON, DynamoDB)"
    )
    p.add_argument("--date", required=True, help="settlement date YYYY-MM-DD")
    p.add_argument("--out", default="reports/settlement", help="output folder (default reports/settlement)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_settle)


def _obligations(args) -> int:
    from clearing.cli.context import data_store
    from clearing.services.reports import obligations_report

    report = obligations_report(data_store(), args.date, args.member)
    if args.json:
        print(json.dumps(report))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Net obligations (member vs CCP)")
    for col in (
        "member",
        "symbol",
        "settles",
        "net qty",
        "net cash",
        "fees",
        "gross qty",
        "gross cash",
        "legs",
    ):
        table.add_column(col, justify="left" if col in ("member", "symbol", "settles") else "right")
    for r in report["rows"]:
        table.add_row(
            r["member_id"],
            r["symbol"],
            r["settlement_date"],
            f"{r['net_quantity']:,}",
            f"{float(r['net_cash']):,.2f}",
            r["fees"],
            f"{r['gross_quantity']:,}",
            f"{float(r['gross_cash']):,.2f}",
            str(r["leg_count"]),
        )
    console = Console()
    console.print(table)
    t = report["totals"]
    console.print(
        f"gross settlements {t['gross_settlements']:,} -> net {t['net_settlements']:,}; "
        f"netting efficiency (1 - net/gross): settlements {t['settlement_efficiency']}, "
        f"quantity {t['quantity_efficiency']}, cash {t['cash_efficiency']}; fees {t['fees']}"
    )
    return 0


def _verify(args) -> int:
    from clearing.cli.context import data_store
    from clearing.services.reports import verify

    result = verify(data_store())
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        from rich.console import Console

        console = Console()
        console.print("checked: " + ", ".join(f"{k} {v:,}" for k, v in result.checked.items()))
        for v in result.violations:
            console.print(f"[red]{v['code']}[/red] {v['message']}")
        console.print(
            "[green]all invariants hold[/green]"
            if result.ok
            else f"[red]{len(result.violations)} violation(s)[/red]"
        )
    return 0 if result.ok else 1


def _margin(args) -> int:
    from clearing.cli.context import data_store, reference_data
    from clearing.services.reports import run_margin

    store = data_store()
    result = run_margin(store, reference_data(store), write=not args.dry_run)
    if args.json:
        print(json.dumps(result))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Margin run {result['run_id']}")
    for col in (
        "member",
        "initial margin",
        "variation margin",
        "requirement",
        "collateral",
        "shortfall",
        "call",
    ):
        table.add_column(col, justify="left" if col == "member" else "right")
    calls = {c["member_id"] for c in result["margin_calls"]}
    for r in result["requirements"]:
        table.add_row(
            r["member_id"],
            f"{float(r['initial_margin']):,.2f}",
            f"{float(r['variation_margin']):,.2f}",
            f"{float(r['requirement']):,.2f}",
            f"{float(r['collateral']):,.2f}",
            f"{float(r['shortfall']):,.2f}",
            "[red]CALL[/red]" if r["member_id"] in calls else "",
        )
    Console().print(table)
    return 0


def _settle(args) -> int:
    from clearing.cli.context import data_store, reference_data
    from clearing.services.reports import settle_eod

    date.fromisoformat(args.date)
    store = data_store()
    from clearing.adapters.files import DirectorySink

    result = settle_eod(store, reference_data(store), args.date, DirectorySink(Path(args.out)))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    else:
        print(f"{result['instructions']} settlement instructions for {args.date}: {result['files']}")
    return 0
