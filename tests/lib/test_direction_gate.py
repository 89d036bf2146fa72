"""Direction evaluation, baselines and gate on simulated markets (no model: the forecasts are
built, so the truth is known).

* The planted-edge market: each minute's return is a drift ``mu`` plus noise, ``mu`` an AR(1)
  the forecaster knows at bar ``t``; its forecast is the exact probability that the next 15
  minutes' return is positive given ``mu_t`` (calibrated by construction), and the labels come
  from the same process. It beats every baseline (persistence and a logistic regression read
  the same trend only through past returns) and trades at a profit after costs: promoted.
* The null: a random walk (``mu = 0``) with forecasts that are noise around 0.5: refused.
* The test split never decides: corrupting it leaves the verdict as it was.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.signal import lfilter
from scipy.stats import norm

from tradecore_lib.direction.baselines import (
    BASELINES,
    LOGISTIC,
    MAJORITY,
    MODEL,
    PERSISTENCE,
    BaselineError,
    fit_baselines,
)
from tradecore_lib.direction.config import DirectionPromotion, EconomicSettings
from tradecore_lib.direction.evaluate import (
    DirectionChampion,
    DirectionEvaluationError,
    DirectionEvaluationSummary,
    bootstrap_mean,
    economic_settings,
    evaluate_direction,
    mean_block_length,
    position_targets,
    walk_targets,
)
from tradecore_lib.direction.gate import judge_direction
from tradecore_lib.direction.labels import label_frame, persistence, ts_millis
from tradecore_lib.evaluation.evaluate import SplitInputs
from tradecore_lib.evaluation.promotion import AGENT, BUY_AND_HOLD, CHAMPION_POLICY
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.train.config import PromotionGate

DAY_MS = 86_400_000
MINUTE_MS = 60_000
START_MS = 1_706_745_600_000  # 2024-02-01 00:00 UTC
H = 15
DEAD_ZONE = 2e-4
SIGMA = 8e-4  # per-minute noise of the log return (8 bp)
PHI = 0.99  # persistence of the drift per minute (half-life ~70 minutes)
DAYS = {"train": (0, 10), "validation": (10, 20), "test": (20, 30)}
FEATURES = ["ret_15", "ret_60"]
CANDLE_INPUTS = ["log_return"]
PROMOTION = DirectionPromotion(bootstrap_samples=400,
                               economic=PromotionGate(bootstrap_samples=300))
ECONOMIC = EconomicSettings()  # long above 0.55, short below 0.45, the default env


def utc(ms: int) -> pd.Timestamp:
    return pd.Timestamp(ms, unit="ms", tz="UTC")


def simulate(seed: int, edge: float) -> tuple[pd.DataFrame, np.ndarray]:
    """30 days of one-minute candles whose log return at bar k is ``mu[k] + SIGMA * e[k]``,
    ``mu`` an AR(1) with stationary standard deviation ``edge * SIGMA``; and the exact
    ``P(ln(close[t+H] / close[t]) > 0 | mu[t])`` of every bar (0.5 everywhere when edge = 0).
    """
    rng = np.random.default_rng(seed)
    n = 30 * 1440
    s_mu = edge * SIGMA * np.sqrt(1 - PHI ** 2)
    mu = lfilter([1.0], [1.0, -PHI], rng.standard_normal(n) * s_mu)
    close = 100.0 * np.exp(np.cumsum(mu + rng.standard_normal(n) * SIGMA))
    open_ = np.r_[100.0, close[:-1]]
    wick = np.abs(rng.normal(0.0, SIGMA / 2, (2, n))) * close
    frame = pd.DataFrame({
        "ts": pd.to_datetime(START_MS + np.arange(n) * MINUTE_MS, unit="ms", utc=True),
        "open": open_, "high": np.maximum(open_, close) + wick[0],
        "low": np.minimum(open_, close) - wick[1], "close": close,
        "volume": rng.gamma(2.0, 2.0, n)})
    log_close = pd.Series(np.log(close))
    frame["ret_15"] = log_close.diff(15).to_numpy(np.float32)
    frame["ret_60"] = log_close.diff(60).to_numpy(np.float32)
    frame[WARMUP_COLUMN] = frame[FEATURES].isna().any(axis=1)
    # sum_{k=1..H} mu[t+k] = mu[t] sum phi^k + innovations; plus H minutes of noise
    k = np.arange(1, H + 1)
    drift = (PHI ** k).sum()
    spread = s_mu ** 2 * (((1 - PHI ** (H - k + 1)) / (1 - PHI)) ** 2).sum() + H * SIGMA ** 2
    return frame, norm.cdf(drift * mu / np.sqrt(spread))


def window(frame: pd.DataFrame, split: str, warm_days: int = 0) -> pd.DataFrame:
    first, last = DAYS[split]
    rows = (frame["ts"] >= utc(START_MS + (first - warm_days) * DAY_MS)) & \
        (frame["ts"] < utc(START_MS + last * DAY_MS))
    return frame[rows].reset_index(drop=True)


def predictions(frame: pd.DataFrame, p_up: np.ndarray, market: str = "sim_btc_usd",
                splits: tuple[str, ...] = ("validation", "test")) -> pd.DataFrame:
    """DirectionPredictions of ``p_up`` at every non-warm-up bar of ``splits``, labelled by
    the one rule (no label reads past its split's end)."""
    parts = []
    for split in splits:
        end_ms = START_MS + DAYS[split][1] * DAY_MS
        forward, label = label_frame(frame, H, DEAD_ZONE, end_ms)
        ts = ts_millis(frame["ts"])
        keep = (ts >= START_MS + DAYS[split][0] * DAY_MS) & (ts < end_ms) & \
            ~frame[WARMUP_COLUMN].to_numpy()
        # F's predict() writes ts at millisecond resolution; the frames are nanosecond
        parts.append(pd.DataFrame({"ts": frame["ts"][keep].astype("datetime64[ms, UTC]"),
                                   "market": market,
                                   "p_up": p_up[keep], "label": label[keep],
                                   "forward_return": forward[keep], "split": split}))
    return pd.concat(parts, ignore_index=True)


class Market:
    """A simulated market with its forecasts, baselines and split frames."""

    def __init__(self, seed: int, edge: float, forecast: np.ndarray | None = None) -> None:
        self.frame, truth = simulate(seed, edge)
        self.p_up = truth if forecast is None else forecast
        self.predictions = predictions(self.frame, self.p_up)
        self.baselines = fit_baselines(
            window(self.frame, "train"), feature_columns=FEATURES, candle_inputs=CANDLE_INPUTS,
            horizon_minutes=H, dead_zone=DEAD_ZONE, train_start_ms=None,
            train_end_ms=START_MS + DAYS["train"][1] * DAY_MS)
        # each split walks from its first minute, the day before warming the normalization
        self.splits = {split: SplitInputs(frame=window(self.frame, split, warm_days=1),
                                          start_ms=START_MS + DAYS[split][0] * DAY_MS,
                                          months=("2024-02",))
                       for split in ("validation", "test")}

    def evaluate(self, model: pd.DataFrame | None = None, **kwargs):
        model = self.predictions if model is None else model
        return evaluate_direction(
            model, self.baselines.predict(self.frame, model), market="sim_btc_usd",
            splits=self.splits, economic=ECONOMIC, promotion=kwargs.pop("promotion", PROMOTION),
            horizon_minutes=H, run_id="run-1", baseline_fit=self.baselines.fit, **kwargs)


@pytest.fixture(scope="module")
def planted() -> Market:
    return Market(seed=2, edge=0.25)


@pytest.fixture(scope="module")
def planted_evaluation(planted: Market):
    return planted.evaluate()


@pytest.fixture(scope="module")
def null() -> Market:
    noise = np.random.default_rng(5).normal(0.5, 0.05, 30 * 1440).clip(0.01, 0.99)
    return Market(seed=4, edge=0.0, forecast=noise)


# -- the controls -------------------------------------------------------------------------------
def test_planted_edge_beats_every_baseline_and_is_promoted(planted_evaluation) -> None:
    summary = planted_evaluation.summary
    verdict = summary.verdict
    assert verdict.passed, verdict.explanation()
    names = [rule.name for rule in verdict.rules]
    assert names[:2] == ["accuracy_vs_best_baseline", "calibration_error"]
    assert {"net_return", "sharpe_vs_buy_and_hold", "random_percentile",
            "kill_switch_hits", "guardrail_breaches"} <= set(names)
    assert "min_accuracy" not in names  # off by default
    assert all(rule.split == "validation" for rule in verdict.rules)
    for split in ("validation", "test"):
        s = summary.splits[split]
        model = s.models[MODEL].scores
        for name in BASELINES:
            assert model.accuracy > s.models[name].scores.accuracy, (split, name)
        assert s.accuracy_vs_best_baseline.low > 0.0
        assert s.accuracy_vs_best_baseline.baseline == max(
            BASELINES, key=lambda n: s.models[n].scores.accuracy)
        # the same samples for every forecaster
        assert {f.scores.samples for f in s.models.values()} == {model.samples}
        assert model.ece <= 0.05
        economic = s.economic.policies
        assert economic[AGENT].total_return > 0.0 > -economic[AGENT].fees
        assert {BUY_AND_HOLD, "flat", "always_long_stops", *BASELINES} <= set(economic)
        assert s.traded_predictions + s.untraded_predictions == s.samples


def test_null_control_is_refused(null: Market) -> None:
    summary = null.evaluate().summary
    verdict = summary.verdict
    assert not verdict.passed
    rules = {rule.name: rule for rule in verdict.rules}
    assert not rules["accuracy_vs_best_baseline"].passed
    assert not rules["net_return"].passed  # fees on noise
    validation = summary.splits["validation"]
    assert abs(validation.models[MODEL].scores.accuracy - 0.5) < 0.03
    assert validation.models[MAJORITY].scores.balanced_accuracy == 0.5


def test_min_accuracy_floor_is_judged_only_when_set(planted: Market, planted_evaluation) -> None:
    validation = planted_evaluation.summary.splits["validation"]
    accuracy = validation.models[MODEL].scores.accuracy
    for floor, passes in ((accuracy - 0.01, True), (accuracy + 0.01, False)):
        gate = PROMOTION.model_copy(update={"min_accuracy": floor})
        verdict = judge_direction({"validation": validation}, gate, eligible=True)
        rule = next(r for r in verdict.rules if r.name == "min_accuracy")
        assert rule.passed is passes and verdict.passed is passes
        assert rule.value == accuracy and rule.limit == floor


def test_calibration_and_margin_limits_refuse(planted_evaluation) -> None:
    validation = planted_evaluation.summary.splits["validation"]
    ece = validation.models[MODEL].scores.ece
    strict = PROMOTION.model_copy(update={"max_ece": ece / 2})
    verdict = judge_direction({"validation": validation}, strict, eligible=True)
    assert [r.name for r in verdict.rules if not r.passed] == ["calibration_error"]
    low = validation.accuracy_vs_best_baseline.low
    margin = PROMOTION.model_copy(update={"accuracy_margin": low + 0.001})
    verdict = judge_direction({"validation": validation}, margin, eligible=True)
    assert [r.name for r in verdict.rules if not r.passed] == ["accuracy_vs_best_baseline"]
    smoke = judge_direction({"validation": validation}, PROMOTION, eligible=False,
                            eligibility="smoke preset")
    assert not smoke.passed and all(r.passed for r in smoke.rules)
    assert "smoke preset" in smoke.explanation()


# -- the test split never decides ---------------------------------------------------------------
def test_the_test_split_never_changes_the_verdict(planted: Market, planted_evaluation) -> None:
    summary = planted_evaluation.summary
    # 1. the gate needs nothing but validation
    alone = judge_direction({"validation": summary.splits["validation"]}, PROMOTION,
                            eligible=True, run_id="run-1")
    assert alone == summary.verdict
    # 2. test forecasts turned into their opposite and its labels scrambled: the test scores
    # collapse, the verdict does not move
    corrupted = planted.predictions.copy()
    test = corrupted["split"] == "test"
    corrupted.loc[test, "p_up"] = 1.0 - corrupted.loc[test, "p_up"]
    again = planted.evaluate(corrupted).summary
    assert again.splits["test"].models[MODEL].scores.accuracy < 0.5 < \
        summary.splits["test"].models[MODEL].scores.accuracy
    assert again.splits["test"].economic.policies[AGENT].total_return < 0.0
    assert again.verdict == summary.verdict
    assert again.splits["validation"] == summary.splits["validation"]


def test_no_validation_is_an_error_and_test_is_optional(planted: Market) -> None:
    only_test = planted.predictions[planted.predictions["split"] == "test"]
    with pytest.raises(DirectionEvaluationError, match="no validation prediction"):
        planted.evaluate(only_test)
    with pytest.raises(DirectionEvaluationError, match="give some of"):
        evaluate_direction(planted.predictions, {}, market="sim_btc_usd", splits=planted.splits,
                           economic=ECONOMIC, promotion=PROMOTION, horizon_minutes=H)


# -- the champion -------------------------------------------------------------------------------
def test_a_challenger_equal_to_the_champion_is_refused(planted: Market) -> None:
    validation = planted.predictions[planted.predictions["split"] == "validation"]
    champion = DirectionChampion(model_name="tradecore-direction-sim_btc_usd",
                                 model_version="3", run_id="run-0", predictions=validation)
    summary = planted.evaluate(validation, champion=champion).summary
    assert set(summary.splits) == {"validation"}
    split = summary.splits["validation"]
    assert split.models["champion"] == split.models[MODEL]
    assert CHAMPION_POLICY in split.economic.policies
    rules = {r.name: r for r in summary.verdict.rules}
    assert not rules["beats_champion"].passed  # same Sharpe: not above
    assert [name for name, r in rules.items() if not r.passed] == ["beats_champion"]
    assert summary.champion.scored and summary.champion.run_id == "run-0"


# -- the summary --------------------------------------------------------------------------------
def test_summary_round_trips_and_renders(planted_evaluation) -> None:
    summary = planted_evaluation.summary
    assert DirectionEvaluationSummary.from_json(summary.to_json()) == summary
    json.loads(summary.to_json())
    rows = summary.rows()
    assert {(r["split"], r["forecaster"]) for r in rows} == {
        (s, f) for s in ("validation", "test") for f in (MODEL, *BASELINES)}
    assert all(isinstance(r["accuracy"], float) for r in rows)
    confusion = summary.confusion_rows()
    assert [r["label"] for r in confusion] == ["down", "up", "down", "up"]
    validation = summary.splits["validation"].models[MODEL].scores
    assert sum(r["predicted_up"] + r["predicted_down"] for r in confusion[:2]) == \
        validation.samples
    assert len(summary.reliability_rows()) == 2 * PROMOTION.ece_bins
    policies = [r["policy"] for r in summary.economic_rows() if r["split"] == "validation"]
    assert policies[:4] == [AGENT, BUY_AND_HOLD, "always_long_stops", "flat"]
    assert [r["baseline"] for r in summary.difference_rows()] == [
        summary.splits[s].accuracy_vs_best_baseline.baseline for s in ("validation", "test")]
    for png in (planted_evaluation.reliability_png, planted_evaluation.equity_png):
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


# -- the baselines ------------------------------------------------------------------------------
def test_baselines_are_fitted_on_train_only(planted: Market) -> None:
    fit = planted.baselines.fit
    train = window(planted.frame, "train")
    end_ms = START_MS + DAYS["train"][1] * DAY_MS
    _, label = label_frame(train, H, DEAD_ZONE, end_ms)
    usable = ~np.isnan(label) & ~train[WARMUP_COLUMN].to_numpy()
    usable &= np.isfinite(train[FEATURES].to_numpy()).all(axis=1)
    usable &= np.r_[False, np.ones(len(train) - 1, dtype=bool)]  # log_return needs a bar before
    assert fit.train_samples == int(usable.sum())
    assert fit.up_rate == pytest.approx(label[usable].mean())
    # the whole series given, cut at the train end: the very same fit
    whole = fit_baselines(planted.frame, feature_columns=FEATURES, candle_inputs=CANDLE_INPUTS,
                          horizon_minutes=H, dead_zone=DEAD_ZONE, train_start_ms=None,
                          train_end_ms=end_ms)
    assert whole.fit == fit
    scaler = planted.baselines.logistic[0]
    assert scaler.mean_[0] == pytest.approx(train.loc[usable, "ret_15"].mean(), rel=1e-5)


def test_baseline_forecasts(planted: Market) -> None:
    samples = planted.predictions
    forecasts = planted.baselines.predict(planted.frame, samples)
    assert list(forecasts) == list(BASELINES)
    fit = planted.baselines.fit
    for frame in forecasts.values():
        assert frame[["ts", "label", "split"]].equals(samples[["ts", "label", "split"]])
        assert ((frame["p_up"] > 0) & (frame["p_up"] < 1)).all()
    assert (forecasts[MAJORITY]["p_up"] == fit.up_rate).all()
    sign = persistence(ts_millis(planted.frame["ts"]), planted.frame["close"].to_numpy(), H)
    sign = sign[np.searchsorted(ts_millis(planted.frame["ts"]), ts_millis(samples["ts"]))]
    p = forecasts[PERSISTENCE]["p_up"].to_numpy()
    q = fit.persistence_confidence
    assert q == pytest.approx(fit.persistence_hit_rate) and q > 0.5  # a trending market
    assert np.array_equal(p[sign == 1.0], np.full(int((sign == 1.0).sum()), q))
    assert np.allclose(p[sign == 0.0], 1 - q)
    assert (p[np.isnan(sign)] == fit.up_rate).all()
    assert forecasts[LOGISTIC]["p_up"].std() > 0.05
    with pytest.raises(BaselineError, match="no row in the frame"):
        planted.baselines.predict(window(planted.frame, "train"), samples)


def test_baselines_need_both_classes() -> None:
    frame, _ = simulate(1, 0.0)
    rising = frame.assign(close=100.0 * np.exp(np.arange(len(frame)) * 1e-3))
    rising["open"] = np.r_[100.0, rising["close"].to_numpy()[:-1]]
    rising["high"] = rising[["open", "close"]].max(axis=1)
    rising["low"] = rising[["open", "close"]].min(axis=1)
    with pytest.raises(BaselineError, match="every one of the .* training labels is up"):
        fit_baselines(window(rising, "train"), feature_columns=FEATURES,
                      candle_inputs=CANDLE_INPUTS, horizon_minutes=H, dead_zone=DEAD_ZONE,
                      train_start_ms=None, train_end_ms=START_MS + 10 * DAY_MS)


def test_misaligned_baselines_are_refused(planted: Market) -> None:
    model = planted.predictions
    baselines = planted.baselines.predict(planted.frame, model)
    baselines[LOGISTIC] = baselines[LOGISTIC].iloc[1:]
    with pytest.raises(DirectionEvaluationError, match="baseline 'logistic'.*not the model's"):
        evaluate_direction(model, baselines, market="sim_btc_usd", splits=planted.splits,
                           economic=ECONOMIC, promotion=PROMOTION, horizon_minutes=H)


# -- pieces -------------------------------------------------------------------------------------
def test_position_rule_and_walk_mapping() -> None:
    p = np.array([0.56, 0.55, 0.5, 0.45, 0.44, 0.9])
    assert position_targets(p, 0.55).tolist() == [1.0, 0.0, 0.0, 0.0, -1.0, 1.0]
    with pytest.raises(DirectionEvaluationError, match=r"\(0.5, 1\)"):
        position_targets(p, 0.5)
    path, traded = walk_targets(np.array([10, 20, 40]), np.array([1.0, -1.0, 1.0]),
                                np.array([5, 10, 20, 30, 40, 50]))
    assert path.tolist() == [0.0, 1.0, -1.0, 0.0, 1.0, 0.0] and traded == 3
    assert walk_targets(np.array([], dtype=np.int64), np.array([]), np.array([1, 2]))[1] == 0


def test_bootstrap_of_a_mean() -> None:
    constant = bootstrap_mean(np.full(500, 0.25), samples=200, mean_block=10, seed=1)
    assert constant.low == constant.high == constant.estimate == 0.25
    values = np.random.default_rng(0).normal(0.1, 1.0, 3000)
    a = bootstrap_mean(values, samples=300, mean_block=20, seed=7)
    assert a == bootstrap_mean(values, samples=300, mean_block=20, seed=7)  # seeded
    assert a.low < values.mean() < a.high
    # a standard error of about 1 / sqrt(3000) = 0.018: a 95 % interval near +-0.036
    assert 0.02 < (a.high - a.low) / 2 < 0.06
    assert mean_block_length(1_000_000, 15) == pytest.approx(100.0)  # n ** (1/3) wins
    assert mean_block_length(10_000, 15) == 60.0  # four horizons win


def test_the_economic_check_pays_the_markets_fees(planted: Market, planted_evaluation) -> None:
    costly = planted.evaluate(market_costs={"maker_fee": 0.002, "taker_fee": 0.003})
    for split in ("validation", "test"):
        cheap = planted_evaluation.summary.splits[split].economic.policies[AGENT]
        dear = costly.summary.splits[split].economic.policies[AGENT]
        # the same rule at the venue's prices: each round trip pays more (these fees hit the
        # kill switch, so the totals are not comparable), and the walk ends poorer
        assert dear.fees / dear.trades > 2 * cheap.fees / cheap.trades
        assert dear.total_return < cheap.total_return
    # the preset's own economic overrides win over the market's, as a request's do in training
    settings = economic_settings(
        ECONOMIC.model_copy(update={"env_overrides": {"taker_fee": 0.0001}}), None,
        {"taker_fee": 0.003, "borrow_rate_annual": 0.2})
    assert settings == {"preset": ECONOMIC.env_preset, "taker_fee": 0.0001,
                        "borrow_rate_annual": 0.2}
