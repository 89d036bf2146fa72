"""Sensors: the landing-folder sensor that imports dropped Kraken OHLCVT archives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg

from tradecore_lib.markets import Market
from tradecore_lib.months import Month, utc_now_ms
from tradecore_lib.paths import data_dir
from tradecore_lib.sources.landing import (
    LandingFileChanged,
    LandingFileError,
    LandingFolderError,
    mark_imported,
    plan_imports,
    reject,
    scan,
)
from tradecore_pipelines.assets.candles import candles_key


def build_landing_sensor(
    markets: list[Market],
    *,
    landing_dir: str | Path | None = None,
    minimum_interval_seconds: int = 30,
    settle_seconds: float = 10.0,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.STOPPED,
) -> dg.SensorDefinition:
    """A sensor requesting one ``candles/<market>`` run per new archive in the landing folder.

    Args:
        markets: the markets a file may feed (only ``kraken_spot`` ones have archives).
        landing_dir: the folder to watch; by default ``data/landing`` (``TRADECORE_DATA_DIR``),
            resolved at each evaluation.
        minimum_interval_seconds: seconds between two looks at the folder.
        settle_seconds: files modified more recently than this are still being copied.
        default_status: whether the sensor starts running when the code location loads.

    Each run covers the months the file holds (clipped to the market's partitions) as one
    partition range, passes the file's absolute path as ``archive_file`` to the asset, and
    carries ``run_key = landing:<file name>:<sha256>:<market>``, so a file is imported once
    even if the folder is looked at again. Malformed or unmatched files move to
    ``rejected/`` with a ``.reason.txt``. Only regular files directly in the folder are
    considered; links, sub-folders and other entries are left alone with a warning naming
    them, and a file that changed while it was read waits for the next evaluation.
    """
    targets = [m for m in markets if m.venue == "kraken_spot"]

    @dg.sensor(
        name="landing_folder_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=[candles_key(m) for m in targets] or None,
        default_status=default_status,
        description="Imports Kraken OHLCVT archives (.csv/.zip) dropped into data/landing/ into "
        "the candle partitions they cover; malformed files go to data/landing/rejected/.",
    )
    def landing_folder_sensor(
        context: dg.SensorEvaluationContext,
    ) -> Iterator[dg.RunRequest | dg.SkipReason]:
        landing = Path(landing_dir) if landing_dir is not None else data_dir() / "landing"
        current = Month.of_ms(utc_now_ms())
        requested = 0
        found = scan(landing, settle_seconds=settle_seconds)
        for ignored in found.ignored:
            context.log.warning(f"landing folder {landing}: ignoring {ignored.name}: "
                                f"{ignored.reason}")
        for path in found.files:
            try:
                plans = plan_imports(path, targets, current=current)
            except LandingFileChanged as exc:
                context.log.warning(str(exc))
                continue
            except LandingFileError as exc:
                try:
                    moved = reject(landing, path, str(exc))
                except LandingFolderError as folder_problem:
                    context.log.warning(f"cannot reject {path.name} ({exc}): {folder_problem}")
                    continue
                context.log.warning(f"rejected {path.name} -> {moved}: {exc}")
                continue
            for plan in plans:
                requested += 1
                context.log.info(
                    f"importing {path.name} into {plan.market.name}/candles "
                    f"{plan.months[0]}..{plan.months[-1]}"
                )
                yield dg.RunRequest(
                    run_key=plan.run_key,
                    asset_selection=[candles_key(plan.market)],
                    tags={
                        "dagster/asset_partition_range_start": plan.months[0].partition_key,
                        "dagster/asset_partition_range_end": plan.months[-1].partition_key,
                        "tradecore/landing_file": path.name,
                        "tradecore/landing_sha256": plan.sha256,
                    },
                    run_config={
                        "ops": {
                            f"{plan.market.name}__candles": {
                                "config": {"archive_file": str(plan.path)}
                            }
                        }
                    },
                )
            try:
                mark_imported(landing, plans)
            except LandingFolderError as folder_problem:
                # The runs are still requested; their run keys keep a later look from
                # importing the file twice.
                context.log.warning(f"cannot record the import of {path.name}: {folder_problem}")
        if not requested:
            yield dg.SkipReason(f"no new archive in {landing}")

    return landing_folder_sensor
