"""Per-market holding costs and trading fees in configs/markets.yaml: validation and what
reaches the env."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradecore_lib.markets import MarketConfigError, get_market, load_markets


def _market(venue: str, costs: str) -> str:
    symbol = {"synthetic": "BTC/USD", "kraken_spot": "BTC/USD",
              "kraken_futures": "BTC/USD:USD"}[venue]
    return (f"markets:\n  {venue}_btc_usd:\n    venue: {venue}\n    symbol: {symbol}\n"
            f"    first_month: \"2024-01\"\n    feature_preset: default\n"
            f"    train_preset: cpu-smoke\n    holding_costs: {costs}\n")


def _load(tmp_path: Path, venue: str, costs: str):
    path = tmp_path / "markets.yaml"
    path.write_text(_market(venue, costs))
    return load_markets(path)[0]


@pytest.mark.parametrize(("venue", "costs", "message"), [
    ("kraken_spot", "{borrow_rate: 0.1}",
     "holding_costs.borrow_rate: unknown key; did you mean 'borrow_rate_annual'? Valid keys: "
     "borrow_rate_annual, funding"),
    ("kraken_spot", "{borrow_rate_annual: -0.01}",
     "holding_costs.borrow_rate_annual: Input should be greater than or equal to 0"),
    ("kraken_spot", "{borrow_rate_annual: 11}",
     "holding_costs.borrow_rate_annual: Input should be less than or equal to 10"),
    ("kraken_spot", "{borrow_rate_annual: true}",
     "holding_costs.borrow_rate_annual: Input should be a valid number"),
    ("kraken_futures", "{funding: venu}", "did you mean 'venue'?"),
    ("kraken_futures", "{funding: 0.2}",
     "holding_costs.funding: a constant funding rate per 8 hours must be in [-0.1, 0.1]"),
    ("kraken_futures", "{funding: true}", "holding_costs.funding: must be 'venue'"),
    ("kraken_spot", "{funding: venue}",
     "holding_costs.funding: venue 'kraken_spot' publishes no funding history (venues that "
     "do: kraken_futures)"),
    ("synthetic", "{funding: venue}", "venue 'synthetic' publishes no funding history"),
    ("kraken_futures", "{borrow_rate_annual: 0.1}",
     "holding_costs.borrow_rate_annual: kraken_futures markets are perpetual futures"),
    ("kraken_spot", "{funding: 0.0001}", "a spot market pays no funding"),
])
def test_bad_holding_costs_are_named(tmp_path, venue, costs, message):
    with pytest.raises(MarketConfigError, match=re.escape(message)) as caught:
        _load(tmp_path, venue, costs)
    assert f"market '{venue}_btc_usd'" in str(caught.value)


@pytest.mark.parametrize(("venue", "costs", "overrides", "from_venue"), [
    ("kraken_spot", "{borrow_rate_annual: 0.219}", {"borrow_rate_annual": 0.219}, False),
    ("kraken_futures", "{funding: venue}", {"funding_rate_8h": 0.0}, True),
    ("kraken_futures", "{funding: none}", {"funding_rate_8h": 0.0}, False),
    ("kraken_futures", "{funding: -0.0001}", {"funding_rate_8h": -0.0001}, False),
    ("synthetic", "{borrow_rate_annual: 0.05, funding: 0.0001}",
     {"borrow_rate_annual": 0.05, "funding_rate_8h": 0.0001}, False),
    ("synthetic", "{}", {}, False),  # nothing set: the env preset's values stand
])
def test_costs_given_replace_the_env_presets(tmp_path, venue, costs, overrides, from_venue):
    market = _load(tmp_path, venue, costs)
    assert market.holding_costs.env_overrides() == overrides
    assert market.funding_from_venue is from_venue


def test_shipped_markets():
    assert get_market("kraken_spot_btc_usd").holding_costs.borrow_rate_annual == 0.219
    assert get_market("kraken_futures_btc_usd").funding_from_venue
    # the synthetic and control markets keep their env presets' costs
    assert all(not m.holding_costs.env_overrides() for m in load_markets()
               if m.venue == "synthetic")


@pytest.mark.parametrize(("fees", "message"), [
    ("{taker: 0.001}", "trading_fees.taker: unknown key; did you mean 'taker_fee'?"),
    ("{taker_fee: -0.001}", "trading_fees.taker_fee: Input should be greater than or equal to 0"),
    ("{maker_fee: 0.5}", "trading_fees.maker_fee: Input should be less than or equal to 0.1"),
    ("{maker_fee: '0.001'}", "trading_fees.maker_fee: Input should be a valid number"),
])
def test_bad_trading_fees_are_named(tmp_path, fees, message):
    path = tmp_path / "markets.yaml"
    path.write_text(_market("kraken_spot", "{}") + f"    trading_fees: {fees}\n")
    with pytest.raises(MarketConfigError, match=re.escape(message)):
        load_markets(path)


def test_fees_and_costs_are_one_set_of_env_overrides(tmp_path):
    path = tmp_path / "markets.yaml"
    path.write_text(_market("kraken_spot", "{borrow_rate_annual: 0.1}")
                    + "    trading_fees: {taker_fee: 0.004}\n")
    market = load_markets(path)[0]
    assert market.env_overrides() == {"taker_fee": 0.004, "borrow_rate_annual": 0.1}
    # the shipped real venues trade at their published lowest tier, the synthetic ones at the
    # env preset's fees
    assert get_market("kraken_spot_btc_usd").env_overrides() == {
        "maker_fee": 0.0016, "taker_fee": 0.0026, "borrow_rate_annual": 0.219}
    assert get_market("coinbase_spot_btc_usd").trading_fees.taker_fee == 0.012
    assert all(not m.env_overrides() for m in load_markets() if m.venue == "synthetic")
