"""Labels and samples of the direction models: the one labelling rule, windows that are views
of one table (never a copy per sample), validity, normalization fitted on train only, the
multi-market alignment with its masks, and seeded batch order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from tradecore_lib.direction.data import (
    AlignedMarkets,
    MultiSequenceSet,
    Normalization,
    SequenceSet,
    SplitRange,
    candle_input,
    epoch_generator,
    input_table,
    lstm_ends,
    market_series,
    multi_ends,
    window_ok,
)
from tradecore_lib.direction.labels import direction_labels, forward_returns, persistence
from tradecore_lib.features import WARMUP_COLUMN
from tradecore_lib.months import MINUTE_MS

T0 = 1_706_745_600_000  # 2024-02-01T00:00Z


def _frame(minutes: list[int], close: list[float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Candles at ``T0 + minute`` with a random walk close and one feature column ``f``."""
    rng = np.random.default_rng(seed)
    n = len(minutes)
    close = np.asarray(close if close is not None else 100 * np.exp(
        np.cumsum(rng.normal(0, 1e-3, n))))
    return pd.DataFrame({
        "ts": pd.to_datetime(T0 + np.asarray(minutes) * MINUTE_MS, unit="ms", utc=True),
        "open": close, "high": close * 1.001, "low": close * 0.999, "close": close,
        "volume": np.ones(n), "f": rng.normal(5.0, 2.0, n).astype(np.float32),
        WARMUP_COLUMN: np.zeros(n, dtype=bool),
    })


# -- labels ------------------------------------------------------------------------------------
def test_forward_return_needs_the_bar_exactly_h_minutes_later() -> None:
    ts = T0 + np.array([0, 1, 2, 3, 5, 6]) * MINUTE_MS  # minute 4 is missing
    close = np.array([100.0, 101.0, 102.0, 103.0, 105.0, 106.0])
    got = forward_returns(ts, close, horizon=2)
    expected = [np.log(102 / 100), np.log(103 / 101), np.nan, np.log(105 / 103), np.nan,
                np.nan]  # minute 2 + 2 = 4 is absent; 5 and 6 have no bar 2 minutes on
    np.testing.assert_allclose(got, expected, equal_nan=True)
    # a split ending at minute 5 cuts the label whose horizon bar lies at minute 5
    cut = forward_returns(ts, close, horizon=2, end_ms=T0 + 5 * MINUTE_MS)
    assert np.isnan(cut[3]) and np.isfinite(cut[1])


def test_labels_drop_the_dead_zone_and_undefined_returns() -> None:
    got = direction_labels(np.array([0.003, -0.003, 0.0001, -0.0002, 0.0002, np.nan]), 0.0002)
    np.testing.assert_array_equal(got, [1.0, 0.0, np.nan, np.nan, np.nan, np.nan])
    with pytest.raises(ValueError, match="dead_zone"):
        direction_labels(np.zeros(2), -1.0)


def test_persistence_is_the_sign_of_the_last_h_minutes() -> None:
    ts = T0 + np.arange(5) * MINUTE_MS
    got = persistence(ts, np.array([100.0, 99.0, 101.0, 101.0, 98.0]), horizon=2)
    np.testing.assert_array_equal(got, [np.nan, np.nan, 1.0, 1.0, 0.0])


# -- inputs and windows ------------------------------------------------------------------------
def test_log_return_input_is_nan_after_a_missing_minute() -> None:
    frame = _frame([0, 1, 3, 4], close=[100.0, 101.0, 102.0, 103.0])
    got = candle_input(frame, "log_return")
    np.testing.assert_allclose(got, [np.nan, np.log(1.01), np.nan, np.log(103 / 102)],
                               equal_nan=True)


def test_window_is_valid_only_over_consecutive_clean_minutes() -> None:
    ts = T0 + np.array([0, 1, 2, 3, 4, 6, 7, 8, 9]) * MINUTE_MS
    bad = np.zeros(9, dtype=bool)
    bad[7] = True  # minute 8 carries a NaN input / warm-up
    ok = window_ok(ts, bad, length=3)
    # rows: 2 (0..2), 3, 4 are fine; 5 and 6 span the gap; 7, 8 contain row 7
    np.testing.assert_array_equal(np.flatnonzero(ok), [2, 3, 4])


def test_input_table_marks_warmup_and_nan_rows_bad() -> None:
    frame = _frame(list(range(6)))
    frame.loc[1, WARMUP_COLUMN] = True
    frame.loc[3, "f"] = np.nan
    values, bad, names = input_table(frame, ["f"], ["log_return"])
    assert names == ["f", "log_return"] and values.dtype == np.float32
    assert values.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(bad, [True, True, False, True, False, False])  # row 0: no
    # previous close for its log return


def test_batches_are_windows_of_the_one_table_not_copies() -> None:
    frame = _frame(list(range(200)))
    split = SplitRange("train", T0, T0 + 200 * MINUTE_MS)
    series, _ = market_series("m", frame, ["f"], ["log_return"], [split], 5, 0.0, fit_on=split)
    ends = lstm_ends(series, split, 10, labelled=True)
    samples = SequenceSet(series, ends, 10)
    # the table is the normalized array itself (shared memory), built once
    assert samples.table.data_ptr() == series.values.ctypes.data
    windows = np.lib.stride_tricks.sliding_window_view(series.values, 10, axis=0)
    index = torch.tensor([0, 7, len(ends) - 1])
    x, y = samples.gather(index)
    assert x.shape == (3, 10, 2)
    for k, i in enumerate(index.tolist()):
        np.testing.assert_array_equal(x[k].numpy(), windows[ends[i] - 9].T)
        assert y[k].item() == series.label[ends[i]]


def test_samples_need_a_label_inside_their_own_split() -> None:
    frame = _frame(list(range(120)))
    train = SplitRange("train", T0, T0 + 60 * MINUTE_MS)
    val = SplitRange("validation", T0 + 60 * MINUTE_MS, T0 + 120 * MINUTE_MS)
    series, _ = market_series("m", frame, ["f"], [], [train, val], 15, 0.0, fit_on=train)
    train_ends = lstm_ends(series, train, 10, labelled=True)
    val_ends = lstm_ends(series, val, 10, labelled=True)
    # train's last label is at minute 44 (its horizon bar, 59, is the last train bar)
    assert train_ends[0] == 9 and train_ends[-1] <= 44
    # validation windows may start in train, labels stop 15 minutes before its end
    assert val_ends[0] == 60 and val_ends[-1] <= 104
    assert np.isnan(series.label[45:60]).all()
    every = lstm_ends(series, val, 10, labelled=False)
    assert every[-1] == 119  # predictions cover bars without a label too
    strided = lstm_ends(series, train, 10, labelled=True, stride=4)
    np.testing.assert_array_equal(strided, train_ends[::4])


def test_normalization_is_fitted_on_the_training_split_only() -> None:
    frame = _frame(list(range(100)))
    train = SplitRange("train", T0, T0 + 50 * MINUTE_MS)
    rest = SplitRange("validation", T0 + 50 * MINUTE_MS, T0 + 100 * MINUTE_MS)
    _, norm = market_series("m", frame, ["f"], [], [train, rest], 5, 0.0, fit_on=train)
    shifted = frame.copy()
    shifted.loc[50:, "f"] += 1000.0  # validation values change: the fit must not
    _, again = market_series("m", shifted, ["f"], [], [train, rest], 5, 0.0, fit_on=train)
    np.testing.assert_array_equal(norm.mean, again.mean)
    np.testing.assert_allclose(norm.mean, [frame["f"][:50].mean()], rtol=1e-5)
    restored = Normalization.from_dict(norm.to_dict())
    np.testing.assert_array_equal(restored.std, norm.std)
    with pytest.raises(ValueError, match="trained on inputs"):
        market_series("m", frame, ["f"], ["log_return"], [train], 5, 0.0, normalization=norm)


def test_markets_align_on_their_union_with_masks() -> None:
    train = SplitRange("train", T0, T0 + 40 * MINUTE_MS)
    a = _frame([m for m in range(40) if m != 12], seed=1)  # a lacks minute 12
    b = _frame([m for m in range(40) if m not in (20, 21)], seed=2)  # b lacks 20, 21
    series = [market_series(name, f, ["f"], [], [train], 3, 0.0, fit_on=train)[0]
              for name, f in (("a", a), ("b", b))]
    aligned = AlignedMarkets.align(series)
    assert len(aligned.ts_ms) == 40  # every minute has a bar in some market
    assert not aligned.present[12, 0] and aligned.present[12, 1]
    assert aligned.present[20].tolist() == [True, False]
    assert (aligned.values[12, 0] == 0).all()  # masked cells carry zeros
    assert np.isnan(aligned.label[20, 1]) and np.isfinite(aligned.label[20, 0])
    ends = multi_ends(aligned, train, 5, labelled=True)
    assert 12 in ends and 20 in ends  # one market's missing minute is masked, not a gap
    samples = MultiSequenceSet(aligned, ends, 5)
    x, present, y = samples.gather(torch.tensor([list(ends).index(16)]))
    assert x.shape == (1, 5, 2, 1) and present[0, :, 0].tolist() == [False] + [True] * 4


def test_a_minute_missing_in_every_market_breaks_the_window() -> None:
    split = SplitRange("train", T0, T0 + 30 * MINUTE_MS)
    minutes = [m for m in range(30) if m != 10]
    series = [market_series(n, _frame(minutes, seed=s), ["f"], [], [split], 3, 0.0,
                            fit_on=split)[0] for n, s in (("a", 1), ("b", 2))]
    aligned = AlignedMarkets.align(series)
    ends = multi_ends(aligned, split, 5, labelled=False)
    times = (aligned.ts_ms[ends] - T0) // MINUTE_MS
    assert not any(10 <= t <= 14 for t in times)  # windows across minute 10 are dropped
    assert 9 in times and 15 in times


def test_batch_order_is_a_function_of_seed_and_epoch() -> None:
    frame = _frame(list(range(300)))
    split = SplitRange("train", T0, T0 + 300 * MINUTE_MS)
    series, _ = market_series("m", frame, ["f"], [], [split], 5, 0.0, fit_on=split)
    samples = SequenceSet(series, lstm_ends(series, split, 8, labelled=True), 8)

    def order(seed: int, epoch: int) -> list[float]:
        return [float(y.sum()) + float(x.sum()) for x, y in
                samples.batches(16, epoch_generator(seed, epoch))]

    assert order(3, 1) == order(3, 1)
    assert order(3, 1) != order(3, 2) and order(3, 1) != order(4, 1)
    seen = torch.cat([y for _, y in samples.batches(16, epoch_generator(0, 0))])
    assert len(seen) == len(samples)  # every sample once per epoch
    in_order = torch.cat([y for _, y in samples.batches(16)])
    torch.testing.assert_close(in_order, samples.labels)
