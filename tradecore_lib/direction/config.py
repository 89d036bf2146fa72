"""The direction models' configuration: typed presets in ``configs/direction/``.

A preset is a JSON object with the fields of :class:`DirectionConfig`; omitted fields take the
defaults below. Run config (the launchpad, or ``--overrides`` on the command line) is a partial
object deep-merged over the preset (:func:`~tradecore_lib.train.config.deep_merge`, the PPO
presets' rule). One preset serves both models: the per-market LSTM reads ``lstm``, the
venue's multi-market transformer reads ``transformer``; everything else is shared.

**Windows.** The same window model as the PPO presets, imported from
:mod:`tradecore_lib.train.config`: ``data`` lists fixed train / validation / test months
(:class:`~tradecore_lib.train.config.DataWindow`), or ``windows`` gives them relative to the
data (:class:`~tradecore_lib.train.config.WindowSpec`), resolved by :meth:`DirectionConfig.folds`
into walk-forward :class:`~tradecore_lib.train.config.Fold` s; a run trains one fold with its
months fixed (:meth:`DirectionConfig.for_fold`).

**Labels** (:mod:`tradecore_lib.direction.labels`): the sign of the log return over the next
``horizon_minutes``; bars with ``|return| <= dead_zone`` have no label (dropped from training,
scored separately by the evaluation).

**Run id.** :meth:`DirectionConfig.identity` is what is hashed into the run id: everything
that changes what is trained (the section of the model that is not trained, the promotion,
economic and signal settings, the description and eligibility are left out), so changing a
gate threshold re-judges a finished model instead of training it again.

Imports only pydantic and the config layer (no torch): the Dagster code location can build
launchpad config from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, model_validator

from tradecore_lib.config import (
    ConfigModel,
    check_reference,
    preset_file,
    read_json_preset,
    validate,
)
from tradecore_lib.errors import ConfigError
from tradecore_lib.months import Month
from tradecore_lib.train.config import (
    DataWindow,
    Fold,
    PromotionGate,
    WindowSpec,
    _walk_forward,  # the PPO presets' walk-forward layout, shared (one window model)
    deep_merge,
)

PRESET_KIND = "direction"
# Sections that do not change what is trained (see DirectionConfig.identity).
NON_TRAINING_FIELDS = frozenset({"description", "eligible_for_promotion", "promotion",
                                 "economic", "signals"})
ModelKind = Literal["lstm", "transformer"]
CandleInput = Literal["log_return", "hl_range", "body"]


class DirectionConfigError(ConfigError):
    """A direction preset or override is missing, malformed or out of range."""


class LSTMParams(ConfigModel):
    """The per-market LSTM (``direction_model/<market>``): the restart plan's shape by default."""

    sequence_length: int = Field(default=60, ge=2, le=2_000,
                                 description="L: minutes of input per sample (bars t-L+1 .. t).")
    hidden_size: int = Field(default=64, ge=1, le=4_096,
                             description="Hidden units per direction and layer.")
    num_layers: int = Field(default=2, ge=1, le=8, description="Stacked LSTM layers.")
    bidirectional: bool = Field(default=True, description="Read each window both ways (the "
                                "window is all past bars, so this sees no future).")
    dropout: float = Field(default=0.1, ge=0, lt=1,
                           description="Dropout between LSTM layers and before the head.")


class TransformerParams(ConfigModel):
    """The venue's multi-market transformer encoder (``direction_model/<venue>_multi``)."""

    sequence_length: int = Field(default=100, ge=2, le=2_000,
                                 description="L: minutes of input per sample, every market.")
    d_model: int = Field(default=64, ge=8, le=4_096,
                         description="Width of each (minute, market) token.")
    num_layers: int = Field(default=4, ge=1, le=24, description="Encoder layers.")
    num_heads: int = Field(default=8, ge=1, le=64,
                           description="Attention heads; must divide d_model.")
    feedforward: int = Field(default=128, ge=8, le=16_384,
                             description="Hidden width of each layer's feed-forward block.")
    dropout: float = Field(default=0.1, ge=0, lt=1, description="Dropout inside the encoder.")

    @model_validator(mode="after")
    def _heads(self) -> TransformerParams:
        if self.d_model % self.num_heads:
            raise ValueError(f"num_heads {self.num_heads} must divide d_model {self.d_model}")
        return self


class Optimization(ConfigModel):
    """How the network is fitted: binary cross-entropy with logits, Adam."""

    epochs: int = Field(default=10, ge=1, le=10_000, description="Passes over the training "
                        "samples (at most: early stopping may end sooner).")
    batch_size: int = Field(default=256, ge=1, le=1_048_576, description="Samples per "
                            "gradient step (the last batch of an epoch may be smaller).")
    learning_rate: float = Field(default=1e-3, gt=0, le=1, description="Adam step size.")
    weight_decay: float = Field(default=0.0, ge=0, le=1,
                                description="Adam's L2 weight decay.")
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Clip the gradient's "
                                        "global norm to this before each step; null: no clip.")
    train_stride: int = Field(default=1, ge=1, le=1_440, description="Use every n-th valid "
                              "training sample (by time): neighbouring one-minute windows "
                              "overlap in all but one bar, so a stride trades little "
                              "information for a proportionally shorter epoch.")
    monitor_stride: int = Field(default=1, ge=1, le=1_440, description="Every n-th "
                                "validation sample is scored after each epoch for the progress "
                                "stream (and early stopping); predictions always cover all.")
    early_stopping_patience: int | None = Field(
        default=None, ge=1, le=1_000,
        description="Stop after this many epochs without a lower validation loss and keep the "
        "best epoch's weights; null trains every epoch and keeps the last. On: validation "
        "chose the epoch, so validation figures are optimistic by that choice (the test split "
        "stays untouched).",
    )
    predict_batch_size: int = Field(
        default=256, ge=1, le=1_048_576,
        description="Samples per forward pass when scoring and predicting. On a CPU 256 is "
        "fastest for the LSTM (measured: 4096 takes 3x as long, the activations leave the "
        "cache); a GPU wants thousands.",
    )


class DirectionGpuSettings(ConfigModel):
    """GPU habits shared with PPO (:mod:`tradecore_lib.train.gpu`): telemetry in every metrics
    row, a thermal guard between epochs, an optional batch-size search. Off by default;
    testable on CPU through ``TRADECORE_GPU_PROBE``."""

    max_temperature_c: float | None = Field(
        default=None, gt=0, le=150,
        description="Thermal guard: when the GPU is hotter than this (degrees C, read before "
        "each epoch) the run checkpoints and stops (exit code 75, stopped.json); re-running "
        "resumes. Null turns the guard off.",
    )
    search_batch_size: bool = Field(
        default=False,
        description="Measure training samples/s at batch 256, 512, ... up to max_batch_size "
        "and train with the last one whose doubling raised throughput by at least "
        "search_min_gain (or the last before CUDA ran out of memory). The learning rate "
        "scales with the batch (linear rule). A resumed run keeps its config.json's batch.",
    )
    max_batch_size: int = Field(default=8192, ge=256, le=1_048_576,
                                description="Largest batch the search tries.")
    search_min_gain: float = Field(default=0.05, gt=0, le=10, description="Smallest relative "
                                   "throughput rise (0.05 = 5 %) that doubles the batch again.")


class EconomicSettings(ConfigModel):
    """The economic check (helper G's evaluation): probabilities to target positions, traded
    through the one engine with all costs."""

    p_long: float = Field(
        default=0.55, gt=0.5, lt=1,
        description="Target +1 when p_up > p_long, -1 when p_up < 1 - p_long, else flat.",
    )
    env_preset: str = Field(default="default", description="Env preset (configs/env/) whose "
                            "fees, slippage, stops and RiskGuard the positions trade under.")
    env_overrides: dict[str, Any] = Field(default_factory=dict,
                                          description="Env preset keys to override.")


class DirectionPromotion(ConfigModel):
    """The direction gate's thresholds (helper G's gate), judged on validation only."""

    accuracy_margin: float = Field(
        default=0.0, ge=-1, le=1,
        description="The bootstrap 95 % lower bound of (model accuracy - best baseline "
        "accuracy) must be above this.",
    )
    max_ece: float = Field(default=0.05, ge=0, le=1, description="Largest expected "
                           "calibration error allowed (the restart plan's 0.05).")
    ece_bins: int = Field(default=10, ge=2, le=100,
                          description="Equal-width probability bins of the ECE and diagram.")
    min_accuracy: float | None = Field(
        default=None, ge=0, le=1,
        description="The restart plan's absolute floor (0.68 there); off by default: on "
        "liquid one-minute data it is not attainable honestly (the planted-edge control shows "
        "when it is).",
    )
    bootstrap_samples: int = Field(default=2000, ge=100, le=100_000,
                                   description="Bootstrap resamples of the accuracy difference.")
    economic: PromotionGate = Field(default_factory=PromotionGate,
                                    description="The RL gate's rules for the economic check.")


class SignalSettings(ConfigModel):
    """``direction_signals/<market>``: confidence tiers of the champion's probabilities."""

    tiers: dict[str, float] = Field(
        default_factory=lambda: {"low": 0.55, "medium": 0.6, "high": 0.7},
        description="Tier name -> the smallest confidence max(p_up, 1 - p_up) of that tier; "
        "below every threshold a bar reads 'none'.",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> SignalSettings:
        bad = {k: v for k, v in self.tiers.items() if not 0.5 <= v <= 1}
        if bad:
            raise ValueError(f"tier thresholds must lie in [0.5, 1], got {bad}")
        return self


class DirectionConfig(ConfigModel):
    """One direction model's training run, resolved from a preset plus overrides."""

    loader_fields = frozenset({"name"})
    name: str = Field(description="Preset name (recorded in the run id and lineage).")
    description: str = Field(default="", description="What this preset is for.")
    eligible_for_promotion: bool = Field(
        default=False, description="Whether a model of this preset may become the champion "
        "(plumbing presets say false).",
    )
    data: DataWindow = Field(default_factory=DataWindow, description="Fixed train / validation "
                             "/ test months, the purge and the feature preset.")
    windows: WindowSpec | None = Field(default=None, description="Windows relative to the data "
                                       "(walk-forward folds); null when data lists the months.")
    horizon_minutes: int = Field(default=15, ge=1, le=10_080,
                                 description="H: the label is the sign of the next H minutes' "
                                 "log return.")
    dead_zone: float = Field(
        default=0.0002, ge=0, le=0.1,
        description="Log-return half-width around zero with no label (0.0002 = 2 bp): such "
        "bars are dropped from training and scored separately.",
    )
    candle_inputs: list[CandleInput] = Field(
        default_factory=lambda: ["log_return"],
        description="Inputs computed from the candles beside the preset's feature columns: "
        "log_return ln(close[t]/close[t-1]) (NaN after a gap), hl_range (high-low)/close, "
        "body (close-open)/close. All stationary.",
    )
    multi_markets: list[str] | None = Field(
        default=None, min_length=1,
        description="Markets of the venue's transformer, in this order; null: the venue's "
        "enabled markets except the synthetic controls.",
    )
    lstm: LSTMParams = Field(default_factory=LSTMParams, description="Per-market LSTM.")
    transformer: TransformerParams = Field(default_factory=TransformerParams,
                                           description="Multi-market transformer.")
    training: Optimization = Field(default_factory=Optimization,
                                   description="Loss, optimizer, epochs, batches, strides.")
    seed: int = Field(default=0, ge=0, description="Seed of the weights, the batch order and "
                      "dropout.")
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu", description="Torch device; cuda fails clearly without a GPU.")
    torch_threads: int = Field(default=1, ge=1, le=256, description="CPU threads torch may "
                               "use (1 keeps CPU runs reproducible and leaves cores free).")
    gpu: DirectionGpuSettings = Field(default_factory=DirectionGpuSettings,
                                      description="Thermal guard and batch-size search.")
    economic: EconomicSettings = Field(default_factory=EconomicSettings,
                                       description="Probability-to-position rule and the env.")
    promotion: DirectionPromotion = Field(default_factory=DirectionPromotion,
                                          description="Gate thresholds, on validation.")
    signals: SignalSettings = Field(default_factory=SignalSettings,
                                    description="Confidence tiers of the dry-run signals.")

    @model_validator(mode="after")
    def _consistent(self) -> DirectionConfig:
        if self.windows is None and not self.data.fixed:
            raise ValueError("give the months: data.train_months / validation_months / "
                             "test_months, or windows")
        if self.windows is not None and (self.data.fixed or self.data.purge_days):
            raise ValueError("windows and data's month lists (or data.purge_days) are "
                             "alternatives: set one (purge_days goes in windows)")
        if len(set(self.candle_inputs)) != len(self.candle_inputs):
            raise ValueError(f"candle_inputs lists a column twice: {self.candle_inputs}")
        return self

    def sequence_length(self, kind: ModelKind) -> int:
        """L of the model ``kind``."""
        return self.lstm.sequence_length if kind == "lstm" else self.transformer.sequence_length

    # -- walk-forward (the PPO presets' rules) -------------------------------------------------
    def folds(self, available: list[Month]) -> list[Fold]:
        """The folds to train, oldest first (the newest is the one promoted); see
        :meth:`tradecore_lib.train.config.TrainConfig.folds`.

        Raises:
            DirectionConfigError: a month a fold needs has no features (how many are needed
                and available).
        """
        have = sorted(set(available))
        if self.windows is None:
            fold = Fold(0, self.data.months("train"), self.data.months("validation"),
                        self.data.months("test"), self.data.train_end_ms)
            missing = [m for m in fold.months if m not in have]
            if missing:
                raise DirectionConfigError(
                    f"direction preset {self.name!r}: months {[str(m) for m in missing]} of "
                    f"its data window have no features")
            return [fold]
        try:
            return _walk_forward(self.name, self.windows, have)
        except ConfigError as exc:
            raise DirectionConfigError(str(exc).replace("training preset", "direction preset",
                                                        1)) from None

    def fold_overrides(self, fold: Fold) -> dict[str, Any]:
        """Overrides turning this config into ``fold``'s (fixed months); empty when fixed."""
        if self.windows is None:
            return {}
        return {"windows": None, "data": {
            "train_months": [str(m) for m in fold.train],
            "validation_months": [str(m) for m in fold.validation],
            "test_months": [str(m) for m in fold.test],
            "purge_days": self.windows.purge_days,
        }}

    def for_fold(self, fold: Fold) -> DirectionConfig:
        """This config with ``fold``'s months fixed: what one run trains and is named by."""
        overrides = self.fold_overrides(fold)
        if not overrides:
            return self
        return parse_direction_config(deep_merge(self.model_dump(mode="json"), overrides),
                                      f"direction preset {self.name!r}, fold {fold.index}")

    # -- identity ------------------------------------------------------------------------------
    def identity(self, kind: ModelKind) -> dict[str, Any]:
        """The canonical form of what a ``kind`` model trains, hashed into its run id.

        Leaves out :data:`NON_TRAINING_FIELDS`, the other model's section, ``multi_markets``
        for an LSTM (the market is in the run id), ``predict_batch_size`` and the monitor
        stride (they change no weight) and, while the batch-size search is off, the ``gpu``
        section (the guard changes nothing trained). With the search on, the batch size and
        learning rate are its result: the id names the search instead.
        """
        dumped = self.model_dump(mode="json", exclude=set(NON_TRAINING_FIELDS))
        dumped.pop("transformer" if kind == "lstm" else "lstm")
        if kind == "lstm":
            dumped.pop("multi_markets")
        for key in ("predict_batch_size", "monitor_stride"):
            dumped["training"].pop(key)
        gpu = dumped.pop("gpu")
        if self.gpu.search_batch_size:
            dumped["training"].pop("batch_size")
            dumped["training"].pop("learning_rate")
            dumped["gpu"] = {key: gpu[key] for key in ("search_batch_size", "max_batch_size",
                                                       "search_min_gain")}
            dumped["gpu"]["learning_rate_per_256"] = self.training.learning_rate * 256 / \
                self.training.batch_size
        return dumped


def parse_direction_config(raw: Mapping[str, Any], where: str) -> DirectionConfig:
    """Validate a resolved config mapping (a run's ``config.json``, a merged preset)."""
    return validate(DirectionConfig, raw, where, error=DirectionConfigError)


def load_direction_config(preset: str, overrides: Mapping[str, Any] | None = None
                          ) -> DirectionConfig:
    """Resolve ``configs/direction/<preset>.json`` plus ``overrides`` into a validated
    :class:`DirectionConfig`, with the feature and env presets it names checked.

    Raises:
        DirectionConfigError: naming the preset file, the field path, the bad value and what
            is allowed, one line per problem; an unknown preset gets a did-you-mean.
    """
    where = f"direction preset {preset!r} ({preset_file(PRESET_KIND, preset)})"
    raw = read_json_preset(PRESET_KIND, preset, "direction preset", error=DirectionConfigError)
    if overrides:
        where += " with overrides"
        raw = deep_merge(raw, overrides)
    raw["name"] = preset
    cfg = parse_direction_config(raw, where)
    _check_references(cfg, where)
    return cfg


def _check_references(cfg: DirectionConfig, where: str) -> None:
    from tradecore_lib.env.config import load_env_config
    from tradecore_lib.features.presets import load_feature_preset

    if cfg.data.feature_preset is not None:
        check_reference("tools", cfg.data.feature_preset, "data.feature_preset", where,
                        error=DirectionConfigError)
        load_feature_preset(cfg.data.feature_preset)
    check_reference("env", cfg.economic.env_preset, "economic.env_preset", where,
                    error=DirectionConfigError)
    try:
        load_env_config(cfg.economic.env_preset, dict(cfg.economic.env_overrides))
    except ConfigError as exc:
        raise DirectionConfigError(f"{where}: economic.env_preset "
                                   f"{cfg.economic.env_preset!r}: {exc}") from None
