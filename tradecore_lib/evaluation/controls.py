"""Oracles of the synthetic control markets, and recovery: how much of a planted edge an agent took.

The control processes of :mod:`tradecore_lib.sources.synthetic_generator` plant a documented
edge (``planted_linear``, ``planted_temporal``) or none (``null``). The oracle knows the form
and the parameters (:class:`~tradecore_lib.sources.synthetic_generator.SyntheticOptions`) and
reads the candles only as far as the agent could at the same moment.

**Timing** (the engine's, :mod:`tradecore_lib.env`): a policy decides after row ``t`` closed,
from rows ``<= t``; its order fills at row ``t + 1``'s open and the position is held over row
``t + 1`` (marked at its close). A *position sequence* ``p`` of shape ``(T,)`` therefore holds at
``p[t]`` the position during row ``t``, decided after row ``t - 1`` closed from rows
``<= t - 1`` and filled at row ``t``'s open; ``p[0] = 0`` (nothing is known before the first
row). A backtest that decides after row ``t`` plays the target ``p[t + 1]``
(:func:`decision_targets`). The matched random baselines of :mod:`tradecore_lib.evaluation.stats`
use the same convention.

**Recovery** is the agent's cumulative log return divided by the oracle's, both played by the
same engine with the same costs on the same out-of-sample rows (:func:`recovery`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pyarrow as pa

from tradecore_lib.candles import ts_millis
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.months import MINUTE_MS
from tradecore_lib.sources.synthetic_generator import (
    BPS,
    CONTROL_PROCESSES,
    DAY_MS,
    SyntheticOptions,
    signal_from_range,
)

DEFAULT_BAND = 0.5


class ControlError(TradeCoreError, ValueError):
    """A control computation was asked of something that has no edge or no oracle."""


class Bars(Protocol):
    """Rows of candles, oldest first: ``(T,)`` arrays. :class:`tradecore_lib.env.MarketData`
    is one; :meth:`CandleBars.from_table` makes one from a candle table."""

    ts_ms: np.ndarray  # int64 bar open times, epoch milliseconds, strictly increasing
    high: np.ndarray  # float64, quote currency
    low: np.ndarray
    close: np.ndarray


@dataclass(frozen=True)
class CandleBars:
    """:class:`Bars` of a candle table."""

    ts_ms: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    @classmethod
    def from_table(cls, table: pa.Table) -> CandleBars:
        """The bars of a table in the candle schema (``ts``, ``high``, ``low``, ``close``)."""
        return cls(ts_millis(table), *(table.column(name).to_numpy() for name in (
            "high", "low", "close")))


def _control_options(options: SyntheticOptions) -> SyntheticOptions:
    if options.process not in CONTROL_PROCESSES:
        raise ControlError(f"process {options.process!r} is not a control process "
                           f"({', '.join(CONTROL_PROCESSES)}): it has no documented edge")
    return options


def decoded_signal(bars: Bars, options: SyntheticOptions) -> np.ndarray:
    """(T,) float64: the AR(1) signal (unit variance) each row's range encodes
    (``hl_range = (high - low) / close``), known when the row closes. Every control process
    encodes one; only ``planted_linear`` makes the next return depend on it."""
    _control_options(options)
    return signal_from_range((bars.high - bars.low) / bars.close, options)


def lagged_return(bars: Bars, near: int, far: int) -> np.ndarray:
    """(T,) float64: ``ln(close[m - near] / close[m - far - 1])`` for the minute ``m`` of each
    row, the log return over the bars ``near .. far`` back, known when the row closes.

    Minutes are read on the clock: the close "at" a minute is the last close at or before it
    (what a trader knows of a missing minute). NaN where no row is that old.
    """
    ts = bars.ts_ms
    log_close = np.log(bars.close)

    def close_at(minutes_back: int) -> np.ndarray:
        row = np.searchsorted(ts, ts - minutes_back * MINUTE_MS, side="right") - 1
        out = np.full(len(ts), np.nan)
        known = row >= 0
        out[known] = log_close[row[known]]
        return out

    return close_at(near) - close_at(far + 1)


def next_bar_edge(bars: Bars, options: SyntheticOptions) -> np.ndarray:
    """(T,) float64: the planted expected log return of the minute after each row, as known
    when the row closes (a fraction; 0 where the process plants none).

    ``planted_linear``: ``edge * s`` with ``s`` the row's :func:`decoded_signal` (0 when the
    next minute opens a UTC day: the signal restarts there). ``planted_temporal``: ``edge *
    sign(lagged_return(row, lag_near, lag_far))`` when the next minute is at least ``lag_far +
    1`` minutes into its UTC day (0 before, and where the history is too short). ``null``: 0.
    """
    _control_options(options)
    edge = options.edge_bps * BPS
    minute_of_next = ((bars.ts_ms + MINUTE_MS) % DAY_MS) // MINUTE_MS
    if options.process == "planted_linear":
        return np.where(minute_of_next == 0, 0.0, edge * decoded_signal(bars, options))
    if options.process == "planted_temporal":
        sign = np.nan_to_num(np.sign(lagged_return(bars, options.lag_near, options.lag_far)))
        return np.where(minute_of_next >= options.lag_far + 1, edge * sign, 0.0)
    return np.zeros(len(bars.ts_ms))


def oracle_positions(bars: Bars, options: SyntheticOptions,
                     band: float = DEFAULT_BAND) -> np.ndarray:
    """(T,) int8 in {-1, 0, 1}: the oracle's position sequence (timing in the module docstring).

    After each row it goes long when the next minute's planted edge (:func:`next_bar_edge`)
    exceeds ``band * edge_bps`` and short below ``-band * edge_bps``; in between it keeps its
    position, so a persistent signal is traded once per swing instead of once per wiggle (each
    trade costs fees; a bar of weak edge costs nothing to hold). ``band`` is in units of the
    edge: signal standard deviations for ``planted_linear`` (0.5 is the best of a scan at the
    defaults); any value in (0, 1) gives the same sequence for ``planted_temporal``.
    """
    _control_options(options)
    if options.process not in ("planted_linear", "planted_temporal"):
        raise ControlError(f"a {options.process} market has no planted edge: its only sensible "
                           "policy is flat, there is no oracle")
    if band <= 0.0:
        raise ControlError(f"band must be positive, got {band}")
    expected = next_bar_edge(bars, options)
    threshold = band * options.edge_bps * BPS
    strong = np.abs(expected) > threshold
    # The position after row t is the sign of the last strong row <= t (flat before the first).
    last_strong = np.maximum.accumulate(np.where(strong, np.arange(len(expected)), -1))
    decided = np.where(last_strong >= 0, np.sign(expected[np.maximum(last_strong, 0)]), 0.0)
    positions = np.zeros(len(expected), dtype=np.int8)
    positions[1:] = decided[:-1]
    return positions


def decision_targets(positions: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """The targets a walk decides, from position sequences (timing in the module docstring).

    Args:
        positions: (..., T) position sequences over T frame rows (one or a stack of them).
        rows: (K,) the walk's decision rows (frame rows, increasing, e.g.
            :attr:`tradecore_lib.evaluation.backtest.Walk.rows`); None: every row.

    Returns:
        (..., K) float64: the target decided after row ``rows[k]`` is the position held over
        the next row, ``positions[..., rows[k] + 1]``; flat after the last row.
    """
    positions = np.asarray(positions, dtype=np.float64)
    padded = np.concatenate([positions, np.zeros((*positions.shape[:-1], 1))], axis=-1)
    rows = np.arange(positions.shape[-1]) if rows is None else np.asarray(rows, dtype=np.int64)
    return padded[..., rows + 1]


def recovery(agent_equity: np.ndarray, oracle_equity: np.ndarray,
             initial_equity: float | None = None) -> float:
    """The agent's cumulative log return divided by the oracle's.

    Args:
        agent_equity: (T,) the agent's equity marked at each bar close, quote currency.
        oracle_equity: (T',) the oracle's, from the same engine, costs and rows.
        initial_equity: the equity both started with, before the first bar; None measures
            from each curve's first mark.

    Returns:
        ``ln(agent[-1] / start) / ln(oracle[-1] / start)``: 1 when the agent took the whole
        edge, 0 when it broke even, negative when it lost.

    Raises:
        ControlError: an empty or non-positive curve, or an oracle that did not profit (then
            there is no edge to recover on these rows).
    """
    def log_return(equity: np.ndarray, who: str) -> float:
        equity = np.asarray(equity, dtype=np.float64)
        if equity.size == 0 or not np.all(np.isfinite(equity)) or np.any(equity <= 0):
            raise ControlError(f"the {who}'s equity curve must be non-empty, finite and "
                               "positive")
        start = equity[0] if initial_equity is None else float(initial_equity)
        if not start > 0.0:
            raise ControlError(f"the initial equity must be positive, got {start}")
        return float(np.log(equity[-1] / start))

    agent, oracle = log_return(agent_equity, "agent"), log_return(oracle_equity, "oracle")
    if oracle <= 0.0:
        raise ControlError(f"the oracle's log return is {oracle:.4g}: it did not profit on these "
                           "rows, so there is no edge to recover")
    return agent / oracle
