"""One versioned checkpoint per training run in the lake, and the run id that names it.

Layout (every object written atomically through :meth:`Lake.write_bytes`, so an ``s3://``
lake works the same)::

    <lake_root>/models/<market>/<run_id>/
        model.zip            final SB3 PPO model (written last: its presence = run complete)
        vecnormalize.pkl     VecNormalize statistics (only when vec_normalize is on)
        config.json          the resolved TrainConfig
        lineage.json         market, feature preset, sha256 of every partition, code, seed
        metrics.jsonl        one JSON object per PPO iteration (timesteps, fps, losses...)
        checkpoints/step-<N>/model.zip, vecnormalize.pkl   every checkpoint_every_steps
        checkpoints/latest.json                            pointer to the newest checkpoint
        eval_summary.json, equity.png                      written by the evaluation

**Run id.** ``<preset>-<12 hex>`` where the hex is the sha256 of the market, the training
part of the resolved config (:meth:`TrainConfig.identity`: eligibility, gate limits and
evaluation settings excluded), the sha256 of every partition used, and the warm-start source.
Re-running the same request after a crash or preemption therefore lands in the same folder
and resumes from ``checkpoints/latest.json``; a finished run (``model.zip`` present) is
reported again without training. Changing data, seed or any hyper-parameter gives a new run
id. The code version is recorded in the lineage, not hashed: a resume across a code change is
logged as a warning instead of silently restarting.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass
from typing import Any

from tradecore_lib.lake import Lake
from tradecore_lib.train.config import TrainConfig
from tradecore_lib.train.data import PartitionUsed

MODEL = "model.zip"
VECNORMALIZE = "vecnormalize.pkl"
CONFIG = "config.json"
LINEAGE = "lineage.json"
METRICS = "metrics.jsonl"
EVAL_SUMMARY = "eval_summary.json"
EQUITY_PNG = "equity.png"
_LATEST = "checkpoints/latest.json"


def make_run_id(market: str, cfg: TrainConfig, partitions: list[PartitionUsed],
                warm_start_from: str | None) -> str:
    """The deterministic run id of training ``cfg`` on ``partitions`` (see module docstring)."""
    identity = {
        "market": market,
        "config": cfg.identity(),
        "data": [[p.month, p.candles_sha256, p.features_sha256] for p in partitions],
        "warm_start_from": warm_start_from,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"{cfg.name}-{digest[:12]}"


def run_prefix(market: str, run_id: str) -> str:
    """Lake-relative folder of a run's checkpoint."""
    return f"models/{market}/{run_id}"


@dataclass(frozen=True)
class Checkpoint:
    """A periodic checkpoint: env steps done and the lake keys of its files."""

    step: int
    model_key: str
    vecnormalize_key: str | None


class RunStore:
    """Reads and writes one run's folder ``models/<market>/<run_id>/`` in a lake."""

    def __init__(self, lake: Lake, market: str, run_id: str) -> None:
        self.lake = lake
        self.market = market
        self.run_id = run_id
        self.prefix = run_prefix(market, run_id)

    def key(self, name: str) -> str:
        return posixpath.join(self.prefix, name)

    def uri(self, name: str = "") -> str:
        return self.lake.uri(self.key(name)).rstrip("/")

    def exists(self, name: str) -> bool:
        return self.lake.exists(self.key(name))

    def is_complete(self) -> bool:
        """Whether training finished (the final model is written last)."""
        return self.exists(MODEL)

    # -- JSON documents -------------------------------------------------------------------
    def write_json(self, name: str, document: Any) -> None:
        self.lake.write_bytes(self.key(name), (json.dumps(document, indent=2) + "\n").encode())

    def read_json(self, name: str) -> Any:
        return json.loads(self.lake.read_bytes(self.key(name)))

    def write_bytes(self, name: str, data: bytes) -> None:
        self.lake.write_bytes(self.key(name), data)

    def read_bytes(self, name: str) -> bytes:
        return self.lake.read_bytes(self.key(name))

    # -- metrics --------------------------------------------------------------------------
    def read_metrics(self) -> list[dict[str, Any]]:
        """Rows of ``metrics.jsonl`` (empty before the first iteration)."""
        if not self.exists(METRICS):
            return []
        text = self.read_bytes(METRICS).decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def write_metrics(self, rows: list[dict[str, Any]]) -> None:
        # The whole file is rewritten (atomically) each time: object stores cannot append,
        # and the file holds one small row per PPO iteration.
        self.write_bytes(METRICS, "".join(json.dumps(r) + "\n" for r in rows).encode())

    # -- checkpoints ----------------------------------------------------------------------
    def save_checkpoint(self, step: int, model: bytes, vecnormalize: bytes | None) -> Checkpoint:
        """Write checkpoint ``step`` then point ``latest.json`` at it (in that order, so the
        pointer never names a half-written checkpoint)."""
        folder = f"checkpoints/step-{step:012d}"
        model_key = self.key(f"{folder}/{MODEL}")
        self.lake.write_bytes(model_key, model)
        vec_key = None
        if vecnormalize is not None:
            vec_key = self.key(f"{folder}/{VECNORMALIZE}")
            self.lake.write_bytes(vec_key, vecnormalize)
        self.write_json(_LATEST, {"step": step, "model": model_key, "vecnormalize": vec_key})
        return Checkpoint(step, model_key, vec_key)

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest periodic checkpoint, or None before the first one."""
        if not self.exists(_LATEST):
            return None
        pointer = self.read_json(_LATEST)
        return Checkpoint(int(pointer["step"]), pointer["model"], pointer["vecnormalize"])
