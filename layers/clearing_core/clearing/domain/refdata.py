"""Reference data: instruments, members, fee tiers and the holiday calendar.

Prices are Decimal here (the edge); the core converts them to integer ticks with `to_ticks`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from importlib import resources
from typing import Any


@dataclass(frozen=True, slots=True)
class MarginParameters:
    scan_range_pct: Decimal  # price move covered by the 1/3, 2/3, 3/3 scenarios, % of price
    volatility_shift_pct: Decimal  # volatility up/down shift (informational for linear products)
    extreme_multiple: Decimal  # extreme move = multiple x scan range
    extreme_coverage_pct: Decimal  # fraction of the extreme-move loss counted


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str
    name: str
    currency: str
    tick_size: Decimal
    lot_size: int
    reference_price: Decimal
    collar_pct: Decimal
    max_quantity: int
    max_notional: Decimal
    settlement_cycle_days: int
    status: str  # OPEN | HALTED
    last_settlement_price: Decimal
    margin: MarginParameters

    @property
    def is_open(self) -> bool:
        return self.status == "OPEN"

    def to_ticks(self, price: Decimal) -> int | None:
        """Integer ticks for a price, or None when the price is not on the tick grid."""
        ticks, rest = divmod(price, self.tick_size)
        if rest != 0:
            return None
        return int(ticks)

    def to_price(self, ticks: int) -> Decimal:
        return self.tick_size * ticks

    @property
    def reference_ticks(self) -> int:
        return int(self.reference_price / self.tick_size)


@dataclass(frozen=True, slots=True)
class Member:
    member_id: str
    name: str
    accounts: tuple[str, ...]
    credit_limit: Decimal
    collateral: Decimal
    fee_tier: str
    status: str  # ACTIVE | SUSPENDED

    @property
    def is_active(self) -> bool:
        return self.status == "ACTIVE"


@dataclass(frozen=True, slots=True)
class ReferenceData:
    version: str
    ccp_id: str
    currency: str
    instruments: dict[str, Instrument]
    members: dict[str, Member]
    fee_tiers_bps: dict[str, Decimal]
    holidays: frozenset[date] = field(default_factory=frozenset)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ReferenceData:
        instruments = {}
        for i in raw["instruments"]:
            m = i["margin"]
            instruments[i["symbol"]] = Instrument(
                symbol=i["symbol"],
                name=i["name"],
                currency=i["currency"],
                tick_size=Decimal(str(i["tick_size"])),
                lot_size=int(i["lot_size"]),
                reference_price=Decimal(str(i["reference_price"])),
                collar_pct=Decimal(str(i["collar_pct"])),
                max_quantity=int(i["max_quantity"]),
                max_notional=Decimal(str(i["max_notional"])),
                settlement_cycle_days=int(i["settlement_cycle_days"]),
                status=i["status"],
                last_settlement_price=Decimal(str(i.get("last_settlement_price", i["reference_price"]))),
                margin=MarginParameters(
                    scan_range_pct=Decimal(str(m["scan_range_pct"])),
                    volatility_shift_pct=Decimal(str(m["volatility_shift_pct"])),
                    extreme_multiple=Decimal(str(m["extreme_multiple"])),
                    extreme_coverage_pct=Decimal(str(m["extreme_coverage_pct"])),
                ),
            )
        members = {
            m["member_id"]: Member(
                member_id=m["member_id"],
                name=m["name"],
                accounts=tuple(m["accounts"]),
                credit_limit=Decimal(str(m["credit_limit"])),
                collateral=Decimal(str(m["collateral"])),
                fee_tier=m["fee_tier"],
                status=m["status"],
            )
            for m in raw["members"]
        }
        return cls(
            version=raw["version"],
            ccp_id=raw.get("ccp_id", "CCP"),
            currency=raw.get("currency", "USD"),
            instruments=instruments,
            members=members,
            fee_tiers_bps={k: Decimal(str(v)) for k, v in raw.get("fee_tiers_bps", {}).items()},
            holidays=frozenset(date.fromisoformat(d) for d in raw.get("holidays", [])),
        )


def bundled_reference_data_raw() -> dict[str, Any]:
    """The versioned reference data file shipped in the package (local runs and seeding)."""
    text = resources.files("clearing").joinpath("data/reference_data.json").read_text("utf-8")
    raw: dict[str, Any] = json.loads(text)
    return raw


def load_bundled_reference_data() -> ReferenceData:
    return ReferenceData.from_dict(bundled_reference_data_raw())
