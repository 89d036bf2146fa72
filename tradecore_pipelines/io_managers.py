"""The record IO manager: typed hand-offs between ``ppo_agent``, ``evaluation``, ``champion``
and ``signals`` (and the direction chain's ``direction_model``, ``direction_evaluation``,
``direction_champion``, ``direction_signals``), stored per Dagster run.

An asset using it returns a record (a :class:`~tradecore_lib.train.record.RunRecord`, an
:class:`~tradecore_lib.evaluation.summary.EvaluationSummary`, a
:class:`~tradecore_lib.evaluation.promotion.ChampionRecord`); the IO manager writes it as JSON
to ``<lake_root>/records/<market>/<layer>/<dagster_run_id>.json``. A run writes its own file
and no other run ever replaces it, so every materialization's value stays readable.

Loading an input resolves which run's record to read, in this order:

1. **the run lineage**: the record the upstream step wrote in this run, or, when this run is a
   re-execution that did not re-run the upstream step, in the parent run that did (Dagster's
   own ``upstream_output.run_id``). Re-executing run R's ``evaluation`` judges R's training.
2. **the parent's choice**: a re-execution of a run that loaded the record from outside its
   lineage loads what the parent loaded (every load names its source on the run's
   ``LOADED_INPUT`` event, metadata ``record_run_id``).
3. **the latest materialization** of the upstream asset: a fresh run of ``evaluation`` alone
   judges the newest ``ppo_agent``; ``signals`` alone uses the newest ``champion``.

For ``champion/<market>`` with no materialization yet, an MLflow ``champion`` alias set before
the asset existed is adopted once (:func:`current_champion`): its record is written and a
runless materialization of ``champion/<market>`` is reported, so signals keep working after
the upgrade and the asset is the source of truth from then on.
"""

from __future__ import annotations

import importlib
import posixpath
from collections.abc import Callable

import dagster as dg
from pydantic import Field

from tradecore_lib.evaluation.promotion import ChampionRecord, adopted_champion
from tradecore_lib.lake import Lake
from tradecore_lib.tracking import Tracker
from tradecore_lib.train.record import RecordError, RecordModel
from tradecore_pipelines.constants import (
    CHAMPION,
    DIRECTION_CHAMPION,
    DIRECTION_EVALUATION,
    DIRECTION_MODEL,
    EVALUATION,
    PPO_AGENT,
    asset_key,
)
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource

RECORDS_IO_MANAGER = "records_io_manager"
# The record model of each layer, as "module:class": imported on first use, so that loading
# the code location does not import the direction evaluation's engine.
RECORD_TYPES: dict[str, str] = {
    PPO_AGENT: "tradecore_lib.train.record:RunRecord",
    EVALUATION: "tradecore_lib.evaluation.summary:EvaluationSummary",
    CHAMPION: "tradecore_lib.evaluation.promotion:ChampionRecord",
    DIRECTION_MODEL: "tradecore_lib.direction.record:DirectionRecord",
    DIRECTION_EVALUATION: "tradecore_lib.direction.record:DirectionJudgement",
    DIRECTION_CHAMPION: "tradecore_lib.direction.record:DirectionChampionRecord",
}
# Materialization metadata naming the stored record (lake-relative key and its URI).
RECORD_KEY = "record_key"
RECORD_URI = "record"
# LOADED_INPUT metadata: whose record an input was.
SOURCE_RUN = "record_run_id"


def record_key(key: dg.AssetKey, name: str) -> str:
    """Lake-relative key of a record: ``records/<market>/<layer>/<name>.json``."""
    return posixpath.join("records", *key.path) + f"/{name}.json"


def record_type(key: dg.AssetKey) -> type[RecordModel]:
    """The record model stored for asset ``key`` (by its layer)."""
    try:
        module, name = RECORD_TYPES[key.path[-1]].split(":")
    except KeyError:
        raise RecordError(f"{key.to_user_string()} does not hand off a record; records exist "
                          f"for the layers {sorted(RECORD_TYPES)}") from None
    return getattr(importlib.import_module(module), name)


def read_record(lake: Lake, key: dg.AssetKey, lake_key: str) -> RecordModel:
    """The record of ``key`` stored at ``lake_key``."""
    if not lake.exists(lake_key):
        raise RecordError(f"{key.to_user_string()}: record {lake.uri(lake_key)} is missing; "
                          "re-materialize the asset")
    return record_type(key).from_json(lake.read_bytes(lake_key), where=lake.uri(lake_key))


def latest_record(instance: dg.DagsterInstance, lake: Lake, key: dg.AssetKey
                  ) -> tuple[RecordModel, str] | None:
    """The newest materialization's record of ``key`` and the Dagster run that wrote it
    (``""`` for a runless, adopted one), or None before the first materialization."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    stored = metadata.get(RECORD_KEY)
    lake_key = str(stored.value) if stored is not None else record_key(key, event.run_id)
    return read_record(lake, key, lake_key), event.run_id


def current_champion(instance: dg.DagsterInstance, lake: Lake, market: str,
                     tracker: Callable[[], Tracker]) -> ChampionRecord | None:
    """The latest ``champion/<market>`` record, adopting a legacy MLflow champion once.

    This is the one read of a record outside the run lineage besides loading inputs: the
    evaluation scores the current champion on a challenger's window, and a warm start begins
    from it (an asset edge from champion back to them would be a cycle). ``tracker`` is only
    called (MLflow imported) when the asset has never materialized.
    """
    key = asset_key(market, CHAMPION)
    found = latest_record(instance, lake, key)
    if found is not None:
        record = found[0]
        assert isinstance(record, ChampionRecord)
        return record
    legacy = tracker().champion(market)
    if legacy is None:
        return None
    record = adopted_champion(lake, market, legacy)
    lake_key = record_key(key, f"adopted-v{record.model_version}")
    lake.write_bytes(lake_key, record.to_json().encode())
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=key,
        description=f"adopted {record.label} (run {record.run_id}): the MLflow alias champion "
        "was set before the champion asset existed",
        metadata={RECORD_KEY: lake_key, RECORD_URI: dg.MetadataValue.path(lake.uri(lake_key)),
                  "model_version": record.model_version, "run_id": record.run_id,
                  "adopted": True},
    ))
    return record


class RecordIOManager(dg.ConfigurableIOManager):
    """Stores the hand-off records as JSON in the lake, one file per Dagster run (see the
    module docstring for how an input finds its record)."""

    lake: LakeResource = Field(description="The lake holding records/<market>/<layer>/.")
    mlflow: MlflowResource = Field(
        description="MLflow, read once to adopt a champion set before the champion asset."
    )

    def handle_output(self, context: dg.OutputContext, obj: RecordModel) -> None:
        expected = record_type(context.asset_key)
        if not isinstance(obj, expected):
            raise RecordError(f"{context.asset_key.to_user_string()} must return a "
                              f"{expected.__name__}, got {type(obj).__name__}")
        lake = self.lake.get_lake()
        lake_key = record_key(context.asset_key, context.run_id)
        lake.write_bytes(lake_key, obj.to_json().encode())
        context.add_output_metadata({RECORD_KEY: lake_key,
                                     RECORD_URI: dg.MetadataValue.path(lake.uri(lake_key))})

    def load_input(self, context: dg.InputContext) -> RecordModel:
        lake = self.lake.get_lake()
        key = context.asset_key
        run_id, how = _lineage_run(context), "run lineage"
        if run_id is None:
            run_id, how = _parent_choice(context), "parent run's input"
        if run_id is not None:
            record = read_record(lake, key, record_key(key, run_id))
        else:
            record, run_id, how = self._latest(context, lake)
        context.log.info(f"{context.name}: record of {key.to_user_string()} from Dagster run "
                         f"{run_id or '(runless: adopted)'} ({how})")
        context.add_input_metadata({SOURCE_RUN: run_id, "resolved_by": how})
        return record

    def _latest(self, context: dg.InputContext, lake: Lake) -> tuple[RecordModel, str, str]:
        key = context.asset_key
        if key.path[-1] == CHAMPION:
            champion = current_champion(context.instance, lake, key.path[0],
                                        self.mlflow.get_tracker)
            if champion is None:
                raise RecordError(f"{key.to_user_string()}: there is no champion yet (never "
                                  "materialized, and no MLflow champion alias to adopt); it "
                                  "materializes when an evaluation passes the promotion gate")
            how = "latest materialization" + (" (adopted from MLflow)" if champion.adopted else "")
            return champion, champion.dagster_run_id or "", how
        found = latest_record(context.instance, lake, key)
        if found is None:
            raise RecordError(f"{key.to_user_string()} has never been materialized: "
                              f"materialize it before {context.name} reads it")
        return found[0], found[1], "latest materialization"


def _lineage_run(context: dg.InputContext) -> str | None:
    """The run in this run's lineage whose step produced the input, if any.

    Dagster names it on ``upstream_output.run_id``; for an input from an asset outside the run
    it is a placeholder that names no run.
    """
    upstream = context.upstream_output
    if upstream is None:
        return None
    try:
        run_id = upstream.run_id
    except dg.DagsterInvariantViolationError:  # a re-execution whose parent skipped the step
        return None
    return run_id if context.instance.get_run_by_id(run_id) is not None else None


def _parent_choice(context: dg.InputContext) -> str | None:
    """The source run the parent run recorded when it loaded this step's input."""
    parent = context.step_context.dagster_run.parent_run_id
    if parent is None:
        return None
    step_key = context.step_context.step.key
    for entry in context.instance.all_logs(parent, of_type=dg.DagsterEventType.LOADED_INPUT):
        event = entry.dagster_event
        if event is None or event.step_key != step_key:
            continue
        loaded = event.event_specific_data
        if getattr(loaded, "input_name", None) != context.name:
            continue
        source = (getattr(loaded, "metadata", None) or {}).get(SOURCE_RUN)
        if source is not None and source.value:
            return str(source.value)
    return None
