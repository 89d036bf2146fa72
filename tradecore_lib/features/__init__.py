"""Indicator features: the registry ("Card Catalog"), presets ("Drink Menu"), feature tables
("Blender") and their X-Ray chart and statistics. Plain Python: no Dagster import."""

from tradecore_lib.features.compute import (
    WARMUP_COLUMN,
    FeatureInputError,
    FeatureTable,
    compute_features,
)
from tradecore_lib.features.monthly import (
    MissingCandlesError,
    PublishedFeatures,
    feature_key,
    publish_month,
    publish_months,
    read_candles,
)
from tradecore_lib.features.presets import (
    MAX_LOOKBACK,
    IndicatorChoice,
    Preset,
    PresetError,
    inline_preset,
    load_feature_preset,
    parse_preset,
)
from tradecore_lib.features.registry import REGISTRY, CandleArrays, Indicator, ParamSpec
from tradecore_lib.features.xray import column_stats, xray_png

__all__ = [
    "MAX_LOOKBACK",
    "REGISTRY",
    "WARMUP_COLUMN",
    "CandleArrays",
    "FeatureInputError",
    "FeatureTable",
    "Indicator",
    "IndicatorChoice",
    "MissingCandlesError",
    "ParamSpec",
    "Preset",
    "PresetError",
    "PublishedFeatures",
    "column_stats",
    "compute_features",
    "feature_key",
    "inline_preset",
    "load_feature_preset",
    "parse_preset",
    "publish_month",
    "publish_months",
    "read_candles",
    "xray_png",
]
