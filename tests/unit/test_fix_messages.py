"""FIX message builders and the decoder of what the exchange sends back."""

from __future__ import annotations

import simplefix
from clearing.fix.gateway_protocol import parse_request
from clearing_fix import messages as fix

TRADE = {
    "request_id": "T-0-41-0",
    "kind": "TRADE_REPORT",
    "trade_report_id": "T-0-41-0",
    "symbol": "ACME",
    "price": "125.40",
    "quantity": 100,
    "trade_date": "2026-11-24",
    "executed_at": "2026-11-24T14:30:00.123Z",
    "aggressor": "BUY",
    "buy": {"member_id": "MBR01", "account": "MBR01-HOUSE", "order_id": "MBR01:C-000001"},
    "sell": {"member_id": "MBR02", "account": "MBR02-CLIENT", "order_id": "MBR02:C-000007"},
}
ORDER = {
    "request_id": "MBR04:C-000101",
    "kind": "NEW_ORDER",
    "cl_ord_id": "MBR04:C-000101",
    "member_id": "MBR04",
    "account": "MBR04-HOUSE",
    "symbol": "GLOBX",
    "side": "SELL",
    "quantity": 500,
    "order_type": "LIMIT",
    "price": "48.10",
    "time_in_force": "DAY",
    "sent_at": "2026-11-24T14:31:02.001Z",
}


def reparse(msg: simplefix.FixMessage) -> simplefix.FixMessage:
    msg.append_pair(34, 1, header=True)
    parser = simplefix.FixParser()
    parser.append_buffer(msg.encode())
    parsed = parser.get_message()
    assert parsed is not None
    return parsed


def test_trade_capture_report_carries_the_trade_and_both_sides():
    msg = reparse(fix.trade_capture_report(parse_request(TRADE)))

    assert msg.get(35) == b"AE"
    assert msg.get(571) == b"T-0-41-0"
    assert (msg.get(55), msg.get(32), msg.get(31)) == (b"ACME", b"100", b"125.40")
    assert msg.get(75) == b"20261124"
    assert msg.get(60) == b"20261124-14:30:00.123"
    assert msg.get(552) == b"2"
    assert (msg.get(54, 1), msg.get(448, 1), msg.get(37, 1)) == (b"1", b"MBR01", b"MBR01:C-000001")
    assert (msg.get(54, 2), msg.get(448, 2), msg.get(1, 2)) == (b"2", b"MBR02", b"MBR02-CLIENT")
    assert (msg.get(58, 1), msg.get(58, 2)) == (b"AGGRESSOR", b"PASSIVE")


def test_new_order_single_maps_side_type_and_time_in_force():
    msg = reparse(fix.new_order_single(parse_request(ORDER)))

    assert msg.get(35) == b"D"
    assert msg.get(11) == b"MBR04:C-000101"
    assert (msg.get(54), msg.get(40), msg.get(44), msg.get(59), msg.get(38)) == (
        b"2",
        b"2",
        b"48.10",
        b"0",
        b"500",
    )


def test_market_order_has_no_price():
    market = {**ORDER, "order_type": "MARKET", "price": None, "time_in_force": "IOC"}
    msg = reparse(fix.new_order_single(parse_request(market)))

    assert msg.get(40) == b"1"
    assert msg.get(44) is None
    assert msg.get(59) == b"3"


def test_execution_report_is_decoded_to_names_and_numbers():
    report = fix.new_message(fix.EXECUTION_REPORT)
    for tag, value in (
        (49, "EXCHANGE"),
        (56, "CLEARHOUSE"),
        (34, 7),
        (11, "MBR04:C-000101"),
        (37, "O-1"),
        (17, "X-2"),
        (150, "F"),
        (39, "2"),
        (55, "GLOBX"),
        (54, "2"),
        (38, 500),
        (32, 500),
        (31, "48.10"),
        (151, 0),
        (14, 500),
        (6, "48.10"),
    ):
        report.append_pair(tag, value)

    record = fix.decode_exchange_message(reparse(report))

    assert record["msg_type"] == "ExecutionReport"
    assert record["request_id"] == "MBR04:C-000101"
    assert (record["exec_type"], record["ord_status"], record["side"]) == ("TRADE", "FILLED", "SELL")
    assert (record["last_qty"], record["last_px"], record["cum_qty"], record["leaves_qty"]) == (
        500,
        "48.10",
        500,
        0,
    )
    assert record["fields"]["150"] == "F"
    assert not fix.is_rejection(record)


def test_rejected_trade_capture_report_ack_counts_as_rejection():
    ack = fix.new_message(fix.TRADE_CAPTURE_REPORT_ACK)
    ack.append_pair(571, "T-0-41-0")
    ack.append_pair(939, "1")
    ack.append_pair(751, 99)
    ack.append_pair(58, "unknown instrument")

    record = fix.decode_exchange_message(reparse(ack))

    assert record["trd_rpt_status"] == "REJECTED"
    assert record["trade_report_id"] == "T-0-41-0"
    assert fix.is_rejection(record)


def test_session_and_business_rejects_are_rejections():
    assert fix.is_rejection(fix.decode_exchange_message(reparse(fix.session_reject(5, b"AE", 99, "bad"))))
    record = fix.decode_exchange_message(reparse(fix.business_message_reject(5, b"D", "MBR01:C-1", 0, "no")))
    assert record["request_id"] == "MBR01:C-1"
    assert fix.is_rejection(record)


def test_describe_masks_the_password():
    assert "554=****" in fix.describe(fix.logon(30, "user", "s3cret"))
    assert "s3cret" not in fix.describe(fix.logon(30, "user", "s3cret"))
