"""TradeVecEnv as an SB3 VecEnv: seeding, info snapshots, VecMonitor, arguments.

Its trading rules (and those of the single env, the same engine) are checked against the
reference in ``test_env_oracle.py``."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3.common.vec_env import VecMonitor

from tests.frames import synthetic_frame
from tradecore_lib.env import INFO_KEYS, TradeVecEnv, make_env, make_vec_env


@pytest.fixture(scope="module")
def frame():
    return synthetic_frame(n_features=3, rows=12_000)


def test_seed_reproducible_and_distinct(frame):
    a = make_vec_env(frame, 4, {"preset": "default", "episode_length": 50}, seed=5)
    b = make_vec_env(frame, 4, {"preset": "default", "episode_length": 50}, seed=5)
    c = make_vec_env(frame, 4, {"preset": "default", "episode_length": 50}, seed=6)
    oa, ob, oc = a.reset(), b.reset(), c.reset()
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(oa, oc)
    assert len(set(a.bars.tolist())) == 4  # envs start at different bars


def test_infos_are_snapshots_and_arrays_exposed(frame):
    vec = make_vec_env(frame, 3, {"preset": "default", "episode_length": 5}, seed=1)
    vec.reset()
    _, _, _, infos1 = vec.step(np.array([2, 0, 1]))
    equity1 = [info["equity"] for info in infos1]
    bar1 = infos1[0]["bar"]
    for _ in range(6):
        vec.step(np.array([0, 2, 1]))
    assert [info["equity"] for info in infos1] == equity1
    assert infos1[0]["bar"] == bar1
    assert set(INFO_KEYS) <= set(infos1[1])
    assert vec.step_info["equity"].shape == (3,)
    infos1[0]["extra"] = 1  # consumers may add keys
    assert infos1[0]["extra"] == 1 and infos1[-1] is infos1[2]
    assert len(infos1[0:2]) == 2


def test_vec_monitor_records_episodes(frame):
    vec = VecMonitor(make_vec_env(frame, 4, {"preset": "default", "episode_length": 20},
                                  seed=2))
    vec.reset()
    episodes = []
    for _ in range(25):
        _, _, dones, infos = vec.step(np.ones(4, dtype=np.int64))
        episodes += [infos[i]["episode"] for i in np.flatnonzero(dones)]
    assert len(episodes) == 4
    assert all(ep["l"] == 20 for ep in episodes)


def test_env_i_draws_the_starts_of_a_single_env_seeded_seed_plus_i(frame):
    cfg = {"preset": "default", "episode_length": 30}
    vec = make_vec_env(frame, 3, cfg, seed=40)
    vec.reset()
    singles = [make_env(frame, cfg, seed=40 + i) for i in range(3)]
    assert vec.bars.tolist() == [env.bar for env in singles]
    for _ in range(31):  # every env's first episode ends: the next starts are drawn
        vec.step(np.ones(3, dtype=np.int64))
    assert [info["bar"] for info in vec.reset_infos] == [env.reset()[1]["bar"]
                                                         for env in singles]


def test_rejects_bad_n_envs(frame):
    with pytest.raises(ValueError, match="n_envs"):
        TradeVecEnv(frame, 0)
