"""<market>/funding materialized through Dagster from the loopback Kraken Futures."""

import dagster as dg
import numpy as np
import pyarrow as pa

from tests.conftest import kraken_market
from tradecore_lib.months import Month
from tradecore_lib.sources.funding import funding_key
from tradecore_pipelines.assets.candles import build_candles_asset
from tradecore_pipelines.assets.funding import build_funding_asset, has_funding_asset
from tradecore_pipelines.constants import LAYER_TAG
from tradecore_pipelines.definitions import market_chain
from tradecore_pipelines.schedules import build_refresh_schedule

RANGE = {
    "dagster/asset_partition_range_start": "2024-02-01",
    "dagster/asset_partition_range_end": "2024-03-01",
}


def test_two_months_from_one_history_request_with_exact_rates(make_kraken, lake_resource):
    server = make_kraken()
    market = kraken_market("kraken_futures")
    asset = build_funding_asset(market)
    assert asset.key == dg.AssetKey(["kraken_futures_btc_usd", "funding"])
    assert asset.tags_by_key[asset.key][LAYER_TAG] == "ingestion"
    with dg.instance_for_test() as instance:
        result = dg.materialize([asset], instance=instance, resources={"lake": lake_resource},
                                tags=RANGE)
        assert result.success
        materializations = result.asset_materializations_for_node(asset.op.name)
    assert [m.partition for m in materializations] == ["2024-02-01", "2024-03-01"]
    assert server.fake.requests["/derivatives/api/v4/historicalfundingrates"] == 1
    lake = lake_resource.get_lake()
    truth = server.fake.funding
    for m in materializations:
        month = Month.parse(m.partition)
        inside = (truth.ts_ms >= month.start_ms) & (truth.ts_ms < month.end_ms)
        table = lake.read_table(funding_key(market, month))
        assert table.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
        np.testing.assert_array_equal(table["ts"].cast(pa.int64()).to_numpy(), truth.ts_ms[inside])
        np.testing.assert_array_equal(table["rate"].to_numpy(), truth.relative[inside])
        md = m.metadata
        assert md["periods"].value == inside.sum() > 0
        assert md["rate_sum"].value == float(truth.relative[inside].sum())
        assert md["path"].value == lake.uri(funding_key(market, month))
        assert md["sha256"].value == lake.sha256(funding_key(market, month))
        assert md["endpoint_kind"].value == "historical funding rates"


def test_a_permanent_error_fails_without_dagster_retry(make_kraken, lake_resource, monkeypatch):
    server = make_kraken()
    server.fake.funding.relative[0] = float("nan")
    asset = build_funding_asset(kraken_market("kraken_futures"))
    with dg.instance_for_test() as instance:
        result = dg.materialize([asset], instance=instance, resources={"lake": lake_resource},
                                partition_key="2024-03-01", raise_on_error=False)
    assert not result.success
    failure = result.failure_data_for_node(asset.op.name).error
    assert "malformed payload" in failure.message
    assert server.fake.requests["/derivatives/api/v4/historicalfundingrates"] == 1


def test_only_perpetual_futures_markets_have_funding():
    spot, futures = kraken_market("kraken_spot"), kraken_market("kraken_futures")
    assert not has_funding_asset(spot) and has_funding_asset(futures)
    keys = {key.path[-1] for d in market_chain(spot) if isinstance(d, dg.AssetsDefinition)
            for key in d.keys}
    assert "funding" not in keys
    keys = {key.path[-1] for d in market_chain(futures) if isinstance(d, dg.AssetsDefinition)
            for key in d.keys}
    assert "funding" in keys


def test_the_refresh_schedule_keeps_funding_with_the_candles(lake_resource):
    market = kraken_market("kraken_futures")
    schedule = build_refresh_schedule(market)
    chain = [build_candles_asset(market), build_funding_asset(market)]
    job = dg.Definitions(assets=chain, schedules=[schedule], resources={"lake": lake_resource}
                         ).resolve_job_def(schedule.job_name)
    assert {key.path[-1] for key in job.asset_layer.selected_asset_keys} == {"candles",
                                                                             "funding"}
