"""GPU awareness of the training entry point, on CPU through an injectable GPU probe.

Telemetry lands in every metrics row (and MLflow); the thermal guard stops a cpu-smoke run
cleanly (checkpoint, stopped.json, no model.zip, exit code 75) and a re-run with a cool GPU
resumes and finishes; the n_envs search stops where throughput stops rising or memory runs
out, never changes the run id, and a resumed run keeps its n_envs.

The probes below are also loaded by child processes through
``TRADECORE_GPU_PROBE=tests.lib.test_train_gpu:<name>``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.lakes import synthetic_lake
from tradecore_lib.errors import ConfigError
from tradecore_lib.lake import Lake
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.gpu import (
    PROBE_ENV,
    THERMAL_STOP_EXIT_CODE,
    GpuMonitor,
    GpuReading,
    gpu_probe,
    search_n_envs,
    with_n_envs,
)
from tradecore_lib.train.launch import TrainRequest

MARKET = "synthetic_btc_usd"


class ScriptedProbe:
    """A GPU whose n-th reading (from 1) is ``start + step * (n - 1)`` °C with
    ``1000 + n`` of 8192 MiB used."""

    def __init__(self, start: float, step: float) -> None:
        self.start, self.step, self.calls = start, step, 0

    def read(self) -> GpuReading:
        self.calls += 1
        return GpuReading("Scripted GPU", 8192.0, 1000.0 + self.calls,
                          self.start + self.step * (self.calls - 1))


def rising_probe() -> ScriptedProbe:
    """60, 65, 70, 75, 80 ... °C: the start reading, then one per rollout."""
    return ScriptedProbe(60.0, 5.0)


def cool_probe() -> ScriptedProbe:
    return ScriptedProbe(40.0, 0.0)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    warning = info

    def result(self, metadata: dict) -> None:
        self.lines.append(f"result {metadata}")

    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("gpu") / "lake")
    synthetic_lake(root, months=1)
    return root


# -- the thermal guard and the telemetry, as processes -----------------------------------------
def _run(root: str, probe: str, overrides: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tradecore_lib.train.ppo_train", "--market", MARKET, "--preset",
         "cpu-smoke", "--overrides", json.dumps(overrides), "--lake-root", root],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, PROBE_ENV: f"tests.lib.test_train_gpu:{probe}"})


def test_thermal_guard_stops_cleanly_and_a_cool_rerun_resumes_and_finishes(lake_root,
                                                                         tmp_path) -> None:
    overrides = {"gpu": {"max_temperature_c": 77}}
    hot = _run(lake_root, "rising_probe", overrides)

    # Readings: 60 at start, then 65, 70, 75 before the rollouts at steps 0, 512, 1024, and
    # 80 > 77 before the one at 1536: stopped there, after reporting its result.
    assert hot.returncode == THERMAL_STOP_EXIT_CODE, hot.stderr[-3000:]
    assert "GPU Scripted GPU: 1,001 of 8,192 MiB used, 60 °C; thermal guard at 77 °C" in hot.stdout
    assert "stopped_by: thermal_guard" in hot.stdout and "timesteps: 1536" in hot.stdout
    run_id = next(line.split(": ", 1)[1] for line in hot.stdout.splitlines()
                  if line.startswith("run_id: "))
    store = RunStore(Lake(lake_root), MARKET, run_id)
    assert not store.is_complete() and not store.exists("vecnormalize.pkl")
    assert store.latest_checkpoint().step == 1536  # the guard's own (periodic ones: 1024)
    assert store.read_json("stopped.json") | {"stopped_at": None} == {
        "reason": "thermal_guard", "step": 1536, "temperature_c": 80.0,
        "max_temperature_c": 77.0, "checkpoint_step": 1536, "gpu_name": "Scripted GPU",
        "stopped_at": None}
    rows = store.read_metrics()
    assert [(r["step"], r["gpu_temp_c"], r["gpu_mem_used_mib"]) for r in rows] == [
        (512, 65.0, 1002.0), (1024, 70.0, 1003.0), (1536, 75.0, 1004.0)]

    cool = _run(lake_root, "cool_probe", overrides)

    assert cool.returncode == 0, cool.stderr[-3000:]
    assert f"resuming run {run_id} from its checkpoint at step 1536" in cool.stdout
    assert "stopped by the thermal guard at step 1536 (80 °C); resuming" in cool.stdout
    assert "stopped_by" not in cool.stdout
    assert store.is_complete()
    rows = store.read_metrics()
    assert [r["step"] for r in rows] == [*range(512, 4097, 512), 4096]
    assert [r.get("gpu_temp_c") for r in rows[3:-1]] == [40.0] * 5
    assert "gpu_temp_c" not in rows[-1]  # the last update's losses, after the last rollout

    # The orchestrator's MLflow replay turns the row fields into metrics with their steps.
    from tradecore_lib.tracking import Tracker

    tracker = Tracker(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    ref = tracker.log_run(store, {}, register=False)
    history = tracker.client.get_metric_history(ref.run_id, "train/gpu_temp_c")
    assert sorted((m.step, m.value) for m in history) == [
        (512, 65.0), (1024, 70.0), (1536, 75.0), *[(s, 40.0) for s in range(2048, 4097, 512)]]
    assert len(tracker.client.get_metric_history(ref.run_id, "train/gpu_mem_used_mib")) == 8


# -- the n_envs search ---------------------------------------------------------------------------
def _search_config(**gpu):
    # Rollouts up to 128 * 256 divide both totals: the ladder can reach 256.
    return load_train_config("cpu-smoke", {"total_timesteps": 131072,
                                           "checkpoint_every_steps": 32768,
                                           "gpu": {"search_n_envs": True, **gpu}})


def _table(rates: dict[int, float | Exception], called: list[int]):
    def measure(cfg) -> float:
        called.append(cfg.n_envs)
        # the candidates keep the preset's minibatches per rollout (2 for cpu-smoke)
        assert cfg.rollout_size // cfg.ppo.batch_size == 2
        rate = rates[cfg.n_envs]
        if isinstance(rate, Exception):
            raise rate
        return rate
    return measure


def test_search_stops_where_throughput_stops_rising() -> None:
    cfg = _search_config(max_n_envs=256)
    called: list[int] = []
    chosen, search = search_n_envs(
        cfg, _table({8: 1000.0, 16: 1900.0, 32: 3000.0, 64: 3100.0, 128: 9000.0}, called),
        lambda _line: None)
    assert called == [8, 16, 32, 64]  # 64 rose 3 % < 5 %: 128 is never tried
    assert (chosen.n_envs, chosen.ppo.batch_size) == (32, 2048)
    assert search.chosen == 32 and "rose less than 5 %" in search.stopped
    assert search.table().startswith("8: 1,000/s, 16: 1,900/s (+90 %), 32: 3,000/s (+58 %), "
                                     "64: 3,100/s (+3 %) -> n_envs 32, batch_size 2048")


def test_search_stops_at_cuda_out_of_memory_and_at_its_cap() -> None:
    import torch

    called: list[int] = []
    chosen, search = search_n_envs(
        _search_config(max_n_envs=256),
        _table({8: 1.0, 16: 2.0, 32: 4.0, 64: torch.OutOfMemoryError("CUDA out of memory")},
               called), lambda _line: None)
    assert called == [8, 16, 32, 64] and chosen.n_envs == 32
    assert search.stopped == "CUDA out of memory at n_envs 64"
    assert search.steps[-1].note == "oom"

    called.clear()
    chosen, search = search_n_envs(_search_config(max_n_envs=32),
                                   _table({8: 1.0, 16: 2.0, 32: 4.0}, called), lambda _: None)
    assert called == [8, 16, 32] and chosen.n_envs == 32
    assert search.stopped == "reached max_n_envs 32"

    with pytest.raises(RuntimeError, match="no candidate could be measured .*out of memory at"):
        search_n_envs(_search_config(), _table({8: torch.OutOfMemoryError("oom")}, []),
                      lambda _: None)


def test_search_ends_at_a_candidate_that_does_not_fit() -> None:
    # cpu-smoke checkpoints every 1024 steps: 16 envs * 128 steps = 2048 does not divide it.
    cfg = load_train_config("cpu-smoke", {"gpu": {"search_n_envs": True}})
    called: list[int] = []
    chosen, search = search_n_envs(cfg, _table({8: 1.0}, called), lambda _: None)
    assert called == [8] and chosen.n_envs == 8
    assert search.stopped == ("n_envs 16 does not fit: checkpoint_every_steps 1024 is not a "
                              "multiple of its rollout 128 * 16 = 2048")


def test_the_run_id_does_not_depend_on_the_searched_n_envs() -> None:
    cfg = _search_config()
    identities = {json.dumps(with_n_envs(cfg, n).identity(), sort_keys=True)
                  for n in (8, 16, 64, 256)}
    assert identities == {json.dumps(cfg.identity(), sort_keys=True)}
    # ... yet it says a search chose them, and the preset's n_envs still matter without one
    assert cfg.identity() != load_train_config("cpu-smoke", {
        "total_timesteps": 131072, "checkpoint_every_steps": 32768}).identity()
    off = load_train_config("cpu-smoke")
    assert with_n_envs(off, 8).identity() != off.identity()
    # The guard and the search settings, off, leave every existing run id as it was.
    assert "gpu" not in off.identity()
    assert load_train_config("cpu-smoke", {"gpu": {"max_temperature_c": 70,
                                                    "max_n_envs": 64}}).identity() == \
        off.identity()


def test_a_resumed_run_keeps_the_n_envs_its_search_chose(lake_root) -> None:
    request = TrainRequest(market=MARKET, preset="cpu-smoke", lake_root=lake_root, overrides={
        "total_timesteps": 4096, "checkpoint_every_steps": 2048,
        "gpu": {"search_n_envs": True, "max_n_envs": 64, "max_temperature_c": 77}})
    from tradecore_lib.train.ppo_train import train

    log, called = _Log(), []
    # 60 at start, 70 before the first rollout, 80 before the second: stopped at 2048.
    first = train(request, log, probe=ScriptedProbe(60.0, 10.0),
                  measure=_table({8: 1000.0, 16: 2000.0}, called))
    assert called == [8, 16]  # 32 envs (rollout 4096) do not fit checkpoints every 2048
    assert first["stopped_by"] == "thermal_guard" and first["timesteps"] == 2048
    store = RunStore(Lake(lake_root), MARKET, first["run_id"])
    stored = store.read_json("config.json")
    assert (stored["n_envs"], stored["ppo"]["batch_size"]) == (16, 1024)
    assert store.read_json("n_envs_search.json")["chosen"] == 16

    def no_search(_cfg) -> float:
        raise AssertionError("a resumed run searched n_envs again")

    log = _Log()
    done = train(request, log, probe=cool_probe(), measure=no_search)
    assert done["run_id"] == first["run_id"] and "stopped_by" not in done
    assert (done["n_envs"], done["batch_size"], done["timesteps"]) == (16, 1024, 4096)
    assert "n_envs 16 (batch_size 1024) recorded in" in log.text()
    assert "resuming run" in log.text() and store.is_complete()


# -- probes ----------------------------------------------------------------------------------------
def test_the_probe_comes_from_the_environment_or_the_device() -> None:
    assert gpu_probe("cpu", {}) is None
    probe = gpu_probe("cpu", {PROBE_ENV: "tests.lib.test_train_gpu:rising_probe"})
    assert isinstance(probe, ScriptedProbe) and probe.read().temperature_c == 60.0
    with pytest.raises(ConfigError, match="expected <module>:<callable>"):
        gpu_probe("cpu", {PROBE_ENV: "tests.lib.test_train_gpu"})
    with pytest.raises(ConfigError, match="cannot load it"):
        gpu_probe("cpu", {PROBE_ENV: "tests.lib.test_train_gpu:no_such_probe"})


def test_a_failing_probe_is_reported_once_and_read_as_unknown() -> None:
    class Broken:
        def read(self) -> GpuReading:
            raise RuntimeError("NVML: driver gone")

    warnings: list[str] = []
    monitor = GpuMonitor(Broken(), warnings.append)
    assert monitor.read() == GpuReading() and monitor.read().row_fields() == {}
    assert len(warnings) == 1 and "NVML: driver gone" in warnings[0]
    assert GpuReading("X", 10.0, 2.0, None).row_fields() == {"gpu_mem_used_mib": 2.0}
    assert GpuReading().describe() == "GPU (name unknown): memory unknown, temperature unknown"
