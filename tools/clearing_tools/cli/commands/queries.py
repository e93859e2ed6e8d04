"""`clearing orders`, `clearing trades`, `clearing order`: what happened to orders and trades, for people."""

from __future__ import annotations

import json
import os
import sys


def register(sub) -> None:
    p = sub.add_parser("orders", help="orders with their current status, filled and remaining quantity")
    p.add_argument("--member", help="member id (Query of the member's orders)")
    p.add_argument("--symbol", help="symbol")
    p.add_argument(
        "--status",
        help="RESTING, PARTIALLY_FILLED, FILLED, CANCELLED, REJECTED, ACCEPTED, "
        "ROUTED_TO_EXCHANGE, or OPEN (resting + partially filled + accepted)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most this many rows (the oldest first)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_orders)

    p = sub.add_parser("trades", help="trade history with both cleared legs")
    p.add_argument("--symbol", help="symbol")
    p.add_argument("--member", help="member id (buyer or seller)")
    p.add_argument("--since", help="executed at or after this ISO time or date (e.g. 2026-11-24T14:30)")
    p.add_argument("--limit", type=int, default=None, help="at most this many rows (the oldest first)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_trades)

    p = sub.add_parser(
        "order", help="the whole life of one order, each step with its time and Kafka position"
    )
    p.add_argument(
        "order_id",
        help="the order id `clearing orders` prints (MEMBER:CLIENT_ORDER_ID), or the client order id with "
        "--member (also that of a later cancel/replace)",
    )
    p.add_argument("--member", help="member id (not needed with an order id MEMBER:CLIENT_ORDER_ID)")
    p.add_argument("--no-log", action="store_true", help="tables only: do not read Kafka")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_order)


def bootstrap_servers() -> str:
    """KAFKA_BOOTSTRAP_SERVERS (as the functions read it), else the local runtime's broker."""
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    from clearing_tools.local.config import RuntimeConfig

    return RuntimeConfig().bootstrap_servers


def retained_log():
    from clearing.adapters.retained_log import KafkaRetainedLog

    extra = {}
    if os.environ.get("KAFKA_SECURITY_PROTOCOL"):
        extra["security_protocol"] = os.environ["KAFKA_SECURITY_PROTOCOL"]
    return KafkaRetainedLog(bootstrap_servers(), **extra)


def _refdata(store):
    from clearing_tools.cli.context import reference_data

    return reference_data(store)


def _orders(args) -> int:
    from clearing.services.queries import list_orders

    from clearing_tools.cli.context import data_store

    store = data_store()
    rows = list_orders(store, args.member, args.symbol, args.status, _refdata(store))
    if args.limit is not None:
        rows = rows[: max(0, args.limit)]
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Orders ({len(rows)})")
    for col in (
        "order id",
        "symbol",
        "side",
        "type",
        "tif",
        "price",
        "qty",
        "status",
        "filled",
        "remaining",
        "reason",
        "received at",
    ):
        table.add_column(
            col,
            justify="right" if col in ("price", "qty", "filled", "remaining") else "left",
            overflow="fold",  # ids are never cut to an ellipsis: a narrow terminal folds them
            no_wrap=col == "order id",
            min_width=len(max((r["order_id"] or "" for r in rows), key=len, default=""))
            if col == "order id"
            else None,
        )
    for r in rows:
        table.add_row(
            r["order_id"] or "",
            r["symbol"] or "",
            r["side"] or "",
            r["type"] or "",
            r["time_in_force"] or "",
            r["price"] or "",
            str(r["quantity"] or ""),
            r["status"],
            str(r["filled_qty"]),
            str(r["remaining_qty"]),
            r["reason"] or "",
            r["received_at"] or "",
        )
    Console().print(table)
    return 0


def _trades(args) -> int:
    from clearing.services.queries import list_trades

    from clearing_tools.cli.context import data_store

    rows = list_trades(data_store(), args.symbol, args.member, args.since)
    if args.limit is not None:
        rows = rows[: max(0, args.limit)]
    if args.json:
        print(json.dumps(rows, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Trades ({len(rows)})")
    for col in (
        "trade id",
        "symbol",
        "price",
        "qty",
        "executed at",
        "buyer",
        "seller",
        "status",
        "legs (member side qty cash)",
    ):
        table.add_column(
            col,
            justify="right" if col in ("price", "qty") else "left",
            overflow="fold",
            min_width=len(max((t["trade_id"] for t in rows), key=len, default=""))
            if col == "trade id"
            else None,
        )
    for t in rows:
        legs = "; ".join(
            f"{leg['member_id']} {leg['side']} {leg['quantity']} {leg['cash_amount']}" for leg in t["legs"]
        )
        table.add_row(
            t["trade_id"],
            t["symbol"] or "",
            t["price"] or "",
            str(t["quantity"]),
            t["executed_at"] or "",
            f"{t['buy'].get('member_id')} {t['buy'].get('order_id') or ''}",
            f"{t['sell'].get('member_id')} {t['sell'].get('order_id') or ''}",
            t["status"],
            legs,
        )
    Console().print(table)
    return 0


def parse_order_ref(order_id: str, member: str | None) -> tuple[str, str]:
    """(member, client order id) from `MEMBER:CLIENT_ORDER_ID` (what `clearing orders` prints) or from
    a client order id plus --member."""
    head, sep, tail = order_id.partition(":")
    if sep and tail and (member is None or member == head):
        return head, tail
    if member is None:
        raise SystemExit(f"clearing order: {order_id!r} is not MEMBER:CLIENT_ORDER_ID; add --member MEMBER")
    return member, order_id


def _order(args) -> int:
    from clearing.ports import InfrastructureError
    from clearing.services.queries import order_life

    from clearing_tools.cli.context import data_store

    member, client_order_id = parse_order_ref(args.order_id, args.member)
    store = data_store()
    log = None if args.no_log else retained_log()
    try:
        life = order_life(store, log, member, client_order_id, _refdata(store))
    except (InfrastructureError, Exception) as exc:  # broker unreachable: the tables still tell most of it
        if log is None or not _is_kafka_error(exc):
            raise
        print(f"warning: Kafka not readable ({exc}); showing what the tables hold", file=sys.stderr)
        life = order_life(store, None, member, client_order_id, _refdata(store))
    finally:
        if log is not None:
            log.close()
    if life is None:
        print(f"clearing order: no order {client_order_id} of member {member}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(life, default=str))
        return 0
    from rich.console import Console
    from rich.table import Table

    o = life["order"]
    console = Console()
    console.print(
        f"[bold]{o['order_id']}[/bold] {o['side']} {o['quantity']} {o['symbol']} @ {o['price'] or 'MKT'} "
        f"{o['time_in_force'] or ''}: [bold]{o['status']}[/bold] filled {o['filled_qty']}, "
        f"remaining {o['remaining_qty']}, cancelled {o['cancelled_qty']}"
        + (f" ({o['reason']})" if o["reason"] else "")
    )
    table = Table()
    for col in ("time", "step", "from (topic/partition/offset)", "details"):
        table.add_column(col)
    for s in life["steps"]:
        details = ", ".join(f"{k}={v}" for k, v in s.items() if k not in ("time", "step", "from"))
        table.add_row(s["time"] or "", s["step"], s["from"] or "", details)
    console.print(table)
    if not life["log_read"]:
        console.print("(Kafka not read: requests, book events and exchange reports are not shown)")
    return 0


def _is_kafka_error(exc: Exception) -> bool:
    from clearing.ports import InfrastructureError
    from kafka.errors import KafkaError

    return isinstance(exc, KafkaError | InfrastructureError)
