"""Property tests (hypothesis) of the one engine against the plain-Python reference.

Random price paths (with gaps, across UTC days, with or without a funding column), random
presets (fees, slippage, stops, sizing, kill switch, guardrails, borrow, funding, both
rewards) and random actions: the single env, the batched env (with its auto-resets and
terminal observations) and the backtest walk (rules and buy-and-hold accounts) must give what
``tests/oracle/reference.py`` gives, fill for fill."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frames import random_walk_frame
from tests.oracle import reference
from tradecore_lib.env import MarketData, load_env_config, make_env, make_vec_env
from tradecore_lib.evaluation.backtest import (
    BacktestError,
    BuyAndHold,
    Target,
    plan_walk,
    run_policies,
    walk_config,
)

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

BASE = {"window": 4, "norm_window": 20, "norm_min_periods": 1, "max_gap_minutes": 5.0}


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-9)


@st.composite
def presets(draw, sequential: bool = True):
    mode = draw(st.sampled_from(["discrete", "continuous"]))
    nudge = draw(st.booleans())
    cfg = dict(BASE)
    cfg.update(
        action_mode=mode, nudge=nudge,
        maker_fee=draw(st.sampled_from([0.0, 0.0002, 0.001])),
        taker_fee=draw(st.sampled_from([0.0, 0.0005, 0.002])),
        slippage_bps=draw(st.sampled_from([0.0, 1.0, 25.0])),
        stop_loss_bps=draw(st.sampled_from([30.0, 100.0, 250.0])),
        take_profit_bps=draw(st.sampled_from([0.0, 60.0, 200.0])),
        risk_pct=draw(st.sampled_from([0.005, 0.02, 1.0])),
        max_leverage=draw(st.sampled_from([0.5, 1.0, 3.0])),
        max_drawdown=draw(st.sampled_from([0.03, 1.0])),
        daily_loss_limit=draw(st.sampled_from([None, 0.01])),
        max_total_loss=draw(st.sampled_from([None, 0.02])),
        borrow_rate_annual=draw(st.sampled_from([0.0, 3.0])),
        funding_rate_8h=draw(st.sampled_from([0.0, 0.003, -0.002])),
        reward=draw(st.sampled_from(["pnl_drawdown", "differential_sharpe"])),
        sharpe_eta=0.05,
        rebalance_threshold=draw(st.sampled_from([0.0, 0.2])) if mode == "continuous" else 0.0,
        stop_loss_bounds_bps=[25.0, 300.0], take_profit_bounds_bps=[50.0, 800.0],
        episode_length=None if sequential else draw(st.sampled_from([None, 10, 25])),
        random_start=not sequential,
    )
    return load_env_config(cfg)


def draw_actions(draw, cfg, n: int) -> list:
    if cfg.action_mode == "discrete":
        size = 3 if cfg.nudge else 1
        raw = draw(st.lists(st.lists(st.integers(0, 2), min_size=size, max_size=size),
                            min_size=n, max_size=n))
        return [np.array(a) if cfg.nudge else a[0] for a in raw]
    size = 3 if cfg.nudge else 1
    raw = draw(st.lists(st.lists(st.floats(-1.5, 1.5, width=32), min_size=size, max_size=size),
                        min_size=n, max_size=n))
    return [np.array(a, dtype=np.float32) for a in raw]


@st.composite
def single_cases(draw):
    minutes = draw(st.sampled_from([1, 20]))
    cfg = load_env_config(draw(presets()), {"max_gap_minutes": 1.5 * minutes})
    n = draw(st.integers(20, 150))
    frame = frames(draw, n + cfg.window, vol=draw(st.sampled_from([0.0005, 0.004, 0.02])),
                   gap_every=draw(st.sampled_from([0, 37])), minutes_per_bar=minutes)
    return frame, cfg, draw_actions(draw, cfg, n)


def frames(draw, n: int, **walk):
    """A random-walk frame of ``n`` bars, some with a ``funding_charge`` column."""
    frame = random_walk_frame(np.random.default_rng(draw(st.integers(0, 2**32 - 1))), n,
                              **walk)
    if draw(st.booleans()):
        frame["funding_charge"] = np.random.default_rng(n).normal(0.0, 0.002, n)
    return frame


def assert_step(info: dict, reward: float, ref: reference.Step, float32: bool = False) -> None:
    assert info["bar"] == ref.bar
    for key, want in (("reward_pnl", ref.reward_pnl), ("reward_fee", ref.reward_fee),
                      ("reward_drawdown", ref.reward_drawdown), ("equity", ref.equity),
                      ("cash", ref.cash), ("position_qty", ref.qty), ("fees", ref.fees),
                      ("borrow_cost", ref.borrow), ("funding_cost", ref.funding),
                      ("drawdown", ref.drawdown), ("target_position", ref.target),
                      ("stop_distance", ref.stop_distance),
                      ("take_profit_distance", ref.take_profit_distance),
                      ("kill_switch", float(ref.kill_switch)),
                      ("guardrail", float(ref.guardrail))):
        assert close(info[key], want), (key, info[key], want)
    if float32:  # the batched env hands SB3 float32 rewards
        assert reward == np.float32(reward) and math.isclose(reward, ref.reward, rel_tol=1e-6,
                                                              abs_tol=1e-6)
    else:  # (the differential Sharpe ratio's power may round differently in numba)
        assert math.isclose(reward, ref.reward, rel_tol=1e-10, abs_tol=1e-9)


def assert_fills(table, fills: list[reference.Fill]) -> None:
    got = table.to_pylist()
    assert [(f["bar"], f["kind"]) for f in got] == [(f.bar, f.kind) for f in fills]
    for g, f in zip(got, fills, strict=True):
        assert close(g["qty"], f.qty) and close(g["price"], f.price) and close(g["fee"], f.fee)


@SETTINGS
@given(single_cases())
def test_single_env_matches_the_reference(case):
    frame, cfg, actions = case
    env = make_env(frame, cfg, record_fills=True)
    obs, info = env.reset(seed=0)
    ref = reference.episode(env.data, cfg, info["bar"], actions)
    np.testing.assert_allclose(obs, ref.observations[0], rtol=1e-6, atol=1e-6)
    for action, step, ref_obs in zip(actions, ref.steps, ref.observations[1:], strict=False):
        obs, reward, terminated, truncated, info = env.step(action)
        assert_step(info, reward, step)
        assert terminated == step.terminated
        assert truncated == (step.end and not step.terminated)
        np.testing.assert_allclose(obs, ref_obs, rtol=1e-6, atol=1e-6)
    assert_fills(env.fills(), [f for s in ref.steps for f in s.fills])


@st.composite
def vec_cases(draw):
    cfg = draw(presets(sequential=False))
    frame = frames(draw, 400, vol=draw(st.sampled_from([0.001, 0.01])),
                   gap_every=draw(st.sampled_from([0, 61])))
    n_envs = draw(st.integers(1, 5))
    steps = draw(st.integers(10, 80))
    seed = draw(st.integers(0, 1000))
    return frame, cfg, n_envs, steps, seed, draw(st.integers(0, 2**31))


@SETTINGS
@given(vec_cases())
def test_batched_env_matches_the_reference_through_auto_resets(case):
    """Episodes of every env, their auto-resets and ``terminal_observation``."""
    frame, cfg, n_envs, n_steps, seed, action_seed = case
    venv = make_vec_env(frame, n_envs, cfg, seed=seed, record_fills=True)
    obs = venv.reset()
    venv.action_space.seed(action_seed)
    actions = [np.stack([venv.action_space.sample() for _ in range(n_envs)])
               for _ in range(n_steps)]
    data = venv.data
    episodes = [(venv.reset_infos[i]["bar"], 0) for i in range(n_envs)]  # (start, first step)
    refs = [reference.episode(data, cfg, start, [a[i] for a in actions])
            for i, (start, _) in enumerate(episodes)]
    for i in range(n_envs):
        np.testing.assert_allclose(obs[i], refs[i].observations[0], rtol=1e-6, atol=1e-6)
    ended = 0
    for k, action in enumerate(actions):
        obs, rewards, dones, infos = venv.step(action)
        for i in range(n_envs):
            start, first = episodes[i]
            step = refs[i].steps[k - first]
            assert_step(infos[i], float(rewards[i]), step, float32=True)
            assert bool(dones[i]) == (step.terminated or step.end)
            if dones[i]:
                ended += 1
                np.testing.assert_allclose(infos[i]["terminal_observation"],
                                           refs[i].observations[k - first + 1],
                                           rtol=1e-6, atol=1e-6)
                assert infos[i]["TimeLimit.truncated"] == (not step.terminated)
                # auto-reset: a fresh account at the new start, observed at once
                new_start = venv.reset_infos[i]["bar"]
                assert new_start in set(data.starts.tolist())
                episodes[i] = (new_start, k + 1)
                refs[i] = reference.episode(data, cfg, new_start,
                                            [a[i] for a in actions[k + 1:]])
                np.testing.assert_allclose(obs[i], refs[i].observations[0], rtol=1e-6,
                                           atol=1e-6)
            else:
                np.testing.assert_allclose(obs[i], refs[i].observations[k - first + 1],
                                           rtol=1e-6, atol=1e-6)


@st.composite
def walk_cases(draw):
    minutes = draw(st.sampled_from([1, 30]))
    cfg = load_env_config(draw(presets()), {"action_mode": "discrete", "nudge": False,
                                            "max_gap_minutes": 1.5 * minutes})
    n = draw(st.integers(40, 300))
    frame = frames(draw, n, vol=draw(st.sampled_from([0.001, 0.006, 0.02])),
                   gap_every=draw(st.sampled_from([0, 23, 50])), minutes_per_bar=minutes)
    decision_start = draw(st.integers(0, 30))
    n_policies = draw(st.integers(1, 4))
    return frame, cfg, decision_start, n_policies, draw(st.integers(0, 2**31))


@SETTINGS
@given(walk_cases())
def test_backtest_walk_matches_the_reference(case):
    """Segments (gaps), the charged close at each segment's end, the kill switch's exit at the
    next open and its halt, the guardrails' halts, holding costs, buy-and-hold, fills."""
    frame, cfg, decision_start, n_policies, seed = case
    wcfg = walk_config(cfg)
    data = MarketData.from_frame(frame, wcfg)
    if len(data.starts[data.starts >= decision_start]) == 0:
        with pytest.raises(BacktestError, match="no decision bar"):
            plan_walk(data, wcfg, decision_start)
        return
    walk = plan_walk(data, wcfg, decision_start)
    rng = np.random.default_rng(seed)
    paths = {f"p{j}": rng.choice([-1.0, 0.0, 1.0], size=len(walk.rows))
             for j in range(n_policies)}
    policies = {name: Target(path) for name, path in paths.items()}
    runs = run_policies(data, wcfg, {**policies, "hold": BuyAndHold()}, decision_start)
    for name, path in [*paths.items(), ("hold", None)]:
        bars, steps, account = reference.walk(data, wcfg, decision_start, path,
                                              buy_and_hold=path is None)
        run = runs[name]
        assert run.ts_ms.tolist() == data.ts_ms[bars].tolist()
        for k, step in enumerate(steps):
            assert close(run.equity[k], step.equity) and close(run.position[k], step.qty)
        assert run.position[-1] == 0.0  # the walk ends flat
        assert_fills(run.fills, [f for s in steps for f in s.fills])
        assert run.kill_switch_hits == account.kills <= 1
        assert run.guardrail_breaches == account.guards
        assert close(run.borrow_cost, account.borrow_paid)
        assert close(run.funding_cost, account.funding_paid)
