"""Property tests (hypothesis) of the accounting over random price paths and actions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.frames import Fill, random_walk_frame
from tradecore_lib.env import make_env

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

BASE = {"window": 4, "norm_window": 20, "norm_min_periods": 1, "episode_length": None,
        "random_start": False, "max_gap_minutes": 5.0}


@st.composite
def scenarios(draw, continuous: bool = False):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(30, 160))
    vol = draw(st.sampled_from([0.0005, 0.003, 0.02]))
    cfg = dict(BASE)
    cfg.update(
        action_mode="continuous" if continuous else "discrete",
        maker_fee=draw(st.sampled_from([0.0, 0.0002, 0.001])),
        taker_fee=draw(st.sampled_from([0.0, 0.0005, 0.002])),
        slippage_bps=draw(st.sampled_from([0.0, 1.0, 25.0])),
        stop_loss_bps=draw(st.sampled_from([20.0, 100.0, 500.0])),
        take_profit_bps=draw(st.sampled_from([0.0, 30.0, 200.0])),
        risk_pct=draw(st.sampled_from([0.005, 0.02, 1.0])),
        max_leverage=draw(st.sampled_from([0.5, 1.0, 3.0])),
        max_drawdown=draw(st.sampled_from([0.05, 1.0])),
        rebalance_threshold=0.0 if not continuous else draw(st.sampled_from([0.0, 0.2])),
    )
    if continuous:
        actions = draw(st.lists(st.floats(-1.0, 1.0, width=32), min_size=n, max_size=n))
    else:
        actions = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    frame = random_walk_frame(np.random.default_rng(seed), n + BASE["window"], vol=vol)
    return frame, cfg, actions


def run_episode(frame, cfg, actions):
    env = make_env(frame, cfg, record_fills=True)
    env.reset(seed=0)
    d = env.data
    records = []
    for action in actions:
        qty_before = env.account["qty"]
        n_fills_before = env.fills().num_rows
        act = np.array([action], dtype=np.float32) if cfg["action_mode"] == "continuous" \
            else action
        _, reward, terminated, truncated, info = env.step(act)
        new_fills = [Fill(**row) for row in env.fills().to_pylist()[n_fills_before:]]
        records.append((qty_before, new_fills, reward, info))
        if terminated or truncated:
            break
    return env, d, records


@SETTINGS
@given(scenarios())
def test_equity_cash_fees_and_fill_prices(case):
    frame, cfg, actions = case
    env, d, records = run_episode(frame, cfg, actions)
    cash = cfg.get("initial_cash", 10_000.0)
    fees_reported = fees_from_fills = 0.0
    for _, fills, reward, info in records:
        bar = info["bar"]
        slip = cfg["slippage_bps"] / 10_000
        for f in fills:
            # fills happen on the played bar, at a reference price inside it (slippage on top)
            assert f.bar == bar
            reference = f.price if f.kind == "take_profit" else (
                f.price / (1 + slip) if f.qty > 0 else f.price / (1 - slip))
            assert d.low[bar] * (1 - 1e-12) <= reference <= d.high[bar] * (1 + 1e-12)
            if f.kind in ("market", "kill_switch", "guardrail"):
                assert math.isclose(reference, d.open[bar], rel_tol=1e-12)
            if f.kind == "end":
                assert math.isclose(reference, d.close[bar], rel_tol=1e-12)
            rate = cfg["maker_fee"] if f.kind == "take_profit" else cfg["taker_fee"]
            assert f.fee == abs(f.qty) * f.price * rate
            fees_from_fills += f.fee
            cash -= f.qty * f.price + f.fee
        fees_reported += info["fees"]
        assert info["fees"] == (info["market_fee"] + info["stop_fee"] + info["limit_fee"]
                                + info["exit_fee"])
        assert info["stop_fee"] == sum(f.fee for f in fills if f.kind == "stop")
        assert info["limit_fee"] == sum(f.fee for f in fills if f.kind == "take_profit")
        # equity = cash + position value, with cash replayed independently from the fills
        assert math.isclose(info["cash"], cash, rel_tol=1e-9, abs_tol=1e-6)
        value = info["position_qty"] * d.close[bar]
        assert info["equity"] == info["cash"] + value
        assert math.isclose(info["position_value"], value, rel_tol=1e-12, abs_tol=1e-12)
        assert math.isclose(
            reward, info["reward_pnl"] + info["reward_fee"] + info["reward_drawdown"],
            rel_tol=1e-12, abs_tol=1e-12)
        assert info["reward_drawdown"] <= 0.0 and info["reward_fee"] <= 0.0
    # sum of fees equals the fills' notional times their fee rate
    assert math.isclose(fees_reported, fees_from_fills, rel_tol=1e-12, abs_tol=1e-9)


@SETTINGS
@given(scenarios(continuous=True))
def test_continuous_targets_sized_by_risk_guard(case):
    frame, cfg, actions = case
    _, d, records = run_episode(frame, cfg, actions)
    lev_cap = min(cfg["risk_pct"] / (cfg["stop_loss_bps"] / 1e4), cfg["max_leverage"])
    equity_prev = 10_000.0
    for qty_before, fills, _, info in records:
        target = info["target_position"]
        assert -1.0 <= target <= 1.0
        market = [f for f in fills if f.kind == "market"]
        if market:
            # the new position is target * leverage cap * equity (at the previous close) / open
            expected = target * lev_cap * equity_prev / d.open[market[0].bar]
            assert math.isclose(qty_before + market[0].qty, expected, rel_tol=1e-9,
                                abs_tol=1e-12)
            assert abs(expected) * d.open[market[0].bar] <= lev_cap * equity_prev * (1 + 1e-12)
        assert info["risk_units"] >= 0.0
        equity_prev = info["equity"]


@SETTINGS
@given(scenarios())
def test_flat_positions_earn_exactly_zero(case):
    frame, cfg, actions = case
    actions = [1] * len(actions)  # index 1 of (-1, 0, 1): flat
    _, _, records = run_episode(frame, cfg, actions)
    equity = cfg.get("initial_cash", 10_000.0)
    for qty_before, fills, reward, info in records:
        assert qty_before == 0.0 and not fills
        assert reward == 0.0 and info["reward_pnl"] == 0.0
        assert info["equity"] == equity


@SETTINGS
@given(scenarios())
def test_pnl_is_zero_whenever_flat_through_a_bar(case):
    frame, cfg, actions = case
    _, _, records = run_episode(frame, cfg, actions)
    for qty_before, fills, _, info in records:
        if qty_before == 0.0 and not fills:
            assert info["reward_pnl"] == 0.0 and info["position_qty"] == 0.0


@SETTINGS
@given(scenarios(), st.sampled_from([0.0, 1.0, 3.5]))
def test_reward_terms_add_up_to_the_net_return_and_the_maximum_drawdown(case, coef):
    """Over any episode: sum(reward_pnl + reward_fee) = reward_scale * sum(net returns) and
    sum(reward_drawdown) = -drawdown_coef * reward_scale * the maximum drawdown of the equity
    before fees (a fee is charged once, a drawdown once)."""
    frame, cfg, actions = case
    cfg = dict(cfg, drawdown_coef=coef, max_drawdown=1.0)
    _, _, records = run_episode(frame, cfg, actions)
    infos = [info for *_, info in records]
    equity = np.array([10_000.0] + [i["equity"] for i in infos])
    fees_paid = np.concatenate([[0.0], np.cumsum([i["fees"] for i in infos])])
    gross = equity + fees_paid
    max_drawdown = float(np.max(1.0 - gross / np.maximum.accumulate(gross)))
    net = sum(i["reward_pnl"] + i["reward_fee"] for i in infos)
    assert math.isclose(net, 100.0 * float(np.sum(equity[1:] / equity[:-1] - 1.0)),
                        rel_tol=1e-9, abs_tol=1e-9)
    assert math.isclose(sum(i["reward_drawdown"] for i in infos),
                        -coef * 100.0 * max_drawdown, rel_tol=1e-9, abs_tol=1e-9)


def test_a_fee_is_not_charged_again_as_drawdown():
    """On a flat price path round trips lose exactly their fees: charged by reward_fee, while
    reward_pnl (before fees) and the drawdown term stay 0."""
    n = 12
    frame = random_walk_frame(np.random.default_rng(0), n, vol=0.0)
    cfg = dict(BASE, action_mode="discrete", taker_fee=0.001, slippage_bps=0.0,
               take_profit_bps=0.0)
    _, _, records = run_episode(frame, cfg, [2, 2, 2, 1, 1, 1, 2, 1, 1])
    infos = [info for *_, info in records]
    assert sum(i["fees"] for i in infos) > 0
    assert all(i["reward_drawdown"] == 0.0 and abs(i["reward_pnl"]) < 1e-12 for i in infos)
    assert all(i["reward_fee"] < 0.0 for i in infos if i["fees"] > 0)
    assert infos[-1]["equity"] == pytest.approx(10_000 - sum(i["fees"] for i in infos))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(5, 200),
       vol=st.sampled_from([0.0005, 0.003, 0.02]),
       taker=st.sampled_from([0.0, 0.0005, 0.002]))
def test_an_episode_enters_and_closes_its_position_with_fees(seed, n, vol, taker):
    """Always long at 1x without stops over one episode: the entry at the first open and the
    close at the episode's last close each pay the taker fee; nothing is closed for free."""
    frame = random_walk_frame(np.random.default_rng(seed), n + BASE["window"], vol=vol)
    cfg = dict(BASE, taker_fee=taker, slippage_bps=0.0, stop_loss_bps=10_000.0,
               take_profit_bps=0.0, risk_pct=1.0, max_leverage=1.0, max_drawdown=1.0)
    env = make_env(frame, cfg, record_fills=True)
    env.reset(seed=0)
    first = env.bar + 1
    info = {}
    for _ in range(n + 1):
        _, _, terminated, truncated, info = env.step(2)  # long, always
        assert not terminated
        if truncated:
            break
    last = info["bar"]
    assert env.fills()["kind"].to_pylist() == ["market", "end"]
    growth = frame["close"].iloc[last] / frame["open"].iloc[first]
    assert math.isclose(info["equity"] / 10_000.0 - 1.0, growth * (1 - taker) - 1 - taker,
                        rel_tol=1e-9, abs_tol=1e-12)
