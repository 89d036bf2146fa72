"""The direction training entry point: a killed run resumes and ends where an uninterrupted run
ends; training reads the train and validation months only (with their checksums in the
lineage); predictions follow the DirectionPredictions contract; the venue's transformer trains
over its markets; the thermal guard and the batch-size search of the PPO trainer work here too
(on CPU, through an injected probe and measure); and on the temporal planted-edge control the
LSTM beats majority and persistence out of sample.

The probes below are loaded through ``TRADECORE_GPU_PROBE=tests.lib.test_direction_train:<name>``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from tests.lakes import write_synthetic_months
from tradecore_lib.direction.config import DirectionConfig
from tradecore_lib.direction.labels import label_frame, persistence, ts_millis
from tradecore_lib.direction.launch import DirectionRequest
from tradecore_lib.direction.predict import DirectionModel, confidence_tiers, predict_splits
from tradecore_lib.direction.store import FINAL, MODEL, DirectionStore
from tradecore_lib.direction.train import load_state, main, train
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.train.gpu import PROBE_ENV, STOPPED, THERMAL_STOP_EXIT_CODE, GpuReading

BTC = "synthetic_btc_usd"
JAN, FEB, MAR = Month(2024, 1), Month(2024, 2), Month(2024, 3)
# cpu-smoke's months (train 2024-01, validation 2024-02); 4 short epochs
OVERRIDES = {"training": {"epochs": 4, "train_stride": 10, "monitor_stride": 20}}


class Reporter:
    """Collects what a run reports (the Reporter protocol, in process)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.results: list[dict[str, Any]] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warning(self, message: str) -> None:
        self.lines.append(f"WARNING: {message}")

    def result(self, metadata: dict[str, Any]) -> None:
        self.results.append(metadata)


class SteadyProbe:
    """A GPU at ``temperature`` °C whatever happens."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def read(self) -> GpuReading:
        return GpuReading("Test GPU", 16384.0, 2048.0, self.temperature)


class RisingProbe:
    """60, 65, 70 ... °C: the start reading, then one before each epoch."""

    def __init__(self) -> None:
        self.calls = 0

    def read(self) -> GpuReading:
        self.calls += 1
        return GpuReading("Test GPU", 16384.0, 2048.0, 55.0 + 5.0 * self.calls)


def rising_probe() -> RisingProbe:
    return RisingProbe()


def cool_probe() -> SteadyProbe:
    return SteadyProbe(40.0)


def _request(root: str, overrides: dict[str, Any] | None = None, model_key: str = BTC,
             preset: str = "cpu-smoke") -> DirectionRequest:
    return DirectionRequest(model_key=model_key, preset=preset,
                            overrides=overrides or OVERRIDES, lake_root=root)


@pytest.fixture(scope="module")
def lake_root(tmp_path_factory) -> str:
    # Only the train and validation months: training must never need the test month.
    root = str(tmp_path_factory.mktemp("direction") / "lake")
    write_synthetic_months(Lake(root), get_market(BTC), [JAN, FEB])
    return root


@pytest.fixture(scope="module")
def uninterrupted(lake_root: str) -> DirectionStore:
    report = Reporter()
    result = train(_request(lake_root), report)
    return DirectionStore(Lake(lake_root), BTC, result["run_id"])


def _weights(store: DirectionStore) -> dict[str, torch.Tensor]:
    return load_state(store.read_bytes(FINAL))["model"]


FIGURES = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")


def test_killed_run_resumes_and_matches_the_uninterrupted_run(tmp_path, uninterrupted) -> None:
    root = str(tmp_path / "lake")
    write_synthetic_months(Lake(root), get_market(BTC), [JAN, FEB])
    request = _request(root)
    process = subprocess.Popen(request.argv(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    store = DirectionStore(Lake(root), BTC, uninterrupted.run_id)  # same data, same run id
    deadline = time.monotonic() + 120
    while not store.exists(MODEL) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # a crash: nothing runs after this
    process.wait()
    assert process.returncode == -signal.SIGKILL, (
        f"training ended before it could be killed: {process.stderr.read()[-2000:]}")
    assert not store.is_complete()
    done = load_state(store.read_bytes(MODEL))["epoch"]
    assert 1 <= done < 4

    resumed = subprocess.run(request.argv(), capture_output=True, text=True, timeout=300)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming run {uninterrupted.run_id} after epoch {done} of 4" in resumed.stdout
    rows = [{k: r[k] for k in FIGURES} for r in store.read_metrics()]
    assert rows == [{k: r[k] for k in FIGURES} for r in uninterrupted.read_metrics()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    mine, theirs = _weights(store), _weights(uninterrupted)
    assert mine.keys() == theirs.keys()
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=0, atol=0)


def test_training_reads_train_and_validation_months_with_their_checksums(
        lake_root, uninterrupted) -> None:
    lineage = uninterrupted.read_json("lineage.json")
    assert lineage["train_months"] == ["2024-01"] and lineage["validation_months"] == ["2024-02"]
    lake = Lake(lake_root)
    (parts,) = lineage["partitions"].values()
    assert [p["month"] for p in parts] == ["2024-01", "2024-02"]
    for part in parts:
        assert part["candles_sha256"] == lake.sha256(part["candles_key"])
        assert part["features_sha256"] == lake.sha256(part["features_key"])
    assert lineage["seed"] == 0 and lineage["code_version"]
    rows = uninterrupted.read_metrics()
    assert all(r["samples_per_s"] > 0 and r["eta_s"] >= 0 for r in rows)
    assert rows[-1]["eta_s"] == 0


def test_a_complete_run_is_reported_without_training(lake_root, uninterrupted) -> None:
    report = Reporter()
    result = train(_request(lake_root), report)
    assert result["run_id"] == uninterrupted.run_id and result["epochs"] == 4
    assert any("already finished" in line for line in report.lines)
    assert not any(" epoch " in line for line in report.lines)


def test_predictions_follow_the_contract(lake_root, uninterrupted) -> None:
    lake = Lake(lake_root)
    write_synthetic_months(lake, get_market(BTC), [MAR])  # the test month, after training
    predictions = predict_splits(lake, BTC, uninterrupted.run_id)
    assert list(predictions.columns) == ["ts", "market", "p_up", "label", "forward_return",
                                         "split"]
    assert str(predictions["ts"].dtype) == "datetime64[ms, UTC]"
    assert predictions["p_up"].between(0, 1, inclusive="neither").all()
    assert (predictions["market"] == BTC).all()
    for split, month in (("validation", FEB), ("test", MAR)):
        rows = predictions[predictions["split"] == split]
        ts = ts_millis(rows["ts"])
        assert ts.min() >= month.start_ms and ts.max() < month.end_ms
        assert (np.diff(ts) > 0).all()
        # the first decision is at the split's first minute (inputs from the warm-up month)
        assert ts.min() == month.start_ms
        frame = DirectionModel.load(uninterrupted).load_frames(lake, [month])[BTC].frame
        forward, label = label_frame(frame, 15, 0.0002, month.end_ms)
        at = np.searchsorted(ts_millis(frame["ts"]), ts)
        np.testing.assert_array_equal(rows["label"].to_numpy(), label[at])
        np.testing.assert_array_equal(rows["forward_return"].to_numpy(), forward[at])
        assert rows["label"].iloc[-15:].isna().all()  # no horizon inside the split
        assert len(rows) > 0.95 * month.minutes
    tiers = confidence_tiers(np.array([0.5, 0.56, 0.39, 0.95]),
                             {"low": 0.55, "medium": 0.6, "high": 0.7})
    assert tiers.tolist() == ["none", "low", "medium", "high"]


def test_the_venue_transformer_trains_over_its_markets(lake_root) -> None:
    lake = Lake(lake_root)
    names = ["synthetic_btc_usd", "synthetic_eth_usd"]
    write_synthetic_months(lake, get_market(names[1]), [JAN, FEB])
    report = Reporter()
    overrides = {"multi_markets": names, "transformer": {"sequence_length": 20},
                 "training": {"train_stride": 40, "monitor_stride": 40}}
    result = train(_request(lake_root, overrides, model_key="synthetic_multi"), report)
    assert result["kind"] == "transformer" and result["markets"] == ", ".join(names)
    store = DirectionStore(lake, "synthetic_multi", result["run_id"])
    assert sorted(store.read_json("lineage.json")["partitions"]) == names
    model = DirectionModel.load(store)
    assert set(model.normalization) == set(names)
    predictions = model.predict(model.load_frames(lake, [FEB]), "validation")
    counts = predictions.groupby("market").size()
    assert list(counts.index) == names and (counts > 0.9 * FEB.minutes).all()
    assert predictions["p_up"].between(0, 1, inclusive="neither").all()


def test_thermal_guard_stops_between_epochs_and_a_rerun_resumes(
        lake_root, monkeypatch, capsys) -> None:
    overrides = {**OVERRIDES, "seed": 7, "gpu": {"max_temperature_c": 68.0}}
    argv = _request(lake_root, overrides).argv()[3:]
    monkeypatch.setenv(PROBE_ENV, "tests.lib.test_direction_train:rising_probe")
    # readings: 60 at start, 65 before epoch 1, 70 before epoch 2: stop after one epoch
    assert main(argv) == THERMAL_STOP_EXIT_CODE
    out = capsys.readouterr().out
    assert "GPU Test GPU: 2,048 of 16,384 MiB used, 60 °C; thermal guard at 68 °C" in out
    assert "stopped_by: thermal_guard" in out
    run_id = next(line.split(": ", 1)[1] for line in out.splitlines()
                  if line.startswith("run_id: "))
    store = DirectionStore(Lake(lake_root), BTC, run_id)
    assert not store.is_complete()
    assert store.read_json(STOPPED)["epoch"] == 1
    assert [r["gpu_temp_c"] for r in store.read_metrics()] == [65.0]

    monkeypatch.setenv(PROBE_ENV, "tests.lib.test_direction_train:cool_probe")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "stopped by the thermal guard after epoch 1" in out
    assert f"resuming run {run_id} after epoch 1 of 4" in out
    assert store.is_complete()
    assert [r["gpu_temp_c"] for r in store.read_metrics()] == [65.0, 40.0, 40.0, 40.0]


def test_batch_size_search_keeps_the_last_doubling_that_paid(lake_root) -> None:
    rates = {256: 1000.0, 512: 1900.0, 1024: 1950.0}  # 1024 gains under 5 %
    tried: list[int] = []

    def measure(cfg: DirectionConfig) -> float:
        tried.append(cfg.training.batch_size)
        return rates[cfg.training.batch_size]

    overrides = {"training": {"epochs": 1, "train_stride": 20, "learning_rate": 0.001},
                 "gpu": {"search_batch_size": True, "max_batch_size": 1024}}
    report = Reporter()
    result = train(_request(lake_root, overrides), report, measure=measure)
    assert tried == [256, 512, 1024]
    store = DirectionStore(Lake(lake_root), BTC, result["run_id"])
    config = store.read_json("config.json")["training"]
    assert config["batch_size"] == 512 and config["learning_rate"] == pytest.approx(0.002)
    search = store.read_json("batch_search.json")
    assert search["chosen"] == 512 and "rose less than 5 %" in search["stopped"]
    assert result["batch_search"].startswith("256: 1,000/s, 512: 1,900/s (+90 %)")
    # the run id names the search, not its outcome: another outcome is the same (done) run
    again = train(_request(lake_root, overrides), Reporter(), measure=lambda cfg: 1.0)
    assert again["run_id"] == result["run_id"]


def test_lstm_beats_majority_and_persistence_on_the_temporal_planted_edge(tmp_path) -> None:
    # The control market at a reduced size (hidden 32, 3 epochs over every 4th window: ~20 s
    # on one core); cpu-control itself trains the plan's hidden 64 in about two minutes.
    market = get_market("synthetic_lag_usd")
    root = str(tmp_path / "lake")
    lake = Lake(root)
    write_synthetic_months(lake, market, [FEB, MAR, Month(2024, 4)])
    request = DirectionRequest(
        model_key=market.name, preset="cpu-control", lake_root=root,
        overrides={"windows": {"anchor": "2024-04"}, "lstm": {"hidden_size": 32},
                   "training": {"epochs": 3, "train_stride": 4, "monitor_stride": 20}})
    cfg = request.config()
    (fold,) = cfg.folds([FEB, MAR, Month(2024, 4)])
    result = train(request.for_fold(cfg, fold), Reporter())
    model = DirectionModel.load(DirectionStore(lake, market.name, result["run_id"]))
    frames = model.load_frames(lake, [Month(2024, 4)])
    predictions = model.predict(frames, "test")
    labelled = predictions[predictions["label"].notna()]
    hit = (labelled["p_up"] > 0.5).to_numpy() == (labelled["label"] == 1.0).to_numpy()
    accuracy = hit.mean()
    frame: pd.DataFrame = frames[market.name].frame
    ts = ts_millis(frame["ts"])
    guess = persistence(ts, frame["close"].to_numpy(), 15)[
        np.searchsorted(ts, ts_millis(labelled["ts"]))]
    persistence_accuracy = np.mean(guess == labelled["label"].to_numpy())
    up = labelled["label"].mean()
    majority = max(up, 1 - up)
    assert len(labelled) > 30_000
    assert accuracy > persistence_accuracy + 0.01, (accuracy, persistence_accuracy)
    assert accuracy > majority + 0.2, (accuracy, majority)
    print(f"planted temporal edge, test 2024-04: LSTM {accuracy:.4f}, persistence "
          f"{persistence_accuracy:.4f}, majority {majority:.4f}", file=sys.stderr)
