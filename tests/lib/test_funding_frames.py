"""The venue's funding in the frames of training and evaluation, and the engine charging it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tests.conftest import kraken_market
from tradecore_lib.env import load_env_config
from tradecore_lib.evaluation.backtest import BuyAndHold, Target, run_policies
from tradecore_lib.features import load_feature_preset, publish_months
from tradecore_lib.ingest import ingest_month
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources import source_for
from tradecore_lib.sources.funding import (
    FundingHistory,
    MissingFundingError,
    fetch_funding_history,
    funding_charge_column,
    funding_key,
    publish_funding_month,
)
from tradecore_lib.train.config import load_train_config
from tradecore_lib.train.data import load_frame

FEBRUARY, MARCH = Month(2024, 2), Month(2024, 3)
HOUR_MS = 3_600_000
FUTURES = kraken_market("kraken_futures").model_copy(
    update={"holding_costs": kraken_market("kraken_futures").holding_costs.model_copy(
        update={"funding": "venue"})})


def _funding_lake(lake, ts_ms: np.ndarray, rates: np.ndarray, months: list[Month]) -> None:
    history = FundingHistory(ts_ms, rates, {})
    for month in months:
        publish_funding_month(lake, FUTURES, month, history)


def _flat_frame(start_ms: int, end_ms: int, rng: np.random.Generator) -> pd.DataFrame:
    """One-minute bars at a constant price of 100 (a position's notional never moves), with
    a few single missing minutes (gaps shorter than the preset's max_gap_minutes)."""
    ts = np.arange(start_ms, end_ms, MINUTE_MS)
    keep = (rng.random(ts.size) > 0.002) | (ts == MARCH.start_ms)  # the walk starts there
    keep[[0, -1]] = True
    ts = ts[keep]
    return pd.DataFrame({"ts": pd.to_datetime(ts, unit="ms", utc=True), "open": 100.0,
                         "high": 100.0, "low": 100.0, "close": 100.0, "volume": 1.0})


@pytest.mark.parametrize("seed", [0, 1])
def test_the_engine_charges_a_months_rates_to_a_constant_long(local_lake, seed):
    rng = np.random.default_rng(seed)
    # funding every hour from February 27 to April 1 at a random minute of the hour
    times = np.arange(MARCH.start_ms - 2 * 86_400_000, MARCH.end_ms + 86_400_000, HOUR_MS)
    times = times + int(rng.integers(0, 60)) * MINUTE_MS
    rates = rng.normal(1e-5, 3e-5, times.size)
    _funding_lake(local_lake, times, rates, [FEBRUARY, MARCH, Month(2024, 4)])
    # an evaluation frame: the last two days of February warm the env, March is walked
    frame = _flat_frame(MARCH.start_ms - 2 * 86_400_000, MARCH.end_ms, rng)
    ts_ms = frame["ts"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    column, files = funding_charge_column(local_lake, FUTURES, ts_ms)
    assert sorted(files) == [FEBRUARY, MARCH]
    frame["funding_charge"] = column
    start = int(np.searchsorted(ts_ms, MARCH.start_ms))
    # the column takes precedence over the preset's constant
    settings = {"preset": "default", "funding_rate_8h": 0.001, "stop_loss_bps": 5000.0}
    runs = run_policies(frame, settings, {"hold": BuyAndHold(), "short": Target(-1.0)}, start)
    in_march = (times >= MARCH.start_ms) & (times < MARCH.end_ms)
    hold = runs["hold"]
    notional = hold.position[0] * 100.0
    # one entry, held to the last close (the position after the last bar is closed)
    assert np.all(hold.position[:-1] == hold.position[0]) and hold.position[-1] == 0
    assert hold.fills["ts_ms"].to_pylist()[0] == MARCH.start_ms
    assert math.isclose(hold.funding_cost / notional, math.fsum(rates[in_march]),
                        rel_tol=1e-9)
    # a short receives positive funding: it enters at the second bar's open and is held to
    # the end (flat prices never reach its stop)
    short = runs["short"]
    entry_ms = short.fills["ts_ms"].to_pylist()[0]
    held = (times >= entry_ms) & (times < MARCH.end_ms)
    assert short.position[-2] < 0 and short.fills["kind"].to_pylist() == ["market", "end"]
    assert math.isclose(short.funding_cost / (short.position[-2] * 100.0),
                        math.fsum(rates[held]), rel_tol=1e-9)


@pytest.fixture
def futures_lake(make_kraken, local_lake):
    """The loopback Kraken's February (its last day) and March of PF_XBTUSD, as the chain
    stores them: candles, default features, and funding."""
    server = make_kraken()
    source = source_for(FUTURES, lake=local_lake)
    for month in (FEBRUARY, MARCH):
        ingest_month(local_lake, source, FUTURES, month, now_ms=server.fake.now_ms,
                     log=lambda _: None)
    for _ in publish_months(local_lake, FUTURES, [FEBRUARY, MARCH],
                            load_feature_preset("default")):
        pass
    history = fetch_funding_history(FUTURES, now_ms=server.fake.now_ms, log=lambda _: None)
    for month in (FEBRUARY, MARCH):
        publish_funding_month(local_lake, FUTURES, month, history)
    return local_lake, server


def test_frames_carry_the_venues_funding_and_its_lineage(futures_lake):
    lake, server = futures_lake
    data = load_frame(lake, FUTURES, [MARCH], "default", warmup=True)
    assert data.decision_start > 0 and data.warmup_partition.month == "2024-02"
    ts_ms = data.frame["ts"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    truth = server.fake.funding
    charged = (truth.ts_ms >= ts_ms[0]) & (truth.ts_ms < ts_ms[-1] + MINUTE_MS)
    column = data.frame["funding_charge"].to_numpy()
    assert math.isclose(column.sum(), math.fsum(truth.relative[charged]), rel_tol=1e-12)
    assert np.count_nonzero(column) == charged.sum()  # the fake's hours are an hour apart
    for used in (data.partitions[0], data.warmup_partition):
        key = funding_key(FUTURES, Month.parse(used.month))
        assert used.funding_key == key and used.funding_sha256 == lake.sha256(key)
        assert used.to_dict()["funding_sha256"] == used.funding_sha256
    # a market that does not charge the venue's funding gets no column, and its lineage
    # entries keep the fields they always had
    plain = FUTURES.model_copy(update={"holding_costs": FUTURES.holding_costs.model_copy(
        update={"funding": "none"})})
    data = load_frame(lake, plain, [MARCH], "default")
    assert "funding_charge" not in data.frame.columns
    assert "funding_key" not in data.partitions[0].to_dict()


def test_a_missing_funding_month_is_named(futures_lake):
    lake, _ = futures_lake
    lake.fs.delete_file(lake.uri(funding_key(FUTURES, FEBRUARY)))
    with pytest.raises(MissingFundingError, match=r"\['2024-02'\].*materialize "
                       "kraken_futures_btc_usd/funding"):
        load_frame(lake, FUTURES, [MARCH], "default", warmup=True)


@pytest.mark.parametrize("costs", [{"borrow_rate_annual": 0.219}, {"funding_rate_8h": -0.0002}])
def test_market_costs_are_valid_training_overrides(costs):
    cfg = load_train_config("cpu-smoke", {"env_overrides": costs})
    env = load_env_config(cfg.env_settings(None))
    assert {key: getattr(env, key) for key in costs} == costs
