"""The champion monitor's scoring and verdict, and the retraining rule.

Scoring runs the one engine on a synthetic lake (candles and features written as the assets
write them); the champion is a constant-long policy, so no PPO is trained here. The
retraining rule is a pure function of what the sensor reads."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.lakes import write_synthetic_months
from tradecore_lib.evaluation.backtest import Target
from tradecore_lib.evaluation.evaluate import load_split, score_split
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.evaluation.scoring import compute_metrics
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.monitoring import (
    DAILY_SHARPE,
    HOUR_MS,
    MONTHLY_RETURN,
    MonitoredModel,
    MonitorError,
    MonitorPolicy,
    MonitorRecord,
    MonitorScorer,
    RetrainPolicy,
    ValidationReference,
    decide_retraining,
    monthly_rate,
)
from tradecore_lib.months import Month, months_between
from tradecore_lib.train.config import PromotionGate, load_train_config

MARKET = get_market("synthetic_btc_usd")
JAN, FEB, MAR, APR, MAY, JUN = (Month(2024, m) for m in range(1, 7))
NOW = Month(2024, 8).start_ms + 10 * 24 * HOUR_MS
GATE = PromotionGate(bootstrap_samples=200, matched_random_policies=100)
SETTINGS = {"preset": "default", "exclude_column": WARMUP_COLUMN}


def months(first: Month, last: Month) -> list[Month]:
    return months_between(first, last)


# ------------------------------------------------------------------------- retraining rule
@pytest.fixture(scope="module")
def rolling():
    return load_train_config("cpu-control")  # windows 1 + 1 + 1, anchored at the latest month


def decide(cfg, available, **kwargs):
    args = {"trained_through": None, "bars": {}, "last_request_ms": None, "now_ms": NOW,
            "policy": RetrainPolicy(new_months=3)}
    args.update(kwargs)
    return decide_retraining(args.pop("policy"), cfg, available, **args)


def test_the_first_training_waits_for_complete_windows(rolling):
    for available in ([], [JAN], [JAN, FEB]):
        decision = decide(rolling, available)
        assert not decision.due
        assert decision.reason.startswith("the first windows are not complete")
    decision = decide(rolling, [JAN, FEB, MAR])
    assert decision.due and decision.trigger == "first_training"
    assert decision.data.key == "cpu-control:2024-01..2024-03"
    assert decision.data.last == MAR and decision.data.rolling
    # the windows roll to the newest month with features
    assert decide(rolling, [JAN, FEB, MAR, APR]).data.key == "cpu-control:2024-02..2024-04"


def test_retraining_waits_for_n_new_months_after_the_last_training(rolling):
    decision = decide(rolling, months(JAN, MAY), trained_through=MAR)
    assert not decision.due and decision.new_months == (APR, MAY)
    assert "2 new complete month(s) (2024-04..2024-05" in decision.reason
    assert "needs 3 months" in decision.reason
    decision = decide(rolling, months(JAN, JUN), trained_through=MAR)
    assert decision.due and decision.trigger == "new_months"
    assert decision.data.key == "cpu-control:2024-04..2024-06"
    # nothing new at all
    assert "no complete month with features after 2024-06" in decide(
        rolling, months(JAN, JUN), trained_through=JUN).reason


def test_new_bars_are_an_alternative_threshold(rolling):
    policy = RetrainPolicy(new_months=None, new_bars=100)
    few = decide(rolling, months(JAN, APR), trained_through=MAR, policy=policy,
                 bars={APR: 60, MAR: 10_000})
    assert not few.due and "60 bars" in few.reason and "needs 100 bars" in few.reason
    enough = decide(rolling, months(JAN, MAY), trained_through=MAR, policy=policy,
                    bars={APR: 60, MAY: 50})
    assert enough.due and enough.trigger == "new_bars" and "110 new bars" in enough.reason
    with pytest.raises(ValidationError, match="set new_months or new_bars"):
        RetrainPolicy(new_months=None, new_bars=None)


def test_the_cooldown_holds_a_due_retraining(rolling):
    policy = RetrainPolicy(new_months=1, cooldown_hours=24)
    held = decide(rolling, months(JAN, APR), trained_through=MAR, policy=policy,
                  last_request_ms=NOW - HOUR_MS)
    assert not held.due and "cooldown of 24 h" in held.reason
    passed = decide(rolling, months(JAN, APR), trained_through=MAR, policy=policy,
                    last_request_ms=NOW - 25 * HOUR_MS)
    assert passed.due


def test_a_monitor_warning_retrains_early_but_only_on_new_data(rolling):
    early = decide(rolling, months(JAN, APR), trained_through=MAR, warning="2024-04: behind")
    assert early.due and early.trigger == "monitor_warning"
    assert "champion monitor warning (2024-04: behind)" in early.reason
    assert not decide(rolling, months(JAN, MAR), trained_through=MAR, warning="behind").due
    off = RetrainPolicy(new_months=3, on_monitor_warning=False)
    assert not decide(rolling, months(JAN, APR), trained_through=MAR, warning="behind",
                      policy=off).due


def test_fixed_month_presets_are_trained_once():
    fixed = load_train_config("cpu-smoke")  # 2024-01 / 02 / 03, fixed
    first = decide(fixed, months(JAN, MAR))
    assert first.due and first.data.key == "cpu-smoke:2024-01..2024-03"
    assert not first.data.rolling
    again = decide(fixed, months(JAN, JUN), trained_through=MAR)
    assert not again.due and "do not roll forward" in again.reason


# ------------------------------------------------------------------------- the monitor
def test_monthly_rate_compounds_to_the_total():
    assert monthly_rate(0.21, 2) == pytest.approx(0.1)
    assert monthly_rate(-0.5, 1) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        monthly_rate(0.1, 0)


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Lake:
    lake = Lake(str(tmp_path_factory.mktemp("monitor") / "lake"))
    write_synthetic_months(lake, MARKET, months(JAN, APR))
    return lake


def model(first_live: Month = MAR) -> MonitoredModel:
    """A champion that is always long, trained on January, validated on February."""
    return MonitoredModel(run_id="run-1", label="tradecore-ppo-synthetic_btc_usd v1",
                          policy=Target(1.0), settings=SETTINGS, feature_preset="default",
                          gate=GATE, seed=0, train_months=frozenset({"2024-01"}),
                          first_live=first_live)


def reference(total_return: float, sharpe: float) -> ValidationReference:
    return ValidationReference(run_id="run-1", months=("2024-02",), total_return=total_return,
                               daily_sharpe=sharpe)


def engine(lake: Lake, month: Month):
    """The month scored by the evaluation engine directly, as evaluation scores a split."""
    return score_split(load_split(lake, MARKET, "default", [month]), SETTINGS, Target(1.0),
                       gate=GATE, seed=0, trials=Trials(count=1))


def test_a_month_is_scored_by_the_evaluation_engine_and_the_window_chains_months(lake):
    scorer = MonitorScorer(lake, MARKET, model(), reference(-0.99, -100.0),
                           MonitorPolicy(window_months=2))
    record = scorer.record(APR)
    direct = {month: engine(lake, month) for month in (MAR, APR)}
    assert record.split == direct[APR].result
    assert record.split.warmup.month == "2024-03"  # warmed on the month before
    window = record.window
    assert window.judged and window.passed and window.months == ("2024-03", "2024-04")
    chained = compute_metrics([direct[MAR].tracks["agent"], direct[APR].tracks["agent"]],
                              bootstrap_samples=GATE.bootstrap_samples, seed=0)
    assert window.metrics == chained
    assert window.monthly_return == pytest.approx((1 + chained.total_return) ** 0.5 - 1)
    assert [rule.name for rule in window.rules] == [MONTHLY_RETURN, DAILY_SHARPE]
    assert window.explanation.startswith("holding up: ")
    assert MonitorRecord.from_json(record.to_json()) == record


def test_a_champion_behind_its_validation_window_fails_by_the_margins(lake):
    promised = reference(1.0, 100.0)  # +100 % and a Sharpe of 100 on validation
    scorer = MonitorScorer(lake, MARKET, model(), promised,
                           MonitorPolicy(window_months=1, return_margin=0.05, sharpe_margin=1.0))
    window = scorer.window(APR)
    assert window.judged and not window.passed
    returns, sharpe = window.rules
    assert not returns.passed and returns.limit == pytest.approx(1.0 - 0.05)
    assert returns.margin == pytest.approx(returns.value - returns.limit) and returns.margin < 0
    assert not sharpe.passed and sharpe.limit == pytest.approx(99.0)
    assert window.explanation.startswith("fell behind its validation window: net return per "
                                         "month over 2024-04")


def test_windows_reaching_back_before_the_live_months_are_not_judged(lake):
    scorer = MonitorScorer(lake, MARKET, model(), reference(1.0, 100.0),
                           MonitorPolicy(window_months=2))
    early = scorer.record(MAR)  # the window 2024-02..03 holds the validation month
    assert early.split.months == ("2024-03",)
    assert not early.window.judged and early.window.passed
    assert "1 of the 2 months of the window come after the champion's validation window " \
        "(from 2024-03 on)" in early.window.explanation
    unreferenced = MonitorScorer(lake, MARKET, model(), None, MonitorPolicy(window_months=1))
    assert "no evaluation record" in unreferenced.window(APR).explanation


def test_a_month_the_champion_trained_on_is_never_scored(lake):
    scorer = MonitorScorer(lake, MARKET, model(), None, MonitorPolicy())
    with pytest.raises(MonitorError, match="trained on 2024-01; scoring it there would be "
                       "in-sample"):
        scorer.record(JAN)
