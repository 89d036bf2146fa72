"""TradeVecEnv: N trading environments stepped together in vectorized numpy.

Semantics are those of N :class:`~tradecore_lib.env.trading_env.TradingEnv` (same frame, same
preset) seeded ``seed + i``, behind SB3's ``DummyVecEnv``: same observations, rewards, dones and
infos, bit for bit, including auto-reset, ``terminal_observation`` and
``TimeLimit.truncated``. All N envs share one :class:`MarketData`; a step gathers the N
observation windows from its strided view into one fresh ``(N, W * C + A)`` float32 array.

Infos: ``step_wait`` returns a sequence of N mappings built lazily from the step's (N,) arrays
(they are snapshots: later steps do not change them); envs that finished get a plain dict with
``terminal_observation`` and ``TimeLimit.truncated``. Vectorized consumers can read the arrays
directly from :attr:`TradeVecEnv.step_info`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from tradecore_lib.env.config import EnvConfig, load_env_config
from tradecore_lib.env.execution import BatchAccount, BatchExecutionEngine
from tradecore_lib.env.observation import MarketData
from tradecore_lib.env.reward import RewardFn
from tradecore_lib.env.risk import RiskGuard
from tradecore_lib.env.spaces import (
    START_BLOCK,
    account_matrix,
    action_space,
    draw_start_block,
    observation_space,
)

_INT_KEYS = frozenset({"bar"})


class InfoView(MutableMapping):
    """The info of env ``i`` at one step, read from that step's (N,) arrays on access.

    Writes go to a private overlay; :meth:`copy` returns a plain dict.
    """

    __slots__ = ("_arrays", "_i", "_extra")

    def __init__(self, arrays: dict[str, np.ndarray], i: int) -> None:
        self._arrays = arrays
        self._i = i
        self._extra: dict[str, Any] | None = None

    def __getitem__(self, key: str) -> Any:
        if self._extra is not None and key in self._extra:
            return self._extra[key]
        value = self._arrays[key][self._i]
        return int(value) if key in _INT_KEYS else float(value)

    def __setitem__(self, key: str, value: Any) -> None:
        if self._extra is None:
            self._extra = {}
        self._extra[key] = value

    def __delitem__(self, key: str) -> None:
        if self._extra is None or key not in self._extra:
            raise KeyError(key)
        del self._extra[key]

    def __contains__(self, key: object) -> bool:
        return key in self._arrays or (self._extra is not None and key in self._extra)

    def get(self, key: str, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __iter__(self) -> Iterator[str]:
        yield from self._arrays
        if self._extra is not None:
            yield from (k for k in self._extra if k not in self._arrays)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, Any]:
        return dict(self.items())

    def __repr__(self) -> str:
        return f"InfoView({self.copy()!r})"


class StepInfos(Sequence):
    """The N infos of one step; entries are materialized (and cached) on access."""

    __slots__ = ("_arrays", "_cache", "_n")

    def __init__(self, arrays: dict[str, np.ndarray], done_infos: dict[int, dict[str, Any]],
                 n: int) -> None:
        self._arrays = arrays
        self._cache: dict[int, MutableMapping] = dict(done_infos)
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        info = self._cache.get(index)
        if info is None:
            info = self._cache[index] = InfoView(self._arrays, index)
        return info


class TradeVecEnv(VecEnv):
    """N trading envs on one frame, stepped in one vectorized call (an SB3 ``VecEnv``).

    Args:
        data: the frame (``ts``, OHLCV, numeric features) or prepared :class:`MarketData`.
        n_envs: number of environments N.
        preset: env preset name in ``configs/env/``, a mapping, or an :class:`EnvConfig`.

    Seeding follows SB3: ``seed(s)`` makes the next ``reset()`` seed env ``i`` with ``s + i``;
    each env keeps its own generator, so env ``i`` matches ``TradingEnv.reset(seed=s + i)``.
    Shapes: observations ``(N, W * C + A)`` float32, rewards ``(N,)`` float32, dones ``(N,)``
    bool; actions ``(N,)`` ints (discrete), ``(N, 3)`` ints (discrete + nudge) or
    ``(N, 1|3)`` floats (continuous).
    """

    def __init__(self, data: pd.DataFrame | MarketData, n_envs: int,
                 preset: str | Mapping[str, Any] | EnvConfig = "default") -> None:
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        self.cfg = cfg = load_env_config(preset)
        self.data = data if isinstance(data, MarketData) else MarketData.from_frame(data, cfg)
        self.render_mode = None
        super().__init__(n_envs, observation_space(cfg, self.data.n_columns), action_space(cfg))
        n = n_envs
        self.risk = RiskGuard(cfg)
        self.engine = BatchExecutionEngine(cfg, self.risk)
        self.reward_fn = RewardFn(cfg)
        self._wc = cfg.window * self.data.n_columns
        self._obs_dim = self._wc + cfg.account_size
        self._positions = np.asarray(cfg.positions, dtype=np.float64)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._blocks = np.zeros((n, START_BLOCK), dtype=np.int64)
        self._block_pos = np.full(n, START_BLOCK, dtype=np.int64)
        self._next_bar = np.full(n, int(self.data.starts[0]), dtype=np.int64)
        self.account = BatchAccount.fresh(cfg, n)
        self._t = np.full(n, -1, dtype=np.int64)
        self._end = np.full(n, -1, dtype=np.int64)
        self._actions: np.ndarray | None = None
        self.step_info: dict[str, np.ndarray] = {}
        self._all = np.arange(n)

    # -- episode starts -------------------------------------------------------------------
    def _draw_starts(self, idx: np.ndarray) -> np.ndarray:
        """Next start bar of each env in ``idx`` (advances their draws)."""
        starts = self.data.starts
        if not self.cfg.random_start:
            k = np.searchsorted(starts, self._next_bar[idx])
            return starts[np.where(k < len(starts), k, 0)]
        for i in idx[self._block_pos[idx] >= START_BLOCK]:  # once per START_BLOCK episodes
            rng = self._rngs[i]
            if rng is None:
                rng, _ = seeding.np_random(None)
                self._rngs[i] = rng
            self._blocks[i] = draw_start_block(rng, len(starts))
            self._block_pos[i] = 0
        picked = starts[self._blocks[idx, self._block_pos[idx]]]
        self._block_pos[idx] += 1
        return picked

    def _begin(self, idx: np.ndarray) -> None:
        start = self._draw_starts(idx)
        self._t[idx] = start
        self._end[idx] = self.data.episode_end[start]
        mask = np.zeros(self.num_envs, dtype=bool)
        mask[idx] = True
        self.account.reset_where(mask, self.cfg)

    def reset(self) -> np.ndarray:
        """Reset every env (using the seeds and options set by ``seed()``/``set_options()``)."""
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self._rngs[i], _ = seeding.np_random(seed)
                self._block_pos[i] = START_BLOCK
                self._next_bar[i] = int(self.data.starts[0])
            elif self._t[i] >= 0:
                self._next_bar[i] = self._t[i]
        forced = {i: int(opt["start"]) for i, opt in enumerate(self._options)
                  if opt and "start" in opt}
        valid = set(self.data.starts.tolist())
        for i, start in forced.items():
            if start not in valid:
                raise ValueError(f"options['start']={start} of env {i} is not a valid start")
        self._begin(np.array([i for i in range(self.num_envs) if i not in forced], dtype=int))
        for i, start in forced.items():
            self._t[i] = start
            self._end[i] = self.data.episode_end[start]
        if forced:
            mask = np.zeros(self.num_envs, dtype=bool)
            mask[list(forced)] = True
            self.account.reset_where(mask, self.cfg)
        self.reset_infos = [{"equity": float(self.account.equity[i]), "bar": int(self._t[i])}
                            for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return self._observations(self._all)

    # -- step -----------------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def _decode(self, actions: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        a = self.account
        if cfg.action_mode == "discrete":
            act = np.asarray(actions).reshape(self.num_envs, -1)
            target = self._positions[act[:, 0].astype(np.int64)]
            if not cfg.nudge:
                return target
            d_sl = (act[:, 1].astype(np.int64) - 1).astype(np.float64)
            d_tp = (act[:, 2].astype(np.int64) - 1).astype(np.float64)
        else:
            act = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
            act = act.astype(np.float64)
            target = np.clip(act[:, 0], -1.0, 1.0)
            if not cfg.nudge:
                return target
            d_sl = np.clip(act[:, 1], -1.0, 1.0)
            d_tp = np.clip(act[:, 2], -1.0, 1.0)
        step = float(cfg.nudge_step_bps)
        sl_lo, sl_hi = (float(v) for v in cfg.stop_loss_bounds_bps)
        tp_lo, tp_hi = (float(v) for v in cfg.take_profit_bounds_bps)
        a.sl_bps = np.minimum(np.maximum(a.sl_bps + d_sl * step, sl_lo), sl_hi)
        a.tp_bps = np.where(a.tp_bps > 0.0,
                            np.minimum(np.maximum(a.tp_bps + d_tp * step, tp_lo), tp_hi),
                            a.tp_bps)
        return target

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, StepInfos]:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        if (self._t < 0).any():
            raise RuntimeError("call reset() before step()")
        a = self.account
        d = self.data
        target = self._decode(self._actions)
        self._actions = None
        i = self._t + 1
        c = d.close[i]
        equity_prev = a.equity
        dd_prev = a.drawdown
        market_fee, stop_fee, limit_fee = self.engine.execute(
            a, target, d.open[i], d.high[i], d.low[i], c)
        fees = market_fee + stop_fee + limit_fee
        reward, r_pnl, r_fee, r_dd = self.reward_fn.terms_batch(
            equity_prev, a.equity, fees, dd_prev, a.drawdown)
        self._t = i
        terminated = self.risk.killed_batch(a.equity, a.drawdown)
        truncated = ~terminated & (i >= self._end)
        dones = terminated | truncated
        sl = a.sl_bps / 10_000.0
        arrays = {
            "reward_pnl": r_pnl, "reward_fee": r_fee, "reward_drawdown": r_dd,
            "target_position": target,
            "risk_units": self.risk.risk_units_batch(a.qty, c, sl, a.equity),
            "stop_distance": sl, "take_profit_distance": a.tp_bps / 10_000.0,
            "market_fee": market_fee, "limit_fee": limit_fee, "stop_fee": stop_fee,
            "fees": fees, "equity": a.equity, "cash": a.cash, "position_qty": a.qty,
            "position_value": a.qty * c, "drawdown": a.drawdown, "bar": i,
        }
        self.step_info = arrays
        obs = self._observations(self._all)
        done_infos: dict[int, dict[str, Any]] = {}
        if dones.any():
            done_idx = np.flatnonzero(dones)
            for j in done_idx:  # only the envs whose episode ended this step
                info = InfoView(arrays, int(j)).copy()
                info["terminal_observation"] = obs[j].copy()
                info["TimeLimit.truncated"] = bool(truncated[j])
                done_infos[int(j)] = info
            self._next_bar[done_idx] = i[done_idx]
            self._begin(done_idx)
            obs[done_idx] = self._observations(done_idx)
        return obs, reward.astype(np.float32), dones, StepInfos(arrays, done_infos,
                                                                 self.num_envs)

    def _observations(self, idx: np.ndarray) -> np.ndarray:
        """(len(idx), W * C + A) float32 observations of the envs in ``idx``."""
        a = self.account
        t = self._t[idx]
        obs = np.empty((len(idx), self._obs_dim), dtype=np.float32)
        # one gather of the N windows from the strided view (a take with out= would copy
        # the whole view first)
        obs[:, : self._wc] = self.data.windows[t - (self.cfg.window - 1)]
        if len(idx) == self.num_envs:  # every env: no need to gather the account arrays
            account_matrix(self.cfg, a.qty, a.cash, a.entry, a.equity, self.data.close[t],
                           a.drawdown, a.bars_in_pos, a.sl_bps, a.tp_bps, obs[:, self._wc:])
        else:
            account_matrix(self.cfg, a.qty[idx], a.cash[idx], a.entry[idx], a.equity[idx],
                           self.data.close[t], a.drawdown[idx], a.bars_in_pos[idx],
                           a.sl_bps[idx], a.tp_bps[idx], obs[:, self._wc:])
        return obs

    # -- VecEnv plumbing ------------------------------------------------------------------
    def close(self) -> None:
        return None

    def _indices(self, indices: VecEnvIndices) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        if isinstance(indices, int):
            return [indices]
        return list(indices)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attributes are shared by all N envs (one preset, one frame)."""
        return [getattr(self, attr_name) for _ in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        method = getattr(self, method_name)
        return [method(*method_args, **method_kwargs) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._indices(indices)]

    @property
    def bars(self) -> np.ndarray:
        """(N,) frame row of each env's current bar."""
        return self._t.copy()
