"""The matching benchmark: workload generator, replay and the `clearing bench match` command."""

from __future__ import annotations

import json
from collections import Counter

from clearing_tools.bench.match import (
    generate_workload,
    load_workload,
    parse_workload,
    run_workload,
    write_workload,
)
from clearing_tools.cli.main import main


def test_generated_workload_is_deterministic_for_a_seed():
    a = list(generate_workload(500, seed=7, resting=100))
    b = list(generate_workload(500, seed=7, resting=100))
    c = list(generate_workload(500, seed=8, resting=100))
    assert a == b and a != c


def test_generated_workload_follows_the_exchange_core_mix():
    lines = list(generate_workload(20_000, seed=1, resting=1000))
    prefill, mix = lines[:1000], lines[1000:]
    assert all(d["op"] == "new" and d["tif"] == "GTC" for d in prefill)
    counts = Counter((d["op"], d.get("tif")) for d in mix)
    share = {k: v / len(mix) for k, v in counts.items()}
    assert 0.80 <= share[("replace", None)] <= 0.84
    assert 0.025 <= share[("new", "IOC")] <= 0.035
    assert 0.06 <= share[("new", "GTC")] <= 0.12
    assert 0.03 <= share[("cancel", None)] <= 0.08


def test_parse_ignores_fields_an_operation_does_not_need():
    ops = parse_workload(
        [
            '{"op": "new", "id": 1, "side": "sell", "type": "limit", "tif": "GTC", "price": 100, "qty": 5, "new_qty": 9}',
            '{"op": "new", "id": 2, "side": "buy", "type": "market", "tif": "IOC", "price": 123, "qty": 2}',
            '{"op": "replace", "id": 1, "side": "sell", "new_price": 101, "new_qty": 4}',
            "",
            '{"op": "cancel", "id": 42, "price": 7}',
        ]
    )
    assert ops == [
        (0, 1, "SELL", 100, 5, "LIMIT", "GTC"),
        (0, 2, "BUY", None, 2, "MARKET", "IOC"),
        (2, 1, 101, 4),
        (1, 42),
    ]


def test_replay_counts_trades_the_same_way_through_every_api():
    ops = parse_workload(json.dumps(d) for d in generate_workload(3000, seed=3, resting=200))
    by_call = run_workload(ops, api="call")
    by_batch = run_workload(ops, api="batch", batch_size=128)
    by_production = run_workload(ops, batch_size=128)  # the default: match_orders' calls
    by_production_calls = run_workload(ops, api="production-call", batch_size=128)
    assert by_call.trades > 0 and by_call.traded_qty >= by_call.trades
    assert (
        (by_call.operations, by_call.trades, by_call.traded_qty)
        == (by_batch.operations, by_batch.trades, by_batch.traded_qty)
        == (by_production.operations, by_production.trades, by_production.traded_qty)
        == (by_production_calls.operations, by_production_calls.trades, by_production_calls.traded_qty)
    )


def test_production_api_runs_match_orders_commands_and_the_book_follows_the_workload():
    """The production replay's messages, through accepted_commands and apply, give the events of
    the workload's single calls (ids mapped to the pipeline's `member:client_order_id`)."""
    from clearing.domain.book import OWNER_REPLACE, OrderBook
    from clearing.services.match import accepted_commands
    from clearing_tools.bench.match import accepted_batches

    ops = parse_workload(json.dumps(d) for d in generate_workload(4000, seed=4, resting=200))
    single = OrderBook("W")
    expected = []
    for op in ops:
        if op[0] == 2:
            events = single.replace(op[1], op[2], op[3])
        elif op[0] == 0:
            events = single.submit(op[1], op[2], op[3], op[4], type=op[5], tif=op[6])
        else:
            events = single.cancel(op[1])
        expected.append([(e[0], *e[3:8]) if e[0] == "REPLACED" else (e[0],) for e in events])
    book = OrderBook("W")
    got = []
    batches = list(accepted_batches(ops, 300))
    assert [m["action"] for b in batches for m in b].count("REPLACE") > 2000
    for batch in batches:
        commands = accepted_commands(batch)
        assert all(
            c[0] == OWNER_REPLACE for c, m in zip(commands, batch, strict=True) if m["action"] == "REPLACE"
        )
        events, ends = book.apply(commands)
        starts = [0, *ends[:-1]]
        got.extend(
            [(e[0], *e[3:8]) if e[0] == "REPLACED" else (e[0],) for e in events[a:b]]
            for a, b in zip(starts, ends, strict=True)
        )
    assert got == expected


def test_unknown_ids_in_a_workload_are_ignored():
    ops = parse_workload(
        ['{"op": "cancel", "id": 5}', '{"op": "replace", "id": 6, "new_price": 1, "new_qty": 1}']
    )
    result = run_workload(ops, api="call")
    assert (result.operations, result.trades, result.traded_qty) == (2, 0, 0)


def test_cli_generates_then_replays_with_one_json_object(tmp_path, capsys):
    workload = tmp_path / "w.jsonl"
    assert main(["bench", "match", "--generate", "2000", "--out", str(workload), "--resting", "100"]) == 0
    assert len(workload.read_text().splitlines()) == 2100
    capsys.readouterr()
    assert main(["bench", "match", "--workload", str(workload), "--json"]) == 0
    out = capsys.readouterr().out
    result = json.loads(out)
    assert set(result) == {"ops_per_sec", "trades", "traded_qty"}
    assert result["ops_per_sec"] > 0 and isinstance(result["trades"], int)
    expected = run_workload(load_workload(workload))
    assert (result["trades"], result["traded_qty"]) == (expected.trades, expected.traded_qty)


def test_write_workload_reports_lines_written(tmp_path):
    assert write_workload(tmp_path / "w.jsonl", 50, seed=1, resting=10) == 60


def test_apply_gives_the_events_of_the_single_calls_on_the_benchmark_workload():
    """The inline paths of `apply` (moves, kept priority, IOC sweeps, resting orders) against the calls."""
    from clearing.domain.book import OrderBook
    from clearing_tools.bench.match import to_commands

    ops = parse_workload(json.dumps(d) for d in generate_workload(6000, seed=5, resting=300))
    single = OrderBook("W")
    expected = []
    for op in ops:
        if op[0] == 2:
            expected.append(single.replace(op[1], op[2], op[3]))
        elif op[0] == 0:
            expected.append(single.submit(op[1], op[2], op[3], op[4], type=op[5], tif=op[6]))
        else:
            expected.append(single.cancel(op[1]))
    batched = OrderBook("W")
    commands = to_commands(ops)
    got = []
    for i in range(0, len(commands), 700):
        events, ends = batched.apply(commands[i : i + 700])
        starts = [0, *ends[:-1]]
        got.extend(events[a:b] for a, b in zip(starts, ends, strict=True))
    assert got == expected
    assert sum(1 for evs in expected for e in evs if e[0] == "TRADE") > 100
    assert batched.snapshot() == single.snapshot()
    assert batched.depth(10) == single.depth(10)


def test_bare_bones_loop_calibration_trades_like_the_full_book():
    from clearing_tools.bench.match import run_bare_loop

    ops = parse_workload(json.dumps(d) for d in generate_workload(4000, seed=9, resting=300))
    full = run_workload(ops, batch_size=500)
    bare = run_bare_loop(ops, batch_size=500)
    assert full.trades > 50
    assert (bare.trades, bare.traded_qty) == (full.trades, full.traded_qty)


def test_cli_baseline_prints_both_calibration_lines(tmp_path, capsys):
    workload = tmp_path / "w.jsonl"
    write_workload(workload, 1500, seed=2, resting=100)
    assert main(["bench", "match", "--workload", str(workload), "--baseline", "--cpu-time"]) == 0
    out = capsys.readouterr().out
    assert "bare-bones book" in out and "bare-bones loop" in out
