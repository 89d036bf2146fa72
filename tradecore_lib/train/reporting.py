"""Where a training process reports to: Dagster Pipes when launched by Dagster, stdout if not.

Under Pipes in a RunPod pod (``TRADECORE_POD_VOLUME`` set) the context is read from and the
messages are written to the mounted network volume (:mod:`tradecore_lib.pod`), which the
orchestrator reads through the volume's S3 API; elsewhere Pipes' defaults apply.

Also the SB3 hooks of a run: :class:`MetricsWriter` (an SB3 logger output receiving every
PPO iteration's values: it appends them to ``metrics.jsonl`` and reports progress),
:class:`CheckpointCallback` (a resumable checkpoint every N env steps) and
:class:`ThermalGuard` (one GPU reading per rollout; stops training with a checkpoint when the
GPU is too hot).
"""

from __future__ import annotations

import io
import math
import os
import pickle
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from dagster_pipes import PipesEnvVarParamsLoader, open_dagster_pipes
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter
from stable_baselines3.common.vec_env import VecNormalize

from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.gpu import GpuMonitor

# SB3 logger keys -> metrics.jsonl / MLflow names (short, without the "rollout/" prefixes).
_KEYS = {
    "time/fps": "fps",
    "rollout/ep_rew_mean": "ep_rew_mean",
    "rollout/ep_len_mean": "ep_len_mean",
    "train/policy_gradient_loss": "policy_gradient_loss",
    "train/value_loss": "value_loss",
    "train/entropy_loss": "entropy_loss",
    "train/approx_kl": "approx_kl",
    "train/clip_fraction": "clip_fraction",
    "train/explained_variance": "explained_variance",
    "train/loss": "loss",
    "train/clip_range_vf": "clip_range_vf",
    "train/std": "std",
}


class Reporter(Protocol):
    """Log lines and the final result of a training process."""

    def info(self, message: str) -> None: ...

    def warning(self, message: str) -> None: ...

    def result(self, metadata: dict[str, Any]) -> None: ...


class _PipesReporter:
    def __init__(self, pipes: Any) -> None:
        self._pipes = pipes

    def info(self, message: str) -> None:
        self._pipes.log.info(message)

    def warning(self, message: str) -> None:
        self._pipes.log.warning(message)

    def result(self, metadata: dict[str, Any]) -> None:
        self._pipes.report_asset_materialization(metadata=metadata)


class _PrintReporter:
    def info(self, message: str) -> None:
        print(message, flush=True)

    def warning(self, message: str) -> None:
        print(f"WARNING: {message}", file=sys.stderr, flush=True)

    def result(self, metadata: dict[str, Any]) -> None:
        for key, value in metadata.items():
            print(f"{key}: {value}", flush=True)


@contextmanager
def open_reporter() -> Iterator[Reporter]:
    """Dagster Pipes when the process was launched by Pipes, plain stdout otherwise.

    In a pod (``TRADECORE_POD_VOLUME`` set) Pipes goes through the volume:
    :class:`~tradecore_lib.pod.PipesVolumeContextLoader` and
    :class:`~tradecore_lib.pod.PipesVolumeMessageWriter` (chunks every
    ``TRADECORE_PIPES_INTERVAL_S`` seconds, stdout and stderr included when the orchestrator
    asks for them).
    """
    if not PipesEnvVarParamsLoader().is_dagster_pipes_process():
        yield _PrintReporter()
        return
    from tradecore_lib.pod import VOLUME_ENV, pipes_interval_from_env, volume_pipes

    mount = os.environ.get(VOLUME_ENV)
    channels = ({} if not mount
                else volume_pipes(mount, interval=pipes_interval_from_env(os.environ)))
    with open_dagster_pipes(**channels) as pipes:
        yield _PipesReporter(pipes)


def vecnormalize_bytes(vec_normalize: VecNormalize | None) -> bytes | None:
    """VecNormalize statistics as bytes (SB3 pickles them without the wrapped env)."""
    return None if vec_normalize is None else pickle.dumps(vec_normalize)


def model_bytes(model: Any) -> bytes:
    """An SB3 model zip as bytes (lake writes are whole objects)."""
    buffer = io.BytesIO()
    model.save(buffer)
    return buffer.getvalue()


class MetricsWriter(KVWriter):
    """SB3 logger output: one ``metrics.jsonl`` row and one progress line per PPO iteration.

    Rows carry ``step`` (env steps done), ``wall_s``, the values of :data:`_KEYS` that SB3
    recorded (``train/*`` are those of the previous iteration's update, as SB3 dumps them
    before training) and, when ``gpu`` has a probe, the GPU reading taken before the rollout
    (``gpu_temp_c`` in degrees C, ``gpu_mem_used_mib`` in MiB). ``rows`` starts with the rows
    kept from an interrupted run.
    """

    def __init__(self, store: RunStore, rows: list[dict[str, Any]], total_steps: int,
                 log: Callable[[str], None], gpu: GpuMonitor | None = None) -> None:
        self.store = store
        self.rows = rows
        self.total_steps = total_steps
        self._log = log
        self._gpu = gpu
        self._start = time.monotonic()

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any],
              step: int = 0) -> None:
        timesteps = int(key_values.get("time/total_timesteps", step))
        wall_s = round(time.monotonic() - self._start, 3)
        row: dict[str, Any] = {"step": timesteps, "wall_s": wall_s}
        for sb3_key, name in _KEYS.items():
            value = key_values.get(sb3_key)
            if isinstance(value, int | float) and math.isfinite(value):
                row[name] = float(value)
        if self._gpu is not None:
            row.update(self._gpu.last.row_fields())
        self.rows.append(row)
        self.store.write_metrics(self.rows)
        self._log(self.progress_line(row))

    def progress_line(self, row: dict[str, Any]) -> str:
        """``ppo 25.0% (1024/4096 steps), 850 steps/s, ep_rew_mean -0.120, ETA 4s``."""
        done = row["step"]
        fps = row.get("fps", 0.0)
        eta = (self.total_steps - done) / fps if fps > 0 else float("inf")
        reward = row.get("ep_rew_mean")
        reward_text = f"{reward:.3f}" if reward is not None else "n/a (no episode ended yet)"
        return (
            f"ppo {100.0 * done / self.total_steps:.1f}% ({done}/{self.total_steps} steps), "
            f"{fps:.0f} steps/s, ep_rew_mean {reward_text}, ETA {eta:.0f}s"
        )

    def close(self) -> None:
        return None


class CheckpointCallback(BaseCallback):
    """Save a resumable checkpoint every ``every_steps`` env steps.

    Saved at the start of a rollout, i.e. right after the previous rollout's update, so a
    resumed run continues with exactly the updates done so far (nothing trained is lost, no
    rollout is trained twice).
    """

    def __init__(self, store: RunStore, every_steps: int, vec_normalize: VecNormalize | None,
                 log: Callable[[str], None], last_step: int = 0) -> None:
        super().__init__()
        self.store = store
        self.every_steps = every_steps
        self.vec_normalize = vec_normalize
        self._log = log
        self.last_step = last_step

    def _on_rollout_start(self) -> None:
        step = self.model.num_timesteps
        if step > 0 and step - self.last_step >= self.every_steps:
            self.save()

    def save(self) -> int:
        """Checkpoint the model now (between rollouts); returns its step."""
        step = self.model.num_timesteps
        self.store.save_checkpoint(step, model_bytes(self.model),
                                   vecnormalize_bytes(self.vec_normalize))
        self.last_step = step
        self._log(f"checkpoint at step {step}: {self.store.uri('checkpoints')}")
        return step

    def _on_step(self) -> bool:
        return True


@dataclass(frozen=True)
class ThermalStop:
    """Why and where the thermal guard stopped a run.

    Attributes:
        step: env steps done, all of them in the checkpoint the guard saved (or, at step 0
            of a fresh run, none: nothing was trained).
        temperature_c: the reading that stopped it, degrees C.
        limit_c: the configured ``gpu.max_temperature_c``.
    """

    step: int
    temperature_c: float
    limit_c: float


class ThermalGuard(BaseCallback):
    """One GPU reading before each rollout (the telemetry of that rollout's metrics row);
    when it is above ``limit_c`` the run is checkpointed and learning stops.

    Checked before a rollout, i.e. right after the previous update: the checkpoint then holds
    every update done, and a re-run resumes exactly there. SB3 only stops from a step
    callback, so the first env step of the refused rollout is taken and thrown away with
    the process (it is not in the checkpoint). Put it after ``checkpoints`` in the callback
    list: a periodic checkpoint due at the same step is not written twice.
    """

    def __init__(self, gpu: GpuMonitor, limit_c: float | None, checkpoints: CheckpointCallback,
                 warn: Callable[[str], None]) -> None:
        super().__init__()
        self.gpu = gpu
        self.limit_c = limit_c
        self.checkpoints = checkpoints
        self._warn = warn
        self._blind_warned = False
        self.stop: ThermalStop | None = None

    def _on_rollout_start(self) -> None:
        reading = self.gpu.read()
        if self.limit_c is None:
            return
        if reading.temperature_c is None:
            if not self._blind_warned:
                self._warn(f"thermal guard at {self.limit_c:g} °C cannot read the GPU "
                           "temperature; training goes on unguarded")
                self._blind_warned = True
            return
        if reading.temperature_c <= self.limit_c:
            return
        step = self.model.num_timesteps
        if step > self.checkpoints.last_step:
            self.checkpoints.save()
        self.stop = ThermalStop(step, reading.temperature_c, self.limit_c)
        self._warn(f"thermal guard: GPU at {reading.temperature_c:g} °C, above "
                   f"{self.limit_c:g} °C, before the rollout at step {step}; checkpoint saved, "
                   "training stops (re-run to resume)")

    def _on_step(self) -> bool:
        return self.stop is None
