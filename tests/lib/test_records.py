"""The typed hand-offs and how a training request is launched: records round-trip through
JSON and refuse what they do not hold, the gate's verdict, the launchpad overrides model, the
one command line and the one S3 environment mapping, and fold requests."""

from __future__ import annotations

import pytest

from tests.lakes import synthetic_lake
from tradecore_lib.errors import ConfigError
from tradecore_lib.evaluation.metrics import PolicyMetrics
from tradecore_lib.evaluation.promotion import ChampionRecord, Verdict, judge
from tradecore_lib.evaluation.summary import (
    EvaluationSummary,
    FoldEvaluation,
    PartitionRef,
    SplitResult,
)
from tradecore_lib.lake import S3Options
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month, months_between
from tradecore_lib.train.config import PromotionGate, TrainConfig, load_train_config
from tradecore_lib.train.launch import (
    TrainRequest,
    drop_unset,
    overrides_model,
    parse_request,
    plan_folds,
    s3_env,
    s3_options_from_env,
)
from tradecore_lib.train.record import FoldRun, MlflowRef, RecordError, RunRecord


def metrics(total_return: float = 0.01, sharpe: float = 1.0, kills: int = 0) -> PolicyMetrics:
    return PolicyMetrics(total_return=total_return, sharpe=sharpe, sortino=None,
                         max_drawdown=0.05, turnover=3.0, fees=12.5, trades=7, win_rate=0.5,
                         exposure=0.4, bars=1000, kill_switch_hits=kills)


def fold_run(fold: int) -> FoldRun:
    return FoldRun(fold=fold, run_id=f"cpu-control-{fold:012d}", checkpoint_uri=f"/lake/{fold}",
                   config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                   validation_months=("2024-02",), test_months=("2024-03",),
                   mlflow=MlflowRef(run_id=f"m{fold}", model_name="tradecore-ppo-x",
                                    version=str(fold + 1)))


def run_record(folds: int = 1) -> RunRecord:
    return RunRecord.of("synthetic_btc_usd", load_train_config("cpu-control"), "dagster-run",
                        [fold_run(i) for i in range(folds)])


GATE = PromotionGate(min_net_return=0.0, sharpe_margin_vs_buy_and_hold=0.5,
                     max_kill_switch_hits=0)


def test_a_run_record_round_trips_and_refuses_unknown_keys() -> None:
    record = run_record(folds=2)
    assert RunRecord.from_json(record.to_json()) == record
    assert record.newest.fold == 1 and record.run_id == "cpu-control-000000000001"
    assert record.eligible and record.eligibility == ""
    tags = record.mlflow_tags(record.newest)
    assert tags["tradecore.fold"] == "2/2" and tags["tradecore.run_id"] == record.run_id
    tampered = record.to_json().replace('"market"', '"markets"')
    with pytest.raises(RecordError, match="where it was: not a valid RunRecord: market: Field "
                       "required .*markets: unknown key; did you mean 'market'"):
        RunRecord.from_json(tampered, where="where it was")


def test_a_plumbing_preset_makes_an_ineligible_record() -> None:
    record = RunRecord.of("synthetic_btc_usd", load_train_config("cpu-smoke"), None,
                          [fold_run(0)])
    assert not record.eligible and "plumbing preset" in record.eligibility
    verdict = judge([{"agent": metrics(), "buy_and_hold": metrics(sharpe=0.0)}],
                    record.promotion, eligible=record.eligible, eligibility=record.eligibility)
    assert not verdict.passed and all(rule.passed for rule in verdict.rules)
    assert verdict.explanation().startswith("not eligible (preset 'cpu-smoke'")


def test_the_gate_judges_every_fold_and_names_each_shortfall() -> None:
    good = {"agent": metrics(sharpe=2.0), "buy_and_hold": metrics(sharpe=1.0)}
    verdict = judge([good, good], GATE, eligible=True)
    assert verdict.passed and len(verdict.rules) == 6
    assert {rule.split for rule in verdict.rules} == {"validation"}

    bad = {"agent": metrics(total_return=-0.02, sharpe=1.2, kills=1),
           "buy_and_hold": metrics(sharpe=1.0)}
    verdict = judge([good, bad], GATE, eligible=True)
    assert not verdict.passed
    failed = {(rule.fold, rule.name): rule for rule in verdict.rules if not rule.passed}
    assert set(failed) == {(1, "net_return"), (1, "sharpe_vs_buy_and_hold"),
                           (1, "kill_switch_hits")}
    sharpe = failed[(1, "sharpe_vs_buy_and_hold")]
    assert sharpe.value == pytest.approx(0.2) and sharpe.margin == pytest.approx(-0.3)
    assert "fold 2/2 validation" in sharpe.explanation and "short by 0.3" in sharpe.explanation
    assert "over by 1" in failed[(1, "kill_switch_hits")].explanation
    assert verdict.explanation().startswith("refused: fold 2/2 validation net return")
    assert "random_percentile (needs matched random baselines)" in verdict.not_judged


def test_a_scored_champion_must_be_beaten_when_the_gate_asks() -> None:
    policies = {"agent": metrics(sharpe=2.0), "buy_and_hold": metrics(sharpe=1.0),
                "champion": metrics(sharpe=2.5)}
    verdict = judge([policies], GATE, eligible=True)
    (rule,) = [r for r in verdict.rules if r.name == "beats_champion"]
    assert not rule.passed and not verdict.passed
    lenient = GATE.model_copy(update={"require_beats_champion": False})
    assert judge([policies], lenient, eligible=True).passed


def test_a_verdict_cannot_claim_a_pass_its_rules_deny() -> None:
    refused = judge([{"agent": metrics(total_return=-0.5), "buy_and_hold": metrics()}], GATE,
                    eligible=True)
    with pytest.raises(ValueError, match="passed must equal eligible and all rules passed"):
        Verdict.model_validate({**refused.model_dump(), "passed": True})


def test_the_evaluation_summary_and_champion_records_round_trip() -> None:
    split = SplitResult(months=("2024-02",), first_ts="2024-02-01T00:00:00.000Z",
                        last_ts="2024-02-29T23:59:00.000Z", market_return=0.03,
                        partitions=(PartitionRef(month="2024-02", candles_sha256="a" * 64,
                                                 features_sha256="b" * 64, rows=41000),),
                        policies={"agent": metrics(), "buy_and_hold": metrics(sharpe=0.2)})
    record = run_record()
    verdict = judge([split.policies], record.promotion, eligible=True)
    summary = EvaluationSummary(
        market=record.market, run=record, dagster_run_id="eval-run", feature_preset="default",
        env={"preset": "default", "episode_length": 1440},
        promotion=record.promotion, folds=(FoldEvaluation(fold=0, run_id=record.run_id,
                                                          splits={"validation": split}),),
        verdict=verdict, generated_at="2024-04-01T00:00:00.000Z")
    assert EvaluationSummary.from_json(summary.to_json()) == summary
    assert [row["policy"] for row in summary.rows()] == ["agent", "buy_and_hold"]
    champion = ChampionRecord(market=record.market, run=record, model_name="tradecore-ppo-x",
                              model_version="1", promoted_at="2024-04-01T00:00:00.000Z",
                              reason=verdict.explanation(), dagster_run_id="champion-run")
    assert ChampionRecord.from_json(champion.to_json()) == champion
    assert champion.label == "tradecore-ppo-x v1" and champion.run_id == record.run_id


def test_the_launchpad_model_makes_every_field_optional_down_to_the_sections() -> None:
    overrides = overrides_model(TrainConfig)
    empty = overrides()
    assert drop_unset(empty.model_dump()) == {}
    assert "name" not in overrides.model_fields
    assert overrides.model_fields["vec_normalize"].title == "Brain Shampoo"
    chosen = overrides.model_validate({"ppo": {"ent_coef": 0.02}, "device": "cuda",
                                       "env_overrides": {}})
    # A set mapping field stays a value even when empty; unset sections disappear.
    assert drop_unset(chosen.model_dump()) == {"ppo": {"ent_coef": 0.02}, "device": "cuda",
                                               "env_overrides": {}}


def test_the_command_line_is_parsed_back_into_the_same_request_without_credentials() -> None:
    request = TrainRequest(market="synthetic_btc_usd", preset="cpu-smoke",
                           overrides={"seed": 3, "ppo": {"ent_coef": 0.02}},
                           lake_root="s3://bucket/lake", warm_start_from="cpu-smoke-abc")
    argv = request.argv(python="python")
    assert argv[:3] == ["python", "-m", "tradecore_lib.train.ppo_train"]
    assert parse_request(argv[3:], "test", lambda market: "unused") == request
    options = S3Options(endpoint_url="http://127.0.0.1:9000", region="eu-ro-1",
                        access_key="AKIA-TEST", secret_key="s3cr3t", session_token=None)
    env = s3_env(options)
    assert s3_options_from_env(env) == options
    assert not any("s3cr3t" in part or "AKIA-TEST" in part for part in argv)
    with pytest.raises(ConfigError, match="must be a JSON object"):
        parse_request(["--market", "m", "--overrides", "[1]"], "test", lambda m: "p")


def test_a_fold_request_resolves_to_the_folds_config(tmp_path) -> None:
    cfg = load_train_config("cpu-control")
    (fold,) = cfg.folds(months_between(Month(2024, 1), Month(2024, 6)))
    request = TrainRequest(market="synthetic_btc_usd", preset="cpu-control",
                           overrides={"seed": 2})
    resolved = request.for_fold(load_train_config("cpu-control", {"seed": 2}), fold)
    assert resolved.config() == load_train_config("cpu-control", {"seed": 2}).for_fold(fold)
    assert resolved.config().data.train_months == ["2024-04"]


def test_planning_names_the_months_a_fixed_preset_lacks(tmp_path) -> None:
    lake, market = synthetic_lake(str(tmp_path / "lake"), months=1)
    request = TrainRequest(market=market.name, preset="cpu-smoke")
    with pytest.raises(ConfigError, match=r"months \['2024-02', '2024-03'\]"):
        plan_folds(lake, get_market(market.name), request, Month(2024, 6).start_ms)
