"""The member API's read model: what each endpoint returns, over the query and report services.

Every function reads by key only (Query on pk or gsi1, BatchGet), never Scan: an operator's "all
members" view is one Query per member of the reference data (or per instrument for trades), so its
cost grows with members and instruments, not with the size of the tables. `member` None means every
member (the caller is an operator: clearing.api.access decides that before these run).
"""

from __future__ import annotations

import base64
import hashlib
import json
from decimal import Decimal
from typing import Any

from clearing.ports import ItemStore
from clearing.repositories.margin import MarginRecords
from clearing.repositories.obligations import ObligationRecords
from clearing.repositories.orders import OrderRecords
from clearing.repositories.positions import PositionRecords
from clearing.repositories.trades import TradeRecords
from clearing.services import queries
from clearing.services.reports import load_obligations

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


class BadToken(ValueError):
    """A pagination token that this listing did not issue (tampered, or from other filters)."""


# ------------------------------------------------------------------ pagination
def _fingerprint(filters: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def start_of(next_token: str | None, filters: dict[str, Any]) -> int:
    """The row a page starts at (0 without a token); BadToken for a token of another listing."""
    return page([], 1, next_token, filters)["_start"]


def page(
    rows: list[dict],
    limit: int,
    next_token: str | None,
    filters: dict[str, Any],
    more: bool | None = None,
    total: int | None = -1,
) -> dict[str, Any]:
    """One page of a listing: `limit` rows from the position the token names (tokens are bound to the
    filters that issued them). Listings are read whole per request and then cut, except the newest-first
    trades (newest_trades reads only the newest items: then `more` and `total`=None are given)."""
    start = 0
    fp = _fingerprint(filters)
    if next_token:
        try:
            raw = json.loads(base64.urlsafe_b64decode(next_token.encode() + b"=" * (-len(next_token) % 4)))
            start, token_fp = int(raw["o"]), str(raw["f"])
        except (ValueError, TypeError, KeyError):
            raise BadToken("malformed next_token") from None
        if token_fp != fp or start < 0:
            raise BadToken("next_token belongs to another listing")
    items = rows[start : start + limit]
    more = start + limit < len(rows) if more is None else more
    token = None
    if more:
        token = (
            base64.urlsafe_b64encode(json.dumps({"o": start + limit, "f": fp}).encode()).decode().rstrip("=")
        )
    return {
        "items": items,
        "count": len(items),
        "total": len(rows) if total == -1 else total,  # None: not counted (a bounded read)
        "next_token": token,
        "_start": start,
    }


# ------------------------------------------------------------------ orders
def orders(
    store: ItemStore, refdata, member: str | None, symbol: str | None, status: str | None
) -> list[dict]:
    if member or symbol:
        return queries.list_orders(store, member, symbol, status, refdata)
    rows = [r for m in sorted(refdata.members) for r in queries.list_orders(store, m, None, status, refdata)]
    return sorted(rows, key=lambda v: (v["received_at"] or "", v["order_id"] or ""))


def resolve_order_id(store: ItemStore, refdata, order_id: str, member: str | None) -> tuple[str, str] | None:
    """(member, client order id) of an id people see: `MBR01:CLIENTID` (order id, also the FIX ClOrdID)
    or a bare client order id (the caller's member, or for an operator whichever member used it: one
    BatchGet of that id's validation key across members). None: unknown (or ambiguous for an operator)."""
    if ":" in order_id:
        prefix, rest = order_id.split(":", 1)
        if prefix in refdata.members and rest:
            return (prefix, rest) if member in (None, prefix) else None
    candidates = [member] if member else sorted(refdata.members)
    orders = OrderRecords(store)
    found = orders.decisions_of((m, order_id) for m in candidates)
    found |= orders.states_of((m, order_id) for m in candidates)
    members = sorted({m for m, _ in found})
    if len(members) == 1:
        return members[0], order_id
    if len(members) > 1:
        raise LookupError(f"client order id {order_id} was used by {', '.join(members)}: name the member")
    return None


def order(store: ItemStore, refdata, log, member: str, client_order_id: str) -> dict | None:
    return queries.order_life(store, log, member, client_order_id, refdata)


# ------------------------------------------------------------------ trades and positions
def trades(
    store: ItemStore, refdata, member: str | None, symbol: str | None, since: str | None
) -> list[dict]:
    if member or symbol:
        return queries.list_trades(store, symbol, member, since)
    rows = [t for s in sorted(refdata.instruments) for t in queries.symbol_trades(store, s, since)]
    return sorted(rows, key=lambda v: (v["executed_at"] or "", v["trade_id"]))


def _sort_key(v: dict) -> tuple[str, str]:
    return (v["executed_at"] or "", v["trade_id"] or "")


def _newest_symbol_trades(store: ItemStore, symbol: str, count: int) -> tuple[list[dict], bool]:
    """The `count` newest trades of a symbol, newest first (two Queries on gsi1, descending, limited)
    and whether older ones may exist. Every cleared trade has its EXECUTED item under the same sort
    key (executed_at#trade_id), so the newest `count` executed items are the newest trades and their
    cleared items are within the newest `count` cleared ones."""
    records = TradeRecords(store)
    executed = records.executed_in(symbol, newest_first=True, limit=count)
    cleared = records.cleared_in(symbol, newest_first=True, limit=count)
    by_id_e = {i["trade_id"]: i for i in executed if i.get("sk") == "EXECUTED"}
    by_id_c = {i["trade_id"]: i for i in cleared}
    views = [queries.trade_view(by_id_e.get(t), by_id_c.get(t)) for t in set(by_id_e) | set(by_id_c)]
    views.sort(key=_sort_key, reverse=True)
    return views[:count], len(executed) >= count or len(cleared) >= count


def newest_trades(
    store: ItemStore, refdata, member: str | None, symbol: str | None, count: int
) -> tuple[list[dict], bool]:
    """The `count` newest trades (newest first) in scope, reading only the newest items of each symbol
    (the blotter's path: a poll every few seconds must not read the whole trades table).

    For a member, each symbol's window starts at 2 x count and grows x4 only while it could still hide
    one of the member's `count` newest trades: the symbol has older items and the oldest trade read is
    newer than the member's count-th newest trade found so far. Returns (trades, older ones may exist)."""
    if member:
        symbols = [symbol] if symbol else sorted(queries.member_symbols(store, member))
    else:
        symbols = [symbol] if symbol else sorted(refdata.instruments)
    window = dict.fromkeys(symbols, 2 * count if member else count)
    found: dict[str, tuple[list[dict], bool, tuple[str, str] | None]] = {}
    pending = list(symbols)
    while pending:
        for s in pending:
            views, maybe_more = _newest_symbol_trades(store, s, window[s])
            oldest = _sort_key(views[-1]) if views else None
            found[s] = ([v for v in views if not member or queries._involves(v, member)], maybe_more, oldest)
        rows = sorted((v for mine, _, _ in found.values() for v in mine), key=_sort_key, reverse=True)
        cutoff = _sort_key(rows[count - 1]) if len(rows) >= count else None
        pending = [
            s
            for s, (_, maybe_more, oldest) in found.items()
            if member and maybe_more and (cutoff is None or (oldest is not None and oldest > cutoff))
        ]
        for s in pending:
            window[s] *= 4
    rows = sorted((v for mine, _, _ in found.values() for v in mine), key=_sort_key, reverse=True)
    more = any(maybe_more for _, maybe_more, _ in found.values()) or len(rows) > count
    return rows[:count], more


def trade(store: ItemStore, trade_id: str, member: str | None) -> dict | None:
    """One trade by id (two GetItems); None when unknown or when `member` is on neither side."""
    found = TradeRecords(store).by_ids([trade_id])
    if not found:
        return None
    view = queries.trade_view(found.get((trade_id, "EXECUTED")), found.get((trade_id, "CLEARED")))
    if member and member not in ((view["buy"] or {}).get("member_id"), (view["sell"] or {}).get("member_id")):
        return None
    return view


def as_seen_by_member(view: dict, member: str | None) -> dict:
    """A trade as one member may see it: after novation its counterparty is the CCP, so the other side's
    member, account and order id are not shown, and only the member's own cleared leg(s)."""
    out = dict(view)
    for side in ("buy", "sell"):
        if (view[side] or {}).get("member_id") != member:
            out[side] = {"member_id": "CCP"}
    out["legs"] = [leg for leg in view.get("legs", []) if leg.get("member_id") == member]
    return out


def _members(refdata, member: str | None) -> list[str]:
    return [member] if member else sorted(refdata.members)


def positions(store: ItemStore, refdata, member: str | None, symbol: str | None) -> list[dict]:
    rows = []
    for m in _members(refdata, member):
        for item in PositionRecords(store).of_member(m, symbol):
            rows.append({k: v for k, v in item.items() if k not in ("pk", "sk", "written_by")})
    return rows


# ------------------------------------------------------------------ obligations, margin, settlement
def _currency(refdata, symbol: str) -> str:
    instrument = refdata.instruments.get(symbol)
    return instrument.currency if instrument else refdata.currency


def obligations(store: ItemStore, refdata, member: str | None, settlement_date: str | None) -> dict[str, Any]:
    """Net obligations member vs CCP, signed (net_cash < 0: the member pays) and as pay/receive."""
    if member:
        found = load_obligations(store, settlement_date, member)
    elif settlement_date:
        found = load_obligations(store, settlement_date)  # Query pk=date
    else:
        found = [o for m in sorted(refdata.members) for o in load_obligations(store, None, m)]
    rows: list[dict[str, Any]] = []
    per_member: dict[tuple[str, str], dict[str, Any]] = {}
    for o in sorted(found, key=lambda o: (o.member_id, o.settlement_date, o.symbol)):
        currency = _currency(refdata, o.symbol)
        rows.append(
            {
                **o.to_dict(),
                "currency": currency,
                "cash": "PAY" if o.net_cash < 0 else "RECEIVE" if o.net_cash > 0 else "NONE",
                "cash_amount": str(abs(o.net_cash)),
                "securities": "RECEIVE"
                if o.net_quantity > 0
                else "DELIVER"
                if o.net_quantity < 0
                else "NONE",
                "securities_quantity": abs(o.net_quantity),
            }
        )
        m = per_member.setdefault(
            (o.member_id, currency),
            {"member_id": o.member_id, "currency": currency, "net_cash": Decimal(0), "fees": Decimal(0)},
        )
        m["net_cash"] += o.net_cash
        m["fees"] += o.fees
    members = []
    for m in per_member.values():
        total = m["net_cash"] - m["fees"]
        members.append(
            {
                "member_id": m["member_id"],
                "currency": m["currency"],
                "net_cash": str(m["net_cash"]),
                "fees": str(m["fees"]),
                "net_after_fees": str(total),
                "pay": str(-total) if total < 0 else "0",
                "receive": str(total) if total > 0 else "0",
            }
        )
    return {"rows": rows, "members": members}


def margin(store: ItemStore, refdata, member: str | None) -> dict[str, Any]:
    """The latest margin run per member (Query margin pk=member, RUN# items) and the margin calls of
    those runs' days (Query pk=CALL#{date}, prefixed by the member). The margin table has no member
    index: calls are found through the runs' dates."""
    latest = []
    for m in _members(refdata, member):
        runs = MarginRecords(store).runs_of(m)
        if runs:
            latest.append({k: v for k, v in runs[-1].items() if k not in ("pk", "sk", "kind")})
    calls = []
    for day in sorted({r["run_id"][:10] for r in latest if r.get("run_id")}):
        for call in MarginRecords(store).calls_on(day, member):
            calls.append({k: v for k, v in call.items() if k not in ("pk", "sk", "gsi1pk", "gsi1sk", "kind")})
    calls.sort(key=lambda c: (c.get("run_id") or "", c["member_id"]), reverse=True)
    return {"requirements": latest, "margin_calls": calls}


def settlement_instructions(
    store: ItemStore, refdata, member: str | None, settlement_date: str | None
) -> list[dict]:
    """Stored EOD instructions (Query pk=INSTRUCTIONS#date, prefixed by member); without a date, the
    dates of the scope's obligations."""
    if settlement_date:
        dates = [settlement_date]
    else:
        dates = sorted({o["settlement_date"] for o in obligations(store, refdata, member, None)["rows"]})
    rows = []
    for d in dates:
        for item in ObligationRecords(store).instructions(d, member):
            rows.append({k: v for k, v in item.items() if k not in ("pk", "sk", "kind")})
    return rows
