"""The glue the direction assets call: a trained run's record, its judgement market by market,
MLflow logging and promotion (family ``direction``), and the dry-run signals.

Real runs throughout: cpu-smoke LSTMs and a small transformer trained on synthetic candles in a
tmp lake (seconds each), judged by the real evaluation (baselines fitted on train, the one
engine for the economic check), logged to a SQLite MLflow store in the tmp folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.lakes import write_synthetic_months
from tradecore_lib.direction.baselines import MODEL
from tradecore_lib.direction.judge import (
    EVALUATION_FOLDER,
    JUDGEMENT,
    THE_RUN_EVALUATED,
    DirectionJudgement,
    _champion_predictions,
    combine_verdicts,
    evaluation_files,
    judge_direction_run,
    promote_direction,
)
from tradecore_lib.direction.labels import label_frame
from tradecore_lib.direction.launch import DirectionRequest
from tradecore_lib.direction.predict import confidence_tiers
from tradecore_lib.direction.record import DirectionChampionRecord, DirectionRecord
from tradecore_lib.direction.signals import (
    DIRECTION_SIGNAL_SCHEMA,
    direction_signals_key,
    publish_direction_signals,
)
from tradecore_lib.direction.store import DirectionStore
from tradecore_lib.direction.train import train
from tradecore_lib.evaluation.promotion import PromotionError, Rule, Verdict
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.tracking import DIRECTION_ARTIFACTS, Tracker, model_name, second_trackers
from tradecore_lib.train.data import load_frame
from tradecore_lib.train.record import MlflowRef, RecordError

BTC, ETH = "synthetic_btc_usd", "synthetic_eth_usd"
MULTI = "synthetic_multi"
JAN, FEB, MAR, APR = Month(2024, 1), Month(2024, 2), Month(2024, 3), Month(2024, 4)
# A credential inside a URL: the redaction layer masks URL user-info wherever it appears.
SECRET = "hunter2-s3cr3t-value"
DESCRIPTION = f"glue test run; registry at https://ci:{SECRET}@mlflow.example.test/"
# cpu-smoke trains one short epoch over 20-minute windows (predicting a month is then ~3x
# faster than at its 60); the judgement's bootstraps at their smallest
FAST = {
    "description": DESCRIPTION,
    "lstm": {"sequence_length": 20},
    "training": {"epochs": 1, "train_stride": 20, "monitor_stride": 40},
    "promotion": {"bootstrap_samples": 100,
                  "economic": {"bootstrap_samples": 100, "matched_random_policies": 100}},
}
TRANSFORMER = {**FAST, "multi_markets": [BTC, ETH], "transformer": {"sequence_length": 20},
               "training": {"epochs": 1, "train_stride": 40, "monitor_stride": 40}}


class Reporter:
    """Collects what a training run reports (the Reporter protocol, in process)."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(f"WARNING: {message}")

    def result(self, metadata: dict[str, Any]) -> None:
        self.lines.append(f"result: {metadata}")


def _trained(root: str, model_key: str, overrides: dict[str, Any]) -> DirectionRecord:
    request = DirectionRequest(model_key=model_key, preset="cpu-smoke", overrides=overrides,
                               lake_root=root)
    result = train(request, Reporter())
    store = DirectionStore(Lake(root), model_key, result["run_id"])
    return DirectionRecord.of(store, request.config(), "dagster-train")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("glue") / "lake")
    for market in (BTC, ETH):
        write_synthetic_months(Lake(path), get_market(market), [JAN, FEB, MAR])
    return path


@pytest.fixture(scope="module")
def lstm(root: str) -> DirectionRecord:
    return _trained(root, BTC, FAST)


@pytest.fixture(scope="module")
def incumbent(root: str) -> DirectionRecord:
    """Another BTC LSTM (seed 1) on the same months: the champion the fixture run meets."""
    return _trained(root, BTC, {**FAST, "seed": 1})


@pytest.fixture(scope="module")
def judged(root: str, lstm: DirectionRecord, incumbent: DirectionRecord):
    return judge_direction_run(Lake(root), lstm, champion=_champion_of(incumbent),
                               dagster_run_id="dagster-eval")


@pytest.fixture(scope="module")
def multi(root: str) -> DirectionRecord:
    return _trained(root, MULTI, TRANSFORMER)


def _champion_of(record: DirectionRecord) -> DirectionChampionRecord:
    return DirectionChampionRecord(
        model_key=record.model_key, run_id=record.run_id,
        model_name=model_name(record.model_key, "direction"), model_version="1",
        record=record, reason="passed: test", promoted_at="2024-04-01T00:00:00.000Z")


# -- the record ---------------------------------------------------------------------------------
def test_direction_record_of_a_finished_run_round_trips(root: str, lstm: DirectionRecord) -> None:
    assert (lstm.model_key, lstm.kind, lstm.markets) == (BTC, "lstm", (BTC,))
    assert (lstm.train_months, lstm.validation_months, lstm.test_months) == (
        ("2024-01",), ("2024-02",), ("2024-03",))
    assert lstm.preset == "cpu-smoke" and not lstm.eligible
    assert lstm.eligibility.startswith("smoke preset: 'cpu-smoke'")
    assert lstm.promotion.bootstrap_samples == 100  # the request's limits, not the preset's
    assert lstm.checkpoint_uri.endswith(f"direction_models/{BTC}/{lstm.run_id}")
    assert len(lstm.config_digest) == len(lstm.lineage_digest) == 64
    assert lstm.label == lstm.run_id  # not registered yet
    assert DirectionRecord.from_json(lstm.to_json()) == lstm
    tags = lstm.mlflow_tags()
    assert tags["tradecore.run_id"] == lstm.run_id and tags["tradecore.model_key"] == BTC
    registered = lstm.with_mlflow(MlflowRef(run_id="m", model_name="tradecore-direction-x",
                                            version="3"))
    assert registered.label == "tradecore-direction-x v3"

    unfinished = DirectionStore(Lake(root), BTC, "cpu-smoke-000000000000")
    with pytest.raises(RecordError, match="has not finished: no final.pt"):
        DirectionRecord.of(unfinished, DirectionRequest(model_key=BTC, preset="cpu-smoke")
                           .config(), None)
    with pytest.raises(RecordError, match="not a valid DirectionRecord"):
        DirectionRecord.from_json(lstm.to_json().replace('"kind": "lstm"', '"kind": "gru"'))


# -- the judgement ------------------------------------------------------------------------------
def test_judgement_of_a_smoke_lstm_beside_its_champion(root: str, lstm: DirectionRecord,
                                                       incumbent: DirectionRecord,
                                                       judged) -> None:
    judgement, evaluations = judged
    assert judgement.markets == [BTC] and list(evaluations) == [BTC]
    assert (judgement.model_key, judgement.run_id) == (BTC, lstm.run_id)
    summary = judgement.summaries[BTC]
    assert set(summary.splits) == {"validation", "test"}
    assert summary.run_id == lstm.run_id and summary.dagster_run_id == "dagster-eval"
    for split in summary.splits.values():
        assert {MODEL, "majority", "persistence", "logistic"} <= set(split.models)
        assert split.samples > 0.95 * FEB.minutes
        assert "agent" in split.economic.policies and "buy_and_hold" in split.economic.policies
    # a smoke preset is never eligible, whatever its scores
    assert not judgement.verdict.passed and not judgement.verdict.eligible
    assert judgement.verdict.explanation().startswith("not eligible (smoke preset: 'cpu-smoke'")
    names = [rule.name for rule in judgement.verdict.rules]
    assert f"{BTC}: accuracy_vs_best_baseline" in names and f"{BTC}: calibration_error" in names
    assert f"{BTC}: beats_champion" in names
    assert len(names) == len(summary.verdict.rules)
    assert all(rule.split == "validation" for rule in judgement.verdict.rules)
    # the champion (another run, trained on January only) scored on the same samples
    assert incumbent.run_id != lstm.run_id
    assert judgement.champion is not None and judgement.champion.scored
    assert judgement.champion.run_id == incumbent.run_id
    for split in summary.splits.values():
        mine, theirs = split.models[MODEL].scores, split.models["champion"].scores
        assert theirs.samples == mine.samples  # the same labelled samples
        assert theirs.log_loss != mine.log_loss  # another network
        assert "champion" in split.economic.policies
    assert DirectionJudgement.from_json(judgement.to_json()) == judgement

    # the baselines learnt from the training month alone (its label rule, cut at the purge)
    frame = load_frame(Lake(root), get_market(BTC), [JAN], "default").frame
    _, label = label_frame(frame, 15, 0.0002, JAN.end_ms)
    fit = summary.baseline_fit
    assert fit is not None
    assert fit.up_rate == pytest.approx(np.nanmean(label), abs=2e-3)
    assert fit.train_samples <= np.count_nonzero(~np.isnan(label))

    # files beside the checkpoint
    store = DirectionStore(Lake(root), BTC, lstm.run_id)
    assert DirectionJudgement.from_json(store.read_bytes(f"{EVALUATION_FOLDER}/{JUDGEMENT}")) \
        == judgement
    for name in ("reliability.png", "equity.png"):
        assert store.read_bytes(f"{EVALUATION_FOLDER}/{BTC}/{name}")[:4] == b"\x89PNG"


def test_the_champion_is_not_scored_on_its_own_run_or_its_training_months(
        root: str, lstm: DirectionRecord) -> None:
    months = {"validation": [FEB], "test": [MAR]}
    assert _champion_predictions(Lake(root), _champion_of(lstm), lstm, months, "cpu") == (
        None, THE_RUN_EVALUATED)
    trained_on_feb = _champion_of(lstm.model_copy(update={
        "run_id": "cpu-smoke-ffffffffffff", "train_months": ("2024-01", "2024-02")}))
    predictions, note = _champion_predictions(Lake(root), trained_on_feb, lstm, months, "cpu")
    assert predictions is None and note == "not scored: the champion trained on ['2024-02'] " \
        "of this window"


def test_a_transformer_is_judged_per_market_and_decides_once(
        root: str, multi: DirectionRecord) -> None:
    assert multi.kind == "transformer" and multi.markets == (BTC, ETH)
    judgement, evaluations = judge_direction_run(Lake(root), multi, champion=None,
                                                 dagster_run_id="d")
    assert judgement.markets == [BTC, ETH] and set(evaluations) == {BTC, ETH}
    for market in (BTC, ETH):
        summary = judgement.summaries[market]
        assert summary.market == market and summary.model_key == MULTI
        assert summary.baseline_fit is not None
        assert any(r.name == f"{market}: calibration_error" for r in judgement.verdict.rules)
    # each market is scored on its own labels
    assert judgement.summaries[BTC].splits["validation"].models[MODEL].scores != \
        judgement.summaries[ETH].splits["validation"].models[MODEL].scores
    assert DirectionJudgement.from_json(judgement.to_json()) == judgement
    assert {f"{m}/{n}.png" for m in (BTC, ETH) for n in ("reliability", "equity")} | {
        JUDGEMENT} == set(evaluation_files(judgement, evaluations))

    # one model, one decision: SOL failing refuses the model even when BTC passes
    def verdict(*passed: bool) -> Verdict:
        rules = tuple(Rule(name=f"rule_{i}", fold=0, split="validation", value=1.0, limit=0.0,
                           margin=1.0 if ok else -1.0, passed=ok,
                           explanation=f"rule {i} {'passes' if ok else 'fails'}")
                      for i, ok in enumerate(passed))
        return Verdict(eligible=True, rules=rules, passed=all(passed))

    both = combine_verdicts({BTC: verdict(True, True), "synthetic_sol_usd": verdict(True, True)},
                            eligible=True)
    assert both.passed
    one = combine_verdicts({BTC: verdict(True, True), "synthetic_sol_usd": verdict(True, False)},
                           eligible=True)
    assert not one.passed
    assert one.explanation() == "refused: synthetic_sol_usd: rule 1 fails"
    assert [r.name for r in one.rules] == [f"{BTC}: rule_0", f"{BTC}: rule_1",
                                           "synthetic_sol_usd: rule_0", "synthetic_sol_usd: rule_1"]
    smoke = combine_verdicts({BTC: verdict(True)}, eligible=False, eligibility="smoke preset: x")
    assert not smoke.passed and smoke.explanation() == "not eligible (smoke preset: x)"


# -- tracking and promotion ---------------------------------------------------------------------
def test_logged_registered_promoted_and_read_back(tmp_path: Path, root: str,
                                                  lstm: DirectionRecord, judged) -> None:
    judgement, evaluations = judged
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    logged = tracker.log_direction_record(Lake(root), lstm)
    assert logged.mlflow is not None
    assert logged.mlflow.model_name == f"tradecore-direction-{BTC}"
    assert logged.mlflow.version == "1" and logged.label == f"tradecore-direction-{BTC} v1"
    assert tracker.log_direction_record(Lake(root), lstm) == logged  # idempotent per run id

    run = tracker.client.get_run(logged.mlflow.run_id)
    assert run.data.tags["tradecore.model_key"] == BTC
    assert run.data.tags["tradecore.family"] == "direction"
    assert "market" not in run.data.tags  # never counted as a PPO trial of the market
    assert run.data.params["lstm.hidden_size"] == "16"
    assert run.data.params["description"] == \
        "glue test run; registry at https://***@mlflow.example.test/"
    history = tracker.client.get_metric_history(run.info.run_id, "train/val_loss")
    assert [m.step for m in history] == [1]
    artifacts = {f.path for f in tracker.client.list_artifacts(run.info.run_id, "checkpoint")}
    assert artifacts == {f"checkpoint/{n}" for n in ("final.pt", "config.json", "lineage.json",
                                                     "metrics.jsonl")}

    with_ref = judgement.model_copy(update={"record": logged})
    files = []
    for name, data in evaluation_files(with_ref, evaluations).items():
        path = tmp_path / "files" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        files.append(path)
    tracker.log_direction_evaluation(with_ref, files)
    run = tracker.client.get_run(logged.mlflow.run_id)
    metrics = run.data.metrics
    model = judgement.summaries[BTC].splits["validation"].models[MODEL].scores
    assert metrics[f"{BTC}/validation/model/accuracy"] == pytest.approx(model.accuracy)
    assert f"{BTC}/test/logistic/log_loss" in metrics
    assert f"{BTC}/validation/accuracy_vs_best_baseline/estimate" in metrics
    assert f"{BTC}/validation/economic/agent/daily_sharpe" in metrics or \
        f"{BTC}/validation/economic/agent/total_return" in metrics
    assert f"{BTC}/validation/economic/buy_and_hold/total_return" in metrics
    assert run.data.tags["tradecore.gate.passed"] == "false"
    assert run.data.tags[f"tradecore.gate.{BTC}.passed"] == "false"
    assert run.data.tags["tradecore.gate.verdict"].startswith("not eligible (smoke preset")
    logged_files = {f.path for f in tracker.client.list_artifacts(run.info.run_id, "evaluation")}
    assert f"evaluation/{JUDGEMENT}" in logged_files
    assert tracker.direction_trials(BTC).count == 1
    assert tracker.training_trials(BTC).count == 0  # PPO trials are PPO runs only

    # the gate refused: nothing moves
    with pytest.raises(PromotionError, match="cannot be promoted: not eligible"):
        promote_direction(tracker, with_ref, logged, dagster_run_id="c",
                          evaluation_dagster_run_id="dagster-eval")
    assert tracker.direction_champion(BTC) is None
    # a passing verdict (as an eligible preset's would be) moves the alias
    passed = with_ref.model_copy(update={"verdict": Verdict(
        eligible=True, rules=tuple(r.model_copy(update={"passed": True})
                                   for r in with_ref.verdict.rules), passed=True)})
    champion = promote_direction(tracker, passed, logged, dagster_run_id="dagster-champion",
                                 evaluation_dagster_run_id="dagster-eval")
    assert champion.label == f"tradecore-direction-{BTC} v1"
    assert champion.run_id == lstm.run_id and champion.record.mlflow == logged.mlflow
    assert DirectionChampionRecord.from_json(champion.to_json()) == champion
    alias = tracker.direction_champion(BTC)
    assert alias is not None and (alias.model_name, alias.version, alias.run_id) == (
        f"tradecore-direction-{BTC}", "1", lstm.run_id)
    assert tracker.champion(BTC) is None  # the PPO registry is another model
    version = tracker.client.get_model_version(f"tradecore-direction-{BTC}", "1")
    assert version.tags["promotion.dagster_run_id"] == "dagster-champion"

    # no secret anywhere MLflow wrote
    written = [p for p in (tmp_path / "mlflow").rglob("*") if p.is_file()]
    assert any(p.name == "config.json" for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), path
    config = json.loads(next(p for p in written if p.name == "config.json").read_text())
    assert config["description"] == run.data.params["description"]


def test_wandb_mirrors_the_same_run_evaluation_and_promotion(
        tmp_path: Path, monkeypatch, root: str, lstm: DirectionRecord, judged) -> None:
    """W&B for real, offline (its transaction log read back as in test_tracking_wandb)."""
    from tests.lib.test_tracking_wandb import artifacts, history, items, offline_runs

    home = tmp_path / "wandb-home"
    for variable, folder in (("WANDB_DIR", "runs"), ("WANDB_CACHE_DIR", "cache"),
                             ("WANDB_DATA_DIR", "data"), ("WANDB_CONFIG_DIR", "config"),
                             ("WANDB_ARTIFACT_DIR", "artifacts")):
        (home / folder).mkdir(parents=True)
        monkeypatch.setenv(variable, str(home / folder))
    monkeypatch.setenv("WANDB_MODE", "offline")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
                      mirrors=second_trackers(trackers="mlflow,wandb"))
    judgement, evaluations = judged
    logged = tracker.log_direction_record(Lake(root), lstm)
    with_ref = judgement.model_copy(update={"record": logged})
    path = tmp_path / JUDGEMENT
    path.write_bytes(evaluation_files(with_ref, evaluations)[JUDGEMENT])
    tracker.log_direction_evaluation(with_ref, [path])
    assert logged.mlflow is not None and logged.mlflow.version is not None
    tracker.promote(BTC, logged.mlflow.version, {"dagster_run_id": "promo", "at": "now",
                                                 "rules": "passed"}, family="direction")

    train_run, evaluated, promoted = offline_runs(home, lstm.run_id)
    run = tracker.client.get_run(logged.mlflow.run_id).data
    config = items(train_run, "config")
    assert {k: str(config[k]) for k in run.params} == run.params
    assert config["description"] == "glue test run; registry at https://***@mlflow.example.test/"
    for key, value in lstm.mlflow_tags().items():
        assert config[key] == value == run.tags[key]
    rows = history(train_run)
    assert [row["train/step"] for row in rows] == [1]  # the epoch
    assert rows[0]["train/val_loss"] == pytest.approx(run.metrics["train/val_loss"])
    (model,) = artifacts(train_run)
    assert (model.name, model.type) == (f"tradecore-direction-{BTC}", "model")
    assert {e.path for e in model.manifest.contents} == set(DIRECTION_ARTIFACTS) - {
        "batch_search.json"}

    summary = items(evaluated, "summary")
    scores = {k: v for k, v in run.metrics.items() if not k.startswith("train/")}
    assert len(scores) > 100 and {k: summary[k] for k in scores} == pytest.approx(scores)
    assert summary["tradecore.gate.passed"] == run.tags["tradecore.gate.passed"] == "false"
    (files,) = artifacts(evaluated)
    assert files.name == f"tradecore-direction-evaluation-{BTC}"
    assert items(promoted, "summary")["promotion.dagster_run_id"] == "promo"

    for written in (p for p in tmp_path.rglob("*") if p.is_file()):
        assert SECRET.encode() not in written.read_bytes(), written


# -- signals ------------------------------------------------------------------------------------
def test_signals_of_the_newest_month_with_confidence_tiers(root: str, lstm: DirectionRecord,
                                                           multi: DirectionRecord) -> None:
    lake = Lake(root)
    tiers = {"low": 0.5001, "medium": 0.501, "high": 0.52}  # a smoke model is barely confident
    published = publish_direction_signals(lake, BTC, lstm.run_id, "tradecore-direction-x v1",
                                          APR, tiers=tiers)
    assert published.month == MAR  # April has no data: the newest month before it
    assert published.stored.key == direction_signals_key(BTC, MAR) == \
        f"signals/direction/{BTC}/year=2024/month=03/part-0.parquet"
    table = pq.read_table(published.stored.uri)
    assert table.schema == DIRECTION_SIGNAL_SCHEMA and table.equals(published.table)
    frame = table.to_pandas()
    assert len(frame) > 0.95 * MAR.minutes and (frame["market"] == BTC).all()
    assert frame["ts"].min() == MAR.start and frame["ts"].max() < MAR.next().start
    p = frame["p_up"].to_numpy()
    assert frame["direction"].tolist() == np.where(p > 0.5, "up", "down").tolist()
    np.testing.assert_allclose(frame["confidence"], np.maximum(p, 1 - p))
    assert frame["tier"].tolist() == confidence_tiers(p, tiers).tolist()
    assert len(set(frame["tier"])) > 1
    assert (frame["horizon_minutes"] == 15).all()
    assert ((frame["execute_at"] - frame["ts"]).dt.total_seconds() >= 60).all()
    assert (frame["model"] == "tradecore-direction-x v1").all()
    assert (frame["run_id"] == lstm.run_id).all()

    # a transformer's signals: every market it predicts, the run's own tiers by default
    both = publish_direction_signals(lake, MULTI, multi.run_id, "m", MAR).table.to_pandas()
    assert sorted(set(both["market"])) == [BTC, ETH]
    for market in (BTC, ETH):
        rows = both[both["market"] == market]
        assert len(rows) > 0.9 * MAR.minutes and rows["ts"].is_monotonic_increasing
    assert both["tier"].tolist() == confidence_tiers(
        both["p_up"].to_numpy(), {"low": 0.55, "medium": 0.6, "high": 0.7}).tolist()
