"""Backtest speed: the former demo's validation and test months, every policy, one pass each.

The evaluation the demo ran when the old walk was measured: ``synthetic_btc_usd`` with the
``cpu-smoke`` training preset (trained here through the real entry point,
``tradecore_lib.train.ppo_train``: PPO MLP 64-64 with VecNormalize), validation 2024-02 and test
2024-03 (each read with the month before it, the normalization's warm-up). Today's walk
(:func:`tradecore_lib.evaluation.backtest.run_policies`): every policy is an account of the one
engine; the precomputed baselines walk the split in one kernel pass, the agent bar by bar with
its network evaluated inside the kernel. Rows per split
(best of ``--repeat``): the whole call for the old walk's policy set (agent, buy_and_hold,
always_long_stops, flat and one random target path; the frame's preparation included), the
agent alone, the constant baselines alone, and agent + baselines + 100 random target paths
(the matched random baseline's size), with bars/s; then the first row's total against the old
walk's.

Baseline, measured once before the one-engine rewrite (issue 9) at commit 01cac53 with this
file's first version: the old walk (``evaluation.backtest.backtest``: one single
``TradingEnv`` stepped in Python per policy and split, the agent predicting one observation at
a time), best of 2, on the shared 2-core machine::

    split       policy           bars  seconds     bars/s
    validation  agent           41615     3.79     10,983
    validation  buy_and_hold    41615     0.24    175,783
    validation  flat            41615     0.23    177,725
    validation  random          41615     0.33    126,996
    test        agent           44495     4.07     10,922
    test        buy_and_hold    44495     0.24    181,664
    test        flat            44495     0.24    184,172
    test        random          44495     0.33    135,675
    all splits and policies: 9.48 s (36,348 bars/s)
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import tests_path  # noqa: F401
from timing import best_of

from tests.lakes import synthetic_lake
from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import (
    Target,
    baseline_policies,
    decision_rows,
    run_policies,
)
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.train import ppo_train
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.data import load_frame

PRESET = "cpu-smoke"
OLD_WALK_S = 9.48  # the old walk at 01cac53, all splits and policies (see the docstring)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake, market = synthetic_lake(f"{tmp}/lake", months=3)
        ppo_train.main(["--market", market.name, "--preset", PRESET,
                        "--lake-root", f"{tmp}/lake"])
        run_id = next((Path(tmp) / "lake" / "models" / market.name).iterdir()).name
        agent = Agent.load(RunStore(lake, market.name, run_id))
        cfg = agent.config
        settings = cfg.env_settings(WARMUP_COLUMN)
        frames = {split: load_frame(lake, market, cfg.data.months(split),
                                    agent.lineage["feature_preset"], warmup=True)
                  for split in ("validation", "test")}
    rng = np.random.default_rng(cfg.evaluation.random_baseline_seed)
    total = 0.0
    print(f"{'split':11} {'policies':30} {'bars':>8} {'seconds':>8} {'bars/s':>12}")
    for split, data in frames.items():
        start = data.decision_start
        n_rows = len(decision_rows(data.frame, settings, start))
        baselines = baseline_policies(settings)
        randoms = {f"random_{k:03d}": Target(rng.integers(-1, 2, n_rows).astype(np.int8))
                   for k in range(100)}
        groups = {
            "agent + 3 baselines + random": {"agent": agent.policy, **baselines,
                                             "random": randoms["random_000"]},
            "agent": {"agent": agent.policy},
            "3 baselines (one pass)": baselines,
            "agent + 3 baselines + 100 random": {"agent": agent.policy, **baselines,
                                                 **randoms},
        }
        for label, policies in groups.items():
            seconds, runs = best_of(args.repeat, lambda f=data.frame, p=policies, k=start:
                                    run_policies(f, settings, p, k))
            bars = sum(len(run.equity) for run in runs.values())
            if label.endswith("+ random"):
                total += seconds
            print(f"{split:11} {label:30} {bars:8d} {seconds:8.2f} {bars / seconds:12,.0f}")
    print(f"both splits, the old walk's policies: {total:.2f} s; the old walk: {OLD_WALK_S:.2f} "
          f"s ({OLD_WALK_S / total:.1f}x faster)")


if __name__ == "__main__":
    main()
