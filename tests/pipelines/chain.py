"""One synthetic market's whole chain as a reconstructable job, for tests that re-execute runs
(``dg.execute_job`` with ``ReexecutionOptions`` rebuilds the job in the executing process).

Everything is real: the lake and an MLflow SQLite store under ``root``, the training entry
point run by ``PipesSubprocessClient``, the record IO manager.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource

from tradecore_lib.markets import get_market
from tradecore_pipelines.definitions import chain_resources, chains_definitions
from tradecore_pipelines.resources import LakeResource
from tradecore_pipelines.resources_ml import MlflowResource
from tradecore_pipelines.runpod import PipesRunPodClient

MARKET = get_market("synthetic_btc_usd")
JOB = "chain"


def resources(root: str) -> tuple[LakeResource, MlflowResource]:
    """The lake and MLflow store of a test chain under ``root``."""
    lake = LakeResource(root=str(Path(root) / "lake"), manifests_dir=str(Path(root) / "manifests"),
                        s3=S3Resource())
    return lake, MlflowResource(tracking_uri=f"sqlite:///{Path(root) / 'mlflow' / 'mlflow.db'}")


def chain_definitions(root: str, runpod: dict | None = None) -> dg.Definitions:
    """The market's chain with its resources under ``root`` and one in-process job over it;
    ``runpod``: the fields of its ``PipesRunPodClient`` (the deployment's when None)."""
    client = None if runpod is None else PipesRunPodClient(
        **{**runpod, "volume_s3": S3Resource(**runpod["volume_s3"])})
    return chains_definitions(
        [MARKET], chain_resources(*resources(root), client),
        jobs=[dg.define_asset_job(JOB, selection=dg.AssetSelection.all(),
                                  executor_def=dg.in_process_executor)],
    )


def chain_job(root: str, runpod: dict | None = None) -> dg.JobDefinition:
    return chain_definitions(root, runpod).resolve_job_def(JOB)


def reconstructable_chain(root: str, runpod: dict | None = None) -> dg.ReconstructableJob:
    return dg.build_reconstructable_job(__name__, chain_job.__name__,
                                        reconstructable_kwargs={"root": root, "runpod": runpod})
