"""Lakes holding a synthetic market's candles and features, for tests and benchmarks.

The candles go through the same path ``candles/<market>`` takes, :func:`ingest_month` with the
market's own source (fetch, validate, atomic write), and the features through
:func:`publish_months`, as ``features/<market>`` does; only Dagster is left out.
"""

from __future__ import annotations

from tradecore_lib.features import load_feature_preset, publish_months
from tradecore_lib.ingest import ingest_month
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market, get_market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_lib.sources import source_for


def write_synthetic_months(lake: Lake, market: Market, months: list[Month],
                           feature_preset: str | None = None) -> None:
    """Ingest ``months`` of a synthetic market's candles and publish their features."""
    if market.venue != "synthetic":
        raise ValueError(f"{market.name} is not a synthetic market (venue {market.venue})")
    source = source_for(market, lake=lake)
    now_ms = utc_now_ms()
    for month in months:
        ingest_month(lake, source, market, month, now_ms=now_ms, log=lambda _line: None)
    preset = load_feature_preset(feature_preset or market.feature_preset)
    for _ in publish_months(lake, market, months, preset):
        pass


def synthetic_lake(root: str, months: int = 3) -> tuple[Lake, Market]:
    """A local lake at ``root`` holding the first ``months`` months of ``synthetic_btc_usd``
    (candles through ``ingest_month``, and the market's feature preset)."""
    market = get_market("synthetic_btc_usd")
    wanted = [market.first_month]
    while len(wanted) < months:
        wanted.append(wanted[-1].next())
    lake = Lake(root)
    write_synthetic_months(lake, market, wanted)
    return lake, market
