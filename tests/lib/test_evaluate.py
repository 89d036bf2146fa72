"""Scoring splits with the one engine on small synthetic frames (a day of warm-up, then a few
days scored): warm-up, true buy-and-hold, matched random policies, the oracle and recovery on
a planted edge, the champion on the same window, the test split never deciding, the summary's
JSON and tables, the deflated Sharpe's trials (counted in a real MLflow store), the tearsheet.
No PPO: the agent is a rule of the observations or a target path."""

from __future__ import annotations

import html

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tests.frames import add_numpy_features
from tradecore_lib.env import MarketData
from tradecore_lib.evaluation import stats
from tradecore_lib.evaluation.backtest import Target, plan_walk, walk_config
from tradecore_lib.evaluation.controls import decision_targets, oracle_positions
from tradecore_lib.evaluation.evaluate import (
    ORACLE,
    Rival,
    SplitInputs,
    overall,
    score_split,
)
from tradecore_lib.evaluation.metrics import Trials, comparable_sharpe
from tradecore_lib.evaluation.plots import equity_png
from tradecore_lib.evaluation.promotion import judge
from tradecore_lib.evaluation.scoring import agent_statistics
from tradecore_lib.evaluation.summary import (
    RANDOM_MEDIAN,
    RANDOM_P95,
    EvaluationSummary,
    FoldEvaluation,
    metric_row,
    summary_table,
)
from tradecore_lib.evaluation.tearsheet import tearsheet_html
from tradecore_lib.months import Month, iso_utc
from tradecore_lib.sources.synthetic_generator import DAY_MS, SyntheticOptions, generate_month
from tradecore_lib.tracking import TRIAL_SHARPE_METRIC, Tracker
from tradecore_lib.train.config import PromotionGate, load_train_config
from tradecore_lib.train.record import FoldRun, RunRecord
from tradecore_pipelines.metadata import records_table

SETTINGS = {"preset": "default", "exclude_column": "warmup"}
GATE = PromotionGate(bootstrap_samples=500)
FEBRUARY = Month(2024, 2)
NO_GAPS = {"missing_minute_rate": 0.0, "outages_per_day": 0.0}


def frame(options: SyntheticOptions, market: str, days: int = 4,
          month: Month = FEBRUARY) -> pd.DataFrame:
    """The first ``days`` days of ``month`` of a synthetic market, with numpy features."""
    candles = generate_month(options, market, month).to_pandas()
    cut = pd.Timestamp(month.start_ms + days * DAY_MS, unit="ms", tz="UTC")
    return add_numpy_features(candles[candles["ts"] < cut].reset_index(drop=True), 2)


def split_of(table: pd.DataFrame, month: Month = FEBRUARY, warm_days: int = 1) -> SplitInputs:
    """The frame of ``month`` scored from its day ``warm_days`` on (the days before only warm
    up)."""
    return SplitInputs(frame=table, start_ms=month.start_ms + warm_days * DAY_MS,
                       months=(str(month),))


def momentum(obs: np.ndarray) -> tuple[np.ndarray, None]:
    """Long after a close 5 bp up, short after one 5 bp down, else flat (column 3 of the
    window's last bar is the close's log move; 7 columns per bar, 64 bars, then the account)."""
    move = obs[:, 63 * 7 + 3]
    return np.where(move > 5e-4, 2, np.where(move < -5e-4, 0, 1)), None


@pytest.fixture(scope="module")
def regime():
    return frame(SyntheticOptions(seed=11, **NO_GAPS), "synthetic_btc_usd")


@pytest.fixture(scope="module")
def scored(regime):
    return score_split(split_of(regime), SETTINGS, momentum, gate=GATE, seed=0,
                       trials=Trials(count=4))


def test_the_split_is_scored_from_its_first_bar_after_the_warm_up(regime, scored) -> None:
    result = scored.result
    start = FEBRUARY.start_ms + DAY_MS
    assert result.first_ts == iso_utc(start)
    assert list(result.policies)[:4] == ["agent", "buy_and_hold", "always_long_stops", "flat"]
    # Without the day before, the normalization and the window are still warming up there.
    cold = score_split(SplitInputs(regime[regime["ts"] >= pd.Timestamp(start, unit="ms",
                                                                       tz="UTC")],
                                   start, ("2024-02",)),
                       SETTINGS, Target(0.0), gate=GATE, seed=0, trials=Trials(count=1))
    assert cold.result.first_ts > iso_utc(start)

    # Buy-and-hold is the market: in at the split's first open, out at its last close.
    rows = regime[regime["ts"] >= pd.Timestamp(start, unit="ms", tz="UTC")]
    fee, slip = 0.0005, 1e-4
    expected = rows["close"].iloc[-1] * (1 - fee) * (1 - slip) / (
        rows["open"].iloc[0] * (1 + fee) * (1 + slip)) - 1
    hold = result.policies["buy_and_hold"]
    assert hold.total_return == pytest.approx(expected, abs=1e-9)
    assert hold.trades == 1 and hold.kill_switch_hits == 0 and hold.days == 3
    assert result.market_return == pytest.approx(rows["close"].iloc[-1]
                                                  / rows["open"].iloc[0] - 1)
    flat = result.policies["flat"]
    assert (flat.total_return, flat.trades, flat.daily_sharpe) == (0.0, 0, None)


def test_daily_sharpe_has_a_bootstrap_interval_and_agent_statistics(scored) -> None:
    agent = scored.result.policies["agent"]
    assert agent.trades > 20 and agent.days == 3 and agent.bars == 3 * 1440
    assert agent.daily_sharpe_low <= agent.daily_sharpe <= agent.daily_sharpe_high
    expected = stats.sharpe(scored.tracks["agent"].daily)
    assert agent.daily_sharpe == pytest.approx(expected)
    statistics = scored.result.agent
    population = [comparable_sharpe(s) for s in scored.result.matched_random.daily_sharpes]
    assert statistics.random_percentile == stats.percentile_of(agent.daily_sharpe, population)
    assert statistics.random_p_value == stats.p_value(agent.daily_sharpe, population)
    difference = statistics.sharpe_vs_buy_and_hold
    assert difference.estimate == pytest.approx(
        agent.daily_sharpe - scored.result.policies["buy_and_hold"].daily_sharpe)
    assert difference.samples == GATE.bootstrap_samples and statistics.n_trials == 4
    assert "matched random" in statistics.trial_variance_source


def test_matched_random_policies_trade_like_the_agent(scored) -> None:
    random = scored.result.matched_random
    agent = scored.result.policies["agent"]
    assert random.policies == len(random.daily_sharpes) == GATE.matched_random_policies
    assert random.agent_trades == agent.trades and random.target == 1.0
    trades = [len(t.trade_pnls) for t in scored.random_tracks]
    # The planned trades are the agent's; the engine's rules (re-entry after a stop, the kill
    # switch) move the realized count a little, for them as for the agent.
    assert np.median(trades) == pytest.approx(agent.trades, rel=0.1)
    assert random.median.trades == round(np.median(trades))
    exposure = [t.exposed_bars for t in scored.random_tracks]
    assert np.median(exposure) == pytest.approx(agent.exposure * agent.bars, rel=0.1)
    assert len({t.returns.tobytes() for t in scored.random_tracks}) == random.policies


def test_the_oracle_and_recovery_on_a_planted_edge() -> None:
    options = SyntheticOptions(process="planted_linear", seed=5, **NO_GAPS)
    table = frame(options, "synthetic_edge_usd")
    inputs = split_of(table)
    cfg = walk_config(SETTINGS)
    data = MarketData.from_frame(table, cfg)
    start = int(np.searchsorted(data.ts_ms, inputs.start_ms))
    knows = Target(decision_targets(oracle_positions(data, options),
                                    plan_walk(data, cfg, start).rows))
    result = score_split(inputs, SETTINGS, knows, gate=GATE, seed=0, trials=Trials(count=1),
                         control=options).result
    assert result.policies[ORACLE].total_return > 0.05
    assert result.agent.recovery == pytest.approx(1.0, abs=1e-12)  # it plays the oracle
    flat = score_split(inputs, SETTINGS, Target(0.0), gate=GATE, seed=0,
                       trials=Trials(count=1), control=options).result
    assert flat.agent.recovery == 0.0
    assert ORACLE not in score_split(inputs, SETTINGS, Target(0.0), gate=GATE, seed=0,
                                     trials=Trials(count=1)).result.policies


def test_the_champion_is_scored_on_the_same_window(regime) -> None:
    inputs = split_of(regime)
    result = score_split(inputs, SETTINGS, momentum, gate=GATE, seed=0, trials=Trials(1),
                         rival=Rival(inputs, SETTINGS, momentum)).result
    champion, agent = result.policies["champion"], result.policies["agent"]
    assert champion == agent  # the same policy on the same window
    fold = FoldEvaluation(fold=0, run_id="r", splits={"validation": result})
    (rule,) = [r for r in judge([fold], GATE, eligible=True).rules if r.name == "beats_champion"]
    assert not rule.passed and rule.value == rule.limit == agent.daily_sharpe


@pytest.fixture(scope="module")
def folds(regime):
    """Two folds, validation on the regime frame, test on two different candle sets each."""
    validation = score_split(split_of(regime), SETTINGS, momentum, gate=GATE, seed=0,
                             trials=Trials(1))
    tests = [scored_month(Month(2024, 3), seed) for seed in (21, 22)]
    return validation, tests


def scored_month(month: Month, seed: int):
    table = frame(SyntheticOptions(seed=seed, **NO_GAPS), "synthetic_btc_usd", month=month)
    return score_split(split_of(table, month), SETTINGS, momentum, gate=GATE, seed=0,
                       trials=Trials(1))


def test_replacing_the_test_candles_does_not_change_the_decision(folds) -> None:
    validation, tests = folds
    verdicts = [judge([FoldEvaluation(fold=0, run_id="r", splits={
        "validation": validation.result, "test": test.result})], GATE, eligible=True)
        for test in tests]
    assert verdicts[0] == verdicts[1]
    assert tests[0].result.policies["agent"] != tests[1].result.policies["agent"]


def record(folds: int) -> RunRecord:
    runs = [FoldRun(fold=i, run_id=f"cpu-control-{i:012d}", checkpoint_uri=f"/lake/{i}",
                    config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                    validation_months=("2024-02",), test_months=("2024-03",))
            for i in range(folds)]
    return RunRecord.of("synthetic_btc_usd", load_train_config("cpu-control"), "dagster", runs)


def summary_of(scored_folds: list[dict], overall_splits: dict | None = None
               ) -> EvaluationSummary:
    run = record(len(scored_folds))
    evaluated = tuple(FoldEvaluation(fold=i, run_id=f"r{i}", splits={
        split: s.result for split, s in splits.items()}) for i, splits in enumerate(scored_folds))
    return EvaluationSummary(
        market=run.market, run=run, dagster_run_id="eval", feature_preset="default",
        env=SETTINGS, promotion=GATE, folds=evaluated, overall=overall_splits or {},
        verdict=judge(evaluated, GATE, eligible=True), generated_at="2024-04-01T00:00:00.000Z")


def test_the_summary_round_trips_and_its_tables_are_rounded(folds) -> None:
    validation, (test, _) = folds
    summary = summary_of([{"validation": validation, "test": test}])
    assert EvaluationSummary.from_json(summary.to_json()) == summary
    rows = summary.rows()
    per_split = ["agent", "buy_and_hold", "always_long_stops", "flat", RANDOM_MEDIAN, RANDOM_P95]
    assert [(r["split"], r["policy"]) for r in rows] == \
        [(s, p) for s in ("validation", "test") for p in per_split]
    assert set(rows[0]) == {"split", *metric_row("x", validation.result.policies["flat"])}
    agent = validation.result.policies["agent"]
    assert rows[0]["return_pct"] == round(100 * agent.total_return, 2)
    assert rows[0]["daily_sharpe"] == round(agent.daily_sharpe, 2)
    assert rows[4]["trades"] == validation.result.matched_random.median.trades
    table = records_table(rows)
    assert isinstance(table, dg.TableMetadataValue) and len(table.records) == 12
    assert [c.name for c in table.schema.columns] == list(rows[0])
    assert [r["split"] for r in summary.agent_rows()] == ["validation", "test"]
    text = summary_table(rows).splitlines()
    assert len(text) == 2 + len(rows) and "random (median)" in text[6]


def test_several_folds_chain_into_overall_rows(folds) -> None:
    validation, (march, _) = folds
    tests = [march, scored_month(Month(2024, 4), 23)]
    chained = overall(tests, gate=GATE, seed=0)
    returns = [t.result.policies["agent"].total_return for t in tests]
    assert chained.policies["agent"].total_return == pytest.approx(
        (1 + returns[0]) * (1 + returns[1]) - 1)
    assert chained.policies["agent"].days == 6
    assert chained.matched_random.policies == GATE.matched_random_policies
    assert chained.months == ("2024-03", "2024-04")
    assert overall([validation, validation], gate=GATE, seed=0) is None  # the same days twice
    summary = summary_of([{"validation": validation, "test": test} for test in tests],
                         {"test": chained})
    seen = [(r["fold"], r["split"]) for r in summary.rows()]
    assert seen == [(f, s) for f in ("1", "2") for s in ("validation", "test") for _ in range(6)] \
        + [("all", "test")] * 6
    assert EvaluationSummary.from_json(summary.to_json()) == summary


def test_more_trials_deflate_the_sharpe_ratio(scored) -> None:
    agent, hold = scored.tracks["agent"], scored.tracks["buy_and_hold"]
    sharpes = scored.result.matched_random.daily_sharpes

    def dsr(trials: Trials):
        return agent_statistics(agent, hold, sharpes, trials=trials, bootstrap_samples=200,
                                seed=0)

    one, many = dsr(Trials(count=1)), dsr(Trials(count=200, sharpes=(1.0, -2.0, 0.5)))
    assert one.dsr == pytest.approx(one.psr)  # a single trial was not selected from others
    assert many.trial_sharpe_variance == pytest.approx(np.var([1.0, -2.0, 0.5], ddof=1))
    assert many.trial_variance_source.startswith("MLflow") and many.dsr < one.dsr


def test_the_tracker_counts_every_training_run_of_the_market(tmp_path) -> None:
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracker.experiment_id()
    for market, sharpe in [("m1", 1.5), ("m1", None), ("m1", -0.5), ("m2", 3.0)]:
        run = tracker.client.create_run(experiment, tags={"market": market})
        if sharpe is not None:
            tracker.client.log_metric(run.info.run_id, TRIAL_SHARPE_METRIC, sharpe)
    trials = tracker.training_trials("m1")
    assert trials.count == 3 and sorted(trials.sharpes) == [-0.5, 1.5]
    assert tracker.training_trials("m3") == Trials(count=0)


def test_the_tearsheet_shows_the_gate_the_tables_and_the_charts(folds) -> None:
    validation, (test, _) = folds
    summary = summary_of([{"validation": validation, "test": test}])
    curves = {split: {name: s.runs[name] for name in ("agent", "buy_and_hold", "flat")}
              for split, s in (("validation", validation), ("test", test))}
    chart = equity_png(curves, "title")
    assert chart.startswith(b"\x89PNG")
    page = tearsheet_html(summary, {"validation": validation.tracks, "test": test.tracks},
                          chart)
    assert page.startswith("<!doctype html>") and page.count("data:image/png;base64,") == 2
    for heading in ("Promotion gate", "Comparison", "Agent statistics", "Monthly returns"):
        assert f"<h2>{heading}" in page
    assert html.escape(summary.verdict.explanation()) in page
    assert page.count("<tr") > len(summary.rows())
