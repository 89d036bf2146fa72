"""Evaluation speed on the demo's run: backtest bars/s of the neural policy and of the
constant-action baselines, and the time of the whole evaluation (issue 10; goal < 10 s).

The run is the demo's promoted one: ``synthetic_edge_usd`` with its preset ``cpu-control``
(candles 2024-01..04, features, one fold trained on 2024-02 through the training entry point's
:func:`~tradecore_lib.train.ppo_train.train`, as in ``bench_gate_controls.py``), validated on
2024-03 and tested on 2024-04, each split read with the month before it as warm-up. Printed
(best of ``--repeat``; the machine is shared and noisy):

* per split, the walks of :func:`~tradecore_lib.evaluation.backtest.run_policies`: the agent
  alone (its MLP evaluated inside the kernel, bar by bar), the three constant baselines
  (true buy-and-hold, always_long_stops, flat: one vectorized kernel pass), and the split's
  whole static pass (the baselines, the oracle and the 100 matched random policies), with
  policy-bars/s;
* per split, :func:`~tradecore_lib.evaluation.evaluate.score_split`: those walks plus every
  policy's metrics with bootstrap intervals, the matched random population, PSR and DSR, the
  paired bootstrap bound against buy-and-hold and recovery;
* :func:`~tradecore_lib.evaluation.evaluate.evaluate_record`, the whole evaluation the demo's
  ``evaluation`` asset runs: both splits read from the lake, scored, judged, the chart, the
  tearsheet and ``eval_summary.json`` written.

Run: ``nice .venv/bin/python bench/bench_evaluation.py [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np
import tests_path  # noqa: F401
from bench_gate_controls import train_record
from timing import best_of

from tradecore_lib.env import MarketData
from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import (
    Target,
    baseline_policies,
    plan_walk,
    run_policies,
    walk_config,
)
from tradecore_lib.evaluation.controls import decision_targets, oracle_positions
from tradecore_lib.evaluation.evaluate import (
    SplitInputs,
    control_options,
    evaluate_record,
    load_split,
    score_split,
)
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.evaluation.scoring import matched_random_targets
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import SyntheticOptions
from tradecore_lib.train.checkpoints import RunStore

MARKET = "synthetic_edge_usd"
GOAL_S = 10.0


def time_split(split: str, inputs: SplitInputs, agent: Agent, control: SyntheticOptions,
               repeat: int) -> None:
    """Print the walks and the scoring of one split (see the module docstring)."""
    settings = agent.config.env_settings(WARMUP_COLUMN)
    gate = agent.config.promotion
    seed = agent.config.evaluation.random_baseline_seed
    cfg = walk_config(settings)
    data = MarketData.from_frame(inputs.frame, cfg)
    start = int(np.searchsorted(data.ts_ms, inputs.start_ms))
    rows = plan_walk(data, cfg, start).rows
    walked = run_policies(data, cfg, {"agent": agent.policy}, start)["agent"]
    randoms, _ = matched_random_targets(walked, gate.matched_random_policies, seed)
    static = {**baseline_policies(cfg),
              "oracle": Target(decision_targets(oracle_positions(data, control), rows)),
              **{f"random_{i:03d}": Target(path) for i, path in enumerate(randoms)}}
    walks = {
        "agent (MLP in the kernel)": {"agent": agent.policy},
        "3 constant baselines (one pass)": baseline_policies(cfg),
        f"baselines + oracle + {len(randoms)} random (one pass)": static,
    }
    for label, policies in walks.items():
        seconds, _ = best_of(repeat, lambda p=policies: run_policies(data, cfg, p, start))
        bars = len(rows) * len(policies)
        print(f"{split:11} {label:44} {len(rows):7d} {seconds:8.3f} {bars / seconds:14,.0f}")
    seconds, _ = best_of(repeat, lambda: score_split(
        inputs, settings, agent.policy, gate=gate, seed=seed, trials=Trials(count=1),
        control=control))
    print(f"{split:11} {'score_split (walks + every statistic)':44} {len(rows):7d} "
          f"{seconds:8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    market = get_market(MARKET)
    control = control_options(market)
    assert control is not None  # a planted-edge market: the oracle is scored too
    with tempfile.TemporaryDirectory(prefix="bench-evaluation-") as root:
        lake, record = train_record(root, market, 0)
        agent = Agent.load(RunStore(lake, market.name, record.run_id))
        gate = record.promotion
        fold = record.newest
        print(f"{MARKET}, run {record.run_id}: train {'+'.join(fold.train_months)}, "
              f"{gate.matched_random_policies} matched random policies, "
              f"{gate.bootstrap_samples} bootstrap samples\n")
        print(f"{'split':11} {'what':44} {'bars':>7} {'seconds':>8} {'policy-bars/s':>14}")
        for split in ("validation", "test"):
            months = [Month.parse(m) for m in getattr(fold, f"{split}_months")]
            inputs = load_split(lake, market, agent.lineage["feature_preset"], months)
            time_split(split, inputs, agent, control, args.repeat)
        seconds, _ = best_of(args.repeat, lambda: evaluate_record(
            lake, market, record, champion=None, dagster_run_id=None))
    print(f"\nthe demo's whole evaluation (evaluate_record: read, both splits, all baselines, "
          f"{gate.matched_random_policies} matched random, gate, chart, tearsheet): "
          f"{seconds:.2f} s (goal < {GOAL_S:.0f} s: {'met' if seconds < GOAL_S else 'NOT met'})")


if __name__ == "__main__":
    main()
