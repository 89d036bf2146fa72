"""``<market>/funding``: a perpetual future's funding rate per period, one parquet per month.

Built for markets whose venue publishes a funding history (Kraken Futures). The history comes
in one response, so a run fetches it once and writes every selected month from it; the
engine charges the stored rates when the market's ``holding_costs.funding`` is ``venue``
(:mod:`tradecore_lib.sources.funding` documents the units and the layout).
"""

import dagster as dg

from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_lib.sources.funding import (
    FUNDING_VENUES,
    PublishedFunding,
    fetch_funding_history,
    publish_funding_month,
)
from tradecore_pipelines.constants import FUNDING, asset_key, layer_tags
from tradecore_pipelines.failures import VENUE_RETRY, step_failures
from tradecore_pipelines.metadata import markdown_table, timestamp_or_dash
from tradecore_pipelines.partitions import monthly_partitions
from tradecore_pipelines.resources import LakeResource


def has_funding_asset(market: Market) -> bool:
    """Whether ``market`` gets a ``<market>/funding`` asset (its venue publishes funding)."""
    return market.venue in FUNDING_VENUES


def _metadata(published: PublishedFunding, source: dict) -> dict:
    spacing = published.longest_spacing_hours
    return {
        "dagster/row_count": published.periods,
        "periods": published.periods,
        "rate_sum": published.rate_sum,
        "first_ts": timestamp_or_dash(published.first_ts_ms),
        "last_ts": timestamp_or_dash(published.last_ts_ms),
        "longest_spacing_hours": spacing if spacing is not None else dg.MetadataValue.text("-"),
        "path": dg.MetadataValue.path(published.stored.uri),
        "sha256": published.stored.sha256,
        "size_bytes": published.stored.size_bytes,
        "preview": markdown_table(published.preview),
        **source,
    }


def build_funding_asset(market: Market) -> dg.AssetsDefinition:
    """The ``<market>/funding`` asset: fetch the venue's funding history once per run and
    atomically publish each selected month's periods."""

    @dg.asset(
        key=asset_key(market.name, FUNDING),
        group_name=market.name,
        tags=layer_tags(FUNDING),
        partitions_def=monthly_partitions(market),
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=VENUE_RETRY,
        kinds={"parquet", "ccxt"},
        description=f"Funding rate of {market.symbol} on {market.venue} per funding period "
        "(ts, rate: the fraction of notional a long pays for the period, a short receives), "
        f"one parquet file per month under `<lake_root>/{market.venue}/{market.pair_dir}/"
        "funding/`. Charged by the engine when holding_costs.funding is 'venue'.",
        metadata={
            "market": market.name,
            "venue": market.venue,
            "symbol": market.symbol,
            "layout": f"{market.venue}/{market.pair_dir}/funding/year=YYYY/month=MM/"
            "part-0.parquet",
            "charged": market.funding_from_venue,
        },
    )
    def funding(context: dg.AssetExecutionContext, lake: LakeResource) -> None:
        store = lake.get_lake()
        months = [Month.parse(key) for key in context.partition_keys]
        with step_failures():
            history = fetch_funding_history(market, now_ms=utc_now_ms(), log=context.log.info)
            for month in months:
                published = publish_funding_month(store, market, month, history)
                context.add_asset_metadata(_metadata(published, history.metadata),
                                           partition_key=month.partition_key)
                context.log.info(f"{market.name}/funding {month}: {published.periods} periods, "
                                 f"rates summing to {published.rate_sum:.6g}")

    return funding
