"""Evaluate a finished run on its validation and test months; write ``eval_summary.json``.

Out of sample by construction: only the preset's validation and test months are loaded
(strictly after the train months, see :class:`~tradecore_lib.train.config.DataWindow`), and
the run's lineage is checked again so a month it trained on is never scored. Observations are
normalized with the statistics frozen at the end of training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tradecore_lib.evaluation.agent import Agent
from tradecore_lib.evaluation.backtest import Trajectory, backtest, baseline_policies
from tradecore_lib.evaluation.metrics import compute_metrics
from tradecore_lib.evaluation.plots import equity_png
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market
from tradecore_lib.train.checkpoints import EQUITY_PNG, EVAL_SUMMARY, RunStore
from tradecore_lib.train.data import load_frame

SPLITS = ("validation", "test")
POLICIES = ("agent", "buy_and_hold", "flat", "random")


class LeakageError(ValueError):
    """An evaluation month is one the run trained on."""


@dataclass(frozen=True)
class Evaluation:
    """The summary document (as written to ``eval_summary.json``) and the chart's PNG bytes."""

    summary: dict[str, Any]
    chart_png: bytes

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per split and policy: the comparison table."""
        rows = []
        for split in SPLITS:
            for policy, metrics in self.summary["splits"][split]["policies"].items():
                rows.append({"split": split, "policy": policy, **metrics})
        return rows


def evaluate_run(lake: Lake, market: Market, run_id: str) -> Evaluation:
    """Backtest run ``run_id`` and the baselines on its validation and test months.

    Writes ``eval_summary.json`` and ``equity.png`` next to the checkpoint.
    """
    store = RunStore(lake, market.name, run_id)
    agent = Agent.load(store)
    cfg = agent.config
    trained = set(agent.lineage["train_months"])
    env_settings = cfg.env_settings(WARMUP_COLUMN)
    splits: dict[str, Any] = {}
    curves: dict[str, dict[str, Trajectory]] = {}
    for split in SPLITS:
        months = cfg.data.months(split)
        overlap = sorted(str(m) for m in months if str(m) in trained)
        if overlap:
            raise LeakageError(
                f"run {run_id} trained on {overlap}, which its config also lists as {split} "
                "months; refusing to score in-sample data"
            )
        data = load_frame(lake, market, months, agent.lineage["feature_preset"])
        policies = {"agent": agent,
                    **baseline_policies(env_settings, cfg.evaluation.random_baseline_seed)}
        curves[split] = {name: backtest(data.frame, env_settings, policy)
                         for name, policy in policies.items()}
        close = data.frame["close"]
        splits[split] = {
            "months": [str(m) for m in months],
            "first_ts": str(data.first_ts),
            "last_ts": str(data.last_ts),
            "market_return": float(close.iloc[-1] / data.frame["open"].iloc[0] - 1.0),
            "partitions": [p.to_dict() for p in data.partitions],
            "policies": {name: compute_metrics(traj) for name, traj in curves[split].items()},
        }
    summary = {
        "market": market.name,
        "run_id": run_id,
        "checkpoint_uri": store.uri(),
        "preset": cfg.name,
        "feature_preset": agent.lineage["feature_preset"],
        "train_months": sorted(trained),
        "env": env_settings,
        "random_baseline_seed": cfg.evaluation.random_baseline_seed,
        "promotion": cfg.promotion.model_dump(mode="json"),
        "splits": splits,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    chart = equity_png(curves, f"{market.name} run {run_id}: agent vs baselines")
    store.write_json(EVAL_SUMMARY, summary)
    store.write_bytes(EQUITY_PNG, chart)
    return Evaluation(summary, chart)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """The comparison as a fixed-width text table (for logs and the demo)."""
    header = (f"{'split':10} {'policy':13} {'return':>8} {'sharpe':>8} {'sortino':>8} "
              f"{'max_dd':>7} {'turnover':>9} {'fees':>9} {'trades':>7} {'win':>6} {'expo':>6}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['split']:10} {r['policy']:13} {100 * r['total_return']:7.2f}% "
            f"{r['sharpe']:8.2f} {_num(r['sortino']):>8} {100 * r['max_drawdown']:6.2f}% "
            f"{r['turnover']:9.1f} {r['fees']:9.2f} {r['trades']:7d} "
            f"{_pct(r['win_rate']):>6} {100 * r['exposure']:5.1f}%"
        )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.0f}%"
