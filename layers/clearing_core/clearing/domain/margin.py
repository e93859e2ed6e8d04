"""Margin: SPAN-like initial margin from a 16-scenario scan, variation margin, margin calls.

Scenarios (SPAN's standard risk array): price unchanged, up/down 1/3, 2/3 and 3/3 of the scan
range, each with volatility up and down (14), plus an extreme move up and down of
`extreme_multiple` x the scan range of which only `extreme_coverage_pct` of the loss counts (2).
The instruments here are cash equities: their value is linear in price, so the volatility shift
does not change the loss (scenario pairs 1/2, 3/4 ... are equal). The 16 are kept explicit so the
array has SPAN's shape and options can plug in later.

Scan base: the instrument's last settlement price (or a given price). Scenario loss of q shares
at base P for a move of f x range: loss = -q * f * P * scan_range_pct / 100 (x coverage for the
extremes). Losses are exact fractions until the end; each figure shown is rounded once to the cent
(half even). The portfolio loss of a scenario is the exact sum over the member's instruments
(same scenario index: moves are taken as perfectly correlated, which lets longs in one symbol
offset shorts in another - a simplification of SPAN's inter-commodity credits), rounded to the
cent. Initial margin = max over the 16 portfolio losses, never below zero.

Variation margin of a position = net_quantity x settlement price + cash (cash = signed trade
principal, fees aside): the mark-to-market gain (>0) or loss (<0) against the settlement price.
Requirement = IM + max(0, -VM); a margin call is due when collateral < requirement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any, Protocol

from clearing.domain.refdata import MarginParameters, ReferenceData

ZERO = Decimal("0.00")


class MarginablePosition(Protocol):
    """Anything with a member, a symbol, a net quantity and signed principal cash
    (clearing.Position and netting.NetObligation both qualify)."""

    @property
    def member_id(self) -> str: ...

    @property
    def symbol(self) -> str: ...

    @property
    def net_quantity(self) -> int: ...

    @property
    def cash(self) -> Decimal: ...


@dataclass(frozen=True, slots=True)
class Scenario:
    number: int  # 1..16, SPAN order
    price_move: Fraction  # of the scan range: 0, +-1/3, +-2/3, +-1; +-1 for the extremes
    volatility: str  # UP | DOWN
    extreme: bool = False

    @property
    def label(self) -> str:
        if self.extreme:
            direction = "up" if self.price_move > 0 else "down"
            return f"extreme {direction} (x multiple, coverage), vol {self.volatility.lower()}"
        if self.price_move == 0:
            return f"price unchanged, vol {self.volatility.lower()}"
        direction = "up" if self.price_move > 0 else "down"
        return f"price {direction} {abs(self.price_move) * 3}/3 range, vol {self.volatility.lower()}"


def _standard_scenarios() -> tuple[Scenario, ...]:
    moves = [
        Fraction(0),
        Fraction(1, 3),
        Fraction(-1, 3),
        Fraction(2, 3),
        Fraction(-2, 3),
        Fraction(1),
        Fraction(-1),
    ]
    scenarios = [
        Scenario(2 * i + j + 1, move, vol)
        for i, move in enumerate(moves)
        for j, vol in enumerate(("UP", "DOWN"))
    ]
    # SPAN's 15/16 are the extreme moves; vol unchanged there, written as UP/DOWN to keep 16 slots.
    scenarios.append(Scenario(15, Fraction(1), "UP", extreme=True))
    scenarios.append(Scenario(16, Fraction(-1), "DOWN", extreme=True))
    return tuple(scenarios)


SPAN_SCENARIOS: tuple[Scenario, ...] = _standard_scenarios()


def round_cents(amount: Fraction) -> Decimal:
    """An exact amount to the cent, half to even (Fraction's round() is half-even)."""
    return Decimal(round(amount * 100)).scaleb(-2)


def _scenario_loss(quantity: int, price: Decimal, params: MarginParameters, scenario: Scenario) -> Fraction:
    move = Fraction(price) * Fraction(params.scan_range_pct) / 100 * scenario.price_move
    if scenario.extreme:
        move *= Fraction(params.extreme_multiple)
        return -quantity * move * Fraction(params.extreme_coverage_pct) / 100
    return -quantity * move


def exact_risk_array(quantity: int, price: Decimal, params: MarginParameters) -> tuple[Fraction, ...]:
    """The 16 exact scenario losses (positive = loss) of `quantity` shares priced at `price`."""
    return tuple(_scenario_loss(quantity, price, params, s) for s in SPAN_SCENARIOS)


def risk_array(quantity: int, price: Decimal, params: MarginParameters) -> tuple[Decimal, ...]:
    """The 16 scenario losses to the cent (positive = loss, negative = gain)."""
    return tuple(round_cents(loss) for loss in exact_risk_array(quantity, price, params))


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Initial margin of one portfolio: per-symbol risk arrays, portfolio losses, worst scenario."""

    risk_arrays: dict[str, tuple[Decimal, ...]]
    scenario_losses: tuple[Decimal, ...]  # portfolio loss per scenario, index 0 = scenario 1
    worst_scenario: int  # 1..16, the first scenario with the largest loss
    initial_margin: Decimal

    def to_dict(self) -> dict[str, Any]:
        return {
            "risk_arrays": {s: [str(x) for x in arr] for s, arr in sorted(self.risk_arrays.items())},
            "scenario_losses": [str(x) for x in self.scenario_losses],
            "worst_scenario": self.worst_scenario,
            "initial_margin": str(self.initial_margin),
        }


def _scan_price(symbol: str, refdata: ReferenceData, prices: Mapping[str, Decimal] | None) -> Decimal:
    if prices is not None and symbol in prices:
        return prices[symbol]
    return refdata.instruments[symbol].last_settlement_price


def scan_margin(
    net_quantities: Mapping[str, int], refdata: ReferenceData, prices: Mapping[str, Decimal] | None = None
) -> ScanResult:
    """Initial margin of a portfolio of net quantities per symbol (prices default to the last
    settlement prices). Unknown symbols raise KeyError: positions only hold novated symbols."""
    exact_total = [Fraction(0)] * len(SPAN_SCENARIOS)
    arrays: dict[str, tuple[Decimal, ...]] = {}
    for symbol, quantity in sorted(net_quantities.items()):
        if quantity == 0:
            continue
        exact = exact_risk_array(
            quantity, _scan_price(symbol, refdata, prices), refdata.instruments[symbol].margin
        )
        arrays[symbol] = tuple(round_cents(x) for x in exact)
        exact_total = [t + x for t, x in zip(exact_total, exact, strict=True)]
    losses = tuple(round_cents(t) for t in exact_total)
    worst = max(range(len(losses)), key=lambda i: (losses[i], -i))
    return ScanResult(arrays, losses, worst + 1, max(losses[worst], ZERO))


def member_net_quantities(positions: Iterable[MarginablePosition]) -> dict[str, dict[str, int]]:
    """member -> symbol -> net quantity, summed over accounts and settlement dates."""
    result: dict[str, dict[str, int]] = {}
    for p in positions:
        by_symbol = result.setdefault(p.member_id, {})
        by_symbol[p.symbol] = by_symbol.get(p.symbol, 0) + p.net_quantity
    return result


def variation_margin(
    positions: Iterable[MarginablePosition],
    refdata: ReferenceData,
    prices: Mapping[str, Decimal] | None = None,
) -> Decimal:
    """Mark-to-market of positions: sum of net_quantity x settlement price + cash, to the cent.
    Positive = the member gains, negative = the member owes variation margin."""
    total = Fraction(0)
    for p in positions:
        total += p.net_quantity * Fraction(_scan_price(p.symbol, refdata, prices)) + Fraction(p.cash)
    return round_cents(total)


@dataclass(frozen=True, slots=True)
class MarginRequirement:
    """A member's margin position; a margin call when shortfall > 0."""

    member_id: str
    initial_margin: Decimal
    variation_margin: Decimal  # mark-to-market, >0 gain, <0 loss
    requirement: Decimal  # initial_margin + max(0, -variation_margin)
    collateral: Decimal
    shortfall: Decimal  # max(0, requirement - collateral)
    worst_scenario: int

    @property
    def is_call(self) -> bool:
        return self.shortfall > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "member_id": self.member_id,
            "initial_margin": str(self.initial_margin),
            "variation_margin": str(self.variation_margin),
            "requirement": str(self.requirement),
            "collateral": str(self.collateral),
            "shortfall": str(self.shortfall),
            "worst_scenario": self.worst_scenario,
        }


def margin_requirement(
    member_id: str,
    positions: Iterable[MarginablePosition],
    refdata: ReferenceData,
    collateral: Decimal,
    prices: Mapping[str, Decimal] | None = None,
) -> MarginRequirement:
    """IM, VM, requirement and shortfall of one member's (open, unsettled) positions."""
    mine = [p for p in positions if p.member_id == member_id]
    scan = scan_margin(member_net_quantities(mine).get(member_id, {}), refdata, prices)
    vm = variation_margin(mine, refdata, prices)
    requirement = scan.initial_margin + max(-vm, ZERO)
    shortfall = max(requirement - collateral, ZERO)
    return MarginRequirement(
        member_id, scan.initial_margin, vm, requirement, collateral, shortfall, scan.worst_scenario
    )


def margin_requirements(
    positions: Iterable[MarginablePosition],
    refdata: ReferenceData,
    collateral: Mapping[str, Decimal] | None = None,
    prices: Mapping[str, Decimal] | None = None,
) -> list[MarginRequirement]:
    """One requirement per member holding positions, sorted by member. Collateral defaults to
    the member's collateral in the reference data (0 for a member missing there)."""
    by_member: dict[str, list[MarginablePosition]] = {}
    for p in positions:
        by_member.setdefault(p.member_id, []).append(p)
    return [
        margin_requirement(member_id, held, refdata, _collateral(member_id, refdata, collateral), prices)
        for member_id, held in sorted(by_member.items())
    ]


def _collateral(member_id: str, refdata: ReferenceData, collateral: Mapping[str, Decimal] | None) -> Decimal:
    if collateral is not None and member_id in collateral:
        return collateral[member_id]
    member = refdata.members.get(member_id)
    return member.collateral if member is not None else ZERO


def margin_calls(
    positions: Iterable[MarginablePosition],
    refdata: ReferenceData,
    collateral: Mapping[str, Decimal] | None = None,
    prices: Mapping[str, Decimal] | None = None,
) -> list[MarginRequirement]:
    """The members whose collateral is below IM + VM loss, with their shortfall."""
    return [r for r in margin_requirements(positions, refdata, collateral, prices) if r.is_call]
