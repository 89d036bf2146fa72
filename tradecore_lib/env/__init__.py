"""The trading environment: one engine (numba kernels), the batched and the single env.

Public API::

    from tradecore_lib.env import make_env, make_vec_env

    env = make_env(frame, preset="default", seed=0)          # gymnasium.Env
    venv = make_vec_env(frame, n_envs=256, preset="default", seed=0)  # SB3 VecEnv

``frame`` is a pandas DataFrame with ``ts``, ``open``, ``high``, ``low``, ``close``,
``volume`` and numeric feature columns (every numeric, non-boolean column other than ``ts``,
OHLCV and ``trades``); ``preset`` is a name in ``configs/env/``, a mapping (optionally
``{"preset": "<base>", ...overrides}``) or an :class:`EnvConfig`. The rules of trading are
in :mod:`tradecore_lib.env.kernels`, once; both envs and the evaluation backtest step them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tradecore_lib.env.config import EnvConfig, available_env_presets, load_env_config

if TYPE_CHECKING:
    import pandas as pd

    from tradecore_lib.env.engine import Engine, FillLog
    from tradecore_lib.env.kernels import FILL_KINDS
    from tradecore_lib.env.observation import FrameError, MarketData
    from tradecore_lib.env.trading_env import INFO_KEYS, TradingEnv
    from tradecore_lib.env.vec_env import TradeVecEnv

# Loaded on first use: validating env presets (tradecore_lib.env.config) when the code location
# loads must not import numba (the kernels, ~0.3 s) nor SB3 and torch (TradeVecEnv).
_LAZY = {
    "Engine": "engine", "FillLog": "engine", "FILL_KINDS": "kernels", "FrameError": "observation",
    "MarketData": "observation", "INFO_KEYS": "trading_env", "TradingEnv": "trading_env",
    "TradeVecEnv": "vec_env",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


Preset = str | Mapping[str, Any] | EnvConfig

__all__ = [
    "FILL_KINDS", "INFO_KEYS", "Engine", "EnvConfig", "FillLog", "FrameError", "MarketData",
    "TradeVecEnv", "TradingEnv", "available_env_presets", "load_env_config", "make_env",
    "make_vec_env",
]


def make_env(frame: pd.DataFrame | MarketData, preset: Preset = "default",
             seed: int | None = None, record_fills: bool = False) -> TradingEnv:
    """One :class:`TradingEnv` on ``frame``; ``seed`` seeds its first ``reset()``.

    The returned env is not reset yet when ``seed`` is None; with a seed it is reset once
    (``env.reset(seed=seed)``) so its start draws are fixed, and the next ``reset()`` without a
    seed continues them.
    """
    from tradecore_lib.env.trading_env import TradingEnv

    env = TradingEnv(frame, preset, record_fills)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def make_vec_env(frame: pd.DataFrame | MarketData, n_envs: int, preset: Preset = "default",
                 seed: int | None = None, record_fills: bool = False) -> TradeVecEnv:
    """A :class:`TradeVecEnv` of ``n_envs`` envs on ``frame``; env ``i`` is seeded ``seed + i``
    at the first ``reset()`` (SB3's convention, as ``VecEnv.seed``)."""
    from tradecore_lib.env.vec_env import TradeVecEnv

    venv = TradeVecEnv(frame, n_envs, preset, record_fills)
    if seed is not None:
        venv.seed(seed)
        venv.action_space.seed(seed)
    return venv
