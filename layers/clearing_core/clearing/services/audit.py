"""Audit export: everything that happened for one member on one date, as stored, with its provenance.

Files (each as JSON Lines and CSV) and what goes in them, all read by key (no Scan):
- orders: the member's accepted requests (NEW, CANCEL, REPLACE validation items) sent that day, and
  the state items of the orders placed that day (Query orders pk=member);
- rejections: the member's rejections whose original message was sent that day: validation items
  (Query orders pk=member) and rejections without a usable order id (Query orders gsi1 REJ#member);
  a rejection whose original has no sent_at (not JSON) cannot be dated: counted in the manifest;
- trades: executed trades of that trade date where the member is buyer or seller, with cleared status;
- legs: the member's cleared legs of those trades (novation: member vs CCP);
- obligations: the member's net obligations for the settlement dates of those legs (Query gsi1);
- margin: margin requirement runs of that day, margin_calls: margin calls of that day (Query pk / gsi1).
Every stored record keeps its provenance fields: `src` / `last_src` / `source` (topic/partition/offset)
and `written_by` (function name:version). manifest.json holds record counts and a SHA-256 per file.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from clearing.ports import ItemStore
from clearing.repositories.margin import MarginRecords
from clearing.repositories.obligations import ObligationRecords
from clearing.repositories.orders import OrderRecords
from clearing.repositories.trades import TradeRecords
from clearing.services.queries import member_order_items, member_symbols, normalise_time, original_message

KINDS = ("orders", "rejections", "trades", "legs", "obligations", "margin", "margin_calls")


def _day_of(time_text: str | None) -> str | None:
    normalised = normalise_time(time_text)
    return normalised[:10] if normalised else None


def member_day_records(
    store: ItemStore, member: str, day: str
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int]]:
    """({kind: records}, notes) for one member and one date (YYYY-MM-DD)."""
    notes = {"undated_rejections": 0}
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}

    validations, states = member_order_items(store, member)
    order_days: dict[str, str | None] = {}
    for cid, v in validations.items():
        if v.get("decision") == "ACCEPTED":
            order_days[cid] = _day_of(v.get("sent_at"))
            if order_days[cid] == day:
                records["orders"].append(v)
        else:
            _add_rejection(v, day, records, notes)
    for cid, s in states.items():
        if order_days.get(cid) == day:
            records["orders"].append(s)
    for rej in OrderRecords(store).rejections_of(member):
        # validation-keyed rejections are in the index too: already taken from the member's pk
        if rej.get("member_id") == member and rej.get("kind") == "REJECTION":
            _add_rejection(rej, day, records, notes)

    cleared_ids = []
    trades = TradeRecords(store)
    for symbol in sorted(member_symbols(store, member)):
        executed = trades.executed_in(symbol, day)
        cleared = {i["trade_id"]: i for i in trades.cleared_in(symbol, day)}
        for t in executed:
            if t.get("sk") != "EXECUTED" or member not in (t["buy"]["member_id"], t["sell"]["member_id"]):
                continue
            if t.get("trade_date") != day:
                continue
            c = cleared.get(t["trade_id"])
            records["trades"].append(
                {
                    **t,
                    "cleared": c is not None,
                    "cleared_from": (c or {}).get("src"),
                    "cleared_by": (c or {}).get("written_by"),
                }
            )
            if c is not None:
                cleared_ids.append(t["trade_id"])
                for leg in c["legs"]:
                    if leg["member_id"] == member:
                        records["legs"].append(
                            {
                                **leg,
                                "src": c.get("src"),
                                "written_by": c.get("written_by"),
                                "cleared_at": c.get("cleared_at"),
                            }
                        )

    for settlement_date in sorted({leg["settlement_date"] for leg in records["legs"]}):
        for o in ObligationRecords(store).items(settlement_date, member):
            if o.get("member_id") == member:
                records["obligations"].append(o)

    margin = MarginRecords(store)
    records["margin"] = [m for m in margin.runs_of(member, day) if m.get("member_id", member) == member]
    records["margin_calls"] = margin.calls_of(member, day)
    for kind in KINDS:
        records[kind].sort(
            key=lambda i: (str(i.get("pk", "")), str(i.get("sk", "")), str(i.get("leg_id", "")))
        )
    return records, notes


def _add_rejection(item: dict[str, Any], day: str, records: dict[str, Any], notes: dict[str, Any]) -> None:
    original = original_message(item)
    rejected_day = _day_of((original or {}).get("sent_at"))
    if rejected_day is None:
        notes["undated_rejections"] += 1
    elif rejected_day == day:
        records["rejections"].append({**item, "original": original})


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(_plain(r), sort_keys=True, separators=(",", ":")) + "\n" for r in rows).encode()


def to_csv(rows: list[dict[str, Any]]) -> bytes:
    """One column per attribute (union over rows, sorted); nested values as JSON text."""
    columns = sorted({k for r in rows for k in r})
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        cells = []
        for c in columns:
            v = _plain(r.get(c))
            cells.append(
                json.dumps(v, sort_keys=True) if isinstance(v, dict | list) else ("" if v is None else v)
            )
        writer.writerow(cells)
    return buf.getvalue().encode()


def export_member_day(
    store: ItemStore, member: str, day: str, out_dir: Path, now: datetime | None = None
) -> dict[str, Any]:
    """Write <out_dir>/<kind>.jsonl and .csv per kind plus manifest.json; returns the manifest."""
    records, notes = member_day_records(store, member, day)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    for kind in KINDS:
        for ext, encode in (("jsonl", to_jsonl), ("csv", to_csv)):
            data = encode(records[kind])
            name = f"{kind}.{ext}"
            (out_dir / name).write_bytes(data)
            files[name] = {
                "records": len(records[kind]),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    manifest = {
        "member_id": member,
        "date": day,
        "generated_at": (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "record_counts": {k: len(v) for k, v in records.items()},
        "notes": notes,
        "files": files,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest
