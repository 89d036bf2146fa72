"""How a direction training run is asked for: the model key, its markets, the command line.

* A **model key** names what is trained: a market name (``synthetic_btc_usd``) trains that
  market's LSTM (``direction_model/<market>``); ``<venue>_multi`` (``synthetic_multi``) trains
  the venue's transformer over :func:`venue_markets` (``direction_model/<venue>_multi``).
* :class:`DirectionRequest` is one run to launch; :meth:`DirectionRequest.argv` and
  :func:`parse_direction_request` are the two directions of the one command line
  ``python -m tradecore_lib.direction.train`` (the PPO pairing of
  :mod:`tradecore_lib.train.launch`). Credentials never ride on it: the lake's S3 settings
  reach the child as environment variables (:func:`tradecore_lib.train.launch.s3_env`).
* :func:`plan_direction_folds` resolves a request's windows against the months with features
  into one request per fold with its months fixed.

Imports no torch (the Dagster layer builds requests from it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from tradecore_lib.direction.config import DirectionConfig, ModelKind, load_direction_config
from tradecore_lib.errors import ConfigError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import Lake, candle_key
from tradecore_lib.markets import Market, get_market, load_markets
from tradecore_lib.months import Month, months_between
from tradecore_lib.sources import VENUES
from tradecore_lib.train.config import Fold, deep_merge

ENTRY_POINT = "tradecore_lib.direction.train"
MULTI_SUFFIX = "_multi"
DEFAULT_PRESET = "cpu-default"


def multi_model_key(venue: str) -> str:
    """The model key of ``venue``'s transformer: ``<venue>_multi``."""
    return f"{venue}{MULTI_SUFFIX}"


def model_kind(model_key: str) -> ModelKind:
    """``transformer`` for ``<venue>_multi``, ``lstm`` for a market name.

    Raises:
        ConfigError: the key is neither a known venue's ``_multi`` nor a market.
    """
    if model_key.endswith(MULTI_SUFFIX) and model_key[:-len(MULTI_SUFFIX)] in VENUES:
        return "transformer"
    get_market(model_key)  # MarketConfigError (a ConfigError) with a did-you-mean
    return "lstm"


def is_control(market: Market) -> bool:
    """Whether ``market`` is a synthetic control (null or planted process), not a market the
    venue's transformer should learn from."""
    return market.venue == "synthetic" and market.source.get("process", "regime") != "regime"


def venue_markets(venue: str, markets: Sequence[Market] | None = None) -> list[Market]:
    """The markets of ``venue``'s transformer by default: its enabled markets with a
    ``direction_preset``, synthetic controls left out, in ``configs/markets.yaml`` order
    (``markets``: the enabled markets, when the caller has them loaded already).

    Raises:
        ConfigError: the venue has none.
    """
    chosen = [m for m in (load_markets() if markets is None else markets)
              if m.venue == venue and m.direction_preset is not None and not is_control(m)]
    if not chosen:
        raise ConfigError(f"venue {venue!r} has no enabled market with a direction_preset "
                          "for a multi-market model")
    return chosen


def model_markets(model_key: str, cfg: DirectionConfig,
                  markets: Sequence[Market] | None = None) -> list[Market]:
    """The markets a model trains on: the market itself, or the transformer's markets
    (``cfg.multi_markets`` when set, each of the key's venue, else :func:`venue_markets`);
    ``markets``: the enabled markets, when the caller has them loaded already."""
    if model_kind(model_key) == "lstm":
        return [get_market(model_key)]
    venue = model_key[:-len(MULTI_SUFFIX)]
    if cfg.multi_markets is None:
        return venue_markets(venue, markets)
    known = {m.name: m for m in markets} if markets is not None else {}
    chosen = [known.get(name) or get_market(name) for name in cfg.multi_markets]
    foreign = [m.name for m in chosen if m.venue != venue]
    if foreign:
        raise ConfigError(f"{model_key}: multi_markets {foreign} are not on venue {venue!r}")
    if len({m.name for m in chosen}) != len(chosen):
        raise ConfigError(f"{model_key}: multi_markets lists a market twice: "
                          f"{cfg.multi_markets}")
    return chosen


class DirectionRequest(BaseModel):
    """One direction training run to launch; the child resolves the same config."""

    model_key: str = Field(description="A market name (LSTM) or <venue>_multi (transformer).")
    preset: str = Field(default=DEFAULT_PRESET, description="Preset in configs/direction/.")
    overrides: dict[str, Any] = Field(default_factory=dict)
    lake_root: str | None = None

    @property
    def kind(self) -> ModelKind:
        return model_kind(self.model_key)

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command that runs this request (no credentials in it)."""
        command = [python, "-m", ENTRY_POINT, "--model-key", self.model_key,
                   "--preset", self.preset]
        if self.overrides:
            command += ["--overrides", json.dumps(self.overrides, sort_keys=True)]
        if self.lake_root:
            command += ["--lake-root", self.lake_root]
        return command

    def config(self) -> DirectionConfig:
        """The resolved, validated config (what the child trains)."""
        return load_direction_config(self.preset, self.overrides)

    def for_fold(self, cfg: DirectionConfig, fold: Fold) -> DirectionRequest:
        """This request with ``fold``'s months fixed (a no-op for fixed-month presets)."""
        if cfg.windows is None:
            return self
        return self.model_copy(update={"overrides": deep_merge(self.overrides,
                                                               cfg.fold_overrides(fold))})


def parse_direction_request(argv: list[str] | None = None,
                            description: str = "Train a direction model") -> DirectionRequest:
    """Parse the entry point's arguments (the inverse of :meth:`DirectionRequest.argv`).

    Raises:
        ConfigError: ``--overrides`` is not a JSON object.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model-key", required=True, help="a market name from "
                        "configs/markets.yaml (its LSTM) or <venue>_multi (the venue's "
                        "transformer)")
    parser.add_argument("--preset", default=DEFAULT_PRESET,
                        help=f"preset in configs/direction/ (default {DEFAULT_PRESET})")
    parser.add_argument("--overrides", default="{}", help="JSON object deep-merged over the "
                        "preset, e.g. '{\"seed\": 1}'")
    parser.add_argument("--lake-root", default=None, help="lake root (default: "
                        "TRADECORE_LAKE_ROOT or data/lake)")
    args = parser.parse_args(argv)
    try:
        overrides = json.loads(args.overrides)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--overrides is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"--overrides must be a JSON object, got {args.overrides!r}")
    return DirectionRequest(model_key=args.model_key, preset=args.preset, overrides=overrides,
                            lake_root=args.lake_root)


def plan_direction_folds(lake: Lake, request: DirectionRequest, now_ms: int
                         ) -> tuple[DirectionConfig, list[tuple[Fold, DirectionRequest]]]:
    """The request's config and one request per fold, oldest first (the newest is promoted).

    Folds are resolved against the complete months (before the month of ``now_ms``) that
    have candles and features in ``lake`` for *every* market of the model.

    Raises:
        DirectionConfigError: a month a fold needs has no features.
    """
    cfg = request.config()
    markets = model_markets(request.model_key, cfg)
    if cfg.windows is None:
        candidates = sorted({m for split in ("train", "validation", "test")
                             for m in cfg.data.months(split)})
    else:
        first = max(m.first_month for m in markets)
        candidates = months_between(first, Month.of_ms(now_ms).previous())
    available = [month for month in candidates if all(
        lake.exists(candle_key(m, month))
        and lake.exists(feature_key(cfg.data.feature_preset or m.feature_preset, m, month))
        for m in markets)]
    return cfg, [(fold, request.for_fold(cfg, fold)) for fold in cfg.folds(available)]
