"""Predictions of a trained direction model: the ``DirectionPredictions`` frame.

``DirectionPredictions`` is a pandas DataFrame with one row per (bar, market) the model can
decide at (a valid input window ending at the bar, :mod:`tradecore_lib.direction.data`):

========================  ===================================================================
``ts``                    bar ``t`` (datetime64[ms, UTC])
``market``                market name (str)
``p_up``                  float64 in (0, 1): the model's probability that ``label`` is 1
``label``                 float64 1.0 / 0.0, NaN in the dead zone or without a horizon bar
                          inside the split (:mod:`tradecore_lib.direction.labels`)
``forward_return``        float64 ``ln(close[t+H] / close[t])`` (NaN without a horizon bar)
``split``                 the split's name (``"validation"``, ``"test"``, or the caller's)
========================  ===================================================================

sorted by ``market`` then ``ts``. Inputs are normalized with the statistics stored in
``final.pt`` (fitted on the training split) and may reach back into the frame's warm-up rows
(the month before the split, :func:`tradecore_lib.train.data.load_frame` with ``warmup``), so
the first decision is at the split's first bar; labels never look past the split's end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tradecore_lib.direction.config import DirectionConfig, ModelKind, parse_direction_config
from tradecore_lib.direction.data import (
    AlignedMarkets,
    MarketSeries,
    MultiSequenceSet,
    Normalization,
    SequenceSet,
    SplitRange,
    lstm_ends,
    market_series,
    multi_ends,
)
from tradecore_lib.direction.models import rebuild_model
from tradecore_lib.direction.store import CONFIG, FINAL, DirectionStore
from tradecore_lib.errors import TradeCoreError
from tradecore_lib.lake import Lake
from tradecore_lib.markets import get_market
from tradecore_lib.months import Month
from tradecore_lib.train.data import MarketFrame, load_frame

PREDICTION_COLUMNS = ("ts", "market", "p_up", "label", "forward_return", "split")


class DirectionModelError(TradeCoreError):
    """A direction run folder has no finished model, or a frame does not fit it."""


@dataclass
class DirectionModel:
    """A finished direction model loaded from its run folder (``final.pt``).

    Attributes:
        kind: ``lstm`` or ``transformer``.
        model_key: the market (LSTM) or ``<venue>_multi``.
        markets: its markets, in table order.
        network: the torch module, in eval mode on ``device``.
        normalization: market -> the input normalization fitted on its training split.
        feature_presets: market -> the feature preset its inputs come from.
        candle_inputs: the candle inputs after the feature columns.
        horizon_minutes, dead_zone, sequence_length: the run's label rule and window.
        config: the run's resolved config; run_id: its id.
    """

    kind: ModelKind
    model_key: str
    markets: list[str]
    network: nn.Module
    normalization: dict[str, Normalization]
    feature_presets: dict[str, str]
    candle_inputs: list[str]
    horizon_minutes: int
    dead_zone: float
    sequence_length: int
    config: DirectionConfig
    run_id: str
    device: str = "cpu"

    @classmethod
    def load(cls, store: DirectionStore, device: str = "cpu") -> DirectionModel:
        """The model of a complete run.

        Raises:
            DirectionModelError: the run has no ``final.pt`` (not finished).
        """
        if not store.is_complete():
            raise DirectionModelError(f"run {store.run_id} has not finished: no {FINAL} under "
                                      f"{store.uri()}; train it first")
        from tradecore_lib.direction.train import load_state

        state = load_state(store.read_bytes(FINAL))
        network = rebuild_model(state["kind"], state["model_kwargs"])
        network.load_state_dict(state["model"])
        network.to(device).eval()
        config = parse_direction_config(store.read_json(CONFIG), store.uri(CONFIG))
        return cls(kind=state["kind"], model_key=state["model_key"], markets=state["markets"],
                   network=network,
                   normalization={k: Normalization.from_dict(v)
                                  for k, v in state["normalization"].items()},
                   feature_presets=state["feature_presets"],
                   candle_inputs=list(state["candle_inputs"]),
                   horizon_minutes=int(state["horizon_minutes"]),
                   dead_zone=float(state["dead_zone"]),
                   sequence_length=int(state["sequence_length"]), config=config,
                   run_id=state["run_id"], device=device)

    def feature_columns(self, market: str) -> list[str]:
        """The feature-preset columns of ``market``'s inputs (before the candle inputs)."""
        columns = list(self.normalization[market].columns)
        return columns[:len(columns) - len(self.candle_inputs)]

    def load_frames(self, lake: Lake, months: Sequence[Month]) -> dict[str, MarketFrame]:
        """Each market's frame of ``months`` with its warm-up month (inputs of the first
        bars), from the feature presets the model was trained on."""
        return {name: load_frame(lake, get_market(name), list(months),
                                 self.feature_presets[name], warmup=True)
                for name in self.markets}

    def predict(self, frames: MarketFrame | Mapping[str, MarketFrame], split: str,
                batch_size: int | None = None) -> pd.DataFrame:
        """``DirectionPredictions`` of every decidable bar of the frames' months.

        Args:
            frames: the LSTM's :class:`MarketFrame`, or market -> frame for every market of
                the model; each read with ``warmup=True`` (see the module docstring), all of
                the same months.
            split: the value of the ``split`` column.
            batch_size: samples per forward pass (default: the preset's predict_batch_size).
        """
        if isinstance(frames, MarketFrame):
            if len(self.markets) != 1:
                raise DirectionModelError(f"{self.model_key} reads {self.markets}: pass one "
                                          "frame per market")
            frames = {self.markets[0]: frames}
        missing = [m for m in self.markets if m not in frames]
        if missing:
            raise DirectionModelError(f"{self.model_key}: no frame for {missing}")
        batch = batch_size or self.config.training.predict_batch_size
        series = [self._series(name, frames[name], split) for name in self.markets]
        window = _split_range(frames[self.markets[0]], split)
        if self.kind == "lstm":
            (one,) = series
            samples = SequenceSet(one, lstm_ends(one, window, self.sequence_length,
                                                 labelled=False), self.sequence_length,
                                  self.device)
            p_up = _probabilities(self.network, samples, batch)
            ends = samples.ends.cpu().numpy()
            return _frame(one.ts_ms[ends], one.market, p_up, one.label[ends],
                          one.forward_return[ends], split)
        aligned = AlignedMarkets.align(series)
        samples = MultiSequenceSet(aligned, multi_ends(aligned, window, self.sequence_length,
                                                       labelled=False),
                                   self.sequence_length, self.device)
        p_up = _probabilities(self.network, samples, batch)  # (S, M)
        ends = samples.ends.cpu().numpy()
        parts = []
        for k, market in enumerate(aligned.markets):
            keep = aligned.present[ends, k]
            rows = ends[keep]
            parts.append(_frame(aligned.ts_ms[rows], market, p_up[keep, k],
                                aligned.label[rows, k], aligned.forward_return[rows, k], split))
        return pd.concat(parts, ignore_index=True)

    def _series(self, market: str, frame: MarketFrame, split: str) -> MarketSeries:
        window = _split_range(frame, split)
        series, _ = market_series(market, frame.frame, self.feature_columns(market),
                                  self.candle_inputs, [window], self.horizon_minutes,
                                  self.dead_zone, normalization=self.normalization[market])
        return series


def _split_range(frame: MarketFrame, split: str) -> SplitRange:
    """The months a frame was read for: from its first asked month to the end of its last."""
    if not frame.partitions:
        raise DirectionModelError("the frame has no partition to predict on")
    first = Month.parse(frame.partitions[0].month)
    last = Month.parse(frame.partitions[-1].month)
    return SplitRange(split, first.start_ms, last.end_ms)


@torch.no_grad()
def _probabilities(network: nn.Module, samples: SequenceSet | MultiSequenceSet,
                   batch_size: int) -> np.ndarray:
    network.eval()
    out = []
    for index in torch.arange(len(samples), device=samples.device).split(batch_size):
        inputs: Any = samples.gather(index)
        logits = network(*inputs[:-1])  # (B,) or (B, M); the labels are not an input
        out.append(torch.sigmoid(logits.double()).cpu().numpy())
    if not out:
        return np.empty((0,) if isinstance(samples, SequenceSet) else (0, samples.n_markets))
    # sigmoid in float64 of a finite logit stays strictly inside (0, 1) for |logit| < ~36;
    # clip so a saturated network still gives finite log-losses downstream.
    return np.clip(np.concatenate(out), 1e-12, 1 - 1e-12)


def _frame(ts_ms: np.ndarray, market: str, p_up: np.ndarray, label: np.ndarray,
           forward: np.ndarray, split: str) -> pd.DataFrame:
    return pd.DataFrame({
        "ts": pd.to_datetime(ts_ms, unit="ms", utc=True).astype("datetime64[ms, UTC]"),
        "market": market,
        "p_up": p_up.astype(np.float64),
        "label": label.astype(np.float64),
        "forward_return": forward.astype(np.float64),
        "split": split,
    }, columns=list(PREDICTION_COLUMNS))


def predict(model: DirectionModel | DirectionStore,
            frames: MarketFrame | Mapping[str, MarketFrame], split: str,
            device: str = "cpu") -> pd.DataFrame:
    """``DirectionPredictions`` of ``model`` (loaded from its run folder when a store is
    given) on ``frames`` (see :meth:`DirectionModel.predict`)."""
    if isinstance(model, DirectionStore):
        model = DirectionModel.load(model, device)
    return model.predict(frames, split)


def predict_splits(lake: Lake, model_key: str, run_id: str,
                   splits: Sequence[str] = ("validation", "test"),
                   device: str = "cpu") -> pd.DataFrame:
    """``DirectionPredictions`` of a finished run on its own validation and test months
    (from its config.json), each split read with its warm-up month; rows of every split,
    in the order of ``splits``."""
    model = DirectionModel.load(DirectionStore(lake, model_key, run_id), device)
    parts = []
    for split in splits:
        months = model.config.data.months(split)  # type: ignore[arg-type]
        parts.append(model.predict(model.load_frames(lake, months), split))
    return pd.concat(parts, ignore_index=True)


def confidence_tiers(p_up: np.ndarray, tiers: Mapping[str, float]) -> np.ndarray:
    """The confidence tier of each probability ((N,) object array): the tier with the
    highest threshold that ``max(p_up, 1 - p_up)`` reaches, ``"none"`` below all."""
    confidence = np.maximum(p_up, 1.0 - p_up)
    out = np.full(len(confidence), "none", dtype=object)
    for name, threshold in sorted(tiers.items(), key=lambda item: item[1]):
        out[confidence >= threshold] = name
    return out
