"""A run whose worker is killed (kill -9) is marked failed by dead_run_worker_sensor instead of
staying STARTED; a live run is left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from tradecore_pipelines.run_monitoring import RUN_WORKER_TAG, RunWorker, build_run_worker_sensor

REPO = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).parent / "dagster")


def _wait_for(predicate, what: str, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_killed_run_is_marked_failed_and_a_live_one_is_not(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    started = tmp_path / "step-started"
    env = {**os.environ, "DAGSTER_HOME": str(home), "TRADECORE_TEST_STEP_STARTED": str(started),
           "TRADECORE_DATA_DIR": str(tmp_path / "data")}
    # The CLI process is the run worker; the step runs in a child of it (multiprocess).
    worker = subprocess.Popen(
        [DAGSTER, "asset", "materialize", "-m", "tests.fakes.slow_definitions",
         "--select", "slow_step"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    sensor = build_run_worker_sensor()
    try:
        _wait_for(started.exists, "the slow step to start")
        with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            (run,) = instance.get_runs()
            recorded = RunWorker.parse(run.tags[RUN_WORKER_TAG])
            assert recorded is not None and recorded.pid == worker.pid

            sensor(dg.build_sensor_context(instance=instance))  # alive: left alone
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its step, as kill -9 does
            worker.wait(timeout=30)
            assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

            sensor(dg.build_sensor_context(instance=instance))
            after = instance.get_run_by_id(run.run_id)
            assert after.status == dg.DagsterRunStatus.FAILURE
            (failure,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert f"run worker process {worker.pid}" in failure.message
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=30)
