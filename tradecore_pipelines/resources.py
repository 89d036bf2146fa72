"""Dagster resources: the lake (local folder or S3-compatible store)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from tradecore_lib.lake import Lake, S3Options
from tradecore_lib.paths import data_dir, default_lake_root
from tradecore_lib.train.launch import s3_options_from_env
from tradecore_pipelines.run_monitoring import record_run_worker


class LakeResource(dg.ConfigurableResource):
    """The parquet lake and the manifest folder.

    ``root`` is a local folder or ``s3://bucket/prefix``; for S3 the nested ``s3`` resource
    (dagster-aws) supplies endpoint and region, and credentials come from the standard AWS
    environment variables, never from config shown in the UI.

    Every step that uses the lake starts by tagging its run with the run's worker process
    (:func:`~tradecore_pipelines.run_monitoring.record_run_worker`), so a run whose worker
    is killed is marked failed by ``dead_run_worker_sensor``.
    """

    root: str = Field(description="Lake root: a local folder or s3://bucket/prefix.")
    manifests_dir: str = Field(description="Folder receiving one manifest JSON per market.")
    s3: S3Resource = Field(description="S3 connection settings used when root is s3://.")

    def s3_options(self) -> S3Options:
        """The S3 settings of the nested resource (what a child process gets as env vars)."""
        return S3Options(
            endpoint_url=self.s3.endpoint_url,
            region=self.s3.region_name,
            access_key=self.s3.aws_access_key_id,
            secret_key=self.s3.aws_secret_access_key,
            session_token=self.s3.aws_session_token,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        # Outside a run (build_resources, a sensor) there is no run to tag.
        if context.instance is not None and context.run is not None:
            record_run_worker(context.instance, context.run.run_id)

    def get_lake(self) -> Lake:
        return Lake(self.root, self.s3_options())

    def manifest_folder(self) -> Path:
        return Path(self.manifests_dir)


def default_lake_resource() -> LakeResource:
    """The lake configured by ``TRADECORE_LAKE_ROOT`` / ``TRADECORE_S3_ENDPOINT_URL``.

    Only endpoint and region go into the resource config (shown in the UI); credentials stay
    in the environment, where the AWS SDKs read them.
    """
    settings = s3_options_from_env(os.environ)
    return LakeResource(
        root=default_lake_root(),
        manifests_dir=str(data_dir() / "manifests"),
        s3=S3Resource(endpoint_url=settings.endpoint_url, region_name=settings.region),
    )
