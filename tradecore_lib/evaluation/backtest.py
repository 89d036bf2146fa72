"""Deterministic backtest: N policies walk one split in order, as N accounts of the one engine.

:func:`run_policies` plays every policy over the same bars with the training env's rules
(:mod:`tradecore_lib.env.kernels`: fills at the next open, fees, slippage, stops, RiskGuard,
holding costs, kill switch, guardrails). The split is walked once: from the frame's row
``decision_start`` (the rows before it only warm the causal normalization and the
observation window, so the first decision is at the split's first bar) to its end, through
every data segment (a run of usable bars with no gap longer than ``max_gap_minutes``; after a
gap, the first ``window`` bars only refill the observation window). Each account is one
account for the whole split: equity and high-water mark carry from one segment to the next.
A position open at a segment's last bar (before a gap, or the split's last bar) is closed at
that bar's close with taker fee and slippage (fill kind ``end``). The kill switch closes the
position at the next open (kind ``kill_switch``) and halts the account for the rest of the
split; the guardrails (``guardrail``) halt it for the rest of the UTC day or for good.

Policies (:data:`PolicySpec`):

* :class:`Target`: a constant target, or a (T,) array of targets decided at each decision
  row (e.g. a matched random policy's), traded under the preset's rules (RiskGuard sizing,
  stops, kill switch); all such accounts walk the split in one kernel pass, no Python per bar;
* :class:`BuyAndHold`: all the equity long at the split's first open (fee and slippage once),
  held through gaps to the last close (fee and slippage once more); no stops, no kill switch;
* an :class:`MlpPolicy` (the trained agent's network, :attr:`Agent.policy
  <tradecore_lib.evaluation.agent.Agent.policy>`): observed and decided bar by bar, in order
  (what it observes depends on its earlier decisions), inside the kernel;
* any :class:`Predictor` (a Python callable), called once per bar with its observations.

Rows: row ``k`` is decision bar ``rows[k]``: the account is marked at that bar's close after
the bar's fills and costs (from the decision of row ``k - 1``), then decides the target that
fills at the next bar's open.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa

from tradecore_lib.env import EnvConfig, MarketData, load_env_config
from tradecore_lib.env import kernels as K
from tradecore_lib.env.engine import FillLog, decode_actions, fresh_state, kernel_params
from tradecore_lib.errors import TradeCoreError

WALK_OVERRIDES = {"random_start": False, "episode_length": None}


class BacktestError(TradeCoreError, ValueError):
    """A backtest request cannot be played (the message says which policy and why)."""


class Predictor(Protocol):
    """A policy that decides from observations: (n, W * C + A) float32 observations to env
    actions (n, ...) and, when it has them, the probabilities (n, len(positions)) of the
    target positions (None otherwise)."""

    def __call__(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass(frozen=True)
class Target:
    """A precomputed policy: ``value`` is a constant target fraction in [-1, 1] or a (T,)
    array of them, one per decision row of the walk (see :func:`decision_rows`)."""

    value: float | np.ndarray


@dataclass(frozen=True)
class BuyAndHold:
    """The market's own return: one all-equity entry at the walk's first open, held to its
    last close (see the module docstring). Its total return is
    ``close[-1] * (1 - f) * (1 - s) / (open[0] * (1 + f) * (1 + s)) - 1`` with the taker fee
    ``f`` and the slippage ``s`` (plus funding, for a perpetual future)."""


@dataclass(frozen=True)
class MlpPolicy:
    """A feed-forward policy network as arrays, decided inside the kernel
    (:func:`~tradecore_lib.env.kernels.walk_mlp`: no Python per bar).

    Attributes:
        obs_shift, obs_scale: (D,) float64; the network sees ``clip((obs - obs_shift) /
            obs_scale, -obs_clip, obs_clip)`` as float32 (VecNormalize's frozen statistics;
            zeros, ones and inf without).
        obs_clip: see above.
        weights, biases: the hidden layers, (in, out) and (out,) float32, in order.
        relu: ReLU hidden activations (tanh otherwise).
        head_weight, head_bias: the action head, (in, A) and (A,) float32.
        action_dims: sizes of the discrete heads (``(P,)`` or ``(P, 3, 3)`` with nudge; the
            action is each head's mode), or ``()`` for continuous actions (the head's outputs,
            clipped to [-1, 1]).
    """

    obs_shift: np.ndarray
    obs_scale: np.ndarray
    obs_clip: float
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    relu: bool
    head_weight: np.ndarray
    head_bias: np.ndarray
    action_dims: tuple[int, ...]


PolicySpec = Target | BuyAndHold | MlpPolicy | Predictor


@dataclass(frozen=True)
class PolicyRun:
    """One account's walk over one split (arrays of length T = decision rows).

    Attributes:
        name: the policy's name ("agent", "flat", "random_017", ...).
        ts_ms: (T,) int64 open time of each decision bar (UTC epoch ms).
        equity: (T,) float64 quote currency, marked at each bar's close after that bar's
            fills and costs.
        position: (T,) float64 signed position quantity (base currency) held after the bar.
        target: (T,) float64 target fraction decided at each bar (executed at the next open).
        probs: (T, P) probabilities of the target positions at each decision, or None.
        fills: one row per fill: ``bar`` int32 (frame row), ``ts_ms`` int64, ``kind`` string
            (market, stop, take_profit, kill_switch, guardrail, end), ``qty`` (signed base),
            ``price`` (quote per base), ``fee`` (quote) float64.
        initial_equity: equity before the first decision, quote currency.
        fees, borrow_cost, funding_cost: totals over the split, quote currency.
        kill_switch_hits: times the kill switch closed the account (0 or 1: it halts).
        guardrail_breaches: daily / total loss limit breaches.
        trade_pnls: net PnL of each round trip (flat -> position -> flat, or a flip), quote
            currency, fees included (:func:`round_trip_pnls` of ``fills``, computed once).
    """

    name: str
    ts_ms: np.ndarray
    equity: np.ndarray
    position: np.ndarray
    target: np.ndarray
    probs: np.ndarray | None
    fills: pa.Table
    initial_equity: float
    fees: float
    borrow_cost: float
    funding_cost: float
    kill_switch_hits: int
    guardrail_breaches: int
    trade_pnls: tuple[float, ...]

    @property
    def trades(self) -> int:
        """Round trips (flat -> position -> flat, or a flip)."""
        return len(self.trade_pnls)

    @property
    def traded_notional(self) -> float:
        """Sum of |qty * price| over every fill, quote currency."""
        qty = self.fills["qty"].to_numpy()
        return float(np.abs(qty * self.fills["price"].to_numpy()).sum())


@dataclass(frozen=True)
class Walk:
    """The bars a split's walk plays: ``rows`` (T,) frame rows in order, ``seg_first`` /
    ``seg_end`` (T,) bool marking each segment's first and last row."""

    data: MarketData
    rows: np.ndarray
    seg_first: np.ndarray
    seg_end: np.ndarray

    @property
    def ts_ms(self) -> np.ndarray:
        return self.data.ts_ms[self.rows]


def walk_config(env_config: EnvConfig | str | Mapping[str, Any]) -> EnvConfig:
    """The env config of a walk: the run's, with episodes running to each segment's end."""
    return load_env_config(env_config, WALK_OVERRIDES)


def plan_walk(frame: pd.DataFrame | MarketData, env_config: EnvConfig | str | Mapping[str, Any],
              decision_start: int = 0) -> Walk:
    """The rows of the walk of ``frame`` from row ``decision_start`` (see the module
    docstring). A :class:`MarketData` must have been prepared with :func:`walk_config`."""
    cfg = walk_config(env_config)
    data = frame if isinstance(frame, MarketData) else MarketData.from_frame(frame, cfg)
    starts = data.starts[data.starts >= decision_start]
    if len(starts) == 0:
        raise BacktestError(f"no decision bar at or after row {decision_start} of the frame "
                            f"({len(data.ts_ms)} rows)")
    ends = data.episode_end[starts]
    first = np.ones(len(starts), dtype=bool)
    first[1:] = ends[1:] != ends[:-1]
    seg_starts = starts[first]
    seg_ends = ends[first]
    lengths = seg_ends - seg_starts + 1
    offsets = np.repeat(seg_starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    rows = np.arange(int(lengths.sum()), dtype=np.int64) + offsets
    seg_first = np.zeros(len(rows), dtype=bool)
    seg_first[np.concatenate([[0], np.cumsum(lengths)[:-1]])] = True
    seg_end = np.zeros(len(rows), dtype=bool)
    seg_end[np.cumsum(lengths) - 1] = True
    return Walk(data, rows, seg_first, seg_end)


def decision_rows(frame: pd.DataFrame | MarketData,
                  env_config: EnvConfig | str | Mapping[str, Any],
                  decision_start: int = 0) -> np.ndarray:
    """(T,) int64 open times of the walk's decision bars: the length a :class:`Target`
    array must have."""
    return plan_walk(frame, env_config, decision_start).ts_ms


def run_policies(frame: pd.DataFrame | MarketData,
                 env_config: EnvConfig | str | Mapping[str, Any],
                 policies: Mapping[str, PolicySpec], decision_start: int = 0
                 ) -> dict[str, PolicyRun]:
    """Walk ``frame`` from row ``decision_start`` with every policy (see the module docstring).

    Args:
        frame: candles + features (``ts``, OHLCV, features; see :mod:`tradecore_lib.env`), or
            :class:`MarketData` prepared with :func:`walk_config` (to share it between calls).
        env_config: the run's env settings (a preset name, a mapping or an :class:`EnvConfig`);
            ``random_start`` and ``episode_length`` do not apply to a walk.
        policies: name -> :data:`PolicySpec`.
        decision_start: frame row of the first decision bar (the rows before only warm the
            causal normalization and the observation window).

    Returns:
        name -> :class:`PolicyRun`, in the order of ``policies``.
    """
    cfg = walk_config(env_config)
    walk = plan_walk(frame, cfg, decision_start)
    n_rows = len(walk.rows)
    static = {name: spec for name, spec in policies.items()
              if isinstance(spec, Target | BuyAndHold)}
    dynamic = {name: spec for name, spec in policies.items() if name not in static}
    runs: dict[str, PolicyRun] = {}
    if static:
        targets = np.empty((len(static), n_rows))
        mode = np.zeros(len(static), dtype=np.int8)
        for row, (name, spec) in enumerate(static.items()):
            if isinstance(spec, BuyAndHold):
                targets[row] = 1.0
                mode[row] = K.BUY_AND_HOLD
            else:
                targets[row] = _target_path(name, spec, n_rows)
        runs.update(_play(walk, cfg, list(static), targets, None, mode))
    for name, predictor in dynamic.items():
        if isinstance(predictor, MlpPolicy):
            runs.update(_play_mlp(walk, cfg, name, predictor))
        else:
            runs.update(_play(walk, cfg, [name], np.zeros((1, n_rows)), predictor,
                              np.zeros(1, dtype=np.int8)))
    return {name: runs[name] for name in policies}


def _target_path(name: str, spec: Target, n_rows: int) -> np.ndarray:
    path = np.broadcast_to(np.asarray(spec.value, dtype=np.float64), (n_rows,)) \
        if np.ndim(spec.value) == 0 else np.asarray(spec.value, dtype=np.float64)
    if path.shape != (n_rows,):
        raise BacktestError(f"policy {name!r}: {path.shape[0]} targets for a walk of {n_rows} "
                            "decision rows (see decision_rows())")
    if not np.isfinite(path).all() or np.abs(path).max(initial=0.0) > 1.0:
        raise BacktestError(f"policy {name!r}: targets must be finite fractions in [-1, 1]")
    return path


def _play(walk: Walk, cfg: EnvConfig, names: list[str], targets: np.ndarray,
          predictor: Predictor | None, mode: np.ndarray) -> dict[str, PolicyRun]:
    """Walk ``len(names)`` accounts (``mode``: the kernel's account modes); with a
    ``predictor``, its decisions fill ``targets`` row by row (and the nudges, with nudge
    presets)."""
    data = walk.data
    n, n_rows = targets.shape
    state = fresh_state(cfg, n)
    nudge = cfg.nudge and predictor is not None
    d_sl = np.zeros((n, n_rows if nudge else 0))
    d_tp = np.zeros_like(d_sl)
    # a buy-and-hold account enters at the first open: its "decision" precedes the walk
    start_target = (mode == K.BUY_AND_HOLD).astype(np.float64)
    info = np.empty((len(K.INFO_ROWS), n))
    log = FillLog(capacity=64 * n)
    equity = np.empty((n, n_rows))
    qty = np.empty((n, n_rows))
    probs: list[np.ndarray] = []
    market = (walk.rows, walk.seg_first, walk.seg_end)
    bars = (data.open, data.high, data.low, data.close, data.day, data.funding,
            kernel_params(cfg, data.bar_minutes))
    if predictor is None:
        k = 0
        while k < n_rows:
            log.reserve(K.FILLS_PER_BAR * n * 1024)
            k = K.walk_accounts(state, targets, d_sl, d_tp, start_target, mode, *market, k,
                                n_rows, *bars, False, info, log.buffer, log.count, equity, qty)
    else:
        positions = np.asarray(cfg.positions, dtype=np.float64)
        obs = np.empty((n, cfg.window * data.n_columns + cfg.account_size), dtype=np.float32)
        bar = np.empty(n, dtype=np.int64)
        accounts = np.arange(n, dtype=np.int64)
        for k in range(n_rows):
            log.reserve(K.FILLS_PER_BAR * n)
            K.walk_accounts(state, targets, d_sl, d_tp, start_target, mode, *market, k, k + 1,
                            *bars, nudge, info, log.buffer, log.count, equity, qty)
            bar[:] = walk.rows[k]
            K.write_observations(data.values, cfg.window, bar, accounts, state, data.close,
                                 cfg.nudge, float(cfg.time_scale_bars), float(cfg.obs_clip),
                                 obs)
            actions, p = predictor(obs)
            target, a, b = decode_actions(cfg, positions, actions, n)
            targets[:, k] = target
            if nudge:
                d_sl[:, k] = a
                d_tp[:, k] = b
            if p is not None:
                probs.append(p)
    return _runs(walk, cfg, names, state, log, equity, qty, targets,
                 np.stack(probs, axis=1) if probs else None)


def _play_mlp(walk: Walk, cfg: EnvConfig, name: str, policy: MlpPolicy
              ) -> dict[str, PolicyRun]:
    """The walk of one account decided by ``policy`` inside the kernel."""
    data = walk.data
    n_rows = len(walk.rows)
    state = fresh_state(cfg, 1)
    targets = np.zeros((1, n_rows))
    d_sl = np.zeros((1, n_rows if cfg.nudge else 0))
    d_tp = np.zeros_like(d_sl)
    log = FillLog(capacity=K.FILLS_PER_BAR * n_rows)
    equity = np.empty((1, n_rows))
    qty = np.empty((1, n_rows))
    discrete = len(policy.action_dims) > 0
    probs = np.zeros((n_rows, policy.action_dims[0] if discrete else 0))
    K.walk_mlp(state, targets, d_sl, d_tp, walk.rows, walk.seg_first, walk.seg_end,
               data.open, data.high, data.low, data.close, data.day, data.funding,
               kernel_params(cfg, data.bar_minutes), cfg.nudge, log.buffer, log.count, equity,
               qty, data.values, cfg.window, float(cfg.time_scale_bars), float(cfg.obs_clip),
               np.asarray(cfg.positions, dtype=np.float64),
               np.asarray(policy.action_dims, dtype=np.int64),
               policy.obs_shift, policy.obs_scale, float(policy.obs_clip), policy.weights,
               policy.biases, policy.relu, policy.head_weight, policy.head_bias, probs)
    return _runs(walk, cfg, [name], state, log, equity, qty, targets,
                 probs[None] if discrete else None)


def _runs(walk: Walk, cfg: EnvConfig, names: list[str], state: np.ndarray, log: FillLog,
          equity: np.ndarray, qty: np.ndarray, targets: np.ndarray,
          probs: np.ndarray | None) -> dict[str, PolicyRun]:
    """The :class:`PolicyRun` of each walked account (``probs``: (N, T, P) or None)."""
    runs = {}
    for j, name in enumerate(names):
        fills = log.table(walk.data.ts_ms, account=j)
        runs[name] = PolicyRun(
            name=name, ts_ms=walk.ts_ms, equity=equity[j], position=qty[j], target=targets[j],
            probs=None if probs is None else probs[j], fills=fills,
            initial_equity=float(cfg.initial_cash),
            fees=float(np.sum(fills["fee"].to_numpy())),
            borrow_cost=float(state[K.BORROW_PAID, j]),
            funding_cost=float(state[K.FUNDING_PAID, j]),
            kill_switch_hits=int(state[K.KILLS, j]),
            guardrail_breaches=int(state[K.GUARDS, j]),
            trade_pnls=tuple(round_trip_pnls(fills)),
        )
    return runs


def baseline_policies(env_config: EnvConfig | str | Mapping[str, Any]
                      ) -> dict[str, PolicySpec]:
    """The baselines a quant recognises, next to which an agent is judged:

    * ``buy_and_hold``: :class:`BuyAndHold`, the market itself;
    * ``always_long_stops``: the preset's largest long target every bar, under its rules
      (RiskGuard size, stop-loss and take-profit, re-entry at the next open after an exit,
      kill switch);
    * ``flat``: never in the market.

    Matched random policies (:mod:`tradecore_lib.evaluation.stats`) come as :class:`Target`
    arrays.
    """
    cfg = walk_config(env_config)
    long_target = max(cfg.positions) if cfg.action_mode == "discrete" else 1.0
    return {"buy_and_hold": BuyAndHold(), "always_long_stops": Target(long_target),
            "flat": Target(0.0)}


def round_trip_pnls(fills: pa.Table) -> list[float]:
    """Net PnL (quote currency, fees included) of each round trip in ``fills`` (in order).

    A trip opens when the position leaves flat and closes when it returns to flat; a fill
    that flips the position closes one trip and opens the next (its fee split by quantity).
    Every walk ends flat (segment ends close positions), so every trip is closed.
    """
    pnls: list[float] = []
    qty = 0.0
    pnl = 0.0
    for q, price, fee in zip(fills["qty"].to_pylist(), fills["price"].to_pylist(),
                             fills["fee"].to_pylist(), strict=True):
        remaining = q
        fee_per_unit = fee / abs(q)
        if qty != 0.0 and (qty > 0.0) != (remaining > 0.0):
            closing = -qty if abs(remaining) >= abs(qty) else remaining
            pnl -= closing * price + abs(closing) * fee_per_unit
            qty += closing
            remaining -= closing
            if abs(qty) <= 1e-12 * abs(closing):
                qty = 0.0
                pnls.append(pnl)
                pnl = 0.0
        if remaining != 0.0:
            pnl -= remaining * price + abs(remaining) * fee_per_unit
            qty += remaining
    return pnls
