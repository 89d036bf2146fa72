"""Asset keys and UI groups: one scheme, fixed once.

Every asset key is ``<market>/<layer>`` (``synthetic_btc_usd/candles``,
``synthetic_btc_usd/ppo_agent``): the Dagster graph shows a key's last part on each node, so
nodes read what they are (``candles``, ``manifest``, ``features``...), and each market's chain is
one UI group named after the market. The layer is also a ``tradecore/layer`` tag, so
``tag:tradecore/layer=ingestion`` selects one layer across markets and ``key:"*/candles"``
selects every market's candles.
"""

from __future__ import annotations

import dagster as dg

# layers: the last part of every asset key
CANDLES = "candles"
FUNDING = "funding"
MANIFEST = "manifest"
FEATURES = "features"
PPO_AGENT = "ppo_agent"
EVALUATION = "evaluation"
CHAMPION = "champion"
SIGNALS = "signals"
CHAMPION_MONITOR = "champion_monitor"
# the direction models' chain (keys <model_key>/<layer>: a market, or <venue>_multi)
DIRECTION_MODEL = "direction_model"
DIRECTION_EVALUATION = "direction_evaluation"
DIRECTION_CHAMPION = "direction_champion"
DIRECTION_SIGNALS = "direction_signals"

# the stage each layer belongs to (a tag on every asset)
STAGES = {
    CANDLES: "ingestion",
    FUNDING: "ingestion",
    MANIFEST: "ingestion",
    FEATURES: "features",
    PPO_AGENT: "training",
    EVALUATION: "evaluation",
    CHAMPION: "serving",
    SIGNALS: "serving",
    # the champion judged again on each new month: an evaluation, of the serving model
    CHAMPION_MONITOR: "evaluation",
    DIRECTION_MODEL: "training",
    DIRECTION_EVALUATION: "evaluation",
    DIRECTION_CHAMPION: "serving",
    DIRECTION_SIGNALS: "serving",
}
LAYER_TAG = "tradecore/layer"


def asset_key(market: str, layer: str) -> dg.AssetKey:
    """The key of ``layer`` of ``market``: ``<market>/<layer>``."""
    if layer not in STAGES:
        raise KeyError(f"unknown layer {layer!r}; layers: {sorted(STAGES)}")
    return dg.AssetKey([market, layer])


def layer_tags(layer: str) -> dict[str, str]:
    """Tags of an asset of ``layer`` (its stage, for selecting one stage across markets)."""
    return {LAYER_TAG: STAGES[layer]}
