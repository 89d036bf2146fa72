"""The promotion gate on the control markets (issue 10): false positives on a martingale, the
null agent's exposure, and how much of a planted edge the agent recovers.

Each trial is one control market with its own candles and its own training seed, run through
the library functions the Dagster chain calls (no Dagster): the market's candles for 2024-01..04
with ``source.seed`` = its markets.yaml seed + ``1000 * k`` (``k = 0`` is the market exactly as
configured) through the candle ingest path and the ``control`` features
(:func:`tests.lakes.write_synthetic_months`), the folds of its training preset ``cpu-control``
(:func:`tradecore_lib.train.launch.plan_folds`: train 2024-02, validate 2024-03, test 2024-04),
the training entry point's :func:`tradecore_lib.train.ppo_train.train` with ``seed = k``, and
:func:`tradecore_lib.evaluation.evaluate.evaluate_record` (baselines, 100 matched random
policies, bootstrap intervals, the oracle on planted edges, and the real gate on validation).
Each trial gets a fresh lake, so no champion exists and the DSR counts one trial.

Printed per trial: the verdict and the rules missed, the agent's validation and test net return,
exposure and round trips, kill-switch hits, recovery (agent / oracle cumulative log return on
the same rows and costs) and the seconds spent; then per market the summary:

* ``synthetic_null_usd``: the gate's **false-positive rate** (promotions / seeds, goal <= 5 %,
  with its exact binomial 95 % upper bound) and the agent's **exposure** (share of bars in a
  position, goal < 10 %);
* ``synthetic_edge_usd`` (planted linear) and ``synthetic_lag_usd`` (planted temporal):
  **recovery** on validation and test, and how many trials the gate promoted.

Run (about 30 s per trial on the shared 2-core machine; ~13 min for the defaults)::

    nice .venv/bin/python bench/bench_gate_controls.py [--null-seeds 20] [--edge-seeds 3]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import tests_path  # noqa: F401
from scipy import stats as scipy_stats

from tests.lakes import write_synthetic_months
from tradecore_lib.evaluation.evaluate import evaluate_record
from tradecore_lib.evaluation.summary import EvaluationSummary
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market, get_market
from tradecore_lib.months import Month, months_between, utc_now_ms
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.launch import TrainRequest, plan_folds
from tradecore_lib.train.ppo_train import train
from tradecore_lib.train.record import FoldRun, RunRecord

NULL = "synthetic_null_usd"
PLANTED = ("synthetic_edge_usd", "synthetic_lag_usd")
MONTHS = months_between(Month(2024, 1), Month(2024, 4))  # 2024-01 warms up 2024-02's features
SEED_STRIDE = 1000
FALSE_POSITIVE_GOAL = 0.05
NULL_EXPOSURE_GOAL = 0.10


class _Silent:
    """A training reporter that keeps the bench's output to its table (warnings still show)."""

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        print(f"  warning: {message}", flush=True)

    def result(self, metadata: dict[str, Any]) -> None:
        pass


@dataclass(frozen=True)
class Trial:
    """One control market, one seed: the verdict and the agent's out-of-sample figures."""

    market: str
    seed: int
    passed: bool
    missed: tuple[str, ...]
    returns: tuple[float, float]  # validation, test: net return, fraction
    exposure: tuple[float, float]  # share of bars in a position
    trades: tuple[int, int]
    kills: tuple[int, int]
    recovery: tuple[float | None, float | None]
    train_s: float
    eval_s: float


def seeded(market: Market, k: int) -> Market:
    """``market`` with its synthetic ``source.seed`` moved by ``SEED_STRIDE * k``: candles
    nobody has seen, drawn from the same documented process."""
    source = {**market.source, "seed": int(market.source.get("seed", 0)) + SEED_STRIDE * k}
    return market.model_copy(update={"source": source})


def train_record(root: str, market: Market, k: int) -> tuple[Lake, RunRecord]:
    """The lake at ``root`` with ``market``'s candles and features (:data:`MONTHS`), and the
    record of its preset's folds trained with ``seed = k``, as ``ppo_agent`` makes it."""
    lake = Lake(root)
    write_synthetic_months(lake, market, MONTHS)
    # The entry point reads the market by name from markets.yaml: only the lake's candles
    # (written above from a seeded copy) may differ from the configured market.
    request = TrainRequest(market=market.name, preset=market.train_preset,
                           overrides={"seed": k}, lake_root=root)
    cfg, folds = plan_folds(lake, market, request, utc_now_ms())
    runs = []
    for fold, fold_request in folds:
        result = train(fold_request, _Silent())
        runs.append(FoldRun.from_store(RunStore(lake, market.name, result["run_id"]),
                                       fold.index))
    return lake, RunRecord.of(market.name, cfg, None, runs)


def run_trial(market: Market, k: int) -> Trial:
    """Candles, features, training (seed ``k``) and evaluation of one control market in a
    temporary lake (see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as root:
        started = time.perf_counter()
        lake, record = train_record(root, market, k)
        train_s = time.perf_counter() - started
        started = time.perf_counter()
        summary = evaluate_record(lake, market, record, champion=None,
                                  dagster_run_id=None).summary
        return _trial(market.name, k, summary, train_s, time.perf_counter() - started)


def _trial(market: str, k: int, summary: EvaluationSummary, train_s: float,
           eval_s: float) -> Trial:
    val, test = (summary.newest.splits[split] for split in ("validation", "test"))
    va, ta = val.policies["agent"], test.policies["agent"]
    verdict = summary.verdict
    return Trial(
        market=market, seed=k, passed=verdict.passed,
        missed=tuple(dict.fromkeys(rule.name for rule in verdict.rules if not rule.passed)),
        returns=(va.total_return, ta.total_return), exposure=(va.exposure, ta.exposure),
        trades=(va.trades, ta.trades), kills=(va.kill_switch_hits, ta.kill_switch_hits),
        recovery=(val.agent.recovery, test.agent.recovery), train_s=train_s, eval_s=eval_s,
    )


HEADER = (f"{'market':20} {'seed':>4} {'verdict':8} {'val ret':>9} {'test ret':>9} "
          f"{'val exp':>7} {'test exp':>8} {'trades':>9} {'kills':>5} {'val rec':>7} "
          f"{'test rec':>8} {'train s':>7} {'eval s':>6}  rules missed")


def _row(t: Trial) -> str:
    def rec(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    return (f"{t.market:20} {t.seed:4d} {'PROMOTED' if t.passed else 'refused':8} "
            f"{100 * t.returns[0]:8.2f}% {100 * t.returns[1]:8.2f}% "
            f"{100 * t.exposure[0]:6.1f}% {100 * t.exposure[1]:7.1f}% "
            f"{t.trades[0]:4d}/{t.trades[1]:<4d} {t.kills[0]}/{t.kills[1]:<3} "
            f"{rec(t.recovery[0]):>7} {rec(t.recovery[1]):>8} {t.train_s:7.1f} {t.eval_s:6.1f}"
            f"  {', '.join(t.missed) or '-'}")


def binomial_upper(successes: int, n: int, level: float = 0.95) -> float:
    """Exact (Clopper-Pearson) upper bound of a binomial proportion at ``level`` (two-sided)."""
    if successes >= n:
        return 1.0
    return float(scipy_stats.beta.ppf(1 - (1 - level) / 2, successes + 1, n - successes))


def _null_summary(trials: list[Trial]) -> list[str]:
    n = len(trials)
    promoted = sum(t.passed for t in trials)
    exposures = [e for t in trials for e in t.exposure]
    missed: dict[str, int] = {}
    for t in trials:
        for name in t.missed:
            missed[name] = missed.get(name, 0) + 1
    rate = promoted / n
    exposure = statistics.median(exposures)
    return [
        f"{NULL}: false positives {promoted}/{n} = {100 * rate:.1f} % (exact 95 % upper bound "
        f"{100 * binomial_upper(promoted, n):.1f} %; goal <= {100 * FALSE_POSITIVE_GOAL:.0f} "
        f"%: {'met' if rate <= FALSE_POSITIVE_GOAL else 'NOT met'})",
        f"{NULL}: agent exposure (validation and test) median {100 * exposure:.1f} %, range "
        f"{100 * min(exposures):.1f}..{100 * max(exposures):.1f} % (goal < "
        f"{100 * NULL_EXPOSURE_GOAL:.0f} %: "
        f"{'met' if exposure < NULL_EXPOSURE_GOAL else 'NOT met'}); validation net return "
        f"median {100 * statistics.median(t.returns[0] for t in trials):.2f} %",
        f"{NULL}: rules missed (trials): "
        + ", ".join(f"{name} {count}" for name, count in sorted(missed.items())),
    ]


def _planted_summary(market: str, trials: list[Trial]) -> str:
    def span(values: list[float | None]) -> str:
        known = [v for v in values if v is not None and math.isfinite(v)]
        if not known:
            return "n/a"
        return f"mean {statistics.mean(known):.3f} (min {min(known):.3f}, max {max(known):.3f})"

    promoted = sum(t.passed for t in trials)
    return (f"{market}: recovery validation {span([t.recovery[0] for t in trials])}, test "
            f"{span([t.recovery[1] for t in trials])}; test net return > 0 in "
            f"{sum(t.returns[1] > 0 for t in trials)}/{len(trials)}; promoted {promoted}/"
            f"{len(trials)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--null-seeds", type=int, default=20)
    parser.add_argument("--edge-seeds", type=int, default=3,
                        help="seeds of each planted-edge market")
    args = parser.parse_args()
    plan = [(PLANTED[0], k) for k in range(args.edge_seeds)] \
        + [(PLANTED[1], k) for k in range(args.edge_seeds)] \
        + [(NULL, k) for k in range(args.null_seeds)]
    print(HEADER, flush=True)
    trials: dict[str, list[Trial]] = {}
    started = time.perf_counter()
    for name, k in plan:
        trial = run_trial(seeded(get_market(name), k), k)
        trials.setdefault(name, []).append(trial)
        print(_row(trial), flush=True)
    print(f"\n{len(plan)} trials in {(time.perf_counter() - started) / 60:.1f} min")
    for name in PLANTED:
        if trials.get(name):
            print(_planted_summary(name, trials[name]))
    if trials.get(NULL):
        print("\n".join(_null_summary(trials[NULL])))


if __name__ == "__main__":
    main()
