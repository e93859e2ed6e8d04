"""`clearing verify`'s reconciliation of the retained Kafka log with the store.

The store checking itself cannot see a record that never reached it. This module walks the chain
offsets -> decisions -> order states -> trades -> legs -> exchange answers from the log's side and
from the store's side, and reports one row per check (expected, found, missing, status):

- every retained orders.new offset has exactly one decision (validation or rejection item whose
  `src` names that position: accepted, rejected with a reason, or a duplicate client order id,
  which validate_orders stores as a position-keyed rejection), and it is the decision of that record
  (same member and client order id);
- the log and the store cover each other: no decision and no checkpoint beyond a partition's end
  (a reset or replaced broker), no empty store behind a non-empty log;
- every accepted decision was published (orders.accepted / orders.exchange carry its source);
- every accepted NEW order routed INTERNAL has an order state (it reached the book);
- every trade on trades.executed is cleared with two legs or dead-lettered with a reason, and every
  executed trade in the store is on trades.executed;
- every trade report (trade on trades.executed) and every exchange-routed order (orders.exchange)
  has an answer on exchange.executions, or is pending with its age; pending older than
  `pending_max_age_s` fails (an answer that never came is a loss nobody else reports).

Cost: one sequential read of each topic's retained records, one Scan of the orders and trades tables
(shared with the store invariants through reports.ScanOnce) and one BatchGetItem for the checkpoints.
Nothing is read per order.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from hashlib import sha256
from typing import TYPE_CHECKING, Any, TypeAlias

import orjson

from clearing.ports import ItemStore, KafkaRecord
from clearing.repositories.orders import OrderRecords
from clearing.repositories.state import CheckpointRecords
from clearing.repositories.trades import TradeRecords

if TYPE_CHECKING:
    from clearing.services.replay import RetainedLog
from clearing.topics import (
    EXCHANGE_EXECUTIONS,
    ORDERS_ACCEPTED,
    ORDERS_EVENTS,
    ORDERS_EXCHANGE,
    ORDERS_NEW,
    TRADES_DEADLETTER,
    TRADES_EXECUTED,
)

OK, FAIL, PENDING, SKIPPED = "OK", "FAIL", "PENDING", "SKIPPED"

# (stage, topic) of every per-partition checkpoint a stream stage writes
CHECKPOINTED = (
    ("validate_orders", ORDERS_NEW),
    ("release_exposure", ORDERS_EVENTS),
    ("release_exchange_exposure", EXCHANGE_EXECUTIONS),
    ("match_orders", ORDERS_ACCEPTED),
    ("clear_trades", TRADES_EXECUTED),
)
# checkpoints are looked up for at least this many partitions per topic, so that a checkpoint of a
# partition the broker no longer has is seen too (one BatchGetItem of a few dozen keys)
MIN_PARTITIONS_PROBED = 16

DEFAULT_PENDING_MAX_AGE_S = 300.0
# The local event-source mappings publish every batch whose retries are exhausted to this topic (the
# template's on-failure destination is an SQS queue in AWS, which verify does not read): verify names
# the offsets it finds there, so "no decision" says why. They still fail: the brief wants a decision.
ONFAILURE_TOPIC = "esm.onfailure"
PER_CODE = 50  # violation messages kept per code (the rows carry the full counts)


@dataclass
class Check:
    """One row of verify's report."""

    name: str
    expected: int
    found: int
    missing: int
    status: str
    detail: str = ""
    pending: int = 0
    oldest_pending_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "expected": self.expected,
            "found": self.found,
            "missing": self.missing,
            "status": self.status,
            "detail": self.detail,
            "pending": self.pending,
            "oldest_pending_s": self.oldest_pending_s,
        }


@dataclass
class Reconciliation:
    checks: list[Check] = field(default_factory=list)
    violations: list[tuple[str, str]] = field(default_factory=list)  # (code, message)
    dead_lettered: set[str] = field(default_factory=set)  # trade ids (the store checks exempt them)
    log_bounds: dict[str, dict[int, tuple[int, int]]] = field(default_factory=dict)

    _per_code: dict[str, int] = field(default_factory=dict)

    def add(self, code: str, message: str) -> None:
        """Up to PER_CODE messages per code are kept; `finish()` says how many more there were."""
        n = self._per_code[code] = self._per_code.get(code, 0) + 1
        if n <= PER_CODE:
            self.violations.append((code, message))

    def finish(self) -> None:
        for code, n in self._per_code.items():
            if n > PER_CODE:
                self.violations.append((code, f"... and {n - PER_CODE} more {code}"))


def _loads(value: bytes | None) -> Any:
    try:
        return orjson.loads(value) if value else None
    except orjson.JSONDecodeError:
        return None


def _parse_src(src: Any) -> tuple[str, int, int] | None:
    """`topic/partition/offset` -> (topic, partition, offset)."""
    if not isinstance(src, str):
        return None
    try:
        topic, partition, offset = src.rsplit("/", 2)
        return topic, int(partition), int(offset)
    except ValueError:
        return None


Bounds: TypeAlias = "dict[str, dict[int, tuple[int, int]]]"  # topic -> partition -> [begin, end)
CheckpointOffsets: TypeAlias = "dict[tuple[str, str, int], int]"  # (stage, topic, partition) -> offset


def _read(log: RetainedLog, topic: str, bounds: dict[int, tuple[int, int]]) -> Iterator[KafkaRecord]:
    for partition, (begin, end) in sorted(bounds.items()):
        if end > begin:
            yield from log.read(topic, partition, begin, end)


class _OnceLog:
    """The RetainedLog, asking each topic's partitions once per verify: the Kafka adapter waits up to
    5 s for a topic it does not know, and a reset broker may have none of them."""

    def __init__(self, log: RetainedLog) -> None:
        self.log = log
        self._partitions: dict[str, list[int]] = {}

    def partitions(self, topic: str) -> list[int]:
        if topic not in self._partitions:
            self._partitions[topic] = self.log.partitions(topic)
        return self._partitions[topic]

    def partition_for(self, topic: str, key: bytes) -> int:
        return self.log.partition_for(topic, key)

    def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        return _bounds(self.log, topic) if self.partitions(topic) else {}

    def read(
        self, topic: str, partition: int, start: int = 0, end: int | None = None
    ) -> Iterator[KafkaRecord]:
        return self.log.read(topic, partition, start, end)


def once_per_topic(log: RetainedLog) -> _OnceLog:
    return log if isinstance(log, _OnceLog) else _OnceLog(log)


def _bounds(log: RetainedLog, topic: str) -> dict[int, tuple[int, int]]:
    bounds: Callable[[str], dict[int, tuple[int, int]]] | None = getattr(log, "bounds", None)
    if bounds is not None:
        return bounds(topic)
    # a RetainedLog without bounds(): read everything once to find them (tests' fakes)
    out: dict[int, tuple[int, int]] = {}
    for p in log.partitions(topic):
        offsets = [r.offset for r in log.read(topic, p)]
        out[p] = (offsets[0], offsets[-1] + 1) if offsets else (0, 0)
    return out


_CLIPPED = re.compile(r"^(.*)\.\.\. \((\d+) characters\)$", re.DOTALL)


def _same(stored: Any, sent: Any) -> bool:
    """A stored identity field matches what the record says. Stores keep ids read from invalid input
    clipped (domain.bounded.clip: the start and "... (N characters)")."""
    if not isinstance(stored, str) or not isinstance(sent, str) or not stored or not sent:
        return True
    if sent == stored or sent.startswith(stored):
        return True
    clipped = _CLIPPED.match(stored)
    return clipped is not None and sent.startswith(clipped.group(1)) and len(sent) == int(clipped.group(2))


def _same_payload(decision: dict[str, Any], value: bytes | None) -> bool:
    """Rejections keep the SHA-256 of the whole payload: the strongest "same record" check there is."""
    digest = decision.get("original_sha256")
    return not isinstance(digest, str) or sha256(value or b"").hexdigest() == digest


def _status(missing: int) -> str:
    return FAIL if missing else OK


def _examples(items: Iterable[Any], n: int = 5) -> str:
    items = list(items)
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (f" (+{len(items) - n} more)" if len(items) > n else "")


def reconcile(
    store: ItemStore,
    log: RetainedLog,
    *,
    orders: list[dict[str, Any]] | None = None,
    trades: list[dict[str, Any]] | None = None,
    checkpoints: dict[tuple[str, str, int], int] | None = None,
    now_ms: int | None = None,
    pending_max_age_s: float = DEFAULT_PENDING_MAX_AGE_S,
    exchange: bool = True,
) -> Reconciliation:
    """Reconcile the retained log (a RetainedLog with `bounds`) with the store; see the module doc."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    log = once_per_topic(log)
    checkpoints = read_checkpoints(store, log) if checkpoints is None else checkpoints
    orders = OrderRecords(store).all() if orders is None else orders
    trades = TradeRecords(store).all() if trades is None else trades
    out = Reconciliation()
    topics = (
        ORDERS_NEW,
        ORDERS_ACCEPTED,
        ORDERS_EVENTS,
        ORDERS_EXCHANGE,
        TRADES_EXECUTED,
        TRADES_DEADLETTER,
        EXCHANGE_EXECUTIONS,
    )
    bounds = out.log_bounds = {t: _bounds(log, t) for t in topics}
    # read only when some offset has no decision: on MSK the topic does not exist (a 5 s metadata wait)
    _decisions(log, orders, bounds, checkpoints, out, lambda: _onfailure(log))
    _published(log, orders, bounds, out)
    _order_states(orders, out)
    trade_requests = _trades(log, trades, bounds, checkpoints, out)
    if exchange:
        _exchange(log, bounds, trade_requests, now_ms, pending_max_age_s, out)
    else:
        out.checks.append(
            Check("exchange answers (trade reports, routed orders)", 0, 0, 0, SKIPPED, "--no-exchange")
        )
    out.finish()
    return out


# ---------------------------------------------------------------- orders.new -> decisions


def read_checkpoints(store: ItemStore, log: RetainedLog) -> dict[tuple[str, str, int], int]:
    """(stage, topic, partition) -> checkpointed offset, in one BatchGetItem.

    Read before the tables are scanned: a checkpoint is written after its decisions, so an offset at
    or below a checkpoint read first has its decision in the scan; one without is lost, not in flight."""
    log = once_per_topic(log)
    wanted = []
    for stage, topic in CHECKPOINTED:
        n = max(len(log.partitions(topic)), len(log.partitions(ORDERS_NEW)), MIN_PARTITIONS_PROBED)
        wanted += [(stage, topic, p) for p in range(n)]
    return CheckpointRecords(store).offsets(wanted)


def _onfailure(log: RetainedLog) -> list[tuple[str, int, int, int]]:
    """(topic, partition, first offset, last offset) of every batch an event-source mapping gave up on."""
    out = []
    for r in _read(log, ONFAILURE_TOPIC, _bounds(log, ONFAILURE_TOPIC)):
        body = _loads(r.value)
        info = body.get("KafkaBatchInfo") if isinstance(body, dict) else None
        if isinstance(info, dict):
            try:
                out.append(
                    (info["topic"], int(info["partition"]), int(info["firstOffset"]), int(info["lastOffset"]))
                )
            except (KeyError, TypeError, ValueError):
                continue
    return out


def _in_failed_batch(
    failed: list[tuple[str, int, int, int]], topic: str, partition: int, offset: int
) -> bool:
    return any(t == topic and p == partition and a <= offset <= b for t, p, a, b in failed)


def _decisions(
    log: RetainedLog,
    orders: list[dict[str, Any]],
    bounds: Bounds,
    ck_of: CheckpointOffsets,
    out: Reconciliation,
    failed_batches: Callable[[], list[tuple[str, int, int, int]]] = list,
) -> None:
    new_bounds = bounds[ORDERS_NEW]
    decisions: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    other_src = 0
    for item in orders:
        if item.get("kind") not in ("VALIDATION", "REJECTION"):
            continue
        src = _parse_src(item.get("src"))
        if src is None or src[0] != ORDERS_NEW:
            other_src += 1
            out.add(
                "DECISION_WITHOUT_SOURCE", f"decision {item['pk']}/{item['sk']} names no orders.new position"
            )
            continue
        decisions[(src[1], src[2])].append(item)

    # log -> store: every retained offset has exactly one decision, and it is this record's
    retained = 0
    seen: set[tuple[int, int]] = set()
    undecided: list[str] = []
    lagging = 0
    multiple: list[str] = []
    mismatched: list[str] = []
    for r in _read(log, ORDERS_NEW, new_bounds):
        retained += 1
        seen.add((r.partition, r.offset))
        found = decisions.get((r.partition, r.offset))
        if not found:
            undecided.append(r.position)
            if r.offset > ck_of.get(("validate_orders", ORDERS_NEW, r.partition), -1):
                lagging += 1
            continue
        if len(found) > 1:
            multiple.append(r.position)
            continue
        d = found[0]
        if not _same_payload(d, r.value):
            mismatched.append(r.position)
            continue
        body = _loads(r.value)
        if isinstance(body, dict) and not (
            _same(d.get("member_id"), body.get("member_id"))
            and _same(d.get("client_order_id"), body.get("client_order_id"))
        ):
            mismatched.append(r.position)
    decided = retained - len(undecided) - len(multiple) - len(mismatched)
    detail = []
    if undecided:
        failed = failed_batches()
        gave_up = {p for p in undecided if _in_failed_batch(failed, ORDERS_NEW, *_pos(p))}
        detail.append(
            f"no decision: {_examples(undecided)}"
            + (f"; {lagging} above validate_orders' checkpoint (not processed yet)" if lagging else "")
            + (
                f"; {len(gave_up)} in batches the event-source mapping gave up on ({ONFAILURE_TOPIC})"
                if gave_up
                else ""
            )
        )
        for position in undecided:
            out.add(
                "OFFSET_WITHOUT_DECISION",
                f"{position} has no decision"
                + (
                    f" (its batch went to {ONFAILURE_TOPIC}: retries exhausted)"
                    if position in gave_up
                    else ""
                ),
            )
    if multiple:
        detail.append(f"several decisions: {_examples(multiple)}")
        for position in multiple:
            out.add(
                "OFFSET_WITH_SEVERAL_DECISIONS", f"{position} has {len(decisions[_pos(position)])} decisions"
            )
    if mismatched:
        detail.append(f"decision of another record: {_examples(mismatched)}")
        for position in mismatched:
            out.add(
                "DECISION_OF_ANOTHER_RECORD",
                f"{position}: the stored decision names another member or client order id "
                "(the broker was reset and refilled?)",
            )
    out.checks.append(
        Check(
            "orders.new offsets with exactly one decision",
            retained,
            decided,
            retained - decided,
            _status(retained - decided),
            "; ".join(detail),
        )
    )

    # store -> log: no decision beyond what the log holds (a reset broker), expired ones are fine
    beyond: list[str] = []
    expired = 0
    for (p, o), items in decisions.items():
        b = new_bounds.get(p)
        if b is None or o >= b[1]:
            beyond.append(f"{ORDERS_NEW}/{p}/{o}")
        elif o < b[0]:
            expired += len(items)
        elif (p, o) not in seen:
            beyond.append(f"{ORDERS_NEW}/{p}/{o}")  # inside the range but not a record: not ours
    total_decisions = sum(len(v) for v in decisions.values()) + other_src
    beyond.sort(key=_pos)
    for position in beyond:
        out.add(
            "DECISION_BEYOND_LOG", f"decision for {position}, which the log does not hold (broker reset?)"
        )
    out.checks.append(
        Check(
            "decisions whose orders.new offset the log holds",
            total_decisions,
            total_decisions - len(beyond) - other_src,
            len(beyond) + other_src,
            _status(len(beyond) + other_src),
            "; ".join(
                x
                for x in (
                    f"beyond the log: {_examples(beyond)} (reset broker?)" if beyond else "",
                    f"{expired} for offsets past retention (not checkable)" if expired else "",
                    f"{other_src} without an orders.new position" if other_src else "",
                )
                if x
            ),
        )
    )

    # checkpoints within the log
    past_end = []
    for (stage, topic, p), offset in sorted(ck_of.items()):
        b = bounds[topic].get(p)
        if b is None or offset >= b[1]:
            end = "no such partition" if b is None else f"end {b[1]}"
            past_end.append(f"{stage} {topic}/{p} at {offset} ({end})")
    for text in past_end:
        out.add("CHECKPOINT_BEYOND_LOG", f"checkpoint {text}: the log is behind the store (broker reset?)")
    out.checks.append(
        Check(
            "checkpoints within the log's end offsets",
            len(ck_of),
            len(ck_of) - len(past_end),
            len(past_end),
            _status(len(past_end)),
            _examples(past_end, 3),
        )
    )

    # an empty store behind a non-empty log
    empty = retained > 0 and total_decisions == 0 and not ck_of
    if empty:
        out.add(
            "EMPTY_STORE",
            f"the store holds no decision and no checkpoint while orders.new retains {retained} records "
            "(a reset store, or the wrong endpoint / table prefix)",
        )
    out.checks.append(
        Check(
            "store not empty behind a non-empty log",
            1 if retained else 0,
            0 if empty else (1 if retained else 0),
            1 if empty else 0,
            FAIL if empty else OK,
            f"orders.new retains {retained}, store holds {total_decisions} decisions, {len(ck_of)} checkpoints",
        )
    )


def _pos(position: str) -> tuple[int, int]:
    _, p, o = position.rsplit("/", 2)
    return int(p), int(o)


# ---------------------------------------------------------------- decisions -> orders.accepted


def _published(log: RetainedLog, orders: list[dict[str, Any]], bounds: Bounds, out: Reconciliation) -> None:
    """Every accepted decision is on orders.accepted or orders.exchange (their `source`)."""
    truncated = [
        f"{t}/{p}" for t in (ORDERS_ACCEPTED, ORDERS_EXCHANGE) for p, (b, _) in bounds[t].items() if b > 0
    ]
    accepted = [i for i in orders if i.get("kind") == "VALIDATION" and i.get("decision") == "ACCEPTED"]
    name = "accepted decisions published (orders.accepted / orders.exchange)"
    if truncated:
        out.checks.append(
            Check(
                name,
                len(accepted),
                0,
                0,
                SKIPPED,
                f"retention has removed records of {_examples(truncated, 3)}",
            )
        )
        return
    sources: set[str] = set()
    for topic in (ORDERS_ACCEPTED, ORDERS_EXCHANGE):
        for r in _read(log, topic, bounds[topic]):
            body = _loads(r.value)
            src = body.get("source") if isinstance(body, dict) else None
            if isinstance(src, dict):
                sources.add(f"{src.get('topic')}/{src.get('partition')}/{src.get('offset')}")
    unpublished = sorted((i["src"] for i in accepted if i.get("src") not in sources), key=_pos)
    for position in unpublished:
        out.add(
            "ACCEPTED_NOT_PUBLISHED",
            f"the order accepted from {position} is on neither orders.accepted nor orders.exchange",
        )
    out.checks.append(
        Check(
            name,
            len(accepted),
            len(accepted) - len(unpublished),
            len(unpublished),
            _status(len(unpublished)),
            _examples(unpublished) if unpublished else "",
        )
    )


# ---------------------------------------------------------------- decisions -> order states


def _order_states(orders: list[dict[str, Any]], out: Reconciliation) -> None:
    state_ids = {o["order_id"] for o in orders if o.get("kind") == "STATE"}
    accepted_new = [
        o
        for o in orders
        if o.get("kind") == "VALIDATION"
        and o.get("decision") == "ACCEPTED"
        and o.get("action") == "NEW"
        and o.get("route", "INTERNAL") == "INTERNAL"
    ]
    without = sorted(o["order_id"] for o in accepted_new if o["order_id"] not in state_ids)
    for order_id in without:
        out.add("ORDER_WITHOUT_STATE", f"accepted order {order_id} never reached the book")
    out.checks.append(
        Check(
            "accepted orders (NEW, INTERNAL) with an order state",
            len(accepted_new),
            len(accepted_new) - len(without),
            len(without),
            _status(len(without)),
            _examples(without) if without else "",
        )
    )


# ---------------------------------------------------------------- trades.executed -> legs / dead letters


def _trades(
    log: RetainedLog,
    trades: list[dict[str, Any]],
    bounds: Bounds,
    ck_of: CheckpointOffsets,
    out: Reconciliation,
) -> dict[str, int]:
    """Returns trade_id -> timestamp (ms) of its first trades.executed record (the trade reports)."""
    on_log: dict[str, int] = {}
    malformed: list[str] = []
    unprocessed: set[str] = set()  # above clear_trades' checkpoint: in flight rather than lost
    for r in _read(log, TRADES_EXECUTED, bounds[TRADES_EXECUTED]):
        body = _loads(r.value)
        if r.offset > ck_of.get(("clear_trades", TRADES_EXECUTED, r.partition), -1):
            unprocessed.add(r.position)
            if isinstance(body, dict) and isinstance(body.get("trade_id"), str):
                unprocessed.add(body["trade_id"])
        trade_id = body.get("trade_id") if isinstance(body, dict) else None
        if not isinstance(trade_id, str):
            malformed.append(r.position)
        elif trade_id not in on_log:  # a duplicate re-produced after a crash carries the same id
            on_log[trade_id] = r.timestamp
    dead_ids: dict[str, str] = {}
    dead_positions: dict[str, str] = {}
    for r in _read(log, TRADES_DEADLETTER, bounds[TRADES_DEADLETTER]):
        body = _loads(r.value)
        if not isinstance(body, dict):
            continue
        reason = body.get("reason") or ""
        trade = body.get("trade")
        if isinstance(trade, dict) and isinstance(trade.get("trade_id"), str):
            dead_ids[trade["trade_id"]] = reason
        src = body.get("source")
        if isinstance(src, dict):
            dead_positions[f"{src.get('topic')}/{src.get('partition')}/{src.get('offset')}"] = reason
    out.dead_lettered = {t for t, reason in dead_ids.items() if reason}
    legs = {t["trade_id"]: len(t.get("legs") or ()) for t in trades if t.get("sk") == "CLEARED"}

    cleared = dead = 0
    missing: list[str] = []
    for trade_id in on_log:
        if legs.get(trade_id) == 2:
            cleared += 1
        elif dead_ids.get(trade_id):
            dead += 1
        else:
            missing.append(trade_id)
            if trade_id in legs:
                out.add("TRADE_LEGS", f"cleared trade {trade_id} has {legs[trade_id]} legs, not 2")
            elif trade_id in dead_ids:
                out.add("DEAD_LETTER_WITHOUT_REASON", f"trade {trade_id} was dead-lettered without a reason")
            else:
                out.add(
                    "TRADE_NOT_CLEARED",
                    f"trade {trade_id} on trades.executed is neither cleared nor dead-lettered",
                )
    for position in malformed:
        if dead_positions.get(position):
            dead += 1
        else:
            missing.append(position)
            out.add(
                "TRADE_NOT_CLEARED", f"malformed record {position} on trades.executed was not dead-lettered"
            )
    expected = len(on_log) + len(malformed)
    out.checks.append(
        Check(
            "trades on trades.executed cleared (2 legs) or dead-lettered",
            expected,
            cleared + dead,
            len(missing),
            _status(len(missing)),
            "; ".join(
                x
                for x in (
                    f"{cleared} cleared, {dead} dead-lettered",
                    f"missing: {_examples(missing)}" if missing else "",
                    f"{len([m for m in missing if m in unprocessed])} of them above clear_trades' checkpoint "
                    "(not processed yet)"
                    if any(m in unprocessed for m in missing)
                    else "",
                )
                if x
            ),
        )
    )

    # store -> log: an executed trade that never reached trades.executed is lost for clearing
    executed = [t["trade_id"] for t in trades if t.get("sk") == "EXECUTED"]
    truncated = [p for p, (b, _) in bounds[TRADES_EXECUTED].items() if b > 0]
    name = "executed trades (store) on trades.executed"
    if truncated:
        out.checks.append(
            Check(name, len(executed), 0, 0, SKIPPED, "retention has removed trades.executed records")
        )
    else:
        absent = sorted(t for t in executed if t not in on_log)
        for trade_id in absent:
            out.add("TRADE_NOT_ON_LOG", f"executed trade {trade_id} is not on trades.executed")
        out.checks.append(
            Check(
                name,
                len(executed),
                len(executed) - len(absent),
                len(absent),
                _status(len(absent)),
                _examples(absent) if absent else "",
            )
        )
    return on_log


# ---------------------------------------------------------------- exchange answers


def _exchange(
    log: RetainedLog,
    bounds: Bounds,
    trade_requests: dict[str, int],
    now_ms: int,
    max_age_s: float,
    out: Reconciliation,
) -> None:
    orders: dict[str, int] = {}
    unroutable: list[str] = []
    for r in _read(log, ORDERS_EXCHANGE, bounds[ORDERS_EXCHANGE]):
        body = _loads(r.value)
        if not isinstance(body, dict) or not body.get("member_id") or not body.get("client_order_id"):
            unroutable.append(r.position)
            continue
        if body.get("route") != "EXCHANGE":
            continue  # exchange_gateway skips it: nothing is sent, no answer expected
        orders.setdefault(f"{body['member_id']}:{body['client_order_id']}", r.timestamp)
    answered: set[str] = set()
    rejected = 0
    for r in _read(log, EXCHANGE_EXECUTIONS, bounds[EXCHANGE_EXECUTIONS]):
        body = _loads(r.value)
        if not isinstance(body, dict):
            continue
        ids: set[str] = {body.get(k) for k in ("request_id", "cl_ord_id", "trade_report_id")} - {None}  # type: ignore[assignment]  # None removed
        answered |= ids
        if body.get("msg_type") in ("Reject", "BusinessMessageReject") or "REJECTED" in (
            body.get("exec_type"),
            body.get("trd_rpt_status"),
        ):
            rejected += 1
    for name, requests, extra in (
        ("trade reports (35=AE) answered by the exchange", trade_requests, []),
        ("exchange-routed orders (35=D/F/G) answered by the exchange", orders, unroutable),
    ):
        pending = {i: ts for i, ts in requests.items() if i not in answered}
        ages = [(now_ms - ts) / 1000 for ts in pending.values() if ts > 0]
        oldest = round(max(ages), 1) if ages else None
        old = [i for i, ts in pending.items() if ts > 0 and (now_ms - ts) / 1000 > max_age_s]
        unknown_age = [i for i, ts in pending.items() if ts <= 0]
        failing = len(old) + len(unknown_age) + len(extra)
        for request_id in sorted(old):
            out.add(
                "EXCHANGE_NO_ANSWER", f"{request_id}: no exchange answer after more than {max_age_s:.0f} s"
            )
        for request_id in sorted(unknown_age):
            out.add(
                "EXCHANGE_NO_ANSWER",
                f"{request_id}: no exchange answer (record has no timestamp: age unknown)",
            )
        for position in extra:
            out.add(
                "EXCHANGE_UNROUTABLE", f"{position} on orders.exchange is not an order the gateway can send"
            )
        status = FAIL if failing else (PENDING if pending else OK)
        detail = []
        if pending:
            detail.append(
                f"{len(pending)} pending, oldest {oldest} s (fails after {max_age_s:.0f} s): {_examples(sorted(pending), 3)}"
            )
        if extra:
            detail.append(f"{len(extra)} unroutable: {_examples(extra, 3)}")
        out.checks.append(
            Check(
                name,
                len(requests) + len(extra),
                len(requests) - len(pending),
                failing,
                status,
                "; ".join(detail),
                pending=len(pending),
                oldest_pending_s=oldest,
            )
        )
    if rejected:
        out.checks[-1].detail = "; ".join(
            x
            for x in (
                out.checks[-1].detail,
                f"{rejected} answers on exchange.executions (reports and orders) are rejections",
            )
            if x
        )
