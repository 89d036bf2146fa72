"""candles/<market> and manifest/<market> materialized through Dagster on a temporary lake."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from tradecore_lib.candles import ts_millis
from tradecore_lib.lake import candle_key
from tradecore_lib.months import Month
from tradecore_lib.sources import FetchResult
from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month
from tradecore_pipelines.assets import candles as candles_module
from tradecore_pipelines.assets.candles import build_candle_checks, build_candles_asset
from tradecore_pipelines.assets.manifest import build_manifest_asset

REPO = Path(__file__).resolve().parents[2]
# Running only the checks of one partition: Dagster 1.13 derives no partitions definition
# from a check-only selection, so the partition travels as the run tag (as the UI sets it).
FEBRUARY = {"dagster/partition": "2024-02-01"}
RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-03-01",
}


@pytest.fixture
def chain(synthetic_market):
    return (
        build_candles_asset(synthetic_market),
        build_candle_checks(synthetic_market),
        build_manifest_asset(synthetic_market),
    )


def _evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.partition, e.check_name): e for e in result.get_asset_check_evaluations()}


def test_three_month_backfill_runs_as_one_run(chain, lake_resource, synthetic_market, tmp_path):
    candles, checks, manifest = chain
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [candles, checks], instance=instance, resources={"lake": lake_resource}, tags=RANGE
        )
        assert result.success
        runs = instance.get_runs()
        assert len(runs) == 1
        materializations = result.asset_materializations_for_node(candles.op.name)
        assert [m.partition for m in materializations] == ["2024-01-01", "2024-02-01", "2024-03-01"]
        lake = lake_resource.get_lake()
        for m in materializations:
            month = Month.parse(m.partition)
            md = m.metadata
            key = candle_key(synthetic_market, month)
            assert md["path"].value == lake.uri(key)
            assert md["dagster/row_count"].value == lake.read_table(key).num_rows
            assert md["missing_minutes"].value >= 0
            assert md["source"].value == "synthetic"
            assert "| ts |" in md["preview"].value
        evaluations = _evaluations(result)
        assert len(evaluations) == 15  # five checks of three months
        assert all(e.passed for e in evaluations.values())
        assert all(m.metadata["month_complete"].value for m in materializations)

        result = dg.materialize([manifest], instance=instance, resources={"lake": lake_resource})
        assert result.success
    document = json.loads((tmp_path / "manifests" / "synthetic_btc_usd.json").read_text())
    assert [m["month"] for m in document["months"]] == ["2024-01", "2024-02", "2024-03"]
    for entry in document["months"]:
        stored = lake.read_stored(candle_key(synthetic_market, Month.parse(entry["month"])))[1]
        assert entry["sha256"] == stored.sha256 and entry["size_bytes"] == stored.size_bytes
        assert entry["first_ts"].startswith(entry["month"])
    assert document["totals"]["rows"] == sum(m["rows"] for m in document["months"])
    assert "2024-04" in document["missing_months"]


def _recheck_february(candles, checks, instance, lake_resource) -> dg.ExecuteInProcessResult:
    """Run only the candle checks of 2024-02 against what is stored now."""
    return dg.materialize(
        [candles, checks],
        selection=dg.AssetSelection.all_asset_checks(),
        instance=instance,
        resources={"lake": lake_resource},
        tags=FEBRUARY,
        raise_on_error=False,
    )


def test_corrupted_partition_fails_its_check(chain, lake_resource, synthetic_market):
    candles, checks, _ = chain
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [candles, checks],
            instance=instance,
            resources={"lake": lake_resource},
            partition_key="2024-02-01",
        ).success
        lake = lake_resource.get_lake()
        key = candle_key(synthetic_market, Month(2024, 2))
        table = lake.read_table(key)
        # Corrupt the data inside a valid parquet file: a high below the close.
        high = table.column("high").to_numpy().copy()
        high[100] = table.column("close")[100].as_py() - 50.0
        lake.write_table(key, table.set_column(2, "high", [high]))
        recheck = _recheck_february(candles, checks, instance, lake_resource)
        assert not recheck.success
        evaluations = _evaluations(recheck)
        ohlc = evaluations[("2024-02-01", "ohlc_sanity")]
        assert not ohlc.passed
        assert "1 row(s) with high below max(open, close)" in ohlc.description
        assert ohlc.metadata["first_offending_rows"].value[0]["row"] == 100

        # Bytes that are not parquet at all fail every check, naming the file.
        lake.write_bytes(key, b"garbage")
        recheck = _recheck_february(candles, checks, instance, lake_resource)
        schema = _evaluations(recheck)[("2024-02-01", "schema")]
        assert not schema.passed and "is not a readable parquet file" in schema.description


class _InvertedSource:
    """A source that returns one month with an inverted candle (low above high)."""

    def fetch_month(self, market, month, *, now_ms, log):
        table = generate_month(SyntheticOptions(), market.name, month)
        low = table.column("low").to_numpy().copy()
        low[7] = table.column("high")[7].as_py() + 10.0
        return FetchResult(table.set_column(3, "low", [low]), {"source": "broken"})


class _EndsOnThe30thSource:
    """A venue whose data of a past month ends a day early (the 31st never served)."""

    def fetch_month(self, market, month, *, now_ms, log):
        table = generate_month(SyntheticOptions(), market.name, month)
        ts = ts_millis(table)
        return FetchResult(table.slice(0, int(np.searchsorted(ts, month.end_ms - 86_400_000))),
                           {"source": "truncated"})


def test_a_past_month_missing_its_last_day_is_not_complete(
    chain, lake_resource, synthetic_market, monkeypatch, tmp_path
):
    candles, checks, manifest = chain
    monkeypatch.setattr(candles_module, "source_for", lambda *a, **k: _EndsOnThe30thSource())
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [candles, checks], instance=instance, resources={"lake": lake_resource},
            partition_key="2024-03-01", raise_on_error=False,
        )
        assert not result.success  # the blocking coverage check failed
        evaluations = _evaluations(result)
        coverage = evaluations[("2024-03-01", "coverage")]
        assert not coverage.passed
        assert "1440 min before the month's end (tolerance 60 min)" in coverage.description
        assert "the month is not complete" in coverage.description
        assert evaluations[("2024-03-01", "gaps")].passed  # not a gap: the tail is uncovered
        (materialization,) = result.asset_materializations_for_node(candles.op.name)
        assert materialization.metadata["month_complete"].value is False
        assert materialization.metadata["uncovered_tail_minutes"].value >= 1440
        assert dg.materialize([manifest], instance=instance,
                              resources={"lake": lake_resource}).success
    document = json.loads((tmp_path / "manifests" / "synthetic_btc_usd.json").read_text())
    (entry,) = document["months"]
    assert entry["uncovered_tail_minutes"] >= 1440 and entry["month_complete"] is False
    assert document["incomplete_months"] == ["2024-03"]


def test_bad_source_rows_write_nothing(chain, lake_resource, synthetic_market, monkeypatch):
    candles, checks, _ = chain
    lake = lake_resource.get_lake()
    key = candle_key(synthetic_market, Month(2024, 2))
    with dg.instance_for_test() as instance:
        assert dg.materialize(
            [candles],
            instance=instance,
            resources={"lake": lake_resource},
            partition_key="2024-02-01",
        ).success
        good = lake.read_bytes(key)
        monkeypatch.setattr(candles_module, "source_for", lambda *a, **k: _InvertedSource())
        result = dg.materialize(
            [candles, checks],
            instance=instance,
            resources={"lake": lake_resource},
            partition_key="2024-02-01",
            raise_on_error=False,
        )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error
    message = failure.cause.message if failure.cause else failure.message
    assert "synthetic_btc_usd/candles partition 2024-02" in message
    assert "low above min(open, close)" in message and "row=7" in message
    assert lake.read_bytes(key) == good


def test_cli_materialize_writes_the_designed_path_idempotently(tmp_path):
    env = {
        **os.environ,
        "TRADECORE_LAKE_ROOT": str(tmp_path / "lake"),
        "TRADECORE_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path / "home"),
    }
    (tmp_path / "home").mkdir()
    command = [
        str(Path(sys.executable).parent / "dagster"),
        "asset",
        "materialize",
        "-m",
        "tradecore_pipelines.definitions",
        "--select",
        "synthetic_btc_usd/candles",
        "--partition",
        "2024-02-01",
    ]
    digests = []
    for _ in range(2):
        run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-3000:]
        files = sorted(p for p in (tmp_path / "lake").rglob("*") if p.is_file())
        assert [p.relative_to(tmp_path / "lake").as_posix() for p in files] == [
            "synthetic/BTC-USD/1m/year=2024/month=02/part-0.parquet"
        ]
        digests.append(files[0].read_bytes())
    assert digests[0] == digests[1]
    assert np.frombuffer(digests[0][:4], dtype=np.uint8).tobytes() == b"PAR1"


def test_candles_on_an_s3_lake(chain, s3_endpoint, synthetic_market, tmp_path):
    """The same asset against a real S3 API on loopback, configured through dagster-aws."""
    from dagster_aws.s3 import S3Resource

    from tests.conftest import S3_BUCKET, S3_CREDENTIALS
    from tradecore_pipelines.resources import LakeResource

    candles, checks, manifest = chain
    lake_resource = LakeResource(
        root=f"s3://{S3_BUCKET}/dagster-lake",
        manifests_dir=str(tmp_path / "manifests"),
        s3=S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1", **S3_CREDENTIALS),
    )
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [candles, checks],
            instance=instance,
            resources={"lake": lake_resource},
            partition_key="2024-02-01",
        )
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())
        assert dg.materialize(
            [manifest], instance=instance, resources={"lake": lake_resource}
        ).success
    path = result.asset_materializations_for_node(candles.op.name)[0].metadata["path"].value
    assert (
        path
        == f"s3://{S3_BUCKET}/dagster-lake/synthetic/BTC-USD/1m/year=2024/month=02/part-0.parquet"
    )
    document = json.loads((tmp_path / "manifests" / "synthetic_btc_usd.json").read_text())
    assert document["months"][0]["path"] == path
    assert "testing" not in json.dumps(document), "credentials must not reach the manifest"
