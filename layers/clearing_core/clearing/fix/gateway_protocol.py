"""The framed request/response protocol between the exchange_gateway Lambda and the FIX proxy.

Frame: 4-byte big-endian unsigned length, then that many bytes of UTF-8 JSON (max 1 MiB).
One request frame gets exactly one response frame, in order, on the same TCP connection.

Request:  {"v": 1, "request_id": "<TradeReportID or ClOrdID>", "kind": "TRADE_REPORT" | "NEW_ORDER"
           | "CANCEL_ORDER" | "REPLACE_ORDER", ...the kind's fields}
Response: {"v": 1, "request_id": ..., "status": "SENT" | "DUPLICATE" | "REJECTED" | "UNAVAILABLE",
           "msg_seq_num": <int or null>, "reason": <str or null>}

SENT: persisted in the session's outbound store and written to the exchange (FIX resend covers it
from then on). DUPLICATE: this request id was sent before, nothing resent. REJECTED: the request is
invalid and will never be sent (do not retry). UNAVAILABLE: no FIX session right now (retry later).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator, model_validator

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20
_LENGTH = struct.Struct(">I")


class FrameError(Exception):
    """The peer sent something that is not a valid frame."""


class GatewayStatus(StrEnum):
    SENT = "SENT"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"
    UNAVAILABLE = "UNAVAILABLE"


# ------------------------------------------------------------------ request models

Side = Literal["BUY", "SELL"]


def _decimal_string(value: Any) -> str:
    try:
        number = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal price: {value!r}") from exc
    if not number.is_finite() or number <= 0:
        raise ValueError(f"price must be positive: {value!r}")
    return str(value)


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    v: int = PROTOCOL_VERSION
    request_id: str = Field(min_length=1, max_length=64)


class TradeSide(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    member_id: str = Field(min_length=1)
    account: str = Field(min_length=1)
    order_id: str = Field(min_length=1)


class TradeReportRequest(_Request):
    """35=AE TradeCaptureReport of one trade executed in our book."""

    kind: Literal["TRADE_REPORT"] = "TRADE_REPORT"
    trade_report_id: str = Field(min_length=1, max_length=64)
    symbol: str = Field(min_length=1)
    price: str
    quantity: int = Field(gt=0)
    trade_date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    executed_at: str
    aggressor: Side
    buy: TradeSide
    sell: TradeSide

    @field_validator("price", mode="before")
    @classmethod
    def _price_is_decimal(cls, value: Any) -> str:
        return _decimal_string(value)

    @model_validator(mode="after")
    def _request_id_is_trade_report_id(self) -> TradeReportRequest:
        if self.request_id != self.trade_report_id:
            raise ValueError("request_id must equal trade_report_id")
        return self


class _OrderRequest(_Request):
    cl_ord_id: str = Field(min_length=1, max_length=64)
    member_id: str = Field(min_length=1)
    account: str = Field(min_length=1)
    symbol: str = Field(min_length=1)
    side: Side
    quantity: int = Field(gt=0)
    sent_at: str

    @model_validator(mode="after")
    def _request_id_is_cl_ord_id(self) -> _OrderRequest:
        if self.request_id != self.cl_ord_id:
            raise ValueError("request_id must equal cl_ord_id")
        return self


class _PricedOrder(_OrderRequest):
    order_type: Literal["LIMIT", "MARKET"]
    price: str | None = None
    time_in_force: Literal["DAY", "GTC", "IOC", "FOK"] = "DAY"

    @field_validator("price", mode="before")
    @classmethod
    def _price_is_decimal(cls, value: Any) -> str | None:
        return None if value is None else _decimal_string(value)

    @model_validator(mode="after")
    def _limit_has_price(self) -> _PricedOrder:
        if self.order_type == "LIMIT" and self.price is None:
            raise ValueError("a LIMIT order needs a price")
        return self


class NewOrderRequest(_PricedOrder):
    """35=D NewOrderSingle."""

    kind: Literal["NEW_ORDER"] = "NEW_ORDER"


class CancelOrderRequest(_OrderRequest):
    """35=F OrderCancelRequest."""

    kind: Literal["CANCEL_ORDER"] = "CANCEL_ORDER"
    orig_cl_ord_id: str = Field(min_length=1)


class ReplaceOrderRequest(_PricedOrder):
    """35=G OrderCancelReplaceRequest."""

    kind: Literal["REPLACE_ORDER"] = "REPLACE_ORDER"
    orig_cl_ord_id: str = Field(min_length=1)


GatewayRequest = Annotated[
    TradeReportRequest | NewOrderRequest | CancelOrderRequest | ReplaceOrderRequest,
    Field(discriminator="kind"),
]
_REQUEST_ADAPTER: TypeAdapter[Any] = TypeAdapter(GatewayRequest)


def parse_request(
    payload: dict[str, Any],
) -> TradeReportRequest | NewOrderRequest | CancelOrderRequest | ReplaceOrderRequest:
    """Validate a request frame's JSON (raises pydantic.ValidationError)."""
    return _REQUEST_ADAPTER.validate_python(payload)


class GatewayResponse(BaseModel):
    model_config = ConfigDict(frozen=True)
    v: int = PROTOCOL_VERSION
    request_id: str | None
    status: GatewayStatus
    msg_seq_num: int | None = None
    reason: str | None = None


# ------------------------------------------------------------------ framing


def encode_frame(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(body)} bytes exceeds {MAX_FRAME_BYTES}")
    return _LENGTH.pack(len(body)) + body


def decode_body(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FrameError(f"frame is not UTF-8 JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise FrameError("frame JSON is not an object")
    return payload


def _check_length(length: int) -> int:
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame length {length} exceeds {MAX_FRAME_BYTES}")
    return length


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """Next frame from an asyncio stream, or None on a clean end of stream between frames."""
    try:
        header = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise FrameError("stream ended inside a frame header") from exc
    length = _check_length(_LENGTH.unpack(header)[0])
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise FrameError("stream ended inside a frame body") from exc
    return decode_body(body)


def _recv_exactly(sock: socket.socket, count: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < count:
        chunk = sock.recv(count - len(chunks))
        if not chunk:
            raise ConnectionError("proxy closed the connection")
        chunks += chunk
    return bytes(chunks)


def recv_frame(sock: socket.socket) -> dict[str, Any]:
    """Blocking read of one frame from a socket (the socket's timeout bounds each recv)."""
    length = _check_length(_LENGTH.unpack(_recv_exactly(sock, _LENGTH.size))[0])
    return decode_body(_recv_exactly(sock, length))
