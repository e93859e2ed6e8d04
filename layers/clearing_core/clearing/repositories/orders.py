"""The orders table: validation decisions (validate_orders) and order states (match_orders).

Records (docs/data-model.md):
- VALIDATION `(member, O#{client_order_id}#V)`: the decision that used up a client order id, an
  acceptance (NEW, CANCEL or REPLACE, with the target order of the latter two) or a rejection;
- REJECTION `(REJ#{topic}#{partition}, {offset:020d})`: a rejection with no usable order identity
  (malformed, duplicate id, stale sent_at), keyed by its orders.new position; rejections of a known
  member are also in gsi1 under `REJ#{member}`;
- STATE `(member, O#{client_order_id}#S)`: the order's latest state as the matching engine sees it
  (gsi1: symbol, order id).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from clearing.domain import book_events as ev
from clearing.domain.orders import CancelOrder, NewOrder, Rejection, RejectReason, ReplaceOrder, Route
from clearing.domain.risk import Acceptance, KnownOrder
from clearing.ports import Item, ItemStore, KafkaRecord
from clearing.repositories.keys import ORDERS, order_state_key, rejection_key, validation_key

OrderMessage = NewOrder | CancelOrder | ReplaceOrder
EXCHANGE = str(Route.EXCHANGE)

# An order's latest state in a match_orders batch, as MatchOrders._state records it:
# (member, account, quantity, symbol, status, filled, remaining, cancelled, source record, reason)
OrderState = tuple[Any, ...]


class OrderDecisions:
    """The validation decisions of one invocation, in record order; written by `save` (one put_many)."""

    __slots__ = ("_store", "_writer", "_items")

    def __init__(self, store: ItemStore, writer: str):
        self._store = store
        self._writer = writer
        self._items: list[Item] = []

    def __len__(self) -> int:
        return len(self._items)

    def record_acceptance(
        self, position: str, order: OrderMessage, decision: Acceptance, sent_at: str | None
    ) -> None:
        """The VALIDATION record of an accepted order (`position`: its orders.new record)."""
        member_id, clordid = order.member_id, order.client_order_id
        pk, sk = validation_key(member_id, clordid)
        item = {
            "pk": pk,
            "sk": sk,
            "kind": "VALIDATION",
            "decision": "ACCEPTED",
            "src": position,
            "order_id": decision.order_id,
            "action": order.action,
            "member_id": member_id,
            "client_order_id": clordid,
            "symbol": order.symbol,
            "price_ticks": decision.price_ticks,
            "reserve_ticks": decision.reserve_ticks,
            "exposure_reserved": str(decision.exposure_reserved),
            "sent_at": sent_at,
            "written_by": self._writer,
        }
        if type(order) is NewOrder:
            # str() of a StrEnum member is its value (several times cheaper than .value)
            item["side"] = str(order.side)
            item["quantity"] = order.quantity
            item["account"] = order.account
            item["type"] = str(order.type)
            item["time_in_force"] = str(order.time_in_force)
            item["route"] = str(order.route)
        else:
            t: KnownOrder = decision.known  # type: ignore[assignment]  # a CANCEL/REPLACE has its target
            item["side"] = t.side
            item["orig_client_order_id"] = order.orig_client_order_id  # type: ignore[union-attr]  # not a NEW
            item["target_order_id"] = t.order_id
            item["target_price_ticks"] = t.price_ticks
            item["target_quantity"] = t.quantity
            item["target_reserve_ticks"] = t.reserve_ticks
            quantity = order.quantity if type(order) is ReplaceOrder else None
            item["quantity"] = quantity if quantity else t.quantity
            if t.route == EXCHANGE:
                # the target went to the exchange: so does this request, and a later CANCEL / REPLACE
                # of it (cold start: known_order, replayed) needs the same terms
                item["account"] = t.account
                item["type"] = t.order_type
                item["time_in_force"] = t.time_in_force
                item["route"] = EXCHANGE
        self._items.append(item)

    def record_rejection(
        self,
        record: KafkaRecord,
        *,
        rejection_id: str,
        reason: str,
        message: str | None,
        member_id: str | None,
        client_order_id: str | None,
        symbol: str | None,
        original: Mapping[str, Any],
        uses_up: tuple[str, str] | None,
    ) -> None:
        """A rejection, under the (member, client order id) it uses up, else under its position.
        Texts come bounded (clipped) by the caller, `original` is the record's bounded payload."""
        if uses_up:
            pk, sk = validation_key(*uses_up)
        else:
            pk, sk = rejection_key(record.topic, record.partition, record.offset)
        item = {
            "pk": pk,
            "sk": sk,
            "kind": "VALIDATION" if uses_up else "REJECTION",
            "decision": "REJECTED",
            "src": record.position,
            "rejection_id": rejection_id,
            "reason": reason,
            "message": message,
            "member_id": member_id,
            "client_order_id": client_order_id,
            "symbol": symbol,
            **original,
            "written_by": self._writer,
        }
        if member_id:
            item["gsi1pk"] = f"REJ#{member_id}"
            item["gsi1sk"] = f"{record.topic}#{record.partition}#{record.offset:020d}"
        self._items.append(item)

    def save(self) -> int:
        """Write the decisions (one put_many, even when empty); returns how many."""
        self._store.put_many(ORDERS, self._items)
        return len(self._items)


class OrderRecords:
    """Validation decisions and order states of the orders table."""

    def __init__(self, store: ItemStore, writer: str = ""):
        self.store = store
        self.writer = writer

    # ------------------------------------------------------------------ validation decisions
    def decisions(self) -> OrderDecisions:
        return OrderDecisions(self.store, self.writer)

    def member_decisions(self, member_id: str) -> Iterator[tuple[str, Item]]:
        """(client order id, stored decision) of every client order id the member has used up."""
        for item in self.store.query(ORDERS, member_id, sk_prefix="O#"):
            if item.get("kind") == "VALIDATION":
                yield item["sk"][2:-2], item

    def decision(self, member_id: str, client_order_id: str) -> Item:
        """The stored decision of a used-up client order id (it must exist)."""
        key = validation_key(member_id, client_order_id)
        return self.store.get_many(ORDERS, [key])[key]

    @staticmethod
    def known_order(decision: Item) -> KnownOrder | None:
        """What an acceptance leaves known of the order (None: the id was used up by a rejection)."""
        if decision.get("decision") != "ACCEPTED":
            return None
        known = KnownOrder(
            order_id=decision["order_id"],
            symbol=decision["symbol"],
            side=decision["side"],
            price_ticks=decision.get("price_ticks"),
            quantity=int(decision["quantity"]),
            reserve_ticks=int(decision["reserve_ticks"]),
        )
        return _with_route(known, decision)

    @staticmethod
    def replayed(decision: Item, order: OrderMessage) -> Acceptance | Rejection:
        """The stored decision on `order`, as validation made it (a redelivery replays it)."""
        if decision["decision"] != "ACCEPTED":
            return Rejection(
                reason=RejectReason(decision["reason"]),
                message=decision["message"],
                member_id=order.member_id,
                client_order_id=order.client_order_id,
                symbol=order.symbol,
            )
        known = None
        if decision.get("target_order_id"):
            known = KnownOrder(
                decision["target_order_id"],
                order.symbol,
                decision["side"],
                decision.get("target_price_ticks"),
                int(decision.get("target_quantity", 0)),
                int(decision.get("target_reserve_ticks", 0)),
            )
            known = _with_route(known, decision)  # a CANCEL / REPLACE item has its target's route
        return Acceptance(
            order,
            decision["order_id"],
            decision.get("price_ticks"),
            int(decision["reserve_ticks"]),
            Decimal(decision.get("exposure_reserved", "0")),
            known,
        )

    # ------------------------------------------------------------------ reads
    def all(self) -> list[Item]:
        """Every record of the orders table (a Scan: reports, verify and replay only)."""
        return self.store.scan(ORDERS)

    def of_member(self, member_id: str) -> tuple[dict[str, Item], dict[str, Item]]:
        """(decisions, states) of a member, each by client order id: one Query of the member's pk."""
        decisions, states = {}, {}
        for item in self.store.query(ORDERS, member_id, sk_prefix="O#"):
            sk = item["sk"]
            if sk.endswith("#V"):
                decisions[sk[2:-2]] = item
            elif sk.endswith("#S"):
                states[sk[2:-2]] = item
        return decisions, states

    def states_in(self, symbol: str) -> list[Item]:
        """The order states of a symbol (gsi1): the orders that reached its book."""
        return [s for s in self.store.query(ORDERS, symbol, index="gsi1") if s.get("kind") == "STATE"]

    def decisions_of(self, orders: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Item]:
        """The stored decisions of these (member, client order id), keyed by them (one request)."""
        wanted = {validation_key(m, c): (m, c) for m, c in orders}
        return {wanted[k]: v for k, v in self.store.get_many(ORDERS, list(wanted)).items()}

    def decision_and_state(self, member_id: str, client_order_id: str) -> tuple[Item | None, Item | None]:
        """The decision and the state of one client order id (one request)."""
        vkey, skey = validation_key(member_id, client_order_id), order_state_key(member_id, client_order_id)
        found = self.store.get_many(ORDERS, [vkey, skey])
        return found.get(vkey), found.get(skey)

    def states_of(self, orders: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Item]:
        """The stored states of the orders first placed under these (member, client order id)."""
        wanted = {order_state_key(m, c): (m, c) for m, c in orders}
        return {wanted[k]: v for k, v in self.store.get_many(ORDERS, list(wanted)).items()}

    def state(self, member_id: str, client_order_id: str) -> Item | None:
        """The state of the order first placed under `client_order_id`."""
        key = order_state_key(member_id, client_order_id)
        return self.store.get_many(ORDERS, [key]).get(key)

    def rejections_at(self, positions: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int, int], Item]:
        """Rejections keyed by their orders.new position (topic, partition, offset) (one request)."""
        wanted = {rejection_key(*p): p for p in positions}
        return {wanted[k]: v for k, v in self.store.get_many(ORDERS, list(wanted)).items()}

    def rejections_of(self, member_id: str) -> list[Item]:
        """The member's rejections (gsi1 `REJ#{member}`: those keyed by position and those that used
        up a client order id), in orders.new position order."""
        return self.store.query(ORDERS, f"REJ#{member_id}", index="gsi1")

    # ------------------------------------------------------------------ order states
    def save_states(self, states: Mapping[str, OrderState]) -> int:
        """Write each order's latest state of a match_orders batch (one put_many, even when empty)."""
        writer = self.writer
        self.store.put_many(ORDERS, [_state_item(order_id, st, writer) for order_id, st in states.items()])
        return len(states)


def _with_route(known: KnownOrder, decision: Item) -> KnownOrder:
    """`known` with the route and terms an exchange-routed order keeps (an acceptance of a NEW routed
    EXCHANGE, or of a CANCEL / REPLACE of one); INTERNAL orders keep none (docs/data-model.md)."""
    if decision.get("route") != EXCHANGE:
        return known
    return known._replace(
        route=EXCHANGE,
        account=decision.get("account"),
        order_type=decision.get("type"),
        time_in_force=decision.get("time_in_force"),
    )


def _state_item(order_id: str, state: OrderState, writer: str) -> Item:
    member, account, quantity, symbol, status, filled, remaining, cancelled, record, reason = state
    clordid = order_id.split(":", 1)[1]
    if status == ev.PARTIALLY_FILLED or status == ev.FILLED:
        status = "FILLED" if remaining == 0 else "PARTIALLY_FILLED"
    elif status == "RESTING" and filled:
        status = "PARTIALLY_FILLED"
    pk, sk = order_state_key(member, clordid)
    return {
        "pk": pk,
        "sk": sk,
        "kind": "STATE",
        "order_id": order_id,
        "member_id": member,
        "account": account,
        "client_order_id": clordid,
        "symbol": symbol,
        "status": status,
        "filled_qty": filled,
        "remaining_qty": remaining,
        "cancelled_qty": cancelled,
        "quantity": quantity,
        "reason": reason,
        "last_src": record.position,
        "gsi1pk": symbol,
        "gsi1sk": order_id,
        "written_by": writer,
    }
