"""Dagster resources: the lake (local folder or S3-compatible store)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from dagster_aws.s3 import S3Resource
from pydantic import Field

from tradecore_lib.lake import Lake, S3Options
from tradecore_lib.paths import data_dir, default_lake_root


class LakeResource(dg.ConfigurableResource):
    """The parquet lake and the manifest folder.

    ``root`` is a local folder or ``s3://bucket/prefix``; for S3 the nested ``s3`` resource
    (dagster-aws) supplies endpoint and region, and credentials come from the standard AWS
    environment variables, never from config shown in the UI.
    """

    root: str = Field(description="Lake root: a local folder or s3://bucket/prefix.")
    manifests_dir: str = Field(description="Folder receiving one manifest JSON per market.")
    s3: S3Resource = Field(description="S3 connection settings used when root is s3://.")

    def get_lake(self) -> Lake:
        return Lake(
            self.root,
            S3Options(
                endpoint_url=self.s3.endpoint_url,
                region=self.s3.region_name,
                access_key=self.s3.aws_access_key_id,
                secret_key=self.s3.aws_secret_access_key,
                session_token=self.s3.aws_session_token,
            ),
        )

    def manifest_folder(self) -> Path:
        return Path(self.manifests_dir)


def default_lake_resource() -> LakeResource:
    """The lake configured by ``TRADECORE_LAKE_ROOT`` / ``TRADECORE_S3_ENDPOINT_URL``."""
    return LakeResource(
        root=default_lake_root(),
        manifests_dir=str(data_dir() / "manifests"),
        s3=S3Resource(
            endpoint_url=os.environ.get("TRADECORE_S3_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        ),
    )
