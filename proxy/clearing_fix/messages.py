"""FIX 4.4 messages the clearing house exchanges with the stock exchange, built and read with simplefix.

Builders turn the gateway's requests (trade reports, orders) into FIX application messages; the
decoder turns what the exchange sends back (ExecutionReport, TradeCaptureReportAck, Reject,
BusinessMessageReject) into plain JSON-ready dicts for the `exchange.executions` topic.
Header fields (BeginString, CompIDs, MsgSeqNum, SendingTime) are the session's job (session.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import simplefix
from clearing.messages import ExchangeMessage

BEGIN_STRING = "FIX.4.4"

# MsgType (35)
HEARTBEAT = b"0"
TEST_REQUEST = b"1"
RESEND_REQUEST = b"2"
REJECT = b"3"
SEQUENCE_RESET = b"4"
LOGOUT = b"5"
LOGON = b"A"
EXECUTION_REPORT = b"8"
NEW_ORDER_SINGLE = b"D"
ORDER_CANCEL_REQUEST = b"F"
ORDER_CANCEL_REPLACE_REQUEST = b"G"
BUSINESS_MESSAGE_REJECT = b"j"
TRADE_CAPTURE_REPORT = b"AE"
TRADE_CAPTURE_REPORT_ACK = b"AR"

ADMIN_MSG_TYPES = frozenset({HEARTBEAT, TEST_REQUEST, RESEND_REQUEST, REJECT, SEQUENCE_RESET, LOGOUT, LOGON})

MSG_TYPE_NAMES = {
    b"0": "Heartbeat",
    b"1": "TestRequest",
    b"2": "ResendRequest",
    b"3": "Reject",
    b"4": "SequenceReset",
    b"5": "Logout",
    b"A": "Logon",
    b"8": "ExecutionReport",
    b"D": "NewOrderSingle",
    b"F": "OrderCancelRequest",
    b"G": "OrderCancelReplaceRequest",
    b"j": "BusinessMessageReject",
    b"AE": "TradeCaptureReport",
    b"AR": "TradeCaptureReportAck",
}

# Header tags: rebuilt by the session on every send / resend.
HEADER_TAGS = frozenset({8, 9, 35, 34, 43, 49, 52, 56, 97, 122, 10})

SIDE_CODES = {"BUY": "1", "SELL": "2"}
SIDE_NAMES = {v: k for k, v in SIDE_CODES.items()}
ORD_TYPE_CODES = {"MARKET": "1", "LIMIT": "2"}
TIME_IN_FORCE_CODES = {"DAY": "0", "GTC": "1", "IOC": "3", "FOK": "4"}
EXEC_TYPE_NAMES = {
    "0": "NEW",
    "4": "CANCELED",
    "5": "REPLACED",
    "8": "REJECTED",
    "F": "TRADE",
}
ORD_STATUS_NAMES = {
    "0": "NEW",
    "1": "PARTIALLY_FILLED",
    "2": "FILLED",
    "4": "CANCELED",
    "8": "REJECTED",
}
TRD_RPT_STATUS_NAMES = {"0": "ACCEPTED", "1": "REJECTED"}


def fix_timestamp(iso: str) -> str:
    """ISO-8601 UTC ('2026-11-24T14:30:00.123Z') -> FIX UTCTimestamp ('20261124-14:30:00.123')."""
    moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return moment.strftime("%Y%m%d-%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def fix_date(iso_date: str) -> str:
    """'2026-11-24' -> FIX LocalMktDate '20261124'."""
    return iso_date.replace("-", "")


def new_message(msg_type: bytes) -> simplefix.FixMessage:
    msg = simplefix.FixMessage()
    msg.append_pair(8, BEGIN_STRING, header=True)
    msg.append_pair(35, msg_type, header=True)
    return msg


def _text(msg: simplefix.FixMessage, tag: int, nth: int = 1) -> str | None:
    value = msg.get(tag, nth)
    return None if value is None else value.decode("latin-1")


def _int(msg: simplefix.FixMessage, tag: int) -> int | None:
    value = msg.get(tag)
    return None if value is None else int(float(value))


# ------------------------------------------------------------------ application messages (outbound)


def trade_capture_report(report: Any) -> simplefix.FixMessage:
    """35=AE for one executed trade; TradeReportID (571) = trade_id. `report` is a TradeReportRequest."""
    msg = new_message(TRADE_CAPTURE_REPORT)
    msg.append_pair(571, report.trade_report_id)
    msg.append_pair(487, "0")  # TradeReportTransType New
    msg.append_pair(856, "0")  # TradeReportType Submit
    msg.append_pair(828, "0")  # TrdType Regular
    msg.append_pair(570, "N")  # PreviouslyReported
    msg.append_pair(55, report.symbol)
    msg.append_pair(32, report.quantity)
    msg.append_pair(31, report.price)
    msg.append_pair(75, fix_date(report.trade_date))
    msg.append_pair(60, fix_timestamp(report.executed_at))
    msg.append_pair(552, 2)  # NoSides: buyer then seller
    for side_name, side in (("BUY", report.buy), ("SELL", report.sell)):
        msg.append_pair(54, SIDE_CODES[side_name])
        msg.append_pair(37, side.order_id)
        msg.append_pair(1, side.account)
        msg.append_pair(453, 1)  # NoPartyIDs
        msg.append_pair(448, side.member_id)
        msg.append_pair(447, "D")  # proprietary id
        msg.append_pair(452, "1")  # ExecutingFirm
        # FIX 4.4 has no AggressorIndicator (5.0), so the side group's Text says which side aggressed.
        msg.append_pair(58, "AGGRESSOR" if report.aggressor == side_name else "PASSIVE")
    return msg


def new_order_single(order: Any) -> simplefix.FixMessage:
    """35=D for an order routed to the exchange; ClOrdID (11) = the request id."""
    msg = new_message(NEW_ORDER_SINGLE)
    msg.append_pair(11, order.cl_ord_id)
    msg.append_pair(1, order.account)
    msg.append_pair(55, order.symbol)
    msg.append_pair(54, SIDE_CODES[order.side])
    msg.append_pair(60, fix_timestamp(order.sent_at))
    msg.append_pair(38, order.quantity)
    msg.append_pair(40, ORD_TYPE_CODES[order.order_type])
    if order.order_type == "LIMIT":
        msg.append_pair(44, order.price)
    msg.append_pair(59, TIME_IN_FORCE_CODES[order.time_in_force])
    return msg


def order_cancel_request(cancel: Any) -> simplefix.FixMessage:
    """35=F cancelling an earlier exchange order (OrigClOrdID 41)."""
    msg = new_message(ORDER_CANCEL_REQUEST)
    msg.append_pair(41, cancel.orig_cl_ord_id)
    msg.append_pair(11, cancel.cl_ord_id)
    msg.append_pair(1, cancel.account)
    msg.append_pair(55, cancel.symbol)
    msg.append_pair(54, SIDE_CODES[cancel.side])
    msg.append_pair(60, fix_timestamp(cancel.sent_at))
    msg.append_pair(38, cancel.quantity)
    return msg


def order_cancel_replace_request(replace: Any) -> simplefix.FixMessage:
    """35=G replacing price/quantity of an earlier exchange order."""
    msg = new_message(ORDER_CANCEL_REPLACE_REQUEST)
    msg.append_pair(41, replace.orig_cl_ord_id)
    msg.append_pair(11, replace.cl_ord_id)
    msg.append_pair(1, replace.account)
    msg.append_pair(55, replace.symbol)
    msg.append_pair(54, SIDE_CODES[replace.side])
    msg.append_pair(60, fix_timestamp(replace.sent_at))
    msg.append_pair(38, replace.quantity)
    msg.append_pair(40, ORD_TYPE_CODES[replace.order_type])
    if replace.order_type == "LIMIT":
        msg.append_pair(44, replace.price)
    msg.append_pair(59, TIME_IN_FORCE_CODES[replace.time_in_force])
    return msg


# ------------------------------------------------------------------ administrative messages


def logon(
    heartbeat_interval: int,
    username: str | None = None,
    password: str | None = None,
    reset_seq_num: bool = False,
) -> simplefix.FixMessage:
    msg = new_message(LOGON)
    msg.append_pair(98, "0")  # EncryptMethod none (TLS is the transport's job)
    msg.append_pair(108, heartbeat_interval)
    if reset_seq_num:
        msg.append_pair(141, "Y")
    if username:
        msg.append_pair(553, username)
    if password:
        msg.append_pair(554, password)
    return msg


def heartbeat(test_req_id: bytes | str | None = None) -> simplefix.FixMessage:
    msg = new_message(HEARTBEAT)
    if test_req_id is not None:
        msg.append_pair(112, test_req_id)
    return msg


def test_request(test_req_id: str) -> simplefix.FixMessage:
    msg = new_message(TEST_REQUEST)
    msg.append_pair(112, test_req_id)
    return msg


def resend_request(begin_seq_no: int, end_seq_no: int = 0) -> simplefix.FixMessage:
    msg = new_message(RESEND_REQUEST)
    msg.append_pair(7, begin_seq_no)
    msg.append_pair(16, end_seq_no)
    return msg


def sequence_reset_gap_fill(new_seq_no: int) -> simplefix.FixMessage:
    msg = new_message(SEQUENCE_RESET)
    msg.append_pair(123, "Y")
    msg.append_pair(36, new_seq_no)
    return msg


def logout(text: str | None = None) -> simplefix.FixMessage:
    msg = new_message(LOGOUT)
    if text:
        msg.append_pair(58, text)
    return msg


def session_reject(
    ref_seq_num: int, ref_msg_type: bytes | None, reason: int, text: str
) -> simplefix.FixMessage:
    msg = new_message(REJECT)
    msg.append_pair(45, ref_seq_num)
    if ref_msg_type:
        msg.append_pair(372, ref_msg_type)
    msg.append_pair(373, reason)
    msg.append_pair(58, text)
    return msg


def business_message_reject(
    ref_seq_num: int, ref_msg_type: bytes, ref_id: str | None, reason: int, text: str
) -> simplefix.FixMessage:
    msg = new_message(BUSINESS_MESSAGE_REJECT)
    msg.append_pair(45, ref_seq_num)
    msg.append_pair(372, ref_msg_type)
    if ref_id:
        msg.append_pair(379, ref_id)
    msg.append_pair(380, reason)
    msg.append_pair(58, text)
    return msg


# ------------------------------------------------------------------ inbound decoding


def msg_type_of(msg: simplefix.FixMessage) -> bytes:
    return msg.get(35) or b""


def seq_num_of(msg: simplefix.FixMessage) -> int:
    return int(msg.get(34) or 0)


def describe(msg: simplefix.FixMessage) -> str:
    """One-line readable form for logs (password masked)."""
    parts = []
    for tag, value in msg.pairs:
        tag_int = int(tag)
        if tag_int in (9, 10):
            continue
        shown = "****" if tag_int == 554 else value.decode("latin-1")
        parts.append(f"{tag_int}={shown}")
    return "|".join(parts)


def decode_exchange_message(msg: simplefix.FixMessage) -> ExchangeMessage:
    """JSON-ready view of an inbound application message or reject, FIX codes decoded to names: the
    `exchange.executions` message (clearing.messages.ExchangeMessage, schemas/exchange.executions.schema.json)."""
    code = msg_type_of(msg)
    record: ExchangeMessage = {
        "msg_type": MSG_TYPE_NAMES.get(code, code.decode("latin-1")),
        "msg_seq_num": seq_num_of(msg),
        "sending_time": _text(msg, 52),
        "poss_dup": msg.get(43) == b"Y",
        "sender_comp_id": _text(msg, 49),
        "target_comp_id": _text(msg, 56),
    }
    if code == EXECUTION_REPORT:
        side = _text(msg, 54)
        exec_type = _text(msg, 150)
        ord_status = _text(msg, 39)
        record.update(
            {
                "request_id": _text(msg, 11),
                "cl_ord_id": _text(msg, 11),
                "orig_cl_ord_id": _text(msg, 41),
                "order_id": _text(msg, 37),
                "exec_id": _text(msg, 17),
                "exec_type": EXEC_TYPE_NAMES.get(exec_type or "", exec_type),
                "ord_status": ORD_STATUS_NAMES.get(ord_status or "", ord_status),
                "symbol": _text(msg, 55),
                "side": SIDE_NAMES.get(side or "", side),
                "order_qty": _int(msg, 38),
                "price": _text(msg, 44),
                "last_qty": _int(msg, 32),
                "last_px": _text(msg, 31),
                "leaves_qty": _int(msg, 151),
                "cum_qty": _int(msg, 14),
                "avg_px": _text(msg, 6),
                "transact_time": _text(msg, 60),
                "ord_rej_reason": _int(msg, 103),
                "text": _text(msg, 58),
            }
        )
    elif code == TRADE_CAPTURE_REPORT_ACK:
        status = _text(msg, 939)
        record.update(
            {
                "request_id": _text(msg, 571),
                "trade_report_id": _text(msg, 571),
                "trade_id": _text(msg, 1003),
                "trd_rpt_status": TRD_RPT_STATUS_NAMES.get(status or "", status),
                "trade_report_reject_reason": _int(msg, 751),
                "symbol": _text(msg, 55),
                "text": _text(msg, 58),
            }
        )
    elif code == REJECT:
        record.update(
            {
                "ref_seq_num": _int(msg, 45),
                "ref_tag_id": _int(msg, 371),
                "ref_msg_type": _text(msg, 372),
                "session_reject_reason": _int(msg, 373),
                "text": _text(msg, 58),
            }
        )
    elif code == BUSINESS_MESSAGE_REJECT:
        record.update(
            {
                "ref_seq_num": _int(msg, 45),
                "ref_msg_type": _text(msg, 372),
                "request_id": _text(msg, 379),
                "business_reject_reason": _int(msg, 380),
                "text": _text(msg, 58),
            }
        )
    record["fields"] = {
        str(int(tag)): value.decode("latin-1") for tag, value in msg.pairs if int(tag) not in (9, 10)
    }
    return record


def is_rejection(record: dict[str, Any]) -> bool:
    """True when the exchange refused what we sent (drives the alarm metric)."""
    return (
        record["msg_type"] in ("Reject", "BusinessMessageReject")
        or record.get("exec_type") == "REJECTED"
        or record.get("trd_rpt_status") == "REJECTED"
    )
