"""The framed request/response protocol between the gateway Lambda and the proxy."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from clearing.fix.gateway_protocol import (
    MAX_FRAME_BYTES,
    FrameError,
    NewOrderRequest,
    TradeReportRequest,
    decode_body,
    encode_frame,
    parse_request,
    read_frame,
    recv_frame,
)
from pydantic import ValidationError

from tests.unit.test_fix_messages import ORDER, TRADE


def test_frame_is_length_prefixed_json():
    frame = encode_frame({"request_id": "T-1"})

    assert struct.unpack(">I", frame[:4])[0] == len(frame) - 4
    assert decode_body(frame[4:]) == {"request_id": "T-1"}


def test_frames_are_read_back_one_by_one_from_a_stream():
    async def scenario():
        reader = asyncio.StreamReader()
        reader.feed_data(encode_frame({"n": 1}) + encode_frame({"n": 2}))
        reader.feed_eof()
        return [await read_frame(reader), await read_frame(reader), await read_frame(reader)]

    assert asyncio.run(scenario()) == [{"n": 1}, {"n": 2}, None]


def test_truncated_and_oversized_frames_are_errors():
    async def read(data: bytes):
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        return await read_frame(reader)

    with pytest.raises(FrameError):
        asyncio.run(read(encode_frame({"n": 1})[:-2]))
    with pytest.raises(FrameError):
        asyncio.run(read(struct.pack(">I", MAX_FRAME_BYTES + 1)))
    with pytest.raises(FrameError):
        decode_body(b"[1, 2]")


def test_blocking_socket_reader_reassembles_split_frames():
    left, right = socket.socketpair()
    try:
        frame = encode_frame({"request_id": "MBR01:C-1", "status": "SENT"})
        left.sendall(frame[:3])
        left.sendall(frame[3:])
        assert recv_frame(right) == {"request_id": "MBR01:C-1", "status": "SENT"}
    finally:
        left.close()
        right.close()


def test_requests_are_validated_by_kind():
    assert isinstance(parse_request(TRADE), TradeReportRequest)
    assert isinstance(parse_request(ORDER), NewOrderRequest)


@pytest.mark.parametrize(
    "broken",
    [
        {**TRADE, "request_id": "T-other"},  # request id must be the TradeReportID
        {**TRADE, "quantity": 0},
        {**TRADE, "price": "abc"},
        {**ORDER, "price": None},  # LIMIT without a price
        {**ORDER, "side": "SHORT"},
        {**ORDER, "kind": "AMEND"},
    ],
)
def test_invalid_requests_are_refused(broken):
    with pytest.raises(ValidationError):
        parse_request(broken)
