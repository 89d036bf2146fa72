"""Automation: features follow candles, retraining by lineage, the champion judged again.

Three kinds of sensor (one each over every market, and the retraining sensor per market),
visible and switchable in the UI (Automation). Each decides from Dagster's records (the
event log, the runs, the stored hand-off records) and the cursor Dagster keeps for it, so a
restart or days switched off change nothing but when:

``features_follow_candles`` (running by default)
    Reads each market's candle materializations after its cursor (an event-log storage id),
    oldest first, and waits at the first whose run has not finished (its blocking checks may
    still be running). For each changed month M, features M and M+1 (M+1 warms up on M) are
    requested when their candles are materialized, newer than their features, and every
    candle check of the months they read passed on the file stored now (the rule the
    features step itself applies, :func:`~tradecore_pipelines.check_records.check_problems`):
    a failed check stops the chain there. The months go as one single-run range per run of
    consecutive months, whatever their age (an archive import of old months included), so
    twelve months landed while the sensor was off are one run.

``retrain__<market>`` (running by default)
    Requests ``ppo_agent -> evaluation -> champion -> signals`` (one run, the promotion gate
    included) by :func:`tradecore_lib.monitoring.decide_retraining`: the first training once
    the preset's windows are complete; then when enough complete months (or bars) landed
    after the newest month a training used, or the champion monitor warned, and the cooldown
    passed. The run pins the windows' anchor to the month it saw (run config
    ``windows.anchor``), its run key and tags name the data (``<preset>:<first>..<last>``), so
    the same data is never trained twice. A failed training is retried on the same data up to
    ``max_retries`` times, then a ``retraining_gave_up`` alert is raised and new data is
    needed. The training compute is the deployment's default (``ppo_agent``'s ``compute``).

``champion_monitor`` (running by default)
    Requests ``champion_monitor/<market>`` for the completed months after the current
    champion's validation window whose record is missing, names another champion, or is
    older than the month's features: after each new month, and again for a new champion.

The signals refresh after each ingestion is in :mod:`tradecore_pipelines.schedules`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

# Not exported by dagster 1.13 (check_records.py reads it too); the Dagster family is pinned.
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
)

from tradecore_lib import months as clock
from tradecore_lib.alerts import RETRAINING_GAVE_UP, Alert, raise_alert
from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.monitoring import (
    HOUR_MS,
    RetrainPolicy,
    decide_retraining,
    first_live_month,
    newest_month,
)
from tradecore_lib.months import Month, iso_utc
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.record import RecordError, RunRecord
from tradecore_pipelines.assets.candles import candles_key
from tradecore_pipelines.assets.champion import champion_key
from tradecore_pipelines.assets.champion_monitor import (
    CHAMPION_RUN_ID,
    CHECK_NAME,
    JUDGED,
    champion_monitor_key,
)
from tradecore_pipelines.assets.evaluation import evaluation_key
from tradecore_pipelines.assets.features import features_key
from tradecore_pipelines.assets.training import ppo_agent_key
from tradecore_pipelines.check_records import check_problems
from tradecore_pipelines.constants import SIGNALS, asset_key
from tradecore_pipelines.io_managers import latest_record
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.schedules import build_signals_refresh_sensor

MATERIALIZATION = dg.DagsterEventType.ASSET_MATERIALIZATION
FINISHED = frozenset({dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                      dg.DagsterRunStatus.CANCELED})
FAILED = frozenset({dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})
AUTOMATION_TAG = "tradecore/automation"
MARKET_TAG = "tradecore/market"
RETRAIN_TAG = "tradecore/retrain"
DATA_TAG = "tradecore/retrain_data"
ATTEMPT_TAG = "tradecore/retrain_attempt"
# A requested retraining whose run has not appeared after this long is forgotten (the
# request is made again under the same run key, which Dagster launches at most once).
LAUNCH_GRACE_MS = HOUR_MS
# Candle materializations read per tick; the rest on the next tick.
EVENTS_PER_TICK = 1000
TAG_LIMIT = 250
# Evaluations of the monitor's check read for its newest judged month.
MONITOR_HISTORY = 48


def automation_definitions(
    markets: Sequence[Market],
    *,
    retrain: RetrainPolicy | None = None,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.Definitions:
    """The automation sensors of ``markets``: ``features_follow_candles``,
    ``champion_monitor`` and ``signals_refresh`` over all of them, one ``retrain__<market>``
    per market.

    Args:
        markets: the markets with chains.
        retrain: the retraining thresholds (default :class:`RetrainPolicy`); the champion
            monitor's window and margins are its asset's (``build_champion_monitor``).
        default_status: whether they run when the code location loads (running by default;
            each is switched off in the UI's Automation page).
    """
    sensors = [
        build_features_sensor(markets, default_status=default_status),
        build_monitor_sensor(markets, default_status=default_status),
        build_signals_refresh_sensor(markets, default_status=default_status),
        *(build_retrain_sensor(market, policy=retrain, default_status=default_status)
          for market in markets),
    ]
    return dg.Definitions(sensors=sensors)


# ------------------------------------------------------------------------------ helpers
def current_month() -> Month:
    """The month in progress (UTC), by TradeCore's clock."""
    return Month.of_ms(clock.utc_now_ms())


def consecutive(months: Iterable[Month]) -> list[list[Month]]:
    """``months`` sorted and split into runs of consecutive months."""
    runs: list[list[Month]] = []
    for month in sorted(set(months)):
        if runs and runs[-1][-1].next() == month:
            runs[-1].append(month)
        else:
            runs.append([month])
    return runs


def latest_by_month(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[Month, int]:
    """Each materialized month of ``key`` and the storage id of its latest materialization."""
    return {Month.parse(partition): storage_id for partition, storage_id in
            instance.get_latest_storage_id_by_partition(key, MATERIALIZATION).items()}


def latest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    """The storage id of ``key``'s latest materialization, None before the first."""
    records = instance.fetch_materializations(key, limit=1).records
    return records[0].storage_id if records else None


def run_finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Whether the run of an event has finished (a runless event has no run: finished)."""
    if not run_id:
        return True
    run = instance.get_run_by_id(run_id)
    return run is None or run.status in FINISHED


def range_tags(months: Sequence[Month]) -> dict[str, str]:
    return {"dagster/asset_partition_range_start": months[0].partition_key,
            "dagster/asset_partition_range_end": months[-1].partition_key}


def span(months: Sequence[Month]) -> str:
    return f"{months[0]}..{months[-1]}" if len(months) > 1 else str(months[0])


def _cursor(context: dg.SensorEvaluationContext) -> dict[str, Any]:
    if not context.cursor:
        return {}
    try:
        value = json.loads(context.cursor)
    except json.JSONDecodeError:
        context.log.warning(f"ignoring an unreadable cursor {context.cursor[:80]!r}")
        return {}
    return value if isinstance(value, dict) else {}


def _dump(cursor: dict[str, Any]) -> str:
    return json.dumps(cursor, sort_keys=True)


def _record_of(instance: dg.DagsterInstance, lake: Lake, key: dg.AssetKey
               ) -> Any | None:
    found = latest_record(instance, lake, key)
    return None if found is None else found[0]


# ------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class Tick:
    """One market's part of a sensor tick: its run requests, its new cursor state and what
    it did (a skip reason when it requested nothing)."""

    requests: list[dg.RunRequest]
    state: Any
    message: str


def _per_market(context: dg.SensorEvaluationContext, markets: Sequence[Market],
                tick: Any) -> dg.SensorResult:
    """Run ``tick(market, state)`` for each market on its part of the cursor (a JSON object
    keyed by market name) and merge the results."""
    cursor = _cursor(context)
    requests: list[dg.RunRequest] = []
    messages = []
    for market in markets:
        result: Tick = tick(market, cursor.get(market.name))
        cursor[market.name] = result.state
        requests += result.requests
        messages.append(f"{market.name}: {result.message}")
    return dg.SensorResult(run_requests=requests, cursor=_dump(cursor),
                           skip_reason=None if requests else "; ".join(messages))


def _market_sensor(name: str, markets: Sequence[Market], selection: list[dg.AssetKey],
                   tick: Callable[[dg.SensorEvaluationContext, Lake, Market, Any], Tick],
                   minimum_interval_seconds: int, default_status: dg.DefaultSensorStatus,
                   description: str) -> dg.SensorDefinition:
    """A sensor running ``tick`` once per market on the lake, each with its cursor part."""

    @dg.sensor(name=name, minimum_interval_seconds=minimum_interval_seconds,
               asset_selection=selection, default_status=default_status,
               description=description)
    def market_sensor(context: dg.SensorEvaluationContext, lake: LakeResource
                      ) -> dg.SensorResult:
        store = lake.get_lake()
        return _per_market(context, markets, lambda market, state: tick(
            context, store, market, state))

    return market_sensor


def build_features_sensor(
    markets: Sequence[Market],
    *,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """``features_follow_candles`` over ``markets`` (see the module docstring)."""
    return _market_sensor(
        "features_follow_candles", markets, [features_key(m) for m in markets], features_tick,
        minimum_interval_seconds, default_status,
        "When a month of `<market>/candles` is (re)materialized and its checks pass, brings "
        "that month's and the next month's `<market>/features` up to date: one single-run range "
        "per run of consecutive months, old months (backfills, archive imports) included; "
        "months whose candle checks failed are left out.")


def features_tick(context: dg.SensorEvaluationContext, lake: Lake, market: Market,
                  state: Any) -> Tick:
    """One market's features requests after its candle materializations past ``state``
    (the storage id of the last one handled)."""
    instance = context.instance
    candles, features = candles_key(market), features_key(market)
    after = state if isinstance(state, int) else None
    result = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=candles, after_storage_id=after),
        limit=EVENTS_PER_TICK, ascending=True)
    changed: set[Month] = set()
    waiting = None
    for record in result.records:
        if not run_finished(instance, record.run_id):
            waiting = record  # its checks may not have run yet: wait for the whole run
            break
        after = record.storage_id
        if record.partition_key:
            changed.add(Month.parse(record.partition_key))
    if not changed:
        why = (f"waiting for run {waiting.run_id} (candles {(waiting.partition_key or '')[:7]})"
               " to finish" if waiting else "no new candles")
        return Tick([], after, why)
    wanted = feature_months_to_update(instance, lake, market, changed, log=context.log)
    runs = consecutive(wanted)
    requests = [
        dg.RunRequest(
            run_key=f"features:{market.name}:{span(run)}:{after}",
            asset_selection=[features],
            tags={**range_tags(run), AUTOMATION_TAG: "features_follow_candles",
                  MARKET_TAG: market.name,
                  "tradecore/candle_months": _clip(", ".join(str(m) for m in sorted(changed)))},
        )
        for run in runs
    ]
    if not requests:
        return Tick([], after, f"candles {span(sorted(changed))} changed; their features are "
                    "up to date or wait for passing checks")
    ranges = ", ".join(span(run) for run in runs)
    context.log.info(f"requesting {features.to_user_string()} {ranges}")
    return Tick(requests, after, f"requested features {ranges}")


def feature_months_to_update(instance: dg.DagsterInstance, lake: Lake, market: Market,
                             changed: Iterable[Month], *, log: Any = None) -> list[Month]:
    """The feature months to bring up to date after the candle months ``changed``.

    Month F is one when it is F or F-1 of a changed month, inside the market's months (up to
    the month in progress), its candles are materialized, its features are missing or older
    than the latest materialization of candles F-1 or F, and every candle check of F-1 and F
    passed on the file stored now.
    """
    candles = latest_by_month(instance, candles_key(market))
    features = latest_by_month(instance, features_key(market))
    last = current_month()
    months = []
    for month in sorted({m for c in changed for m in (c, c.next())}):
        if not market.first_month <= month <= last or month not in candles:
            continue
        inputs = max(candles.get(month.previous(), 0), candles[month])
        if features.get(month, -1) > inputs:
            continue  # built after its candles (e.g. in the same run)
        problems = check_problems(instance, lake, market, [month.previous(), month])
        if problems:
            if log is not None:
                log.warning(f"{market.name}/features {month} not requested: candle check "
                            f"problems: " + "; ".join(f"{p.month} {p.check}: {p.detail}"
                                                     for p in problems))
            continue
        months.append(month)
    return months


# ------------------------------------------------------------------------------ retraining
@dataclass(frozen=True)
class _Pending:
    """The cursor's retraining request: its data key, attempt and when it was made."""

    key: str
    attempt: int
    requested_ms: int

    @classmethod
    def of(cls, state: dict[str, Any]) -> _Pending | None:
        pending = state.get("pending")
        if not isinstance(pending, dict):
            return None
        return cls(str(pending["key"]), int(pending["attempt"]), int(pending["requested_ms"]))

    def dump(self) -> dict[str, Any]:
        return {"key": self.key, "attempt": self.attempt, "requested_ms": self.requested_ms}


def build_retrain_sensor(
    market: Market,
    *,
    policy: RetrainPolicy | None = None,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """``retrain__<market>`` (see the module docstring and
    :func:`tradecore_lib.monitoring.decide_retraining`)."""
    policy = policy or RetrainPolicy()
    cfg = load_train_config(market.train_preset)  # validated with the markets at load
    selection = [ppo_agent_key(market), evaluation_key(market), champion_key(market),
                 asset_key(market.name, SIGNALS)]
    thresholds = " or ".join(x for x in (
        f"{policy.new_months} new complete month(s)" if policy.new_months else "",
        f"{policy.new_bars} new bars" if policy.new_bars else "") if x)

    @dg.sensor(
        name=f"retrain__{market.name}",
        minimum_interval_seconds=minimum_interval_seconds,
        asset_selection=selection,
        default_status=default_status,
        description=f"Retrains {market.name} (ppo_agent -> evaluation -> champion -> signals, "
        f"preset {market.train_preset}): first when its windows are complete, then after "
        f"{thresholds} past the last training's newest month"
        + (" or a champion_monitor warning" if policy.on_monitor_warning else "")
        + f", at most once per {policy.cooldown_hours:g} h; the same data never twice; a "
        f"failed training retried {policy.max_retries} time(s), then an alert.",
    )
    def retrain(context: dg.SensorEvaluationContext, lake: LakeResource) -> dg.SensorResult:
        return _retrain_tick(context, lake.get_lake(), market, policy, cfg, selection)

    return retrain


def _retrain_tick(context: dg.SensorEvaluationContext, lake: Lake, market: Market,
                  policy: RetrainPolicy, cfg: Any, selection: list[dg.AssetKey]
                  ) -> dg.SensorResult:
    instance = context.instance
    now = clock.utc_now_ms()
    state = _cursor(context)
    pending = _Pending.of(state)

    def skip(reason: str, **changes: Any) -> dg.SensorResult:
        return dg.SensorResult(skip_reason=reason, cursor=_dump({**state, **changes}))

    try:
        champion = _record_of(instance, lake, champion_key(market))
        trained = _record_of(instance, lake, ppo_agent_key(market))
    except RecordError as exc:
        return skip(f"cannot read the records retraining decides from: {exc}")
    assert champion is None or isinstance(champion, ChampionRecord)
    assert trained is None or isinstance(trained, RunRecord)
    current = current_month()
    features = latest_by_month(instance, features_key(market))
    available = sorted(m for m in features if market.first_month <= m < current)
    trained_through = max((m for m in (_newest(champion.run) if champion else None,
                                       _newest(trained) if trained else None) if m),
                          default=None)
    warning = _monitor_warning(instance, market, champion)
    last_request = _last_request_ms(instance, market, state, trained)
    decision = decide_retraining(
        policy, cfg, available, trained_through=trained_through,
        bars=_bars(instance, market, [m for m in available if trained_through is None
                                      or m > trained_through]),
        last_request_ms=last_request, now_ms=now, warning=warning)
    data = decision.data

    if pending is not None:
        runs = _runs_of(instance, pending.key)
        attempt_run = next((r for r in runs
                            if r.dagster_run.tags.get(ATTEMPT_TAG) == str(pending.attempt)), None)
        if attempt_run is None:
            if now - pending.requested_ms < LAUNCH_GRACE_MS:
                return skip(f"retraining on {pending.key} (attempt {pending.attempt}) requested "
                            f"at {iso_utc(pending.requested_ms)}, not launched yet")
            context.log.warning(f"the retraining on {pending.key} requested at "
                                f"{iso_utc(pending.requested_ms)} never started; asking again")
            return _request(context, state, market, cfg, selection, pending.key,
                            pending.attempt, now, state.get("reason", "re-request"),
                            state.get("trigger", "re-request"), state.get("run_config", {}),
                            state.get("tags", {}))
        status = attempt_run.dagster_run.status
        if status not in FINISHED:
            return skip(f"retraining run {attempt_run.dagster_run.run_id} on {pending.key} "
                        f"is {status.value.lower()}")
        if status in FAILED and (data is None or data.key == pending.key):
            if pending.attempt <= policy.max_retries:
                ended_ms = int((attempt_run.end_time or now / 1000) * 1000)
                due_ms = ended_ms + int(policy.retry_delay_minutes * 60_000)
                if now < due_ms:
                    return skip(f"retraining run {attempt_run.dagster_run.run_id} on "
                                f"{pending.key} failed; retry {pending.attempt} of "
                                f"{policy.max_retries} at {iso_utc(due_ms)}")
                return _request(context, state, market, cfg, selection, pending.key,
                                pending.attempt + 1, now,
                                f"retry {pending.attempt} of {policy.max_retries} after run "
                                f"{attempt_run.dagster_run.run_id} failed",
                                "retry", state.get("run_config", {}), state.get("tags", {}))
            _alert_gave_up(market, pending, attempt_run.dagster_run, policy)
            context.log.error(f"retraining on {pending.key} failed {pending.attempt} time(s); "
                              "alert raised; waiting for new data")
            state = {**state, "pending": None, "gave_up": pending.key}
            return skip(f"retraining on {pending.key} failed {pending.attempt} time(s): gave "
                        "up until new data lands (alert raised)")
        state = {**state, "pending": None}  # done (or superseded by new data)

    if not decision.due or data is None:
        return skip(decision.reason)
    if data.key in (state.get("last_key"), state.get("gave_up")) or _runs_of(instance, data.key):
        return skip(f"{decision.reason}; a retraining on this data ({data.key}) was already "
                    "requested")
    run_config: dict[str, Any] = {}
    if data.rolling:
        # The run trains on exactly the data that triggered it, even if a month lands first.
        run_config = {"ops": {f"{market.name}__ppo_agent": {"config": {
            "windows": {"anchor": str(data.last)}}}}}
    tags = {"tradecore/retrain_months": f"{data.first}..{data.last}",
            "tradecore/retrain_new_months": ", ".join(str(m) for m in decision.new_months)
            or "-"}
    return _request(context, state, market, cfg, selection, data.key, 1, now, decision.reason,
                    decision.trigger, run_config, tags)


def _request(context: dg.SensorEvaluationContext, state: dict[str, Any], market: Market,
             cfg: Any, selection: list[dg.AssetKey], key: str, attempt: int, now: int,
             reason: str, trigger: str, run_config: dict[str, Any], tags: dict[str, str]
             ) -> dg.SensorResult:
    context.log.info(f"requesting the retraining of {market.name} on {key} (attempt {attempt}):"
                     f" {reason}")
    request = dg.RunRequest(
        run_key=f"retrain:{market.name}:{key}:{attempt}",
        asset_selection=selection,
        run_config=run_config,
        tags={**tags, AUTOMATION_TAG: "retrain", RETRAIN_TAG: market.name, DATA_TAG: key,
              ATTEMPT_TAG: str(attempt), "tradecore/retrain_trigger": trigger,
              "tradecore/retrain_reason": _clip(reason), "tradecore/train_preset": cfg.name},
    )
    cursor = {**state, "pending": _Pending(key, attempt, now).dump(), "last_key": key,
              "reason": reason, "trigger": trigger, "run_config": run_config, "tags": tags}
    if attempt == 1:
        cursor["last_request_ms"] = now
    return dg.SensorResult(run_requests=[request], cursor=_dump(cursor))


def _newest(record: RunRecord) -> Month | None:
    return newest_month([m for fold in record.folds
                         for m in (*fold.train_months, *fold.validation_months,
                                   *fold.test_months)])


def _runs_of(instance: dg.DagsterInstance, key: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(tags={DATA_TAG: key}), limit=50))


def _last_request_ms(instance: dg.DagsterInstance, market: Market, state: dict[str, Any],
                     trained: RunRecord | None) -> int | None:
    """When the market was last retrained or asked to be: the cursor's last request, the
    newest retraining run, the latest ppo_agent materialization (a training by hand counts)."""
    times = [state.get("last_request_ms")]
    runs = instance.get_run_records(dg.RunsFilter(tags={RETRAIN_TAG: market.name}), limit=1)
    if runs:
        times.append(int(runs[0].create_timestamp.timestamp() * 1000))
    if trained is not None:
        records = instance.fetch_materializations(ppo_agent_key(market), limit=1).records
        if records:
            times.append(int(records[0].timestamp * 1000))
    known = [int(t) for t in times if t is not None]
    return max(known) if known else None


def _bars(instance: dg.DagsterInstance, market: Market, months: list[Month]
          ) -> dict[Month, int]:
    """Rows of each month's latest features materialization (``dagster/row_count``)."""
    if not months:
        return {}
    storage = instance.get_latest_storage_id_by_partition(
        features_key(market), MATERIALIZATION, partitions={m.partition_key for m in months})
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=features_key(market), storage_ids=list(storage.values())),
        limit=len(storage) or 1).records
    bars = {}
    for record in records:
        materialization = record.asset_materialization
        rows = materialization.metadata.get("dagster/row_count") if materialization else None
        if rows is not None and record.partition_key:
            bars[Month.parse(record.partition_key)] = int(rows.value)
    return bars


def _monitor_warning(instance: dg.DagsterInstance, market: Market,
                     champion: ChampionRecord | None) -> str | None:
    """The champion monitor's warning on the current champion, if its newest judged month
    warned: the latest evaluation of each month is read, and the newest month decides (a
    later re-check of an older month does not hide it)."""
    if champion is None:
        return None
    history = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(champion_monitor_key(market), CHECK_NAME), limit=MONITOR_HISTORY,
        status=COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES)
    latest: dict[str, dg.AssetCheckEvaluation] = {}
    for record in history:  # newest first
        evaluation = record.event.asset_check_evaluation if record.event else None
        if evaluation is None or not record.partition or record.partition in latest:
            continue
        run_id, judged = (evaluation.metadata.get(k) for k in (CHAMPION_RUN_ID, JUDGED))
        if run_id is None or run_id.value != champion.run_id or not (judged and judged.value):
            continue
        latest[record.partition] = evaluation
    if not latest:
        return None
    newest = latest[max(latest)]
    return None if newest.passed else (newest.description or f"{CHECK_NAME} warned")


def _alert_gave_up(market: Market, pending: _Pending, run: dg.DagsterRun,
                   policy: RetrainPolicy) -> None:
    raise_alert(Alert(
        kind=RETRAINING_GAVE_UP, market=market.name, run_id=run.run_id, job=run.job_name,
        summary=f"retraining on {pending.key} failed {pending.attempt} time(s) "
        f"({policy.max_retries} retries); no further try until new data lands",
        details={"data": pending.key, "attempts": pending.attempt}),
        dedupe_key=f"{market.name}:{pending.key}")


def _clip(text: str) -> str:
    return text if len(text) <= TAG_LIMIT else text[: TAG_LIMIT - 3] + "..."


# ------------------------------------------------------------------------------ the monitor
def build_monitor_sensor(
    markets: Sequence[Market],
    *,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """``champion_monitor`` over ``markets`` (see the module docstring)."""
    return _market_sensor(
        "champion_monitor", markets, [champion_monitor_key(m) for m in markets], monitor_tick,
        minimum_interval_seconds, default_status,
        "Scores each market's current champion on each completed month after its validation "
        "window (`<market>/champion_monitor`; once per champion and month, again when the "
        "month's features change): one single-run range per run of consecutive months.")


def monitor_tick(context: dg.SensorEvaluationContext, lake: Lake, market: Market,
                 state: Any) -> Tick:
    """One market's champion_monitor requests; ``state`` lists the run keys requested."""
    instance = context.instance
    requested = [str(k) for k in state] if isinstance(state, list) else []
    try:
        champion = _record_of(instance, lake, champion_key(market))
    except RecordError as exc:
        return Tick([], requested, f"cannot read the champion: {exc}")
    if champion is None:
        return Tick([], requested, "no champion yet")
    stale = monitor_months_to_update(instance, market, champion)
    features = latest_by_month(instance, features_key(market))
    requests = []
    for run in consecutive(stale):
        key = (f"champion_monitor:{market.name}:{champion.run_id}:{span(run)}:"
               f"{max(features[m] for m in run)}")
        if key in requested:
            continue
        requested.append(key)
        context.log.info(f"requesting {champion_monitor_key(market).to_user_string()} "
                         f"{span(run)} for {champion.label}")
        requests.append(dg.RunRequest(
            run_key=key, asset_selection=[champion_monitor_key(market)],
            tags={**range_tags(run), AUTOMATION_TAG: "champion_monitor",
                  MARKET_TAG: market.name, "tradecore/champion_run_id": champion.run_id}))
    if requests:
        message = f"requested {len(requests)} run(s)"
    elif stale:
        message = f"{champion.label}: {span(stale)} already requested"
    else:
        message = (f"{champion.label} is scored on every completed month since "
                   f"{first_live_month(champion)}")
    return Tick(requests, requested[-50:], message)


def monitor_months_to_update(instance: dg.DagsterInstance, market: Market,
                             champion: ChampionRecord) -> list[Month]:
    """The completed months after the champion's validation window, with features, whose
    monitor record is missing, names another champion, or predates the month's features."""
    first, current = first_live_month(champion), current_month()
    features = latest_by_month(instance, features_key(market))
    candidates = sorted(m for m in features if first <= m < current)
    if not candidates:
        return []
    key = champion_monitor_key(market)
    storage = instance.get_latest_storage_id_by_partition(
        key, MATERIALIZATION, partitions={m.partition_key for m in candidates})
    scored: dict[Month, tuple[int, str | None]] = {}
    if storage:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, storage_ids=list(storage.values())),
            limit=len(storage)).records
        for record in records:
            materialization = record.asset_materialization
            run_id = materialization.metadata.get(CHAMPION_RUN_ID) if materialization else None
            if record.partition_key:
                scored[Month.parse(record.partition_key)] = (
                    record.storage_id, None if run_id is None else str(run_id.value))
    stale = []
    for month in candidates:
        storage_id, run_id = scored.get(month, (-1, None))
        if run_id != champion.run_id or storage_id < features[month]:
            stale.append(month)
    return stale
