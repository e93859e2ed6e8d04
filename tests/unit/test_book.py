"""Order book rules, one test per rule: Given a book, When an order arrives, Then these events."""

from __future__ import annotations

import json

import pytest
from clearing.domain.book import OWNER_REPLACE, OrderBook, cancel_command, replace_command, submit_command
from clearing.domain.book_events import named


def kinds(events):
    return [e[0] for e in events]


def trades(events):
    return [named(e) for e in events if e[0] == "TRADE"]


def only(events, kind):
    return [named(e) for e in events if e[0] == kind]


@pytest.fixture
def book():
    return OrderBook("ACME")


# ------------------------------------------------------------------ resting and depth


def test_limit_order_that_does_not_cross_rests_and_is_accepted(book):
    events = book.submit("B1", "BUY", 100, 10, owner=["MBR01", "ACC", "C1", 100])
    assert events == [("ACCEPTED", "B1", ["MBR01", "ACC", "C1", 100], "BUY", 100, 10, 0)]
    assert book.best_bid() == 100 and book.best_ask() is None and len(book) == 1
    info = book.order("B1")
    assert info["qty"] == 10 and info["filled"] == 0 and info["owner"] == ["MBR01", "ACC", "C1", 100]


def test_depth_aggregates_levels_best_first(book):
    book.submit(1, "BUY", 99, 5)
    book.submit(2, "BUY", 100, 7)
    book.submit(3, "BUY", 100, 3)
    book.submit(4, "SELL", 102, 4)
    book.submit(5, "SELL", 101, 6)
    assert book.depth() == {"bids": [(100, 10, 2), (99, 5, 1)], "asks": [(101, 6, 1), (102, 4, 1)]}
    assert book.depth(levels=1) == {"bids": [(100, 10, 2)], "asks": [(101, 6, 1)]}


# ------------------------------------------------------------- matching and priority


def test_trade_happens_at_the_resting_orders_price(book):
    book.submit("S1", "SELL", 100, 10, owner="maker")
    events = book.submit("B1", "BUY", 105, 10, owner="taker")
    (trade,) = trades(events)
    assert trade.price == 100 and trade.qty == 10
    assert trade.order_id == "B1" and trade.owner == "taker"
    assert trade.maker_order_id == "S1" and trade.maker_owner == "maker"
    assert trade.taker_side == "BUY" and trade.taker_remaining == 0 and trade.maker_remaining == 0
    assert kinds(events) == ["TRADE", "FILLED", "FILLED"]  # maker's fill, then taker's
    assert len(book) == 0


def test_partial_fill_of_the_maker_leaves_it_resting_with_the_rest(book):
    book.submit("S1", "SELL", 100, 10)
    events = book.submit("B1", "BUY", 100, 4)
    assert kinds(events) == ["TRADE", "PARTIALLY_FILLED", "FILLED"]
    maker = named(events[1])
    assert (maker.order_id, maker.filled, maker.remaining, maker.last_price, maker.last_qty) == (
        "S1",
        4,
        6,
        100,
        4,
    )
    assert book.order("S1")["qty"] == 6 and book.order("S1")["filled"] == 4


def test_partial_fill_of_the_taker_rests_its_remainder(book):
    book.submit("S1", "SELL", 100, 4)
    events = book.submit("B1", "BUY", 100, 10)
    assert kinds(events) == ["TRADE", "FILLED", "PARTIALLY_FILLED", "ACCEPTED"]
    taker = named(events[2])
    assert (taker.filled, taker.remaining) == (4, 6)
    assert named(events[3]).qty == 6
    assert book.best_bid() == 100 and book.order("B1")["filled"] == 4


def test_better_price_fills_first_then_earlier_arrival(book):
    book.submit("S_late_101", "SELL", 101, 5)
    book.submit("S_early_102", "SELL", 102, 5)
    book.submit("S_first_101", "SELL", 101, 5)  # same price as S_late_101 but arrives later
    events = book.submit("B1", "BUY", 102, 12)
    assert [(t.maker_order_id, t.price, t.qty) for t in trades(events)] == [
        ("S_late_101", 101, 5),
        ("S_first_101", 101, 5),
        ("S_early_102", 102, 2),
    ]


def test_taker_sweeps_levels_up_to_its_limit_only(book):
    book.submit("S1", "SELL", 100, 5)
    book.submit("S2", "SELL", 101, 5)
    book.submit("S3", "SELL", 103, 5)
    events = book.submit("B1", "BUY", 101, 20)
    assert [t.maker_order_id for t in trades(events)] == ["S1", "S2"]
    assert book.best_bid() == 101 and book.best_ask() == 103


# -------------------------------------------------------------------- market orders


def test_market_order_sweeps_and_cancels_what_it_cannot_fill(book):
    book.submit("S1", "SELL", 100, 5)
    book.submit("S2", "SELL", 120, 5)
    events = book.submit("M1", "BUY", None, 12, type="MARKET")
    assert [t.price for t in trades(events)] == [100, 120]
    cancelled = only(events, "CANCELLED")[-1]
    assert (cancelled.order_id, cancelled.qty, cancelled.reason, cancelled.filled) == (
        "M1",
        2,
        "IOC_REMAINDER",
        10,
    )
    assert len(book) == 0


def test_market_order_on_an_empty_side_is_cancelled(book):
    assert book.submit("M1", "SELL", None, 5, type="MARKET") == [
        ("CANCELLED", "M1", None, 5, "IOC_REMAINDER", 0)
    ]


def test_market_order_with_a_price_is_rejected(book):
    assert book.submit("M1", "BUY", 100, 5, type="MARKET") == [("REJECTED", "M1", None, "INVALID_PRICE")]


# --------------------------------------------------------------------- time in force


def test_ioc_fills_what_it_can_and_cancels_the_rest(book):
    book.submit("S1", "SELL", 100, 3)
    events = book.submit("B1", "BUY", 100, 5, tif="IOC")
    assert kinds(events) == ["TRADE", "FILLED", "PARTIALLY_FILLED", "CANCELLED"]
    assert named(events[-1]).reason == "IOC_REMAINDER" and named(events[-1]).qty == 2
    assert book.best_bid() is None


def test_ioc_that_does_not_cross_is_cancelled_without_resting(book):
    book.submit("S1", "SELL", 101, 3)
    assert book.submit("B1", "BUY", 100, 5, tif="IOC") == [("CANCELLED", "B1", None, 5, "IOC_REMAINDER", 0)]
    assert len(book) == 1


def test_fok_that_cannot_fill_completely_does_nothing(book):
    book.submit("S1", "SELL", 100, 3)
    book.submit("S2", "SELL", 101, 3)
    book.submit("S3", "SELL", 102, 10)  # beyond the FOK limit
    before = book.snapshot()
    events = book.submit("B1", "BUY", 101, 7, tif="FOK")
    assert events == [("CANCELLED", "B1", None, 7, "FOK_UNFILLABLE", 0)]
    assert book.snapshot()["orders"] == before["orders"]


def test_fok_that_can_fill_fills_across_levels(book):
    book.submit("S1", "SELL", 100, 3)
    book.submit("S2", "SELL", 101, 4)
    events = book.submit("B1", "BUY", 101, 7, tif="FOK")
    assert [t.qty for t in trades(events)] == [3, 4]
    assert named(events[-1]).kind == "FILLED" and len(book) == 0


def test_market_fok_all_or_nothing(book):
    book.submit("S1", "SELL", 100, 3)
    assert kinds(book.submit("M1", "BUY", None, 4, type="MARKET", tif="FOK")) == ["CANCELLED"]
    assert kinds(book.submit("M2", "BUY", None, 3, type="MARKET", tif="FOK")) == ["TRADE", "FILLED", "FILLED"]


def test_day_orders_expire_at_end_of_day_and_gtc_orders_stay(book):
    book.submit("D1", "BUY", 99, 5, tif="DAY", owner="d1")
    book.submit("G1", "BUY", 98, 5, tif="GTC")
    book.submit("D2", "SELL", 105, 7, tif="DAY")
    book.submit("S1", "SELL", 99, 2)  # partly fills D1 first
    events = book.expire_day()
    assert events == [
        ("CANCELLED", "D1", "d1", 3, "EXPIRED", 2),
        ("CANCELLED", "D2", None, 7, "EXPIRED", 0),
    ]
    assert book.order("G1") is not None and len(book) == 1
    assert book.expire_day() == []


# ------------------------------------------------------------------------ post-only


def test_post_only_that_would_cross_is_cancelled_and_the_book_is_unchanged(book):
    book.submit("S1", "SELL", 100, 5)
    events = book.submit("B1", "BUY", 100, 5, post_only=True)
    assert events == [("CANCELLED", "B1", None, 5, "POST_ONLY_WOULD_CROSS", 0)]
    assert book.depth()["asks"] == [(100, 5, 1)] and book.best_bid() is None


def test_post_only_that_does_not_cross_rests(book):
    book.submit("S1", "SELL", 100, 5)
    assert kinds(book.submit("B1", "BUY", 99, 5, post_only=True)) == ["ACCEPTED"]
    assert book.order("B1")["post_only"] is True


@pytest.mark.parametrize(
    ("order_type", "price", "tif"), [("MARKET", None, "GTC"), ("LIMIT", 99, "IOC"), ("LIMIT", 99, "FOK")]
)
def test_post_only_on_an_order_that_cannot_rest_is_rejected(book, order_type, price, tif):
    events = book.submit("B1", "BUY", price, 5, type=order_type, tif=tif, post_only=True)
    assert events == [("REJECTED", "B1", None, "INVALID_POST_ONLY")]


# ---------------------------------------------------------- self-trade prevention


def test_stp_cancel_newest_cancels_the_incoming_order_after_fills_with_others(book):
    book.submit("OTHER", "SELL", 100, 2, member="M2")
    book.submit("OWN", "SELL", 100, 5, member="M1")
    events = book.submit("B1", "BUY", 100, 10, member="M1", stp="CANCEL_NEWEST")
    assert [t.maker_order_id for t in trades(events)] == ["OTHER"]
    cancelled = only(events, "CANCELLED")
    assert [(c.order_id, c.qty, c.reason, c.filled) for c in cancelled] == [("B1", 8, "STP", 2)]
    assert book.order("OWN")["qty"] == 5 and book.order("B1") is None


def test_stp_cancel_oldest_cancels_the_resting_order_and_keeps_matching(book):
    book.submit("OWN", "SELL", 100, 5, member="M1", owner="own")
    book.submit("OTHER", "SELL", 100, 5, member="M2")
    events = book.submit("B1", "BUY", 100, 5, member="M1", stp="CANCEL_OLDEST")
    assert events[0] == ("CANCELLED", "OWN", "own", 5, "STP", 0)
    assert [t.maker_order_id for t in trades(events)] == ["OTHER"]
    assert len(book) == 0


def test_stp_cancel_both_cancels_resting_and_incoming(book):
    book.submit("OWN", "SELL", 100, 5, member="M1")
    book.submit("OTHER", "SELL", 100, 5, member="M2")
    events = book.submit("B1", "BUY", 100, 5, member="M1", stp="CANCEL_BOTH")
    assert [(c.order_id, c.reason) for c in only(events, "CANCELLED")] == [("OWN", "STP"), ("B1", "STP")]
    assert trades(events) == [] and book.order("OTHER") is not None and len(book) == 1


def test_without_stp_a_member_may_trade_with_itself(book):
    book.submit("OWN", "SELL", 100, 5, member="M1", stp="CANCEL_BOTH")  # the maker's mode does not apply
    events = book.submit("B1", "BUY", 100, 5, member="M1", stp=None)
    assert [t.maker_order_id for t in trades(events)] == ["OWN"]


def test_stp_does_not_apply_between_different_members_or_without_member(book):
    book.submit("S1", "SELL", 100, 5, member="M2")
    book.submit("S2", "SELL", 100, 5, member=None)
    events = book.submit("B1", "BUY", 100, 10, member=None, stp="CANCEL_NEWEST")
    assert len(trades(events)) == 2


def test_fok_counts_stp_cancel_newest_as_a_stop(book):
    book.submit("OWN", "SELL", 100, 5, member="M1")
    book.submit("OTHER", "SELL", 100, 5, member="M2")
    events = book.submit("B1", "BUY", 100, 5, tif="FOK", member="M1", stp="CANCEL_NEWEST")
    assert events == [("CANCELLED", "B1", None, 5, "FOK_UNFILLABLE", 0)]
    events = book.submit("B2", "BUY", 100, 5, tif="FOK", member="M1", stp="CANCEL_OLDEST")
    assert [t.maker_order_id for t in trades(events)] == ["OTHER"]


# --------------------------------------------------------------------------- cancel


def test_cancel_removes_the_order_and_reports_its_open_quantity(book):
    book.submit("S1", "SELL", 100, 10, owner="o")
    book.submit("B1", "BUY", 100, 4)
    assert book.cancel("S1") == [("CANCELLED", "S1", "o", 6, "USER", 4)]
    assert book.best_ask() is None and len(book) == 0 and book.depth()["asks"] == []


def test_cancel_of_an_unknown_or_already_cancelled_order_is_rejected(book):
    book.submit("S1", "SELL", 100, 10)
    book.cancel("S1")
    assert book.cancel("S1") == [("REJECTED", "S1", None, "UNKNOWN_ORDER")]
    assert book.cancel("nope") == [("REJECTED", "nope", None, "UNKNOWN_ORDER")]


# -------------------------------------------------------------------------- replace


def _queue(book, price, side="SELL"):
    """Order ids at one price, in the order they would fill."""
    events = book.submit("PROBE", "BUY" if side == "SELL" else "SELL", price, 10**9, tif="IOC")
    return [t.maker_order_id for t in trades(events) if t.price == price]


def test_replace_reducing_quantity_keeps_time_priority(book):
    book.submit("A", "SELL", 100, 10)
    book.submit("B", "SELL", 100, 10)
    events = book.replace("A", new_qty=4)
    assert events == [("REPLACED", "A", None, 100, 4, True, 100, 10, None, 0, True)]
    assert _queue(book, 100) == ["A", "B"]


def test_replace_raising_quantity_loses_time_priority(book):
    book.submit("A", "SELL", 100, 10)
    book.submit("B", "SELL", 100, 10)
    assert named(book.replace("A", new_qty=15)[0]).priority_kept is False
    assert _queue(book, 100) == ["B", "A"]


def test_replace_changing_price_loses_time_priority(book):
    book.submit("A", "SELL", 101, 10)
    book.submit("B", "SELL", 100, 10)
    assert book.replace("A", 100) == [("REPLACED", "A", None, 100, 10, False, 101, 10, None, 0, True)]
    assert _queue(book, 100) == ["B", "A"]
    assert book.depth()["asks"] == []


def test_replace_to_the_same_price_and_quantity_keeps_priority(book):
    book.submit("A", "SELL", 100, 10)
    book.submit("B", "SELL", 100, 10)
    assert named(book.replace("A", 100, 10)[0]).priority_kept is True
    assert _queue(book, 100) == ["A", "B"]


def test_replace_that_crosses_matches_at_the_resting_price(book):
    book.submit("S1", "SELL", 101, 4)
    book.submit("B1", "BUY", 99, 10)
    events = book.replace("B1", 102)
    assert kinds(events) == ["REPLACED", "TRADE", "FILLED", "PARTIALLY_FILLED"]
    assert trades(events)[0].price == 101 and trades(events)[0].order_id == "B1"
    assert book.best_bid() == 102 and book.order("B1")["qty"] == 6 and book.order("B1")["filled"] == 4


def test_post_only_replace_that_would_cross_is_rejected_and_the_order_is_unchanged(book):
    book.submit("S1", "SELL", 101, 4)
    book.submit("B1", "BUY", 99, 10, post_only=True)
    assert book.replace("B1", 101) == [("REJECTED", "B1", None, "POST_ONLY_WOULD_CROSS")]
    assert book.order("B1")["price"] == 99 and book.order("B1")["qty"] == 10
    assert kinds(book.replace("B1", 100)) == ["REPLACED"]
    assert book.order("B1")["post_only"] is True


def test_replace_of_an_unknown_order_is_rejected(book):
    assert book.replace("nope", 100, 5) == [("REJECTED", "nope", None, "UNKNOWN_ORDER")]


def test_replace_with_a_total_quantity_not_above_the_filled_quantity_is_rejected(book):
    book.submit("S1", "SELL", 100, 10)
    book.submit("B1", "BUY", 100, 6)
    assert book.replace("S1", new_total_qty=6) == [("REJECTED", "S1", None, "QTY_NOT_ABOVE_FILLED")]
    events = book.replace("S1", new_total_qty=8)  # FIX-style total: open = 8 - 6 filled
    assert events == [("REPLACED", "S1", None, 100, 2, True, 100, 4, None, 6, True)]


@pytest.mark.parametrize(
    ("price", "qty", "reason"),
    [(100, 0, "INVALID_QTY"), (0, 5, "INVALID_PRICE"), (100.5, 5, "INVALID_PRICE")],
)
def test_replace_with_an_invalid_price_or_quantity_is_rejected(book, price, qty, reason):
    book.submit("S1", "SELL", 100, 10)
    assert book.replace("S1", price, qty) == [("REJECTED", "S1", None, reason)]
    assert book.order("S1")["qty"] == 10


def test_replace_can_change_the_owner_value(book):
    book.submit("S1", "SELL", 100, 10, owner=["M", "A", "C1"])
    events = book.replace("S1", 101, owner=["M", "A", "C2"])
    assert named(events[0]).owner == ["M", "A", "C2"] and book.order("S1")["owner"] == ["M", "A", "C2"]


# ----------------------------------------------------------------------- rejections


@pytest.mark.parametrize(
    ("args", "kwargs", "reason"),
    [
        (("X", "HOLD", 100, 5), {}, "INVALID_SIDE"),
        (("X", "BUY", 100, 0), {}, "INVALID_QTY"),
        (("X", "BUY", 100, 2.5), {}, "INVALID_QTY"),
        (("X", "BUY", -1, 5), {}, "INVALID_PRICE"),
        (("X", "BUY", None, 5), {}, "INVALID_PRICE"),
        (("X", "BUY", 100, 5), {"type": "STOP"}, "INVALID_TYPE"),
        (("X", "BUY", 100, 5), {"tif": "GTD"}, "INVALID_TIF"),
        (("X", "BUY", 100, 5), {"stp": "DECREMENT"}, "INVALID_STP"),
    ],
)
def test_invalid_orders_are_rejected(book, args, kwargs, reason):
    assert book.submit(*args, **kwargs) == [("REJECTED", "X", None, reason)]
    assert len(book) == 0


def test_duplicate_order_id_of_a_resting_order_is_rejected(book):
    book.submit("B1", "BUY", 100, 5)
    assert book.submit("B1", "BUY", 101, 5, owner="x") == [("REJECTED", "B1", "x", "DUPLICATE_ORDER_ID")]
    assert book.order("B1")["price"] == 100


# ------------------------------------------------------------- snapshot and batches


def test_snapshot_is_plain_json_and_restore_continues_identically(book):
    book.submit("S1", "SELL", 101, 5, owner=["M1", "A", "C1", 101], member="M1", stp="CANCEL_OLDEST")
    book.submit("S2", "SELL", 101, 5, tif="DAY")
    book.submit("B1", "BUY", 99, 5, post_only=True)
    data = json.loads(json.dumps(book.snapshot()))
    restored = OrderBook.restore(data)
    assert restored.snapshot() == book.snapshot()
    follow_up = [("submit", ("B2", "BUY", 101, 7)), ("replace", ("S2", 100)), ("cancel", ("B1",))]
    for name, args in follow_up:
        assert getattr(restored, name)(*args) == getattr(book, name)(*args)
    assert restored.expire_day() == book.expire_day()


def test_restore_rejects_an_unknown_snapshot_version():
    with pytest.raises(ValueError):
        OrderBook.restore({"version": 99, "symbol": "X", "arrival": 0, "orders": []})


def test_apply_returns_the_events_of_the_single_calls_with_their_bounds(book):
    other = OrderBook("ACME")
    commands = [
        submit_command("S1", "SELL", 100, 5),
        submit_command("S2", "SELL", 101, 5, tif="DAY"),
        replace_command("S2", 102, 5),
        replace_command("S1", None, 3),
        submit_command("B1", "BUY", 102, 6, tif="IOC"),
        cancel_command("S2"),
        cancel_command("S2"),
    ]
    events, ends = book.apply(commands)
    expected = [
        other.submit("S1", "SELL", 100, 5),
        other.submit("S2", "SELL", 101, 5, tif="DAY"),
        other.replace("S2", 102, 5),
        other.replace("S1", None, 3),
        other.submit("B1", "BUY", 102, 6, tif="IOC"),
        other.cancel("S2"),
        other.cancel("S2"),
    ]
    starts = [0] + ends[:-1]
    assert [events[a:b] for a, b in zip(starts, ends, strict=True)] == expected


@pytest.mark.parametrize("form", ["price_and_qty", "qty_only", "with_owner"])
@pytest.mark.parametrize(("new_qty", "first_after"), [(4, "A"), (10, "A"), (15, "B")])
def test_replace_priority_rule_is_the_same_on_every_call_form(book, form, new_qty, first_after):
    """`replace(id, price, qty)` takes an inline fast path; the other forms the general one."""
    book.submit("A", "SELL", 100, 10)
    book.submit("B", "SELL", 100, 10)
    if form == "price_and_qty":
        events = book.replace("A", 100, new_qty)
    elif form == "qty_only":
        events = book.replace("A", new_qty=new_qty)
    else:
        events = book.replace("A", 100, new_qty, owner="new-owner")
    assert named(events[0]).priority_kept is (first_after == "A")
    assert _queue(book, 100)[0] == first_after


def test_depth_of_zero_levels_is_empty(book):
    book.submit(1, "BUY", 99, 5)
    assert book.depth(levels=0) == {"bids": [], "asks": []}


@pytest.mark.parametrize(
    "command",
    [
        replace_command("S1", "101", 5),
        replace_command("S1", 101, 5.0),
        replace_command("S1", True, 5),
        replace_command("S1", 0, 5),
        replace_command("S1", 101, -1),
        replace_command("NOPE", 101, 5),
        replace_command("S1", 99, 5),  # crosses the bid
        replace_command("S1", 100, 50),  # same price, more quantity: loses priority
        submit_command("X", "BUY", 100.5, 5),
        submit_command("X", "BUY", 100, True),
        submit_command("X", "HOLD", 90, 5),
        submit_command("X", "BUY", 90, 5, tif="GTD"),
        submit_command("X", "BUY", 90, 5, stp="CANCEL_ALL"),
        submit_command("X", "BUY", 90, 5, post_only=True),
        submit_command("X", "BUY", 101, 5, tif="FOK"),
        submit_command("X", "BUY", 90, 5, tif="IOC"),  # nothing to meet
        submit_command("S1", "BUY", 90, 5),  # duplicate id
        submit_command("X", "BUY", None, 5, type="MARKET", tif="IOC"),
        cancel_command("NOPE"),
        # match_orders' replaces: a total quantity and an owner update instead of reading the book
        replace_command("S1", 101, new_total_qty=12, owner_update=(slice(3, 5), [105, 12])),
        replace_command("S1", 100, new_total_qty=8, owner_update=(3, 99)),  # keeps priority
        replace_command("S1", 100, owner_update=(slice(3, 4), [98])),  # same price and quantity
        replace_command("S1", 99, owner_update=(slice(3, 4), [99])),  # crosses the bid
        replace_command("S1", 100, new_total_qty=20, owner_update=(3, 99)),  # more: loses priority
        replace_command("B1", 102, new_total_qty=3, owner_update=(3, 102)),  # crosses, fills
        replace_command("NOPE", 101, owner_update=(3, 1)),
        replace_command("S1", 101, owner_update=(9, 1)),  # no such owner field
        replace_command("S1", 101, owner_update=(3,)),
        replace_command("S1", 101, 5, owner_update=(3, 1)),
        replace_command("S1", 101, owner=["x"], owner_update=(3, 1)),
        replace_command("S1", None, new_total_qty=5, owner_update=(3, 1)),
        replace_command("S1", 101, new_total_qty=5.0, owner_update=(3, 1)),
        # OWNER_REPLACE built as a plain tuple (as match_orders does): apply checks its fields
        (OWNER_REPLACE, "S1", 101, (12, slice(3, 5), (101, 12))),
        (OWNER_REPLACE, "S1", "101", (None, 3, 1)),
        (OWNER_REPLACE, "S1", True, (None, 3, 1)),
        (OWNER_REPLACE, "S1", 0, (None, 3, 1)),
        (OWNER_REPLACE, "S1", 101, (0, 3, 1)),
        (OWNER_REPLACE, "S1", 101, (True, 3, 1)),
        (OWNER_REPLACE, "S1", 101, (-3, 3, 1)),
        (OWNER_REPLACE, "S1", 101, (None, "x", 1)),
        (OWNER_REPLACE, "S1", 101, (None, slice(3, 5), 7)),
    ],
)
def test_apply_checks_and_rejects_like_the_single_calls(command):
    """Commands the builders could not validate take the general path and give the same events."""
    books = []
    for _ in range(2):
        b = OrderBook("ACME")
        b.submit("S1", "SELL", 100, 10, owner=["M1", "A1", "S1", 100, 10])
        b.submit("S2", "SELL", 100, 10, owner=["M1", "A1", "S2", 100, 10])
        b.submit("B1", "BUY", 99, 10, owner=["M2", "A2", "B1", 99, 10])
        books.append(b)
    batched, single = books
    code, order_id, a, rest = command
    events, ends = batched.apply([command, cancel_command("S2")])
    assert ends[-1] == len(events)
    first = events[: ends[0]]
    if code == 3:
        expected = single.replace(order_id, a, rest)
    elif code == 1:
        expected = single.cancel(order_id, a)
    elif code in (4, 5):
        qty, tif, member, stp, owner = rest
        expected = single.submit(
            order_id, "BUY" if code == 4 else "SELL", a, qty, tif=tif, member=member, stp=stp
        )
    elif code == 2:
        new_qty, new_total_qty, owner, owner_update = rest
        expected = single.replace(
            order_id, a, new_qty, new_total_qty=new_total_qty, owner=owner, owner_update=owner_update
        )
    elif code == 6:
        new_total_qty, where, values = rest
        expected = single.replace(order_id, a, new_total_qty=new_total_qty, owner_update=(where, values))
    else:
        side, qty, order_type, tif, post_only, member, stp, owner = rest
        expected = single.submit(
            order_id, side, a, qty, type=order_type, tif=tif, post_only=post_only, member=member, stp=stp
        )
    assert first == expected
    assert events[ends[0] :] == single.cancel("S2")
    assert batched.snapshot() == single.snapshot()


def test_apply_rejects_an_unknown_command_code(book):
    with pytest.raises(ValueError):
        book.apply([(9, "X", None, None)])


def test_a_level_emptied_and_refilled_keeps_price_time_priority(book):
    book.submit("A", "SELL", 101, 5)
    book.submit("B", "SELL", 102, 5)
    events, _ = book.apply(
        [replace_command("A", 103, 5), replace_command("B", 101, 5), replace_command("A", 101, 5)]
    )
    assert book.best_ask() == 101
    assert book.depth() == {"bids": [], "asks": [(101, 10, 2)]}
    assert _queue(book, 101) == ["B", "A"]


def test_levels_that_empty_do_not_pile_up_and_the_best_price_stays_right(book):
    """Emptied levels stay until their heap key is dropped; heap rebuilds drop the rest (memory bounded)."""
    for i in range(400):  # each order visits a fresh price, leaving an empty level behind
        book.apply([submit_command(f"B{i}", "BUY", 1000 - i, 1), cancel_command(f"B{i}")])
        book.apply([submit_command(f"S{i}", "SELL", 2000 + i, 1)])
        book.apply([replace_command(f"S{i}", 3000 + i, 1), cancel_command(f"S{i}")])
    book.submit("LAST", "BUY", 500, 3)
    assert book.best_bid() == 500 and book.best_ask() is None
    assert book.depth() == {"bids": [(500, 3, 1)], "asks": []}
    assert len(book._bids) + len(book._asks) < 200  # internal: empty levels were dropped


def test_apply_bounds_are_right_for_batches_past_the_shared_position_list():
    from clearing.domain import book as book_module

    small, big = OrderBook("A"), OrderBook("A")
    commands = [submit_command(i, "SELL", 100 + i % 7, 1) for i in range(3000)]
    commands += [submit_command(10_000, "BUY", 110, 5000, tif="IOC")]
    limit, positions = book_module._POSITIONS_LIMIT, book_module._POSITIONS
    book_module._POSITIONS_LIMIT, book_module._POSITIONS = 1000, list(range(10))  # force the fallback
    try:
        events_a, ends_a = small.apply(commands)
    finally:
        book_module._POSITIONS_LIMIT, book_module._POSITIONS = limit, positions
    events_b, ends_b = big.apply(commands)
    assert events_a == events_b and ends_a == ends_b
    assert ends_b[-1] == len(events_b) and ends_b[:3] == [1, 2, 3]
