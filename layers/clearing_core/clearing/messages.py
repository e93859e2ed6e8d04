"""What every Kafka topic carries: one typed message per topic, the contract producers and consumers share.

Each message is a `TypedDict` (typing_extensions, as pydantic needs on Python 3.11) checked two ways:
- statically: every producer builds its message as the TypedDict (mypy, strict on services);
- at run time: every consumer parses a record with the topic's pydantic `TypeAdapter`
  (`parse(topic, value)`, pydantic-core's JSON parser: no intermediate dict), so a record that does
  not follow the contract is answered with a reason (rejected or dead-lettered) and never reaches the
  domain half-read.
Why TypedDicts and not BaseModels: a message stays a plain dict, so producing one costs what it did
(orjson serialises dicts natively); building a BaseModel per order event and serialising it costs
about 12x more (5 us against 0.4 us a message, measured with pydantic 2.13), several times the 10%
budget the hot path allows; parsing with a TypeAdapter is as fast as orjson plus the hand-written
checks it replaces (1.9 us against 2.5 us for an orders.accepted NEW).

`orders.new` is the OMS's message (its models live in clearing.domain.orders, which validate_orders
parses with its own rules); the JSON Schema of every topic is committed under schemas/ and the
wire-format reference (docs/wire-format.md) is generated from these types (`clearing schemas`; a test
fails when either is stale). Consumers ignore fields they do not know (a producer may add fields; it
may not remove or retype one): the schemas say so with `additionalProperties: true`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, with_config
from typing_extensions import TypedDict

from clearing.domain.bounded import MAX_ID
from clearing.domain.orders import RejectReason, order_message_json_schema
from clearing.topics import (
    EXCHANGE_EXECUTIONS,
    ORDERS_ACCEPTED,
    ORDERS_DEADLETTER,
    ORDERS_EVENTS,
    ORDERS_EXCHANGE,
    ORDERS_NEW,
    ORDERS_REJECTED,
    TRADES_DEADLETTER,
    TRADES_EXECUTED,
)

_STRICT = ConfigDict(strict=True, extra="ignore")
MAX_NUMBER = 10**18  # ticks, shares: above anything validate_orders accepts, far below DynamoDB's 38 digits

Id = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
OrderId = Annotated[
    str,
    Field(
        min_length=3,
        max_length=2 * MAX_ID + 1,
        pattern=r"^[^:]+:.+$",
        description="`member_id:client_order_id` of the order's first NEW; never changes",
    ),
]
Count = Annotated[int, Field(ge=0, le=MAX_NUMBER)]
Positive = Annotated[int, Field(gt=0, le=MAX_NUMBER)]
Offset = Annotated[int, Field(ge=0)]
Decimal = Annotated[str, Field(max_length=64, pattern=r"^-?[0-9]+(\.[0-9]+)?$")]
Side = Literal["BUY", "SELL"]


@with_config(_STRICT)
class Source(TypedDict):
    """The record this message derives from (where its full history starts)."""

    topic: Annotated[str, Field(description="the source topic")]
    partition: Offset
    offset: Offset


@with_config(_STRICT)
class EventSource(TypedDict):
    """The orders.accepted record a matching result derives from, and its place among that record's
    results (`seq`): (partition, offset, seq) orders every result of the matching engine."""

    topic: str
    partition: Offset
    offset: Offset
    seq: Offset


# ------------------------------------------------------------------ orders.accepted / orders.exchange
@with_config(_STRICT)
class _Accepted(TypedDict):
    order_id: OrderId
    member_id: Id
    client_order_id: Annotated[str, Field(min_length=1, max_length=MAX_ID, description="of this action")]
    symbol: Id
    price_ticks: Annotated[
        Positive | None, Field(description="limit price in ticks; null: market / unchanged")
    ]
    price: Annotated[Decimal | None, Field(description="the same price as a decimal string")]
    reserve_price_ticks: Annotated[
        Positive, Field(description="price in ticks at which exposure is reserved (the limit, or the collar)")
    ]
    sent_at: Annotated[str | None, Field(description="when the OMS sent the order (ISO 8601, UTC)")]
    source: Source


@with_config(_STRICT)
class AcceptedNewOrder(_Accepted):
    """A NEW order that passed pre-trade risk (orders.accepted when routed INTERNAL, orders.exchange
    when routed EXCHANGE)."""

    action: Literal["NEW"]
    orig_client_order_id: None
    account: Id
    side: Side
    type: Annotated[str, Field(max_length=MAX_ID, description="LIMIT or MARKET")]
    quantity: Positive
    time_in_force: Annotated[str, Field(max_length=MAX_ID, description="DAY, GTC, IOC or FOK")]
    post_only: NotRequired[bool]
    stp: NotRequired[Annotated[str | None, Field(max_length=MAX_ID)]]
    route: NotRequired[Annotated[str, Field(max_length=MAX_ID, description="INTERNAL or EXCHANGE")]]


_EXCHANGE_ONLY = "on orders.exchange: what the exchange gateway needs for the FIX request"


@with_config(_STRICT)
class AcceptedCancel(_Accepted):
    """A CANCEL of a live order (order_id names the order; client_order_id is the cancel's own), on
    the topic its order went to: orders.accepted, or orders.exchange for an order routed EXCHANGE."""

    action: Literal["CANCEL"]
    orig_client_order_id: Id
    account: NotRequired[Annotated[str, Field(min_length=1, max_length=MAX_ID, description=_EXCHANGE_ONLY)]]
    side: NotRequired[Side]
    quantity: NotRequired[Positive | None]
    route: NotRequired[Annotated[str, Field(max_length=MAX_ID, description=_EXCHANGE_ONLY)]]


@with_config(_STRICT)
class AcceptedReplace(_Accepted):
    """A REPLACE (cancel/replace) of a live order: new price, new total quantity, new reserve; on the
    topic its order went to (orders.exchange for an order routed EXCHANGE: quantity never null)."""

    action: Literal["REPLACE"]
    orig_client_order_id: Id
    quantity: Annotated[Positive | None, Field(description="new total quantity; null keeps it")]
    side: Side
    account: NotRequired[Annotated[str, Field(min_length=1, max_length=MAX_ID, description=_EXCHANGE_ONLY)]]
    type: NotRequired[Annotated[str, Field(max_length=MAX_ID)]]
    time_in_force: NotRequired[Annotated[str, Field(max_length=MAX_ID)]]
    route: NotRequired[Annotated[str, Field(max_length=MAX_ID, description=_EXCHANGE_ONLY)]]


AcceptedOrder = Annotated[AcceptedNewOrder | AcceptedCancel | AcceptedReplace, Field(discriminator="action")]


# ------------------------------------------------------------------ orders.rejected and dead letters
@with_config(_STRICT)
class _OriginalPayload(TypedDict):
    """What a rejection or dead letter keeps of the record: bounded whatever its size (the full bytes
    stay at the source position)."""

    original_b64: Annotated[str, Field(description="the first 4 KiB of the record, base64")]
    original_length: Annotated[int, Field(ge=0, description="the record's length in bytes")]
    original_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    original_truncated: Annotated[bool, Field(description="true when original_b64 holds only a prefix")]


@with_config(_STRICT)
class OrderRejection(_OriginalPayload):
    """An orders.new record that was not accepted: the reason code OMS integrations switch on."""

    rejection_id: Annotated[str, Field(description="`R-{topic}-{partition}-{offset}`: deduplicate on it")]
    reason: Annotated[
        str, Field(description="one of " + ", ".join(r.value for r in RejectReason) + " (more may be added)")
    ]
    message: Annotated[str, Field(description="what is wrong, for people (clipped to 1,024 characters)")]
    member_id: Annotated[str | None, Field(description="null when the record names none")]
    client_order_id: str | None
    symbol: str | None
    source: Source


@with_config(_STRICT)
class DeadLetter(_OriginalPayload):
    """A record a stage could not read (orders.accepted, orders.events or exchange.executions on
    orders.deadletter)."""

    deadletter_id: Annotated[str, Field(description="`D-{topic}-{partition}-{offset}`: deduplicate on it")]
    reason: Annotated[
        str,
        Field(
            description="MALFORMED_ACCEPTED_ORDER, UNKNOWN_SYMBOL, MALFORMED_EVENT, MALFORMED_EXECUTION, UNKNOWN_EXCHANGE_ORDER"
        ),
    ]
    message: str
    symbol: str | None
    source: Source


@with_config(_STRICT)
class TradeDeadLetter(DeadLetter):
    """A trades.executed record clear_trades could not clear (unreadable, unknown member or symbol)."""

    trade_id: str | None
    trade: Annotated[
        ExecutedTrade | None, Field(description="the trade when it follows the contract and fits, else null")
    ]


# ------------------------------------------------------------------ orders.events
@with_config(_STRICT)
class OrderEventHeader(TypedDict):
    """What every order lifecycle event has (keyed by member_id): all the exposure release reads."""

    event_id: Annotated[str, Field(description="`E-{partition}-{offset}-{seq}`: deduplicate on it")]
    order_id: OrderId
    member_id: Id
    symbol: Id
    exposure_delta: Annotated[
        Decimal | None,
        Field(description="change of the member's open exposure (currency units; negative releases)"),
    ]
    source: EventSource


@with_config(_STRICT)
class OrderAccepted(OrderEventHeader):
    """The order (or what is left of it after its fills) rests in the book."""

    type: Literal["ACCEPTED"]
    remaining_qty: Count
    price_ticks: Positive
    side: Side


@with_config(_STRICT)
class OrderFilled(OrderEventHeader):
    """A fill: PARTIALLY_FILLED while quantity stays open, FILLED when none does."""

    type: Literal["PARTIALLY_FILLED", "FILLED"]
    filled_qty: Count
    remaining_qty: Count
    last_price_ticks: Positive
    last_qty: Positive
    trade_id: Annotated[str, Field(description="the trades.executed trade of this fill")]


@with_config(_STRICT)
class OrderCancelled(OrderEventHeader):
    """The open quantity left the book (USER, IOC_REMAINDER, FOK_UNFILLABLE, POST_ONLY_WOULD_CROSS,
    STP, EXPIRED)."""

    type: Literal["CANCELLED"]
    cancelled_qty: Count
    reason: str
    filled_qty: Count
    remaining_qty: Count


@with_config(_STRICT)
class OrderReplaced(OrderEventHeader):
    """A replace took effect: new price and open quantity; whether the order kept its time priority."""

    type: Literal["REPLACED"]
    price_ticks: Positive
    remaining_qty: Count
    priority_kept: bool
    filled_qty: Count
    client_order_id: Annotated[str, Field(description="the replace's own client order id")]


@with_config(_STRICT)
class OrderActionRejected(OrderEventHeader):
    """The book refused an accepted action (UNKNOWN_ORDER, QTY_NOT_ABOVE_FILLED, ...); nothing changed."""

    type: Literal["REJECTED"]
    reason: str
    action: Literal["NEW", "CANCEL", "REPLACE"]
    client_order_id: str


OrderEvent = Annotated[
    OrderAccepted | OrderFilled | OrderCancelled | OrderReplaced | OrderActionRejected,
    Field(discriminator="type"),
]


# ------------------------------------------------------------------ trades.executed
@with_config(_STRICT)
class TradeSide(TypedDict):
    member_id: Id
    account: Id
    order_id: OrderId


@with_config(_STRICT)
class ExecutedTrade(TypedDict):
    """A trade from the matching engine (keyed by symbol), before novation."""

    trade_id: Annotated[
        str, Field(min_length=1, max_length=MAX_ID, description="`T-{partition}-{offset}-{seq}`")
    ]
    symbol: Id
    price_ticks: Positive
    price: Annotated[Decimal, Field(description="the maker's price")]
    quantity: Positive
    trade_date: Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    executed_at: str | None
    aggressor: Annotated[Side, Field(description="the taker's side")]
    buy: TradeSide
    sell: TradeSide
    source: EventSource


# ------------------------------------------------------------------ exchange.executions
@with_config(ConfigDict(strict=True, extra="allow"))
class ExchangeMessage(TypedDict):
    """One message from the exchange's FIX session, FIX codes decoded to names (the FIX proxy publishes
    every inbound application message and reject). Type-specific fields are present for their type."""

    msg_type: Annotated[
        str, Field(description="ExecutionReport, TradeCaptureReportAck, Reject, BusinessMessageReject, ...")
    ]
    msg_seq_num: Annotated[int | None, Field(description="the exchange's MsgSeqNum (34)")]
    sending_time: str | None
    poss_dup: bool
    sender_comp_id: str | None
    target_comp_id: str | None
    request_id: NotRequired[Annotated[str | None, Field(description="our request (ClOrdID / TradeReportID)")]]
    cl_ord_id: NotRequired[str | None]
    orig_cl_ord_id: NotRequired[str | None]
    order_id: NotRequired[str | None]
    exec_id: NotRequired[str | None]
    exec_type: NotRequired[str | None]
    ord_status: NotRequired[str | None]
    symbol: NotRequired[str | None]
    side: NotRequired[str | None]
    order_qty: NotRequired[int | None]
    price: NotRequired[str | None]
    last_qty: NotRequired[int | None]
    last_px: NotRequired[str | None]
    leaves_qty: NotRequired[int | None]
    cum_qty: NotRequired[int | None]
    avg_px: NotRequired[str | None]
    transact_time: NotRequired[str | None]
    ord_rej_reason: NotRequired[int | None]
    trade_report_id: NotRequired[str | None]
    trade_id: NotRequired[str | None]
    trd_rpt_status: NotRequired[str | None]
    trade_report_reject_reason: NotRequired[int | None]
    ref_seq_num: NotRequired[int | None]
    ref_tag_id: NotRequired[int | None]
    ref_msg_type: NotRequired[str | None]
    session_reject_reason: NotRequired[int | None]
    business_reject_reason: NotRequired[int | None]
    text: NotRequired[str | None]
    fields: NotRequired[Annotated[dict[str, str], Field(description="every FIX tag of the message")]]


# ------------------------------------------------------------------ the registry
# Built at import: the adapters the stream stages parse with (each costs 1-5 ms of a cold start).
ACCEPTED_ORDER: TypeAdapter[AcceptedNewOrder | AcceptedCancel | AcceptedReplace] = TypeAdapter(AcceptedOrder)
# the exposure release reads only what every event has: parsing the header alone costs 1.3 us an event
# against 1.8 us for the whole discriminated union (the release's budget is ~7 us an event)
ORDER_EVENT_HEADER: TypeAdapter[OrderEventHeader] = TypeAdapter(OrderEventHeader)
EXECUTED_TRADE: TypeAdapter[ExecutedTrade] = TypeAdapter(ExecutedTrade)
EXCHANGE_MESSAGE: TypeAdapter[ExchangeMessage] = TypeAdapter(ExchangeMessage)


class _TopicMessages(Mapping[str, TypeAdapter[Any]]):
    """Topic -> the adapter of its whole message. The ones no stage parses with (orders.events as a
    whole, orders.rejected, the dead letters: checked by tests, read for the schemas) are built on
    first use, so no Lambda pays for them at cold start."""

    def __init__(self, types: dict[str, Any]) -> None:
        self._types = types
        self._built: dict[str, TypeAdapter[Any]] = {}

    def __getitem__(self, topic: str) -> TypeAdapter[Any]:
        adapter = self._built.get(topic)
        if adapter is None:
            tp = self._types[topic]
            adapter = self._built[topic] = tp if isinstance(tp, TypeAdapter) else TypeAdapter(tp)
        return adapter

    def __iter__(self) -> Iterator[str]:
        return iter(self._types)

    def __len__(self) -> int:
        return len(self._types)


TOPIC_MESSAGES: Mapping[str, TypeAdapter[Any]] = _TopicMessages(
    {
        ORDERS_ACCEPTED: ACCEPTED_ORDER,
        ORDERS_EXCHANGE: ACCEPTED_ORDER,
        ORDERS_REJECTED: OrderRejection,
        ORDERS_EVENTS: OrderEvent,
        ORDERS_DEADLETTER: DeadLetter,
        TRADES_EXECUTED: EXECUTED_TRADE,
        TRADES_DEADLETTER: TradeDeadLetter,
        EXCHANGE_EXECUTIONS: EXCHANGE_MESSAGE,
    }
)
TITLES = {
    ORDERS_NEW: "orders.new message",
    ORDERS_ACCEPTED: "orders.accepted message",
    ORDERS_EXCHANGE: "orders.exchange message",
    ORDERS_REJECTED: "orders.rejected message",
    ORDERS_EVENTS: "orders.events message",
    ORDERS_DEADLETTER: "orders.deadletter message",
    TRADES_EXECUTED: "trades.executed message",
    TRADES_DEADLETTER: "trades.deadletter message",
    EXCHANGE_EXECUTIONS: "exchange.executions message",
}
DESCRIPTIONS = {
    ORDERS_ACCEPTED: "An order action that passed pre-trade risk, routed INTERNAL (keyed by symbol; read by match_orders).",
    ORDERS_EXCHANGE: "An order action routed to the exchange (keyed by symbol; read by exchange_gateway).",
    ORDERS_REJECTED: "An orders.new record that was not accepted (keyed by member_id; published to the OMS).",
    ORDERS_EVENTS: "An order lifecycle event from the matching engine (keyed by member_id; published to the OMS).",
    ORDERS_DEADLETTER: "An orders.accepted, orders.events or exchange.executions record match_orders or an exposure release could not read.",
    TRADES_EXECUTED: "A trade from the matching engine (keyed by symbol; read by clear_trades and exchange_gateway).",
    TRADES_DEADLETTER: "A trade clear_trades could not clear (keyed by symbol).",
    EXCHANGE_EXECUTIONS: "A message from the exchange's FIX session, published by the FIX proxy (keyed by symbol).",
}


class MessageError(ValueError):
    """A record that does not follow its topic's contract; the text says what is wrong, for people."""


def describe(exc: ValidationError) -> str:
    """The first problem of a ValidationError in one line: `field.path: what is wrong`."""
    first = exc.errors(include_url=False, include_context=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"] if not (isinstance(p, str) and p[:1].isupper()))
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}" if where else f"{first['msg']}{more}"


def parse(adapter: TypeAdapter[Any], value: bytes) -> Any:
    """The message `value` holds, checked against `adapter`'s type, or MessageError saying why not."""
    try:
        return adapter.validate_json(value)
    except ValidationError as exc:
        raise MessageError(describe(exc)) from None


def parse_record(adapter: TypeAdapter[Any], value: bytes | None, max_bytes: int) -> Any:
    """`parse` for a Kafka record's value, bounded: an empty value or one over `max_bytes` is a
    MessageError too (the stages dead-letter it with this text), before any parsing."""
    if value is None:
        raise MessageError("empty record (no value)")
    if len(value) > max_bytes:
        raise MessageError(f"record is {len(value)} bytes; the limit is {max_bytes}")
    return parse(adapter, value)


def json_schema(topic: str) -> dict[str, Any]:
    """The committed JSON Schema of one topic's message (schemas/<topic>.schema.json)."""
    if topic == ORDERS_NEW:
        return order_message_json_schema()
    schema = TOPIC_MESSAGES[topic].json_schema()
    for definition in [schema, *schema.get("$defs", {}).values()]:
        if definition.get("type") == "object" and "additionalProperties" not in definition:
            definition["additionalProperties"] = True  # consumers ignore fields they do not know
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": TITLES[topic],
        "description": DESCRIPTIONS[topic],
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }


SCHEMA_TOPICS = (ORDERS_NEW, *TOPIC_MESSAGES)
