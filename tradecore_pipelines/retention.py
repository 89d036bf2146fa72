"""The Broom Closet: the ``broom_closet`` job pruning what is safe to prune, and its weekly
schedule.

The job's one op, ``sweep``, plans with :func:`tradecore_lib.retention.plan_retention` and, when
``dry_run`` is false, applies the plan; either way its output metadata says what it removed (or
would remove) and the bytes freed, as rounded tables. ``dry_run`` is true by default, so a run
launched from the launchpad without thinking removes nothing. The schedule
``broom_closet_weekly`` (Sunday 03:00 UTC) is STOPPED by default; switched on in the UI it runs
the job with ``dry_run: false``.

Which runs are protected, per market, is read here, where the Dagster instance is (all reads,
no writes):

- the champion: the latest ``<market>/champion`` record, or, before that asset ever
  materialized, the run the MLflow ``champion`` alias names (MLflow is only asked then);
- every run the latest ``<market>/ppo_agent`` and ``<market>/evaluation`` records name (each
  fold, and the champion an evaluation scored): the runs a fresh evaluation, champion or
  signals step loads next;
- the run of the latest ``<market>/signals`` materialization.

A record that cannot be read fails the step before anything is removed: what it references
cannot be known, so nothing of that lake is judged safe.
"""

# No `from __future__ import annotations` here: Dagster reads the op's config and resource
# classes from its annotations, which must be classes, not strings.
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import dagster as dg
from pydantic import Field

from tradecore_lib.config import validate
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.redaction import redact
from tradecore_lib.retention import (
    RetentionPlan,
    RetentionPolicy,
    RetentionResult,
    apply_plan,
    mib,
    plan_retention,
    referenced_runs,
)
from tradecore_lib.tracking import Tracker
from tradecore_pipelines.constants import CHAMPION, EVALUATION, PPO_AGENT, SIGNALS, asset_key
from tradecore_pipelines.io_managers import latest_record
from tradecore_pipelines.metadata import records_table
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource

JOB = "broom_closet"
OP = "sweep"
SCHEDULE = "broom_closet_weekly"
WEEKLY_CRON = "0 3 * * 0"  # Sunday 03:00 UTC
ITEM_ROWS = 200  # rows of the items table shown (the summary counts them all)
_POLICY = RetentionPolicy()


def _field(name: str) -> Any:
    """A launchpad field with the library's default and description (one source of both)."""
    info = RetentionPolicy.model_fields[name]
    return Field(default=getattr(_POLICY, name), description=info.description)


class BroomClosetConfig(dg.Config):
    """Launchpad settings of ``sweep``: ``dry_run`` and every limit of :class:`RetentionPolicy`."""

    dry_run: bool = Field(default=True, description="True: report what would be removed and "
                          "remove nothing. Set false to prune.")
    staging_days: float = _field("staging_days")
    temp_hours: float = _field("temp_hours")
    keep_runs: int = _field("keep_runs")
    prune_checkpoints: bool = _field("prune_checkpoints")
    abandoned_run_days: float = _field("abandoned_run_days")
    alert_days: float = _field("alert_days")

    def policy(self) -> RetentionPolicy:
        """The limits, validated (a ``ConfigError`` naming each bad field)."""
        raw = self.model_dump(exclude={"dry_run"})
        return validate(RetentionPolicy, raw, f"{JOB} config (ops.{OP}.config)")


def protected_runs(instance: dg.DagsterInstance, lake: Lake, market: str,
                   tracker: Callable[[], Tracker]) -> dict[str, str]:
    """Run id -> why, for every run of ``market`` retention must never touch (see the module
    docstring). Reads only: a legacy MLflow champion is not adopted here."""
    runs: dict[str, str] = {}

    def add(found: dict[str, str]) -> None:
        for run_id, why in found.items():
            runs.setdefault(run_id, why)  # the first reason (the champion's) wins

    champion = latest_record(instance, lake, asset_key(market, CHAMPION))
    if champion is not None:
        add(referenced_runs(champion[0], f"the champion ({market}/champion)"))
    else:
        legacy = tracker().champion(market)
        if legacy is not None and legacy.run_id:
            add({legacy.run_id: f"the MLflow champion {legacy.model_name} v{legacy.version}"})
    for layer in (PPO_AGENT, EVALUATION):
        found = latest_record(instance, lake, asset_key(market, layer))
        if found is not None:
            add(referenced_runs(found[0], f"the latest {market}/{layer}"))
    event = instance.get_latest_materialization_event(asset_key(market, SIGNALS))
    if event is not None and event.asset_materialization is not None:
        run_id = event.asset_materialization.metadata.get("run_id")
        if run_id is not None and run_id.value:
            add({str(run_id.value): f"the latest {market}/signals"})
    return runs


def report_metadata(plan: RetentionPlan, result: RetentionResult | None) -> dict[str, Any]:
    """The sweep's metadata: what went (or would go) per kind and item, bytes freed, what
    was kept and why, and any failure."""
    done = list(plan.removals if result is None else result.removed)
    freed = plan.size_bytes if result is None else result.freed_bytes
    items = [{"kind": r.kind, "market": r.market or "-", "where": r.where, "files": r.files,
              "mib": mib(r.size_bytes), "bytes": r.size_bytes, "reason": r.reason}
             for r in done]
    metadata: dict[str, Any] = {
        "dry_run": result is None,
        "removed_items": 0 if result is None else len(done),
        "would_remove_items" if result is None else "planned_items": len(plan.removals),
        "freed_bytes": 0 if result is None else freed,
        "freed_mib": 0.0 if result is None else mib(freed),
        "summary": records_table(plan.summary_rows(done), {
            "mib": "MiB, rounded to 2 decimals", "items": "folders or files",
        }),
        "items": records_table(items[:ITEM_ROWS], {"where": "lake URI or local path"}),
        "kept": records_table([{"kind": k.kind, "market": k.market or "-", "where": k.where,
                                "reason": k.reason} for k in plan.kept]),
        "policy": dg.MetadataValue.json(plan.policy.model_dump()),
    }
    if result is None:
        metadata["would_free_bytes"] = freed
        metadata["would_free_mib"] = mib(freed)
    if len(items) > ITEM_ROWS:
        metadata["items_not_shown"] = len(items) - ITEM_ROWS
    if result is not None and result.failed:
        metadata["failed"] = records_table([{"kind": r.kind, "where": r.where, "error": why}
                                            for r, why in result.failed])
    return metadata


def build_broom_closet_job(markets: Sequence[Market]) -> dg.JobDefinition:
    """The ``broom_closet`` job over ``markets`` (their staging folders and runs)."""
    chosen = list(markets)

    @dg.op(
        name=OP,
        out=dg.Out(dg.Nothing),
        description="Prunes what is safe to prune from the lake and the data folder (staging "
        "of old finished months, stale temporaries, superseded training runs and checkpoints, "
        "abandoned runs, old alerts); never a champion's or a referenced run. dry_run (the "
        "default) only reports.",
        tags={"tradecore/retention": "sweep"},
    )
    def sweep(context: dg.OpExecutionContext, config: BroomClosetConfig, lake: LakeResource,
              mlflow: MlflowResource) -> Iterator[dg.Output[None]]:
        try:
            policy = config.policy()
            the_lake = lake.get_lake()
            plan = plan_retention(
                the_lake, chosen, policy,
                protected=lambda market: protected_runs(context.instance, the_lake, market,
                                                        mlflow.get_tracker))
        except TradeCoreError as exc:
            raise dg.Failure(description=f"{JOB}: nothing was removed: {redact(str(exc))}",
                             metadata={"error": type(exc).__name__, "retryable": False},
                             allow_retries=False) from None
        verb = "would remove" if config.dry_run else "removing"
        for removal in plan.removals[:ITEM_ROWS]:
            context.log.info(f"{verb} {removal.kind} {removal.where} ({mib(removal.size_bytes)} "
                             f"MiB): {removal.reason}")
        result = None if config.dry_run else apply_plan(plan)
        metadata = report_metadata(plan, result)
        if result is None:
            context.log.info(f"dry run: {len(plan.removals)} item(s), {mib(plan.size_bytes)} "
                             "MiB would be freed; nothing was removed (set dry_run: false)")
        else:
            context.log.info(f"removed {len(result.removed)} item(s), freed "
                             f"{mib(result.freed_bytes)} MiB")
            if result.failed:
                raise dg.Failure(
                    description=f"{JOB}: {len(result.failed)} item(s) could not be removed "
                    f"(first: {result.failed[0][0].where}: {result.failed[0][1]}); the rest "
                    "was removed", metadata=metadata, allow_retries=False)
        yield dg.Output(None, metadata=metadata)

    @dg.job(
        name=JOB,
        description="The Broom Closet: prunes old staging folders, stale temporaries, training "
        "runs beyond the newest keep_runs per market (never the champion's or a referenced "
        "one), their periodic checkpoints, abandoned runs and old alert records. Dry run by "
        "default; its metadata lists what went and the bytes freed.",
        tags={"tradecore/retention": "broom_closet"},
    )
    def broom_closet() -> None:
        sweep()

    return broom_closet


def build_broom_closet_schedule(
    job: dg.JobDefinition,
    *,
    cron_schedule: str = WEEKLY_CRON,
    dry_run: bool = False,
    default_status: dg.DefaultScheduleStatus = dg.DefaultScheduleStatus.STOPPED,
) -> dg.ScheduleDefinition:
    """The weekly schedule of ``job``: off until switched on; then it prunes for real
    (``dry_run`` false) with the default limits."""
    return dg.ScheduleDefinition(
        name=SCHEDULE,
        job=job,
        cron_schedule=cron_schedule,
        execution_timezone="UTC",
        default_status=default_status,
        run_config=dg.RunConfig(ops={OP: BroomClosetConfig(dry_run=dry_run)}),
        description=f"Runs {JOB} weekly ({cron_schedule} UTC) with dry_run: "
        f"{str(dry_run).lower()} and the default limits. Off by default.",
    )


def retention_definitions(markets: Sequence[Market]) -> dg.Definitions:
    """The ``broom_closet`` job and its weekly schedule (resources ``lake`` and ``mlflow``
    come from the chains' definitions)."""
    job = build_broom_closet_job(markets)
    return dg.Definitions(jobs=[job], schedules=[build_broom_closet_schedule(job)])
