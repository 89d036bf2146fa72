"""ppo_agent -> evaluation (+ promotion_gate) -> champion -> signals through Dagster, with typed
hand-offs: on a temporary lake and MLflow SQLite store, with the cpu-smoke preset shortened to
one PPO update and the real components (PipesSubprocessClient running the training entry
point, SB3 PPO, MLflow, the record IO manager).

Runs go through ``dg.execute_job`` on a reconstructable job so they can be re-executed."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from tests.pipelines.chain import MARKET, reconstructable_chain, resources
from tradecore_lib.evaluation.promotion import ChampionRecord
from tradecore_lib.evaluation.summary import EvaluationSummary
from tradecore_lib.tracking import RUN_TAG, Tracker, model_name
from tradecore_lib.train.record import RunRecord
from tradecore_pipelines.io_managers import record_key

RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-03-01",
}
# cpu-smoke with a single rollout of 512 steps: what is tested is the hand-off, not learning.
TINY = {"total_timesteps": 512, "checkpoint_every_steps": 512}
# An eligible request with the loosest limits allowed: every agent that traded passes (the
# random rule's limit is the lowest matched random Sharpe; an agent below all of them, or one
# that never traded and so has no Sharpe interval, would still be refused).
PERMISSIVE = {"eligible_for_promotion": True,
              "promotion": {"min_net_return": -1.0, "sharpe_margin_vs_buy_and_hold": -1e9,
                            "random_percentile": 0.0, "max_kill_switch_hits": 10**6,
                            "max_guardrail_breaches": 10**6}}


def key(layer: str) -> dg.AssetKey:
    return dg.AssetKey([MARKET.name, layer])


def step(layer: str) -> str:
    return f"{MARKET.name}__{layer}"


BACK_HALF = [key(layer) for layer in ("ppo_agent", "evaluation", "champion", "signals")]


def agent_config(**overrides) -> dict:
    return {"ops": {step("ppo_agent"): {"config": {**TINY, **overrides}}}}


def materialized(result: dg.ExecuteJobResult, layer: str) -> dict | None:
    """The metadata of ``layer``'s materialization in ``result``, None when it had none."""
    events = [e for e in result.all_events
              if e.event_type_value == "ASSET_MATERIALIZATION" and e.step_key == step(layer)]
    if not events:
        return None
    (event,) = events
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def step_outcomes(result: dg.ExecuteJobResult) -> dict[str, str]:
    kinds = ("STEP_SUCCESS", "STEP_SKIPPED", "STEP_FAILURE")
    return {e.step_key: e.event_type_value for e in result.all_events
            if e.event_type_value in kinds}


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """Instance, job, lake and tracker, candles and features of 2024-01..03 materialized."""
    root = str(tmp_path_factory.mktemp("chain"))
    job = reconstructable_chain(root)
    lake, mlflow = resources(root)
    with dg.instance_for_test() as instance:
        for layer in ("candles", "features"):
            assert dg.execute_job(job, instance, asset_selection=[key(layer)], tags=RANGE).success
        yield job, instance, lake.get_lake(), Tracker(mlflow.tracking_uri)


@pytest.fixture(scope="module")
def trained(chain):
    """Run A: the back half with cpu-smoke (not eligible); run B: ppo_agent and evaluation of
    another seed (another training run)."""
    job, instance, *_ = chain
    first = dg.execute_job(job, instance, asset_selection=BACK_HALF, run_config=agent_config())
    second = dg.execute_job(job, instance, asset_selection=[key("ppo_agent"), key("evaluation")],
                            run_config=agent_config(seed=1))
    assert first.success and second.success
    return first, second


def test_a_refused_gate_is_a_successful_run_that_skips_champion_and_signals(chain, trained):
    _, instance, _, tracker = chain
    first, _ = trained
    outcomes = step_outcomes(first)
    assert outcomes[step("champion")] == "STEP_SUCCESS"  # ran, yielded nothing
    assert outcomes[step("signals")] == "STEP_SKIPPED"
    assert "STEP_FAILURE" not in outcomes.values()
    assert materialized(first, "champion") is None and materialized(first, "signals") is None
    assert instance.get_latest_materialization_event(key("champion")) is None

    (gate,) = first.get_asset_check_evaluations()
    assert not gate.passed and gate.severity == dg.AssetCheckSeverity.WARN
    assert gate.description.startswith("not eligible (smoke preset: 'cpu-smoke'")
    rules = {row.data["rule"] for row in gate.metadata["rules"].value.records}
    assert rules == {"net_return", "sharpe_vs_buy_and_hold", "random_percentile",
                     "kill_switch_hits", "guardrail_breaches"}
    evaluation = materialized(first, "evaluation")
    assert evaluation["gate_passed"] is False and evaluation["gate"] == gate.description
    assert tracker.champion(MARKET.name) is None  # the alias did not move either


def test_the_evaluation_shows_the_comparison_the_curves_and_the_tearsheet(chain, trained):
    first, second = trained
    evaluation = materialized(first, "evaluation")
    rows = [record.data for record in evaluation["comparison"].records]
    policies = ["agent", "buy_and_hold", "always_long_stops", "flat", "random (median)",
                "random (p95)"]
    assert [(r["split"], r["policy"]) for r in rows] == \
        [(split, policy) for split in ("validation", "test") for policy in policies]
    assert len(evaluation["agent_statistics"].records) == 2
    assert evaluation["equity_curve"].startswith("![equity curves](data:image/png;base64,")
    summary_path, tearsheet = Path(evaluation["eval_summary"]), Path(evaluation["tearsheet"])
    assert tearsheet.parent == summary_path.parent
    assert tearsheet.read_text().startswith("<!doctype html>")
    summary = EvaluationSummary.from_json(summary_path.read_bytes())
    validation, test = (summary.newest.splits[s] for s in ("validation", "test"))
    # Each split is warmed up on the month before it and decided from its first minute on.
    assert (validation.warmup.month, test.warmup.month) == ("2024-01", "2024-02")
    assert validation.first_ts.startswith("2024-02-01T00:0")
    assert validation.matched_random.policies == 100
    # Every training run of the market recorded in MLflow is a trial of the deflated Sharpe.
    later = EvaluationSummary.from_json(Path(materialized(second, "evaluation")[
        "eval_summary"]).read_bytes())
    assert (validation.agent.n_trials, later.newest.splits["validation"].agent.n_trials) == \
        (1, 2)


def test_records_are_stored_per_dagster_run_and_tag_mlflow(chain, trained):
    _, _, lake, tracker = chain
    records = []
    for result in trained:
        stored = lake.read_bytes(record_key(key("ppo_agent"), result.run_id))
        record = RunRecord.from_json(stored)
        assert record.dagster_run_id == result.run_id and record.preset == "cpu-smoke"
        assert not record.eligible and len(record.folds) == 1
        assert materialized(result, "ppo_agent")["run_id"] == record.run_id
        records.append(record)
    first, second = records
    assert first.run_id != second.run_id
    assert first.newest.lineage_digest != second.newest.lineage_digest  # seed is in the lineage
    assert first.newest.config_digest != second.newest.config_digest

    run = tracker.client.get_run(second.newest.mlflow.run_id)
    assert {k: run.data.tags[k] for k in second.mlflow_tags(second.newest)} == \
        second.mlflow_tags(second.newest)
    assert run.data.tags[RUN_TAG] == second.run_id and run.data.params["ppo.n_steps"] == "128"
    assert [m.step for m in tracker.client.get_metric_history(run.info.run_id, "train/fps")] \
        == [512]
    assert {"validation/agent/total_return", "test/buy_and_hold/total_return",
            "validation/agent/random_percentile", "validation/agent/n_trials"} <= \
        set(run.data.metrics)
    version = tracker.client.get_model_version(model_name(MARKET.name),
                                               second.newest.mlflow.version)
    assert version.tags["tradecore.lineage_digest"] == second.newest.lineage_digest


def test_reexecuting_the_first_run_judges_its_own_training(chain, trained):
    job, instance, lake, _ = chain
    first, second = trained
    judged_before = lake.read_bytes(record_key(key("evaluation"), first.run_id))

    again = dg.execute_job(job, instance, reexecution_options=dg.ReexecutionOptions(
        parent_run_id=first.run_id, step_selection=[step("evaluation")]))

    assert again.success
    evaluation = materialized(again, "evaluation")
    assert evaluation["run_id"] == materialized(first, "ppo_agent")["run_id"]
    assert evaluation["run_id"] != materialized(second, "ppo_agent")["run_id"]
    assert evaluation["ppo_agent_dagster_run_id"] == first.run_id
    summary = EvaluationSummary.from_json(
        lake.read_bytes(record_key(key("evaluation"), again.run_id)))
    assert summary.run.dagster_run_id == first.run_id and summary.dagster_run_id == again.run_id
    # The first run's own evaluation record is still there, unchanged.
    assert lake.read_bytes(record_key(key("evaluation"), first.run_id)) == judged_before


def test_a_fresh_evaluation_judges_the_latest_training_and_names_it(chain, trained):
    job, instance, *_ = chain
    _, second = trained

    fresh = dg.execute_job(job, instance, asset_selection=[key("evaluation")])

    assert fresh.success
    evaluation = materialized(fresh, "evaluation")
    assert evaluation["run_id"] == materialized(second, "ppo_agent")["run_id"]
    assert evaluation["ppo_agent_dagster_run_id"] == second.run_id
    (loaded,) = [e.dagster_event.event_specific_data for e in instance.all_logs(
        fresh.run_id, of_type=dg.DagsterEventType.LOADED_INPUT)
        if e.dagster_event.step_key == step("evaluation")]
    assert loaded.metadata["record_run_id"].value == second.run_id
    assert loaded.metadata["resolved_by"].value == "latest materialization"


@pytest.fixture(scope="module")
def promoted(chain, trained):
    """Run C: the first seed again, eligible, with a gate every agent passes (the same
    training run: eligibility and gate limits do not change what is trained)."""
    job, instance, *_ = chain
    result = dg.execute_job(job, instance, asset_selection=BACK_HALF,
                            run_config=agent_config(**PERMISSIVE))
    assert result.success
    return result


def test_a_passing_gate_materializes_champion_and_signals_from_its_record(
        chain, trained, promoted):
    _, instance, lake, tracker = chain
    first, _ = trained
    assert materialized(promoted, "ppo_agent")["run_id"] == materialized(first, "ppo_agent")[
        "run_id"]
    (gate,) = promoted.get_asset_check_evaluations()
    assert gate.passed and gate.description.startswith("passed: validation net return")

    champion = ChampionRecord.from_json(lake.read_bytes(record_key(key("champion"),
                                                                   promoted.run_id)))
    assert champion.run_id == materialized(first, "ppo_agent")["run_id"]
    assert champion.dagster_run_id == promoted.run_id and not champion.adopted
    mlflow_champion = tracker.champion(MARKET.name)
    assert (mlflow_champion.version, mlflow_champion.run_id) == (champion.model_version,
                                                                 champion.run_id)

    signals = materialized(promoted, "signals")
    assert signals["run_id"] == champion.run_id
    assert signals["champion_dagster_run_id"] == promoted.run_id
    table = pq.read_table(signals["path"])
    assert set(table["model"].to_pylist()) == {champion.label}
    assert set(table["run_id"].to_pylist()) == {champion.run_id}
    assert signals["month"] == "2024-03"


def test_signals_alone_read_the_latest_champion(chain, promoted):
    job, instance, *_ = chain
    alone = dg.execute_job(job, instance, asset_selection=[key("signals")])
    assert alone.success
    assert materialized(alone, "signals")["champion_dagster_run_id"] == promoted.run_id


def test_a_champion_set_in_mlflow_before_the_upgrade_is_adopted_once(chain, promoted):
    job, _, lake, tracker = chain
    # What a pre-upgrade version looked like: the alias, and the older tag names only.
    legacy = tracker.champion(MARKET.name)
    name = model_name(MARKET.name)
    for tag in ("tradecore.run_id", "tradecore.checkpoint_uri"):
        tracker.client.delete_model_version_tag(name, legacy.version, tag)
    tracker.client.set_model_version_tag(name, legacy.version, "run_id", legacy.run_id)
    record = ChampionRecord.from_json(lake.read_bytes(record_key(key("champion"),
                                                                 promoted.run_id)))
    tracker.client.set_model_version_tag(name, legacy.version, "checkpoint_uri",
                                         record.run.checkpoint_uri)

    # An instance that never materialized champion (the same lake and MLflow store).
    with dg.instance_for_test() as upgraded:
        first = dg.execute_job(job, upgraded, asset_selection=[key("signals")])
        second = dg.execute_job(job, upgraded, asset_selection=[key("signals")])

        assert first.success and second.success
        adopted = upgraded.fetch_materializations(key("champion"), limit=10).records
        assert len(adopted) == 1  # once
        metadata = adopted[0].asset_materialization.metadata
        assert metadata["adopted"].value is True
        assert metadata["model_version"].value == legacy.version
        for result in (first, second):
            signals = materialized(result, "signals")
            assert signals["run_id"] == legacy.run_id
            assert signals["champion_dagster_run_id"] == "(adopted)"


def test_training_refuses_candles_whose_checks_are_not_recorded(chain):
    job, *_ = chain
    # The same lake, seen from an instance that has no check results for its candles.
    with dg.instance_for_test() as elsewhere:
        result = dg.execute_job(job, elsewhere, asset_selection=[key("ppo_agent")],
                                run_config=agent_config(), raise_on_error=False)
    assert not result.success
    message = failure_message(result)
    assert message.startswith(f"{MARKET.name}/ppo_agent refuses to build")
    assert "2024-01" in message and "2024-03" in message


def failure_message(result: dg.ExecuteJobResult) -> str:
    """The step failure's message: a dg.Failure's description, else the error's."""
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    data = failure.event_specific_data
    if data.user_failure_data is not None:
        return data.user_failure_data.description
    return str(data.error.cause.message if data.error.cause else data.error.message)


def test_a_bad_launchpad_value_fails_before_training_with_a_clear_message(chain):
    job, instance, *_ = chain
    result = dg.execute_job(
        job, instance, asset_selection=[key("ppo_agent")], raise_on_error=False,
        run_config={"ops": {step("ppo_agent"): {"config": {
            "ppo": {"ent_coef": -0.5}, "data": {"test_months": ["2024-01"]}}}}},
    )
    assert not result.success
    message = failure_message(result)
    assert "ppo.ent_coef" in message and "-0.5" in message
    assert "test month 2024-01 is not after the last validation month" in message
