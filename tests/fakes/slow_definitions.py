"""A code location with one slow step, for killing a run mid-step (run monitoring tests).

``slow_step`` uses the real lake resource (which records the run's worker process at step
start), writes its pid to ``$TRADECORE_TEST_STEP_STARTED`` and then waits long enough to be
killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dagster as dg

from tradecore_pipelines.resources import LakeResource, default_lake_resource
from tradecore_pipelines.run_monitoring import build_run_worker_sensor


@dg.asset
def slow_step(lake: LakeResource) -> None:
    """Announces that it runs, then outlives any test that waits for it (120 s)."""
    Path(os.environ["TRADECORE_TEST_STEP_STARTED"]).write_text(str(os.getpid()))
    time.sleep(120)


defs = dg.Definitions(
    assets=[slow_step],
    resources={"lake": default_lake_resource()},
    sensors=[build_run_worker_sensor()],
)
