"""Train a direction model (a market's LSTM or a venue's transformer); one run folder in the lake.

    python -m tradecore_lib.direction.train --model-key synthetic_lag_usd --preset cpu-control \
        [--overrides '{"seed": 1}'] [--lake-root data/lake]

The same command runs standalone (logs to stdout), under Dagster's ``PipesSubprocessClient``
and in a GPU pod (the PPO entry point's reporter,
:func:`tradecore_lib.train.reporting.open_reporter`).
It reads the preset's *train and validation* months only: the network is fitted on train,
validation is scored after every epoch (progress, optional early stopping); test months are
never read here. Labels are the one rule of :mod:`tradecore_lib.direction.labels`; samples are
strided windows over one table (:mod:`tradecore_lib.direction.data`).

Loss: binary cross-entropy with logits (the multi-market model: averaged over the markets
with a label); optimizer: Adam with the preset's weight decay, gradient norm clipped.

**Checkpoints and resume.** After every epoch ``model.pt`` holds the network, the optimizer,
the torch RNG state (dropout) and the early-stopping state; the batch order of epoch ``e`` is a
function of (seed, e). Re-running the same request resumes after the last finished epoch and
ends with the same weights and metrics as an uninterrupted run (on CPU). ``final.pt`` is
written last and marks the run complete; a complete run is reported without retraining.

**GPU awareness** shared with PPO (:mod:`tradecore_lib.train.gpu`): the GPU's name, memory and
temperature are logged at start and ride on every metrics row; the thermal guard
(``gpu.max_temperature_c``) stops between epochs (checkpoint, ``stopped.json``, result
``stopped_by: "thermal_guard"``, exit code 75); ``gpu.search_batch_size`` measures the batch
size to train with (a resumed run keeps the one in its config.json). On CPU the probe is
injectable through ``TRADECORE_GPU_PROBE``.

Exit codes: 0 complete (now or before); 75 stopped by the thermal guard (re-run to resume);
1 a failure (reported through Pipes as the closed message's exception).
"""

from __future__ import annotations

import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tradecore_lib.direction.config import (
    DirectionConfig,
    ModelKind,
    parse_direction_config,
)
from tradecore_lib.direction.data import (
    AlignedMarkets,
    MarketSeries,
    MultiSequenceSet,
    Normalization,
    SequenceSet,
    SplitRange,
    epoch_generator,
    lstm_ends,
    market_series,
    multi_ends,
)
from tradecore_lib.direction.launch import DirectionRequest, model_markets, parse_direction_request
from tradecore_lib.direction.models import build_model
from tradecore_lib.direction.store import (
    BATCH_SEARCH,
    CONFIG,
    FINAL,
    LINEAGE,
    MODEL,
    DirectionStore,
    make_direction_run_id,
)
from tradecore_lib.features import load_feature_preset
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.months import iso_utc
from tradecore_lib.paths import default_lake_root
from tradecore_lib.train.config import deep_merge
from tradecore_lib.train.data import MarketFrame, load_frame
from tradecore_lib.train.gpu import (
    STOPPED,
    STOPPED_BY_THERMAL_GUARD,
    THERMAL_STOP_EXIT_CODE,
    GpuMonitor,
    GpuProbe,
    gpu_probe,
)
from tradecore_lib.train.launch import s3_options_from_env
from tradecore_lib.train.ppo_train import code_version
from tradecore_lib.train.reporting import Reporter, open_reporter

FORMAT_VERSION = 1
# The batch-size search's first candidate; each next one doubles it.
BATCH_SEARCH_START = 256
# Gradient steps each search candidate is timed over (after one untimed warm-up call).
_SEARCH_STEPS = 8


def main(argv: list[str] | None = None) -> int:
    """The entry point; returns the exit code (see the module docstring)."""
    with open_reporter() as report:
        request = parse_direction_request(argv, __doc__.split("\n\n")[0])
        result = train(request, report)
        report.result(result)
    return THERMAL_STOP_EXIT_CODE if result.get("stopped_by") else 0


# -- data --------------------------------------------------------------------------------------
def feature_columns(cfg: DirectionConfig, market: Market) -> tuple[str, list[str]]:
    """The feature preset a model reads for ``market`` and its columns."""
    preset = cfg.data.feature_preset or market.feature_preset
    return preset, load_feature_preset(preset).columns


def split_ranges(cfg: DirectionConfig) -> dict[str, SplitRange]:
    """The train (cut at the purge), validation and test ranges of a fixed-month config."""
    train, val, test = (cfg.data.months(s) for s in ("train", "validation", "test"))
    return {
        "train": SplitRange("train", train[0].start_ms, cfg.data.train_end_ms),
        "validation": SplitRange("validation", val[0].start_ms, val[-1].end_ms),
        "test": SplitRange("test", test[0].start_ms, test[-1].end_ms),
    }


@dataclass
class Samples:
    """The training and per-epoch validation samples of a run, and how to feed them.

    ``train`` / ``validation`` are :class:`SequenceSet` (LSTM) or :class:`MultiSequenceSet`
    (transformer); ``normalization`` maps market -> its fitted input normalization.
    """

    kind: ModelKind
    train: SequenceSet | MultiSequenceSet
    validation: SequenceSet | MultiSequenceSet
    normalization: dict[str, Normalization]
    columns: list[str]
    n_markets: int

    @property
    def n_inputs(self) -> int:
        return self.train.n_inputs


def build_samples(kind: ModelKind, cfg: DirectionConfig, markets: list[Market],
                  frames: dict[str, MarketFrame], device: str) -> Samples:
    """Labels, normalization (fitted on train) and sample sets of a run's frames."""
    ranges = split_ranges(cfg)
    fit_splits = (ranges["train"], ranges["validation"])
    series: list[MarketSeries] = []
    norms: dict[str, Normalization] = {}
    columns: list[str] | None = None
    for market in markets:
        _, features = feature_columns(cfg, market)
        one, norm = market_series(market.name, frames[market.name].frame, features,
                                  cfg.candle_inputs, fit_splits, cfg.horizon_minutes,
                                  cfg.dead_zone, fit_on=ranges["train"])
        if columns is not None and list(norm.columns) != columns:
            raise ValueError(f"{market.name}: inputs {list(norm.columns)} differ from "
                             f"{markets[0].name}'s {columns}; the markets of one transformer "
                             "need the same feature preset (set data.feature_preset)")
        columns = list(norm.columns)
        series.append(one)
        norms[market.name] = norm
    length = cfg.sequence_length(kind)
    stride = cfg.training
    if kind == "lstm":
        (one,) = series
        train = SequenceSet(one, lstm_ends(one, ranges["train"], length, labelled=True,
                                           stride=stride.train_stride), length, device)
        val = SequenceSet(one, lstm_ends(one, ranges["validation"], length, labelled=True,
                                         stride=stride.monitor_stride), length, device)
    else:
        aligned = AlignedMarkets.align(series)
        train = MultiSequenceSet(aligned, multi_ends(aligned, ranges["train"], length,
                                                     labelled=True, stride=stride.train_stride),
                                 length, device)
        val = MultiSequenceSet(aligned, multi_ends(aligned, ranges["validation"], length,
                                                   labelled=True,
                                                   stride=stride.monitor_stride),
                               length, device)
    for name, part in (("train", train), ("validation", val)):
        if len(part) == 0:
            raise ValueError(f"no {name} sample with {length} consecutive minutes and a label: "
                             f"{', '.join(m.name for m in markets)}, months "
                             f"{getattr(cfg.data, name + '_months')}")
    return Samples(kind, train, val, norms, columns or [], len(markets))


def batches(samples: SequenceSet | MultiSequenceSet, batch_size: int,
            generator: torch.Generator | None
            ) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]]:
    """``(inputs, y, weight)`` batches: the network's positional inputs, labels (NaN set to
    0) and the loss weight of each label (1 where defined: for the transformer, where the
    market has a usable bar at minute t and a label; 0 elsewhere)."""
    if isinstance(samples, SequenceSet):
        for x, y in samples.batches(batch_size, generator):
            yield (x,), y, torch.ones_like(y)
    else:
        for x, present, y in samples.batches(batch_size, generator):
            weight = (torch.isfinite(y) & present[:, -1]).to(y.dtype)
            yield (x, present), torch.nan_to_num(y, nan=0.0), weight


def weighted_bce(logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits, averaged over the weighted labels."""
    losses = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
    return (losses * weight).sum() / weight.sum().clamp_min(1.0)


@torch.no_grad()
def score(model: nn.Module, samples: SequenceSet | MultiSequenceSet, batch_size: int
          ) -> dict[str, float]:
    """Mean BCE loss and accuracy (threshold p = 0.5) of ``model`` on ``samples``."""
    model.eval()
    totals = torch.zeros(3, dtype=torch.float64, device=samples.device)  # loss, right, count
    for inputs, y, weight in batches(samples, batch_size, None):
        logits = model(*inputs)
        losses = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        right = ((logits > 0).to(y.dtype) == y).to(y.dtype)
        totals += torch.stack([(losses * weight).sum(), (right * weight).sum(),
                               weight.sum()]).to(torch.float64)
    loss_sum, correct, count = totals.tolist()
    return {"loss": loss_sum / max(count, 1.0), "accuracy": correct / max(count, 1.0)}


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer,
                samples: SequenceSet | MultiSequenceSet, cfg: DirectionConfig, epoch: int,
                seed: int, limit_batches: int | None = None) -> dict[str, float]:
    """One pass over the training samples in the order of :func:`epoch_generator`.

    Returns the mean training loss and accuracy (of the batches as trained, dropout on), the
    samples trained and the seconds taken. ``limit_batches`` stops early (the batch-size
    search's timing).
    """
    model.train()
    # Sums stay on the device and are read once at the end: a float() per batch would make
    # a GPU wait for every step.
    totals = torch.zeros(3, dtype=torch.float64, device=samples.device)  # loss, right, count
    seen = 0
    start = time.perf_counter()
    clip = cfg.training.max_grad_norm
    for k, (inputs, y, weight) in enumerate(batches(samples, cfg.training.batch_size,
                                                    epoch_generator(seed, epoch))):
        if limit_batches is not None and k >= limit_batches:
            break
        logits = model(*inputs)
        loss = weighted_bce(logits, y, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        with torch.no_grad():
            n = weight.sum()
            right = (((logits > 0).to(y.dtype) == y).to(y.dtype) * weight).sum()
            totals += torch.stack([loss.detach() * n, right, n]).to(torch.float64)
            seen += int(y.shape[0])
    loss_sum, correct, count = totals.tolist()  # waits for the device once
    seconds = time.perf_counter() - start
    return {"loss": loss_sum / max(count, 1.0), "accuracy": correct / max(count, 1.0),
            "samples": seen, "seconds": seconds}


def new_optimizer(model: nn.Module, cfg: DirectionConfig) -> torch.optim.Adam:
    """Adam with the preset's learning rate and weight decay."""
    return torch.optim.Adam(model.parameters(), lr=cfg.training.learning_rate,
                            weight_decay=cfg.training.weight_decay)


# -- the batch-size search ---------------------------------------------------------------------
@dataclass(frozen=True)
class BatchSearch:
    """What the batch-size search measured: ``steps`` as ``(batch, samples/s or None, note)``,
    the chosen batch and why it stopped."""

    chosen: int
    learning_rate: float
    steps: list[tuple[int, float | None, str]]
    stopped: str

    def table(self) -> str:
        """``256: 9,100/s, 512: 15,800/s (+74 %), 1024: 16,000/s (+1 %) -> batch 512``."""
        parts, previous = [], None
        for batch, rate, note in self.steps:
            if rate is None:
                parts.append(f"{batch}: {note}")
                continue
            gain = "" if previous is None else f" ({100 * (rate / previous - 1):+.0f} %)"
            parts.append(f"{batch}: {rate:,.0f}/s{gain}")
            previous = rate
        return (f"{', '.join(parts)} -> batch {self.chosen}, learning rate "
                f"{self.learning_rate:.3g} ({self.stopped})")

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "learning_rate": self.learning_rate,
                "stopped": self.stopped,
                "steps": [{"batch_size": b, "samples_per_s": r, "note": n}
                          for b, r, n in self.steps]}


def with_batch_size(cfg: DirectionConfig, batch_size: int) -> DirectionConfig:
    """``cfg`` at ``batch_size``, the learning rate scaled linearly with it."""
    lr = cfg.training.learning_rate * batch_size / cfg.training.batch_size
    return parse_direction_config(
        deep_merge(cfg.model_dump(mode="json"),
                   {"training": {"batch_size": batch_size, "learning_rate": lr}}),
        f"direction preset {cfg.name!r} at batch size {batch_size}")


def search_batch_size(cfg: DirectionConfig, measure: Callable[[DirectionConfig], float],
                      log: Callable[[str], None]) -> tuple[DirectionConfig, BatchSearch]:
    """Double the batch from :data:`BATCH_SEARCH_START` up to ``cfg.gpu.max_batch_size`` while
    the measured samples/s rises by at least ``cfg.gpu.search_min_gain``; a CUDA
    out-of-memory keeps the largest batch that fit (the n_envs search's rule,
    :func:`tradecore_lib.train.gpu.search_n_envs`).

    Raises:
        RuntimeError: not even the first candidate could be measured.
    """
    steps: list[tuple[int, float | None, str]] = []
    best: tuple[DirectionConfig, float] | None = None
    stopped = f"reached max_batch_size {cfg.gpu.max_batch_size}"
    batch = BATCH_SEARCH_START
    while batch <= cfg.gpu.max_batch_size:
        candidate = with_batch_size(cfg, batch)
        try:
            rate = float(measure(candidate))
        except torch.OutOfMemoryError:
            steps.append((batch, None, "oom"))
            stopped = f"CUDA out of memory at batch {batch}"
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            break
        steps.append((batch, rate, ""))
        log(f"batch-size search: batch {batch}: {rate:,.0f} samples/s")
        if best is not None and rate < best[1] * (1 + cfg.gpu.search_min_gain):
            stopped = (f"throughput rose less than {100 * cfg.gpu.search_min_gain:g} % from "
                       f"{best[0].training.batch_size} to {batch}")
            break
        best = (candidate, rate)
        batch *= 2
    if best is None:
        raise RuntimeError(f"batch-size search of direction preset {cfg.name!r}: no candidate "
                           f"could be measured ({stopped}); set gpu.search_batch_size to false")
    chosen = best[0]
    return chosen, BatchSearch(chosen.training.batch_size, chosen.training.learning_rate,
                               steps, stopped)


class BatchMeter:
    """The search's measure: training samples/s of :data:`_SEARCH_STEPS` gradient steps of a
    throwaway network on the run's own training samples (after one untimed warm-up call, so
    CUDA context and kernels warm up outside the first figure)."""

    def __init__(self, kind: ModelKind, samples: Samples, device: str) -> None:
        self.kind, self.samples, self.device = kind, samples, device
        self._warm = False

    def __call__(self, cfg: DirectionConfig) -> float:
        if not self._warm:
            self._run(cfg)
            self._warm = True
        result = self._run(cfg)
        return result["samples"] / max(result["seconds"], 1e-9)

    def _run(self, cfg: DirectionConfig) -> dict[str, float]:
        model = build_model(self.kind, cfg, self.samples.n_inputs,
                            self.samples.n_markets).to(self.device)
        return train_epoch(model, new_optimizer(model, cfg), self.samples.train, cfg, 0,
                           cfg.seed, limit_batches=_SEARCH_STEPS)


# -- the run -----------------------------------------------------------------------------------
def resolve_device(cfg: DirectionConfig) -> str:
    """``cfg.device`` as a torch device name; asking for CUDA without a GPU is an error."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"direction preset {cfg.name!r} asks for device 'cuda' but torch sees no CUDA "
            "device here; run it on a GPU pod or override it with --overrides "
            "'{\"device\": \"cpu\"}'")
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def _state_bytes(document: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(document, buffer)
    return buffer.getvalue()


def load_state(data: bytes) -> dict[str, Any]:
    """A ``model.pt`` / ``final.pt`` document (tensors, numbers, strings; loaded with
    ``weights_only``: no code runs from the file)."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def train(request: DirectionRequest, report: Reporter, *, probe: GpuProbe | None = None,
          measure: Callable[[DirectionConfig], float] | None = None) -> dict[str, Any]:
    """Run (or resume, or recognize as done) one direction training run; returns its result
    metadata (see :func:`result_metadata`; a thermal stop returns ``stopped_by``).

    ``probe`` reads the GPU (default :func:`~tradecore_lib.train.gpu.gpu_probe` of the
    device); ``measure`` gives training samples/s of a candidate config in the batch-size
    search (default :class:`BatchMeter`).
    """
    # -- 1. what to train ------------------------------------------------------------------
    kind = request.kind
    cfg = request.config()
    markets = model_markets(request.model_key, cfg)
    lake = Lake(request.lake_root or default_lake_root(), s3_options_from_env(os.environ))
    months = sorted({*cfg.data.months("train"), *cfg.data.months("validation")})

    # -- 2. data: train + validation months (never test) ----------------------------------
    frames: dict[str, MarketFrame] = {}
    presets: dict[str, str] = {}
    for market in markets:
        presets[market.name], _ = feature_columns(cfg, market)
        frames[market.name] = load_frame(lake, market, months, presets[market.name])
    partitions = {name: frame.partitions for name, frame in frames.items()}
    run_id = make_direction_run_id(request.model_key, kind, cfg, partitions)
    store = DirectionStore(lake, request.model_key, run_id)
    report.info(f"run {run_id}: {kind} {request.model_key} ({', '.join(frames)}), preset "
                f"{cfg.name}, train months {cfg.data.train_months}, validation months "
                f"{cfg.data.validation_months}, folder {store.uri()}")
    if store.is_complete():
        report.info(f"run {run_id} already finished; reporting it without retraining")
        return result_metadata(store)
    lineage = {
        "model_key": request.model_key,
        "kind": kind,
        "markets": [m.name for m in markets],
        "feature_presets": presets,
        "train_months": cfg.data.train_months,
        "validation_months": cfg.data.validation_months,
        "train_end": iso_utc(cfg.data.train_end_ms),
        "partitions": {name: [p.to_dict() for p in used] for name, used in partitions.items()},
        "code_version": code_version(),
        "seed": cfg.seed,
        "run_id": run_id,
    }
    if store.exists(LINEAGE) and store.read_json(LINEAGE)["code_version"] != \
            lineage["code_version"]:
        report.warning(f"resuming run {run_id} started by code "
                       f"{store.read_json(LINEAGE)['code_version']} with code "
                       f"{lineage['code_version']}")
    if store.exists(STOPPED):
        before = store.read_json(STOPPED)
        report.info(f"run {run_id} was stopped by the thermal guard after epoch "
                    f"{before['epoch']} ({before['temperature_c']:g} °C); resuming")

    # -- 3. threads, device, GPU -----------------------------------------------------------
    torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg)
    gpu = GpuMonitor(probe if probe is not None else gpu_probe(device), report.warning)
    if gpu.probe is not None:
        guarded = (f"thermal guard at {cfg.gpu.max_temperature_c:g} °C"
                   if cfg.gpu.max_temperature_c is not None else "thermal guard off")
        report.info(f"device {device}; GPU {gpu.read().describe()}; {guarded}")
    else:
        report.info(f"device {device} (no GPU to report)")

    # -- 4. samples (normalization fitted on train only) -----------------------------------
    samples = build_samples(kind, cfg, markets, frames, device)
    report.info(f"{len(samples.train):,} training and {len(samples.validation):,} validation "
                f"samples of {cfg.sequence_length(kind)} minutes x {samples.n_inputs} inputs "
                f"({', '.join(samples.columns)}); horizon {cfg.horizon_minutes} min, dead zone "
                f"{cfg.dead_zone:g}")

    # -- 5. batch size: searched once per run (a resume keeps config.json's) ---------------
    search_table = None
    if cfg.gpu.search_batch_size:
        if store.exists(CONFIG):
            stored = parse_direction_config(store.read_json(CONFIG), store.uri(CONFIG))
            cfg = with_batch_size(cfg, stored.training.batch_size)
            report.info(f"batch size {cfg.training.batch_size} recorded in "
                        f"{store.uri(CONFIG)}: not searching again")
        else:
            cfg, search = search_batch_size(cfg, measure or BatchMeter(kind, samples, device),
                                            report.info)
            search_table = search.table()
            store.write_json(BATCH_SEARCH, search.to_dict())
            report.info(f"batch-size search: {search_table}")
    store.write_json(CONFIG, cfg.model_dump(mode="json"))
    store.write_json(LINEAGE, lineage)

    # -- 6. network: resume after the last finished epoch, else fresh ----------------------
    torch.manual_seed(cfg.seed)  # after the search: its throwaway networks shift nothing
    model = build_model(kind, cfg, samples.n_inputs, samples.n_markets).to(device)
    optimizer = new_optimizer(model, cfg)
    rows = store.read_metrics()
    done, best_loss, best_epoch, best_state, waited = 0, math.inf, 0, None, 0
    if store.exists(MODEL):
        state = load_state(store.read_bytes(MODEL))
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        done, best_loss, best_epoch = state["epoch"], state["best_loss"], state["best_epoch"]
        best_state, waited = state["best_model"], state["epochs_without_improvement"]
        rows = [row for row in rows if row["epoch"] <= done]
        report.info(f"resuming run {run_id} after epoch {done} of {cfg.training.epochs}")
    else:
        rows = []

    # -- 7. epochs -------------------------------------------------------------------------
    total = cfg.training.epochs
    patience = cfg.training.early_stopping_patience
    started = time.monotonic()
    wall_before = rows[-1]["wall_s"] if rows else 0.0
    epoch = done
    guard = _ThermalGuard(cfg.gpu.max_temperature_c, report)
    while epoch < total and not (patience is not None and waited >= patience):
        reading = gpu.read()
        if guard.should_stop(reading.temperature_c):
            return stopped_metadata(store, cfg, epoch, reading.temperature_c, device, gpu)
        fit = train_epoch(model, optimizer, samples.train, cfg, epoch, cfg.seed)
        val = score(model, samples.validation, cfg.training.predict_batch_size)
        epoch += 1
        if val["loss"] < best_loss:
            best_loss, best_epoch, best_state, waited = val["loss"], epoch, _cpu_state(model), 0
        else:
            waited += 1
        rate = fit["samples"] / max(fit["seconds"], 1e-9)
        elapsed = time.monotonic() - started
        eta = elapsed / (epoch - done) * (total - epoch)
        row = {"epoch": epoch, "loss": fit["loss"], "accuracy": fit["accuracy"],
               "val_loss": val["loss"], "val_accuracy": val["accuracy"],
               "samples_per_s": rate, "learning_rate": cfg.training.learning_rate,
               "wall_s": round(wall_before + elapsed, 3), "eta_s": round(eta, 1),
               **gpu.last.row_fields()}
        rows.append(row)
        store.write_bytes(MODEL, _state_bytes({
            "epoch": epoch, "model": _cpu_state(model), "optimizer": optimizer.state_dict(),
            "torch_rng": torch.get_rng_state(), "best_loss": best_loss,
            "best_epoch": best_epoch, "best_model": best_state,
            "epochs_without_improvement": waited}))
        store.write_metrics(rows)
        report.info(progress_line(request.model_key, row, total))

    # -- 8. the final model (final.pt last: it marks the run complete) ---------------------
    if patience is not None and best_state is not None:
        model.load_state_dict(best_state)
        chosen = best_epoch
        report.info(f"early stopping: keeping epoch {best_epoch} (validation loss "
                    f"{best_loss:.4f})")
    else:
        chosen = epoch
    store.write_bytes(FINAL, _state_bytes({
        "format": FORMAT_VERSION, "kind": kind, "model_key": request.model_key,
        "markets": [m.name for m in markets], "model_kwargs": model.kwargs(),
        "model": _cpu_state(model), "epoch": chosen, "columns": samples.columns,
        "feature_presets": presets, "candle_inputs": list(cfg.candle_inputs),
        "normalization": {name: norm.to_dict() for name, norm in samples.normalization.items()},
        "horizon_minutes": cfg.horizon_minutes, "dead_zone": cfg.dead_zone,
        "sequence_length": cfg.sequence_length(kind), "run_id": run_id}))
    report.info(f"run {run_id} finished after {epoch} epoch(s); model at {store.uri(FINAL)}")
    result = {**result_metadata(store), "device": device}
    if gpu.last.name:
        result["gpu_name"] = gpu.last.name
    if search_table:
        result["batch_search"] = search_table
    return result


class _ThermalGuard:
    """The thermal guard between epochs: True when the reading is above the limit (a reading
    without a temperature is warned about once and lets training go on, as in PPO)."""

    def __init__(self, limit_c: float | None, report: Reporter) -> None:
        self.limit_c = limit_c
        self.report = report
        self._blind_warned = False

    def should_stop(self, temperature_c: float | None) -> bool:
        if self.limit_c is None:
            return False
        if temperature_c is None:
            if not self._blind_warned:
                self.report.warning(f"thermal guard at {self.limit_c:g} °C cannot read the GPU "
                                    "temperature; training goes on unguarded")
                self._blind_warned = True
            return False
        if temperature_c <= self.limit_c:
            return False
        self.report.warning(f"thermal guard: GPU at {temperature_c:g} °C, above "
                            f"{self.limit_c:g} °C, before the next epoch; the last epoch's "
                            "checkpoint is kept, training stops (re-run to resume)")
        return True


def progress_line(model_key: str, row: dict[str, Any], total: int) -> str:
    """``direction synthetic_lag_usd epoch 3/8: loss 0.5123, accuracy 0.731, val_loss 0.4981,
    val_accuracy 0.744, 1,204 samples/s, ETA 40s``."""
    return (f"direction {model_key} epoch {row['epoch']}/{total}: loss {row['loss']:.4f}, "
            f"accuracy {row['accuracy']:.3f}, val_loss {row['val_loss']:.4f}, val_accuracy "
            f"{row['val_accuracy']:.3f}, {row['samples_per_s']:,.0f} samples/s, ETA "
            f"{row['eta_s']:.0f}s")


def stopped_metadata(store: DirectionStore, cfg: DirectionConfig, epoch: int,
                     temperature_c: float, device: str, gpu: GpuMonitor) -> dict[str, Any]:
    """Record a thermal-guard stop (``stopped.json``) and return what the run reports."""
    record = {"reason": STOPPED_BY_THERMAL_GUARD, "epoch": epoch,
              "temperature_c": temperature_c, "max_temperature_c": cfg.gpu.max_temperature_c,
              "gpu_name": gpu.last.name, "stopped_at": iso_utc(int(time.time() * 1000))}
    store.write_json(STOPPED, record)
    return {"run_id": store.run_id, "checkpoint_uri": store.uri(),
            "stopped_by": STOPPED_BY_THERMAL_GUARD, "epochs": epoch,
            "total_epochs": cfg.training.epochs, "temperature_c": temperature_c,
            "max_temperature_c": cfg.gpu.max_temperature_c, "stopped_uri": store.uri(STOPPED),
            "device": device, **({"gpu_name": gpu.last.name} if gpu.last.name else {})}


def result_metadata(store: DirectionStore) -> dict[str, Any]:
    """What a finished run reports: where it is and its last epoch's figures."""
    rows = store.read_metrics()
    last = rows[-1] if rows else {}
    lineage = store.read_json(LINEAGE)
    config = store.read_json(CONFIG)
    return {
        "run_id": store.run_id,
        "model_key": store.model_key,
        "kind": lineage["kind"],
        "markets": ", ".join(lineage["markets"]),
        "checkpoint_uri": store.uri(),
        "model_uri": store.uri(FINAL),
        "epochs": last.get("epoch", 0),
        "loss": last.get("loss"),
        "accuracy": last.get("accuracy"),
        "val_loss": last.get("val_loss"),
        "val_accuracy": last.get("val_accuracy"),
        "samples_per_s": last.get("samples_per_s"),
        "train_months": ", ".join(lineage["train_months"]),
        "validation_months": ", ".join(lineage["validation_months"]),
        "code_version": lineage["code_version"],
        "batch_size": config["training"]["batch_size"],
    }


if __name__ == "__main__":
    sys.exit(main())
