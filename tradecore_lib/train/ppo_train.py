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
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from typing import Any

import pandas as pd
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecNormalize

from tradecore_lib.env import make_vec_env
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.months import iso_utc
from tradecore_lib.paths import REPO_ROOT, default_lake_root
from tradecore_lib.train.checkpoints import (
    CONFIG,
    LINEAGE,
    MODEL,
    VECNORMALIZE,
    RunStore,
    make_run_id,
)
from tradecore_lib.train.config import TrainConfig, deep_merge, load_train_config
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.launch import TrainRequest, parse_request, s3_options_from_env
from tradecore_lib.train.reporting import (
    CheckpointCallback,
    MetricsWriter,
    Reporter,
    model_bytes,
    open_reporter,
    vecnormalize_bytes,
)

_ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}


def main(argv: list[str] | None = None) -> int:
    with open_reporter() as report:
        request = parse_request(argv, __doc__.split("\n\n")[0],
                                lambda name: get_market(name).train_preset)
        report.result(train(request, report))
    return 0


def train(request: TrainRequest, report: Reporter) -> dict[str, Any]:
    """Run (or resume, or recognize as done) one training run; returns its result metadata."""
    # -- 1. what to train ------------------------------------------------------------------
    market = get_market(request.market)
    # the market's holding costs (markets.yaml) replace its env preset's; the request's own
    # overrides still win. They land in config.json, so evaluation and signals charge them too.
    costs = market.holding_costs.env_overrides()
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
    store.write_json(CONFIG, cfg.model_dump(mode="json"))
    store.write_json(LINEAGE, lineage)

    # -- 3. seeds, threads, device ---------------------------------------------------------
    set_random_seed(cfg.seed)
    torch.set_num_threads(cfg.torch_threads)
    device = resolve_device(cfg)

    # -- 4. environment: TradeVecEnv -> VecMonitor (episode rewards) -> VecNormalize -------
    venv, vec_normalize = make_training_env(cfg, frame)

    # -- 5. model: resume the interrupted run, else warm start or a fresh network ----------
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

    # -- 6. learn ----------------------------------------------------------------------------
    writer = MetricsWriter(store, rows, cfg.total_timesteps, report.info)
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    checkpoints = CheckpointCallback(store, cfg.checkpoint_every_steps, vec_normalize,
                                     report.info, last_step=start_step)
    model.learn(total_timesteps=cfg.total_timesteps - start_step, callback=checkpoints,
                log_interval=1, reset_num_timesteps=start_step == 0, progress_bar=False)
    # SB3 dumps an iteration's losses at the next iteration; record the last update's too.
    final = {"step": model.num_timesteps, **{
        name.split("/")[1]: float(value) for name, value in model.logger.name_to_value.items()
        if name.startswith("train/")
    }}
    writer.rows.append(final)
    store.write_metrics(writer.rows)

    # -- 7. the versioned checkpoint (model.zip last: it marks the run complete) -----------
    vec_bytes = vecnormalize_bytes(vec_normalize)
    if vec_bytes is not None:
        store.write_bytes(VECNORMALIZE, vec_bytes)
    store.write_bytes(MODEL, model_bytes(model))
    report.info(f"run {run_id} finished: {model.num_timesteps} steps; model at "
                f"{store.uri(MODEL)}")
    return result_metadata(store)


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
    vec_normalize = VecNormalize(
        venv, norm_obs=settings.normalize_obs, norm_reward=settings.normalize_reward,
        clip_obs=settings.clip_obs, clip_reward=settings.clip_reward, gamma=cfg.ppo.gamma,
    )
    return vec_normalize, vec_normalize


def new_model(cfg: TrainConfig, venv: VecEnv, device: str) -> PPO:
    """A fresh SB3 PPO with every hyper-parameter of ``cfg.ppo``."""
    p = cfg.ppo
    return PPO(
        "MlpPolicy", venv,
        learning_rate=p.learning_rate, n_steps=p.n_steps, batch_size=p.batch_size,
        n_epochs=p.n_epochs, gamma=p.gamma, gae_lambda=p.gae_lambda, clip_range=p.clip_range,
        clip_range_vf=p.clip_range_vf, normalize_advantage=p.normalize_advantage,
        ent_coef=p.ent_coef, vf_coef=p.vf_coef, max_grad_norm=p.max_grad_norm,
        target_kl=p.target_kl,
        policy_kwargs={"net_arch": list(p.net_arch), "activation_fn": _ACTIVATIONS[p.activation]},
        seed=cfg.seed, device=device, verbose=0,
    )


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


def result_metadata(store: RunStore) -> dict[str, Any]:
    """What a finished run reports: where it is and its final metrics."""
    rows = store.read_metrics()
    last_with_reward = next((r for r in reversed(rows) if "ep_rew_mean" in r), {})
    lineage = store.read_json(LINEAGE)
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
