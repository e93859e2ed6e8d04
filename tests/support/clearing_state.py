"""Test support: a pure in-memory clearing state (positions + obligations + applied leg ids).

Used by the domain's property tests to state the netting and margin invariants over an idempotent
fold of legs; production keeps this state in DynamoDB (services/clear.py), so it lives here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from clearing.domain.clearing import ClearedLeg, Position, PositionKey, position_after_leg, position_key
from clearing.domain.netting import NetObligation, ObligationKey, obligation_after_leg, obligation_key


@dataclass(frozen=True, slots=True)
class ClearingState:
    """Positions and obligations with the ids of the legs already in them."""

    positions: dict[PositionKey, Position] = field(default_factory=dict)
    obligations: dict[ObligationKey, NetObligation] = field(default_factory=dict)
    applied_leg_ids: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "positions": [p.to_dict() for p in sorted(self.positions.values(), key=_position_sort)],
            "obligations": [o.to_dict() for o in sorted(self.obligations.values(), key=_obligation_sort)],
            "applied_leg_ids": sorted(self.applied_leg_ids),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ClearingState:
        positions = (Position.from_dict(p) for p in raw.get("positions", []))
        obligations = (NetObligation.from_dict(o) for o in raw.get("obligations", []))
        return cls(
            positions={p.key: p for p in positions},
            obligations={o.key: o for o in obligations},
            applied_leg_ids=frozenset(raw.get("applied_leg_ids", [])),
        )


def _position_sort(p: Position) -> tuple[str, str, str, date]:
    return p.key


def _obligation_sort(o: NetObligation) -> tuple[str, date, str]:
    return (o.symbol, o.settlement_date, o.member_id)  # as clearing.domain.netting orders them


def apply_legs_once(state: ClearingState, legs: Iterable[ClearedLeg]) -> ClearingState:
    """A new state with every leg not seen before applied; legs whose id was seen are skipped."""
    positions = dict(state.positions)
    obligations = dict(state.obligations)
    applied = set(state.applied_leg_ids)
    for leg in legs:
        if leg.leg_id in applied:
            continue  # a redelivered leg: its effect is already in the state
        applied.add(leg.leg_id)
        pkey, okey = position_key(leg), obligation_key(leg)
        positions[pkey] = position_after_leg(positions.get(pkey), leg)
        obligations[okey] = obligation_after_leg(obligations.get(okey), leg)
    return ClearingState(positions, obligations, frozenset(applied))
