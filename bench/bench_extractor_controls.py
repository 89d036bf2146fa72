"""The planted-edge controls with the mlp and the temporal features extractor, in one run:
does the faster network still learn the edge, and how long does training take?

Each trial is bench_gate_controls.py's (the control market's candles for 2024-01..04 under a
fresh seed, its preset ``cpu-control``, the training entry point's ``train()``, then
``evaluate_record``: the oracle, recovery, baselines and the real gate), with the preset's
``ppo.policy`` set to each extractor and nothing else changed (same steps, same seed ``k``;
``--overrides`` adds JSON overrides to both, e.g. other sizes; ``--reference`` adds a third
variant with only its own overrides, e.g. ``'{}'``: the preset as it is). Markets:
``synthetic_lag_usd`` (the planted *temporal* edge: the sign of the log return over bars
5..30 back), ``synthetic_edge_usd`` (the planted linear edge) and ``synthetic_null_usd`` (no
edge: must be refused); the variants of one market and seed run back to back, so the
machine's load hits them alike.

Printed: bench_gate_controls' row per trial, then per market and extractor the recovery (agent
/ oracle cumulative log return, validation and test), promotions, and the mean training wall
time; then temporal against mlp: the difference of mean test recovery and the ratio of
training times. The playing of a temporal agent by the backtest needs the evaluation to fold
the extractor into the first layer (``tradecore_lib.train.extractors.affine_map``).

Run (about 35 s a trial on the shared 2-core machine)::

    nice .venv/bin/python bench/bench_extractor_controls.py [--seeds 3] \
        [--markets synthetic_lag_usd,synthetic_edge_usd,synthetic_null_usd]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from typing import Any

import tests_path  # noqa: F401
from bench_gate_controls import HEADER, MONTHS, Trial, _row, _Silent, _trial, seeded

from tests.lakes import write_synthetic_months
from tradecore_lib.evaluation.evaluate import evaluate_record
from tradecore_lib.lake import Lake
from tradecore_lib.markets import Market, get_market
from tradecore_lib.months import utc_now_ms
from tradecore_lib.train.checkpoints import RunStore
from tradecore_lib.train.config import deep_merge
from tradecore_lib.train.launch import TrainRequest, plan_folds
from tradecore_lib.train.ppo_train import train
from tradecore_lib.train.record import FoldRun, RunRecord

EXTRACTORS: dict[str, dict[str, Any]] = {
    "mlp": {"ppo": {"policy": {"extractor": "mlp"}}},
    "temporal": {"ppo": {"policy": {"extractor": "temporal"}}},
}
MARKETS = ("synthetic_lag_usd", "synthetic_edge_usd", "synthetic_null_usd")


def run_trial(market: Market, k: int, overrides: dict[str, Any]) -> Trial:
    """One control trial (bench_gate_controls.run_trial) with ``overrides`` on the preset."""
    with tempfile.TemporaryDirectory(prefix="bench-extractor-") as root:
        lake = Lake(root)
        write_synthetic_months(lake, market, MONTHS)
        request = TrainRequest(market=market.name, preset=market.train_preset,
                               overrides=deep_merge({"seed": k}, overrides), lake_root=root)
        started = time.perf_counter()
        cfg, folds = plan_folds(lake, market, request, utc_now_ms())
        runs = []
        for fold, fold_request in folds:
            result = train(fold_request, _Silent())
            runs.append(FoldRun.from_store(RunStore(lake, market.name, result["run_id"]),
                                           fold.index))
        train_s = time.perf_counter() - started
        record = RunRecord.of(market.name, cfg, None, runs)
        started = time.perf_counter()
        summary = evaluate_record(lake, market, record, champion=None,
                                  dagster_run_id=None).summary
        return _trial(market.name, k, summary, train_s, time.perf_counter() - started)


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.mean(known) if known else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--markets", default=",".join(MARKETS))
    parser.add_argument("--overrides", default="{}", help="JSON overrides for both extractors")
    parser.add_argument("--reference", default=None,
                        help="JSON overrides of a reference variant run alongside")
    parser.add_argument("--extractors", default="mlp,temporal",
                        help="which extractors to run (comma-separated)")
    args = parser.parse_args()
    common = json.loads(args.overrides)
    variants = {name: deep_merge(common, EXTRACTORS[name]) for name in args.extractors.split(",")}
    if args.reference is not None:
        variants = {"reference": json.loads(args.reference), **variants}
    markets = [m for m in args.markets.split(",") if m]
    for variant, overrides in variants.items():
        print(f"{variant}: {json.dumps(overrides)}")
    print(f"{'extractor':9} {HEADER}", flush=True)
    trials: dict[tuple[str, str], list[Trial]] = {}
    started = time.perf_counter()
    for name in markets:
        for k in range(args.seeds):
            for extractor, overrides in variants.items():
                trial = run_trial(seeded(get_market(name), k), k, overrides)
                trials.setdefault((name, extractor), []).append(trial)
                print(f"{extractor:9} {_row(trial)}", flush=True)
    print(f"\n{sum(len(t) for t in trials.values())} trials in "
          f"{(time.perf_counter() - started) / 60:.1f} min")
    print(f"\n{'market':20} {'extractor':9} {'val rec':>8} {'test rec':>8} {'promoted':>8} "
          f"{'train s':>8}")
    for name in markets:
        rows = {}
        for extractor in variants:
            done = trials[(name, extractor)]
            rows[extractor] = (_mean([t.recovery[0] for t in done]),
                               _mean([t.recovery[1] for t in done]),
                               sum(t.passed for t in done), len(done),
                               statistics.mean(t.train_s for t in done))
            val, test, promoted, n, seconds = rows[extractor]
            print(f"{name:20} {extractor:9} {_fmt(val):>8} {_fmt(test):>8} "
                  f"{promoted:>4}/{n:<3} {seconds:8.1f}")
        if "mlp" in rows and "temporal" in rows:
            mlp, temporal = rows["mlp"], rows["temporal"]
            gain = (None if mlp[1] is None or temporal[1] is None else temporal[1] - mlp[1])
            print(f"{name:20} temporal - mlp test recovery {_fmt(gain)}; training time "
                  f"temporal / mlp {temporal[4] / mlp[4]:.2f}")


if __name__ == "__main__":
    main()
