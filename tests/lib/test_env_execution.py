"""Hand-made candles: fill timing, slippage, stops, take-profit, kill switch, guardrails, the
charged close at an episode's end, holding costs, sizing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.frames import fills_of
from tradecore_lib.env import make_env

BASE = {"window": 2, "norm_window": 5, "norm_min_periods": 1, "episode_length": None,
        "random_start": False, "max_drawdown": 1.0, "risk_pct": 0.01, "max_leverage": 1.0,
        "stop_loss_bps": 100.0, "take_profit_bps": 200.0, "slippage_bps": 0.0,
        "maker_fee": 0.0002, "taker_fee": 0.0005}
LONG, FLAT, SHORT = 2, 1, 0


def candles(rows):
    """rows: (open, high, low, close) per minute."""
    arr = np.asarray(rows, dtype=float)
    ts = pd.to_datetime(1_704_067_200_000 + 60_000 * np.arange(len(arr)), unit="ms", utc=True)
    return pd.DataFrame({"ts": ts, "open": arr[:, 0], "high": arr[:, 1], "low": arr[:, 2],
                         "close": arr[:, 3], "volume": 1.0})


def env_on(rows, **overrides):
    env = make_env(candles(rows), dict(BASE, **overrides), record_fills=True)
    env.reset(seed=0, options={"start": 1})
    return env


QUIET = [(100, 100.5, 99.5, 100)] * 2


def test_decision_fills_at_next_open_with_slippage_and_taker_fee():
    env = env_on(QUIET + [(101, 101.5, 100.5, 101), (102, 102.5, 101.5, 102)],
                 slippage_bps=10.0)
    _, _, _, _, info = env.step(LONG)
    fill = fills_of(env)[-1]
    assert fill.bar == 2 and fill.kind == "market"
    assert fill.price == pytest.approx(101 * 1.001)  # next bar's open, not the decision close
    assert fill.qty == pytest.approx(10_000 / 101)  # full equity: 1 % risk / 1 % stop = 1x
    assert info["market_fee"] == pytest.approx(fill.qty * fill.price * 0.0005)
    assert info["risk_units"] == pytest.approx(fill.qty * 101 * 0.01 / (0.01 * info["equity"]))


def test_slippage_is_a_cost_on_top_of_the_reference_price():
    env = env_on(QUIET + [(101, 101.02, 100.5, 101)] * 3, slippage_bps=50.0)
    env.step(LONG)
    # the open is in the bar; slippage is paid even where the bar's range was narrower
    assert fills_of(env)[-1].price == pytest.approx(101 * 1.005)


def test_stop_loss_intrabar_pays_taker():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (100, 100.1, 98.5, 99)], slippage_bps=5.0)
    env.step(LONG)
    _, _, _, _, info = env.step(LONG)
    stop = fills_of(env)[-1]
    assert stop.kind == "stop" and stop.bar == 3
    entry = 100 * 1.0005  # the entry itself paid slippage
    assert stop.price == pytest.approx(entry * 0.99 * (1 - 0.0005))  # stop level, slipped
    assert info["stop_fee"] == pytest.approx(abs(stop.qty) * stop.price * 0.0005)
    assert info["position_qty"] == 0.0 and info["limit_fee"] == 0.0


def test_take_profit_is_a_maker_limit():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (100, 103, 99.5, 102.5)])
    env.step(LONG)
    _, _, _, _, info = env.step(LONG)
    tp = fills_of(env)[-1]
    assert tp.kind == "take_profit" and tp.price == pytest.approx(102.0)
    assert info["limit_fee"] == pytest.approx(abs(tp.qty) * 102.0 * 0.0002)
    assert info["stop_fee"] == 0.0


def test_both_touched_in_one_bar_assumes_the_stop_first():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (100, 103, 98, 102.5)])
    env.step(LONG)
    env.step(LONG)
    assert fills_of(env)[-1].kind == "stop"


def test_short_stop_and_gap_through_fills_at_open():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (103, 104, 102.5, 103.5)])
    env.step(SHORT)
    env.step(SHORT)
    stop = fills_of(env)[-1]
    assert stop.kind == "stop" and stop.qty > 0 and stop.price == 103.0  # opened beyond 101


def test_after_a_stop_the_target_is_flat_until_the_agent_acts_again():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (100, 100.1, 98.5, 99),
                          (99, 99.5, 98.8, 99), (99, 99.5, 98.8, 99), (99, 99.5, 98.8, 99)])
    env.step(LONG)
    env.step(LONG)  # stopped out
    _, _, _, _, info = env.step(FLAT)
    assert info["position_qty"] == 0.0 and len(fills_of(env)) == 2
    env.step(LONG)  # re-enters
    assert fills_of(env)[-1].kind == "market" and env.account["qty"] > 0


def test_kill_switch_closes_at_the_next_open_then_the_episode_ends():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (100, 100, 70, 70), (69, 71, 68, 70),
                          (70, 71, 69, 70)],
                 max_drawdown=0.2, stop_loss_bps=5000.0, risk_pct=1.0, take_profit_bps=0.0,
                 slippage_bps=10.0)
    env.step(LONG)
    _, _, terminated, truncated, info = env.step(LONG)  # breach at this close
    assert info["drawdown"] >= 0.2 and info["kill_switch"] == 1.0
    assert not terminated and not truncated and info["position_qty"] > 0
    qty = info["position_qty"]
    _, _, terminated, truncated, info = env.step(LONG)  # the target is not executed
    assert terminated and not truncated
    exit_fill = fills_of(env)[-1]
    assert exit_fill.kind == "kill_switch" and exit_fill.bar == 4
    assert exit_fill.qty == -qty and exit_fill.price == pytest.approx(69 * (1 - 0.001))
    assert exit_fill.fee == pytest.approx(qty * exit_fill.price * 0.0005)
    assert info["position_qty"] == 0.0 and info["exit_fee"] == exit_fill.fee


def test_an_episode_ends_with_a_charged_close():
    env = env_on(QUIET + [(100, 100.2, 99.9, 100), (101, 102, 100, 101.5)],
                 slippage_bps=10.0)
    env.step(LONG)
    _, _, terminated, truncated, info = env.step(LONG)  # the frame's last bar
    assert truncated and not terminated
    end = fills_of(env)[-1]
    assert end.kind == "end" and end.price == pytest.approx(101.5 * (1 - 0.001))
    assert end.fee == pytest.approx(abs(end.qty) * end.price * 0.0005)
    assert info["position_qty"] == 0.0 and info["equity"] == info["cash"]


def test_daily_loss_limit_halts_until_the_next_utc_day():
    # bars 23:56 .. 00:02 UTC: a 3 % loss on the first day's last bars breaches 2 %
    rows = [(100, 100.2, 99.8, 100)] * 3 + [(99, 99.2, 96.5, 97), (97, 97.5, 96.8, 97),
                                            (97, 97.5, 96.8, 97), (97, 97.5, 96.8, 97),
                                            (97, 97.5, 96.8, 97)]
    frame = candles(rows)
    frame["ts"] = frame["ts"] + pd.Timedelta(hours=23, minutes=56)
    env = make_env(frame, dict(BASE, daily_loss_limit=0.02, stop_loss_bps=5000.0,
                               risk_pct=1.0, take_profit_bps=0.0), record_fills=True)
    env.reset(seed=0, options={"start": 1})
    env.step(LONG)  # fills at 23:58's open
    _, _, terminated, _, info = env.step(LONG)  # 23:59 closes 3 % down: the breach
    assert info["guardrail"] == 1.0 and info["halted"] == 2.0 and not terminated
    _, _, terminated, _, info = env.step(LONG)  # 00:00: closed at the open
    assert terminated and fills_of(env)[-1].kind == "guardrail" and fills_of(env)[-1].bar == 4


def test_max_total_loss_is_a_guardrail_for_good():
    rows = QUIET + [(100, 100.2, 99.9, 100), (100, 100, 94, 94), (94, 95, 93, 94),
                    (94, 95, 93, 94)]
    env = env_on(rows, max_total_loss=0.05, stop_loss_bps=5000.0, risk_pct=1.0,
                 take_profit_bps=0.0)
    env.step(LONG)
    info = env.step(LONG)[4]
    assert info["guardrail"] == 1.0 and info["halted"] == 1.0 and info["kill_switch"] == 0.0
    assert env.step(LONG)[2]  # terminated after the exit


def test_borrow_of_a_short_and_funding_are_charged_per_bar():
    rows = QUIET + [(100, 100.2, 99.9, 100)] + [(101, 101.5, 100.5, 101)] * 3
    env = env_on(rows, borrow_rate_annual=0.5, funding_rate_8h=0.001, stop_loss_bps=5000.0,
                 take_profit_bps=0.0)
    info = env.step(SHORT)[4]
    qty = info["position_qty"]
    assert qty < 0
    assert info["borrow_cost"] == pytest.approx(-qty * 100 * 0.5 / (365 * 24 * 60))
    # the short receives positive funding: a negative cost
    assert info["funding_cost"] == pytest.approx(qty * 100 * 0.001 / 480)
    before = info["equity"]
    info = env.step(SHORT)[4]
    assert info["equity"] == pytest.approx(before + qty * (101 - 100) - info["borrow_cost"]
                                           - info["funding_cost"])


def test_leverage_cap_and_risk_sizing():
    rows = QUIET + [(100, 100.2, 99.9, 100)] * 2
    env = env_on(rows, stop_loss_bps=50.0, max_leverage=1.5)
    env.step(LONG)  # 1 % / 0.5 % = 2x, capped at 1.5x
    assert fills_of(env)[-1].qty * 100 == pytest.approx(15_000)
    env = env_on(rows, stop_loss_bps=400.0, max_leverage=3.0)
    env.step(SHORT)  # 1 % / 4 % = 0.25x
    assert fills_of(env)[-1].qty * 100 == pytest.approx(-2_500)


def test_nudge_moves_stop_within_bounds():
    rows = QUIET + [(100, 100.2, 99.9, 100)] * 40
    env = make_env(candles(rows), dict(BASE, nudge=True, nudge_step_bps=10.0,
                                       stop_loss_bounds_bps=[50.0, 130.0],
                                       take_profit_bounds_bps=[100.0, 300.0]))
    env.reset(seed=0, options={"start": 1})
    distances = [env.step([1, 2, 0])[4]["stop_distance"] for _ in range(6)]
    assert distances[:3] == pytest.approx([0.011, 0.012, 0.013]) and distances[-1] == 0.013
    infos = [env.step([1, 0, 2])[4] for _ in range(20)]
    assert infos[-1]["stop_distance"] == pytest.approx(0.005)
    assert infos[-1]["take_profit_distance"] == pytest.approx(0.03)


def test_observation_is_causal():
    rng = np.random.default_rng(1)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.002, 300)))
    rows = [(c, c * 1.001, c * 0.999, c) for c in close]
    frame = candles(rows)
    frame["f"] = rng.normal(size=300)
    changed = frame.copy()
    changed.loc[150:, ["open", "high", "low", "close"]] *= 1.5
    changed.loc[150:, "f"] += 10
    cfg = dict(BASE, window=8, norm_window=50, norm_min_periods=10)
    a, b = make_env(frame, cfg), make_env(changed, cfg)
    oa, _ = a.reset(options={"start": 100})
    ob, _ = b.reset(options={"start": 100})
    for _ in range(49):  # up to bar 149: identical; the future never leaks in
        np.testing.assert_array_equal(oa, ob)
        oa = a.step(LONG)[0]
        ob = b.step(LONG)[0]
    np.testing.assert_array_equal(oa, ob)
    assert not np.array_equal(a.step(LONG)[0], b.step(LONG)[0])


def test_episode_never_spans_a_long_gap():
    n = 3000
    minutes = np.arange(n)
    minutes = minutes + 20 * (minutes // 250)  # a 20-minute hole every 250 bars
    minutes[1000:] += 3  # and one 4-minute step, under the limit
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    frame = pd.DataFrame({
        "ts": pd.to_datetime(1_704_067_200_000 + 60_000 * minutes, unit="ms", utc=True),
        "open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
        "volume": 1.0})
    cfg = {"window": 16, "episode_length": 100, "max_gap_minutes": 5.0, "norm_min_periods": 5}
    env = make_env(frame, cfg, seed=0)
    ts = frame["ts"].astype("int64").to_numpy() // 10**6
    for _ in range(300):
        _, info = env.reset()
        start = info["bar"]
        span = ts[start - 15: env.episode_end + 1]
        assert np.diff(span).max() <= 5 * 60_000
    seq = make_env(frame, dict(cfg, episode_length=None, random_start=False), seed=0)
    _, info = seq.reset(seed=0)
    assert seq.episode_end - info["bar"] < 250
    assert math.isfinite(info["equity"])
