"""W&B as a second tracker beside MLflow (``TRADECORE_TRACKERS=mlflow,wandb``): a finished run
replayed from its checkpoint folder, its evaluation and its promotion reach both trackers with
the same params, metric history, artifacts and lineage; the key is in no file either writes.

``wandb`` runs for real, offline (``WANDB_MODE=offline``, every W&B folder under the test's tmp
folder); its offline transaction log is read back record by record below."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tradecore_lib.evaluation.backtest import Target
from tradecore_lib.evaluation.evaluate import SplitInputs, score_split
from tradecore_lib.evaluation.metrics import Trials
from tradecore_lib.evaluation.promotion import judge
from tradecore_lib.evaluation.summary import EvaluationSummary, FoldEvaluation
from tradecore_lib.lake import Lake
from tradecore_lib.months import Month
from tradecore_lib.sources.synthetic_generator import DAY_MS, SyntheticOptions, generate_month
from tradecore_lib.tracking import (
    ARTIFACTS,
    Tracker,
    TrackerConfigError,
    enabled_trackers,
    flatten,
    second_trackers,
)
from tradecore_lib.train.checkpoints import (
    CONFIG,
    LINEAGE,
    MODEL,
    VECNORMALIZE,
    RunStore,
)
from tradecore_lib.train.config import PromotionGate, load_train_config
from tradecore_lib.train.record import FoldRun, RunRecord

MARKET = "synthetic_eth_usd"
RUN_ID = "cpu-smoke-0123456789ab"
# A credential-shaped key (40 hex characters, as W&B issues them) that must not be written.
API_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
FEBRUARY = Month(2024, 2)


@pytest.fixture
def wandb_env(tmp_path, monkeypatch) -> Path:
    """Offline W&B with every folder it writes (runs, cache, artifact staging, settings) under
    ``tmp_path/wandb-home``, and the key in the environment as a deployment has it."""
    home = tmp_path / "wandb-home"
    for variable, folder in (("WANDB_DIR", "runs"), ("WANDB_CACHE_DIR", "cache"),
                             ("WANDB_DATA_DIR", "data"), ("WANDB_CONFIG_DIR", "config"),
                             ("WANDB_ARTIFACT_DIR", "artifacts")):
        (home / folder).mkdir(parents=True)
        monkeypatch.setenv(variable, str(home / folder))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_API_KEY", API_KEY)
    monkeypatch.setenv("TRADECORE_TRACKERS", "mlflow,wandb")
    return home


def finished_store(lake: Lake) -> RunStore:
    """A finished run's checkpoint folder as ppo_train leaves it: resolved config, metric rows
    at env steps, lineage (partitions with checksums, seed, code version), model files."""
    store = RunStore(lake, MARKET, RUN_ID)
    store.write_json(CONFIG, load_train_config("cpu-smoke").model_dump(mode="json"))
    store.write_metrics([
        {"step": 512, "loss": 0.9, "entropy": 1.08, "fps": 850},
        {"step": 1024, "loss": 0.7, "entropy": 1.02, "fps": 910},
        {"step": 1536, "loss": 0.55, "entropy": 0.97, "fps": 905},
    ])
    store.write_json(LINEAGE, {
        "partitions": [{"month": "2024-01", "candles_sha256": "a" * 64,
                        "features_sha256": "b" * 64}],
        "seed": 7, "code_version": "0.1.0+test"})
    store.write_bytes(MODEL, b"PK\x03\x04 a policy")
    store.write_bytes(VECNORMALIZE, b"normalization statistics")
    return store


def record_of(store: RunStore) -> RunRecord:
    fold = FoldRun(fold=0, run_id=store.run_id, checkpoint_uri=store.uri(),
                   config_digest="c" * 64, lineage_digest="l" * 64, train_months=("2024-01",),
                   validation_months=("2024-02",), test_months=("2024-03",))
    return RunRecord.of(MARKET, load_train_config("cpu-smoke"), "dagster-run", [fold])


def summary_of(run: RunRecord) -> EvaluationSummary:
    """A real evaluation (the one engine, flat target) of two days of synthetic candles."""
    gate = PromotionGate(bootstrap_samples=200)
    candles = generate_month(SyntheticOptions(seed=11, missing_minute_rate=0.0,
                                              outages_per_day=0.0), MARKET, FEBRUARY).to_pandas()
    from tests.frames import add_numpy_features

    cut = pd.Timestamp(FEBRUARY.start_ms + 3 * DAY_MS, unit="ms", tz="UTC")
    frame = add_numpy_features(candles[candles["ts"] < cut].reset_index(drop=True), 2)
    split = SplitInputs(frame=frame, start_ms=FEBRUARY.start_ms + DAY_MS,
                        months=(str(FEBRUARY),))
    scored = score_split(split, {"preset": "default", "exclude_column": "warmup"}, Target(0.0),
                         gate=gate, seed=0, trials=Trials(count=1))
    folds = (FoldEvaluation(fold=0, run_id=run.newest.run_id,
                            splits={"validation": scored.result, "test": scored.result}),)
    return EvaluationSummary(
        market=MARKET, run=run, dagster_run_id="eval", feature_preset="default",
        env={"preset": "default"}, promotion=gate, folds=folds,
        verdict=judge(folds, gate, eligible=True), generated_at="2024-04-01T00:00:00.000Z")


# --- reading W&B's offline transaction log ---------------------------------------------------


def wandb_records(path: Path) -> list:
    """The records of one offline ``run-<id>.wandb`` file: W&B's header (``:W&B``, magic
    0xBEE1, version 0), then LevelDB-log framing (32 KiB blocks; each chunk a 7-byte header:
    CRC, length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) around protobuf ``Record``s."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:7] == b":W&B\xe1\xbe\x00", path
    records, pending, pos, block = [], b"", 7, 32 * 1024
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        else:
            records.append(pending + chunk)
            pending = b""
    return [wandb_internal_pb2.Record.FromString(r) for r in records]


def offline_runs(home: Path, run_id: str) -> list[list]:
    """The records of every offline folder of W&B run ``run_id`` (one per replay), oldest
    first."""
    # offline-run-<YYYYmmdd_HHMMSS>-<id>, plus -<n> for the n-th more within the same second.
    folders = [f for f in (home / "runs" / "wandb").glob(f"offline-run-*-{run_id}*")
               if f.name.split("-", 3)[3].startswith(run_id)]
    folders.sort(key=lambda f: (f.name.split("-")[2], len(f.name), f.name))
    return [wandb_records(folder / f"run-{run_id}.wandb") for folder in folders]


def key_of(item) -> str:
    """An item's key: ``key``, or its ``nested_key`` path joined with dots."""
    return item.key or ".".join(item.nested_key)


def items(records: list, kind: str) -> dict:
    """Key -> decoded value of every config / summary update in ``records``."""
    out = {}
    for record in records:
        if record.WhichOneof("record_type") == kind:
            for item in getattr(record, kind).update:
                out[key_of(item)] = json.loads(item.value_json)
    return out


def history(records: list) -> list[dict]:
    """The logged history rows, without W&B's own ``_step``, ``_runtime``, ``_timestamp``."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append({key_of(item): json.loads(item.value_json)
                         for item in record.history.item if not key_of(item).startswith("_")})
    return rows


def artifacts(records: list) -> list:
    return [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]


# --- tests --------------------------------------------------------------------------------------


def test_a_replayed_run_reaches_both_trackers_with_the_same_content(tmp_path, wandb_env) -> None:
    lake = Lake(str(tmp_path / "lake"))
    store = finished_store(lake)
    mirrors = second_trackers(wandb_api_key=API_KEY)
    assert [type(m).__name__ for m in mirrors] == ["WandbTracker"]
    assert API_KEY not in repr(mirrors[0]) and API_KEY not in mirrors[0].where
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}", mirrors=mirrors)

    record = tracker.log_record(lake, record_of(store))
    summary = summary_of(record)
    tearsheet = tmp_path / "tearsheet.html"
    tearsheet.write_text("<!doctype html><p>evaluation</p>")
    tracker.log_evaluation(summary, [tearsheet])
    ref = record.newest.mlflow
    tracker.promote(MARKET, ref.version, {"dagster_run_id": "promo", "at": "2024-04-01",
                                          "rules": "passed"})

    # MLflow, as before.
    run = tracker.client.get_run(ref.run_id)
    params = flatten(store.read_json(CONFIG))
    assert run.data.params == params
    mlflow_history = {(m.key, m.step, m.value) for key in ("train/loss", "train/entropy",
                                                           "train/fps")
                      for m in tracker.client.get_metric_history(ref.run_id, key)}
    assert len(mlflow_history) == 9
    logged = {a.path for a in tracker.client.list_artifacts(ref.run_id, "checkpoint")}
    assert logged == {f"checkpoint/{name}" for name in ARTIFACTS}

    # W&B: one offline folder per replay of the run (train, evaluation, promotion).
    replays = offline_runs(wandb_env, RUN_ID)
    assert len(replays) == 3
    train = replays[0]
    config = items(train, "config")
    assert {k: str(v) for k, v in config.items() if k in params} == params
    assert set(params) <= set(config)
    for key, value in record.mlflow_tags(record.newest).items():
        assert config[key] == value == run.data.tags[key]
    wandb_history = {(key, row["train/step"], value) for row in history(train)
                     for key, value in row.items() if key != "train/step"}
    assert wandb_history == mlflow_history
    (model,) = artifacts(train)
    assert (model.name, model.type) == (f"tradecore-ppo-{MARKET}", "model")
    assert {entry.path for entry in model.manifest.contents} == set(ARTIFACTS)
    assert {"registered", RUN_ID} <= set(model.aliases)
    assert json.loads(model.metadata) == store.read_json(LINEAGE)
    run_record = next(r.run for r in train if r.WhichOneof("record_type") == "run")
    assert (run_record.run_group, run_record.job_type, run_record.display_name) == (
        MARKET, "train", RUN_ID)

    # The evaluation: every MLflow metric in the run's summary, the verdict, its files.
    evaluated = items(replays[1], "summary")
    after = tracker.client.get_run(ref.run_id).data
    scores = {k: v for k, v in after.metrics.items() if not k.startswith("train/")}
    assert len(scores) > 50
    assert {k: evaluated[k] for k in scores} == pytest.approx(scores)
    for tag in ("tradecore.gate.passed", "tradecore.gate.verdict"):
        assert evaluated[tag] == after.tags[tag]
    (evaluation,) = artifacts(replays[1])
    assert evaluation.type == "evaluation"
    assert [e.path for e in evaluation.manifest.contents] == ["tearsheet.html"]

    promoted = items(replays[2], "summary")
    assert promoted["tradecore.champion"] == "true"
    assert promoted["promotion.dagster_run_id"] == "promo"

    # The key is in no file either tracker (or W&B's cache and staging) wrote.
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in written) and any(p.name == "mlflow.db"
                                                              for p in written)
    leaked = [p for p in written if API_KEY.encode() in p.read_bytes()]
    assert leaked == []


def test_trackers_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("TRADECORE_TRACKERS", raising=False)
    assert enabled_trackers() == ("mlflow",)
    assert second_trackers() == ()
    assert enabled_trackers(" MLflow , wandb ") == ("mlflow", "wandb")
    with pytest.raises(TrackerConfigError, match="unknown tracker 'wandbb'; did you mean "
                                                 "'wandb'"):
        enabled_trackers("mlflow,wandbb")
    with pytest.raises(TrackerConfigError, match="mlflow is required"):
        enabled_trackers("wandb")


def test_online_without_a_key_says_what_to_set(monkeypatch) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    with pytest.raises(TrackerConfigError, match="set WANDB_API_KEY .* or WANDB_MODE=offline"):
        second_trackers(trackers="mlflow,wandb")


def test_a_wandb_failure_names_no_key(tmp_path, wandb_env) -> None:
    """W&B refusing an init (an entity name it cannot accept) is a retryable TrackingError
    whose message is redacted."""
    from tradecore_lib.tracking import TrackingError, WandbTracker

    lake = Lake(str(tmp_path / "lake"))
    store = finished_store(lake)
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}",
                      mirrors=[WandbTracker(project="bad/project:" + API_KEY, api_key=API_KEY,
                                            mode="offline", directory=wandb_env / "runs")])
    with pytest.raises(TrackingError) as caught:
        tracker.log_run(store, {}, register=False)
    assert caught.value.retryable and API_KEY not in str(caught.value)
    assert "synthetic_eth_usd: logging run" in str(caught.value)


def test_loading_the_code_location_does_not_import_wandb() -> None:
    script = ("import sys, tradecore_pipelines.definitions, tradecore_lib.tracking\n"
              "print('wandb' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-1] == "False"
