"""Stored check results block later consumers: a corrupted, re-written or never-checked candle
month is refused by features/<market> in a new run, naming market, partition, check and fix."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from tradecore_lib.lake import candle_key
from tradecore_lib.months import Month
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.features import build_features_asset
from tradecore_pipelines.check_records import check_stored_months
from tradecore_pipelines.check_records import main as check_records_main
from tradecore_pipelines.resources import default_lake_resource

FEB = Month(2024, 2)
RANGE = {  # February and March: features of March read February for warm-up
    "dagster/asset_partition_range_start": "2024-02-01",
    "dagster/asset_partition_range_end": "2024-03-01",
}


@pytest.fixture
def chain(synthetic_market):
    return (build_candles_asset(synthetic_market), build_candle_checks(synthetic_market),
            build_features_asset(synthetic_market))


def _features(features, instance, lake_resource, partition="2024-03-01"):
    return dg.materialize([features], instance=instance, resources={"lake": lake_resource},
                          partition_key=partition, raise_on_error=False)


def _refusal(result: dg.ExecuteInProcessResult, features: dg.AssetsDefinition) -> str:
    assert not result.success
    failure = result.failure_data_for_node(features.op.name)
    # A permanent failure: Dagster's retry policy is not applied to it.
    assert failure.user_failure_data is not None
    return failure.user_failure_data.description


def _corrupt_february(lake_resource, market) -> None:
    """Inverted OHLC inside a valid parquet file: a high below the close."""
    lake = lake_resource.get_lake()
    key = candle_key(market, FEB)
    table = lake.read_table(key)
    high = table.column("high").to_numpy().copy()
    high[100] = table.column("close")[100].as_py() - 50.0
    lake.write_table(key, table.set_column(2, "high", [high]))


def test_a_failed_check_of_the_warmup_month_blocks_features_in_a_later_run(
    chain, lake_resource, synthetic_market
):
    candles, checks, features = chain
    with dg.instance_for_test() as instance:
        assert dg.materialize([candles, checks], instance=instance,
                              resources={"lake": lake_resource}, tags=RANGE).success

        # The stored February is corrupted and its checks, re-run, fail.
        _corrupt_february(lake_resource, synthetic_market)
        recheck = dg.materialize(
            [candles, checks], selection=dg.AssetSelection.all_asset_checks(), instance=instance,
            resources={"lake": lake_resource}, tags={"dagster/partition": "2024-02-01"},
            raise_on_error=False,
        )
        assert not recheck.success
        # March reads February for warm-up: a new run refuses to build on it.
        result = _features(features, instance, lake_resource)
        message = _refusal(result, features)
        assert "synthetic_btc_usd/features 2024-03..2024-03 refuses to build" in message
        assert "market synthetic_btc_usd" in message
        assert "partition 2024-02: check ohlc_sanity: FAILED on the file stored now" in message
        assert "1 row(s) with high below max(open, close)" in message
        assert "re-materialize those months of synthetic_btc_usd/candles" in message
        assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)

        # Fixed by re-materializing the month (its checks run with it).
        assert dg.materialize([candles, checks], instance=instance,
                              resources={"lake": lake_resource},
                              partition_key="2024-02-01").success
        assert _features(features, instance, lake_resource).success


def test_a_file_changed_since_its_check_is_refused_until_checked_again(
    chain, lake_resource, synthetic_market
):
    candles, checks, features = chain
    with dg.instance_for_test() as instance:
        assert dg.materialize([candles, checks], instance=instance,
                              resources={"lake": lake_resource}, tags=RANGE).success
        _corrupt_february(lake_resource, synthetic_market)  # no check has seen this file
        message = _refusal(_features(features, instance, lake_resource), features)
        assert "partition 2024-02: check schema: last checked on another file" in message
        assert "partition 2024-03" not in message
        assert "`make check-candles MARKET=synthetic_btc_usd` checks every stored month" in message

        # The check command finds what is wrong, and the refusal now names the failed check.
        evaluations = check_stored_months(instance, lake_resource, synthetic_market)
        assert len(evaluations) == 10  # five checks of the two stored months, in one run
        assert {(e.partition, e.check_name) for e in evaluations if not e.passed} == {
            ("2024-02-01", "ohlc_sanity")
        }
        message = _refusal(_features(features, instance, lake_resource), features)
        assert "partition 2024-02: check ohlc_sanity: FAILED" in message


def test_a_lake_without_check_records_is_refused_until_the_check_command_ran(
    chain, synthetic_market, tmp_path, monkeypatch, capsys
):
    """An existing lake on a fresh DAGSTER_HOME: refused, then checked by the documented
    command's entry point (``make check-candles`` runs it), then accepted."""
    candles, checks, features = chain
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("TRADECORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADECORE_LAKE_ROOT", str(tmp_path / "lake"))
    lake_resource = default_lake_resource()
    with dg.instance_for_test() as other:  # the lake was filled under another instance
        assert dg.materialize([candles], instance=other, resources={"lake": lake_resource},
                              tags=RANGE).success
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        message = _refusal(_features(features, instance, lake_resource), features)
        assert "partition 2024-02: check coverage: never checked" in message
        assert "make check-candles MARKET=synthetic_btc_usd" in message

        assert check_records_main(["--market", "synthetic_btc_usd"]) == 0
        assert ("synthetic_btc_usd: 2 stored month(s) checked, 0 failed check(s)"
                in capsys.readouterr().out)
        assert _features(features, instance, lake_resource).success
