"""Schedules: hourly refresh of the current month of each live (Kraken) market, and the
signals refresh of each champion after each ingestion.

``refresh_candles__<market>`` (live markets, stopped by default: it calls Kraken) refreshes the
current month's candles (and funding) on the market's ``refresh_cron``.

``signals_refresh`` (one sensor for every market, running by default) is a sensor rather than a
schedule: it follows ingestion instead of guessing when it lands. When the newest month with
features (the month ``signals/<market>`` walks) was materialized again, or a new champion
was promoted, after the latest signals, it requests ``signals/<market>`` once (its run key
names the champion and the features materialization). Hourly candle refreshes therefore give
hourly signals; nothing runs while no champion exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import dagster as dg

from tradecore_lib import months as clock
from tradecore_lib.markets import Market
from tradecore_lib.months import Month
from tradecore_pipelines.assets.candles import candles_key
from tradecore_pipelines.assets.champion import champion_key
from tradecore_pipelines.assets.features import features_key
from tradecore_pipelines.assets.funding import has_funding_asset
from tradecore_pipelines.constants import FUNDING, SIGNALS, asset_key

# For this long after a month ends its partition is refreshed once more alongside the new
# month, so the last minutes of the old month (closed after the previous tick) land too.
MONTH_CLOSE_GRACE_HOURS = 6


def build_refresh_schedule(
    market: Market,
    *,
    cron_schedule: str = "0 * * * *",
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """A schedule materializing ``candles/<market>`` (and ``<market>/funding`` of a perpetual
    future, so the funding the engine charges keeps up with the candles) for the current
    month (UTC).

    Args:
        market: the market to refresh (a live venue; history is filled by backfills).
        cron_schedule: when to refresh, in UTC; hourly by default.
        default_status: whether the schedule starts running when the code location loads.

    Within :data:`MONTH_CLOSE_GRACE_HOURS` of a month's end the previous month is requested
    too. The Kraken spot source continues from its stored cursor, so a refresh downloads only
    the trades since the last one.
    """
    key = candles_key(market)
    keys = [key, asset_key(market.name, FUNDING)] if has_funding_asset(market) else [key]

    @dg.schedule(
        name=f"refresh_candles__{market.name}",
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        target=dg.AssetSelection.assets(*keys),
        default_status=default_status,
        description=f"Refreshes the current month of {market.name}/candles"
        + (" and its funding." if len(keys) > 1 else "."),
    )
    def refresh(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        tick_ms = int(context.scheduled_execution_time.timestamp() * 1000)
        current = Month.of_ms(tick_ms)
        months = [current]
        if tick_ms - current.start_ms < MONTH_CLOSE_GRACE_HOURS * 3_600_000:
            months.insert(0, current.previous())
        return [
            dg.RunRequest(
                run_key=f"{market.name}:{month}:{tick_ms}",
                partition_key=month.partition_key,
                tags={"tradecore/refresh": "current_month"},
            )
            for month in months
            if month >= market.first_month
        ]

    return refresh


def build_signals_refresh_sensor(
    markets: Sequence[Market],
    *,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """``signals_refresh``: each market's ``signals/<market>`` after each ingestion and each
    new champion (see the module docstring). Its cursor maps each market to the run key it
    requested last."""

    @dg.sensor(
        name="signals_refresh",
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=[asset_key(m.name, SIGNALS) for m in markets],
        default_status=default_status,
        description="Refreshes `<market>/signals` (the champion's dry run on the newest month) "
        "once after each materialization of the newest month's features and after each new "
        "champion; nothing for a market without a champion.",
    )
    def signals_refresh(context: dg.SensorEvaluationContext) -> dg.SensorResult:
        try:
            cursor = json.loads(context.cursor) if context.cursor else {}
        except json.JSONDecodeError:
            cursor = {}
        requests, skipped = [], []
        for market in markets:
            request, why = signals_request(context.instance, market, cursor.get(market.name))
            if request is None:
                skipped.append(f"{market.name}: {why}")
                continue
            context.log.info(f"requesting {market.name}/signals: {why}")
            cursor[market.name] = request.run_key
            requests.append(request)
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True),
                               skip_reason=None if requests else "; ".join(skipped))

    return signals_refresh


def signals_request(instance: dg.DagsterInstance, market: Market, last_key: str | None
                    ) -> tuple[dg.RunRequest | None, str]:
    """The signals run ``market`` needs now (None when up to date) and why.

    Due when a champion exists and the latest ``signals/<market>`` is older than the latest
    champion or than the latest materialization of the newest features month (up to the month
    in progress); its run key names both, so one change asks once.
    """
    event = dg.DagsterEventType.ASSET_MATERIALIZATION
    champions = instance.fetch_materializations(champion_key(market), limit=1).records
    if not champions:
        return None, "no champion yet"
    current = Month.of_ms(clock.utc_now_ms())
    months = {Month.parse(p): storage_id for p, storage_id in
              instance.get_latest_storage_id_by_partition(features_key(market), event).items()}
    newest = max((m for m in months if m <= current), default=None)
    if newest is None:
        return None, "no features yet"
    signals = asset_key(market.name, SIGNALS)
    latest = instance.fetch_materializations(signals, limit=1).records
    champion_id, features_id = champions[0].storage_id, months[newest]
    if latest and latest[0].storage_id > max(champion_id, features_id):
        return None, f"signals are newer than the champion and the {newest} features"
    key = f"signals:{market.name}:{champion_id}:{newest}:{features_id}"
    if key == last_key:
        return None, f"signals on {newest} already requested"
    return dg.RunRequest(
        run_key=key, asset_selection=[signals],
        tags={"tradecore/automation": "signals_refresh", "tradecore/market": market.name,
              "tradecore/signals_month": str(newest),
              "tradecore/champion_storage_id": str(champion_id),
              "tradecore/features_storage_id": str(features_id)},
    ), f"the champion or the {newest} features changed after the latest signals"
