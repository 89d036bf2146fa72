"""The typed hand-offs and how a training request is launched: records round-trip through
JSON and refuse what they do not hold, the launchpad overrides model, the one command line and
the one S3 environment mapping, and fold requests. (The gate's verdict and the evaluation
summary: tests/lib/test_gate.py, tests/lib/test_evaluate.py.)"""

from __future__ import annotations

import pytest

from tests.lakes import synthetic_lake
from tradecore_lib.errors import ConfigError
from tradecore_lib.lake import S3Options
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month, months_between
from tradecore_lib.train.config import TrainConfig, load_train_config
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


def fold_run(fold: int) -> FoldRun:
    return FoldRun(fold=fold, run_id=f"cpu-control-{fold:012d}", checkpoint_uri=f"/lake/{fold}",
                   config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                   validation_months=("2024-02",), test_months=("2024-03",),
                   mlflow=MlflowRef(run_id=f"m{fold}", model_name="tradecore-ppo-x",
                                    version=str(fold + 1)))


def run_record(folds: int = 1) -> RunRecord:
    return RunRecord.of("synthetic_btc_usd", load_train_config("cpu-control"), "dagster-run",
                        [fold_run(i) for i in range(folds)])


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
    assert not record.eligible and record.eligibility.startswith("smoke preset")


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
