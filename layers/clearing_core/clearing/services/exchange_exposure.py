"""The exposure release of exchange-routed orders, from the exchange's answers (`exchange.executions`).

validate_orders reserves pre-trade exposure for every accepted NEW, whatever its route. An INTERNAL
order's exposure comes back through orders.events (`ValidateOrders.release_partition`); an order routed
to the exchange never reaches our book, so its exposure comes back here, from the ExecutionReports the
FIX proxy publishes on exchange.executions, by the same reserve-price rule (exposure = reserve price x
open quantity):

- a fill (exec_type TRADE, FILL, PARTIAL_FILL) releases reserve x last_qty (at most the open quantity);
- CANCELED, EXPIRED, DONE_FOR_DAY, and REJECTED of the NEW, release the open quantity;
- REPLACED sets the order's exposure to the REPLACE's reserve (its validation record) x the new open
  quantity (leaves_qty); a REJECTED CANCEL / REPLACE request leaves the order as it was.

What an order still holds (open quantity, reserve) is kept per order in `(EXPOSURE#{member},
XO#{client_order_id of its NEW})`, first seeded from the NEW's validation record: a release never takes
back more than the order holds (an answer to a CANCEL of an order the exchange already filled releases
nothing), and an ExecID seen before (a PossDup resend) is skipped.

Exactly once, deterministically: the member's EXCHANGE item keeps, per exchange.executions partition,
the highest offset it includes (deltas at or below it are not applied again) and is written
conditionally on its version (a member's orders are spread over the partitions of their symbols, so
other partitions' invocations write it too: on a conflict it is read again and the same deltas applied
again); each order item keeps the offset of the last answer applied to it (an order's answers are all
in its symbol's partition), and is written after the EXCHANGE item, so that a redelivery after a crash
recomputes the same deltas from the same order states; the checkpoint comes last.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clearing.messages import EXCHANGE_MESSAGE, ExchangeMessage, MessageError, parse_record
from clearing.ports import (
    Item,
    ItemStore,
    KafkaRecord,
    OutboundMessage,
    Publisher,
    ReferenceDataSource,
    StaleCheckpoint,
)
from clearing.repositories.orders import EXCHANGE, OrderRecords
from clearing.repositories.state import ExposureLedger
from clearing.services.batch import BatchReport, Checkpoints, bounded_dead_letter
from clearing.topics import ORDERS_DEADLETTER

STAGE = "release_exchange_exposure"
MAX_EXECUTION_BYTES = 64 * 1024  # an ExecutionReport with every FIX tag is ~1-2 KB
MALFORMED_EXECUTION = "MALFORMED_EXECUTION"
UNKNOWN_EXCHANGE_ORDER = "UNKNOWN_EXCHANGE_ORDER"
SEEN_EXEC_IDS = 32  # ExecIDs kept per order to recognise a resent answer
CONFLICT_RETRIES = 20

# exec_type as the proxy names it (clearing_fix.messages.EXEC_TYPE_NAMES), the FIX 4.2 names and the
# raw codes of those it does not name
_FILL = frozenset(("TRADE", "FILL", "PARTIAL_FILL", "F", "1", "2"))
_CLOSE = frozenset(("CANCELED", "EXPIRED", "DONE_FOR_DAY", "4", "C", "3"))
_REJECTED = frozenset(("REJECTED", "8"))
_REPLACED = frozenset(("REPLACED", "5"))


@dataclass(frozen=True, slots=True)
class Execution:
    """The part of an ExecutionReport the release reads."""

    member_id: str
    client_order_id: str  # of the request the report answers (NEW, CANCEL or REPLACE)
    orig_client_order_id: str | None  # of the order a CANCEL / REPLACE acts on (its NEW)
    exec_type: str
    exec_id: str | None
    last_qty: int
    leaves_qty: int | None
    cum_qty: int


@dataclass(frozen=True, slots=True)
class Skip:
    """A message that has no exposure effect, and why."""

    reason: str


def _split(cl_ord_id: str | None) -> tuple[str, str] | None:
    """(member, client order id) of a ClOrdID we sent (`member:client_order_id`), else None."""
    if not cl_ord_id or ":" not in cl_ord_id:
        return None
    member_id, clordid = cl_ord_id.split(":", 1)
    return (member_id, clordid) if member_id and clordid else None


def read_execution(value: bytes | None) -> Execution | Skip | str:
    """The ExecutionReport of an exchange.executions record, a Skip (another message type, an
    exec_type without exposure effect) or a text saying why it cannot be read (dead-lettered)."""
    try:
        msg: ExchangeMessage = parse_record(EXCHANGE_MESSAGE, value, MAX_EXECUTION_BYTES)
    except MessageError as exc:
        return str(exc)
    if msg["msg_type"] != "ExecutionReport":
        return Skip(f"{msg['msg_type']} (not an ExecutionReport)")
    exec_type = msg.get("exec_type")
    if not exec_type:
        return "ExecutionReport without exec_type"
    if exec_type not in _FILL and exec_type not in _CLOSE and exec_type not in _REJECTED | _REPLACED:
        return Skip(f"exec_type {exec_type} (no exposure effect)")
    ids = _split(msg.get("cl_ord_id"))
    if ids is None:
        return f"cl_ord_id {msg.get('cl_ord_id')!r} is not member:client_order_id"
    orig = _split(msg.get("orig_cl_ord_id"))
    last_qty, leaves, cum = msg.get("last_qty"), msg.get("leaves_qty"), msg.get("cum_qty")
    if exec_type in _FILL and (last_qty is None or last_qty <= 0):
        return f"a fill (exec_type {exec_type}) without a positive last_qty"
    if any(q is not None and q < 0 for q in (last_qty, leaves, cum)):
        return "negative quantity"
    return Execution(
        member_id=ids[0],
        client_order_id=ids[1],
        orig_client_order_id=orig[1] if orig and orig[0] == ids[0] else None,
        exec_type=exec_type,
        exec_id=msg.get("exec_id"),
        last_qty=last_qty or 0,
        leaves_qty=leaves,
        cum_qty=cum or 0,
    )


class ExchangeExposureRelease:
    """Releases exchange-routed orders' exposure, one partition of exchange.executions at a time."""

    def __init__(
        self,
        store: ItemStore,
        publisher: Publisher,
        refdata: ReferenceDataSource,
        orders: OrderRecords,
        writer: str,
    ):
        self.store = store
        self.publisher = publisher
        self.refdata = refdata
        self.orders = orders
        self.exposure = ExposureLedger(store, writer)
        self.checkpoints = Checkpoints(store)

    def release_partition(self, records: list[KafkaRecord]) -> BatchReport:
        report = BatchReport(consumed=len(records))
        topic, partition = records[0].topic, records[0].partition
        decoded = [(r, read_execution(r.value)) for r in records]
        executions = [(r, d) for r, d in decoded if type(d) is Execution]
        # the validation records of the requests answered and of the orders they act on: one read
        wanted = {(e.member_id, e.client_order_id) for _, e in executions}
        wanted |= {(e.member_id, e.orig_client_order_id) for _, e in executions if e.orig_client_order_id}
        decisions = self.orders.decisions_of(wanted) if wanted else {}
        # an amend answered without OrigClOrdID: its order's NEW (named by the amend's order_id), in a
        # second read only when some are missing
        more = set()
        for _, e in executions:
            v = decisions.get((e.member_id, e.client_order_id))
            if v is not None and v.get("action") != "NEW":
                order = _split(v.get("order_id"))
                if order and order not in decisions:
                    more.add(order)
        if more:
            decisions.update(self.orders.decisions_of(more))

        resolved: dict[int, tuple[Execution, Item, str] | str] = {}  # offset -> (exec, request, order)
        for r, e in executions:
            resolved[r.offset] = self._resolve(e, decisions)
        order_keys = {
            ExposureLedger.exchange_order_key(x[0].member_id, x[2])
            for x in resolved.values()
            if type(x) is tuple
        }
        member_keys = {
            ExposureLedger.exchange_key(x[0].member_id) for x in resolved.values() if type(x) is tuple
        }
        fresh, ck_offset, version, _, items = self.checkpoints.unapplied_with(
            STAGE, records, report, [*order_keys, *member_keys]
        )
        if not fresh:
            return report

        refdata = self.refdata.current()
        states: dict[tuple[str, str], dict[str, Any]] = {}
        touched: set[tuple[str, str]] = set()
        deltas: dict[str, list[tuple[int, Decimal]]] = {}
        dead_letters: list[OutboundMessage] = []

        def dead_letter(record: KafkaRecord, reason: str, problem: str) -> None:
            dead_letters.append(bounded_dead_letter(ORDERS_DEADLETTER, record, reason, problem))
            report.rejected += 1
            report.rejected_by_reason[reason] += 1

        for r, d in decoded:
            if r.offset <= ck_offset:
                continue
            if type(d) is str:
                dead_letter(r, MALFORMED_EXECUTION, d)
                continue
            if type(d) is Skip:
                report.skipped += 1
                report.counters["skipped_no_exposure_effect"] += 1
                continue
            x = resolved[r.offset]
            if isinstance(x, str):
                dead_letter(r, UNKNOWN_EXCHANGE_ORDER, x)
                continue
            e, request, order_clordid = x
            key = (e.member_id, order_clordid)
            state = states.get(key)
            if state is None:
                stored = items.get(ExposureLedger.exchange_order_key(*key))
                state = states[key] = dict(stored) if stored else self._seed(key, decisions)
            instrument = refdata.instruments.get(state["symbol"])
            if instrument is None:
                dead_letter(r, UNKNOWN_EXCHANGE_ORDER, f"symbol {state['symbol']} is not listed")
                continue
            if r.offset <= int(state.get("applied", -1)) or (e.exec_id and e.exec_id in state["exec_ids"]):
                report.skipped += 1  # applied by an earlier attempt, or a resent answer
                report.counters["skipped_already_applied"] += 1
                continue
            delta = _apply(e, request, state, instrument)
            state["applied"] = r.offset
            if e.exec_id:
                state["exec_ids"] = [*state["exec_ids"], e.exec_id][-SEEN_EXEC_IDS:]
            touched.add(key)
            if delta:
                deltas.setdefault(e.member_id, []).append((r.offset, delta))
                report.counters["exposure_changes"] += 1
            report.accepted += 1

        for member_id, member_deltas in deltas.items():
            self._save_member(
                member_id, items.get(ExposureLedger.exchange_key(member_id)), partition, member_deltas
            )
        written = self.exposure.save_exchange_orders({k: _order_item(states[k]) for k in touched})
        self.publisher.publish(dead_letters)
        report.counters["dead_lettered"] += len(dead_letters)
        self.checkpoints.advance(
            STAGE, topic, partition, fresh[-1].offset, version, written_by=self.exposure.writer
        )
        report.counters["items_written"] += written + len(deltas) + 1
        return report

    @staticmethod
    def _resolve(e: Execution, decisions: dict[tuple[str, str], Item]) -> tuple[Execution, Item, str] | str:
        """(the report, the validation record of the request it answers, client order id of the
        order's NEW), or why the report names no exchange order of ours."""
        v = decisions.get((e.member_id, e.client_order_id))
        if v is None:
            return f"no validation record of {e.member_id}:{e.client_order_id}"
        if v.get("decision") != "ACCEPTED" or v.get("route") != EXCHANGE:
            return f"{e.member_id}:{e.client_order_id} is not an accepted exchange-routed order"
        if v.get("action") == "NEW":
            return e, v, e.client_order_id
        order = _split(v.get("order_id"))
        if order is None or order[0] != e.member_id or order not in decisions:
            return f"the order {v.get('order_id')!r} of {e.member_id}:{e.client_order_id} has no validation record"
        return e, v, order[1]

    @staticmethod
    def _seed(key: tuple[str, str], decisions: dict[tuple[str, str], Item]) -> dict[str, Any]:
        """What an order holds before any answer: what validation reserved for its NEW."""
        new = decisions[key]  # _resolve made sure it was read
        return {
            "symbol": new["symbol"],
            "open_qty": int(new["quantity"]),
            "reserve_ticks": int(new["reserve_ticks"]),
            "applied": -1,
            "exec_ids": [],
        }

    def _save_member(
        self, member_id: str, item: Item | None, partition: int, deltas: list[tuple[int, Decimal]]
    ) -> None:
        for _ in range(CONFLICT_RETRIES):
            try:
                self.exposure.save_exchange(member_id, item, partition, deltas)
                return
            except StaleCheckpoint:  # another partition's invocation wrote it: read it again
                item = self.exposure.read_exchange(member_id)
        raise StaleCheckpoint(
            f"EXPOSURE#{member_id} EXCHANGE: still conflicting after {CONFLICT_RETRIES} tries"
        )


def _apply(e: Execution, request: Item, state: dict[str, Any], instrument: Any) -> Decimal:
    """Apply one report to the order's `state`; returns the change of the member's exposure."""
    open_qty, reserve = int(state["open_qty"]), int(state["reserve_ticks"])
    price = instrument.to_price(reserve)
    t = e.exec_type
    if t in _FILL:
        qty = min(e.last_qty, open_qty)
        state["open_qty"] = open_qty - qty
        return Decimal(-(price * qty))
    if t in _CLOSE or (t in _REJECTED and request.get("action") == "NEW"):
        state["open_qty"] = 0
        return Decimal(-(price * open_qty))
    if t in _REPLACED and request.get("action") == "REPLACE" and open_qty > 0:
        new_reserve = int(request["reserve_ticks"])
        new_open = e.leaves_qty if e.leaves_qty is not None else max(int(request["quantity"]) - e.cum_qty, 0)
        state["open_qty"], state["reserve_ticks"] = new_open, new_reserve
        return Decimal(instrument.to_price(new_reserve) * new_open - price * open_qty)
    return Decimal(0)  # a rejected amend, a replace of a closed order: the order stays as it was


def _order_item(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "symbol": state["symbol"],
        "open_qty": int(state["open_qty"]),
        "reserve_ticks": int(state["reserve_ticks"]),
        "applied": int(state["applied"]),
        "exec_ids": list(state["exec_ids"]),
    }
