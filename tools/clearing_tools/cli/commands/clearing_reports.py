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

    p = sub.add_parser(
        "verify",
        help="reconcile the retained Kafka log with the store and check every clearing invariant; "
        "non-zero exit when anything is missing or off",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--pending-max-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="an exchange request without an answer fails once it is older than this "
        "(default 300; younger ones are reported PENDING with their age)",
    )
    p.add_argument(
        "--no-exchange",
        action="store_true",
        help="skip the exchange-answer checks (a stack run without exchange_gateway)",
    )
    p.add_argument(
        "--store-only",
        action="store_true",
        help="do not read Kafka: the store checked against itself only (cannot see lost records)",
    )
    p.add_argument("--max-violations", type=int, default=200)
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
    from clearing.services.reports import obligations_report

    from clearing_tools.cli.context import data_store

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
    from clearing.ports import InfrastructureError
    from clearing.services.reports import verify

    from clearing_tools.cli.context import data_store

    log = None
    if not args.store_only:
        from clearing_tools.cli.commands.queries import retained_log

        log = retained_log()
    try:
        result = verify(
            data_store(),
            log,
            args.max_violations,
            pending_max_age_s=args.pending_max_age,
            exchange=not args.no_exchange,
        )
    except (InfrastructureError, OSError) as exc:
        # kafka.errors.NoBrokersAvailable and friends are not OSErrors: caught by name below
        print(f"verify could not read its inputs: {exc}")
        return 2
    except Exception as exc:
        if type(exc).__module__.startswith("kafka"):
            print(f"verify could not read the Kafka log ({type(exc).__name__}: {exc}); --store-only skips it")
            return 2
        if type(exc).__module__.startswith("botocore"):
            print(f"verify could not read the store ({type(exc).__name__}: {exc})")
            return 2
        raise
    finally:
        if log is not None:
            log.close()
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0 if result.ok else 1
    print_verify(result)
    return 0 if result.ok else 1


def print_verify(result, console=None, per_code: int = 5) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    colour = {"OK": "green", "FAIL": "red", "PENDING": "yellow", "SKIPPED": "dim"}
    title = (
        "clearing verify: retained Kafka log reconciled with the store"
        if result.reconciled
        else "clearing verify: store only (the Kafka log was not read; lost records cannot be seen)"
    )
    table = Table(title=title)
    for col in ("check", "expected", "found", "missing", "pending", "status"):
        table.add_column(
            col, justify="right" if col in ("expected", "found", "missing", "pending") else "left"
        )
    for c in result.checks:
        table.add_row(
            c["check"],
            f"{c['expected']:,}",
            f"{c['found']:,}",
            f"{c['missing']:,}",
            f"{c['pending']:,}" if c["pending"] else "",
            f"[{colour.get(c['status'], 'white')}]{c['status']}[/]",
        )
    console.print(table)
    for c in result.checks:
        if c["detail"]:
            console.print(f"[bold]{c['check']}[/bold]: {c['detail']}")
    by_code: dict[str, list[str]] = {}
    for v in result.violations:
        by_code.setdefault(v["code"], []).append(v["message"])
    for code, messages in by_code.items():
        for message in messages[:per_code]:
            console.print(f"[red]{code}[/red] {message}")
        if len(messages) > per_code:
            console.print(f"[red]{code}[/red] ... {len(messages) - per_code} more (--json lists them)")
    console.print("checked: " + ", ".join(f"{k} {v:,}" for k, v in result.checked.items()))
    if result.ok:
        pending = sum(c["pending"] for c in result.checks)
        console.print(
            f"[green]every check holds[/green] in {result.seconds:.1f} s"
            + (f" ({pending} exchange answer(s) pending, younger than the limit)" if pending else "")
        )
    else:
        failed = sum(c["status"] == "FAIL" for c in result.checks)
        console.print(
            f"[red]{failed} check(s) failed, {len(result.violations)} violation(s)[/red] in {result.seconds:.1f} s"
        )


def _margin(args) -> int:
    from clearing.services.reports import run_margin

    from clearing_tools.cli.context import data_store, reference_data

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
    from clearing.services.reports import settle_eod

    from clearing_tools.cli.context import data_store, reference_data

    date.fromisoformat(args.date)
    store = data_store()
    from clearing.adapters.files import DirectorySink

    result = settle_eod(store, reference_data(store), args.date, DirectorySink(Path(args.out)))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    else:
        print(f"{result['instructions']} settlement instructions for {args.date}: {result['files']}")
    return 0
