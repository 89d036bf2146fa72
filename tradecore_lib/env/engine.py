"""The accounts of N envs on one :class:`MarketData`, stepped by the kernels.

:class:`Engine` holds what the kernels of :mod:`tradecore_lib.env.kernels` read and write (the
(S, N) account matrix, each account's current bar and episode end, the preset's parameter
vector, the optional fill log), plus the two things around a step that every env needs:
:func:`decode_actions` (env actions to target fractions and nudges) and :class:`StartDraws`
(episode starts). :class:`~tradecore_lib.env.vec_env.TradeVecEnv` (training, N envs with
auto-reset) and :class:`~tradecore_lib.env.trading_env.TradingEnv` (one gymnasium env, N = 1)
are thin views over it; the evaluation backtest drives :func:`~tradecore_lib.env.kernels.
walk_accounts` with :func:`fresh_state`, :func:`kernel_params` and a :class:`FillLog`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from gymnasium.utils import seeding

from tradecore_lib.env import kernels as K
from tradecore_lib.env.config import EnvConfig
from tradecore_lib.env.observation import MarketData
from tradecore_lib.env.spaces import START_BLOCK, draw_start_block

BPS = 10_000.0
MINUTES_PER_YEAR = 365 * 24 * 60  # borrow accrues over a 365-day year


def kernel_params(cfg: EnvConfig, bar_minutes: float) -> np.ndarray:
    """The float64 parameter vector of ``cfg`` in :data:`~kernels.PARAM_NAMES` order, for
    bars of ``bar_minutes`` minutes (borrow is charged per bar; funding comes per bar in
    :attr:`MarketData.funding`)."""
    scale = float(cfg.reward_scale)
    values = {
        "nudge_step_bps": cfg.nudge_step_bps,
        "sl_lo": cfg.stop_loss_bounds_bps[0], "sl_hi": cfg.stop_loss_bounds_bps[1],
        "tp_lo": cfg.take_profit_bounds_bps[0], "tp_hi": cfg.take_profit_bounds_bps[1],
        "maker_fee": cfg.maker_fee, "taker_fee": cfg.taker_fee,
        "slippage": cfg.slippage_bps / BPS, "rebalance_threshold": cfg.rebalance_threshold,
        "risk_pct": cfg.risk_pct, "max_leverage": cfg.max_leverage,
        "max_drawdown": cfg.max_drawdown, "reward_scale": scale,
        "k_fee": -(cfg.fee_coef * scale), "k_drawdown": -(cfg.drawdown_coef * scale),
        "max_total_loss": cfg.max_total_loss or 0.0,
        "daily_loss_limit": cfg.daily_loss_limit or 0.0,
        "borrow_per_bar": cfg.borrow_rate_annual * bar_minutes / MINUTES_PER_YEAR,
        "initial_cash": cfg.initial_cash,
        "differential_sharpe": 1.0 if cfg.reward == "differential_sharpe" else 0.0,
        "sharpe_eta": cfg.sharpe_eta,
    }
    return np.array([float(values[name]) for name in K.PARAM_NAMES])


def fresh_state(cfg: EnvConfig, n: int) -> np.ndarray:
    """(S, n) float64: ``n`` fresh accounts (flat, ``initial_cash``, the preset's stops, no
    pending exit, no UTC day seen yet)."""
    column = np.zeros(len(K.STATE_ROWS))
    cash = float(cfg.initial_cash)
    column[[K.CASH, K.EQUITY, K.PEAK, K.DAY_START, K.GROSS_PEAK]] = cash
    column[K.SL_BPS] = cfg.stop_loss_bps
    column[K.TP_BPS] = cfg.take_profit_bps
    column[[K.PENDING, K.DAY]] = -1.0
    return np.repeat(column[:, None], n, axis=1)


class FillLog:
    """A growable buffer of recorded fills, in the kernels' layout (rows of
    :data:`~kernels.FILL_COLUMNS`: account, bar, kind, qty, price, fee)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.buffer = np.empty((max(capacity, 1), len(K.FILL_COLUMNS)))
        self.count = np.zeros(1, dtype=np.int64)

    def reserve(self, more: int) -> None:
        """Make room for ``more`` fills beyond those recorded."""
        need = int(self.count[0]) + more
        if need > self.buffer.shape[0]:
            grown = np.empty((max(need, 2 * self.buffer.shape[0]), self.buffer.shape[1]))
            grown[: self.count[0]] = self.buffer[: self.count[0]]
            self.buffer = grown

    def clear(self) -> None:
        self.count[0] = 0

    @property
    def rows(self) -> np.ndarray:
        """(F, 6) view of the recorded fills, in the order they happened."""
        return self.buffer[: self.count[0]]

    def table(self, ts_ms: np.ndarray, account: int | None = None) -> pa.Table:
        """The fills (of ``account``, or all) as a table: ``bar`` int32, ``ts_ms`` int64 (open
        time of the fill's bar), ``kind`` string, ``qty`` (signed base units), ``price``
        (quote per base) and ``fee`` (quote) float64."""
        rows = self.rows
        if account is not None:
            rows = rows[rows[:, 0] == account]
        bars = rows[:, 1].astype(np.int64)
        kinds = np.asarray(K.FILL_KINDS, dtype=object)[rows[:, 2].astype(np.int64)]
        return pa.table({
            "bar": pa.array(bars.astype(np.int32), pa.int32()),
            "ts_ms": pa.array(ts_ms[bars], pa.int64()),
            "kind": pa.array(kinds.tolist(), pa.string()),
            "qty": pa.array(rows[:, 3], pa.float64()),
            "price": pa.array(rows[:, 4], pa.float64()),
            "fee": pa.array(rows[:, 5], pa.float64()),
        })




def decode_actions(cfg: EnvConfig, positions: np.ndarray, actions: Any, n: int
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(n,) float64 target fractions and the stop-loss / take-profit nudges (in steps; None
    without nudge) of ``n`` env actions (:func:`~kernels.decode_actions`)."""
    if cfg.action_mode == "discrete":
        act = np.asarray(actions).reshape(n, -1).astype(np.float64)
    else:  # as the env's float32 Box hands them over
        act = np.asarray(actions, dtype=np.float32).reshape(n, -1).astype(np.float64)
    target = np.empty(n)
    d_sl = np.empty(n) if cfg.nudge else None
    d_tp = np.empty(n) if cfg.nudge else None
    K.decode_actions(act, cfg.action_mode == "discrete", cfg.nudge, positions, target,
                     target if d_sl is None else d_sl, target if d_tp is None else d_tp)
    return target, d_sl, d_tp


class StartDraws:
    """Episode starts of N envs: seeded random draws (blocks of :data:`START_BLOCK` per env's
    generator) or, with ``random_start: false``, the data in order."""

    def __init__(self, data: MarketData, random_start: bool, n: int) -> None:
        self.data = data
        self.random_start = random_start
        self.rngs: list[np.random.Generator | None] = [None] * n
        self._blocks = np.zeros((n, START_BLOCK), dtype=np.int64)
        self._block_pos = np.full(n, START_BLOCK, dtype=np.int64)
        self.next_bar = np.full(n, int(data.starts[0]), dtype=np.int64)

    def seed(self, i: int, rng: np.random.Generator) -> None:
        """Env ``i`` draws from ``rng`` from now on; sequential starts restart at the top."""
        self.rngs[i] = rng
        self._block_pos[i] = START_BLOCK
        self.next_bar[i] = int(self.data.starts[0])

    def draw(self, idx: np.ndarray) -> np.ndarray:
        """Next start bar of each env in ``idx`` (advances their draws)."""
        starts = self.data.starts
        if not self.random_start:
            k = np.searchsorted(starts, self.next_bar[idx])
            return starts[np.where(k < len(starts), k, 0)]
        for i in idx[self._block_pos[idx] >= START_BLOCK]:  # once per START_BLOCK episodes
            rng = self.rngs[i]
            if rng is None:
                rng, _ = seeding.np_random(None)
                self.rngs[i] = rng
            self._blocks[i] = draw_start_block(rng, len(starts))
            self._block_pos[i] = 0
        picked = starts[self._blocks[idx, self._block_pos[idx]]]
        self._block_pos[idx] += 1
        return picked

    def check(self, start: int) -> None:
        """Refuse a forced start bar that is not a valid episode start."""
        k = int(np.searchsorted(self.data.starts, start))
        if k >= len(self.data.starts) or int(self.data.starts[k]) != start:
            raise ValueError(f"options['start']={start} is not a valid episode start")


class Engine:
    """N accounts on ``data`` stepped together (see the module docstring).

    Attributes:
        state: (S, N) float64 account matrix, rows :data:`~kernels.STATE_ROWS`.
        t: (N,) int64 current bar of each account (-1 before its first episode).
        end: (N,) int64 last bar of each account's episode.
        fills: the fill log, or None when fills are not recorded.

    ``reward_dtype``: of the step's rewards (float32 for SB3, whose buffers are float32; the
    kernel sums the terms in float64 either way).
    """

    def __init__(self, data: MarketData, cfg: EnvConfig, n: int,
                 record_fills: bool = False, reward_dtype: type = np.float64) -> None:
        self.data = data
        self.cfg = cfg
        self.n = n
        self.params = kernel_params(cfg, data.bar_minutes)
        self.positions = np.asarray(cfg.positions, dtype=np.float64)
        self.state = fresh_state(cfg, n)
        self._fresh = fresh_state(cfg, 1)
        self.t = np.full(n, -1, dtype=np.int64)
        self.end = np.full(n, -1, dtype=np.int64)
        self.fills = FillLog() if record_fills else None
        self._zeros = np.zeros(n)
        self._reward_dtype = reward_dtype
        self.obs_dim = cfg.window * data.n_columns + cfg.account_size

    def begin(self, idx: np.ndarray, starts: np.ndarray) -> None:
        """Start fresh episodes of the accounts ``idx`` at decision bars ``starts``."""
        self.t[idx] = starts
        self.end[idx] = self.data.episode_end[starts]
        self.state[:, idx] = self._fresh

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Play the next bar of every account for env ``actions``.

        Returns fresh arrays: info (len(INFO_ROWS), N) float64, reward (N,) ``reward_dtype``,
        truncated (N,) bool and dones (N,) bool; ``t`` then holds the bar played.
        """
        target, d_sl, d_tp = decode_actions(self.cfg, self.positions, actions, self.n)
        n = self.n
        i = self.t + 1
        info = np.empty((len(K.INFO_ROWS), n))
        reward = np.empty(n, dtype=self._reward_dtype)
        truncated = np.empty(n, dtype=bool)
        dones = np.empty(n, dtype=bool)
        fills = count = None  # the kernels' specialization that records nothing
        if self.fills is not None:
            self.fills.reserve(K.FILLS_PER_BAR * n)
            fills, count = self.fills.buffer, self.fills.count
        d = self.data
        K.step_accounts(self.state, target, self._zeros if d_sl is None else d_sl,
                        self._zeros if d_tp is None else d_tp, i, self.end, d.open, d.high,
                        d.low, d.close, d.day, d.funding, self.params, self.cfg.nudge, info,
                        reward, truncated, dones, fills, count)
        self.t = i
        return info, reward, truncated, dones

    def observe(self, idx: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the observations of the accounts ``idx`` into their rows of (N, W * C + A)
        float32 ``out``; returns ``out``."""
        cfg = self.cfg
        K.write_observations(self.data.values, cfg.window, self.t, idx, self.state,
                             self.data.close, cfg.nudge, float(cfg.time_scale_bars),
                             float(cfg.obs_clip), out)
        return out

    def account(self, name: str) -> np.ndarray:
        """(N,) view of one account field (a name of :data:`~kernels.STATE_ROWS`)."""
        return self.state[K.STATE_ROWS.index(name)]
