"""The orders.new contract: parsing, MALFORMED for every kind of bad input, and the committed schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clearing.domain.orders import (
    CancelOrder,
    NewOrder,
    Rejection,
    ReplaceOrder,
    order_message_json_schema,
    parse_order,
)
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "action": "NEW",
    "client_order_id": "C1",
    "member_id": "MBR01",
    "account": "MBR01-HOUSE",
    "symbol": "ACME",
    "side": "BUY",
    "type": "LIMIT",
    "price": "125.40",
    "quantity": 100,
    "time_in_force": "GTC",
    "sent_at": "2026-11-24T14:30:00.123Z",
}


def raw(**changes):
    body = {**GOOD, **changes}
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_the_committed_json_schema_is_generated_from_the_models():
    committed = json.loads((ROOT / "schemas" / "orders.new.schema.json").read_text())
    assert committed == order_message_json_schema(), (
        "schemas/ is stale: regenerate it (see docs/order-contract.md)"
    )


def test_new_cancel_replace_parse():
    assert isinstance(parse_order(raw()), NewOrder)
    assert isinstance(parse_order(raw(price=125.4)), NewOrder)  # a JSON number is accepted
    cancel = {
        "action": "CANCEL",
        "client_order_id": "C2",
        "member_id": "MBR01",
        "symbol": "ACME",
        "orig_client_order_id": "C1",
    }
    assert isinstance(parse_order(json.dumps(cancel).encode()), CancelOrder)
    replace = {**cancel, "action": "REPLACE", "quantity": 50}
    assert isinstance(parse_order(json.dumps(replace).encode()), ReplaceOrder)


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00",
        b"[]",
        b"null",
        b"42",
        raw(quantity=0),
        raw(quantity=-5),
        raw(quantity="100"),
        raw(quantity=1.5),
        raw(price="NaN"),
        raw(price="Infinity"),
        raw(price="1e400"),
        raw(price="-1"),
        raw(price="1000000000000"),
        raw(side="HOLD"),
        raw(type="STOP"),
        raw(time_in_force="GTD"),
        raw(extra=1),
        raw(member_id=...),
        raw(symbol=...),
        raw(price=...),
        raw(type="MARKET"),
        raw(sent_at="yesterday"),
        raw(sent_at="2026-11-24T14:30:00+01:00"),
        raw(sent_at="2026-11-24T14:30:00"),
        raw(post_only="yes"),
        raw(stp="CANCEL_ALL"),
        raw(route="DARK"),
        raw(action="AMEND"),
        raw(client_order_id=""),
        raw(client_order_id="x" * 65),
        b"{" * 100_000,
        b'{"action": "NEW"' + b" " * (1 << 20) + b"}",
        json.dumps(
            {
                "action": "REPLACE",
                "client_order_id": "C2",
                "member_id": "M",
                "symbol": "ACME",
                "orig_client_order_id": "C1",
            }
        ).encode(),
    ],
)
def test_bad_input_is_a_malformed_rejection_with_a_message(bad):
    result = parse_order(bad)
    assert isinstance(result, Rejection) and result.reason == "MALFORMED" and result.message


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.dictionaries(
            st.sampled_from(list(GOOD) + ["x"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=10), st.floats(), st.booleans()),
        ).map(lambda d: json.dumps({**GOOD, **d}).encode()),
    )
)
def test_nothing_raises_out_of_parse_order(data):
    result = parse_order(data)
    assert isinstance(result, NewOrder | CancelOrder | ReplaceOrder | Rejection)


def _with_duplicate(text: str) -> bytes:
    """GOOD with `text` (more members, JSON) inserted before the closing brace."""
    return (json.dumps(GOOD)[:-1] + ", " + text + "}").encode()


@pytest.mark.parametrize(
    "bad, key",
    [
        (_with_duplicate('"side": "SELL"'), "side"),  # the last one would win: a BUY becoming a SELL
        (_with_duplicate('"side" : "BUY"'), "side"),  # same value, whitespace before the colon
        (_with_duplicate('"\\u0073ide": "SELL"'), "side"),  # the key spelt with an escape
        (_with_duplicate('"quantity": 100'), "quantity"),
        (('{"side": {"a": {"b": 1}}, ' + json.dumps(GOOD)[1:]).encode(), "side"),  # dropped one nested
        (_with_duplicate('"client_order_id": "C:1:2"'), "client_order_id"),
    ],
)
def test_a_duplicate_key_is_malformed_and_named(bad, key):
    result = parse_order(bad)
    assert isinstance(result, Rejection) and result.reason == "MALFORMED", result
    assert f"duplicate key '{key}'" in result.message
    assert result.member_id == "MBR01"  # the rejection still goes to the member


@pytest.mark.parametrize(
    "good",
    [
        raw(client_order_id="C:1:2", account="MBR01-HOUSE", sent_at="2026-11-24T14:30:00+00:00"),
        json.dumps(GOOD).replace('"C1"', '"C\\u003a1"').encode(),  # escapes are read exactly
        json.dumps(GOOD, indent=2).encode(),
        json.dumps(GOOD, separators=(",", ":")).encode(),
        json.dumps({**GOOD, "member_id": "A:B"}).encode(),
    ],
)
def test_no_duplicate_no_false_alarm(good):
    assert isinstance(parse_order(good), NewOrder)
