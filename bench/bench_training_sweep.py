"""torch_threads x n_envs x extractor for the CPU training presets, measured on this machine.

Each cell trains through the training entry point's own builders
(``ppo_train.make_training_env`` + ``new_model``: TradeVecEnv -> VecMonitor ->
TradeVecNormalize, the preset's PPO settings, TradeRolloutBuffer) and reports ``learn()``
env-steps/s over ``--rollouts`` rollouts after one untimed rollout. Across ``n_envs`` the
rollout size and the minibatch size stay the preset's (``n_steps = rollout / n_envs``), so
every cell does the same gradient steps per env step: only how the work is spread changes.
``torch_threads`` is ``torch.set_num_threads``. Cells are visited round-robin ``--repeat``
times and each reports its best, so a burst of load on the shared machine hits every cell
alike; the table gives env-steps/s and the ratio to the preset before issue 15 (mlp, 32 envs
for cpu-control and 16 for cpu-default, 1 thread, Adam unfused; :data:`REFERENCE_N_ENVS`).
Run it with some other process busy (``--threads 1,2`` under load) to see why presets keep
one torch thread.

Presets and observations: ``cpu-control`` on ``synthetic_lag_usd``'s control features (env
preset ``control``, 32 x 7 + 5 = 229 floats) and ``cpu-default`` on the ``extended``
features the Kraken markets train on (64 x 13 + 5 = 837 floats), one synthetic month each::

    nice .venv/bin/python bench/bench_training_sweep.py [--presets cpu-control,cpu-default] \
        [--n-envs 16,32,64,128,256] [--threads 1,2] [--repeat 3] [--fused-adam 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import tests_path  # noqa: F401
import torch

from tests.lakes import write_synthetic_months
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.train.config import TrainConfig, load_train_config
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.ppo_train import make_training_env, new_model

# the market and feature preset whose observation each training preset trains on
PRESET_DATA = {"cpu-control": ("synthetic_lag_usd", "control"),
               "cpu-default": ("synthetic_btc_usd", "extended")}
EXTRACTORS = {"mlp": {"extractor": "mlp"}, "temporal": {"extractor": "temporal"}}
# The reference of each preset: its settings before issue 15 (mlp, these n_envs with the same
# rollout, one thread, Adam unfused), measured on today's rollout path in the same rounds.
REFERENCE_N_ENVS = {"cpu-control": 32, "cpu-default": 16}


def preset_frame(preset: str) -> pd.DataFrame:
    """One synthetic month of the market ``preset`` trains on, with its features."""
    name, features = PRESET_DATA[preset]
    market = get_market(name).model_copy(update={"feature_preset": features})
    with tempfile.TemporaryDirectory() as tmp:
        lake = Lake(f"{tmp}/lake")
        write_synthetic_months(lake, market, [market.first_month])
        return load_frame(lake, market, [market.first_month], features).frame


@dataclass(frozen=True)
class Cell:
    preset: str
    extractor: str
    threads: int
    n_envs: int


def cell_config(base: TrainConfig, cell: Cell, fused: bool) -> TrainConfig:
    """``base`` (a preset) with the cell's n_envs (rollout and batch kept), extractor and
    threads; total steps of one untimed + the timed rollouts are set by the caller."""
    rollout = base.rollout_size
    overrides: dict[str, Any] = {
        "n_envs": cell.n_envs, "torch_threads": cell.threads,
        "ppo": {"n_steps": rollout // cell.n_envs, "fused_adam": fused,
                "policy": EXTRACTORS[cell.extractor]},
        "total_timesteps": rollout, "checkpoint_every_steps": rollout,
    }
    return load_train_config(base.name, overrides)


def measure(cfg: TrainConfig, frame: pd.DataFrame, rollouts: int) -> float:
    """learn() env-steps/s of ``rollouts`` rollouts after one untimed rollout."""
    torch.set_num_threads(cfg.torch_threads)
    venv, _ = make_training_env(cfg, frame)
    model = new_model(cfg, venv, "cpu")
    model.learn(cfg.rollout_size)
    start = time.perf_counter()
    model.learn(cfg.rollout_size * rollouts, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    venv.close()
    return cfg.rollout_size * rollouts / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="cpu-control,cpu-default")
    parser.add_argument("--n-envs", default="16,32,64,128,256")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--extractors", default="mlp,temporal")
    parser.add_argument("--rollouts", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fused-adam", type=int, default=1, help="ppo.fused_adam in every cell")
    args = parser.parse_args()
    presets = args.presets.split(",")
    frames = {p: preset_frame(p) for p in presets}
    bases = {p: load_train_config(p) for p in presets}
    cells = [Cell(p, e, int(t), int(n)) for p in presets for e in args.extractors.split(",")
             for t in args.threads.split(",") for n in args.n_envs.split(",")
             if bases[p].rollout_size % int(n) == 0]
    refs = {p: Cell(p, "mlp", 1, REFERENCE_N_ENVS[p]) for p in presets}
    best: dict[tuple[Cell, bool], float] = {}
    plan = [(c, bool(args.fused_adam)) for c in cells] + [(r, False) for r in refs.values()]
    started = time.perf_counter()
    for round_ in range(args.repeat):
        for cell, fused in plan:
            rate = measure(cell_config(bases[cell.preset], cell, fused), frames[cell.preset],
                           args.rollouts)
            best[(cell, fused)] = max(best.get((cell, fused), 0.0), rate)
        print(f"round {round_ + 1}/{args.repeat} done ({time.perf_counter() - started:.0f} s)",
              flush=True)
    for preset in presets:
        base = bases[preset]
        ref = best[(refs[preset], False)]
        print(f"\n{preset}: rollout {base.rollout_size} (n_steps x n_envs), minibatch "
              f"{base.ppo.batch_size} x {base.ppo.n_epochs} epochs, net {base.ppo.net_arch}, "
              f"fused Adam {'on' if args.fused_adam else 'off'}; reference (the preset before "
              f"issue 15: mlp, {refs[preset].n_envs} envs, 1 thread, Adam unfused): {ref:,.0f} "
              f"env-steps/s")
        print(f"{'extractor':9} {'threads':>7} " + " ".join(f"{'x' + n:>14}"
                                                         for n in args.n_envs.split(",")))
        for extractor in args.extractors.split(","):
            for threads in args.threads.split(","):
                cols = []
                for n in args.n_envs.split(","):
                    rate = best.get((Cell(preset, extractor, int(threads), int(n)),
                                     bool(args.fused_adam)))
                    cols.append(f"{'-':>14}" if rate is None
                                else f"{rate:8,.0f} {rate / ref:4.2f}x")
                print(f"{extractor:9} {threads:>7} " + " ".join(cols))
        top = max(((c, r) for (c, f), r in best.items() if c.preset == preset and f ==
                   bool(args.fused_adam)), key=lambda item: item[1])
        print(f"fastest: {top[0].extractor}, {top[0].threads} thread(s), {top[0].n_envs} envs: "
              f"{top[1]:,.0f} env-steps/s, {top[1] / ref:.2f}x the reference")


if __name__ == "__main__":
    main()
