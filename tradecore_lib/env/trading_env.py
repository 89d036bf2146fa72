"""TradingEnv: one gymnasium environment over a candles + features frame.

A thin N = 1 view over :class:`~tradecore_lib.env.engine.Engine`, the state and kernels the
batched training env and the evaluation backtest use (see :mod:`tradecore_lib.env.kernels`
for the rules). Each step plays one bar: the action chosen after bar ``t`` closed fills at
bar ``t + 1``'s open, the reward is computed at bar ``t + 1``'s close and the observation is
the window ending at bar ``t + 1`` plus the account vector (:mod:`tradecore_lib.env.spaces`).

``terminated``: a breach of the kill switch (drawdown >= ``max_drawdown`` or equity <= 0) or
of a guardrail (``daily_loss_limit``, ``max_total_loss``) at a close, once the position has
been closed at the next open (or at once when flat). ``truncated``: the end of the episode
(``episode_length`` decisions, or the end of the data segment before the next gap longer than
``max_gap_minutes``), where an open position is closed at the close, charged. There is no
auto-reset: call ``reset()`` after either.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd

from tradecore_lib.env.config import EnvConfig, load_env_config
from tradecore_lib.env.engine import Engine, StartDraws
from tradecore_lib.env.kernels import EQUITY, INFO_ROWS, STATE_ROWS
from tradecore_lib.env.observation import MarketData
from tradecore_lib.env.spaces import action_space, observation_space

INFO_KEYS = (*INFO_ROWS, "bar")
"""Keys of every step's info. Fees, costs and money are quote currency for the bar just played
(``exit_fee``: the forced closes, kill switch, guardrail or end; ``fees`` all of them;
``borrow_cost`` / ``funding_cost`` the holding costs, funding negative when received),
``position_qty`` base currency, ``stop_distance``/``take_profit_distance``/``drawdown``
fractions (0.01 = 1 %; drawdown from the high-water mark), ``target_position`` the signed
target fraction in [-1, 1], ``risk_units`` the loss at the stop in units of
``risk_pct * equity``, ``kill_switch`` / ``guardrail`` 1.0 on the bar of a breach, ``halted``
0 (trading), 1 (for good) or 2 (until the next UTC day), ``bar`` the frame row just played."""

_ONLY = np.zeros(1, dtype=np.int64)  # the index array of the one account


class TradingEnv(gym.Env):
    """A single trading environment (see the module docstring for the step semantics).

    Args:
        data: the frame (``ts``, OHLCV, numeric feature columns) or prepared :class:`MarketData`.
        preset: env preset name in ``configs/env/``, a mapping, or an :class:`EnvConfig`.
        record_fills: keep the episode's fills (:meth:`fills`).
    """

    metadata = {"render_modes": []}

    def __init__(self, data: pd.DataFrame | MarketData,
                 preset: str | Mapping[str, Any] | EnvConfig = "default",
                 record_fills: bool = False) -> None:
        super().__init__()
        self.cfg = cfg = load_env_config(preset)
        self.data = data if isinstance(data, MarketData) else MarketData.from_frame(data, cfg)
        self.observation_space = observation_space(cfg, self.data.n_columns)
        self.action_space = action_space(cfg)
        self.engine = Engine(self.data, cfg, 1, record_fills)
        self._starts = StartDraws(self.data, cfg.random_start, 1)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode. ``seed`` re-seeds the start draws (and sequential mode restarts
        at the first valid bar); ``options={"start": bar}`` forces a start bar (a valid one)."""
        super().reset(seed=seed)
        engine = self.engine
        if seed is not None or self._starts.rngs[0] is None:
            self._starts.seed(0, self.np_random)
        elif engine.t[0] >= 0:
            self._starts.next_bar[0] = engine.t[0]
        if options and "start" in options:
            start = int(options["start"])
            self._starts.check(start)
            starts = np.array([start])
        else:
            starts = self._starts.draw(_ONLY)
        engine.begin(_ONLY, starts)
        if engine.fills is not None:
            engine.fills.clear()
        return self._observation(), {"equity": float(engine.state[EQUITY, 0]), "bar": self.bar}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        engine = self.engine
        if engine.t[0] < 0:
            raise RuntimeError("call reset() before step()")
        if engine.t[0] >= engine.end[0]:
            raise RuntimeError("the episode is over; call reset()")
        info_m, reward, truncated, dones = engine.step(action)
        info = dict(zip(INFO_ROWS, info_m[:, 0].tolist(), strict=True))
        info["bar"] = self.bar
        trunc = bool(truncated[0])
        return (self._observation(), float(reward[0]), bool(dones[0]) and not trunc, trunc,
                info)

    def _observation(self) -> np.ndarray:
        """(W * C + A,) float32: the window ending at the current bar, then the account."""
        out = np.empty((1, self.engine.obs_dim), dtype=np.float32)
        return self.engine.observe(_ONLY, out)[0]

    def fills(self) -> Any:
        """The current episode's fills as a table (see :meth:`FillLog.table`)."""
        if self.engine.fills is None:
            raise RuntimeError("make the env with record_fills=True to keep its fills")
        return self.engine.fills.table(self.data.ts_ms)

    @property
    def account(self) -> dict[str, float]:
        """The account's fields (see :data:`~tradecore_lib.env.kernels.STATE_ROWS`)."""
        return dict(zip(STATE_ROWS, self.engine.state[:, 0].tolist(), strict=True))

    @property
    def bar(self) -> int:
        """Frame row of the current bar (the last one observed)."""
        return int(self.engine.t[0])

    @property
    def episode_end(self) -> int:
        """Frame row of the last bar of the current episode."""
        return int(self.engine.end[0])
