"""TradeVecEnv: N trading environments stepped together (an SB3 ``VecEnv``).

A thin view over :class:`~tradecore_lib.env.engine.Engine`: all N envs share one
:class:`MarketData`; a step plays the bar for the N accounts in one kernel call
(:func:`~tradecore_lib.env.kernels.step_accounts`, the one engine) and copies each env's window
(a contiguous run of ``MarketData.values``) straight into one fresh ``(N, W * C + A)`` float32
array. The array is fresh every step because SB3's on-policy rollout still reads the previous
observation after ``step()`` returns. Envs whose episode ended are reset at once (SB3's
auto-reset): their info carries ``terminal_observation`` and ``TimeLimit.truncated``, and
``reset_infos[i]`` the new episode's start (``bar``, ``equity``).

Infos: ``step_wait`` returns a sequence of N mappings built lazily from the step's (N,) arrays
(they are snapshots: later steps do not change them); envs that finished get a plain dict.
Vectorized consumers can read the arrays directly from :attr:`TradeVecEnv.step_info`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices

from tradecore_lib.env.config import EnvConfig, load_env_config
from tradecore_lib.env.engine import Engine, StartDraws
from tradecore_lib.env.kernels import INFO_ROWS
from tradecore_lib.env.observation import MarketData
from tradecore_lib.env.spaces import action_space, observation_space

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
    """N trading envs on one frame, stepped in one kernel call (an SB3 ``VecEnv``).

    Args:
        data: the frame (``ts``, OHLCV, numeric features) or prepared :class:`MarketData`.
        n_envs: number of environments N.
        preset: env preset name in ``configs/env/``, a mapping, or an :class:`EnvConfig`.
        record_fills: keep every fill in :attr:`engine`'s fill log (for tests and audits).

    Seeding follows SB3: ``seed(s)`` makes the next ``reset()`` seed env ``i`` with ``s + i``;
    each env keeps its own generator, so env ``i`` draws the starts of
    ``TradingEnv.reset(seed=s + i)``. Shapes: observations ``(N, W * C + A)`` float32, rewards
    ``(N,)`` float32, dones ``(N,)`` bool; actions ``(N,)`` ints (discrete), ``(N, 3)`` ints
    (discrete + nudge) or ``(N, 1|3)`` floats (continuous).
    """

    def __init__(self, data: pd.DataFrame | MarketData, n_envs: int,
                 preset: str | Mapping[str, Any] | EnvConfig = "default",
                 record_fills: bool = False) -> None:
        if not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be a positive integer, got {n_envs!r}")
        self.cfg = cfg = load_env_config(preset)
        self.data = data if isinstance(data, MarketData) else MarketData.from_frame(data, cfg)
        self.render_mode = None
        super().__init__(n_envs, observation_space(cfg, self.data.n_columns), action_space(cfg))
        self.engine = Engine(self.data, cfg, n_envs, record_fills, reward_dtype=np.float32)
        self.starts = StartDraws(self.data, cfg.random_start, n_envs)
        self._actions: np.ndarray | None = None
        self.step_info: dict[str, np.ndarray] = {}
        self._all = np.arange(n_envs, dtype=np.int64)

    def _begin(self, idx: np.ndarray) -> None:
        self.engine.begin(idx, self.starts.draw(idx))

    def reset(self) -> np.ndarray:
        """Reset every env (using the seeds and options set by ``seed()``/``set_options()``)."""
        engine = self.engine
        for i, seed in enumerate(self._seeds):
            if seed is not None:
                self.starts.seed(i, seeding.np_random(seed)[0])
            elif engine.t[i] >= 0:
                self.starts.next_bar[i] = engine.t[i]
        forced = {i: int(opt["start"]) for i, opt in enumerate(self._options)
                  if opt and "start" in opt}
        for start in forced.values():
            self.starts.check(start)
        self._begin(np.array([i for i in range(self.num_envs) if i not in forced], dtype=int))
        if forced:
            engine.begin(np.array(list(forced)), np.array(list(forced.values())))
        self.reset_infos = [self._start_info(i) for i in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return engine.observe(self._all,
                              np.empty((self.num_envs, engine.obs_dim), dtype=np.float32))

    def _start_info(self, i: int) -> dict[str, Any]:
        return {"equity": float(self.engine.account("equity")[i]), "bar": int(self.engine.t[i])}

    # -- step -----------------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, StepInfos]:
        if self._actions is None:
            raise RuntimeError("step_async() must come before step_wait()")
        engine = self.engine
        if (engine.t < 0).any():
            raise RuntimeError("call reset() before step()")
        info, reward, truncated, dones = engine.step(self._actions)
        self._actions = None
        n = self.num_envs
        bars = engine.t
        arrays = dict(zip(INFO_ROWS, info, strict=True))
        arrays["bar"] = bars
        self.step_info = arrays
        obs = engine.observe(self._all, np.empty((n, engine.obs_dim), dtype=np.float32))
        done_infos: dict[int, dict[str, Any]] = {}
        if dones.any():
            done_idx = np.flatnonzero(dones)
            # only the envs whose episode ended this step; one tolist() gives the Python
            # floats an InfoView would (several times faster than InfoView.copy() per env)
            for j, row, trunc in zip(done_idx.tolist(), info[:, done_idx].T.tolist(),
                                     truncated[done_idx].tolist(), strict=True):
                done_info: dict[str, Any] = dict(zip(INFO_ROWS, row, strict=True))
                done_info["bar"] = int(bars[j])
                done_info["terminal_observation"] = obs[j].copy()
                done_info["TimeLimit.truncated"] = trunc
                done_infos[j] = done_info
            self.starts.next_bar[done_idx] = bars[done_idx]
            engine.t = bars.copy()  # the infos keep `bars`
            self._begin(done_idx)
            engine.observe(done_idx, obs)
            for j in done_idx.tolist():
                self.reset_infos[j] = self._start_info(j)
        return obs, reward, dones, StepInfos(arrays, done_infos, n)

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
        return self.engine.t.copy()
