"""Property tests of the order book: random order flow, invariants checked after every operation."""

from __future__ import annotations

import json
from collections import defaultdict

from clearing.domain.book import OrderBook, cancel_command, replace_command, submit_command
from clearing.domain.book_events import named
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MEMBERS = ("M1", "M2", "M3")
STP_MODES = (None, None, "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH")

submits = st.builds(
    lambda side, market, price, qty, tif, post_only, member, stp: (
        "submit",
        side,
        None if market else price,
        qty,
        "MARKET" if market else "LIMIT",
        tif,
        post_only and not market and tif in ("GTC", "DAY"),
        member,
        stp,
    ),
    st.sampled_from(("BUY", "SELL")),
    st.sampled_from((False,) * 9 + (True,)),  # one order in ten is a market order
    st.integers(95, 105),
    st.integers(1, 20),
    st.sampled_from(("GTC", "GTC", "DAY", "IOC", "FOK")),
    st.sampled_from((False,) * 4 + (True,)),
    st.sampled_from(MEMBERS),
    st.sampled_from(STP_MODES),
)
# Cancels and replaces name a resting order by its rank among the resting ids (resolved when the
# operation runs, so they nearly always hit a live order); -1 means an id the book does not know.
targets = st.integers(-1, 50)
cancels = st.tuples(st.just("cancel"), targets)
replaces = st.tuples(
    st.just("replace"),
    targets,
    st.none() | st.integers(95, 105) | st.just("same"),  # "same": the order's current price
    st.none() | st.integers(1, 25),
)
# match_orders' replace: a total quantity (None keeps it) and an owner update instead of an owner
# read from the book: owner [member, id] gets its second field replaced by a "reserve" (and a third
# field appended, the total quantity, when one is given)
owner_replaces = st.tuples(
    st.just("owner_replace"),
    targets,
    st.integers(95, 105) | st.just("same") | st.none(),
    st.none() | st.integers(1, 40),
    st.integers(1, 9),
)
expiries = st.just(("expire_day",))
operations = st.lists(
    st.one_of(submits, submits, submits, cancels, replaces, replaces, owner_replaces, expiries),
    min_size=1,
    max_size=60,
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def run(book: OrderBook, ops, first_id: int = 0):
    """Apply `ops`; order ids are positions (first_id + index) so cancels/replaces hit real orders."""
    results = []
    for i, op in enumerate(ops, start=first_id):
        results.append(apply_op(book, i, op))
    return results


def apply_op(book: OrderBook, i: int, op):
    if op[0] == "submit":
        _, side, price, qty, order_type, tif, post_only, member, stp = op
        return book.submit(
            i,
            side,
            price,
            qty,
            type=order_type,
            tif=tif,
            post_only=post_only,
            member=member,
            stp=stp,
            owner=[member, i],
        )
    if op[0] == "cancel":
        return book.cancel(resolve_target(book, op))
    if op[0] == "replace":
        return book.replace(resolve_target(book, op), resolve_price(book, op), op[3])
    if op[0] == "owner_replace":
        return book.replace(
            resolve_target(book, op),
            resolve_price(book, op),
            new_total_qty=op[3],
            owner_update=owner_update(op),
        )
    return book.expire_day()


def owner_update(op):
    return (1, op[4]) if op[3] is None else (slice(1, None), [op[4], op[3]])


def resolve_target(book: OrderBook, op):
    live = sorted(resting(book))
    if op[1] < 0 or not live:
        return "unknown"
    return live[op[1] % len(live)]


def resolve_price(book: OrderBook, op):
    if op[2] != "same":
        return op[2]
    current = book.order(resolve_target(book, op))
    return current["price"] if current else 100


def as_command(book: OrderBook, i: int, op):
    if op[0] == "submit":
        _, side, price, qty, order_type, tif, post_only, member, stp = op
        return submit_command(
            i,
            side,
            price,
            qty,
            type=order_type,
            tif=tif,
            post_only=post_only,
            member=member,
            stp=stp,
            owner=[member, i],
        )
    if op[0] == "cancel":
        return cancel_command(resolve_target(book, op))
    if op[0] == "owner_replace":
        return replace_command(
            resolve_target(book, op),
            resolve_price(book, op),
            new_total_qty=op[3],
            owner_update=owner_update(op),
        )
    return replace_command(resolve_target(book, op), resolve_price(book, op), op[3])


def resting(book: OrderBook):
    return {
        row[0]: row for row in book.snapshot()["orders"]
    }  # id -> [id, side, price, qty, filled, arrival, ...]


@SETTINGS
@given(operations)
def test_book_is_never_crossed_at_rest_and_depth_matches_orders(ops):
    book = OrderBook("P")
    for i, op in enumerate(ops):
        apply_op(book, i, op)
        bid, ask = book.best_bid(), book.best_ask()
        if bid is not None and ask is not None:
            assert bid < ask
        rows = resting(book).values()
        assert len(book) == len(rows)
        depth = book.depth(levels=1000)
        assert sum(q for _, q, _ in depth["bids"]) == sum(r[3] for r in rows if r[1] == "BUY")
        assert sum(q for _, q, _ in depth["asks"]) == sum(r[3] for r in rows if r[1] == "SELL")
        assert all(q > 0 and n > 0 for side in depth.values() for _, q, n in side)
        assert [p for p, _, _ in depth["bids"]] == sorted({p for p, _, _ in depth["bids"]}, reverse=True)
        assert [p for p, _, _ in depth["asks"]] == sorted({p for p, _, _ in depth["asks"]})


@SETTINGS
@given(operations)
def test_quantity_is_conserved_per_order_and_in_total(ops):
    """entered (submitted qty + replace changes) = filled + resting + cancelled, for every order."""
    book = OrderBook("P")
    entered = defaultdict(int)
    filled = defaultdict(int)
    cancelled = defaultdict(int)
    bought = sold = 0
    for i, op in enumerate(ops):
        events = apply_op(book, i, op)
        if op[0] == "submit" and events[0][0] != "REJECTED":
            entered[i] += op[3]
        for e in map(named, events):
            if e.kind == "REPLACED":
                entered[e.order_id] += e.qty - e.old_qty
            elif e.kind in ("FILLED", "PARTIALLY_FILLED"):
                assert e.filled > filled[e.order_id]
                assert e.filled - filled[e.order_id] == e.last_qty
                filled[e.order_id] = e.filled
            elif e.kind == "CANCELLED":
                cancelled[e.order_id] += e.qty
            elif e.kind == "TRADE":
                assert e.qty > 0
                if e.taker_side == "BUY":
                    bought += e.qty
                else:
                    sold += e.qty
        rows = resting(book)
        for order_id, qty in entered.items():
            open_qty = rows[order_id][3] if order_id in rows else 0
            assert filled[order_id] + open_qty + cancelled[order_id] == qty, order_id
            if order_id in rows:
                assert rows[order_id][4] == filled[order_id]
    total_fills = sum(filled.values())
    assert total_fills == 2 * (bought + sold)  # every trade fills a taker and a maker
    assert sum(entered.values()) == total_fills + sum(r[3] for r in resting(book).values()) + sum(
        cancelled.values()
    )


@SETTINGS
@given(operations)
def test_fills_go_to_the_best_price_then_the_earliest_arrival(ops):
    """The makers an order touches are a prefix of the opposite side sorted by (price, arrival).

    Arrival is modelled here, independently of the book: an order arrives when it is submitted
    and again when a replace changes its price or raises its quantity.
    """
    book = OrderBook("P")
    arrival = {}
    for i, op in enumerate(ops):
        before = resting(book)
        events = apply_op(book, i, op)
        if op[0] == "submit" and events[0][0] != "REJECTED":
            arrival[i] = i
        for e in map(named, events):
            if e.kind == "REPLACED":
                loses = e.price != e.old_price or e.qty > e.old_qty
                assert e.priority_kept is not loses
                if loses:
                    arrival[e.order_id] = i
        trades = [named(e) for e in events if e[0] == "TRADE"]
        if not trades:
            continue
        taker_id = trades[0].order_id
        taker_side = trades[0].taker_side
        sign = 1 if taker_side == "BUY" else -1  # buyers take the lowest ask first
        queue = sorted(
            (r for r in before.values() if r[1] != taker_side and r[0] != taker_id),
            key=lambda r: (sign * r[2], arrival[r[0]]),
        )
        touched = []
        for e in map(named, events):
            if e.kind == "TRADE":
                assert e.price == before[e.maker_order_id][2]  # trade at the resting price
                touched.append(e.maker_order_id)
            elif e.kind == "CANCELLED" and e.reason == "STP" and e.order_id != taker_id:
                touched.append(e.order_id)
        assert touched == [r[0] for r in queue[: len(touched)]]


@SETTINGS
@given(operations, st.data())
def test_snapshot_restore_then_continue_equals_the_uninterrupted_run(ops, data):
    cut = data.draw(st.integers(0, len(ops)))
    straight = OrderBook("P")
    expected = run(straight, ops)
    first = OrderBook("P")
    head = run(first, ops[:cut])
    restored = OrderBook.restore(json.loads(json.dumps(first.snapshot())))
    tail = run(restored, ops[cut:], first_id=cut)
    assert json.loads(json.dumps(head + tail)) == json.loads(json.dumps(expected))
    assert restored.snapshot() == straight.snapshot()


@SETTINGS
@given(operations)
def test_same_input_gives_the_same_output(ops):
    a, b = OrderBook("P"), OrderBook("P")
    assert run(a, ops) == run(b, ops)
    assert a.snapshot() == b.snapshot()


@SETTINGS
@given(operations)
def test_apply_equals_the_single_calls(ops):
    ops = [op for op in ops if op[0] != "expire_day"]
    single = OrderBook("P")
    expected = run(single, ops)
    batch = OrderBook("P")
    # "same" prices resolve against the single-call book's state before each operation
    commands = []
    probe = OrderBook("P")
    for i, op in enumerate(ops):
        commands.append(as_command(probe, i, op))
        apply_op(probe, i, op)
    events, ends = batch.apply(commands)
    starts = ([0] + ends)[: len(ends)]
    assert [events[a:b] for a, b in zip(starts, ends, strict=True)] == expected
    assert batch.snapshot() == single.snapshot()


@SETTINGS
@given(operations)
def test_events_carry_what_a_caller_would_read_from_the_book_after_the_operation(ops):
    """ACCEPTED.filled, REPLACED.filled / resting / old_owner: a caller of `apply` cannot read the
    book between commands, so the events say what the book would have answered right after each."""
    book = OrderBook("P")
    for i, op in enumerate(ops):
        owners_before = {o: row[10] for o, row in resting(book).items()}
        events = apply_op(book, i, op)
        for e in map(named, events):
            if e.kind == "ACCEPTED":
                assert e.filled == book.order(e.order_id)["filled"]
            elif e.kind == "REPLACED":
                after = book.order(e.order_id)
                assert e.resting is (after is not None)
                if after is not None:
                    assert e.filled == after["filled"]
                    assert e.owner == after["owner"]
                assert e.old_owner == owners_before[e.order_id]
                if op[0] == "owner_replace":
                    expected = list(owners_before[e.order_id])
                    where, values = owner_update(op)
                    expected[where] = values
                    assert e.owner == expected
