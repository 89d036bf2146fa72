"""features/<market> through Dagster: single-run backfills, warm-up from the previous month,
inline presets from run config, and per-partition metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from dagster_aws.s3 import S3Resource

from tradecore_lib.features import WARMUP_COLUMN, compute_features, feature_key, load_feature_preset
from tradecore_lib.lake import candle_key
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month
from tradecore_pipelines.assets.features import build_features_asset, features_key
from tradecore_pipelines.check_records import check_stored_months
from tradecore_pipelines.resources import LakeResource

RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-02-01",
}


@pytest.fixture
def market(synthetic_market_module):
    return synthetic_market_module


@pytest.fixture(scope="module")
def instance():
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="module")
def checked_lake(tmp_path_factory, instance) -> LakeResource:
    """A lake with three months of candles written straight to it, as candles/<market> leaves
    them, then checked with the one command for stored months (features refuse unchecked
    candles). Shared by the module: each test writes other feature tables."""
    folder = tmp_path_factory.mktemp("features_lake")
    return LakeResource(root=str(folder / "lake"), manifests_dir=str(folder / "manifests"),
                        s3=S3Resource())


@pytest.fixture(scope="module")
def candles_in_lake(checked_lake, instance, synthetic_market_module):
    market = synthetic_market_module
    lake = checked_lake.get_lake()
    tables = {}
    for month in (Month(2024, 1), Month(2024, 2), Month(2024, 3)):
        tables[month] = generate_month(SyntheticOptions(), market.name, month)
        lake.write_table(candle_key(market, month), tables[month])
    evaluations = check_stored_months(instance, checked_lake, market)
    assert len(evaluations) == 15 and all(e.passed for e in evaluations)
    return tables


@pytest.fixture(scope="module")
def synthetic_market_module():
    return get_market("synthetic_btc_usd").model_copy(update={"feature_preset": "extended"})


def failure_message(result: dg.ExecuteInProcessResult, asset: dg.AssetsDefinition) -> str:
    """The message of the asset's step failure: a dg.Failure's own, or the user error's."""
    error = result.failure_data_for_node(asset.op.name).error
    return error.cause.message if error.cause else error.message


def test_definition_shape(market, lake_resource) -> None:
    asset = build_features_asset(market)
    assert asset.key == features_key(market)
    assert asset.group_names_by_key[asset.key] == market.name
    assert asset.tags_by_key[asset.key]["tradecore/layer"] == "features"
    assert asset.backfill_policy == dg.BackfillPolicy.single_run()
    dep = asset.get_partition_mapping(dg.AssetKey([market.name, "candles"]))
    assert dep.start_offset == -1 and dep.allow_nonexistent_upstream_partitions
    spec = asset.specs_by_key[asset.key]
    assert "| `vwap` | Rolling VWAP |" in spec.metadata["indicator_catalog"].value
    assert "`extended`" in spec.description
    defs = dg.Definitions(assets=[asset], resources={"lake": lake_resource})
    defs.resolve_all_job_defs()


def test_backfill_range_is_one_run_with_warmup_and_metadata(
    checked_lake, market, candles_in_lake, instance
) -> None:
    asset = build_features_asset(market)
    checks_runs = len(instance.get_runs())
    result = dg.materialize(
        [asset], instance=instance, resources={"lake": checked_lake}, tags=RANGE
    )
    assert result.success
    assert len(instance.get_runs()) == checks_runs + 1
    materializations = result.asset_materializations_for_node(asset.op.name)
    assert [m.partition for m in materializations] == ["2024-01-01", "2024-02-01"]
    lake = checked_lake.get_lake()
    preset = load_feature_preset("extended")
    jan, feb = materializations
    assert jan.metadata["history_rows"].value == 0  # first month: no previous candles
    assert jan.metadata["warmup_incomplete_rows"].value == preset.lookback
    assert feb.metadata["history_rows"].value == candles_in_lake[Month(2024, 1)].num_rows
    assert feb.metadata["warmup_incomplete_rows"].value == 0
    for m in materializations:
        month = Month.parse(m.partition)
        stored = lake.read_table(feature_key("extended", market, month))
        assert m.metadata["path"].value == lake.uri(feature_key("extended", market, month))
        assert m.metadata["dagster/row_count"].value == stored.num_rows
        assert m.metadata["rows_after_gap"].value > 0
        stats = m.metadata["column_stats"].value.records
        assert [r.data["column"] for r in stats] == preset.columns
        assert m.metadata["xray"].value.startswith(f"![X-Ray {month}](data:image/png;base64,iVBOR")
    february = lake.read_table(feature_key("extended", market, Month(2024, 2)))
    expected = compute_features(
        candles_in_lake[Month(2024, 2)], preset, history=candles_in_lake[Month(2024, 1)]
    ).table
    assert february.equals(expected)
    assert not february.column(WARMUP_COLUMN).to_numpy().any()


def test_single_month_reads_previous_month_for_warmup(
    checked_lake, market, candles_in_lake, instance
):
    asset = build_features_asset(market)
    result = dg.materialize(
        [asset], instance=instance, resources={"lake": checked_lake}, partition_key="2024-03-01"
    )
    assert result.success
    stored = checked_lake.get_lake().read_table(feature_key("extended", market, Month(2024, 3)))
    assert not stored.column(WARMUP_COLUMN).to_numpy().any()
    assert np.isfinite(stored.column("rsi_14").to_numpy()[0])


def test_inline_custom_preset_from_run_config(checked_lake, market, candles_in_lake, instance):
    asset = build_features_asset(market)
    config = {"indicators": [{"name": "rsi", "params": {"window": 21}}, {"name": "session"}]}
    result = dg.materialize(
        [asset],
        instance=instance,
        resources={"lake": checked_lake},
        partition_key="2024-02-01",
        run_config={"ops": {asset.op.name: {"config": config}}},
    )
    assert result.success
    (m,) = result.asset_materializations_for_node(asset.op.name)
    name = m.metadata["preset"].value
    assert name.startswith("custom-")
    stored = checked_lake.get_lake().read_table(feature_key(name, market, Month(2024, 2)))
    assert stored.column_names == [
        "ts", "rsi_21", "session_tokyo", "session_london", "session_new_york", "day_of_week",
        "weekend", WARMUP_COLUMN,
    ]


def test_invalid_inline_preset_fails_before_writing(
    checked_lake, market, candles_in_lake, instance
):
    asset = build_features_asset(market)
    config = {"indicators": [{"name": "rsi", "params": {"window": 0}}]}
    features = Path(checked_lake.root) / "features"
    before = sorted(features.rglob("*")) if features.exists() else []
    result = dg.materialize(
        [asset],
        instance=instance,
        resources={"lake": checked_lake},
        partition_key="2024-02-01",
        run_config={"ops": {asset.op.name: {"config": config}}},
        raise_on_error=False,
    )
    assert not result.success
    assert "parameter 'window' = 0 is out of bounds [2, 1000]" in failure_message(result, asset)
    assert (sorted(features.rglob("*")) if features.exists() else []) == before


def test_missing_candles_named_before_any_write(lake_resource, market) -> None:
    asset = build_features_asset(market)
    result = dg.materialize(
        [asset], resources={"lake": lake_resource}, partition_key="2024-05-01",
        raise_on_error=False,
    )
    assert not result.success
    assert f"{market.name}/candles has no partition for 2024-05" in failure_message(result, asset)
