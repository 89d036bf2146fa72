"""Where ``ppo_agent`` and ``direction_model`` train: ``local`` (a child process through
``PipesSubprocessClient``) or ``runpod`` (a GPU pod through
:class:`~tradecore_pipelines.runpod.PipesRunPodClient`).

Both run the same entry point on the same request and report the same metadata; the run id
(a digest of market, config and data) is the same, so the checkpoint a pod writes is the one a
local run would have written. With ``runpod``:

* the pod reads and writes only the network volume. Unless the lake already *is* the volume
  (``TRADECORE_LAKE_ROOT=s3://<volume id>/tradecore/lake`` on the volume's S3 API), the fold's
  inputs (candles, features and funding of its train months, the warm-start champion's model)
  are staged first to ``tradecore/lake/`` on the volume, and the finished run folder
  (``models/<market>/<run_id>/``, ``direction_models/<model_key>/<run_id>/``: a
  :class:`RunFolder`) is copied back into the lake afterwards. A re-run after a
  failure or preemption finds the run's checkpoints still on the volume and resumes them.
* ``configs/`` is staged to ``tradecore/configs/<digest>/`` and the pod's
  ``TRADECORE_CONFIG_DIR`` points at it, so the pod resolves the preset exactly as here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import dagster as dg
from dagster._core.errors import DagsterPipesExecutionError
from pydantic import BaseModel, Field

from tradecore_lib.errors import ConfigError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.runpod import PodSpec
from tradecore_lib.sources.funding import funding_key
from tradecore_lib.train.checkpoints import MODEL, VECNORMALIZE, run_prefix
from tradecore_lib.train.config import TrainConfig
from tradecore_lib.train.gpu import THERMAL_STOP_EXIT_CODE
from tradecore_lib.train.launch import TrainRequest, overrides_model, s3_env
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.runpod import PipesRunPodClient, stage_configs

COMPUTE_ENV = "TRADECORE_TRAINING_COMPUTE"
COMPUTES = ("local", "runpod")
VOLUME_LAKE = "tradecore/lake"
THERMAL_STOP_MESSAGE = ("training was stopped by the thermal guard (gpu.max_temperature_c): its "
                        "checkpoint and stopped.json are in the run folder; re-run once the GPU "
                        "has cooled and it resumes")


def default_compute() -> str:
    """The deployment's training compute, ``TRADECORE_TRAINING_COMPUTE`` (``local`` if unset).

    Raises:
        ConfigError: the variable names no compute (read when the code location loads).
    """
    value = os.environ.get(COMPUTE_ENV, "").strip() or "local"
    if value not in COMPUTES:
        raise ConfigError(f"{COMPUTE_ENV}={value!r} is not a training compute; use one of "
                          f"{', '.join(COMPUTES)}")
    return value


# At most this many trainings (PPO and direction models together) run at once: a Dagster
# concurrency pool whose limit is the instance's `concurrency.pools.default_limit` (1 in the
# dagster.yaml the Makefile writes): with RunPod compute, the number of GPU pods rented at once.
TRAINING_POOL = "training"


def training_config(model: type[BaseModel], preset_help: str) -> type[dg.Config]:
    """The launchpad config of a training asset: every field of ``model`` optional, as an
    override of the preset (``preset``: ``preset_help``); the compute it trains on; and the
    pod, for RunPod compute."""
    return overrides_model(
        model, base=dg.Config,
        preset=(str | None, Field(default=None, description=preset_help)),
        compute=(str, Field(default=default_compute(), description="Where to train: local (a "
                            "child process here) or runpod (a GPU pod). The default is the "
                            f"deployment's {COMPUTE_ENV} (local when unset).")),
        runpod_preset=(str, Field(default="pytorch", description="Pod preset in "
                                  "configs/runpod/ (image, GPU types, spot or on-demand, cost "
                                  "guards), used with compute runpod.")),
        runpod=(overrides_model(PodSpec, base=dg.Config) | None,
                Field(default=None, description="Overrides of the pod preset's fields.")),
    )


def check_compute(compute: str, runpod: PipesRunPodClient) -> None:
    """Refuse an unknown compute, and ``runpod`` without its key or volume, before anything."""
    if compute not in COMPUTES:
        raise ConfigError(f"compute {compute!r} is not a training compute; use one of "
                          f"{', '.join(COMPUTES)}")
    if compute == "runpod":
        runpod.check_ready()


class Launchable(Protocol):
    """A training request: its command line, and a copy with fields replaced (pydantic's):
    :class:`~tradecore_lib.train.launch.TrainRequest` (PPO) and
    :class:`~tradecore_lib.direction.launch.DirectionRequest` (direction models)."""

    def argv(self, python: str = ...) -> list[str]: ...

    def model_copy(self, *, update: dict[str, Any] | None = None,
                   deep: bool = False) -> Launchable: ...


def train_local(context: dg.AssetExecutionContext, pipes: dg.PipesSubprocessClient,
                lake: LakeResource, request: Launchable) -> dict[str, Any]:
    """One training run (a PPO fold, a direction model) in a child process on this machine;
    the reported metadata.

    Raises:
        dagster.Failure: the thermal guard stopped the training (not retried: the GPU must
            cool first; a re-run resumes the checkpoint it saved).
    """
    try:
        # Credentials reach the child as env vars only, never on its command line.
        invocation = pipes.run(context=context, command=request.argv(),
                               env=s3_env(lake.s3_options()))
    except DagsterPipesExecutionError as exc:
        if f"code {THERMAL_STOP_EXIT_CODE}" not in str(exc):
            raise
        raise dg.Failure(description=THERMAL_STOP_MESSAGE, allow_retries=False) from None
    return dict(invocation.get_materialize_result().metadata)


@dataclass(frozen=True)
class RunFolder:
    """What a pod training reads and writes in the lake, whatever the model family.

    Attributes:
        inputs: lake keys the training reads (staged to the volume unless the lake is on it).
        prefix: lake-relative folder of the run, given its run id (``models/<market>/<id>``).
        complete: the file written last in that folder: its presence marks the run complete,
            so it is copied back last.
    """

    inputs: Iterable[str]
    prefix: Callable[[str], str]
    complete: str


def ppo_run_folder(lake: Lake, market: Market, cfg: TrainConfig, request: TrainRequest
                   ) -> RunFolder:
    """The :class:`RunFolder` of a PPO fold: ``models/<market>/<run_id>/``, ``model.zip`` last."""
    return RunFolder(inputs=input_keys(lake, market, cfg, request),
                     prefix=lambda run_id: run_prefix(market.name, run_id), complete=MODEL)


def train_on_runpod(context: dg.AssetExecutionContext, runpod: PipesRunPodClient,
                    spec: PodSpec, lake: LakeResource, request: Launchable,
                    folder: RunFolder) -> dict[str, Any]:
    """One training run in a RunPod pod: stage its inputs, train, copy the run back; the
    reported metadata (its URIs are the lake's, as a local run reports them)."""
    volume = runpod.volume()
    s3 = runpod.s3_client()
    mount = spec.volume_mount_path
    store = lake.get_lake()
    on_volume = _is_volume_lake(lake, runpod)
    if not on_volume:
        staged = stage_inputs(store, s3, volume, folder.inputs)
        context.log.info(f"staged {staged} input object(s) to s3://{volume}/{VOLUME_LAKE}")
    configs = stage_configs(s3, volume)
    pod_request = request.model_copy(update={"lake_root": f"{mount}/{VOLUME_LAKE}"})
    invocation = runpod.run(context=context, command=pod_request.argv(python="python"),
                            spec=spec, env={"TRADECORE_CONFIG_DIR": f"{mount}/{configs}"})
    reported = dict(invocation.get_materialize_result().metadata)
    run_id = str(reported["run_id"].value)
    prefix = folder.prefix(run_id)
    if not on_volume:
        copied = copy_run_back(s3, volume, store, prefix, folder.complete)
        context.log.info(f"copied run {run_id} ({copied} objects) from the volume into the lake")
    reported["checkpoint_uri"] = dg.MetadataValue.text(store.uri(prefix))
    reported["model_uri"] = dg.MetadataValue.text(store.uri(f"{prefix}/{folder.complete}"))
    return reported


def _is_volume_lake(lake: LakeResource, runpod: PipesRunPodClient) -> bool:
    """Whether the lake already lives at ``tradecore/lake`` on the volume's S3 API."""
    return (lake.root.rstrip("/") == f"s3://{runpod.network_volume_id}/{VOLUME_LAKE}"
            and (lake.s3.endpoint_url or None) == (runpod.volume_s3.endpoint_url or None))


def input_keys(lake: Lake, market: Market, cfg: TrainConfig, request: TrainRequest
               ) -> Iterator[str]:
    """The lake keys a training of ``request`` reads: candles, features (and funding) of its
    train months, and the warm-start champion's network and statistics."""
    feature_preset = cfg.data.feature_preset or market.feature_preset
    for month in cfg.data.months("train"):
        yield candle_key(market, month)
        yield feature_key(feature_preset, market, month)
        if market.funding_from_venue:
            yield funding_key(market, month)
    if request.warm_start_from:
        for name in (MODEL, VECNORMALIZE):
            key = f"{run_prefix(market.name, request.warm_start_from)}/{name}"
            if lake.exists(key):
                yield key


def stage_inputs(lake: Lake, s3: Any, volume: str, keys: Iterable[str]) -> int:
    """Copy the lake objects ``keys`` to the volume (skipping objects already there with the
    same sha256, kept in the object's metadata); returns how many were written."""
    written = 0
    for key in keys:
        data = lake.read_bytes(key)
        digest = hashlib.sha256(data).hexdigest()
        target = f"{VOLUME_LAKE}/{key}"
        if _sha256(s3, volume, target) == digest:
            continue
        s3.put_object(Bucket=volume, Key=target, Body=data, Metadata={"sha256": digest})
        written += 1
    return written


def copy_run_back(s3: Any, volume: str, lake: Lake, run_prefix: str, complete: str) -> int:
    """Copy the run folder ``run_prefix`` from the volume into ``lake`` (``complete`` last: in
    the lake as on the volume, its presence marks the run complete)."""
    prefix = f"{VOLUME_LAKE}/{run_prefix}/"
    keys = [obj["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=volume, Prefix=prefix) for obj in page.get("Contents", [])]
    keys.sort(key=lambda k: (k == f"{prefix}{complete}", k))
    for key in keys:
        body = s3.get_object(Bucket=volume, Key=key)["Body"].read()
        lake.write_bytes(key[len(VOLUME_LAKE) + 1:], body)
    return len(keys)


def _sha256(s3: Any, bucket: str, key: str) -> str | None:
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key).get("Metadata", {}).get("sha256")
    except ClientError:
        return None
