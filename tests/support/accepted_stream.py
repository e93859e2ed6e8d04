"""A seeded random stream of orders.accepted records for match_orders equivalence tests.

Covers what match_orders meets: several symbols, NEW (limit / market, GTC / DAY / IOC / FOK,
post-only, STP modes, invalid terms, duplicate ids), CANCEL and REPLACE of live, filled and unknown
orders (price kept, moved, crossing, absent; quantity absent, raised, lowered below what is filled;
reserve changed), duplicates re-produced by validate_orders at new offsets (same source), and
records the matcher cannot read (dead letters).
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from clearing.domain.book import OrderBook
from clearing.ports import KafkaRecord

TOPIC = "orders.accepted"
SYMBOLS = ("ACME", "GLOBX", "HOOLI", "UMBR")
MEMBERS = ("MBR01", "MBR02", "MBR03", "MBR04")
STP = (None, None, None, "CANCEL_NEWEST", "CANCEL_OLDEST", "CANCEL_BOTH")


def accepted_messages(n: int, seed: int) -> list[dict[str, Any] | bytes]:
    """n orders.accepted bodies (dicts), a few of them raw bytes the matcher must dead-letter."""
    rng = random.Random(seed)
    out: list[dict[str, Any] | bytes] = []
    known: dict[str, list[tuple[str, str]]] = {s: [] for s in SYMBOLS}  # (order_id, member)
    last_price: dict[str, int | None] = {}
    src_offsets = [0, 0, 0]
    clordid = 0
    mid = {s: 1000 for s in SYMBOLS}
    # a rough shadow of the books (duplicates and invalid records ignored): picks resting targets
    shadow = {s: OrderBook(s) for s in SYMBOLS}

    def target(symbol: str, live: list[tuple[str, str]]) -> tuple[str, str]:
        if rng.random() < 0.8:
            resting = [(o, m) for o, m in live[-40:] if shadow[symbol].order(o) is not None]
            if resting:
                return rng.choice(resting)
        return rng.choice(live)

    def source() -> dict[str, Any]:
        part = rng.randrange(3)
        src_offsets[part] += 1
        return {"topic": "orders.new", "partition": part, "offset": src_offsets[part]}

    for i in range(n):
        sent_at = f"2026-11-24T14:{30 + i // 600:02d}:{(i // 10) % 60:02d}.{i % 1000:03d}Z"
        r = rng.random()
        if r < 0.02:
            out.append(b"not json" if rng.random() < 0.5 else orjson.dumps({"action": "NEW"}))
            continue
        if r < 0.05 and out:
            previous = [m for m in out[-30:] if isinstance(m, dict)]
            if previous:  # validate_orders re-produced an earlier record (same source)
                out.append(dict(rng.choice(previous)))
                continue
        symbol = rng.choice(SYMBOLS)
        if r < 0.06:
            symbol = "NOPE"  # unknown symbol: dead-lettered
        mid[symbol] = mid.get(symbol, 1000) + rng.choice((-1, 0, 0, 1))
        clordid += 1
        action_r = rng.random()
        base = {
            "symbol": symbol,
            "sent_at": sent_at,
            "source": source(),
        }
        live = known.get(symbol, [])
        if action_r < 0.5 or not live:
            member = rng.choice(MEMBERS)
            order_id = f"{member}:C{clordid}"
            if live and rng.random() < 0.03:
                order_id, member = rng.choice(live)  # duplicate order id
            side = rng.choice(("BUY", "SELL"))
            order_type = "MARKET" if rng.random() < 0.1 else "LIMIT"
            tif = rng.choices(("GTC", "DAY", "IOC", "FOK", "XYZ"), (60, 15, 15, 8, 2))[0]
            spread = rng.randint(-3, 6)
            price = (
                None
                if order_type == "MARKET"
                else max(1, mid[symbol] + (-spread if side == "BUY" else spread))
            )
            qty = rng.randint(1, 60)
            msg = {
                "action": "NEW",
                "order_id": order_id,
                "member_id": member,
                "client_order_id": order_id.split(":", 1)[1],
                "orig_client_order_id": None,
                "account": f"ACC-{member}",
                "side": side,
                "type": order_type,
                "time_in_force": tif,
                "price_ticks": price,
                "quantity": qty,
                "reserve_price_ticks": (price or mid[symbol] + 20) + rng.randint(0, 3),
                "post_only": rng.random() < 0.1,
                "stp": rng.choice(STP),
                **base,
            }
            if rng.random() < 0.2:
                del msg["post_only"]
            if rng.random() < 0.2:
                del msg["stp"]
            if symbol in known:
                known[symbol].append((order_id, member))
                shadow[symbol].submit(
                    order_id,
                    side,
                    price,
                    qty,
                    type=order_type,
                    tif=tif if tif != "XYZ" else "GTC",
                    member=member,
                )
            last_price[order_id] = price
        elif action_r < 0.62:
            order_id, member = (
                target(symbol, live) if rng.random() < 0.9 else (f"MBR01:GHOST{clordid}", "MBR01")
            )
            shadow[symbol].cancel(order_id)
            msg = {
                "action": "CANCEL",
                "order_id": order_id,
                "member_id": member,
                "client_order_id": f"X{clordid}",
                "orig_client_order_id": order_id.split(":", 1)[1],
                "price_ticks": None,
                "reserve_price_ticks": 1,
                **base,
            }
        else:
            order_id, member = (
                target(symbol, live) if rng.random() < 0.92 else (f"MBR02:GHOST{clordid}", "MBR02")
            )
            p = rng.random()
            old = last_price.get(order_id)
            if p < 0.15:
                price = None
            elif p < 0.4 and old is not None:
                price = old  # the price it rests at (unless an earlier replace moved it)
            else:
                price = max(1, mid[symbol] + rng.randint(-6, 6))
            q = rng.random()
            quantity = None if q < 0.3 else rng.randint(1, 10) if q < 0.45 else rng.randint(5, 90)
            msg = {
                "action": "REPLACE",
                "order_id": order_id,
                "member_id": member,
                "client_order_id": f"R{clordid}",
                "orig_client_order_id": order_id.split(":", 1)[1],
                "price_ticks": price,
                "reserve_price_ticks": (price or mid[symbol]) + rng.randint(0, 4),
                "quantity": quantity,
                "side": "BUY",
                **base,
            }
            if price is not None:
                last_price[order_id] = price
            shadow[symbol].replace(order_id, price, new_total_qty=quantity)
        msg["price"] = (
            None if msg["price_ticks"] is None else str(msg["price_ticks"])
        )  # as validate writes it
        out.append(msg)
    return out


def records(
    messages: list[dict[str, Any] | bytes], partition: int = 0, first_offset: int = 0
) -> list[KafkaRecord]:
    """The messages as orders.accepted records at consecutive offsets."""
    return [
        KafkaRecord(
            TOPIC,
            partition,
            first_offset + i,
            (m["symbol"] if isinstance(m, dict) else "X").encode(),
            m if isinstance(m, bytes) else orjson.dumps(m),
        )
        for i, m in enumerate(messages)
    ]
