"""GPU awareness of a training run: GPU readings, the thermal guard's words, the n_envs search.

* :class:`GpuProbe` reads one :class:`GpuReading` (name, memory, temperature; ``None`` where
  unknown). :class:`TorchGpuProbe` is the real one: ``torch.cuda`` for the name and the memory,
  the temperature through NVML (``pynvml``, via ``torch.cuda.temperature``) when importable,
  else ``nvidia-smi``, else unknown. :func:`gpu_probe` picks the probe of a run:
  ``TRADECORE_GPU_PROBE=<module>:<callable>`` (a callable without arguments returning a probe:
  how tests drive the CUDA path on CPU, in-process or in a child process), else the real
  probe on a CUDA device, else none (CPU: no GPU telemetry).
* :class:`GpuMonitor` keeps the latest reading of the run: the thermal guard takes one reading
  before each rollout and that rollout's ``metrics.jsonl`` row carries it
  (``gpu_temp_c``, ``gpu_mem_used_mib``; MLflow logs them as ``train/gpu_temp_c`` ...).
* The thermal guard's outcome: :data:`STOPPED_BY_THERMAL_GUARD` in the result metadata
  (``stopped_by``), :data:`STOPPED` (``stopped.json``) in the run folder and the entry point's
  exit code :data:`THERMAL_STOP_EXIT_CODE` (75, ``EX_TEMPFAIL``: try again later, the run
  resumes from its checkpoint).
* :func:`search_n_envs` doubles n_envs from 8 while the throughput still rises.

Imports no torch at module level: the orchestrator may import the constants.
"""

from __future__ import annotations

import gc
import importlib
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tradecore_lib.errors import ConfigError
from tradecore_lib.train.config import TrainConfig, TrainConfigError, deep_merge, parse_train_config

PROBE_ENV = "TRADECORE_GPU_PROBE"
# The entry point's exit code when the thermal guard stopped the run (sysexits' EX_TEMPFAIL:
# a temporary condition, re-run later; the run resumes from the checkpoint the guard saved).
THERMAL_STOP_EXIT_CODE = 75
STOPPED_BY_THERMAL_GUARD = "thermal_guard"
# The run folder's record of the latest guard stop (model.zip, not this file, marks a run
# complete: a run stopped and then resumed to its end keeps it as history).
STOPPED = "stopped.json"
# The run folder's record of an n_envs search (what was measured and chosen).
N_ENVS_SEARCH = "n_envs_search.json"
# The search's first candidate; each next one doubles it.
SEARCH_START = 8
_NVIDIA_SMI_TIMEOUT_S = 5.0
_MIB = 1024 * 1024


@dataclass(frozen=True)
class GpuReading:
    """One look at the GPU; every field ``None`` when it could not be read.

    Attributes:
        name: the device name, e.g. ``NVIDIA H100 80GB HBM3``.
        memory_total_mib: the device's memory, MiB.
        memory_used_mib: memory in use on the whole device (every process), MiB.
        temperature_c: die temperature, degrees Celsius.
    """

    name: str | None = None
    memory_total_mib: float | None = None
    memory_used_mib: float | None = None
    temperature_c: float | None = None

    def describe(self) -> str:
        """``NVIDIA H100: 1,024 of 81,559 MiB used, 41 °C`` (unknown parts say so)."""
        memory = ("memory unknown" if self.memory_used_mib is None or self.memory_total_mib is None
                  else f"{self.memory_used_mib:,.0f} of {self.memory_total_mib:,.0f} MiB used")
        temperature = ("temperature unknown" if self.temperature_c is None
                       else f"{self.temperature_c:.0f} °C")
        return f"{self.name or 'GPU (name unknown)'}: {memory}, {temperature}"

    def row_fields(self) -> dict[str, float]:
        """The ``metrics.jsonl`` fields of this reading (unknown ones left out)."""
        fields = {"gpu_temp_c": self.temperature_c, "gpu_mem_used_mib": self.memory_used_mib}
        return {key: float(value) for key, value in fields.items() if value is not None}


class GpuProbe(Protocol):
    """Something that reads the training GPU; called once at start and once per rollout."""

    def read(self) -> GpuReading: ...


class TorchGpuProbe:
    """The real probe of CUDA device ``index`` (torch's numbering, after CUDA_VISIBLE_DEVICES).

    Name and memory come from ``torch.cuda`` (``mem_get_info``: the whole device, as
    ``nvidia-smi`` shows it). The temperature comes from NVML through
    ``torch.cuda.temperature`` when ``pynvml`` (nvidia-ml-py) is importable, else from
    ``nvidia-smi --query-gpu=temperature.gpu`` for this device, else it is unknown.
    """

    def __init__(self, index: int = 0) -> None:
        import torch

        self.index = index
        self._torch = torch
        self._name = torch.cuda.get_device_name(index)
        self._smi = shutil.which("nvidia-smi")
        self._smi_id = _smi_device_id(torch, index)
        try:
            import pynvml  # noqa: F401  (only whether it imports matters here)

            self._nvml = True
        except ImportError:
            self._nvml = False

    def read(self) -> GpuReading:
        free, total = self._torch.cuda.mem_get_info(self.index)
        return GpuReading(name=self._name, memory_total_mib=total / _MIB,
                          memory_used_mib=(total - free) / _MIB,
                          temperature_c=self._temperature())

    def _temperature(self) -> float | None:
        if self._nvml:
            try:
                return float(self._torch.cuda.temperature(self.index))
            except Exception:  # NVML missing a driver or the device: try nvidia-smi
                self._nvml = False
        if self._smi is None:
            return None
        try:
            done = subprocess.run(
                [self._smi, f"--id={self._smi_id}", "--query-gpu=temperature.gpu",
                 "--format=csv,noheader,nounits"],
                capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=True)
            return float(done.stdout.strip().splitlines()[0])
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            return None


def _smi_device_id(torch: Any, index: int) -> str:
    """How ``nvidia-smi --id`` names torch's device ``index``: its UUID (the same whatever
    CUDA_VISIBLE_DEVICES renumbers), else the index."""
    uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
    return f"GPU-{uuid}" if uuid else str(index)


def gpu_probe(device: str, environ: Mapping[str, str] | None = None) -> GpuProbe | None:
    """The probe of a run on ``device``: ``TRADECORE_GPU_PROBE`` when set, else the real
    probe on a CUDA device, else None.

    Raises:
        ConfigError: ``TRADECORE_GPU_PROBE`` is not ``<module>:<callable>`` or does not import.
    """
    spec = (os.environ if environ is None else environ).get(PROBE_ENV)
    if spec:
        module_name, _, attribute = spec.partition(":")
        if not module_name or not attribute:
            raise ConfigError(f"{PROBE_ENV}={spec!r}: expected <module>:<callable>")
        try:
            factory = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{PROBE_ENV}={spec!r}: cannot load it: {exc}") from None
        return factory()
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return TorchGpuProbe(int(index or 0))
    return None


@dataclass
class GpuMonitor:
    """The probe of a run and its latest reading (what the current metrics row carries).

    A probe that raises is reported once through ``warn`` and then read as unknown: telemetry
    never ends a training run (the guard says it cannot read the temperature).
    """

    probe: GpuProbe | None
    warn: Callable[[str], None] = print
    last: GpuReading = field(default_factory=GpuReading)
    _failed: bool = False

    def read(self) -> GpuReading:
        """A fresh reading (unknown without a probe), kept as :attr:`last`."""
        if self.probe is None:
            return self.last
        try:
            self.last = self.probe.read()
        except Exception as exc:
            if not self._failed:
                self.warn(f"cannot read the GPU ({type(exc).__name__}: {exc}); GPU telemetry "
                          "and the thermal guard are blind until it reads again")
            self._failed = True
            self.last = GpuReading()
        return self.last


# -- the n_envs search -------------------------------------------------------------------------
@dataclass(frozen=True)
class SearchStep:
    """One candidate of the search.

    Attributes:
        n_envs: the candidate.
        batch_size: its scaled ``ppo.batch_size`` (None when the candidate is not valid).
        steps_per_s: measured env steps per second (one rollout + one update), None when not
            measured.
        note: ``"oom"`` (CUDA out of memory), or why it was skipped, or empty.
    """

    n_envs: int
    batch_size: int | None
    steps_per_s: float | None
    note: str = ""


@dataclass(frozen=True)
class NEnvsSearch:
    """What the search measured and what it chose (and why it stopped)."""

    chosen: int
    batch_size: int
    steps: list[SearchStep]
    stopped: str

    def table(self) -> str:
        """``8: 1,200/s, 16: 2,300/s (+92 %), 32: 2,350/s (+2 %) -> n_envs 16``."""
        parts, previous = [], None
        for step in self.steps:
            if step.steps_per_s is None:
                parts.append(f"{step.n_envs}: {step.note}")
                continue
            gain = ("" if previous is None
                    else f" ({100 * (step.steps_per_s / previous - 1):+.0f} %)")
            parts.append(f"{step.n_envs}: {step.steps_per_s:,.0f}/s{gain}")
            previous = step.steps_per_s
        return (f"{', '.join(parts)} -> n_envs {self.chosen}, batch_size {self.batch_size} "
                f"({self.stopped})")

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "batch_size": self.batch_size, "stopped": self.stopped,
                "steps": [vars(step) for step in self.steps]}


def with_n_envs(cfg: TrainConfig, n_envs: int) -> TrainConfig:
    """``cfg`` at ``n_envs`` envs, ``ppo.batch_size`` scaled to keep the minibatches per
    rollout (so each update takes as many gradient steps as the preset's, on larger batches).

    Raises:
        TrainConfigError: the candidate does not fit: total_timesteps or
            checkpoint_every_steps is not a multiple of its rollout, or the rollout does not
            split into the preset's minibatches (the message is one line).
    """
    minibatches = cfg.rollout_size // cfg.ppo.batch_size
    rollout = cfg.ppo.n_steps * n_envs
    for name in ("total_timesteps", "checkpoint_every_steps"):
        if getattr(cfg, name) % rollout:
            raise TrainConfigError(f"{name} {getattr(cfg, name)} is not a multiple of its rollout "
                                   f"{cfg.ppo.n_steps} * {n_envs} = {rollout}")
    if rollout % minibatches:
        raise TrainConfigError(f"its rollout of {rollout} transitions does not split into the "
                               f"preset's {minibatches} minibatches")
    overrides = {"n_envs": n_envs, "ppo": {"batch_size": rollout // minibatches}}
    return parse_train_config(deep_merge(cfg.model_dump(mode="json"), overrides),
                              f"training preset {cfg.name!r} at n_envs {n_envs}")


def search_n_envs(cfg: TrainConfig, measure: Callable[[TrainConfig], float],
                  log: Callable[[str], None]) -> tuple[TrainConfig, NEnvsSearch]:
    """Double n_envs from :data:`SEARCH_START` up to ``cfg.gpu.max_n_envs`` and keep the last
    candidate whose doubling raised throughput by at least ``cfg.gpu.search_min_gain``.

    ``measure(candidate_cfg)`` returns env steps per second of that config (the entry point
    times one rollout + one update through the training's own env and model builders).
    The search stops at the first rise below the threshold (keeping the candidate before it),
    or when a candidate runs CUDA out of memory (``torch.OutOfMemoryError``, keeping the
    largest that fit), whichever comes first. Candidates whose config is invalid (a rollout
    that does not divide total_timesteps ...) end the ladder too: every larger one would not
    fit either (so total_timesteps and checkpoint_every_steps must be multiples of
    ``n_steps * max_n_envs`` for the search to reach max_n_envs).

    Returns:
        The config to train (n_envs and ppo.batch_size chosen) and the search's record.

    Raises:
        RuntimeError: no candidate could be measured (the first does not fit or runs out
            of memory).
    """
    import torch

    steps: list[SearchStep] = []
    best: tuple[TrainConfig, float] | None = None
    stopped = f"reached max_n_envs {cfg.gpu.max_n_envs}"
    n_envs = SEARCH_START
    while n_envs <= cfg.gpu.max_n_envs:
        try:
            candidate = with_n_envs(cfg, n_envs)
        except TrainConfigError as exc:
            steps.append(SearchStep(n_envs, None, None, "does not fit"))
            stopped = f"n_envs {n_envs} does not fit: {exc}"
            break
        try:
            rate = float(measure(candidate))
        except torch.OutOfMemoryError:
            steps.append(SearchStep(n_envs, candidate.ppo.batch_size, None, "oom"))
            stopped = f"CUDA out of memory at n_envs {n_envs}"
            _release_gpu_memory(torch)
            break
        steps.append(SearchStep(n_envs, candidate.ppo.batch_size, rate))
        log(f"n_envs search: {n_envs} envs (batch_size {candidate.ppo.batch_size}): "
            f"{rate:,.0f} steps/s")
        if best is not None and rate < best[1] * (1 + cfg.gpu.search_min_gain):
            stopped = (f"throughput rose less than {100 * cfg.gpu.search_min_gain:g} % from "
                       f"{best[0].n_envs} to {n_envs} envs")
            break
        best = (candidate, rate)
        n_envs *= 2
    if best is None:
        raise RuntimeError(f"n_envs search of training preset {cfg.name!r}: no candidate could "
                           f"be measured ({stopped}); set gpu.search_n_envs to false or change "
                           "the sizes")
    result = NEnvsSearch(best[0].n_envs, best[0].ppo.batch_size, steps, stopped)
    return best[0], result


def _release_gpu_memory(torch: Any) -> None:
    # The failed candidate's model and tensors are garbage once its frame is gone.
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
