"""The training entry point as a process: killed mid-run it resumes from its last checkpoint
and ends where an uninterrupted run ends, on the same data; it reads only the train months;
same data, config and seed give the same final metrics."""

from __future__ import annotations

import io
import json
import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.lakes import synthetic_lake
from tradecore_lib.lake import Lake
from tradecore_lib.train.checkpoints import RunStore

MARKET = "synthetic_btc_usd"
# Long enough (16 rollouts) that the kill lands well before the end.
OVERRIDES = json.dumps({"total_timesteps": 8192, "checkpoint_every_steps": 1024})


def _command(root: str) -> list[str]:
    return [sys.executable, "-m", "tradecore_lib.train.ppo_train", "--market", MARKET,
            "--preset", "cpu-smoke", "--overrides", OVERRIDES, "--lake-root", root]


def _train(root: str) -> tuple[str, RunStore]:
    done = subprocess.run(_command(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = next(line.split(": ", 1)[1] for line in done.stdout.splitlines()
                  if line.startswith("run_id: "))
    return done.stdout, RunStore(Lake(root), MARKET, run_id)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> RunStore:
    # Only the train month is in this lake: training must not need validation or test data.
    root = str(tmp_path_factory.mktemp("straight") / "lake")
    synthetic_lake(root, months=1)
    return _train(root)[1]


def test_killed_run_resumes_and_matches_the_uninterrupted_run(tmp_path, uninterrupted) -> None:
    root = str(tmp_path / "lake")
    lake, _ = synthetic_lake(root, months=1)
    process = subprocess.Popen(_command(root), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    pointer = f"models/{MARKET}/{uninterrupted.run_id}/checkpoints/latest.json"
    deadline = time.monotonic() + 120
    while not lake.exists(pointer) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # a crash / preemption: no cleanup runs
    process.wait()
    assert process.returncode == -signal.SIGKILL, "training ended before it could be killed"
    killed = RunStore(lake, MARKET, uninterrupted.run_id)  # same data + config = same run id
    assert not killed.is_complete()
    step = killed.latest_checkpoint().step
    assert 0 < step < 8192

    out, resumed = _train(root)

    assert f"resuming run {uninterrupted.run_id} from its checkpoint at step {step}" in out
    assert resumed.run_id == uninterrupted.run_id and resumed.is_complete()
    steps = [row["step"] for row in resumed.read_metrics()]
    assert steps == [row["step"] for row in uninterrupted.read_metrics()]
    assert steps[-1] == 8192 and steps[:-1] == list(range(512, 8193, 512))
    assert resumed.read_json("lineage.json")["partitions"] == \
        uninterrupted.read_json("lineage.json")["partitions"]
    assert resumed.read_json("config.json") == uninterrupted.read_json("config.json")


def test_lineage_names_only_train_months_with_their_checksums(uninterrupted) -> None:
    lineage = uninterrupted.read_json("lineage.json")
    assert lineage["train_months"] == ["2024-01"]
    assert lineage["train_end"] == "2024-02-01T00:00:00.000Z"  # no purge: validation's start
    assert [p["month"] for p in lineage["partitions"]] == ["2024-01"]
    partition = lineage["partitions"][0]
    assert len(partition["candles_sha256"]) == 64 and len(partition["features_sha256"]) == 64
    assert lineage["seed"] == 0 and lineage["feature_preset"] == "default"
    assert lineage["code_version"]


def test_same_data_config_and_seed_give_the_same_final_metrics(tmp_path, uninterrupted) -> None:
    root = str(tmp_path / "lake")
    synthetic_lake(root, months=1)
    _, again = _train(root)
    drop_wall = [{k: v for k, v in r.items() if k not in ("wall_s", "fps")}
                 for r in again.read_metrics()]
    expected = [{k: v for k, v in r.items() if k not in ("wall_s", "fps")}
                for r in uninterrupted.read_metrics()]
    assert drop_wall == expected
    assert again.read_bytes("vecnormalize.pkl") == uninterrupted.read_bytes("vecnormalize.pkl")


def test_a_finished_run_is_reported_again_without_training(uninterrupted) -> None:
    out, store = _train(uninterrupted.lake.root)
    assert "already finished; reporting it without retraining" in out
    assert store.run_id == uninterrupted.run_id


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    warning = info


def test_warm_start_copies_the_champions_weights_and_statistics(uninterrupted) -> None:
    import torch
    from stable_baselines3 import PPO

    from tradecore_lib.markets import get_market
    from tradecore_lib.train.checkpoints import MODEL
    from tradecore_lib.train.config import load_train_config
    from tradecore_lib.train.data import load_frame
    from tradecore_lib.train.ppo_train import make_training_env, new_model, warm_start

    market = get_market(MARKET)
    # Another seed: a fresh network would start elsewhere.
    cfg = load_train_config("cpu-smoke", {**json.loads(OVERRIDES), "seed": 7})
    frame = load_frame(uninterrupted.lake, market, cfg.data.months("train"),
                       market.feature_preset).frame
    venv, vec_normalize = make_training_env(cfg, frame)
    model = new_model(cfg, venv, "cpu")
    champion = PPO.load(io.BytesIO(uninterrupted.read_bytes(MODEL)), device="cpu")
    fresh = model.policy.state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in champion.policy.state_dict().items())
    log = _Log()
    warm_start(model, vec_normalize, uninterrupted, log)
    for name, value in champion.policy.state_dict().items():
        assert torch.equal(model.policy.state_dict()[name], value), name
    stored = pickle.loads(uninterrupted.read_bytes("vecnormalize.pkl"))
    assert (vec_normalize.obs_rms.mean == stored.obs_rms.mean).all()
    assert any("warm start from the champion" in line for line in log.lines)

    narrow = load_train_config("cpu-smoke", {"ppo": {"net_arch": [8]}})
    venv, vec_normalize = make_training_env(narrow, frame)
    with pytest.raises(RuntimeError, match="(?s)cannot warm start from .*Set warm_start to false"):
        warm_start(new_model(narrow, venv, "cpu"), vec_normalize, uninterrupted, log)
