"""Read-side use cases over the stored state: obligations, invariants, margin and end-of-day settlement.

These run per report or per schedule, never per order, so they may scan a table (documented in
docs/data-model.md); everything per member or per date uses a key or the gsi1 index.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from clearing.domain import invariants, margin, netting
from clearing.domain.clearing import ClearedLeg, Position
from clearing.domain.netting import NetObligation
from clearing.domain.refdata import ReferenceData
from clearing.ports import ItemStore, SettlementFileSink
from clearing.repositories.margin import MarginRecords
from clearing.repositories.obligations import ObligationRecords
from clearing.repositories.orders import OrderRecords
from clearing.repositories.positions import PositionRecords
from clearing.repositories.trades import TradeRecords

if TYPE_CHECKING:
    from clearing.services.replay import RetainedLog


def load_obligations(
    store: ItemStore, settlement_date: str | None = None, member: str | None = None
) -> list[NetObligation]:
    return ObligationRecords(store).find(settlement_date, member)


def obligations_report(
    store: ItemStore, settlement_date: str | None = None, member: str | None = None
) -> dict[str, Any]:
    obligations = load_obligations(store, settlement_date, member)
    report = netting.netting_report(
        obligations, date.fromisoformat(settlement_date) if settlement_date else None
    )
    return report.to_dict()


def load_positions(store: ItemStore) -> list[Position]:
    return PositionRecords(store).all()


@dataclass
class VerifyResult:
    checked: dict[str, int] = field(default_factory=dict)
    violations: list[dict[str, str]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)  # one row per check (reconcile.Check)
    reconciled: bool = False  # the retained Kafka log was read (False: the store against itself only)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations and all(c["status"] != "FAIL" for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reconciled_with_log": self.reconciled,
            "checks": self.checks,
            "checked": self.checked,
            "violations": self.violations,
            "seconds": self.seconds,
        }


def verify(
    store: ItemStore,
    log: RetainedLog | None = None,
    max_violations: int = 200,
    *,
    now_ms: int | None = None,
    pending_max_age_s: float | None = None,
    exchange: bool = True,
) -> VerifyResult:
    """Reconcile the retained Kafka log with the store (services/reconcile.py) when `log` is given,
    and check every invariant of the stored state (docs/clearing.md). A Scan per table, never a read
    per order."""
    from clearing.services import reconcile

    started = time.monotonic()
    result = VerifyResult()
    store = store if isinstance(store, ScanOnce) else ScanOnce(store)
    # checkpoints before the Scans (see reconcile.read_checkpoints); a ScanOnce the caller filled
    # earlier (the demo's summary) was filled after the pipeline went idle, which is as good
    if log is not None:
        log = reconcile.once_per_topic(log)  # one partition lookup per topic for the whole verify
    checkpoints = reconcile.read_checkpoints(store, log) if log is not None else None
    trades = TradeRecords(store).all()
    orders = OrderRecords(store).all()
    found: list[invariants.Violation] = []
    rows: list[reconcile.Check] = []
    dead_lettered: set[str] = set()
    if log is not None:
        rec = reconcile.reconcile(
            store,
            log,
            orders=orders,
            trades=trades,
            checkpoints=checkpoints,
            now_ms=now_ms,
            pending_max_age_s=reconcile.DEFAULT_PENDING_MAX_AGE_S
            if pending_max_age_s is None
            else pending_max_age_s,
            exchange=exchange,
        )
        result.reconciled = True
        rows += rec.checks
        found += [invariants.Violation(code, message) for code, message in rec.violations]
        dead_lettered = rec.dead_lettered

    executed = {t["trade_id"] for t in trades if t["sk"] == "EXECUTED"}
    cleared = [t for t in trades if t["sk"] == "CLEARED"]
    legs = [ClearedLeg.from_dict(leg) for t in cleared for leg in t["legs"]]
    positions = {p.key: p for p in load_positions(store)}
    obligations = load_obligations(store)
    states = [o for o in orders if o.get("kind") == "STATE"]
    accepted_new = [
        o
        for o in orders
        if o.get("kind") == "VALIDATION"
        and o.get("decision") == "ACCEPTED"
        and o.get("action") == "NEW"
        and o.get("route", "INTERNAL") == "INTERNAL"
    ]

    def store_check(name: str, expected: int, violations: list[invariants.Violation]) -> None:
        found.extend(violations)
        rows.append(
            reconcile.Check(
                name,
                expected,
                expected - min(len(violations), expected),
                len(violations),
                reconcile.FAIL if violations else reconcile.OK,
            )
        )

    store_check(
        "CCP flat: net quantity and cash sum to zero",
        len(obligations),
        invariants.check_ccp_flat(obligations),
    )
    store_check("two legs per cleared trade", len(cleared), invariants.check_two_legs_per_trade(legs))
    store_check(
        "positions equal the sum of their legs",
        len(positions),
        invariants.check_positions_match_legs(positions, legs),
    )
    expected_obligations = netting.net_obligations(legs)
    by_key = {o.key: o for o in obligations}
    store_check(
        "obligations equal the net of their legs",
        len(set(expected_obligations) | set(by_key)),
        [
            invariants.Violation("OBLIGATION_MISMATCH", f"obligation {key} differs from the net of its legs")
            for key in sorted(set(expected_obligations) | set(by_key))
            if by_key.get(key) != expected_obligations.get(key)
        ],
    )
    store_check(
        "order quantities: filled + resting + cancelled = quantity",
        len(states),
        invariants.check_order_quantities(
            {
                "order_id": s["order_id"],
                "quantity": int(s["quantity"]),
                "filled_qty": int(s["filled_qty"]),
                "resting_qty": int(s["remaining_qty"]),
                "cancelled_qty": int(s["cancelled_qty"]),
            }
            for s in states
        ),
    )
    if log is None:  # with the log, reconcile's row covers it (and names the offsets)
        state_ids = {s["order_id"] for s in states}
        store_check(
            "accepted orders (NEW, INTERNAL) with an order state",
            len(accepted_new),
            [
                invariants.Violation(
                    "ORDER_WITHOUT_STATE", f"accepted order {v['order_id']} never reached the book"
                )
                for v in accepted_new
                if v["order_id"] not in state_ids
            ],
        )
    cleared_ids = {t["trade_id"] for t in cleared}
    store_check(
        "executed trades (store) cleared or dead-lettered",
        len(executed),
        [
            invariants.Violation("TRADE_NOT_CLEARED", f"trade {trade_id} was executed but not cleared")
            for trade_id in sorted(executed - cleared_ids - dead_lettered)
        ],
    )
    store_check(
        "cleared trades with an executed trade",
        len(cleared_ids),
        [
            invariants.Violation(
                "CLEARED_WITHOUT_EXECUTION", f"cleared trade {trade_id} has no executed trade"
            )
            for trade_id in sorted(cleared_ids - executed)
        ],
    )

    result.checks = [r.to_dict() for r in rows]
    result.checked = {
        "trades": len(executed),
        "cleared_trades": len(cleared),
        "dead_lettered_trades": len(dead_lettered & executed),
        "legs": len(legs),
        "positions": len(positions),
        "obligations": len(obligations),
        "orders": len(states),
        "accepted_new_orders": len(accepted_new),
    }
    # a row that fails always has at least one violation; one that is only PENDING has none
    result.violations = [{"code": v.code, "message": v.message} for v in found[:max_violations]]
    if len(found) > max_violations:
        result.violations.append(
            {"code": "TRUNCATED", "message": f"{len(found) - max_violations} more violations"}
        )
    result.seconds = round(time.monotonic() - started, 2)
    return result


def run_margin(
    store: ItemStore, refdata: ReferenceData, run_at: datetime | None = None, write: bool = True
) -> dict[str, Any]:
    """IM by scenario scan + VM against last settlement prices per member; margin calls stored."""
    run_at = run_at or datetime.now(UTC)
    run_id = run_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    requirements = margin.margin_requirements(load_positions(store), refdata)
    calls = [r for r in requirements if r.is_call]
    if write:
        MarginRecords(store).record_run(run_id, requirements)
    return {
        "run_id": run_id,
        "requirements": [r.to_dict() for r in requirements],
        "margin_calls": [r.to_dict() for r in calls],
    }


def settle_eod(
    store: ItemStore, refdata: ReferenceData, settlement_date: str, sink: SettlementFileSink | None = None
) -> dict[str, Any]:
    """Settlement instructions per member for one date: DynamoDB items, and CSV and JSON files
    through the sink (a folder locally, S3 in AWS) when one is given."""
    day = date.fromisoformat(settlement_date)
    rows = netting.settlement_instructions(load_obligations(store, settlement_date), day, refdata.ccp_id)
    ObligationRecords(store).record_instructions(settlement_date, rows)
    plain = [{k: (str(v) if isinstance(v, Decimal | date) else v) for k, v in r.items()} for r in rows]
    files = {}
    if sink is not None:
        files = {
            "json": sink.write(f"settlement-{settlement_date}.json", json.dumps(plain, indent=2).encode()),
            "csv": sink.write(f"settlement-{settlement_date}.csv", instructions_csv(plain).encode()),
        }
    return {"settlement_date": settlement_date, "instructions": len(rows), "files": files, "rows": plain}


def instructions_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return buf.getvalue()


class ScanOnce:
    """The same store, but each table is scanned at most once: for a run of reports over one state
    (the demo's summary, verify, obligations, margin) instead of one full scan per report."""

    def __init__(self, store: ItemStore):
        self.store = store
        self._scans: dict[str, list[dict[str, Any]]] = {}

    def scan(self, table: str) -> list[dict[str, Any]]:
        if table not in self._scans:
            self._scans[table] = self.store.scan(table)
        return list(self._scans[table])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)
