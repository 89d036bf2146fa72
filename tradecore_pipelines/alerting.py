"""Alerts (run failures, champion warnings) and retention.

- ``run_failure_alerts`` (a run-failure sensor, RUNNING by default, every job of the code
  location): one alert per failed run, :data:`~tradecore_lib.alerts.RUN_FAILURE`, naming the
  run, its job, each failed step with the asset it materializes and its error (class and
  redacted message), the partition and the market, written to ``data/alerts/`` and delivered
  to the webhook / Telegram (:mod:`tradecore_lib.alerts`). A receiver that is down never fails
  the tick: the record says ``undelivered`` and why.
- ``alert_redelivery`` (a sensor, RUNNING by default, every 5 minutes): retries the
  undelivered, retryable channels of the last day's records, a bounded number of rounds.
- the Broom Closet job and its weekly schedule (:mod:`tradecore_pipelines.retention`).

The market of a failed run is its ``tradecore/market`` tag (:data:`MARKET_TAG`, set by
sensors that launch per-market runs), else the one market of its failed steps' assets
(``<market>/<layer>``), else the one market of its asset selection; a run spanning several
markets names none (each failed step still names its asset).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import dagster as dg
from dagster._utils.error import SerializableErrorInfo

from tradecore_lib.alerts import (
    RUN_FAILURE,
    Alert,
    AlertError,
    AlertSender,
    AlertSettings,
    FailedStep,
    raise_alert,
    retry_undelivered,
)
from tradecore_lib.markets import Market
from tradecore_lib.months import iso_utc
from tradecore_pipelines.constants import STAGES
from tradecore_pipelines.retention import retention_definitions

MARKET_TAG = "tradecore/market"
PARTITION_TAG = "dagster/partition"
RUN_FAILURE_SENSOR = "run_failure_alerts"
REDELIVERY_SENSOR = "alert_redelivery"


def _error_of(error: SerializableErrorInfo | None) -> AlertError | None:
    """The user's error inside Dagster's wrappers (``DagsterExecutionStepExecutionError`` and
    kin carry it as their cause), with the ``module.Class:`` prefix of its message dropped."""
    if error is None:
        return None
    while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    cls_name = error.cls_name or "Error"
    message = error.message.strip()
    head, sep, rest = message.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls_name:
        message = rest
    return AlertError(class_name=cls_name, message=message)


def step_error(event: dg.DagsterEvent) -> AlertError | None:
    """The error of a ``STEP_FAILURE`` event. A ``dg.Failure`` (how TradeCore errors fail a
    step, :func:`tradecore_pipelines.failures.step_failures`) shows its description and the
    TradeCore error class it names in its ``error`` metadata."""
    data = event.step_failure_data
    user = data.user_failure_data
    if user is not None:
        named = (user.metadata or {}).get("error")
        cls_name = str(named.value) if named is not None else "Failure"
        fallback = data.error.message if data.error is not None else ""
        return AlertError(class_name=cls_name, message=user.description or fallback)
    return _error_of(data.error)


def step_assets(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, list[str]]:
    """Step key -> the asset keys (``<market>/<layer>``) it materializes or checks, from the
    run's execution plan snapshot."""
    if not run.execution_plan_snapshot_id:
        return {}
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    assets: dict[str, list[str]] = {}
    for step in snapshot.steps:
        for output in step.outputs:
            props = output.properties
            key = None if props is None else (
                props.asset_key or (props.asset_check_key.asset_key
                                    if props.asset_check_key else None))
            if key is not None:
                text = key.to_user_string()
                if text not in assets.setdefault(step.key, []):
                    assets[step.key].append(text)
    return assets


def market_of(keys: Sequence[str]) -> str | None:
    """The one market of asset keys ``<market>/<layer>`` (None: none, or several)."""
    markets = {key.split("/")[0] for key in keys
               if key.count("/") == 1 and key.split("/")[1] in STAGES}
    return markets.pop() if len(markets) == 1 else None


def failed_run_alert(instance: dg.DagsterInstance, run: dg.DagsterRun,
                     failure: dg.DagsterEvent | None,
                     step_failures: Sequence[dg.DagsterEvent]) -> Alert:
    """The :data:`RUN_FAILURE` alert of ``run``: its failed steps (in order), their assets and
    errors, the market and partition; the run's own failure message when no step failed (a
    dead worker, a launch that never started)."""
    assets = step_assets(instance, run)
    failed = tuple(
        FailedStep(step=event.step_key or "?", asset=", ".join(assets.get(event.step_key or "",
                                                                          [])) or None,
                   error=step_error(event))
        for event in step_failures)
    step_keys = [f.step for f in failed]
    market = run.tags.get(MARKET_TAG) or market_of(
        [key for f in failed for key in assets.get(f.step, [])])
    if market is None and run.asset_selection:
        market = market_of([key.to_user_string() for key in run.asset_selection])
    if failed:
        first = failed[0]
        error = first.error
        where = (f"step {first.step}" if len(failed) == 1
                 else f"{len(failed)} steps ({', '.join(step_keys)})")
        what = f": {error.class_name}: {error.message}" if error else ""
        summary = f"run {run.run_id} of {run.job_name} failed at {where}{what}"
    else:
        job_failure = failure.job_failure_data if failure is not None else None
        error = _error_of(job_failure.error) if job_failure is not None else None
        message = (failure.message if failure is not None else None) or "no failure message"
        if error is None:
            error = AlertError(class_name="RunFailure", message=message)
        summary = f"run {run.run_id} of {run.job_name} failed: {error.message}"
    details = {"failure_reason": run.tags["dagster/failure_reason"]} \
        if "dagster/failure_reason" in run.tags else {}
    # The alert's time is when the run ended (failed), not when a tick got to it.
    stored = instance.get_run_record_by_id(run.run_id)
    ended = {"time": iso_utc(round(stored.end_time * 1000))} \
        if stored is not None and stored.end_time else {}
    return Alert(kind=RUN_FAILURE, summary=summary, market=market, run_id=run.run_id,
                 job=run.job_name, step=step_keys[0] if step_keys else None,
                 partition=run.tags.get(PARTITION_TAG), error=error, failed_steps=failed,
                 details=details, **ended)


class _Senders:
    """One :class:`AlertSender` per settings, kept across ticks (a receiver that is down
    costs one timeout per pause, not one per alert)."""

    def __init__(self, settings: Callable[[], AlertSettings]) -> None:
        self._settings = settings
        self._sender: AlertSender | None = None

    def get(self) -> AlertSender:
        settings = self._settings()  # read per tick: a changed variable takes effect
        if self._sender is None or self._sender.settings != settings:
            self._sender = AlertSender(settings)
        return self._sender


def build_run_failure_sensor(
    *,
    settings: Callable[[], AlertSettings] = AlertSettings.from_env,
    minimum_interval_seconds: int = 30,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The ``run_failure_alerts`` sensor: one alert record per failed run of this code
    location, delivered to the configured channels (see the module docstring)."""
    senders = _Senders(settings)

    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Writes an alert record (run, job, failed steps and their errors, market, "
        "time) to data/alerts/ for each failed run, and posts it to TRADECORE_ALERT_WEBHOOK "
        "and Telegram when configured. A receiver that is down never fails the tick.",
    )
    def run_failure_alerts(context: dg.RunFailureSensorContext) -> None:
        # Returning None (not a SkipReason) lets Dagster hand every failed run of the tick to
        # this function, not only the first.
        run = context.dagster_run
        alert = failed_run_alert(context.instance, run, context.failure_event,
                                 context.get_step_failure_events())
        record = raise_alert(alert, dedupe_key=f"{RUN_FAILURE}:{run.run_id}",
                             sender=senders.get())
        states = ", ".join(f"{c} {d.status}" + (f" ({d.reason})" if d.reason else "")
                           for c, d in record.deliveries.items()) or "no channel configured"
        message = f"alert {record.alert_id} for run {run.run_id}: {states}"
        if record.delivered:
            context.log.info(message)
        else:
            context.log.warning(message)

    return run_failure_alerts


def build_alert_redelivery_sensor(
    *,
    settings: Callable[[], AlertSettings] = AlertSettings.from_env,
    minimum_interval_seconds: int = 300,
    max_rounds: int = 5,
    max_age_s: float = 86_400.0,
    min_age_s: float = 60.0,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The ``alert_redelivery`` sensor: retries undelivered records (see
    :func:`tradecore_lib.alerts.retry_undelivered` for the bounds)."""
    senders = _Senders(settings)

    @dg.sensor(
        name=REDELIVERY_SENSOR,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=f"Retries the undelivered alerts of the last {max_age_s / 3600:g} h "
        f"(at most {max_rounds} delivery rounds each; a 4xx refusal is never retried).",
    )
    def alert_redelivery(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        retried = retry_undelivered(sender=senders.get(), max_rounds=max_rounds,
                                    max_age_s=max_age_s, min_age_s=min_age_s)
        if not retried:
            return dg.SkipReason("no undelivered alert due for a retry")
        done = sum(r.delivered for r in retried)
        for record in retried:
            log = context.log.info if record.delivered else context.log.warning
            log(f"alert {record.alert_id}: " + ", ".join(
                f"{c} {d.status}" + (f" ({d.reason})" if d.reason else "")
                for c, d in record.deliveries.items()))
        return dg.SkipReason(f"retried {len(retried)} alert(s): {done} now delivered")

    return alert_redelivery


def alerting_definitions(markets: Sequence[Market]) -> dg.Definitions:
    """The alert sensors and the retention job of ``markets``."""
    alerts = dg.Definitions(sensors=[build_run_failure_sensor(),
                                     build_alert_redelivery_sensor()])
    return dg.Definitions.merge(alerts, retention_definitions(markets))


__all__ = [
    "MARKET_TAG", "alerting_definitions", "build_alert_redelivery_sensor",
    "build_run_failure_sensor", "failed_run_alert",
]
