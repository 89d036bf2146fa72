import re
from pathlib import Path

import pytest

from tradecore_lib.markets import MarketConfigError, get_market, load_markets
from tradecore_lib.months import Month, months_between


def test_default_markets_file_enables_synthetic_and_lists_kraken():
    enabled = [m.name for m in load_markets()]
    listed = [m.name for m in load_markets(include_disabled=True)]
    assert "synthetic_btc_usd" in enabled
    assert {"kraken_spot_btc_usd", "kraken_futures_btc_usd"} <= set(listed)
    synthetic = get_market("synthetic_btc_usd")
    assert synthetic.first_month == Month(2024, 1)
    assert synthetic.pair_dir == "BTC-USD"
    assert get_market("kraken_futures_btc_usd").pair_dir == "BTC-USD"


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "markets.yaml"
    path.write_text(body)
    return path


BASE = """markets:
  synthetic_btc_usd:
    venue: synthetic
    symbol: BTC/USD
    first_month: "2024-01"
    feature_preset: default
    train_preset: cpu-smoke
"""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("    colour: red\n", "market 'synthetic_btc_usd': colour: unknown key; valid keys: "
         "direction_preset, enabled, feature_preset, first_month"),
        ("    gap_tolerance: {max_gaps: 3}\n", "gap_tolerance.max_gaps: unknown key"),
        ("    freshness_fail_hours: 0\n", "freshness_fail_hours: Input should be greater than 0"),
    ],
)
def test_bad_fields_are_named(tmp_path, extra, message):
    with pytest.raises(MarketConfigError, match=re.escape(message)):
        load_markets(_write(tmp_path, BASE + extra))


def test_name_must_match_venue_and_symbol(tmp_path):
    body = BASE.replace("symbol: BTC/USD", "symbol: ETH/USD")
    with pytest.raises(MarketConfigError, match="should be named 'synthetic_eth_usd'"):
        load_markets(_write(tmp_path, body))


def test_unknown_market_lists_known(tmp_path):
    with pytest.raises(MarketConfigError, match="synthetic_btc_usd"):
        get_market("nope", _write(tmp_path, BASE))
    with pytest.raises(MarketConfigError, match="did you mean 'synthetic_btc_usd'"):
        get_market("synthetic_btc_us", _write(tmp_path, BASE))


def test_month_arithmetic():
    assert Month.parse("2024-12-01").next() == Month(2025, 1)
    assert Month(2025, 1).previous() == Month(2024, 12)
    assert Month(2024, 2).minutes == 29 * 1440
    assert [str(m) for m in months_between(Month(2023, 11), Month(2024, 2))] == [
        "2023-11",
        "2023-12",
        "2024-01",
        "2024-02",
    ]
    with pytest.raises(ValueError, match="not a month"):
        Month.parse("2024/01")
