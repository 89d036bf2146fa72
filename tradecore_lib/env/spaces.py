"""Observation and action spaces of a preset, the account vector layout, episode-start draws.

Observation: ``Box(-obs_clip, obs_clip, (W * C + A,), float32)`` with ``W = window``, ``C = 5 + F``
columns (see :mod:`tradecore_lib.env.observation`) and the account vector (``A = 5``, 7 with
nudge), every value clipped to ``[-obs_clip, obs_clip]``:

    0 exposure        position value / equity (signed; 1 = long the full equity)
    1 cash_ratio      cash / equity (cash goes negative when long on margin)
    2 unrealized_pnl  qty * (close - entry) / equity
    3 drawdown        1 - equity / peak equity
    4 time_in_pos     bars the position has been open / time_scale_bars
    5 stop_loss_pct   current stop distance in percent (nudge only)
    6 take_profit_pct current take-profit distance in percent (nudge only, 0 = off)

Action:
    discrete:             ``Discrete(len(positions))``: index of the target in ``positions``
    discrete + nudge:     ``MultiDiscrete([len(positions), 3, 3])``: target, stop-loss nudge,
                          take-profit nudge (0 tighten, 1 keep, 2 loosen)
    continuous:           ``Box(-1, 1, (1,))``: target fraction
    continuous + nudge:   ``Box(-1, 1, (3,))``: target, stop nudge, take-profit nudge in steps

The account vector is written by :func:`tradecore_lib.env.kernels.write_observations`.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from tradecore_lib.env.config import EnvConfig

START_BLOCK = 64  # episode starts are drawn in blocks of this many per generator


def observation_space(cfg: EnvConfig, n_columns: int) -> spaces.Box:
    dim = cfg.window * n_columns + cfg.account_size
    clip = float(cfg.obs_clip)
    return spaces.Box(-clip, clip, shape=(dim,), dtype=np.float32)


def action_space(cfg: EnvConfig) -> spaces.Space:
    if cfg.action_mode == "discrete":
        if cfg.nudge:
            return spaces.MultiDiscrete([len(cfg.positions), 3, 3])
        return spaces.Discrete(len(cfg.positions))
    return spaces.Box(-1.0, 1.0, shape=(3 if cfg.nudge else 1,), dtype=np.float32)


def draw_start_block(rng: np.random.Generator, n_starts: int) -> np.ndarray:
    """Indices into the valid starts for the next :data:`START_BLOCK` random episodes."""
    return rng.integers(0, n_starts, size=START_BLOCK)
