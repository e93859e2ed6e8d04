"""The order contract: what the OMS publishes on `orders.new`, and how raw bytes become an order.

One JSON object per Kafka message, UTF-8. Three actions: NEW, CANCEL, REPLACE. Anything that does
not parse into one of them is a `Rejection` with reason MALFORMED and the validation message; nothing
raises out of `parse_order` for bad data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetPydanticSchema,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import core_schema

from clearing.domain.bounded import MAX_ID, clip

MAX_MESSAGE_BYTES = 16 * 1024  # an order is a few hundred bytes; anything far larger is not an order
MAX_QUANTITY = 1_000_000_000
MAX_PRICE = Decimal("1000000000")

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-/]*$")]
Symbol = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9.\-]+$")]
Quantity = Annotated[StrictInt, Field(gt=0, le=MAX_QUANTITY)]
Price = Annotated[Decimal, Field(gt=0, lt=MAX_PRICE, max_digits=20, decimal_places=8, allow_inf_nan=False)]
# A timestamp with a UTC offset (suffix Z or +00:00), checked by pydantic-core itself: a Python
# validator here cost about a fifth of parsing an order. JSON Schema: string, format date-time.
UtcDatetime = Annotated[
    datetime, GetPydanticSchema(lambda _type, _handler: core_schema.datetime_schema(tz_constraint=0))
]


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class SelfTradePrevention(StrEnum):
    CANCEL_NEWEST = "CANCEL_NEWEST"
    CANCEL_OLDEST = "CANCEL_OLDEST"
    CANCEL_BOTH = "CANCEL_BOTH"


class Route(StrEnum):
    INTERNAL = "INTERNAL"
    EXCHANGE = "EXCHANGE"


class RejectReason(StrEnum):
    """Stable reason codes on `orders.rejected`; OMS integrations switch on these."""

    MALFORMED = "MALFORMED"
    UNKNOWN_MEMBER = "UNKNOWN_MEMBER"
    MEMBER_SUSPENDED = "MEMBER_SUSPENDED"
    UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
    UNKNOWN_SYMBOL = "UNKNOWN_SYMBOL"
    SYMBOL_HALTED = "SYMBOL_HALTED"
    BAD_TICK = "BAD_TICK"
    BAD_LOT = "BAD_LOT"
    PRICE_OUTSIDE_COLLAR = "PRICE_OUTSIDE_COLLAR"
    QTY_LIMIT = "QTY_LIMIT"
    NOTIONAL_LIMIT = "NOTIONAL_LIMIT"
    CREDIT_LIMIT = "CREDIT_LIMIT"
    DUPLICATE_CLORDID = "DUPLICATE_CLORDID"
    UNKNOWN_ORDER = "UNKNOWN_ORDER"
    STALE_OR_FUTURE_SENT_AT = "STALE_OR_FUTURE_SENT_AT"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)

    client_order_id: Identifier
    member_id: Identifier
    symbol: Symbol
    sent_at: UtcDatetime | None = None


class NewOrder(_Message):
    """A new order: limit or market, with time in force and optional post-only / STP / routing."""

    action: Literal["NEW"]
    account: Identifier
    side: Side
    type: OrderType
    price: Price | None = None
    quantity: Quantity
    time_in_force: TimeInForce
    post_only: StrictBool = False
    stp: SelfTradePrevention | None = None
    route: Route = Route.INTERNAL
    sent_at: UtcDatetime

    @model_validator(mode="after")
    def _price_matches_type(self) -> NewOrder:
        if self.type is OrderType.LIMIT and self.price is None:
            raise ValueError("price is required for a LIMIT order")
        if self.type is OrderType.MARKET and self.price is not None:
            raise ValueError("a MARKET order must not carry a price")
        if self.type is OrderType.MARKET and self.post_only:
            raise ValueError("a MARKET order cannot be post-only")
        return self


class CancelOrder(_Message):
    """Cancel the rest of an order, named by the client order id it was placed (or last replaced) with."""

    action: Literal["CANCEL"]
    orig_client_order_id: Identifier


class ReplaceOrder(_Message):
    """Change price and/or quantity of a resting order (quantity = new total order quantity)."""

    action: Literal["REPLACE"]
    orig_client_order_id: Identifier
    price: Price | None = None
    quantity: Quantity | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> ReplaceOrder:
        if self.price is None and self.quantity is None:
            raise ValueError("a REPLACE must carry a new price and/or quantity")
        return self


OrderMessage = Annotated[NewOrder | CancelOrder | ReplaceOrder, Field(discriminator="action")]
_ORDER_MESSAGE: TypeAdapter[NewOrder | CancelOrder | ReplaceOrder] = TypeAdapter(OrderMessage)


class Rejection(BaseModel):
    """Why an order was refused. `member_id`/`client_order_id` are filled in when they could be read."""

    model_config = ConfigDict(frozen=True)

    reason: RejectReason
    message: str
    member_id: str | None = None
    client_order_id: str | None = None
    symbol: str | None = None


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False)[:5]:
        # a location names the input's keys (an unknown key can be any size): clipped like the text
        loc = ".".join(clip(str(p), MAX_ID) for p in e["loc"] if not isinstance(p, int)) or "message"
        parts.append(f"{loc}: {clip(e['msg'], 200)}")
    more = error.error_count() - 5
    return clip("; ".join(parts) + (f"; and {more} more" if more > 0 else ""))


def _best_effort_identity(raw: bytes) -> dict[str, str | None]:
    """Read member/order ids out of an invalid message, for routing the rejection (key: member id)."""
    import orjson

    try:
        obj = orjson.loads(raw)  # also bounds nesting (1024 levels): never a RecursionError
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(obj, dict):
        return {}
    out: dict[str, str | None] = {}
    for name in ("member_id", "client_order_id", "symbol"):
        value = obj.get(name)
        if isinstance(value, str) and 0 < len(value) <= MAX_ID:
            out[name] = value
    return out


class _DuplicateKey(ValueError):
    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _duplicate_key(raw: bytes) -> str | None:
    """The first key that occurs twice in one object of `raw` (a message that validated), or None.

    JSON parsers keep the last of duplicate keys, so `"side": "BUY", ..., "side": "SELL"` would be a
    SELL. The exact check (the json module with object_pairs_hook: ~4 us an order here, more than
    pydantic's validation of it) runs only when a cheap count (orjson, ~1.4 us) cannot rule them out. The count: the message validated, so it is one
    object of known keys (no ':' in them) and scalar values. Without any escape in the bytes, every
    ':' in the bytes is either the separator of one member or a character of a string, so
    count(':') == members read + ':'s in the string values read holds exactly when no member was
    dropped (a dropped duplicate leaves its separator, and whatever its value held, uncounted)."""
    if b"\\" not in raw:
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if type(obj) is dict:
            expected = len(obj)
            for value in obj.values():
                if type(value) is str and ":" in value:
                    expected += value.count(":")
            if raw.count(b":") == expected:
                return None
    import json

    try:
        json.loads(raw, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        return exc.key
    except (ValueError, RecursionError):
        return None  # pydantic read it; a parser limit here is no evidence of a duplicate
    return None


def parse_order(
    raw: bytes | bytearray | memoryview | None,
) -> NewOrder | CancelOrder | ReplaceOrder | Rejection:
    """Bytes from `orders.new` -> an order message, or a MALFORMED rejection saying what is wrong."""
    if raw is None:
        return Rejection(reason=RejectReason.MALFORMED, message="empty message (no value)")
    raw = bytes(raw)
    if len(raw) > MAX_MESSAGE_BYTES:
        return Rejection(
            reason=RejectReason.MALFORMED,
            message=f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}",
            **_best_effort_identity(raw),
        )
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(
            reason=RejectReason.MALFORMED, message=f"not UTF-8: {exc.reason} at byte {exc.start}"
        )
    try:
        order = _ORDER_MESSAGE.validate_json(raw)
    except ValidationError as exc:
        return Rejection(reason=RejectReason.MALFORMED, message=_describe(exc), **_best_effort_identity(raw))
    except (
        ValueError,
        RecursionError,
    ) as exc:  # defensive: pydantic wraps JSON errors, but never let one escape
        return Rejection(reason=RejectReason.MALFORMED, message=clip(f"unreadable message: {exc}"))
    duplicate = _duplicate_key(raw)
    if duplicate is not None:
        return Rejection(
            reason=RejectReason.MALFORMED,
            message=f"duplicate key '{clip(duplicate, MAX_ID)}' (a key may occur once per object)",
            member_id=order.member_id,
            client_order_id=order.client_order_id,
            symbol=order.symbol,
        )
    return order


# ------------------------------------------------------------------ sent_at plausibility
# Absolute bounds, whatever the record's timestamp: every date in them has a trade date and a
# settlement date downstream (T+n business days never leaves the calendar), and nothing outside them
# is a plausible order time. They also apply to records that carry no timestamp.
SENT_AT_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
SENT_AT_END = datetime(2100, 1, 1, tzinfo=UTC)  # exclusive
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class SentAtWindow:
    """How far sent_at may lie before (`max_age`) or after (`max_lead`) its Kafka record's timestamp."""

    max_age: timedelta
    max_lead: timedelta
    # the same in integer milliseconds, computed once (the check runs for every order)
    max_age_ms: int = field(init=False, repr=False, compare=False)
    max_lead_ms: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "max_age_ms", self.max_age // _MS)
        object.__setattr__(self, "max_lead_ms", self.max_lead // _MS)


def _duration(ms: int) -> str:
    seconds = abs(ms) / 1000
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} days"


def check_sent_at(order: _Message, record_timestamp_ms: int | None, window: SentAtWindow) -> Rejection | None:
    """STALE_OR_FUTURE_SENT_AT when the order's sent_at is implausible, else None.

    Compared with the Kafka record's timestamp (CreateTime set by the OMS's producer, or
    LogAppendTime set by the broker): part of the input, so a redelivery or a replay decides the same,
    which a comparison with the clock would not. A record without a timestamp (-1, or 0/absent in
    hand-made events) is checked against the absolute bounds only. Integer milliseconds throughout: a
    record timestamp far outside datetime's range is just far away."""
    sent_at = order.sent_at
    if sent_at is None:  # CANCEL / REPLACE may omit it
        return None
    problem = None
    if not SENT_AT_EARLIEST <= sent_at < SENT_AT_END:
        problem = (
            f"sent_at {sent_at.isoformat()} is outside {SENT_AT_EARLIEST.date()} .. "
            f"{(SENT_AT_END - timedelta(days=1)).date()}"
        )
    elif record_timestamp_ms is not None and record_timestamp_ms > 0:
        lead = (sent_at - _EPOCH) // _MS - record_timestamp_ms  # > 0: sent_at after the record
        if lead < -window.max_age_ms or lead > window.max_lead_ms:
            where = "after" if lead > 0 else "before"
            limit = window.max_lead if lead > 0 else window.max_age
            problem = (
                f"sent_at {sent_at.isoformat()} is {_duration(lead)} {where} the record's timestamp "
                f"({record_timestamp_ms} ms since the epoch); at most {_duration(limit // _MS)} allowed"
            )
    if problem is None:
        return None
    return Rejection(
        reason=RejectReason.STALE_OR_FUTURE_SENT_AT,
        message=problem,
        member_id=order.member_id,
        client_order_id=order.client_order_id,
        symbol=order.symbol,
    )


def order_message_json_schema() -> dict[str, Any]:
    """The JSON Schema of the `orders.new` contract (committed under schemas/)."""
    schema = _ORDER_MESSAGE.json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "orders.new message"
    schema["description"] = "One order action published by the OMS on the orders.new topic (UTF-8 JSON)."
    return schema
