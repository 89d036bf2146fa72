"""Several synthetic markets generated jointly on a shared factor: the configured correlation of
one-minute log returns, each market's own level, volatility and volume, determinism per month,
and markets without a factor unchanged bit for bit."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from tradecore_lib.candles import (
    GapTolerance,
    inspect_gaps,
    inspect_ohlc,
    inspect_time_grid,
    ts_millis,
)
from tradecore_lib.errors import ConfigError
from tradecore_lib.lake import parquet_bytes
from tradecore_lib.markets import get_market
from tradecore_lib.months import MINUTE_MS, Month
from tradecore_lib.sources import source_options
from tradecore_lib.sources.synthetic_generator import (
    DAY_MS,
    SharedFactor,
    SyntheticOptions,
    _skeleton,
    generate_month,
)

JAN, FEB, MAR = Month(2024, 1), Month(2024, 2), Month(2024, 3)
JOINT = ("synthetic_btc_usd", "synthetic_eth_usd", "synthetic_sol_usd")
# Digest of February 2024 of the default regime market (no factor) as it was before joint
# generation existed (the same value tests/lib/test_synthetic.py pins). synthetic_btc_usd of
# configs/markets.yaml had exactly these options and data; it now opts in to the factor.
REGIME_FEB_DIGEST = "8c23be3524c0ba410bd8cddd9a060b52354053d5f41ef2d7201360ad78e3e1c0"
# Digests of February 2024 of the control markets of configs/markets.yaml before joint
# generation existed: their stored lakes stay valid.
CONTROL_FEB_DIGESTS = {
    "synthetic_null_usd": "26df0c3dbb26f1580d339fb7f54461ffecc656dd132b741d5caa4835213f73e3",
    "synthetic_edge_usd": "bb6f6f1660ad2c18c426f9a8b9aea776bbbcb90200431b9cfab21134c5423245",
    "synthetic_lag_usd": "365bd8d9d2a39f49ba3ef3777fc54a6d024a1c7ca7a1465019dc66e13f058d96",
}


def values_digest(table: pa.Table) -> str:
    """sha256 of the column values (independent of the parquet writer's version)."""
    digest = hashlib.sha256()
    for name in table.column_names:
        values = ts_millis(table) if name == "ts" else table.column(name).to_numpy()
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def shipped(market: str) -> SyntheticOptions:
    """The options ``configs/markets.yaml`` gives ``market``."""
    options = source_options(get_market(market))
    assert isinstance(options, SyntheticOptions)
    return options


@pytest.fixture(scope="module")
def months() -> dict[str, pa.Table]:
    """January and February 2024 of each shipped joint market, concatenated."""
    return {m: pa.concat_tables([generate_month(shipped(m), m, month) for month in (JAN, FEB)])
            for m in JOINT}


def minute_returns(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(ts of the bar, its one-minute log return) for bars whose previous minute exists."""
    ts = ts_millis(table)
    log_close = np.log(table.column("close").to_numpy())
    adjacent = np.diff(ts) == MINUTE_MS
    return ts[1:][adjacent], np.diff(log_close)[adjacent]


def paired_returns(a: pa.Table, b: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-minute log returns of two markets on the minutes both have: (ts, ra, rb)."""
    ts_a, ra = minute_returns(a)
    ts_b, rb = minute_returns(b)
    common, ia, ib = np.intersect1d(ts_a, ts_b, assume_unique=True, return_indices=True)
    return common, ra[ia], rb[ib]


def correlation_and_se(ts: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Pooled sample correlation of ``x`` and ``y`` and its delete-one-day jackknife standard
    error. The returns are fat-tailed (Student t with 4 degrees of freedom has no fourth
    moment) and their volatility clusters, so the normal-theory (1 - rho^2) / sqrt(n) would
    understate the sampling error; the jackknife over days measures it from the sample."""
    day = ts // DAY_MS
    sums = np.array([[np.sum(x[day == d] * y[day == d]), np.sum(x[day == d] ** 2),
                      np.sum(y[day == d] ** 2), np.sum(x[day == d]), np.sum(y[day == d]),
                      np.count_nonzero(day == d)] for d in np.unique(day)])

    def corr(s: np.ndarray) -> float:
        xy, xx, yy, sx, sy, n = s
        return float((xy - sx * sy / n) / np.sqrt((xx - sx**2 / n) * (yy - sy**2 / n)))

    total = sums.sum(axis=0)
    leave_out = np.array([corr(total - row) for row in sums])
    k = len(sums)
    se = float(np.sqrt((k - 1) / k * np.sum((leave_out - leave_out.mean()) ** 2)))
    return corr(total), se


@pytest.mark.parametrize(("a", "b"), [(JOINT[0], JOINT[1]), (JOINT[0], JOINT[2]),
                                      (JOINT[1], JOINT[2])])
def test_one_minute_returns_correlate_as_configured(months, a, b) -> None:
    expected = np.sqrt(shipped(a).factor.correlation * shipped(b).factor.correlation)
    ts, ra, rb = paired_returns(months[a], months[b])
    assert len(ts) > 80_000  # two months of minutes, a few missing
    rho, se = correlation_and_se(ts, ra, rb)
    print(f"{a} ~ {b}: correlation {rho:.4f} (configured {expected:.4f}, jackknife SE {se:.4f})")
    assert se < 0.01  # the sample is large enough for the bound below to mean something
    assert abs(rho - expected) < 4 * se


def test_a_market_without_the_factor_is_uncorrelated(months) -> None:
    alone = pa.concat_tables([generate_month(SyntheticOptions(seed=8), "synthetic_eth_usd", m)
                              for m in (JAN, FEB)])
    ts, ra, rb = paired_returns(months["synthetic_btc_usd"], alone)
    rho, se = correlation_and_se(ts, ra, rb)
    assert abs(rho) < 4 * se


def test_correlation_follows_the_configured_value() -> None:
    """Same factor, other correlations: the achieved correlation tracks the configured one
    (0 included: shared volatility regimes, independent shocks)."""
    for c in (0.0, 0.3, 0.95):
        factor = SharedFactor(seed=5, correlation=c)
        a, b = (generate_month(SyntheticOptions(seed=1, factor=factor), name, FEB)
                for name in ("synthetic_aaa_usd", "synthetic_bbb_usd"))
        ts, ra, rb = paired_returns(a, b)
        rho, se = correlation_and_se(ts, ra, rb)
        assert abs(rho - c) < max(4 * se, 0.01), (c, rho, se)


def test_each_market_keeps_its_own_level_volatility_and_volume(months) -> None:
    btc = shipped("synthetic_btc_usd")
    vols, volumes = {}, {}
    for market in JOINT:
        options, table = shipped(market), months[market]
        # Level: the skeleton (2018..2040) mean-reverts to the market's start_price.
        log_price = _skeleton(options, market).log_price
        assert abs(np.mean(log_price) - np.log(options.start_price)) < 0.3, market
        _, returns = minute_returns(table)
        vols[market] = returns.std()
        volumes[market] = table.column("volume").to_numpy().mean()
        # Prices sit on the market's own tick.
        close = table.column("close").to_numpy()
        ticks = close * 10.0**options.price_decimals
        np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-6)
        # Valid candles on the minute grid, missing minutes as configured.
        for month in (JAN, FEB):
            part = generate_month(options, market, month)
            assert inspect_time_grid(part, month).passed
            assert inspect_ohlc(part).passed
            assert inspect_gaps(part, month, GapTolerance()).passed
    for market in JOINT[1:]:
        options = shipped(market)
        # The volatility path is shared, so the ratio of realized volatilities is the ratio
        # of the configured annual volatilities (up to sampling of the idiosyncratic part).
        ratio = vols[market] / vols["synthetic_btc_usd"]
        assert abs(ratio / (options.annual_vol / btc.annual_vol) - 1.0) < 0.05, market
        volume_ratio = volumes[market] / volumes["synthetic_btc_usd"]
        assert abs(volume_ratio / (options.base_volume / btc.base_volume) - 1.0) < 0.05, market
    assert len({shipped(m).start_price for m in JOINT}) == 3
    assert len({shipped(m).annual_vol for m in JOINT}) == 3


def test_shipped_markets_share_one_factor() -> None:
    factors = {shipped(m).factor for m in JOINT}
    assert len({(f.seed, f.regime_mean_days) for f in factors}) == 1
    assert len({shipped(m).seed for m in JOINT}) == 3  # idiosyncratic streams differ anyway
    provenance = shipped("synthetic_eth_usd").provenance()
    assert provenance["factor_seed"] == 1 and provenance["factor_correlation"] == 0.8
    assert "regime_mean_days" not in provenance and "factor" not in provenance


def test_a_month_alone_equals_the_month_of_a_longer_run(months) -> None:
    """Each month is a pure function of (options, market, month): generating it in a fresh
    process (nothing cached: factor and market streams computed from scratch) gives the bytes
    of the same month generated after others, in any order, beside other markets."""
    generate_month(shipped("synthetic_sol_usd"), "synthetic_sol_usd", MAR)
    in_run = {m: generate_month(shipped(m), m, FEB) for m in JOINT}
    for market in JOINT:
        feb_of_run = months[market].slice(generate_month(shipped(market), market, JAN).num_rows)
        assert feb_of_run.equals(in_run[market])
    script = (
        "import hashlib, sys\n"
        "from tradecore_lib.lake import parquet_bytes\n"
        "from tradecore_lib.markets import get_market\n"
        "from tradecore_lib.months import Month\n"
        "from tradecore_lib.sources import source_options\n"
        "from tradecore_lib.sources.synthetic_generator import generate_month\n"
        "m = sys.argv[1]\n"
        "t = generate_month(source_options(get_market(m)), m, Month(2024, 2))\n"
        "print(hashlib.sha256(parquet_bytes(t)).hexdigest())\n"
    )
    for market in ("synthetic_sol_usd", "synthetic_eth_usd"):
        alone = subprocess.run([sys.executable, "-c", script, market], capture_output=True,
                               text=True, check=True).stdout.strip()
        assert alone == hashlib.sha256(parquet_bytes(in_run[market])).hexdigest()
    # A month cut at "now" is the head of the whole month, minute for minute.
    now = FEB.start_ms + 9 * DAY_MS + 17 * MINUTE_MS + 5
    cut = generate_month(shipped("synthetic_eth_usd"), "synthetic_eth_usd", FEB, now_ms=now)
    assert cut.equals(in_run["synthetic_eth_usd"].slice(0, cut.num_rows))


def test_markets_without_a_factor_are_unchanged_bit_for_bit(months) -> None:
    # Joint markets generated first in this process share no cache with standalone ones.
    assert months
    assert values_digest(generate_month(SyntheticOptions(), "synthetic_btc_usd", FEB)) \
        == REGIME_FEB_DIGEST
    for market, digest in CONTROL_FEB_DIGESTS.items():
        table = generate_month(shipped(market), market, FEB)
        assert values_digest(table) == digest, market
        assert not any(key.startswith("factor") for key in shipped(market).provenance())


@pytest.mark.parametrize(("raw", "message"), [
    ({"factor": {"seed": 1}}, "factor.correlation"),
    ({"factor": {"seed": 1, "correlation": 1.5}}, "correlation"),
    ({"factor": {"seed": 1, "correlation": -0.2}}, "correlation"),
    ({"factor": {"seed": 1, "correlation": 0.5, "corelation": 0.5}}, "did you mean"),
    ({"process": "null", "factor": {"seed": 1, "correlation": 0.5}},
     "factor do not apply to process 'null'"),
    ({"regime_mean_days": 5, "factor": {"seed": 1, "correlation": 0.5}},
     "regimes are the factor's"),
])
def test_bad_factor_options_are_refused(raw, message) -> None:
    with pytest.raises(ConfigError, match=message):
        SyntheticOptions.from_mapping(raw, "market x: source")
