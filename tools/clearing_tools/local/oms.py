"""OMS simulator: a realistic, deterministic order flow for `orders.new` (pure: no I/O, no clock).

`generate_orders(n, seed=..., mix=...)` yields `OmsMessage`s (Kafka key = member id, value = UTF-8 JSON
bytes, plus the order dict and, for deliberately invalid ones, why it is invalid):
- members and their accounts from the reference data (active members only, except the
  SUSPENDED_MEMBER invalid kind), instruments that are open;
- prices: a random walk per instrument around its reference price, on the tick grid, kept within
  +-`price_band_pct` (3 %) of the reference so they pass the 10 % collar; buyers and sellers quote
  around the walk with some crossing so that trades happen;
- quantities: whole lots, 1-20 lots of `lot_unit` (100 shares, or the lot size when larger);
- a mix of LIMIT (DAY/GTC), MARKET, IOC, FOK, post-only NEWs, CANCELs and REPLACEs; cancels and
  replaces target the member's own earlier resting orders by their latest client order id (FIX
  style: a replace's client order id names the order from then on);
- `invalid_fraction` of deliberately bad messages (unknown symbol, bad tick, bad lot, outside collar,
  not JSON, missing field, unknown or suspended member, halted symbol);
- `exchange_fraction` (1 %) of NEWs routed to the exchange;
- sent_at from a synthetic clock: `start_at` + `interval_ms` per message (default the reference
  data's business day), so the same seed gives byte-identical output.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from clearing.domain.refdata import Instrument, ReferenceData, load_bundled_reference_data

DEFAULT_START = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)
INVALID_KINDS = (
    "UNKNOWN_SYMBOL",
    "BAD_TICK",
    "BAD_LOT",
    "OUTSIDE_COLLAR",
    "NOT_JSON",
    "MISSING_FIELD",
    "UNKNOWN_MEMBER",
    "SUSPENDED_MEMBER",
    "HALTED_SYMBOL",
)


@dataclass(frozen=True)
class OrderMix:
    """Relative weights of what the OMS sends (normalised; need not sum to 1)."""

    limit: float = 0.55
    market: float = 0.05
    ioc: float = 0.08
    fok: float = 0.04
    post_only: float = 0.06
    cancel: float = 0.13
    replace: float = 0.09

    @classmethod
    def parse(cls, text: str) -> OrderMix:
        """From "limit=0.6,cancel=0.2" (unnamed kinds keep their default weight)."""
        values: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, _, weight = part.partition("=")
            if name.strip().replace("-", "_") not in cls.__dataclass_fields__:
                raise ValueError(f"unknown order kind {name!r}; kinds: {', '.join(cls.__dataclass_fields__)}")
            values[name.strip().replace("-", "_")] = float(weight)
        return cls(**values)

    def choices(self) -> tuple[list[str], list[float]]:
        kinds = list(self.__dataclass_fields__)
        return kinds, [getattr(self, k) for k in kinds]


@dataclass(frozen=True)
class OmsMessage:
    key: str  # Kafka key: the member id
    value: bytes  # what goes on the wire
    order: dict[str, Any] | None  # None when the value is not JSON
    invalid: str | None = None  # which INVALID_KINDS it is, None for a valid message

    @property
    def action(self) -> str | None:
        return (self.order or {}).get("action")


def create_time_ms(message: OmsMessage) -> int | None:
    """The record's CreateTime: the order's sent_at, as an OMS producer stamps a record when it sends
    the order. The simulator's clock is synthetic (the same seed gives the same bytes), and
    validate_orders checks sent_at against the record's timestamp: stamping the record with the
    wall clock would make every simulated order implausible a day after its synthetic date. None
    (the producer's clock) when the message has no readable sent_at."""
    sent_at = (message.order or {}).get("sent_at") if isinstance(message.order, dict) else None
    if not isinstance(sent_at, str):
        return None
    try:
        moment = datetime.fromisoformat(sent_at.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    ms = int(moment.timestamp() * 1000)
    return ms if ms > 0 else None


@dataclass
class _Resting:
    client_order_id: str  # latest id (changes on replace)
    symbol: str
    side: str
    price_ticks: int
    quantity: int


@dataclass
class _State:
    rng: random.Random
    mid_ticks: dict[str, int]
    open_orders: dict[str, list[_Resting]] = field(default_factory=dict)
    seq: int = 0


def _price(instrument: Instrument, ticks: int) -> str:
    return str(instrument.to_price(ticks).quantize(instrument.tick_size))


def _lot_unit(instrument: Instrument) -> int:
    return max(instrument.lot_size, 100 if instrument.lot_size == 1 else instrument.lot_size)


def generate_orders(
    n: int,
    seed: int = 0,
    mix: OrderMix | None = None,
    invalid_fraction: float = 0.02,
    exchange_fraction: float = 0.01,
    refdata: ReferenceData | None = None,
    start_at: datetime = DEFAULT_START,
    interval_ms: int = 1,
    id_prefix: str | None = None,
    price_band_pct: float = 3.0,
) -> Iterator[OmsMessage]:
    """Yield `n` OMS messages for `orders.new`, the same ones for the same arguments."""
    refdata = refdata or load_bundled_reference_data()
    mix = mix or OrderMix()
    rng = random.Random(seed)
    prefix = f"S{seed}-" if id_prefix is None else id_prefix
    instruments = [i for i in refdata.instruments.values() if i.is_open]
    halted = [i for i in refdata.instruments.values() if not i.is_open]
    members = [m for m in refdata.members.values() if m.is_active]
    suspended = [m for m in refdata.members.values() if not m.is_active]
    state = _State(rng, {i.symbol: i.reference_ticks for i in instruments})
    kinds, weights = mix.choices()

    for index in range(n):
        sent_at = (start_at + timedelta(milliseconds=index * interval_ms)).isoformat(timespec="milliseconds")
        sent_at = sent_at.replace("+00:00", "Z")
        member = rng.choice(members)
        state.seq += 1
        client_order_id = f"{prefix}{member.member_id}-{state.seq:07d}"
        if rng.random() < invalid_fraction:
            yield _invalid(state, rng.choice(INVALID_KINDS), member, client_order_id, sent_at, instruments,
                           halted, suspended, price_band_pct)  # fmt: skip
            continue
        kind = rng.choices(kinds, weights)[0]
        own = state.open_orders.get(member.member_id) or []
        if kind in ("cancel", "replace") and own:
            target = own[rng.randrange(len(own))]
            order = _cancel_or_replace(state, kind, member.member_id, client_order_id, target, sent_at,
                                       refdata.instruments[target.symbol], price_band_pct)  # fmt: skip
        else:
            if kind in ("cancel", "replace"):
                kind = "limit"  # nothing of this member's rests yet
            instrument = rng.choice(instruments)
            order = _new_order(state, kind, member, client_order_id, instrument, sent_at, price_band_pct,
                               exchange_fraction)  # fmt: skip
        yield OmsMessage(member.member_id, _encode(order), order)


def _encode(order: dict[str, Any]) -> bytes:
    return json.dumps(order, separators=(",", ":")).encode("utf-8")


def _walk(state: _State, instrument: Instrument, band_pct: float) -> int:
    """Move the instrument's mid by -2..+2 ticks, staying inside the band around the reference."""
    ref = instrument.reference_ticks
    band = max(2, int(ref * band_pct / 100))
    mid = state.mid_ticks[instrument.symbol] + state.rng.randint(-2, 2)
    mid = min(ref + band, max(ref - band, mid))
    state.mid_ticks[instrument.symbol] = mid
    return mid


def _quote(state: _State, instrument: Instrument, side: str, mid: int, band_pct: float, passive: bool) -> int:
    """A limit price in ticks: mostly passive, sometimes through the mid (those make trades)."""
    ref = instrument.reference_ticks
    band = max(2, int(ref * band_pct / 100))
    offset = state.rng.randint(1, 6) if passive else state.rng.randint(-4, 6)  # > 0: away from the mid
    ticks = mid - offset if side == "BUY" else mid + offset
    return min(ref + band, max(max(1, ref - band), ticks))


def _new_order(state: _State, kind: str, member, client_order_id: str, instrument: Instrument, sent_at: str,
               band_pct: float, exchange_fraction: float) -> dict[str, Any]:  # fmt: skip
    rng = state.rng
    side = rng.choice(("BUY", "SELL"))
    mid = _walk(state, instrument, band_pct)
    quantity = _lot_unit(instrument) * rng.randint(1, 20)
    order: dict[str, Any] = {
        "action": "NEW",
        "client_order_id": client_order_id,
        "member_id": member.member_id,
        "account": rng.choice(member.accounts),
        "symbol": instrument.symbol,
        "side": side,
        "type": "MARKET" if kind == "market" else "LIMIT",
    }
    if kind != "market":
        order["price"] = _price(
            instrument, _quote(state, instrument, side, mid, band_pct, kind == "post_only")
        )
    order["quantity"] = quantity
    order["time_in_force"] = {"market": "IOC", "ioc": "IOC", "fok": "FOK"}.get(kind) or rng.choice(
        ("DAY", "GTC")
    )
    if kind == "post_only":
        order["post_only"] = True
    if rng.random() < 0.2:
        order["stp"] = rng.choice(("CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH"))
    if rng.random() < exchange_fraction:
        order["route"] = "EXCHANGE"
    order["sent_at"] = sent_at
    if (
        order["type"] == "LIMIT"
        and order["time_in_force"] in ("DAY", "GTC")
        and order.get("route") != "EXCHANGE"
    ):
        ticks = instrument.to_ticks(Decimal(order["price"]))
        resting = _Resting(client_order_id, instrument.symbol, side, ticks or 0, quantity)
        own = state.open_orders.setdefault(member.member_id, [])
        own.append(resting)
        del own[:-50]  # the OMS remembers the member's last 50 working orders
    return order


def _cancel_or_replace(state: _State, kind: str, member_id: str, client_order_id: str, target: _Resting,
                       sent_at: str, instrument: Instrument, band_pct: float) -> dict[str, Any]:  # fmt: skip
    rng = state.rng
    order: dict[str, Any] = {
        "action": kind.upper(),
        "client_order_id": client_order_id,
        "member_id": member_id,
        "symbol": target.symbol,
        "orig_client_order_id": target.client_order_id,
    }
    own = state.open_orders[member_id]
    if kind == "cancel":
        own.remove(target)
    else:
        change = rng.random()
        if change < 0.8:  # new price (loses priority)
            mid = _walk(state, instrument, band_pct)
            target.price_ticks = _quote(state, instrument, target.side, mid, band_pct, passive=False)
            order["price"] = _price(instrument, target.price_ticks)
        if change >= 0.5:  # new quantity, mostly smaller (keeps priority)
            lots = max(1, target.quantity // _lot_unit(instrument) + rng.choice((-3, -2, -1, 1)))
            target.quantity = lots * _lot_unit(instrument)
            order["quantity"] = target.quantity
        target.client_order_id = client_order_id
    order["sent_at"] = sent_at
    return order


def _invalid(state: _State, kind: str, member, client_order_id: str, sent_at: str, instruments: list[Instrument],
             halted: list[Instrument], suspended: list, band_pct: float) -> OmsMessage:  # fmt: skip
    rng = state.rng
    lotted = [i for i in instruments if i.lot_size > 1]
    instrument = rng.choice(lotted if kind == "BAD_LOT" and lotted else instruments)
    order = _new_order(state, "limit", member, client_order_id, instrument, sent_at, band_pct, 0.0)
    own = state.open_orders.get(member.member_id) or []
    if own and own[-1].client_order_id == client_order_id:
        own.pop()  # it will be rejected: never a target for cancels
    ref = instrument.reference_ticks
    if kind == "UNKNOWN_SYMBOL":
        order["symbol"] = rng.choice(("NOPE", "ACMEX", "ZZZZ"))
    elif kind == "BAD_TICK":
        # Half a tick off the grid.
        order["price"] = str(Decimal(order["price"]) + instrument.tick_size / 2)
    elif kind == "BAD_LOT":
        order["quantity"] = order["quantity"] + 1 if instrument.lot_size > 1 else 0
    elif kind == "OUTSIDE_COLLAR":
        away = int(ref * (float(instrument.collar_pct) + rng.uniform(5, 15)) / 100)
        order["price"] = _price(instrument, ref + away if order["side"] == "SELL" else max(1, ref - away))
    elif kind == "MISSING_FIELD":
        del order[rng.choice(("side", "quantity", "account", "time_in_force"))]
    elif kind == "UNKNOWN_MEMBER":
        order["member_id"] = "MBR404"
        order["account"] = "MBR404-HOUSE"
    elif kind == "SUSPENDED_MEMBER" and suspended:
        other = rng.choice(suspended)
        order["member_id"], order["account"] = other.member_id, other.accounts[0]
    elif kind == "HALTED_SYMBOL" and halted:
        other = rng.choice(halted)
        order["symbol"], order["price"] = other.symbol, _price(other, other.reference_ticks)
    if kind == "NOT_JSON":
        value = rng.choice((b"{not json", b"NEW,MBR01,ACME,BUY,100", b"\xff\xfe\x00", b""))
        return OmsMessage(member.member_id, value, None, kind)
    return OmsMessage(order.get("member_id", member.member_id), _encode(order), order, kind)


def orders_from_lines(lines: Iterator[str], fmt: str) -> Iterator[OmsMessage]:
    """Messages from a JSON Lines or CSV text (one order per line/row); key = its member_id."""
    if fmt == "csv":
        import csv

        for row in csv.DictReader(lines):
            order = _typed_row(row)
            yield OmsMessage(str(order.get("member_id", "")), _encode(order), order)
        return
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        try:
            order = json.loads(line)
        except ValueError:
            yield OmsMessage(
                "", line.encode("utf-8"), None, "NOT_JSON"
            )  # published as is: a test of rejection
            continue
        key = str(order.get("member_id", "")) if isinstance(order, dict) else ""
        yield OmsMessage(key, line.encode("utf-8"), order if isinstance(order, dict) else None)


def _typed_row(row: dict[str, str]) -> dict[str, Any]:
    """A CSV row as the JSON contract wants it: empty cells dropped, quantity int, post_only bool."""
    order: dict[str, Any] = {}
    for name, value in row.items():
        if name is None or value is None or value == "":
            continue
        if name == "quantity":
            order[name] = int(value)
        elif name == "post_only":
            order[name] = value.strip().lower() in ("true", "1", "yes")
        else:
            order[name] = value
    return order


# Paced publishing sends what is due every PACING_TICK_S rather than sleeping before each message:
# every wake-up of kafka-python's sender thread costs ~2-3 ms of CPU here, so one produce request
# per order cost ~1 ms of CPU per order at 300 orders/s (measured), as much as a pipeline stage.
PACING_TICK_S = 0.02


def wait_until_due(started: float, index: int, rate: float, clock=time.monotonic) -> None:
    """Sleep until message `index` of a run started at `started` is due at `rate` per second
    (rate <= 0: never sleeps); sleeps at least PACING_TICK_S so due messages go out in bursts."""
    if rate <= 0:
        return
    ahead = started + index / rate - clock()
    if ahead > 0:
        time.sleep(max(ahead, PACING_TICK_S))
