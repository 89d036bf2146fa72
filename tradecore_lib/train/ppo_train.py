"""Train SB3 PPO on TradeVecEnv over a market's train months; one checkpoint per run in the lake.

    python -m tradecore_lib.train.ppo_train --market synthetic_btc_usd --preset cpu-smoke \
        [--overrides '{"ppo": {"ent_coef": 0.02}}'] [--lake-root data/lake] \
        [--warm-start-from <champion run id>]

The same command runs standalone (logs to stdout), under Dagster's ``PipesSubprocessClient``
(logs, progress and the result stream to the run in the UI) and in a GPU pod (only
``dagster-pipes`` needed). Reads only the preset's *train* months; validation and test months
are never loaded here. Re-running the same request resumes the interrupted run (see
:mod:`tradecore_lib.train.checkpoints` for the run id) and a finished run is not retrained.
Deterministic on CPU: same data, config and seed give the same final metrics.

GPU awareness (:mod:`tradecore_lib.train.gpu`; on CPU through ``TRADECORE_GPU_PROBE``): the
GPU's name, memory and temperature are logged at start and ride on every ``metrics.jsonl``
row (``gpu_temp_c``, ``gpu_mem_used_mib``); the thermal guard (``gpu.max_temperature_c``)
stops a run between rollouts with a checkpoint, ``stopped.json`` and result metadata
``stopped_by: "thermal_guard"``, without ``model.zip``; ``gpu.search_n_envs`` measures the
n_envs to train with (a resumed run keeps the one in its config.json).

Exit codes: 0 the run is complete (trained now or before); 75
(:data:`~tradecore_lib.train.gpu.THERMAL_STOP_EXIT_CODE`) the thermal guard stopped it, after
reporting its result (re-run to resume); anything else a failure (an exception: 1, reported
through Pipes as the closed message's exception).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pandas as pd
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from tradecore_lib.env import EnvConfig, make_vec_env
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.months import iso_utc
from tradecore_lib.paths import REPO_ROOT, default_lake_root
from tradecore_lib.train import extractors
from tradecore_lib.train.checkpoints import (
    CONFIG,
    LINEAGE,
    MODEL,
    VECNORMALIZE,
    RunStore,
    make_run_id,
)
from tradecore_lib.train.config import (
    TrainConfig,
    TrainConfigError,
    deep_merge,
    load_train_config,
    parse_train_config,
)
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.gpu import (
    N_ENVS_SEARCH,
    STOPPED,
    STOPPED_BY_THERMAL_GUARD,
    THERMAL_STOP_EXIT_CODE,
    GpuMonitor,
    GpuProbe,
    gpu_probe,
    search_n_envs,
    with_n_envs,
)
from tradecore_lib.train.launch import TrainRequest, parse_request, s3_options_from_env
from tradecore_lib.train.reporting import (
    CheckpointCallback,
    MetricsWriter,
    Reporter,
    ThermalGuard,
    ThermalStop,
    model_bytes,
    open_reporter,
    vecnormalize_bytes,
)
from tradecore_lib.train.rollout import TradeRolloutBuffer, TradeVecNormalize

_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


def main(argv: list[str] | None = None) -> int:
    """The entry point; returns the exit code (see the module docstring)."""
    with open_reporter() as report:
        request = parse_request(argv, __doc__.split("\n\n")[0],
                                lambda name: get_market(name).train_preset)
        result = train(request, report)
        report.result(result)
    # The result went through Pipes before the code: the orchestrator has both.
    return THERMAL_STOP_EXIT_CODE if result.get("stopped_by") else 0


Measure = Callable[[TrainConfig], float]


def train(request: TrainRequest, report: Reporter, *, probe: GpuProbe | None = None,
          measure: Measure | None = None) -> dict[str, Any]:
    """Run (or resume, or recognize as done) one training run; returns its result metadata.

    ``probe`` reads the GPU (default: :func:`~tradecore_lib.train.gpu.gpu_probe` of the
    device); ``measure`` gives the env steps per second of a candidate config in the n_envs
    search (default: one timed rollout + update, :class:`ThroughputMeter`). A run the
    thermal guard stopped returns ``stopped_by: "thermal_guard"`` (see
    :func:`stopped_metadata`).
    """
    # -- 1. what to train ------------------------------------------------------------------
    market = get_market(request.market)
    # the market's trading fees and holding costs (markets.yaml) replace its env preset's; the
    # request's own overrides still win. They land in config.json, so evaluation and signals
    # charge them too.
    costs = market.env_overrides()
    cfg = load_train_config(request.preset, deep_merge({"env_overrides": costs} if costs else {},
                                                       request.overrides))
    lake = Lake(request.lake_root or default_lake_root(), s3_options_from_env(os.environ))
    feature_preset = cfg.data.feature_preset or market.feature_preset

    # -- 2. data: the train months only, cut purge_days before validation ------------------
    data = load_frame(lake, market, cfg.data.months("train"), feature_preset)
    frame = data.frame[data.frame["ts"] < pd.Timestamp(cfg.data.train_end_ms, unit="ms", tz="UTC")]
    run_id = make_run_id(market.name, cfg, data.partitions, request.warm_start_from)
    store = RunStore(lake, market.name, run_id)
    report.info(f"run {run_id}: {market.name}, preset {cfg.name}, train months "
                f"{cfg.data.train_months} ({len(frame)} bars, {iso_utc(frame['ts'].iloc[0])} .. "
                f"{iso_utc(frame['ts'].iloc[-1])}), checkpoint folder {store.uri()}")
    if store.is_complete():
        report.info(f"run {run_id} already finished; reporting it without retraining")
        return result_metadata(store)
    lineage = {
        "market": market.name,
        "venue": market.venue,
        "symbol": market.symbol,
        "feature_preset": feature_preset,
        "env_preset": cfg.env_preset,
        "train_months": cfg.data.train_months,
        "partitions": [p.to_dict() for p in data.partitions],
        "first_ts": str(data.first_ts),
        "last_ts": str(data.last_ts),
        "train_end": iso_utc(cfg.data.train_end_ms),
        "code_version": code_version(),
        "seed": cfg.seed,
        "warm_start_from": request.warm_start_from,
        "run_id": run_id,
    }
    _check_code_version(store, lineage["code_version"], report)
    if store.exists(STOPPED):
        before = store.read_json(STOPPED)
        report.info(f"run {run_id} was stopped by the thermal guard at step {before['step']} "
                    f"({before['temperature_c']:g} °C); resuming")

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

    # -- 4. n_envs: searched (once per run: a resume keeps config.json's), else the preset's
    search_table = None
    if cfg.gpu.search_n_envs:
        if store.exists(CONFIG):
            stored = parse_train_config(store.read_json(CONFIG), store.uri(CONFIG))
            cfg = with_n_envs(cfg, stored.n_envs)
            report.info(f"n_envs {cfg.n_envs} (batch_size {cfg.ppo.batch_size}) recorded in "
                        f"{store.uri(CONFIG)}: not searching again")
        else:
            cfg, search = search_n_envs(cfg, measure or ThroughputMeter(frame, device),
                                        report.info)
            search_table = search.table()
            store.write_json(N_ENVS_SEARCH, search.to_dict())
            report.info(f"n_envs search: {search_table}")
    store.write_json(CONFIG, cfg.model_dump(mode="json"))
    store.write_json(LINEAGE, lineage)
    set_random_seed(cfg.seed)  # after the search: its throwaway models do not shift the seed

    # -- 5. environment: TradeVecEnv -> VecMonitor (episode rewards) -> VecNormalize -------
    venv, vec_normalize = make_training_env(cfg, frame)

    # -- 6. model: resume the interrupted run, else warm start or a fresh network ----------
    checkpoint = store.latest_checkpoint()
    rows = store.read_metrics()
    if checkpoint is not None:
        if vec_normalize is not None:
            vec_normalize = _load_vecnormalize(lake.read_bytes(checkpoint.vecnormalize_key), venv)
            venv = vec_normalize
        model = PPO.load(io.BytesIO(lake.read_bytes(checkpoint.model_key)), env=venv,
                         device=device)
        rows = [row for row in rows if row["step"] <= checkpoint.step]
        report.info(f"resuming run {run_id} from its checkpoint at step {checkpoint.step} of "
                    f"{cfg.total_timesteps}")
    else:
        model = new_model(cfg, venv, device)
        rows = []
        if request.warm_start_from:
            warm_start(model, vec_normalize, RunStore(lake, market.name, request.warm_start_from),
                       report)
    start_step = model.num_timesteps

    # -- 7. learn (the guard after the checkpoints: one checkpoint per step at most) -------
    writer = MetricsWriter(store, rows, cfg.total_timesteps, report.info, gpu)
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    checkpoints = CheckpointCallback(store, cfg.checkpoint_every_steps, vec_normalize,
                                     report.info, last_step=start_step)
    guard = ThermalGuard(gpu, cfg.gpu.max_temperature_c, checkpoints, report.warning)
    model.learn(total_timesteps=cfg.total_timesteps - start_step,
                callback=CallbackList([checkpoints, guard]), log_interval=1,
                reset_num_timesteps=start_step == 0, progress_bar=False)
    if guard.stop is not None:
        return stopped_metadata(store, cfg, guard.stop, device, gpu)
    # SB3 dumps an iteration's losses at the next iteration; record the last update's too.
    final = {"step": model.num_timesteps, **{
        name.split("/")[1]: float(value) for name, value in model.logger.name_to_value.items()
        if name.startswith("train/")
    }}
    writer.rows.append(final)
    store.write_metrics(writer.rows)

    # -- 8. the versioned checkpoint (model.zip last: it marks the run complete) -----------
    vec_bytes = vecnormalize_bytes(vec_normalize)
    if vec_bytes is not None:
        store.write_bytes(VECNORMALIZE, vec_bytes)
    store.write_bytes(MODEL, model_bytes(model))
    report.info(f"run {run_id} finished: {model.num_timesteps} steps; model at "
                f"{store.uri(MODEL)}")
    result = {**result_metadata(store), "device": device}
    if gpu.last.name:
        result["gpu_name"] = gpu.last.name
    if search_table:
        result["n_envs_search"] = search_table
    return result


def make_training_env(cfg: TrainConfig, frame: pd.DataFrame
                      ) -> tuple[VecEnv, VecNormalize | None]:
    """``cfg.n_envs`` seeded TradeVecEnv envs on ``frame``, with episode statistics
    (VecMonitor, raw rewards) and, when ``vec_normalize`` (Brain Shampoo) is on, VecNormalize
    on top.

    Returns the outermost env and the VecNormalize wrapper (None when off).
    """
    venv: VecEnv = VecMonitor(make_vec_env(frame, cfg.n_envs, cfg.env_settings(WARMUP_COLUMN),
                                           seed=cfg.seed))
    if not cfg.vec_normalize.enabled:
        return venv, None
    settings = cfg.vec_normalize
    # SB3's VecNormalize with the same numbers and fewer copies (tradecore_lib/train/rollout.py)
    vec_normalize = TradeVecNormalize(
        venv, norm_obs=settings.normalize_obs, norm_reward=settings.normalize_reward,
        clip_obs=settings.clip_obs, clip_reward=settings.clip_reward, gamma=cfg.ppo.gamma,
    )
    return vec_normalize, vec_normalize


class ThroughputMeter:
    """The n_envs search's measure: env steps per second of one rollout + one PPO update of a
    candidate config (n_envs * n_steps transitions), built with the training's own env and
    model builders on the run's frame and device.

    Its first call is preceded by an untimed one, so that the CUDA context, kernels and the
    allocator warm up there and not in the first candidate's figure.
    """

    def __init__(self, frame: pd.DataFrame, device: str) -> None:
        self.frame = frame
        self.device = device
        self._warm = False

    def __call__(self, cfg: TrainConfig) -> float:
        if not self._warm:
            self._seconds(cfg)
            self._warm = True
        return cfg.rollout_size / self._seconds(cfg)

    def _seconds(self, cfg: TrainConfig) -> float:
        venv, _ = make_training_env(cfg, self.frame)
        try:
            model = new_model(cfg, venv, self.device)
            start = time.perf_counter()
            model.learn(total_timesteps=cfg.rollout_size, progress_bar=False)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            return time.perf_counter() - start
        finally:
            venv.close()


def new_model(cfg: TrainConfig, venv: VecEnv, device: str) -> PPO:
    """A fresh SB3 PPO with every hyper-parameter of ``cfg.ppo``: its features extractor
    (``ppo.policy``, :mod:`tradecore_lib.train.extractors`), Adam fused or not
    (``ppo.fused_adam``) and the copy-free rollout buffer
    (:class:`~tradecore_lib.train.rollout.TradeRolloutBuffer`, SB3's samples exactly)."""
    p = cfg.ppo
    policy_kwargs: dict[str, Any] = {"net_arch": list(p.net_arch),
                                     "activation_fn": _ACTIVATIONS[p.activation],
                                     **extractor_kwargs(cfg, venv)}
    if p.fused_adam:
        # SB3 passes eps=1e-5 to Adam only when given no optimizer_kwargs: keep it
        policy_kwargs["optimizer_kwargs"] = {"eps": 1e-5, "fused": True}
    return PPO(
        "MlpPolicy", venv,
        learning_rate=p.learning_rate, n_steps=p.n_steps, batch_size=p.batch_size,
        n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_range,
        clip_range_vf=p.clip_range_vf, normalize_advantage=p.normalize_advantage,
        ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
        target_kl=p.target_kl, policy_kwargs=policy_kwargs,
        rollout_buffer_class=TradeRolloutBuffer,
        seed=cfg.seed, device=device, verbose=0,
    )


def extractor_kwargs(cfg: TrainConfig, venv: VecEnv) -> dict[str, Any]:
    """SB3 ``policy_kwargs`` of ``cfg.ppo.policy``'s features extractor, sized from the env's
    preset (its window and account vector)."""
    policy = cfg.ppo.policy
    if policy.extractor == "mlp":
        return extractors.policy_kwargs("mlp")
    env_cfgs = venv.get_attr("cfg", [0])
    if not env_cfgs or not isinstance(env_cfgs[0], EnvConfig):
        raise TypeError(f"training preset {cfg.name!r} asks for the temporal extractor, which "
                        "reads a TradeVecEnv's window layout; this env has no TradeCore preset")
    env_cfg = env_cfgs[0]
    assert policy.patch_bars is not None and policy.channels is not None  # PolicySettings
    try:
        extractors.check_temporal(int(venv.observation_space.shape[0]), env_cfg.window,
                                  env_cfg.account_size, policy.patch_bars, policy.channels)
    except ValueError as exc:
        raise TrainConfigError(f"training preset {cfg.name!r} with env preset "
                               f"{env_cfg.name!r}: {exc}") from None
    return extractors.policy_kwargs("temporal", window=env_cfg.window,
                                    account_size=env_cfg.account_size,
                                    patch_bars=policy.patch_bars, channels=policy.channels)


def resolve_device(cfg: TrainConfig) -> str:
    """``cfg.device`` as a torch device name; asking for CUDA without a GPU is an error."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"training preset {cfg.name!r} asks for device 'cuda' but torch sees no CUDA device "
            "here; run it on a GPU pod or override it with --overrides '{\"device\": \"cpu\"}'"
        )
    if cfg.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.device


def warm_start(model: PPO, vec_normalize: VecNormalize | None, champion: RunStore,
               report: Reporter) -> None:
    """Copy the champion's network weights (and normalization statistics) into ``model``."""
    try:
        model.set_parameters(io.BytesIO(champion.read_bytes(MODEL)), exact_match=True,
                             device=model.device)
    except (RuntimeError, ValueError) as exc:
        raise RuntimeError(
            f"cannot warm start from {champion.uri(MODEL)}: its network does not fit this run's "
            f"(observation/action spaces or net_arch differ): {exc}. Set warm_start to false."
        ) from exc
    if vec_normalize is not None and champion.exists(VECNORMALIZE):
        stats = pickle.loads(champion.read_bytes(VECNORMALIZE))
        vec_normalize.obs_rms = stats.obs_rms
        vec_normalize.ret_rms = stats.ret_rms
    report.info(f"warm start from the champion at {champion.uri()}")


def _load_vecnormalize(data: bytes, venv: VecEnv) -> VecNormalize:
    restored: VecNormalize = pickle.loads(data)
    inner = venv.venv if isinstance(venv, VecNormalize) else venv
    restored.set_venv(inner)
    return restored


def stopped_metadata(store: RunStore, cfg: TrainConfig, stop: ThermalStop, device: str,
                     gpu: GpuMonitor) -> dict[str, Any]:
    """Record a thermal-guard stop (``stopped.json``) and return what the run reports:
    ``stopped_by: "thermal_guard"``, the step its checkpoint holds and the temperatures."""
    checkpoint = store.latest_checkpoint()
    record = {
        "reason": STOPPED_BY_THERMAL_GUARD,
        "step": stop.step,
        "temperature_c": stop.temperature_c,
        "max_temperature_c": stop.limit_c,
        "checkpoint_step": checkpoint.step if checkpoint else None,
        "gpu_name": gpu.last.name,
        "stopped_at": iso_utc(int(time.time() * 1000)),
    }
    store.write_json(STOPPED, record)
    return {
        "run_id": store.run_id,
        "checkpoint_uri": store.uri(),
        "stopped_by": STOPPED_BY_THERMAL_GUARD,
        "timesteps": stop.step,
        "total_timesteps": cfg.total_timesteps,
        "temperature_c": stop.temperature_c,
        "max_temperature_c": stop.limit_c,
        "stopped_uri": store.uri(STOPPED),
        "device": device,
        **({"gpu_name": gpu.last.name} if gpu.last.name else {}),
    }


def result_metadata(store: RunStore) -> dict[str, Any]:
    """What a finished run reports: where it is, its final metrics and its sizes."""
    rows = store.read_metrics()
    last_with_reward = next((r for r in reversed(rows) if "ep_rew_mean" in r), {})
    lineage = store.read_json(LINEAGE)
    config = store.read_json(CONFIG)
    return {
        "run_id": store.run_id,
        "checkpoint_uri": store.uri(),
        "model_uri": store.uri(MODEL),
        "timesteps": rows[-1]["step"] if rows else 0,
        "ep_rew_mean": last_with_reward.get("ep_rew_mean"),
        "value_loss": rows[-1].get("value_loss") if rows else None,
        "feature_preset": lineage["feature_preset"],
        "train_months": ", ".join(lineage["train_months"]),
        "code_version": lineage["code_version"],
        "vecnormalize": store.exists(VECNORMALIZE),
        "n_envs": config["n_envs"],
        "batch_size": config["ppo"]["batch_size"],
    }


def code_version() -> str:
    """``TRADECORE_CODE_VERSION`` (set in images), else the git commit, else ``unknown``."""
    if os.environ.get("TRADECORE_CODE_VERSION"):
        return os.environ["TRADECORE_CODE_VERSION"]
    try:
        sha = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha.strip() or "unknown"


def _check_code_version(store: RunStore, version: str, report: Reporter) -> None:
    if store.exists(LINEAGE):
        before = store.read_json(LINEAGE).get("code_version")
        if before != version:
            report.warning(f"resuming run {store.run_id} started by code {before} with code "
                           f"{version}")


if __name__ == "__main__":
    sys.exit(main())
