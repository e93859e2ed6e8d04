"""Property tests of the margin scan: never negative, grows with the position, symmetric."""

from __future__ import annotations

from decimal import Decimal

from clearing.domain.margin import risk_array, scan_margin
from clearing.domain.refdata import load_bundled_reference_data
from hypothesis import given, settings
from hypothesis import strategies as st

REFDATA = load_bundled_reference_data()
SYMBOLS = sorted(REFDATA.instruments)

quantities = st.integers(-1_000_000, 1_000_000)
portfolios = st.dictionaries(st.sampled_from(SYMBOLS), quantities, max_size=len(SYMBOLS))
prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("5000"), places=2)


@settings(max_examples=200, deadline=None)
@given(portfolios)
def test_initial_margin_is_never_negative(portfolio):
    assert scan_margin(portfolio, REFDATA).initial_margin >= 0


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(SYMBOLS), st.integers(1, 1_000_000), st.integers(0, 1_000_000), st.sampled_from([1, -1])
)
def test_initial_margin_does_not_fall_when_a_position_grows_in_the_same_direction(symbol, held, added, sign):
    before = scan_margin({symbol: sign * held}, REFDATA).initial_margin
    after = scan_margin({symbol: sign * (held + added)}, REFDATA).initial_margin
    assert after >= before


@settings(max_examples=200, deadline=None)
@given(portfolios, st.integers(1, 50))
def test_initial_margin_does_not_fall_when_the_whole_portfolio_grows(portfolio, factor):
    scaled = {symbol: quantity * factor for symbol, quantity in portfolio.items()}
    assert scan_margin(scaled, REFDATA).initial_margin >= scan_margin(portfolio, REFDATA).initial_margin


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(SYMBOLS), quantities, prices)
def test_a_short_loses_what_the_long_gains(symbol, quantity, price):
    params = REFDATA.instruments[symbol].margin
    assert risk_array(-quantity, price, params) == tuple(-x for x in risk_array(quantity, price, params))


@settings(max_examples=200, deadline=None)
@given(portfolios)
def test_portfolio_loss_is_the_sum_of_instrument_losses_within_rounding(portfolio):
    result = scan_margin(portfolio, REFDATA)
    for i, total in enumerate(result.scenario_losses):
        summed = sum((arr[i] for arr in result.risk_arrays.values()), Decimal(0))
        # each figure is rounded once to the cent: at most half a cent per instrument, plus the total's
        assert abs(total - summed) <= Decimal("0.005") * (len(result.risk_arrays) + 1)
    assert result.initial_margin == max(max(result.scenario_losses), Decimal(0))
