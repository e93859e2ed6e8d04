"""`clearing verify` reconciles the retained Kafka log with the store: each failure mode is seen.

An in-memory run (the real services over InMemoryItemStore and the harness's InMemoryLog) is
verified through InMemoryRetainedLog; then one thing is taken away or changed per test.
"""

from __future__ import annotations

import copy
import json

import orjson
import pytest
from clearing.adapters.memory import InMemoryItemStore
from clearing.adapters.retained_log import InMemoryRetainedLog
from clearing.repositories import keys
from clearing.services.reports import verify
from clearing.topics import (
    EXCHANGE_EXECUTIONS,
    ORDERS_EXCHANGE,
    ORDERS_NEW,
    TRADES_DEADLETTER,
    TRADES_EXECUTED,
)
from clearing_tools.bench.harness import InMemoryLog, InMemoryPipeline
from clearing_tools.local.oms import generate_orders

NOW_MS = 1_800_000_000_000


def run(n: int = 600, seed: int = 5) -> InMemoryPipeline:
    p = InMemoryPipeline()
    for m in generate_orders(n, seed=seed, exchange_fraction=0.05):
        p.log.append(ORDERS_NEW, m.key.encode(), m.value)
    p.drain(batch_size=100)
    return p


# what every exchange.executions message carries (clearing.messages.ExchangeMessage): the exposure
# release reads them with that contract (an ExecutionReport NEW has no exposure effect)
_FIX_HEADER = {
    "msg_seq_num": None,
    "sending_time": None,
    "poss_dup": False,
    "sender_comp_id": None,
    "target_comp_id": None,
}


def answer_everything(p: InMemoryPipeline, except_ids: frozenset[str] = frozenset()) -> None:
    """What the proxy publishes: one TradeCaptureReportAck per trade, one ExecutionReport per order."""
    for _, value in [(k, v) for part in p.log.topics[TRADES_EXECUTED].values() for k, v in part]:
        trade = orjson.loads(value)
        if trade["trade_id"] not in except_ids:
            ack = {
                **_FIX_HEADER,
                "msg_type": "TradeCaptureReportAck",
                "request_id": trade["trade_id"],
                "trd_rpt_status": "ACCEPTED",
            }
            p.log.append(EXCHANGE_EXECUTIONS, trade["symbol"].encode(), orjson.dumps(ack))
    for _, value in [(k, v) for part in p.log.topics[ORDERS_EXCHANGE].values() for k, v in part]:
        order = orjson.loads(value)
        cl_ord_id = f"{order['member_id']}:{order['client_order_id']}"
        if cl_ord_id not in except_ids:
            er = {
                **_FIX_HEADER,
                "msg_type": "ExecutionReport",
                "request_id": cl_ord_id,
                "cl_ord_id": cl_ord_id,
                "exec_type": "NEW",
            }
            p.log.append(EXCHANGE_EXECUTIONS, order["symbol"].encode(), orjson.dumps(er))


def log_of(p: InMemoryPipeline, timestamp_ms: int = NOW_MS - 1000, **kw) -> InMemoryRetainedLog:
    return InMemoryRetainedLog(p.log, timestamp_ms=timestamp_ms, **kw)


def codes(result) -> set[str]:
    return {v["code"] for v in result.violations}


def row(result, startswith: str) -> dict:
    return next(c for c in result.checks if c["check"].startswith(startswith))


@pytest.fixture(scope="module")
def clean():
    p = run()
    answer_everything(p)
    return p


@pytest.fixture
def fresh():
    p = run()
    answer_everything(p)
    return p


def test_a_clean_run_reconciles_with_its_log(clean):
    result = verify(clean.store, log_of(clean), now_ms=NOW_MS)
    assert result.ok, result.violations
    assert result.reconciled
    offsets = row(result, "orders.new offsets")
    assert offsets["expected"] == offsets["found"] == clean.log.size(ORDERS_NEW) == 600
    trades = row(result, "trades on trades.executed")
    assert trades["expected"] == trades["found"] > 50 and trades["missing"] == 0
    routed = row(result, "exchange-routed orders")
    assert routed["expected"] == routed["found"] > 0 and routed["status"] == "OK"
    assert all(c["status"] == "OK" for c in result.checks), result.checks


def test_an_orders_new_offset_without_a_decision_fails_naming_the_offset(fresh):
    orders = fresh.store.tables[keys.ORDERS]
    key, lost = next((k, i) for k, i in orders.items() if i.get("decision") == "REJECTED")
    del orders[key]  # the write that never happened: the checkpoint is past it
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert not result.ok
    row_ = row(result, "orders.new offsets")
    assert (row_["missing"], row_["status"]) == (1, "FAIL")
    assert lost["src"] in row_["detail"]
    assert {
        "code": "OFFSET_WITHOUT_DECISION",
        "message": f"{lost['src']} has no decision",
    } in result.violations
    assert "not processed yet" not in row_["detail"]  # below validate_orders' checkpoint: lost


def test_an_offset_not_processed_yet_fails_and_says_so(fresh):
    fresh.log.append(ORDERS_NEW, b"MBR01", b'{"late": true}')
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert "OFFSET_WITHOUT_DECISION" in codes(result)
    assert (
        "1 above validate_orders' checkpoint (not processed yet)"
        in row(result, "orders.new offsets")["detail"]
    )


def test_two_decisions_for_one_offset_fail(fresh):
    orders = fresh.store.tables[keys.ORDERS]
    item = next(i for i in orders.values() if i.get("kind") == "REJECTION")
    twin = {**copy.deepcopy(item), "pk": "REJ#elsewhere"}
    orders[(twin["pk"], twin["sk"])] = twin
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert "OFFSET_WITH_SEVERAL_DECISIONS" in codes(result)


def truncated_copy(log: InMemoryLog, topic: str, keep: int) -> InMemoryLog:
    """The same log, with `topic` holding only its first `keep` records per partition: a broker that
    was reset and has been written to again, less than before."""
    out = InMemoryLog(log.partitions)
    for t, parts in log.topics.items():
        for partition, rows in parts.items():
            out.topics[t][partition] = list(rows[:keep] if t == topic else rows)
    return out


def test_decisions_beyond_the_log_end_fail_as_a_reset_broker(clean):
    reset = truncated_copy(clean.log, ORDERS_NEW, keep=20)
    result = verify(clean.store, InMemoryRetainedLog(reset, timestamp_ms=NOW_MS), now_ms=NOW_MS)
    assert not result.ok
    assert {"DECISION_BEYOND_LOG", "CHECKPOINT_BEYOND_LOG"} <= codes(result)
    beyond = row(result, "decisions whose orders.new offset")
    assert beyond["status"] == "FAIL" and beyond["missing"] == 600 - 20 * clean.log.partitions
    assert "reset broker" in beyond["detail"]
    assert row(result, "checkpoints within")["status"] == "FAIL"


def test_a_reset_broker_refilled_with_other_orders_fails_on_the_identity_of_the_decisions(clean):
    other = InMemoryLog(clean.log.partitions)
    for m in generate_orders(600, seed=99, id_prefix="OTHER-"):
        other.append(ORDERS_NEW, m.key.encode(), m.value)
    for t in (TRADES_EXECUTED, TRADES_DEADLETTER, EXCHANGE_EXECUTIONS, ORDERS_EXCHANGE, "orders.accepted"):
        other.topics[t] = clean.log.topics[t]
    result = verify(clean.store, InMemoryRetainedLog(other, timestamp_ms=NOW_MS), now_ms=NOW_MS)
    assert "DECISION_OF_ANOTHER_RECORD" in codes(result)


def test_a_topic_the_broker_no_longer_has_fails_when_the_store_has_its_decisions(clean):
    gone = InMemoryLog(clean.log.partitions)
    result = verify(clean.store, InMemoryRetainedLog(gone), now_ms=NOW_MS)
    assert {"DECISION_BEYOND_LOG", "CHECKPOINT_BEYOND_LOG", "TRADE_NOT_ON_LOG"} <= codes(result)


def test_decisions_for_offsets_past_retention_are_not_failures(clean):
    begin = {(ORDERS_NEW, p): 30 for p in range(clean.log.partitions)}
    result = verify(clean.store, log_of(clean, begin=begin), now_ms=NOW_MS)
    assert result.ok, result.violations
    assert "past retention" in row(result, "decisions whose orders.new offset")["detail"]
    assert row(result, "orders.new offsets")["expected"] == 600 - 30 * clean.log.partitions


def test_an_empty_store_behind_a_non_empty_log_fails(clean):
    result = verify(InMemoryItemStore(), log_of(clean), now_ms=NOW_MS)
    assert not result.ok
    assert {"EMPTY_STORE", "OFFSET_WITHOUT_DECISION"} <= codes(result)
    assert row(result, "store not empty")["status"] == "FAIL"


def test_a_trade_without_legs_and_not_dead_lettered_fails(fresh):
    trades = fresh.store.tables[keys.TRADES]
    key = next(k for k in trades if k[1] == "CLEARED")
    del trades[key]
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert not result.ok
    r = row(result, "trades on trades.executed")
    assert (r["missing"], r["status"]) == (1, "FAIL") and key[0] in r["detail"]
    assert any(v["code"] == "TRADE_NOT_CLEARED" and key[0] in v["message"] for v in result.violations)


def test_a_trade_with_one_leg_fails(fresh):
    trades = fresh.store.tables[keys.TRADES]
    key = next(k for k in trades if k[1] == "CLEARED")
    trades[key]["legs"] = trades[key]["legs"][:1]
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert "TRADE_LEGS" in codes(result)


def test_a_dead_lettered_trade_with_a_reason_is_accounted_for(fresh):
    trades = fresh.store.tables[keys.TRADES]
    key = next(k for k in trades if k[1] == "CLEARED")
    del trades[key]
    # trades.executed rows are (key, value); find the trade and dead-letter it the way clear_trades does
    trade = next(
        orjson.loads(v)
        for part in fresh.log.topics[TRADES_EXECUTED].values()
        for _, v in part
        if key[0].encode() in v
    )
    letter = {"reason": "UNKNOWN_MEMBER", "message": "member gone", "trade": trade, "source": {}}
    fresh.log.append(TRADES_DEADLETTER, trade["symbol"].encode(), orjson.dumps(letter))
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert "TRADE_NOT_CLEARED" not in codes(result), result.violations
    assert "1 dead-lettered" in row(result, "trades on trades.executed")["detail"]
    assert result.checked["dead_lettered_trades"] == 1


def test_an_executed_trade_missing_from_trades_executed_fails(fresh):
    for partition in fresh.log.topics[TRADES_EXECUTED].values():
        if partition:
            partition.pop()  # the record after the last: nothing else moves
            break
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert "TRADE_NOT_ON_LOG" in codes(result)


def test_an_exchange_request_without_an_answer_is_pending_with_its_age_then_fails_when_old():
    p = run()
    trade_id = orjson.loads(next(v for part in p.log.topics[TRADES_EXECUTED].values() for _, v in part))[
        "trade_id"
    ]
    order = orjson.loads(next(v for part in p.log.topics[ORDERS_EXCHANGE].values() for _, v in part))
    cl_ord_id = f"{order['member_id']}:{order['client_order_id']}"
    answer_everything(p, except_ids=frozenset({trade_id, cl_ord_id}))

    young = verify(p.store, log_of(p, timestamp_ms=NOW_MS - 42_000), now_ms=NOW_MS)
    assert young.ok, young.violations  # pending is not a failure while younger than the limit
    reports = row(young, "trade reports")
    assert (reports["status"], reports["pending"], reports["oldest_pending_s"]) == ("PENDING", 1, 42.0)
    assert trade_id in reports["detail"] and "oldest 42.0 s" in reports["detail"]
    routed = row(young, "exchange-routed orders")
    assert (routed["status"], routed["pending"]) == ("PENDING", 1) and cl_ord_id in routed["detail"]

    old = verify(p.store, log_of(p, timestamp_ms=NOW_MS - 42_000), now_ms=NOW_MS, pending_max_age_s=30)
    assert not old.ok
    assert row(old, "trade reports")["status"] == "FAIL"
    assert [v["message"] for v in old.violations if v["code"] == "EXCHANGE_NO_ANSWER"] == [
        f"{trade_id}: no exchange answer after more than 30 s",
        f"{cl_ord_id}: no exchange answer after more than 30 s",
    ]


def test_no_exchange_skips_the_exchange_checks(clean):
    p = run(200, seed=3)  # no answers at all
    assert not verify(p.store, log_of(p, timestamp_ms=1), now_ms=NOW_MS).ok
    result = verify(p.store, log_of(p, timestamp_ms=1), now_ms=NOW_MS, exchange=False)
    assert result.ok, result.violations
    assert row(result, "exchange answers")["status"] == "SKIPPED"


class CountingStore:
    """Counts reads: verify may Scan a table and BatchGet checkpoints, never read per order."""

    def __init__(self, store):
        self.store = store
        self.calls: list[tuple[str, str]] = []

    def scan(self, table):
        self.calls.append(("scan", table))
        return self.store.scan(table)

    def get_many(self, table, keys_):
        self.calls.append(("get_many", table))
        return self.store.get_many(table, keys_)

    def query(self, *a, **kw):
        raise AssertionError("verify must not Query per order or member")


def test_verify_reads_each_table_once_and_nothing_per_order(clean):
    store = CountingStore(clean.store)
    verify(store, log_of(clean), now_ms=NOW_MS)
    assert store.calls.count(("get_many", keys.STATE)) == 1  # the checkpoints, one BatchGet
    assert all(kind == "scan" for kind, _ in store.calls if (kind, _) != ("get_many", keys.STATE))
    scans = [t for kind, t in store.calls if kind == "scan"]
    assert len(scans) == len(set(scans))


def test_cli_verify_prints_a_table_and_json_with_the_same_figures(clean, monkeypatch, capsys):
    import clearing_tools.cli.commands.queries as queries_cli
    import clearing_tools.cli.context as context
    from clearing_tools.cli.main import main

    monkeypatch.setattr(context, "data_store", lambda: clean.store)
    monkeypatch.setattr(queries_cli, "retained_log", lambda: log_of(clean))
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["verify", "--json"]) == 0  # every request of `clean` is answered
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] and data["reconciled_with_log"]
    assert main(["verify"]) == 0
    text = capsys.readouterr().out
    for check in data["checks"]:
        assert check["check"][:30] in text
        assert f"{check['expected']:,}" in text
    assert "every check holds" in text

    store = InMemoryItemStore()
    monkeypatch.setattr(context, "data_store", lambda: store)
    assert main(["verify", "--json"]) == 1
    assert "EMPTY_STORE" in {v["code"] for v in json.loads(capsys.readouterr().out)["violations"]}
    assert main(["verify", "--store-only", "--json"]) == 0  # the store against itself sees nothing wrong
    assert json.loads(capsys.readouterr().out)["reconciled_with_log"] is False


def test_a_trade_not_cleared_yet_fails_and_says_it_is_above_the_checkpoint(fresh):
    part = next(rows for rows in fresh.log.topics[TRADES_EXECUTED].values() if rows)
    trade = orjson.loads(part[-1][1])
    late = {**trade, "trade_id": "T-LATE-0", "source": {**trade["source"], "seq": 99}}
    fresh.log.append(TRADES_EXECUTED, trade["symbol"].encode(), orjson.dumps(late))
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    r = row(result, "trades on trades.executed")
    assert r["status"] == "FAIL" and "T-LATE-0" in r["detail"]
    assert "1 of them above clear_trades' checkpoint (not processed yet)" in r["detail"]


def test_a_rejection_never_overwrites_the_decision_of_another_offset():
    """Found by verify: member checks run before the duplicate check, so a second order with the same
    client order id from an unknown (or suspended) member used to overwrite the first one's decision
    (orders.new/…/first had none left). Now the second is stored under its position."""
    p = InMemoryPipeline()
    body = next(
        orjson.loads(m.value)
        for m in generate_orders(50, seed=1)
        if m.value.startswith(b"{") and orjson.loads(m.value).get("action") == "NEW"
    )
    for member in ("NOSUCH", body["member_id"]):
        twice = {**body, "member_id": member, "client_order_id": "SAME-1"}
        if member != "NOSUCH":
            twice["symbol"] = "NOSUCHSYM"  # a used-up rejection of a known member, then a duplicate
        for _ in range(2):
            p.log.append(ORDERS_NEW, member.encode(), orjson.dumps(twice))
    p.drain(batch_size=1, redeliver=True)
    result = verify(p.store, log_of(p), now_ms=NOW_MS, exchange=False)
    assert result.ok, result.violations
    stored = sorted(
        (i["src"], i["reason"])
        for i in p.store.scan(keys.ORDERS)
        if i.get("kind") in ("VALIDATION", "REJECTION")
    )
    assert [reason for _, reason in stored].count("UNKNOWN_MEMBER") == 2
    assert len({src for src, _ in stored}) == 4


def test_offsets_of_a_batch_the_mapping_gave_up_on_fail_and_say_so(fresh):
    """The local ESM publishes a batch whose retries are exhausted to esm.onfailure and moves on (as
    Lambda does to its on-failure destination): the offsets have no decision, verify fails and says why."""
    orders = fresh.store.tables[keys.ORDERS]
    lost = sorted(
        (
            k
            for k, i in orders.items()
            if i.get("src", "").startswith(f"{ORDERS_NEW}/0/") and i.get("kind") != "STATE"
        ),
        key=lambda k: int(orders[k]["src"].rsplit("/", 1)[1]),
    )[:3]
    positions = [orders[k]["src"] for k in lost]
    for k in lost:
        del orders[k]
    first, last = (int(p.rsplit("/", 1)[1]) for p in (positions[0], positions[-1]))
    info = {"topic": ORDERS_NEW, "partition": 0, "firstOffset": first, "lastOffset": last}
    fresh.log.append(
        "esm.onfailure", b"ValidateOrdersFunction.OrdersNew", orjson.dumps({"KafkaBatchInfo": info})
    )
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert not result.ok
    r = row(result, "orders.new offsets")
    assert (
        r["missing"] == 3
        and "3 in batches the event-source mapping gave up on (esm.onfailure)" in r["detail"]
    )
    assert f"{positions[0]} has no decision (its batch went to esm.onfailure: retries exhausted)" in [
        v["message"] for v in result.violations
    ]


def test_clipped_ids_and_oversized_records_still_match_their_decision():
    """Rejections store ids read from invalid input bounded (dropped, or clipped "start... (N characters)")
    and the payload's SHA-256: verify compares them as stored, without calling them another record's."""
    p = run(100, seed=4)
    long_id = "L" * 300
    p.log.append(
        ORDERS_NEW,
        b"MBR01",
        orjson.dumps({"action": "NEW", "member_id": "MBR01", "client_order_id": long_id}),
    )
    p.log.append(
        ORDERS_NEW, b"M" * 200, orjson.dumps({"action": "NEW", "member_id": "M" * 200, "note": "x" * 500_000})
    )
    p.drain(batch_size=50)
    answer_everything(p)
    result = verify(p.store, log_of(p), now_ms=NOW_MS)
    assert result.ok, result.violations
    # ids as a rejection may store them: clipped by domain.bounded.clip, or a prefix
    from clearing.domain.bounded import clip
    from clearing.services.reconcile import _same

    assert _same(clip(long_id, 64), long_id) and not _same(clip(long_id, 64), long_id + "L")
    assert not _same(clip(long_id, 64), "K" * 300) and _same("L" * 10, long_id)


def test_a_rejected_record_replaced_by_other_bytes_at_its_offset_is_another_record(fresh):
    """Same member and client order id, other bytes (a refilled broker): the stored SHA-256 says so."""
    orders = fresh.store.tables[keys.ORDERS]
    item = next(i for i in orders.values() if i.get("kind") == "VALIDATION" and i.get("original_sha256"))
    _, partition, offset = item["src"].rsplit("/", 2)
    rows = fresh.log.topics[ORDERS_NEW][int(partition)]
    key, value = rows[int(offset)]
    rows[int(offset)] = (key, value + b" ")
    result = verify(fresh.store, log_of(fresh), now_ms=NOW_MS)
    assert any(
        v["code"] == "DECISION_OF_ANOTHER_RECORD" and item["src"] in v["message"] for v in result.violations
    ), result.violations
