"""Samples of the direction models: strided windows over one contiguous float32 table.

**No copy per sample.** A market's inputs are one (N, F) float32 array (the multi-market
model's one (T, M, F) array); a sample is only the row index of its last bar ``t``. A batch
is gathered with a single fancy index ``table[ends[:, None] + offsets]`` (offsets
``-L+1 .. 0``) into a fresh (B, L, F) tensor, on the training device when the table lives
there. Memory is the table plus one index per sample, whatever L is, so an epoch over
24 months of one-minute bars is bounded by the network's compute, not by building windows.

**Inputs.** The feature preset's float32 columns (``configs/tools/<preset>.json``) and the
candle inputs the direction preset names (:data:`CANDLE_INPUTS`), in that order.

**Validity** of a sample ending at bar ``t`` (sequence length L):

* the L bars ``t-L+1 .. t`` are L consecutive minutes (no missing minute inside);
* none of them is a warm-up row (the feature table's ``warmup_incomplete``) or carries a
  NaN / infinite input;
* for training and the per-epoch validation score: its label is defined
  (:mod:`~tradecore_lib.direction.labels`: the bar H minutes later exists inside the same
  split, and the return is outside the dead zone). Predictions also cover bars without a
  label (their ``label`` is NaN).

A sample belongs to the split containing bar ``t``; its inputs may reach back into the months
before the split (a validation sample's first bars are training bars: inputs, never labels).
Training samples end before ``train_end_ms`` (the purge) and so do their labels.

**Normalization** is per market and per column: mean and standard deviation over the valid
(non-warm-up, finite) rows of the training split only, stored in the checkpoint and applied
unchanged to validation, test and signals.

**Several markets** (the venue's transformer). The markets' bars are aligned on the union of
their timestamps: row ``k`` of the (T, M, F) table is the ``k``-th minute at which any of the
markets has a bar. A cell (minute, market) with no bar, a warm-up row or a non-finite input is
*absent*: its inputs are 0 and ``present`` is False. The transformer
(:class:`~tradecore_lib.direction.models.DirectionTransformer`) masks every minute that is
absent in any market, so it reads the markets' common minutes; the decision minute ``t`` is
always read. A sample ending at row ``t`` needs L consecutive minutes of the union (a minute
with no bar in *any* market breaks the window, as a gap does for one market); each market
has its own label at ``t`` (defined only where that market has a usable bar ``t``), and a
market with no label contributes nothing to the loss. A sample with no defined label in any
market is dropped. Predictions for market ``m`` exist at rows where ``m`` has a usable bar and
the window is valid.

**Determinism.** Batch order is ``torch.randperm`` from a ``torch.Generator`` seeded with the
run seed and the epoch (:func:`epoch_generator`), so epoch ``e`` has the same order whether or
not the run was interrupted before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from tradecore_lib.direction.labels import label_frame, ts_millis
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.months import MINUTE_MS

# Inputs computed from the candles (the direction preset's candle_inputs), all stationary.
CANDLE_INPUTS = ("log_return", "hl_range", "body")
# Smallest standard deviation a column is divided by (a constant column stays 0, not inf).
_MIN_STD = 1e-8


class DirectionDataError(TradeCoreError, ValueError):
    """The data cannot make samples (too few bars, no valid window, mismatched columns)."""


@dataclass(frozen=True)
class SplitRange:
    """One split's bars: ``start_ms <= ts < end_ms`` (UTC ms); labels never look past
    ``end_ms``."""

    name: str
    start_ms: int
    end_ms: int


# -- inputs ------------------------------------------------------------------------------------
def candle_input(frame: pd.DataFrame, name: str) -> np.ndarray:
    """One candle input (float64, (N,)): ``log_return`` = ln(close[t] / close[t-1]) (NaN on
    the first bar and after a missing minute), ``hl_range`` = (high - low) / close, ``body`` =
    (close - open) / close."""
    close = frame["close"].to_numpy(dtype=np.float64)
    if name == "log_return":
        out = np.full(len(close), np.nan)
        if len(close) > 1:
            ts = ts_millis(frame["ts"])
            follows = np.diff(ts) == MINUTE_MS
            out[1:] = np.where(follows, np.log(close[1:] / close[:-1]), np.nan)
        return out
    if name == "hl_range":
        return (frame["high"].to_numpy(dtype=np.float64)
                - frame["low"].to_numpy(dtype=np.float64)) / close
    if name == "body":
        return (close - frame["open"].to_numpy(dtype=np.float64)) / close
    raise DirectionDataError(f"unknown candle input {name!r}; known: {', '.join(CANDLE_INPUTS)}")


def input_table(frame: pd.DataFrame, feature_columns: Sequence[str],
                candle_inputs: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The raw inputs of a frame of joined candles and features.

    Returns:
        ``(values, bad, names)``: (N, F) float32 C-contiguous values, (N,) bool ``bad`` (a
        warm-up row or any non-finite input: no window may contain it) and the F column names
        (the feature columns, then the candle inputs).

    Raises:
        DirectionDataError: a feature column is not in the frame.
    """
    missing = [c for c in feature_columns if c not in frame.columns]
    if missing:
        raise DirectionDataError(f"feature columns {missing} are not in the frame (columns: "
                                 f"{list(frame.columns)}); was it built with another preset?")
    names = [*feature_columns, *candle_inputs]
    values = np.empty((len(frame), len(names)), dtype=np.float32)
    for k, column in enumerate(feature_columns):
        values[:, k] = frame[column].to_numpy(dtype=np.float32)
    for k, name in enumerate(candle_inputs, start=len(feature_columns)):
        values[:, k] = candle_input(frame, name)
    bad = ~np.isfinite(values).all(axis=1)
    if WARMUP_COLUMN in frame.columns:
        bad |= frame[WARMUP_COLUMN].to_numpy(dtype=bool)
    return values, bad, names


@dataclass(frozen=True)
class Normalization:
    """Per-column mean and standard deviation of one market's inputs (train split only)."""

    columns: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray, rows: np.ndarray, columns: Sequence[str]) -> Normalization:
        """Fit on ``values[rows]`` ((N, F) float32 values, (N,) bool rows: the training split's
        valid rows).

        Raises:
            DirectionDataError: no row to fit on.
        """
        if not rows.any():
            raise DirectionDataError("no valid training row to fit the input normalization on")
        fitted = values[rows].astype(np.float64)
        mean = fitted.mean(axis=0)
        std = np.maximum(fitted.std(axis=0), _MIN_STD)
        return cls(tuple(columns), mean.astype(np.float32), std.astype(np.float32))

    def apply(self, values: np.ndarray, bad: np.ndarray) -> np.ndarray:
        """``(values - mean) / std`` as a new (N, F) float32 array, 0 on ``bad`` rows (they
        never enter a valid window; the multi-market model masks them)."""
        out = (values - self.mean) / self.std
        out[bad] = 0.0
        return np.ascontiguousarray(out, dtype=np.float32)

    def to_dict(self) -> dict[str, list]:
        return {"columns": list(self.columns), "mean": self.mean.tolist(),
                "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, raw: dict) -> Normalization:
        return cls(tuple(raw["columns"]), np.asarray(raw["mean"], dtype=np.float32),
                   np.asarray(raw["std"], dtype=np.float32))


# -- windows -----------------------------------------------------------------------------------
def window_ok(ts_ms: np.ndarray, bad: np.ndarray, length: int) -> np.ndarray:
    """(N,) bool: the window of ``length`` bars ending at each row is ``length`` consecutive
    minutes with no ``bad`` row (timestamps strictly increasing)."""
    n = len(ts_ms)
    ok = np.zeros(n, dtype=bool)
    if n < length:
        return ok
    span = ts_ms[length - 1:] - ts_ms[:n - length + 1]
    bad_count = np.concatenate([[0], np.cumsum(bad, dtype=np.int64)])
    bad_in = bad_count[length:] - bad_count[:n - length + 1]
    ok[length - 1:] = (span == (length - 1) * MINUTE_MS) & (bad_in == 0)
    return ok


def in_range(ts_ms: np.ndarray, split: SplitRange) -> np.ndarray:
    """(N,) bool: rows of ``split``."""
    return (ts_ms >= split.start_ms) & (ts_ms < split.end_ms)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator of epoch ``epoch``'s batch order: a function of (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


@dataclass
class MarketSeries:
    """One market's bars, normalized inputs and labels over the frame it was built from.

    Attributes:
        market: the market name.
        ts_ms: (N,) int64 bar times (UTC ms).
        values: (N, F) float32 normalized inputs (0 on bad rows).
        bad: (N,) bool rows no window may contain.
        forward_return: (N,) float64 log return over the horizon (NaN: no horizon bar).
        label: (N,) float64 1 / 0 / NaN.
    """

    market: str
    ts_ms: np.ndarray
    values: np.ndarray
    bad: np.ndarray
    forward_return: np.ndarray
    label: np.ndarray


def market_series(market: str, frame: pd.DataFrame, feature_columns: Sequence[str],
                  candle_inputs: Sequence[str], splits: Sequence[SplitRange], horizon: int,
                  dead_zone: float, normalization: Normalization | None = None,
                  fit_on: SplitRange | None = None) -> tuple[MarketSeries, Normalization]:
    """Inputs, labels and normalization of one market's frame.

    Labels are computed per split (each with its own end, so none reads past it); rows of no
    split have none. ``normalization`` is reused when given (validation, test, signals), else
    fitted on the rows of ``fit_on`` (the training split).
    """
    values, bad, names = input_table(frame, feature_columns, candle_inputs)
    ts = ts_millis(frame["ts"])
    forward = np.full(len(frame), np.nan)
    label = np.full(len(frame), np.nan)
    for split in splits:
        rows = in_range(ts, split)
        f, lab = label_frame(frame, horizon, dead_zone, split.end_ms)
        forward[rows], label[rows] = f[rows], lab[rows]
    if normalization is None:
        if fit_on is None:
            raise ValueError("give a normalization or the split to fit it on")
        normalization = Normalization.fit(values, in_range(ts, fit_on) & ~bad, names)
    elif list(normalization.columns) != names:
        raise DirectionDataError(f"{market}: the model was trained on inputs "
                                 f"{list(normalization.columns)}, this frame gives {names}")
    return MarketSeries(market, ts, normalization.apply(values, bad), bad, forward,
                        label), normalization


# -- sample sets -------------------------------------------------------------------------------
class SequenceSet:
    """Samples of one market for the LSTM: windows of ``length`` bars over one table.

    ``table`` is the (N, F) float32 table as a torch tensor (on ``device``), ``ends`` the (S,)
    row of each sample's last bar, ``labels`` (S,) float32 (NaN allowed for prediction sets).
    """

    def __init__(self, series: MarketSeries, ends: np.ndarray, length: int,
                 device: str | torch.device = "cpu") -> None:
        self.series = series
        self.length = length
        self.device = torch.device(device)
        self.table = torch.from_numpy(series.values).to(self.device)
        self.ends = torch.from_numpy(np.ascontiguousarray(ends, dtype=np.int64)).to(self.device)
        self.labels = torch.from_numpy(series.label[ends].astype(np.float32)).to(self.device)
        self.offsets = torch.arange(-length + 1, 1, device=self.device)

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.table.shape[1])

    def gather(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``index`` (a (B,) long tensor of sample positions): inputs (B, L, F) float32
        and labels (B,) float32, by one fancy index into the table."""
        rows = self.ends[index].unsqueeze(1) + self.offsets
        return self.table[rows], self.labels[index]

    def batches(self, batch_size: int, generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches of ``(x (B, L, F), y (B,))``: shuffled by ``generator``, else in time
        order."""
        yield from (self.gather(index) for index in _order(len(self), batch_size, generator,
                                                           self.device))


class MultiSequenceSet:
    """Samples of several aligned markets for the transformer.

    ``table`` (T, M, F) float32 and ``present`` (T, M) bool as torch tensors; ``ends`` (S,)
    rows; ``labels`` (S, M) float32 with NaN where a market has no label.
    """

    def __init__(self, aligned: AlignedMarkets, ends: np.ndarray, length: int,
                 device: str | torch.device = "cpu") -> None:
        self.aligned = aligned
        self.length = length
        self.device = torch.device(device)
        self.table = torch.from_numpy(aligned.values).to(self.device)
        self.present = torch.from_numpy(aligned.present).to(self.device)
        self.ends = torch.from_numpy(np.ascontiguousarray(ends, dtype=np.int64)).to(self.device)
        self.labels = torch.from_numpy(aligned.label[ends].astype(np.float32)).to(self.device)
        self.offsets = torch.arange(-length + 1, 1, device=self.device)

    def __len__(self) -> int:
        return int(self.ends.shape[0])

    @property
    def n_inputs(self) -> int:
        return int(self.table.shape[2])

    @property
    def n_markets(self) -> int:
        return int(self.table.shape[1])

    def gather(self, index: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples ``index``: inputs (B, L, M, F), present (B, L, M) bool, labels (B, M)."""
        rows = self.ends[index].unsqueeze(1) + self.offsets
        return self.table[rows], self.present[rows], self.labels[index]

    def batches(self, batch_size: int, generator: torch.Generator | None = None
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Batches of ``(x, present, y)``; shuffled by ``generator``, else in time order."""
        yield from (self.gather(index) for index in _order(len(self), batch_size, generator,
                                                           self.device))


def _order(n: int, batch_size: int, generator: torch.Generator | None,
           device: torch.device) -> Iterator[torch.Tensor]:
    # The permutation is drawn on the CPU (a CPU generator gives the same order on any
    # device), then moved once per epoch.
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order.to(device)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def lstm_ends(series: MarketSeries, split: SplitRange, length: int, *, labelled: bool,
              stride: int = 1) -> np.ndarray:
    """(S,) int64 rows of the samples of ``split``: valid windows (and, with ``labelled``, a
    defined label), every ``stride``-th of them in time order."""
    ok = window_ok(series.ts_ms, series.bad, length) & in_range(series.ts_ms, split)
    if labelled:
        ok &= np.isfinite(series.label)
    return np.flatnonzero(ok)[::stride]


# -- several markets ---------------------------------------------------------------------------
@dataclass
class AlignedMarkets:
    """Markets aligned on the union of their minutes (see the module docstring).

    Attributes:
        markets: the market names, in table order.
        ts_ms: (T,) int64 union timeline.
        values: (T, M, F) float32 normalized inputs, 0 where masked.
        present: (T, M) bool cells holding a usable bar.
        label: (T, M) float64 labels (NaN where none).
        forward_return: (T, M) float64 (NaN where none).
    """

    markets: list[str]
    ts_ms: np.ndarray
    values: np.ndarray
    present: np.ndarray
    label: np.ndarray
    forward_return: np.ndarray

    @classmethod
    def align(cls, series: Sequence[MarketSeries]) -> AlignedMarkets:
        """Align ``series`` (same input columns) on the union of their timestamps.

        Raises:
            DirectionDataError: the markets' inputs have different widths.
        """
        widths = {s.market: s.values.shape[1] for s in series}
        if len(set(widths.values())) != 1:
            raise DirectionDataError(f"the markets of one transformer need the same input "
                                     f"columns; widths per market: {widths}")
        ts = np.unique(np.concatenate([s.ts_ms for s in series]))
        t, m, f = len(ts), len(series), next(iter(widths.values()))
        values = np.zeros((t, m, f), dtype=np.float32)
        present = np.zeros((t, m), dtype=bool)
        label = np.full((t, m), np.nan)
        forward = np.full((t, m), np.nan)
        for k, s in enumerate(series):
            rows = np.searchsorted(ts, s.ts_ms)
            values[rows, k] = s.values
            present[rows, k] = ~s.bad
            label[rows, k] = s.label
            forward[rows, k] = s.forward_return
        return cls([s.market for s in series], ts, values, present, label, forward)

    def window_ok(self, length: int) -> np.ndarray:
        """(T,) bool: the ``length`` rows ending here are consecutive minutes."""
        return window_ok(self.ts_ms, np.zeros(len(self.ts_ms), dtype=bool), length)


def multi_ends(aligned: AlignedMarkets, split: SplitRange, length: int, *, labelled: bool,
               stride: int = 1) -> np.ndarray:
    """(S,) rows of the transformer's samples of ``split``: consecutive windows whose last
    row has a usable bar in some market (with ``labelled``: a defined, usable label in some
    market), every ``stride``-th in time order."""
    ok = aligned.window_ok(length) & in_range(aligned.ts_ms, split)
    usable = aligned.present & np.isfinite(aligned.label) if labelled else aligned.present
    ok &= usable.any(axis=1)
    return np.flatnonzero(ok)[::stride]
