"""TradeVecEnv: N trading environments stepped together in vectorized numpy.

Semantics are those of N :class:`~tradecore_lib.env.trading_env.TradingEnv` (same frame, same
preset) seeded ``seed + i``, behind SB3's ``DummyVecEnv``: same observations, rewards, dones and
infos, bit for bit, including auto-reset, ``terminal_observation`` and
``TimeLimit.truncated``. All N envs share one :class:`MarketData`; a step plays the bar for
the N accounts in one numba loop and copies each env's window (a contiguous run of
``MarketData.values``) straight into one fresh ``(N, W * C + A)`` float32 array (see
:mod:`tradecore_lib.env.kernels`). The array is fresh every step because SB3's on-policy
rollout still reads the previous observation after ``step()`` returns.

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
from tradecore_lib.env.execution import BatchAccount
from tradecore_lib.env.kernels import INFO_ROWS, step_accounts, write_observations
from tradecore_lib.env.observation import MarketData
from tradecore_lib.env.reward import RewardFn
from tradecore_lib.env.risk import BPS, RiskGuard
from tradecore_lib.env.spaces import (
    START_BLOCK,
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
        # SB3 calls get() on every env's info every step (episode / is_success): keep it lean.
        if self._extra is not None and key in self._extra:
            return self._extra[key]
        array = self._arrays.get(key)
        if array is None:
            return default
        value = array[self._i]
        return int(value) if key in _INT_KEYS else float(value)

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
            return [self._view(i) for i in range(*index.indices(self._n))]
        if index < 0:
            index += self._n
        if not 0 <= index < self._n:
            raise IndexError(index)
        return self._view(index)

    def __iter__(self) -> Iterator[MutableMapping]:
        # VecMonitor copies infos[:] and SB3 iterates them every step; skip index checks.
        return map(self._view, range(self._n))

    def _view(self, index: int) -> MutableMapping:
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
        risk = RiskGuard(cfg)
        reward = RewardFn(cfg)
        # step_accounts' scalar parameters after `nudge`, taken from the single env's parts
        self._step_params = (
            float(cfg.nudge_step_bps), *(float(v) for v in cfg.stop_loss_bounds_bps),
            *(float(v) for v in cfg.take_profit_bounds_bps), float(cfg.maker_fee),
            float(cfg.taker_fee), float(cfg.slippage_bps) / BPS, float(cfg.rebalance_threshold),
            risk.risk_pct, risk.max_leverage, risk.max_drawdown, reward.scale, reward.k_fee,
            reward.k_dd,
        )
        self._wc = cfg.window * self.data.n_columns
        self._obs_dim = self._wc + cfg.account_size
        self._positions = np.asarray(cfg.positions, dtype=np.float64)
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._blocks = np.zeros((n, START_BLOCK), dtype=np.int64)
        self._block_pos = np.full(n, START_BLOCK, dtype=np.int64)
        self._next_bar = np.full(n, int(self.data.starts[0]), dtype=np.int64)
        self.account = BatchAccount(cfg, n)
        self._zeros = np.zeros(n)  # the nudges of presets without nudge
        self._t = np.full(n, -1, dtype=np.int64)
        self._end = np.full(n, -1, dtype=np.int64)
        self._actions: np.ndarray | None = None
        self.step_info: dict[str, np.ndarray] = {}
        self._all = np.arange(n, dtype=np.int64)

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
        return self._observations(
            self._all, np.empty((self.num_envs, self._obs_dim), dtype=np.float32))

    # -- step -----------------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def _decode(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N,) float64 target fractions and stop-loss / take-profit nudges (in steps)."""
        cfg = self.cfg
        if cfg.action_mode == "discrete":
            act = np.asarray(actions).reshape(self.num_envs, -1)
            target = self._positions[act[:, 0].astype(np.int64)]
            if not cfg.nudge:
                return target, self._zeros, self._zeros
            return (target, (act[:, 1].astype(np.int64) - 1).astype(np.float64),
                    (act[:, 2].astype(np.int64) - 1).astype(np.float64))
        act = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        # transposed copy: each column becomes a contiguous (N,) row
        act = np.clip(act.astype(np.float64), -1.0, 1.0).T.copy()
        if not cfg.nudge:
            return act[0], self._zeros, self._zeros
        return act[0], act[1], act[2]

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, StepInfos]:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        if (self._t < 0).any():
            raise RuntimeError("call reset() before step()")
        d = self.data
        n = self.num_envs
        target, d_sl, d_tp = self._decode(self._actions)
        self._actions = None
        i = self._t + 1
        # fresh outputs every step: the infos and the caller keep them
        info = np.empty((len(INFO_ROWS), n))
        reward = np.empty(n, dtype=np.float32)
        truncated = np.empty(n, dtype=bool)
        dones = np.empty(n, dtype=bool)
        step_accounts(self.account.state, target, d_sl, d_tp, i, self._end, d.open, d.high,
                      d.low, d.close, self.cfg.nudge, *self._step_params, info, reward,
                      truncated, dones)
        self._t = i
        arrays = dict(zip(INFO_ROWS, info, strict=True))
        arrays["bar"] = i
        self.step_info = arrays
        obs = self._observations(self._all, np.empty((n, self._obs_dim), dtype=np.float32))
        done_infos: dict[int, dict[str, Any]] = {}
        if dones.any():
            done_idx = np.flatnonzero(dones)
            # only the envs whose episode ended this step; one tolist() gives the Python
            # floats an InfoView would (several times faster than InfoView.copy() per env)
            for j, row, trunc in zip(done_idx.tolist(), info[:, done_idx].T.tolist(),
                                     truncated[done_idx].tolist(), strict=True):
                done_info: dict[str, Any] = dict(zip(INFO_ROWS, row, strict=True))
                done_info["bar"] = int(i[j])
                done_info["terminal_observation"] = obs[j].copy()
                done_info["TimeLimit.truncated"] = trunc
                done_infos[j] = done_info
            self._next_bar[done_idx] = i[done_idx]
            self._begin(done_idx)
            self._observations(done_idx, obs)
        return obs, reward, dones, StepInfos(arrays, done_infos, n)

    def _observations(self, envs: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Write the observations of the envs in ``envs`` into their rows of (N, W * C + A)
        ``out``; returns ``out``."""
        cfg = self.cfg
        write_observations(self.data.values, cfg.window, self._t, envs, self.account.state,
                           self.data.close, cfg.nudge, float(cfg.time_scale_bars),
                           float(cfg.obs_clip), out)
        return out

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
