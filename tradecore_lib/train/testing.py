"""A lake with synthetic candles and features, for tests, benchmarks and notebooks.

Writes what ``candles/<market>`` and ``features/<market>`` would (same keys, same tables) for a
synthetic market without going through Dagster.
"""

from __future__ import annotations

from tradecore_lib.features import load_feature_preset, publish_months
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_lib.synthetic import SyntheticParams, generate_month


def write_synthetic_months(lake: Lake, market: Market, months: list[Month],
                           feature_preset: str | None = None) -> None:
    """Publish candles and features of ``months`` (a synthetic market) to ``lake``."""
    if market.venue != "synthetic":
        raise ValueError(f"{market.name} is not a synthetic market (venue {market.venue})")
    params = SyntheticParams.from_mapping(market.source)
    for month in months:
        lake.write_table(candle_key(market, month), generate_month(params, market.name, month))
    preset = load_feature_preset(feature_preset or market.feature_preset)
    for _ in publish_months(lake, market, months, preset):
        pass


def synthetic_lake(root: str, months: int = 3) -> tuple[Lake, Market]:
    """A local lake at ``root`` holding the first ``months`` months of ``synthetic_btc_usd``
    (candles and its feature preset), as ``make demo`` leaves them."""
    from tradecore_lib.markets import get_market

    market = get_market("synthetic_btc_usd")
    wanted = [market.first_month]
    while len(wanted) < months:
        wanted.append(wanted[-1].next())
    lake = Lake(root)
    write_synthetic_months(lake, market, wanted)
    return lake, market
