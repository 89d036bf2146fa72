"""The synthetic venue: determinism per (seed, market, minute), realism of ``regime``, and the
control processes (null, planted_linear, planted_temporal) doing what their documentation says."""

import hashlib
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from tradecore_lib.candles import (
    GapTolerance,
    gap_report,
    inspect_gaps,
    inspect_ohlc,
    inspect_time_grid,
    ts_millis,
)
from tradecore_lib.errors import ConfigError
from tradecore_lib.evaluation.controls import CandleBars, decoded_signal, lagged_return
from tradecore_lib.features import compute_features, inline_preset
from tradecore_lib.lake import parquet_bytes
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources.synthetic_generator import (
    CONTROL_PROCESSES,
    DAY_MS,
    EPOCH,
    SyntheticOptions,
    SyntheticRangeError,
    _control_core,
    generate_month,
)

PARAMS = SyntheticOptions()
MARKET = "synthetic_btc_usd"
CONTROL_MARKET = "synthetic_edge_usd"
JAN, FEB, MAR = Month(2024, 1), Month(2024, 2), Month(2024, 3)

# Digest of February 2024 of the default regime market before the control processes were
# added: the regime process must keep producing exactly these values.
REGIME_FEB_DIGEST = "8c23be3524c0ba410bd8cddd9a060b52354053d5f41ef2d7201360ad78e3e1c0"

def values_digest(table: pa.Table) -> str:
    """sha256 of the column values (independent of the parquet writer's version)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        values = ts_millis(table) if name == "ts" else table.column(name).to_numpy()
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def options(process: str, **kw) -> SyntheticOptions:
    return SyntheticOptions(process=process, seed=3, **kw)


def log_returns(table: pa.Table) -> np.ndarray:
    return np.diff(np.log(table.column("close").to_numpy()))


def slope_and_se(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """OLS slope of ``y`` on ``x`` (with intercept) and its standard error."""
    xc = x - x.mean()
    slope = float((xc * (y - y.mean())).sum() / (xc**2).sum())
    resid = y - y.mean() - slope * xc
    se = float(np.sqrt(resid.var() / (xc**2).sum()))
    return slope, se


def r_squared(columns: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares fit of ``y`` on ``columns`` (T, K) plus an intercept."""
    design = np.column_stack([np.ones(len(y)), columns])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    return float(1.0 - (y - design @ beta).var() / y.var())


@pytest.fixture(scope="module")
def feb():
    return generate_month(PARAMS, MARKET, FEB)


@pytest.fixture(scope="module")
def control_months():
    """January and February 2024 of each control process (same seed, same market)."""
    return {p: (generate_month(options(p), CONTROL_MARKET, JAN),
                generate_month(options(p), CONTROL_MARKET, FEB)) for p in CONTROL_PROCESSES}


# --- regime ---------------------------------------------------------------------------------


def test_regime_output_is_unchanged(feb):
    assert values_digest(feb) == REGIME_FEB_DIGEST


def test_month_is_byte_identical_and_independent_of_other_months(feb, control_months):
    generate_month(PARAMS, MARKET, JAN)
    generate_month(PARAMS, MARKET, MAR)
    assert parquet_bytes(generate_month(PARAMS, MARKET, FEB)) == parquet_bytes(feb)
    for process in CONTROL_PROCESSES:
        generate_month(options(process), CONTROL_MARKET, MAR)
        again = generate_month(options(process), CONTROL_MARKET, FEB)
        assert parquet_bytes(again) == parquet_bytes(control_months[process][1])
    # A fresh process that generates only February produces the same bytes (a control
    # process's day levels are then computed from scratch; all three share that code).
    script = (
        "import hashlib, sys\n"
        "from tradecore_lib.lake import parquet_bytes\n"
        "from tradecore_lib.months import Month\n"
        "from tradecore_lib.sources.synthetic_generator import SyntheticOptions, generate_month\n"
        "for market, process in [a.split(':') for a in sys.argv[1:]]:\n"
        "    seed = 7 if process == 'regime' else 3\n"
        "    t = generate_month(SyntheticOptions(process=process, seed=seed), market,"
        " Month(2024, 2))\n"
        "    print(hashlib.sha256(parquet_bytes(t)).hexdigest())\n"
    )
    args = [f"{MARKET}:regime", f"{CONTROL_MARKET}:planted_temporal"]
    alone = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                           text=True, check=True).stdout.split()
    tables = [feb, control_months["planted_temporal"][1]]
    assert alone == [hashlib.sha256(parquet_bytes(t)).hexdigest() for t in tables]


def test_seed_and_market_change_the_data(feb, control_months):
    for process, reference in [("regime", feb), ("null", control_months["null"][1])]:
        seed = 7 if process == "regime" else 3
        market = MARKET if process == "regime" else CONTROL_MARKET
        other_seed = generate_month(SyntheticOptions(process=process, seed=seed + 1), market, FEB)
        other_market = generate_month(SyntheticOptions(process=process, seed=seed),
                                      "synthetic_eth_usd", FEB)
        close = reference.column("close").to_numpy()[:100]
        assert not np.array_equal(close, other_seed.column("close").to_numpy()[:100])
        assert not np.array_equal(close, other_market.column("close").to_numpy()[:100])


def test_months_join_continuously():
    jan = generate_month(PARAMS, MARKET, JAN)
    feb = generate_month(PARAMS, MARKET, FEB)
    jan_ts, feb_ts = ts_millis(jan), ts_millis(feb)
    if jan_ts[-1] == FEB.start_ms - MINUTE_MS and feb_ts[0] == FEB.start_ms:
        # Adjacent minutes across the boundary: open of the new month = last close.
        assert feb.column("open")[0].as_py() == jan.column("close")[-1].as_py()
    # Prices stay on the same level across the boundary either way.
    ratio = feb.column("open")[0].as_py() / jan.column("close")[-1].as_py()
    assert 0.95 < ratio < 1.05


def test_candles_are_valid(feb, control_months):
    for table in [feb, *(m[1] for m in control_months.values())]:
        assert inspect_time_grid(table, FEB).passed
        assert inspect_ohlc(table).passed
        assert inspect_gaps(table, FEB, GapTolerance()).passed


def test_volatility_clusters(feb):
    close = feb.column("close").to_numpy()
    abs_returns = np.abs(np.diff(np.log(close)))
    hourly = abs_returns[: abs_returns.size // 60 * 60].reshape(-1, 60).mean(axis=1)
    lag1 = np.corrcoef(hourly[:-1], hourly[1:])[0, 1]
    raw = np.diff(np.log(close))
    lag1_raw = np.corrcoef(raw[:-1], raw[1:])[0, 1]
    assert lag1 > 0.3  # volatility is persistent hour to hour
    assert abs(lag1_raw) < 0.1  # returns themselves are not predictable


def test_intraday_and_weekly_volume_seasonality(feb, control_months):
    for table in (feb, control_months["null"][1]):
        ts = ts_millis(table)
        volume = table.column("volume").to_numpy()
        hour = (ts // 3_600_000) % 24
        weekday = ((ts // 86_400_000) + 3) % 7  # 1970-01-01 was a Thursday (3)
        us_session = volume[(hour >= 13) & (hour < 17) & (weekday < 5)].mean()
        quiet = volume[(hour >= 20) & (hour < 23) & (weekday < 5)].mean()
        weekend = volume[weekday >= 5].mean()
        weekdays = volume[weekday < 5].mean()
        assert us_session > 1.5 * quiet
        assert weekend < 0.8 * weekdays


def test_regimes_shift_volatility():
    months = [generate_month(PARAMS, MARKET, Month(2024, m)) for m in range(1, 7)]
    vols = [np.diff(np.log(t.column("close").to_numpy())).std() for t in months]
    assert max(vols) / min(vols) > 1.5


def test_missing_minutes_follow_the_configured_rate():
    for process in ("regime", "null"):
        none = generate_month(SyntheticOptions(process=process, missing_minute_rate=0.0,
                                               outages_per_day=0.0), MARKET, FEB)
        assert none.num_rows == FEB.minutes
        many = generate_month(SyntheticOptions(process=process, missing_minute_rate=0.01,
                                               outages_per_day=0.0), MARKET, FEB)
        report = gap_report(ts_millis(many), FEB)
        assert 0.007 < report.missing_minutes / FEB.minutes < 0.013


def test_current_month_stops_at_now_and_keeps_every_minute(control_months):
    now = FEB.start_ms + 10 * 86_400_000 + 30 * MINUTE_MS + 1234
    for process in ("regime", *CONTROL_PROCESSES):
        opts = SyntheticOptions(process=process, seed=7 if process == "regime" else 3)
        market = MARKET if process == "regime" else CONTROL_MARKET
        table = generate_month(opts, market, FEB, now_ms=now)
        ts = ts_millis(table)
        assert ts[-1] < now - now % MINUTE_MS
        assert ts[-1] >= now - 60 * MINUTE_MS
        # Every minute is the same whether the month is generated whole or cut at now.
        whole = generate_month(opts, market, FEB)
        assert table.equals(whole.slice(0, table.num_rows))


def test_outside_horizon_is_a_clear_error():
    with pytest.raises(SyntheticRangeError, match="synthetic venue covers 2018-01"):
        generate_month(PARAMS, MARKET, Month(2010, 1))


# --- options --------------------------------------------------------------------------------


def test_unknown_option_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"sed: unknown key; did you mean 'seed'\?"):
        SyntheticOptions.from_mapping({"sed": 1}, "market x: source")


@pytest.mark.parametrize(("raw", "message"), [
    ({"process": "planted"}, "process"),
    ({"edge_bps": 2.0}, "edge_bps do not apply to process 'regime'"),
    ({"process": "null", "edge_bps": 2.0}, "edge_bps do not apply to process 'null'"),
    ({"process": "planted_linear", "annual_vol": 0.5}, "annual_vol do not apply"),
    ({"process": "planted_linear", "lag_far": 40}, "lag_far do not apply"),
    ({"process": "planted_temporal", "lag_near": 30, "lag_far": 30}, "lag_near .* smaller"),
    ({"process": "null", "range_bps": 20.0, "range_signal_bps": 8.0}, "must exceed 4 x"),
    ({"process": "planted_linear", "range_signal_bps": 0.0}, "range is where the signal"),
    ({"process": "null", "noise_bps": 0.0}, "noise_bps"),
    ({"process": "null", "signal_ar": 1.0}, "signal_ar"),
    ({"missing_minute_rate": -0.1}, "missing_minute_rate"),
])
def test_inconsistent_or_out_of_range_options_are_refused(raw, message):
    with pytest.raises(ConfigError, match=message):
        SyntheticOptions.from_mapping(raw, "market x: source")


def test_provenance_lists_what_the_process_reads():
    assert "annual_vol" in PARAMS.provenance() and "edge_bps" not in PARAMS.provenance()
    temporal = options("planted_temporal").provenance()
    assert {"edge_bps", "lag_near", "noise_bps", "process"} <= set(temporal)
    assert "annual_vol" not in temporal


# --- control processes ----------------------------------------------------------------------


def test_control_days_open_at_the_previous_close(control_months):
    for jan, feb in control_months.values():
        both = pa.concat_tables([jan, feb])
        ts = ts_millis(both)
        opens, closes = both.column("open").to_numpy(), both.column("close").to_numpy()
        adjacent = np.diff(ts) == MINUTE_MS
        # Exact equality, across every midnight and the month boundary.
        np.testing.assert_array_equal(opens[1:][adjacent], closes[:-1][adjacent])
        assert (np.diff(ts[adjacent.nonzero()[0]] // DAY_MS) >= 0).all()


def test_the_range_encodes_the_generated_signal(control_months):
    opts = options("planted_linear")
    feb = control_months["planted_linear"][1]
    first_day = (FEB.start_ms - int(EPOCH.timestamp() * 1000)) // DAY_MS
    _, signal, _ = _control_core(opts, CONTROL_MARKET, first_day + np.arange(FEB.minutes // 1440))
    truth = signal.ravel()[(ts_millis(feb) - FEB.start_ms) // MINUTE_MS]
    error = decoded_signal(CandleBars.from_table(feb), opts) - truth
    # Price rounding only (a tick is about 0.2 bp here), except the rare bar whose body is
    # wider than the range that would encode an extreme signal.
    assert np.median(np.abs(error)) < 0.01
    assert np.mean(np.abs(error) > 0.05) < 1e-4


def test_null_has_no_exploitable_drift(control_months):
    opts = options("null")
    feb = control_months["null"][1]
    bars = CandleBars.from_table(feb)
    nxt = log_returns(feb)
    n = len(nxt)
    sigma = opts.noise_bps * 1e-4
    # Mean log return is the martingale correction -sigma^2 / 2 (a few SE at most off it).
    assert abs(nxt.mean() + 0.5 * sigma**2) < 4 * nxt.std() / np.sqrt(n)
    # No signal: neither the range's signal nor the lagged window predicts the next return.
    for predictor in (decoded_signal(bars, opts)[:-1],
                      np.sign(lagged_return(bars, 5, 30))[:-1]):
        known = np.isfinite(predictor)
        slope, se = slope_and_se(predictor[known], nxt[known])
        assert abs(slope) < 4 * se
    # No autocorrelation at any lag up to an hour.
    centred = nxt - nxt.mean()
    for lag in range(1, 61):
        rho = (centred[lag:] * centred[:-lag]).sum() / (centred**2).sum()
        assert abs(rho) < 4.5 / np.sqrt(n), lag
    # No volatility clustering either: a constant noise level.
    hourly = np.abs(centred[: n // 60 * 60]).reshape(-1, 60).mean(axis=1)
    assert abs(np.corrcoef(hourly[:-1], hourly[1:])[0, 1]) < 0.1


def test_planted_linear_edge_has_the_documented_strength(control_months):
    opts = options("planted_linear")
    feb = control_months["planted_linear"][1]
    signal = decoded_signal(CandleBars.from_table(feb), opts)[:-1]
    nxt = log_returns(feb)
    slope, se = slope_and_se(signal, nxt)
    assert abs(slope - opts.edge_bps * 1e-4) < max(4 * se, 0.1 * opts.edge_bps * 1e-4)
    documented = opts.edge_bps**2 / (opts.edge_bps**2 + opts.noise_bps**2)  # 3.8 %
    assert abs(r_squared(signal[:, None], nxt) - documented) < 0.25 * documented


def test_planted_temporal_edge_needs_the_window(control_months):
    opts = options("planted_temporal")
    jan, feb = control_months["planted_temporal"]
    bars = CandleBars.from_table(feb)
    nxt = log_returns(feb)
    # The documented predictor: the sign of the return over bars 5..30 back.
    lagged = np.sign(lagged_return(bars, opts.lag_near, opts.lag_far))[:-1]
    known = np.isfinite(lagged)
    slope, se = slope_and_se(lagged[known], nxt[known])
    assert abs(slope - opts.edge_bps * 1e-4) < max(4 * se, 0.15 * opts.edge_bps * 1e-4)
    # The current row's features (the range indicator and the bar's own return, computed by
    # the indicator registry) explain almost nothing of the next return...
    preset = inline_preset([{"name": "range"}, {"name": "log_returns",
                                                "params": {"horizons": [1]}}])
    features = compute_features(feb, preset, history=jan).table
    row = np.column_stack([features.column(c).to_numpy().astype(np.float64)
                           for c in ("hl_range", "range_atr_14", "logret_1")])[:-1]
    # ... while a linear model of the env's window (the last 64 one-bar returns) sees it.
    one_bar = np.concatenate([[np.nan], nxt])
    window = np.column_stack([np.concatenate([np.full(k, np.nan), one_bar[: len(one_bar) - k]])
                              for k in range(64)])[:-1]
    usable = np.isfinite(row).all(axis=1) & np.isfinite(window).all(axis=1)
    r2_row = r_squared(row[usable], nxt[usable])
    r2_window = r_squared(window[usable], nxt[usable])
    assert r2_row < 0.003
    assert r2_window > 0.015 and r2_window > 10 * r2_row
