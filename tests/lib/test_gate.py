"""The promotion gate on constructed evaluations: each rule refuses a case built to miss it
and passes one built to meet it, every fold must pass, the test split is never read, a smoke
preset is never eligible, and a scored champion must be beaten."""

from __future__ import annotations

import numpy as np
import pytest

from tradecore_lib.evaluation.metrics import (
    AgentStatistics,
    MatchedRandom,
    PolicyMetrics,
    SharpeDifference,
)
from tradecore_lib.evaluation.promotion import (
    ChampionRecord,
    PromotionError,
    Verdict,
    judge,
    promote,
    random_limit,
)
from tradecore_lib.evaluation.summary import FoldEvaluation, SplitResult
from tradecore_lib.train.config import PromotionGate, load_train_config
from tradecore_lib.train.record import FoldRun, MlflowRef, RunRecord

GATE = PromotionGate()  # net return > 0, bootstrap low > 0, above the 95th pct, no kills


def metrics(**fields) -> PolicyMetrics:
    base = dict(total_return=0.02, daily_sharpe=2.0, daily_sharpe_low=0.5,
                daily_sharpe_high=3.5, bar_sharpe=1.5, sortino=2.5, max_drawdown=0.03,
                exposure=0.4, trades=20, win_rate=0.55, turnover=12.0, fees=30.0,
                borrow_cost=0.0, funding_cost=0.0, kill_switch_hits=0, guardrail_breaches=0,
                bars=1440 * 30, days=30)
    return PolicyMetrics(**{**base, **fields})


def split(*, agent: dict | None = None, difference_low: float | None = 0.4,
          random_sharpes: list[float | None] | None = None,
          champion: dict | None = None) -> SplitResult:
    """A validation split the default gate passes, with the given changes."""
    sharpes = tuple(np.linspace(-1.0, 1.0, 100)) if random_sharpes is None else \
        tuple(random_sharpes)
    policies = {"agent": metrics(**(agent or {})), "buy_and_hold": metrics(daily_sharpe=0.8),
                "flat": metrics(total_return=0.0, daily_sharpe=None, trades=0)}
    if champion is not None:
        policies["champion"] = metrics(**champion)
    random = metrics(total_return=-0.01, daily_sharpe=0.0)
    return SplitResult(
        months=("2024-02",), first_ts="2024-02-01T00:00:00.000Z",
        last_ts="2024-02-29T23:59:00.000Z", market_return=0.03, partitions=(),
        policies=policies,
        matched_random=MatchedRandom(policies=len(sharpes), seed=0, agent_trades=20,
                                     target=1.0, daily_sharpes=sharpes, median=random,
                                     p95=random),
        agent=AgentStatistics(
            psr=0.9, dsr=0.7, n_trials=3, trial_sharpe_variance=1.0,
            trial_variance_source="test",
            sharpe_vs_buy_and_hold=SharpeDifference(estimate=1.2, low=difference_low, high=2.0,
                                                    level=0.95, samples=2000, mean_block=3.1),
            random_percentile=99.0, random_p_value=0.01),
    )


def fold(index: int, validation: SplitResult, test: SplitResult | None = None
         ) -> FoldEvaluation:
    return FoldEvaluation(fold=index, run_id=f"run-{index}",
                          splits={"validation": validation, "test": test or split()})


def rules_by_name(verdict: Verdict) -> dict[str, object]:
    return {rule.name: rule for rule in verdict.rules}


def test_a_split_built_to_pass_passes_every_rule() -> None:
    verdict = judge([fold(0, split())], GATE, eligible=True)
    assert verdict.passed and verdict.explanation().startswith("passed: validation net return")
    assert set(rules_by_name(verdict)) == {"net_return", "sharpe_vs_buy_and_hold",
                                           "random_percentile", "kill_switch_hits",
                                           "guardrail_breaches"}
    assert {rule.split for rule in verdict.rules} == {"validation"}


@pytest.mark.parametrize(("rule", "changes", "value", "limit"), [
    ("net_return", {"agent": {"total_return": 0.0}}, 0.0, 0.0),
    ("net_return", {"agent": {"total_return": -0.03}}, -0.03, 0.0),
    ("sharpe_vs_buy_and_hold", {"difference_low": -0.2}, -0.2, 0.0),
    ("sharpe_vs_buy_and_hold", {"difference_low": None}, None, 0.0),
    ("random_percentile", {"agent": {"daily_sharpe": 0.85}}, 0.85, 0.9),
    ("random_percentile", {"agent": {"daily_sharpe": None}}, 0.0, 0.9),
    ("kill_switch_hits", {"agent": {"kill_switch_hits": 1}}, 1, 0),
    ("guardrail_breaches", {"agent": {"guardrail_breaches": 2}}, 2, 0),
    ("beats_champion", {"champion": {"daily_sharpe": 2.5}}, 2.0, 2.5),
])
def test_each_rule_refuses_the_case_built_to_miss_it(rule, changes, value, limit) -> None:
    verdict = judge([fold(0, split(**changes))], GATE, eligible=True)
    failed = {r.name: r for r in verdict.rules if not r.passed}
    assert set(failed) == {rule} and not verdict.passed
    missed = failed[rule]
    assert missed.limit == pytest.approx(limit)
    if value is None:
        assert missed.value is None and missed.margin is None
        assert "undefined" in missed.explanation
    else:
        assert missed.value == pytest.approx(value)
        signed = limit - value if rule in ("kill_switch_hits", "guardrail_breaches") \
            else value - limit
        assert missed.margin == pytest.approx(signed)
    assert verdict.explanation().startswith(f"refused: {missed.explanation}")


def test_limits_and_margins_come_from_the_preset() -> None:
    strict = GATE.model_copy(update={"min_net_return": 0.05,
                                     "sharpe_margin_vs_buy_and_hold": 0.5,
                                     "max_kill_switch_hits": 2, "random_percentile": 50.0})
    rules = rules_by_name(judge([fold(0, split(agent={"kill_switch_hits": 2}))], strict,
                                eligible=True))
    assert not rules["net_return"].passed and rules["net_return"].margin == pytest.approx(-0.03)
    assert not rules["sharpe_vs_buy_and_hold"].passed  # 0.4 is not above 0.5
    assert rules["kill_switch_hits"].passed and rules["kill_switch_hits"].margin == 0
    assert rules["random_percentile"].limit == pytest.approx(0.0, abs=1e-12)  # the median


def test_the_random_rule_compares_with_a_percentile_of_the_matched_policies() -> None:
    sharpes = list(np.arange(100.0))  # 0 .. 99
    assert random_limit(split(random_sharpes=sharpes), 95.0) == pytest.approx(94.05)
    above = judge([fold(0, split(agent={"daily_sharpe": 94.1}, random_sharpes=sharpes))], GATE,
                  eligible=True)
    below = judge([fold(0, split(agent={"daily_sharpe": 94.0}, random_sharpes=sharpes))], GATE,
                  eligible=True)
    assert rules_by_name(above)["random_percentile"].passed
    assert not rules_by_name(below)["random_percentile"].passed
    # An undefined Sharpe (a policy that never varied) counts as 0: an agent that did nothing
    # never ranks above random policies that did nothing either.
    idle = split(agent={"daily_sharpe": None}, random_sharpes=[None] * 100)
    rule = rules_by_name(judge([fold(0, idle)], GATE, eligible=True))["random_percentile"]
    assert (rule.value, rule.limit, rule.passed) == (0.0, 0.0, False)


def test_every_fold_must_pass_and_the_refusal_names_the_fold() -> None:
    verdict = judge([fold(0, split()), fold(1, split(agent={"total_return": -0.01}))], GATE,
                    eligible=True)
    assert not verdict.passed and len(verdict.rules) == 10
    (failed,) = [r for r in verdict.rules if not r.passed]
    assert (failed.fold, failed.name) == (1, "net_return")
    assert failed.explanation.startswith("fold 2/2 validation net return")


def test_the_test_split_is_never_read() -> None:
    awful = split(agent={"total_return": -0.9, "kill_switch_hits": 5, "daily_sharpe": -9.0},
                  difference_low=-20.0)
    assert judge([fold(0, split(), test=awful)], GATE, eligible=True) == \
        judge([fold(0, split(), test=split())], GATE, eligible=True)
    no_test = FoldEvaluation(fold=0, run_id="run-0", splits={"validation": split()})
    assert judge([no_test], GATE, eligible=True).passed


def test_a_scored_champion_must_be_beaten_when_the_gate_asks() -> None:
    beaten = rules_by_name(judge([fold(0, split(champion={"daily_sharpe": 1.5}))], GATE,
                                 eligible=True))
    assert beaten["beats_champion"].passed
    tie = rules_by_name(judge([fold(0, split(champion={"daily_sharpe": 2.0}))], GATE,
                              eligible=True))
    assert not tie["beats_champion"].passed  # strictly better, not as good
    lenient = GATE.model_copy(update={"require_beats_champion": False})
    assert "beats_champion" not in rules_by_name(
        judge([fold(0, split(champion={"daily_sharpe": 9.0}))], lenient, eligible=True))


def fold_run(index: int) -> FoldRun:
    return FoldRun(fold=index, run_id=f"cpu-smoke-{index:012d}", checkpoint_uri=f"/lake/{index}",
                   config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                   validation_months=("2024-02",), test_months=("2024-03",),
                   mlflow=MlflowRef(run_id=f"m{index}", model_name="tradecore-ppo-x",
                                    version="1"))


def test_a_smoke_preset_is_never_eligible_and_cannot_be_promoted() -> None:
    record = RunRecord.of("synthetic_btc_usd", load_train_config("cpu-smoke"), None,
                          [fold_run(0)])
    assert not record.eligible and record.eligibility.startswith("smoke preset: 'cpu-smoke'")
    verdict = judge([fold(0, split())], record.promotion, eligible=record.eligible,
                    eligibility=record.eligibility)
    assert all(rule.passed for rule in verdict.rules) and not verdict.passed
    assert verdict.explanation().startswith("not eligible (smoke preset: 'cpu-smoke'")
    with pytest.raises(PromotionError, match="cannot be promoted: not eligible"):
        promote(None, record, verdict, dagster_run_id="d", evaluation_dagster_run_id=None)


def test_a_verdict_cannot_claim_a_pass_its_rules_deny_and_round_trips() -> None:
    refused = judge([fold(0, split(agent={"total_return": -0.5}))], GATE, eligible=True)
    assert Verdict.from_json(refused.to_json()) == refused
    with pytest.raises(ValueError, match="passed must equal eligible and all rules passed"):
        Verdict.model_validate({**refused.model_dump(), "passed": True})
    undefined = judge([fold(0, split(difference_low=None))], GATE, eligible=True)
    assert Verdict.from_json(undefined.to_json()) == undefined


def test_a_champion_record_round_trips() -> None:
    record = RunRecord.of("synthetic_btc_usd", load_train_config("cpu-control"), "dagster",
                          [fold_run(0)])
    champion = ChampionRecord(market=record.market, run=record, model_name="tradecore-ppo-x",
                              model_version="1", promoted_at="2024-04-01T00:00:00.000Z",
                              reason="passed", dagster_run_id="champion-run")
    assert ChampionRecord.from_json(champion.to_json()) == champion
    assert champion.label == "tradecore-ppo-x v1" and champion.run_id == record.run_id
