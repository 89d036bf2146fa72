"""A direction model's run folder in the lake, and the run id that names it.

Layout (every object written whole and atomically through :meth:`Lake.write_bytes`, so an
``s3://`` lake works the same)::

    <lake_root>/direction_models/<model_key>/<run_id>/
        model.pt        the resumable checkpoint, rewritten after every epoch: network and
                        optimizer state, epochs done, torch RNG state, early-stopping state
        final.pt        the model to predict with (written last: its presence = complete):
                        weights, constructor keywords, per-market input normalization, input
                        columns, horizon, dead zone, markets
        config.json     the resolved DirectionConfig
        lineage.json    markets, sha256 of every partition read, seed, code version
        metrics.jsonl   one row per epoch (loss, accuracy, validation, samples/s, GPU)
        stopped.json    the latest thermal-guard stop (history once resumed)
        batch_search.json  what the batch-size search measured (when on)

``model_key`` is the market name (LSTM) or ``<venue>_multi`` (transformer).

**Run id** ``<preset>-<12 hex>``: sha256 of the model key, the model kind, the training part of
the config (:meth:`DirectionConfig.identity`) and the sha256 of every candle and feature
partition read, per market (the PPO habit, :func:`tradecore_lib.train.checkpoints.make_run_id`).
Re-running the same request after a crash lands in the same folder and resumes from
``model.pt``; a complete run is reported again without training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

from tradecore_lib.direction.config import DirectionConfig, ModelKind
from tradecore_lib.lake import Lake
from tradecore_lib.train.checkpoints import CONFIG, LINEAGE, METRICS, RunStore
from tradecore_lib.train.data import PartitionUsed

MODEL = "model.pt"
FINAL = "final.pt"
BATCH_SEARCH = "batch_search.json"
__all__ = ["BATCH_SEARCH", "CONFIG", "FINAL", "LINEAGE", "METRICS", "MODEL", "DirectionStore",
           "direction_prefix", "make_direction_run_id"]


def direction_prefix(model_key: str, run_id: str) -> str:
    """Lake-relative folder of a direction run."""
    return f"direction_models/{model_key}/{run_id}"


class DirectionStore(RunStore):
    """Reads and writes one run folder ``direction_models/<model_key>/<run_id>/``."""

    def __init__(self, lake: Lake, model_key: str, run_id: str) -> None:
        super().__init__(lake, model_key, run_id)
        self.model_key = model_key
        self.prefix = direction_prefix(model_key, run_id)

    def is_complete(self) -> bool:
        """Whether training finished (``final.pt`` is written last)."""
        return self.exists(FINAL)


def make_direction_run_id(model_key: str, kind: ModelKind, cfg: DirectionConfig,
                          partitions: Mapping[str, Sequence[PartitionUsed]]) -> str:
    """The deterministic run id of training ``cfg`` on ``partitions`` (market -> months read)."""
    identity = {
        "model_key": model_key,
        "kind": kind,
        "config": cfg.identity(kind),
        "data": {market: [[p.month, p.candles_sha256, p.features_sha256] for p in used]
                 for market, used in sorted(partitions.items())},
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{cfg.name}-{digest[:12]}"
