"""Read-side queries for people: orders with their status, trade history, and the whole life of one order.

Every query for one member, one order or one symbol reads by key (Query on pk or gsi1, BatchGet);
only the unfiltered listings (`orders` / `trades` with no member and no symbol) scan a table.
Access paths (docs/replay-and-audit.md has the table):
- a member's orders: Query orders pk=member, sk begins_with "O#" (validation and state items);
- a symbol's orders: Query orders gsi1 pk=symbol (state items), then BatchGet their validation items;
- a symbol's trades: Query trades gsi1 pk="CLEARED#{symbol}" (cleared) and gsi1 pk=symbol (executed,
  to show trades not cleared yet); `since` narrows the sort key (executed_at) by prefix or filter;
- a member's trades: the trades table has no member index, so: Query positions pk=member for the
  symbols the member holds, then the symbol queries above, filtered on buy/sell member (reads other
  members' trades in those symbols: a per-member index would avoid that, see the design note);
- one order's life: BatchGet its validation/state items, the member's orders.new and orders.events
  partitions and the symbol's exchange.executions partition from Kafka (RetainedLog port).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from clearing.ports import ItemStore, KafkaRecord
from clearing.repositories.orders import OrderRecords
from clearing.repositories.positions import PositionRecords
from clearing.repositories.trades import TradeRecords
from clearing.topics import EXCHANGE_EXECUTIONS, ORDERS_ACCEPTED, ORDERS_EVENTS, ORDERS_NEW

if TYPE_CHECKING:
    from clearing.domain.refdata import ReferenceData
    from clearing.services.replay import RetainedLog

OPEN_STATUSES = {"RESTING", "PARTIALLY_FILLED", "ACCEPTED"}


# ------------------------------------------------------------------ orders
def original_message(item: dict[str, Any]) -> dict[str, Any] | None:
    """The OMS message a rejection item kept (base64 of the original bytes), parsed when it is JSON."""
    raw = item.get("original_b64")
    if not raw:
        return None
    try:
        msg = json.loads(base64.b64decode(raw))
    except (ValueError, TypeError):
        return None
    return msg if isinstance(msg, dict) else None


def _price(refdata: Any, symbol: str | None, ticks: Any) -> str | None:
    if ticks is None:
        return None
    if refdata is not None and symbol in getattr(refdata, "instruments", {}):
        return str(refdata.instruments[symbol].to_price(int(ticks)))
    return None


def order_view(
    validation: dict[str, Any] | None, state: dict[str, Any] | None, refdata: ReferenceData | None = None
) -> dict[str, Any]:
    """One order as people read it: identity, terms, current status, filled / remaining quantity."""
    v, s = validation or {}, state or {}
    original = original_message(v) if v.get("decision") == "REJECTED" else None
    src = original or v
    symbol = s.get("symbol") or v.get("symbol")
    if s:
        status, reason = s["status"], s.get("reason")
    elif v.get("decision") == "REJECTED":
        status, reason = "REJECTED", v.get("reason")
    elif v.get("route") == "EXCHANGE":
        status, reason = "ROUTED_TO_EXCHANGE", None
    else:
        status, reason = "ACCEPTED", None  # validated, not in the book yet
    quantity = s.get("quantity", v.get("quantity", (original or {}).get("quantity")))
    filled = int(s.get("filled_qty", 0))
    if s:
        remaining = int(s.get("remaining_qty", 0))
    elif status in ("ACCEPTED", "ROUTED_TO_EXCHANGE") and quantity is not None:
        remaining = int(quantity)
    else:
        remaining = 0
    member = s.get("member_id") or v.get("member_id")
    clordid = s.get("client_order_id") or v.get("client_order_id")
    price_ticks = v.get("price_ticks")
    return {
        "order_id": s.get("order_id") or v.get("order_id") or (f"{member}:{clordid}" if member else None),
        "member_id": member,
        "client_order_id": clordid,
        "account": s.get("account") or v.get("account") or (original or {}).get("account"),
        "symbol": symbol,
        "side": v.get("side") or src.get("side"),
        "type": v.get("type") or src.get("type"),
        "time_in_force": v.get("time_in_force") or src.get("time_in_force"),
        "price_ticks": price_ticks,
        "price": _price(refdata, symbol, price_ticks)
        or (str(src["price"]) if src.get("price") is not None else None),
        "quantity": quantity,
        "status": status,
        "reason": reason,
        "filled_qty": filled,
        "remaining_qty": remaining,
        "cancelled_qty": int(s.get("cancelled_qty", 0)),
        "route": v.get("route"),
        "received_at": v.get("sent_at") or src.get("sent_at"),
        "decided_from": v.get("src"),
        "last_change_from": s.get("last_src"),
    }


def _is_order_request(v: dict[str, Any]) -> bool:
    """A validation item of a NEW (an order), not of a cancel or replace request acting on one."""
    if v.get("decision") == "ACCEPTED":
        return v.get("action") == "NEW"
    original = original_message(v)
    return original is None or original.get("action", "NEW") == "NEW"


def member_order_items(
    store: ItemStore, member: str
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(validation items, state items) of a member, by client order id: one Query of the member's pk."""
    return OrderRecords(store).of_member(member)


def _status_matches(view: dict[str, Any], status: str | None) -> bool:
    if not status:
        return True
    wanted = status.upper()
    if wanted == "OPEN":
        return view["status"] in OPEN_STATUSES
    matches: bool = view["status"] == wanted
    return matches


def list_orders(
    store: ItemStore,
    member: str | None = None,
    symbol: str | None = None,
    status: str | None = None,
    refdata: ReferenceData | None = None,
) -> list[dict[str, Any]]:
    """Orders with their current status; by member (Query pk), by symbol (Query gsi1), or all (Scan)."""
    views = []
    if member:
        validations, states = member_order_items(store, member)
        for cid, v in validations.items():
            if _is_order_request(v):
                views.append(order_view(v, states.get(cid), refdata))
        for cid, s in states.items():
            if cid not in validations:  # a state without its validation item: still an order
                views.append(order_view(None, s, refdata))
    elif symbol:
        # gsi1 of the orders table holds state items under the symbol: orders that reached the book
        orders = OrderRecords(store)
        on_book = orders.states_in(symbol)
        ids = [(s["member_id"], s["client_order_id"]) for s in on_book]
        found = orders.decisions_of(ids)
        views = [order_view(found.get(i), s, refdata) for i, s in zip(ids, on_book, strict=True)]
    else:
        items = OrderRecords(store).all()
        by_key = {(i["pk"], i["sk"]): i for i in items}
        for (pk, sk), item in by_key.items():
            if sk.endswith("#V") and item.get("kind") == "VALIDATION" and _is_order_request(item):
                views.append(order_view(item, by_key.get((pk, sk[:-1] + "S")), refdata))
            elif sk.endswith("#S") and (pk, sk[:-1] + "V") not in by_key:
                views.append(order_view(None, item, refdata))
    views = [v for v in views if (not symbol or v["symbol"] == symbol) and _status_matches(v, status)]
    return sorted(views, key=lambda v: (v["received_at"] or "", v["order_id"] or ""))


# ------------------------------------------------------------------ trades
def trade_view(executed: dict[str, Any] | None, cleared: dict[str, Any] | None) -> dict[str, Any]:
    """A trade with both cleared legs (buyer vs CCP, CCP vs seller) once clear_trades has run."""
    e, c = executed or {}, cleared or {}
    buy = e.get("buy") or {"member_id": c.get("buy_member")}
    sell = e.get("sell") or {"member_id": c.get("sell_member")}
    return {
        "trade_id": e.get("trade_id") or c.get("trade_id"),
        "symbol": e.get("symbol") or c.get("symbol"),
        "price": e.get("price") or c.get("price"),
        "price_ticks": e.get("price_ticks"),
        "quantity": e.get("quantity", c.get("quantity")),
        "executed_at": e.get("executed_at") or c.get("executed_at"),
        "trade_date": e.get("trade_date") or c.get("trade_date"),
        "settlement_date": c.get("settlement_date"),
        "aggressor": e.get("aggressor"),
        "buy": buy,
        "sell": sell,
        "status": "CLEARED" if c else "EXECUTED",
        "legs": c.get("legs", []),
        "executed_from": _position(e.get("source")),
        "cleared_from": c.get("src"),
    }


def _position(source: dict[str, Any] | None) -> str | None:
    if not source:
        return None
    return f"{source['topic']}/{source['partition']}/{source['offset']}"


def symbol_trades(store: ItemStore, symbol: str, since: str | None = None) -> list[dict[str, Any]]:
    """Two Queries on gsi1: cleared trades (CLEARED#symbol) and executed ones (symbol), by executed_at."""
    trades = TradeRecords(store)
    cleared = {i["trade_id"]: i for i in trades.cleared_in(symbol)}
    executed = {i["trade_id"]: i for i in trades.executed_in(symbol) if i.get("sk") == "EXECUTED"}
    views = [trade_view(executed.get(t), cleared.get(t)) for t in sorted(set(cleared) | set(executed))]
    if since:
        views = [v for v in views if (v["executed_at"] or "") >= since]
    return views


def member_symbols(store: ItemStore, member: str) -> set[str]:
    """Symbols a member has positions in (Query positions pk=member): where its trades can be."""
    return {p["symbol"] for p in PositionRecords(store).of_member(member)}


def _involves(view: dict[str, Any], member: str) -> bool:
    return member in ((view["buy"] or {}).get("member_id"), (view["sell"] or {}).get("member_id"))


def list_trades(
    store: ItemStore, symbol: str | None = None, member: str | None = None, since: str | None = None
) -> list[dict[str, Any]]:
    if symbol:
        views = symbol_trades(store, symbol, since)
    elif member:
        # Positions are written in the same clear_trades batch as the cleared trade; a trade executed
        # but not cleared yet in a symbol the member never held before is not found until it is cleared.
        views = [v for s in sorted(member_symbols(store, member)) for v in symbol_trades(store, s, since)]
    else:
        items = TradeRecords(store).all()
        executed = {i["trade_id"]: i for i in items if i["sk"] == "EXECUTED"}
        cleared = {i["trade_id"]: i for i in items if i["sk"] == "CLEARED"}
        views = [trade_view(executed.get(t), cleared.get(t)) for t in set(executed) | set(cleared)]
        if since:
            views = [v for v in views if (v["executed_at"] or "") >= since]
    if member:
        views = [v for v in views if _involves(v, member)]
    return sorted(views, key=lambda v: (v["executed_at"] or "", v["trade_id"]))


# ------------------------------------------------------------------ one order's life
_PHASE = {
    "RECEIVED": 0,
    "ACCEPTED": 1,
    "REJECTED": 1,
    "ROUTED_TO_EXCHANGE": 1,
    "EVENT": 2,
    "CLEARED": 3,
    "EXCHANGE_REPORT": 4,
}


def _iso_ms(ms: int) -> str | None:
    if not ms:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def normalise_time(text: str | None) -> str | None:
    """ISO-8601 UTC with microseconds (also from FIX UTCTimestamp), so that times sort as strings."""
    if not text:
        return None
    parse: Callable[[str], datetime]
    for parse in (
        lambda t: datetime.fromisoformat(t.replace("Z", "+00:00")),
        lambda t: datetime.strptime(t, "%Y%m%d-%H:%M:%S.%f"),
        lambda t: datetime.strptime(t, "%Y%m%d-%H:%M:%S"),
    ):
        try:
            moment = parse(text)
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text


def _step(step: str, time: str | None, position: str | None, phase: str, **details: Any) -> dict[str, Any]:
    return {
        "step": step,
        "time": normalise_time(time),
        "from": position,
        "_phase": _PHASE[phase],
        **{k: v for k, v in details.items() if v is not None},
    }


def _read_json(record: KafkaRecord) -> dict[str, Any] | None:
    try:
        value = json.loads(record.value)  # type: ignore[arg-type]  # None: TypeError, caught
    except (ValueError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def _first_by_id(records: Iterable[KafkaRecord], id_field: str) -> list[tuple[KafkaRecord, dict[str, Any]]]:
    """(record, message) pairs, keeping the first of messages re-produced after a crash (same id)."""
    seen: set[Any] = set()
    out: list[tuple[KafkaRecord, dict[str, Any]]] = []
    for r in records:
        msg = _read_json(r)
        if msg is None or msg.get(id_field) in seen:
            continue
        seen.add(msg.get(id_field))
        out.append((r, msg))
    return out


def order_life(
    store: ItemStore,
    log: RetainedLog | None,
    member: str,
    client_order_id: str,
    refdata: ReferenceData | None = None,
) -> dict[str, Any] | None:
    """Everything that happened to one order, oldest first; None when the member never sent it.

    `client_order_id` may be the order's first id or the id of any later cancel/replace of it. Sources:
    the validation and state items (orders table), the member's partition of orders.new (every request:
    NEW, CANCEL, REPLACE, with its position) and of orders.events (every matching-engine event), the
    cleared trade items of its fills, and the symbol's partition of exchange.executions. `log` may be
    None (Kafka retention passed): the life is then what the tables hold."""
    orders = OrderRecords(store)
    v, _ = orders.decision_and_state(member, client_order_id)
    root = client_order_id
    if v and v.get("target_order_id"):  # the id of a cancel or replace: the order is its target
        root = v["target_order_id"].split(":", 1)[1]
    order_id = f"{member}:{root}"

    # every request of this order on orders.new (the member's partition), following the id chain
    chain: set[Any] = {root, client_order_id}  # ids as read (a bad one just matches nothing)
    requests = []
    if log is not None:
        partition = log.partition_for(ORDERS_NEW, member.encode())
        for r in log.read(ORDERS_NEW, partition):
            msg = _read_json(r)
            if not msg or msg.get("member_id") != member:
                continue
            if msg.get("client_order_id") in chain or msg.get("orig_client_order_id") in chain:
                chain.add(msg.get("client_order_id"))
                requests.append((r, msg))
    decisions = orders.decisions_of((member, c) for c in chain if c)
    state = orders.state(member, root)
    root_v = decisions.get((member, root))
    if root_v is None and state is None and not requests:
        return None

    steps: list[dict[str, Any]] = []
    seen_decisions = set()
    positions = {r.position for r, _ in requests}
    rejections_by_position = orders.rejections_at((r.topic, r.partition, r.offset) for r, _ in requests)
    for r, msg in requests:
        steps.append(
            _step(
                "RECEIVED",
                msg.get("sent_at"),
                r.position,
                "RECEIVED",
                action=msg.get("action"),
                client_order_id=msg.get("client_order_id"),
                orig_client_order_id=msg.get("orig_client_order_id"),
                side=msg.get("side"),
                price=msg.get("price"),
                quantity=msg.get("quantity"),
            )
        )
        d = decisions.get((member, msg.get("client_order_id")))  # type: ignore[arg-type]  # a request of the chain has its id
        if d is None or d.get("src") != r.position:
            d = rejections_by_position.get((r.topic, r.partition, r.offset))
        if d is not None:
            steps.append(_decision_step(d, msg.get("sent_at")))
            seen_decisions.add(d["src"])
    for d in decisions.values():  # decisions whose request the log no longer holds
        if d["src"] not in seen_decisions and d["src"] not in positions:
            steps.append(_decision_step(d, d.get("sent_at")))

    trade_ids: list[str] = []
    symbol = (state or {}).get("symbol") or (root_v or {}).get("symbol")
    if log is not None:
        ev_partition = log.partition_for(ORDERS_EVENTS, member.encode())
        events = [
            (r, e)
            for r, e in _first_by_id(log.read(ORDERS_EVENTS, ev_partition), "event_id")
            if e.get("order_id") == order_id
        ]
        times = _source_times(log, [e["source"] for _, e in events])
        for r, e in events:
            src = e["source"]
            if (
                e.get("trade_id")
                and e["type"] in ("PARTIALLY_FILLED", "FILLED")
                and e["trade_id"] not in trade_ids
            ):
                trade_ids.append(e["trade_id"])
            steps.append(
                _step(
                    "RESTING" if e["type"] == "ACCEPTED" else e["type"],
                    times.get((src["partition"], src["offset"])) or _iso_ms(r.timestamp),
                    r.position,
                    "EVENT",
                    caused_by=f"{src['topic']}/{src['partition']}/{src['offset']}#{src.get('seq', 0)}",
                    event_id=e["event_id"],
                    filled_qty=e.get("filled_qty"),
                    remaining_qty=e.get("remaining_qty"),
                    cancelled_qty=e.get("cancelled_qty"),
                    last_qty=e.get("last_qty"),
                    last_price=_price(refdata, e.get("symbol"), e.get("last_price_ticks")),
                    last_price_ticks=e.get("last_price_ticks"),
                    trade_id=e.get("trade_id"),
                    reason=e.get("reason"),
                    priority_kept=e.get("priority_kept"),
                    action=e.get("action"),
                    client_order_id=e.get("client_order_id"),
                    exposure_delta=e.get("exposure_delta"),
                )
            )

    side = (root_v or {}).get("side")
    trades = TradeRecords(store).by_ids(trade_ids)
    for t in trade_ids:
        executed, cleared = trades.get((t, "EXECUTED")), trades.get((t, "CLEARED"))
        if cleared is None:
            continue
        if executed:  # this order's side of the trade (a self-trade has the member on both sides)
            side = "BUY" if executed["buy"]["order_id"] == order_id else "SELL"
        for leg in cleared["legs"]:
            if leg["member_id"] == member and (side is None or leg["side"] == side):
                steps.append(
                    _step(
                        "CLEARED_LEG",
                        cleared.get("executed_at"),
                        cleared.get("src"),
                        "CLEARED",
                        trade_id=t,
                        leg_id=leg["leg_id"],
                        side=leg["side"],
                        quantity=leg["quantity"],
                        price=leg["price"],
                        counterparty=leg["counterparty"],
                        settlement_date=leg["settlement_date"],
                        cash_amount=leg["cash_amount"],
                        written_by=cleared.get("written_by"),
                    )
                )

    if log is not None and symbol and log.partitions(EXCHANGE_EXECUTIONS):
        cl_ord_ids = {f"{member}:{c}" for c in chain if c}
        ex_partition = log.partition_for(EXCHANGE_EXECUTIONS, symbol.encode())
        for r in log.read(EXCHANGE_EXECUTIONS, ex_partition):
            x = _read_json(r)
            if not x:
                continue
            if (
                x.get("cl_ord_id") in cl_ord_ids
                or x.get("orig_cl_ord_id") in cl_ord_ids
                or x.get("trade_report_id") in trade_ids
                or x.get("request_id") in cl_ord_ids | set(trade_ids)
            ):
                steps.append(
                    _step(
                        "EXCHANGE_REPORT",
                        x.get("transact_time") or x.get("sending_time"),
                        r.position,
                        "EXCHANGE_REPORT",
                        msg_type=x.get("msg_type"),
                        exec_type=x.get("exec_type"),
                        ord_status=x.get("ord_status"),
                        trd_rpt_status=x.get("trd_rpt_status"),
                        request_id=x.get("request_id"),
                        text=x.get("text"),
                    )
                )

    order_steps = sorted(steps, key=lambda s: (s["time"] or "", s["_phase"], s["from"] or ""))
    for s in order_steps:
        del s["_phase"]
    summary = order_view(root_v, state, refdata)
    summary["order_id"] = order_id
    return {
        "order": summary,
        "client_order_ids": sorted(c for c in chain if c),
        "trade_ids": trade_ids,
        "steps": order_steps,
        "log_read": log is not None,
    }


def _decision_step(d: dict[str, Any], time: str | None) -> dict[str, Any]:
    if d.get("decision") == "REJECTED":
        return _step(
            "REJECTED",
            time,
            d.get("src"),
            "REJECTED",
            reason=d.get("reason"),
            message=d.get("message"),
            client_order_id=d.get("client_order_id"),
            written_by=d.get("written_by"),
        )
    step = "ROUTED_TO_EXCHANGE" if d.get("route") == "EXCHANGE" else "ACCEPTED"
    return _step(
        step,
        time,
        d.get("src"),
        step,
        action=d.get("action"),
        client_order_id=d.get("client_order_id"),
        exposure_reserved=d.get("exposure_reserved"),
        written_by=d.get("written_by"),
    )


def _source_times(log: RetainedLog, sources: list[dict[str, Any]]) -> dict[tuple[int, int], str | None]:
    """sent_at of the orders.accepted records that caused events: the business time of each event."""
    out: dict[tuple[int, int], str | None] = {}
    for src in sources:
        key = (int(src["partition"]), int(src["offset"]))
        if key in out or src.get("topic") != ORDERS_ACCEPTED:
            continue
        records = list(log.read(ORDERS_ACCEPTED, key[0], key[1], key[1] + 1))
        msg = _read_json(records[0]) if records else None
        out[key] = (msg or {}).get("sent_at")
    return out
