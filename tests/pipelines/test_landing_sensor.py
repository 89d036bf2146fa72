"""The landing-folder sensor and the refresh schedule, evaluated with Dagster's test contexts."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import dagster as dg
import pytest

from tests.conftest import kraken_market
from tests.lib.test_kraken_archive import MAR, archive_lines, write_zip
from tradecore_lib.lake import candle_key
from tradecore_lib.months import Month
from tradecore_pipelines.assets.candles import build_candles_asset
from tradecore_pipelines.schedules import build_refresh_schedule
from tradecore_pipelines.sensors import build_landing_sensor

SPOT = kraken_market("kraken_spot")
FUTURES = kraken_market("kraken_futures")


def evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    output = sensor(dg.build_sensor_context(instance=instance))
    return [item for item in output if isinstance(item, dg.RunRequest)]


@pytest.fixture
def landing(tmp_path):
    folder = tmp_path / "landing"
    folder.mkdir()
    return folder


def test_new_archive_requests_one_import_run_then_nothing(landing, lake_resource):
    path = write_zip(landing / "XBTUSD_OHLCVT.zip", archive_lines())
    sensor = build_landing_sensor([SPOT, FUTURES], landing_dir=landing, settle_seconds=0)
    with dg.instance_for_test() as instance:
        [request] = evaluate(sensor, instance)
        assert request.asset_selection == [dg.AssetKey([SPOT.name, "candles"])]
        assert request.tags["dagster/asset_partition_range_start"] == "2024-02-01"
        assert request.tags["dagster/asset_partition_range_end"] == "2024-03-01"
        assert request.run_key.startswith("landing:XBTUSD_OHLCVT.zip:")
        assert request.run_config == {
            "ops": {"kraken_spot_btc_usd__candles": {"config": {"archive_file": str(path)}}}
        }
        assert evaluate(sensor, instance) == []  # imported once

        # The request runs as is against the real candles asset: both months are published.
        result = dg.materialize(
            [build_candles_asset(SPOT)], instance=instance, resources={"lake": lake_resource},
            run_config=request.run_config, tags=request.tags,
        )
        assert result.success
        lake = lake_resource.get_lake()
        assert lake.exists(candle_key(SPOT, Month(2024, 2))) and lake.exists(candle_key(SPOT, MAR))
        materialized = result.asset_materializations_for_node("kraken_spot_btc_usd__candles")
        assert {m.metadata["endpoint_kind"].value for m in materialized} == {"archive"}

    # A new version of the file under the same name is imported again.
    lines = archive_lines(seed=4)
    path.unlink()
    write_zip(path, lines)
    with dg.instance_for_test() as instance:
        assert len(evaluate(sensor, instance)) == 1


@pytest.mark.parametrize(
    "name, content, reason",
    [
        ("XBTUSD_1.csv", "1709251080,1,2,0.5,1.5,3\n", "line 1: 6 columns, expected 7"),
        ("notes.csv", "1709251080,1,2,0.5,1.5,3,4\n", "holds no 1-minute Kraken archive"),
        ("XBTUSD_1.csv", "1230768000,1,2,0.5,1.5,3,4\n", "none of kraken_spot_btc_usd"),
    ],
)
def test_unusable_files_are_rejected_with_a_reason(landing, name, content, reason):
    (landing / name).write_text(content)
    sensor = build_landing_sensor([SPOT], landing_dir=landing, settle_seconds=0)
    with dg.instance_for_test() as instance:
        assert evaluate(sensor, instance) == []
    assert not (landing / name).exists()
    assert (landing / "rejected" / name).exists()
    assert reason in (landing / "rejected" / f"{name}.reason.txt").read_text()


def test_files_still_being_copied_wait(landing):
    write_zip(landing / "XBTUSD_OHLCVT.zip", archive_lines())
    (landing / "XBTUSD_1.csv.part").write_text("partial")
    sensor = build_landing_sensor([SPOT], landing_dir=landing, settle_seconds=3600)
    with dg.instance_for_test() as instance:
        assert evaluate(sensor, instance) == []
    assert not (landing / "rejected").exists()


def test_refresh_schedule_requests_the_current_month():
    schedule = build_refresh_schedule(SPOT)
    assert schedule.cron_schedule == "0 * * * *"
    mid = datetime(2024, 3, 15, 10, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=mid)
    assert [r.partition_key for r in schedule(context)] == ["2024-03-01"]
    # Just after a month ends, its last minutes are fetched once more.
    start = datetime(2024, 4, 1, 0, tzinfo=UTC)
    context = dg.build_schedule_context(scheduled_execution_time=start)
    keys = [r.partition_key for r in schedule(context)]
    assert keys == ["2024-03-01", "2024-04-01"]
    every_15 = build_refresh_schedule(SPOT, cron_schedule="*/15 * * * *")
    assert every_15.cron_schedule == "*/15 * * * *"


def test_sensor_and_schedule_load_with_the_candles_asset(lake_resource):
    defs = dg.Definitions(
        assets=[build_candles_asset(SPOT)],
        schedules=[build_refresh_schedule(SPOT)],
        sensors=[build_landing_sensor([SPOT], landing_dir=os.devnull)],
        resources={"lake": lake_resource},
    )
    dg.Definitions.validate_loadable(defs)


# ------------------------------------------------------------ only regular files, never outside
@pytest.fixture
def outside(tmp_path):
    """A valid archive outside the landing folder, and its bytes and mtime, to prove it is
    never moved, rewritten or recorded."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    path = write_zip(folder / "XBTUSD_OHLCVT.zip", archive_lines())
    return path, path.read_bytes(), path.stat().st_mtime_ns


def _untouched(outside) -> bool:
    path, data, mtime_ns = outside
    return path.exists() and path.read_bytes() == data and path.stat().st_mtime_ns == mtime_ns


@pytest.mark.parametrize("link_name", ["XBTUSD_OHLCVT.zip", "XBTUSD_1.csv"])
def test_symlink_to_an_outside_file_is_ignored_with_a_warning(landing, outside, link_name,
                                                             capfd):
    (landing / link_name).symlink_to(outside[0])
    sensor = build_landing_sensor([SPOT], landing_dir=landing, settle_seconds=0)
    with dg.instance_for_test() as instance:
        assert evaluate(sensor, instance) == []
        assert evaluate(sensor, instance) == []  # never planned, on any look
    assert _untouched(outside)
    assert (landing / link_name).is_symlink()
    assert not (landing / "rejected").exists() and not (landing / ".imported").exists()
    assert f"ignoring {link_name}: a symbolic link (to {outside[0]})" in capfd.readouterr().err


def test_symlinked_folder_and_bookkeeping_links_are_never_followed(landing, outside, capfd):
    (landing / "more").symlink_to(outside[0].parent, target_is_directory=True)
    # rejected/ as a link to the outside: a rejection must not write there.
    (landing / "rejected").symlink_to(outside[0].parent, target_is_directory=True)
    (landing / "XBTUSD_1.csv").write_text("1709251080,1,2,0.5,1.5,3\n")  # malformed
    sensor = build_landing_sensor([SPOT], landing_dir=landing, settle_seconds=0)
    with dg.instance_for_test() as instance:
        assert evaluate(sensor, instance) == []
    assert _untouched(outside)
    assert sorted(p.name for p in outside[0].parent.iterdir()) == ["XBTUSD_OHLCVT.zip"]
    assert (landing / "XBTUSD_1.csv").exists()  # not rejected into the linked folder
    warnings = capfd.readouterr().err
    assert "ignoring more: a symbolic link" in warnings
    assert "ignoring rejected: the landing folder's own rejected/ is a symbolic link" in warnings


def test_a_file_replaced_while_being_read_is_planned_again_as_the_new_file(landing, monkeypatch,
                                                                           capfd):
    import hashlib

    from tradecore_lib.sources import kraken_archive

    path = write_zip(landing / "XBTUSD_OHLCVT.zip", archive_lines(seed=3))
    replacement = write_zip(landing.parent / "new.zip", archive_lines(seed=5))
    parse = kraken_archive.parse_ohlcvt
    swapped = []

    def parse_while_swapped(data, *, where):
        if not swapped:  # a user copies a new version over the file mid-read
            swapped.append(True)
            os.replace(replacement, path)
        return parse(data, where=where)

    monkeypatch.setattr(kraken_archive, "parse_ohlcvt", parse_while_swapped)
    sensor = build_landing_sensor([SPOT], landing_dir=landing, settle_seconds=0)
    with dg.instance_for_test() as instance:
        assert evaluate(sensor, instance) == []
        assert "replaced or rewritten while it was read" in capfd.readouterr().err
        [request] = evaluate(sensor, instance)
    # The request names the bytes that are in the folder now, and they import as is.
    assert request.tags["tradecore/landing_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert request.run_config["ops"]["kraken_spot_btc_usd__candles"]["config"] == {
        "archive_file": str(path)
    }
