"""The demo's last lines show MLFLOW_TRACKING_URI with its credentials redacted and never raise:
the demo's final print, run with DAGSTER_HOME and MLFLOW_TRACKING_URI set (the whole chain takes
minutes and is covered by the chain tests)."""

from __future__ import annotations

import dagster as dg

from tradecore_pipelines.demo import location_lines
from tradecore_pipelines.resources_ml import default_mlflow_resource


def test_the_demo_prints_the_tracking_uri_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "https://alice:mlpass@mlflow.example:5000")
    with dg.DagsterInstance.get() as instance:
        lines = location_lines(instance, default_mlflow_resource())
    assert lines[0] == "mlflow:      https://***@mlflow.example:5000"
    assert lines[1] == f"instance:    {tmp_path}"
    assert "mlpass" not in "\n".join(lines)
