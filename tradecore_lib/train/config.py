"""The training configuration: a typed, validated PPO run (presets in ``configs/train/``).

A preset is a JSON object with the fields of :class:`TrainConfig`; omitted fields take the
defaults below. Run config (the Dagster launchpad, or ``--overrides`` on the command line) is a
partial object deep-merged over the preset. Loading resolves the env preset it names (and its
``env_overrides``) and its feature preset, so a broken reference fails at load, not in a step.

Identifiers are the technical names; the research plan's friendly names are the fields' titles
and open their descriptions (the launchpad and the README show them):

* **Brain Shampoo** (``vec_normalize``): SB3 VecNormalize of observations and/or rewards.
* **Safety Scissors** (``ppo.clip_range_vf``): clipping of the value-function update.
* **Mood Stabilizer** (``ppo.normalize_advantage``): per-minibatch advantage normalization.
* **Explorer Boost** (``ppo.ent_coef``): entropy bonus.
* **Piggy Bank Weight** (``ppo.vf_coef``): weight of the value loss.
* **Nudge Bars** (``nudge_actions``): stop-loss / take-profit adjustment actions and bounds.

**Deprecated keys.** The sections were called ``brain_shampoo`` and ``nudge_bars`` before; for
one release both old keys are still read (a :class:`DeprecationWarning` and a log line name the
old and the new key), in presets, overrides and stored ``config.json`` files alike. Old
promotion thresholds of stored runs are read as their successors or dropped with a warning
(:data:`LEGACY_PROMOTION_KEYS`, :data:`RETIRED_PROMOTION_KEYS`).

**Run ids across the rename.** :meth:`TrainConfig.identity` (hashed into the run id) writes the
sections under the names runs were made with (:data:`IDENTITY_NAMES`) and leaves out fields
added since while they hold their neutral value (:data:`ADDED_FIELDS`). A finished run made
before the rename therefore keeps its run id and is recognized as finished, never retrained.

**Windows.** ``data`` may list the train / validation / test months, or ``windows`` may give
them relative to the data: :meth:`TrainConfig.folds` resolves the spec against the months
available into walk-forward :class:`Fold` s, and :meth:`TrainConfig.for_fold` gives the config
of one fold with fixed month lists (what a run trains, stores and is identified by).

This module imports only pydantic and the config layer, so the Dagster code location can build
its launchpad config from it without loading torch; :func:`load_train_config` imports the env
preset model and the indicator presets when it resolves them (neither loads torch).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tradecore_lib.config import (
    ConfigModel,
    check_reference,
    deprecated,
    preset_file,
    read_json_preset,
    rename_deprecated_keys,
    validate,
)
from tradecore_lib.errors import ConfigError
from tradecore_lib.months import Month

DAY_MS = 86_400_000
# Sections that do not change what is trained: excluded from the run id so that changing a
# promotion threshold or eligibility re-judges a finished run instead of training it again.
NON_TRAINING_FIELDS = frozenset({"description", "evaluation", "promotion",
                                 "eligible_for_promotion"})
# Env preset keys owned by the nudge_actions section; setting them in env_overrides is ambiguous.
_NUDGE_ENV_KEYS = ("nudge", "nudge_step_bps", "stop_loss_bounds_bps", "take_profit_bounds_bps")
# Deprecated top-level keys (old -> new), read for one release.
LEGACY_KEYS = {"brain_shampoo": "vec_normalize", "nudge_bars": "nudge_actions"}
# The names the run id is computed with (current -> the name runs were first identified by).
IDENTITY_NAMES = {new: old for old, new in LEGACY_KEYS.items()}
# Fields added after run ids were first computed, with the value that means "as before": the
# identity leaves them out while they hold it.
ADDED_FIELDS: dict[tuple[str, ...], Any] = {
    ("windows",): None, ("data", "purge_days"): 0,
    ("ppo", "policy"): {"extractor": "mlp", "patch_bars": None, "channels": None},
    ("ppo", "fused_adam"): False,
}
# Promotion thresholds of stored configs from before the validation gate (old -> new).
LEGACY_PROMOTION_KEYS = {"min_sharpe_margin_vs_buy_and_hold": "sharpe_margin_vs_buy_and_hold",
                         "min_total_return": "min_net_return"}
# Promotion thresholds that are no longer rules (stored configs keep loading without them).
RETIRED_PROMOTION_KEYS = ("max_drawdown", "min_trades")


class TrainConfigError(ConfigError):
    """A training preset or override is missing, malformed or out of range (message says where)."""


def _month_list(name: str, texts: list[str]) -> list[Month]:
    months = []
    for text in texts:
        try:
            months.append(Month.parse(text))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    if months != sorted(set(months)):
        raise ValueError(f"{name} must be sorted and without repeats, got "
                         f"{[str(m) for m in months]}")
    return months


def _shift(month: Month, n: int) -> Month:
    """``month`` moved by ``n`` months (negative: earlier)."""
    index = month.year * 12 + month.month - 1 + n
    return Month(index // 12, index % 12 + 1)


def _span(last: Month, count: int) -> list[Month]:
    """The ``count`` months ending with ``last``, oldest first."""
    return [_shift(last, k - count + 1) for k in range(count)]


def _train_end_ms(validation_start: Month, purge_days: int) -> int:
    """Exclusive end of the training rows (UTC ms): ``purge_days`` before validation starts."""
    return validation_start.start_ms - purge_days * DAY_MS


def _train_months(validation_start: Month, purge_days: int, count: int) -> list[Month]:
    """The ``count`` months whose data ends ``purge_days`` before ``validation_start``: the
    last one holds the last training minute (it is cut at the purge when purge_days > 0)."""
    return _span(Month.of_ms(_train_end_ms(validation_start, purge_days) - 1), count)


class DataWindow(ConfigModel):
    """Which feature partitions a run uses: fixed months (train < validation < test), or none
    of them when the preset's ``windows`` gives them relative to the data."""

    train_months: list[str] | None = Field(
        default=None, min_length=1,
        description="Months (YYYY-MM) the agent trains on; null when windows are set.",
    )
    validation_months: list[str] | None = Field(
        default=None, min_length=1,
        description="Months (YYYY-MM) of the validation backtest the promotion gate judges; "
        "all strictly after the last train month. Null when windows are set.",
    )
    test_months: list[str] | None = Field(
        default=None, min_length=1,
        description="Months (YYYY-MM) of the test backtest, scored once and recorded, never "
        "used to decide; all strictly after the last validation month. Null when windows are "
        "set.",
    )
    purge_days: int = Field(
        default=0, ge=0, le=365,
        description="Days of training data dropped before the first validation minute (a gap "
        "against leakage through overlapping windows); 0 keeps them all.",
    )
    feature_preset: str | None = Field(
        default=None,
        description="Indicator preset (configs/tools/) of the feature partitions to train on; "
        "null takes the market's feature_preset.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> DataWindow:
        lists = (self.train_months, self.validation_months, self.test_months)
        if all(months is None for months in lists):
            return self
        if any(months is None for months in lists):
            raise ValueError("give all of train_months, validation_months and test_months, or "
                             "none of them (and windows instead)")
        train, val, test = (_month_list(f"{s}_months", getattr(self, f"{s}_months"))
                            for s in ("train", "validation", "test"))
        if val[0] <= train[-1]:
            raise ValueError(
                f"validation month {val[0]} is not after the last train month {train[-1]}: "
                "validation must be strictly later than training (no overlap, no leakage)"
            )
        if test[0] <= val[-1]:
            raise ValueError(
                f"test month {test[0]} is not after the last validation month {val[-1]}: "
                "test must be strictly later than validation (no overlap, no leakage)"
            )
        if self.train_end_ms <= train[-1].start_ms:
            raise ValueError(f"purge_days {self.purge_days} removes all of train month "
                             f"{train[-1]}: drop it from train_months")
        return self

    @property
    def fixed(self) -> bool:
        """Whether the months are listed here (else the preset's windows give them)."""
        return self.train_months is not None

    def months(self, split: Literal["train", "validation", "test"]) -> list[Month]:
        """The parsed months of ``split``."""
        texts = getattr(self, f"{split}_months")
        if texts is None:
            raise TrainConfigError(f"the {split} months come from the preset's windows: resolve "
                                   "them with TrainConfig.folds(available) and for_fold(fold)")
        return [Month.parse(m) for m in texts]

    @property
    def train_end_ms(self) -> int:
        """First UTC millisecond no training row may reach: the first validation minute minus
        ``purge_days`` (exclusive end of the training data)."""
        return _train_end_ms(self.months("validation")[0], self.purge_days)


class WindowSpec(ConfigModel):
    """Train / validation / test windows relative to the months with data, rolled back over
    ``folds`` walk-forward folds (each fold trains its own agent)."""

    train_months: int = Field(ge=1, le=240, description="Months to train on, ending right "
                              "before validation (minus purge_days).")
    validation_months: int = Field(default=1, ge=1, le=24,
                                   description="Months of validation, right after training.")
    test_months: int = Field(default=1, ge=1, le=24,
                             description="Months of test, right after validation.")
    folds: int = Field(default=1, ge=1, le=36,
                       description="Walk-forward folds; each older fold is shifted back by one "
                       "validation length. cpu-* presets use 1.")
    purge_days: int = Field(default=0, ge=0, le=365,
                            description="Days of training data dropped before validation.")
    anchor: str = Field(
        default="latest",
        description="Last test month of the newest fold: \"latest\" (the newest month with "
        "data) or a month \"YYYY-MM\".",
    )

    @field_validator("anchor")
    @classmethod
    def _anchor_form(cls, anchor: str) -> str:
        if anchor != "latest":
            Month.parse(anchor)  # ValueError names the form
        return anchor


def _index(month: Month) -> int:
    return month.year * 12 + month.month - 1


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: its months (oldest first) and where training data ends.

    Attributes:
        index: 0 for the oldest fold; the newest fold (the one promoted) has the largest.
        train, validation, test: the months of each split, disjoint and in this order.
        train_end_ms: exclusive end of the training rows (UTC ms): the first validation
            minute minus the purge.
    """

    index: int
    train: list[Month]
    validation: list[Month]
    test: list[Month]
    train_end_ms: int

    @property
    def months(self) -> list[Month]:
        """Every month the fold reads, oldest first."""
        return [*self.train, *self.validation, *self.test]


# The temporal extractor's hyper-parameters when a preset names the extractor without them:
# the ones measured to recover the planted temporal edge as well as mlp (bench/
# bench_extractor_controls.py: 4 x 16 test recovery 1.059 vs mlp 1.054; 8 x 16 1.023 vs 1.054).
TEMPORAL_DEFAULTS = {"patch_bars": 4, "channels": 16}


class PolicySettings(ConfigModel):
    """What the policy and value networks read of an observation: SB3's features extractor
    (``tradecore_lib.train.extractors``, shared by both networks).

    Canonical form: with ``extractor: "mlp"`` the temporal hyper-parameters mean nothing and
    are stored as null whatever was given (so switching a preset back to mlp through an
    override needs no nulls, and an mlp run's id never depends on them); with ``"temporal"``
    the ones left out take :data:`TEMPORAL_DEFAULTS` and are stored, so a stored run keeps its
    network if the defaults change.
    """

    extractor: Literal["mlp", "temporal"] = Field(
        default="mlp",
        description="mlp: the flattened observation (window x columns + account vector) goes "
        "straight into the networks' first layers (2 x obs x net_arch[0] multiply-adds). "
        "temporal: a strided temporal convolution first: the window is cut into patches of "
        "patch_bars bars and one learned linear map turns each patch into channels values, "
        "the account vector passed alongside; (window / patch_bars) x channels + account "
        "values reach the networks (on the 64 x 13 extended observation with 4 x 16: 261 "
        "instead of 837). Affine, so the evaluation folds it into the first layer exactly.",
    )
    patch_bars: int | None = Field(
        default=None, ge=1, le=4096,
        description="temporal only: bars per patch (the convolution's kernel and stride); "
        "must divide the env preset's window. Null with mlp; left out with temporal: 4.",
    )
    channels: int | None = Field(
        default=None, ge=1, le=1024,
        description="temporal only: learned filters per patch (features per patch). Null "
        "with mlp; left out with temporal: 16.",
    )

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, raw: Any) -> Any:
        if not isinstance(raw, Mapping):
            return raw
        out = dict(raw)
        if out.get("extractor", "mlp") == "mlp":
            out["patch_bars"] = out["channels"] = None
        else:
            for key, value in TEMPORAL_DEFAULTS.items():
                if out.get(key) is None:
                    out[key] = value
        return out


class PPOParams(ConfigModel):
    """Hyper-parameters passed to ``stable_baselines3.PPO`` under the same names."""

    learning_rate: float = Field(default=3e-4, gt=0, le=1, description="Adam step size.")
    n_steps: int = Field(
        default=256, ge=2, description="Env steps per env in each rollout (rollout = n_steps * "
        "n_envs transitions)."
    )
    batch_size: int = Field(
        default=256, ge=2, description="Minibatch size of the PPO update; must divide n_steps * "
        "n_envs."
    )
    n_epochs: int = Field(default=4, ge=1, description="Passes over each rollout per update.")
    gamma: float = Field(default=0.99, gt=0, le=1, description="Discount factor per bar.")
    gae_lambda: float = Field(default=0.95, ge=0, le=1, description="GAE lambda.")
    clip_range: float = Field(default=0.2, gt=0, le=1, description="PPO policy clip range.")
    clip_range_vf: float | None = Field(
        default=None, gt=0, title="Safety Scissors",
        description="Safety Scissors: clip each value-function update to +/- this around the "
        "old value prediction (SB3 clip_range_vf); null leaves the value update unclipped. "
        "In reward units, so it depends on the env's reward_scale.",
    )
    normalize_advantage: bool = Field(
        default=True, title="Mood Stabilizer",
        description="Mood Stabilizer: normalize advantages to zero mean, unit std in every "
        "minibatch (SB3 normalize_advantage).",
    )
    ent_coef: float = Field(
        default=0.01, ge=0, le=1, title="Explorer Boost",
        description="Explorer Boost: weight of the entropy bonus in the loss (SB3 ent_coef); "
        "higher keeps the policy exploring longer.",
    )
    vf_coef: float = Field(
        default=0.5, ge=0, le=10, title="Piggy Bank Weight",
        description="Piggy Bank Weight: weight of the value-function loss (SB3 vf_coef).",
    )
    max_grad_norm: float = Field(default=0.5, gt=0, description="Gradient-norm clip.")
    target_kl: float | None = Field(
        default=None, gt=0, description="Stop an update's epochs early past this KL; null off."
    )
    net_arch: list[int] = Field(
        default=[64, 64], min_length=1,
        description="Hidden layer sizes of both the policy and the value MLP.",
    )
    activation: Literal["tanh", "relu"] = Field(
        default="tanh", description="Activation of the hidden layers."
    )
    policy: PolicySettings = Field(
        default_factory=PolicySettings,
        description="The features extractor both networks read the observation through: "
        "mlp (the observation as it is) or temporal (a strided temporal convolution).",
    )
    fused_adam: bool = Field(
        default=False,
        description="Run Adam as torch's fused kernel (fused=True): the same update rule in "
        "one kernel per step instead of a dozen small ops per parameter, about 3x faster "
        "optimizer steps on a CPU; results differ from the unfused optimizer at float "
        "rounding (so it is part of the run id). False: torch's default Adam, as before.",
    )

    @model_validator(mode="after")
    def _layers(self) -> PPOParams:
        if any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch layer sizes must be >= 1, got {self.net_arch}")
        return self


class VecNormalizeSettings(ConfigModel):
    """Brain Shampoo: SB3 VecNormalize (running mean/std) of observations and rewards."""

    normalize_obs: bool = Field(
        default=True, description="Normalize observations with running statistics of the "
        "training data (saved as vecnormalize.pkl and reused, frozen, at evaluation)."
    )
    normalize_reward: bool = Field(
        default=True, description="Scale rewards by the running std of the discounted return "
        "(training only; evaluation reports raw money)."
    )
    clip_obs: float = Field(default=10.0, gt=0, description="Clip normalized observations.")
    clip_reward: float = Field(default=10.0, gt=0, description="Clip normalized rewards.")

    @property
    def enabled(self) -> bool:
        """Whether VecNormalize wraps the env at all (observations or rewards)."""
        return self.normalize_obs or self.normalize_reward


class NudgeActions(ConfigModel):
    """Nudge Bars: extra actions tightening or loosening the stop-loss / take-profit."""

    enabled: bool = Field(
        default=False, description="Add the two nudge actions (tighten / keep / loosen the "
        "stop-loss and the take-profit distance each step)."
    )
    step_bps: float = Field(
        default=10.0, gt=0, le=1000, description="Size of one nudge, basis points of price."
    )
    stop_loss_bounds_bps: list[float] = Field(
        default=[25.0, 300.0], min_length=2, max_length=2,
        description="[min, max] stop-loss distance a nudge may reach, basis points.",
    )
    take_profit_bounds_bps: list[float] = Field(
        default=[50.0, 800.0], min_length=2, max_length=2,
        description="[min, max] take-profit distance a nudge may reach, basis points.",
    )

    def env_overrides(self) -> dict[str, Any]:
        """The env preset keys this section sets."""
        if not self.enabled:
            return {"nudge": False}
        return {
            "nudge": True,
            "nudge_step_bps": self.step_bps,
            "stop_loss_bounds_bps": list(self.stop_loss_bounds_bps),
            "take_profit_bounds_bps": list(self.take_profit_bounds_bps),
        }


class EvaluationSettings(ConfigModel):
    """How the checkpoint is backtested and how signals are produced."""

    random_baseline_seed: int = Field(
        default=0, ge=0, description="First seed of the random baseline policies."
    )
    signal_bars: int = Field(
        default=1440, ge=1, description="Newest decisions written by signals/<market> (bars)."
    )


class PromotionGate(ConfigModel):
    """Limits and margins of the promotion gate's rules, judged on validation only (every
    fold must pass every rule; the test split is scored and recorded, never used to decide)."""

    min_net_return: float = Field(
        default=0.0, ge=-1,
        description="The agent's validation return after all costs (fraction) must be above "
        "this.",
    )
    sharpe_margin_vs_buy_and_hold: float = Field(
        default=0.0,
        description="The lower bound of the bootstrap 95 % interval of (agent daily Sharpe - "
        "buy-and-hold daily Sharpe) must be above this margin.",
    )
    random_percentile: float = Field(
        default=95.0, ge=0, le=100,
        description="The agent's validation Sharpe must be above this percentile of the matched "
        "random policies'.",
    )
    max_kill_switch_hits: int = Field(default=0, ge=0,
                                      description="Kill-switch hits allowed on validation.")
    max_guardrail_breaches: int = Field(
        default=0, ge=0,
        description="Daily-loss / total-loss guardrail breaches allowed on validation.",
    )
    require_beats_champion: bool = Field(
        default=True, description="When a champion exists, the challenger must beat it on the "
        "same validation window."
    )
    bootstrap_samples: int = Field(
        default=2000, ge=100, le=100_000,
        description="Bootstrap resamples of daily returns for the Sharpe interval.",
    )
    matched_random_policies: int = Field(
        default=100, ge=100, le=10_000,
        description="Random policies matched to the agent's trades, holding times and "
        "long/short mix (seeds from evaluation.random_baseline_seed).",
    )


class GpuSettings(ConfigModel):
    """GPU habits of a run (the SPY daily trainer's): a thermal guard between rollouts and an
    optional search for the number of envs. Both are off by default and both are exercised
    on CPU through an injectable probe (``tradecore_lib.train.gpu``).

    Not part of the run id while the search is off (the guard does not change what is
    trained: a run it stops resumes where it stopped). With the search on, the run id names
    the search (its settings and the minibatches per rollout), never its result.
    """

    max_temperature_c: float | None = Field(
        default=None, gt=0, le=150,
        description="Thermal guard: when the GPU is hotter than this (degrees C, read before "
        "each rollout) training saves a checkpoint and stops (exit code 75, stopped.json in "
        "the run folder); re-running resumes. Null turns the guard off.",
    )
    search_n_envs: bool = Field(
        default=False,
        description="Measure n_envs = 8, 16, 32 ... up to max_n_envs (one rollout + one update "
        "each) and train with the last one whose doubling raised throughput by at least "
        "search_min_gain (or the last before CUDA ran out of memory). ppo.batch_size scales "
        "with n_envs (same minibatches per rollout). A resumed run reuses the n_envs of its "
        "config.json.",
    )
    max_n_envs: int = Field(default=1024, ge=8, le=4096,
                            description="Largest n_envs the search tries.")
    search_min_gain: float = Field(
        default=0.05, gt=0, le=10,
        description="Smallest relative throughput rise (0.05 = 5 %) that makes the search "
        "double n_envs again.",
    )


class TrainConfig(ConfigModel):
    """One PPO training run on one market, resolved from a preset plus overrides."""

    loader_fields = frozenset({"name"})
    name: str = Field(description="Preset name (recorded in the run id and lineage).")
    description: str = Field(default="", description="What this preset is for.")
    eligible_for_promotion: bool = Field(
        default=False,
        description="Whether an agent of this preset may become the champion. Plumbing presets "
        "(cpu-smoke) say false: their gate result reads 'not eligible' and champion does not "
        "move. A preset opts in.",
    )
    data: DataWindow = Field(default_factory=DataWindow,
                             description="Fixed train / validation / test months and the "
                             "feature preset.")
    windows: WindowSpec | None = Field(
        default=None,
        description="Train / validation / test months relative to the data (walk-forward "
        "folds); null when data lists the months.",
    )
    env_preset: str = Field(
        default="default", description="Env preset (configs/env/) the agent trades in."
    )
    env_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Env preset keys to override (fees, stops, window, episode_length...); "
        "the nudge keys go in nudge_actions instead.",
    )
    ppo: PPOParams = Field(default_factory=PPOParams, description="PPO hyper-parameters.")
    vec_normalize: VecNormalizeSettings = Field(
        default_factory=VecNormalizeSettings, title="Brain Shampoo",
        description="Brain Shampoo: VecNormalize of observations and rewards (on/off each).",
    )
    nudge_actions: NudgeActions = Field(
        default_factory=NudgeActions, title="Nudge Bars",
        description="Nudge Bars: stop-loss / take-profit adjustment actions and their bounds.",
    )
    total_timesteps: int = Field(
        ge=1, description="Env steps to train (all envs together); a multiple of n_steps * "
        "n_envs."
    )
    n_envs: int = Field(default=8, ge=1, le=4096, description="Parallel envs in TradeVecEnv.")
    device: Literal["cpu", "cuda", "auto"] = Field(
        default="cpu", description="Torch device; cuda fails clearly when no GPU is visible."
    )
    seed: int = Field(default=0, ge=0, description="Seed of torch, numpy, PPO and the envs.")
    torch_threads: int = Field(
        default=1, ge=1, description="CPU threads torch may use. 1 is fastest for small nets "
        "and keeps runs reproducible; more threads than free cores (the env steps on one) make "
        "PPO many times slower."
    )
    checkpoint_every_steps: int = Field(
        ge=1, description="Save a resumable checkpoint every this many env steps; a multiple "
        "of n_steps * n_envs."
    )
    warm_start: bool = Field(
        default=False, description="Start from the current champion's weights and "
        "normalization statistics (cross-run continuity) instead of a fresh network."
    )
    evaluation: EvaluationSettings = Field(
        default_factory=EvaluationSettings, description="Backtest and signal settings."
    )
    promotion: PromotionGate = Field(
        default_factory=PromotionGate, description="Promotion gate limits and margins, on "
        "validation."
    )
    gpu: GpuSettings = Field(
        default_factory=GpuSettings, description="Thermal guard and n_envs search (GPU runs; "
        "testable on CPU through TRADECORE_GPU_PROBE)."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        rollout = self.rollout_size
        if rollout % self.ppo.batch_size:
            raise ValueError(
                f"ppo.batch_size {self.ppo.batch_size} must divide the rollout size n_steps * "
                f"n_envs = {self.ppo.n_steps} * {self.n_envs} = {rollout}"
            )
        for name in ("total_timesteps", "checkpoint_every_steps"):
            value = getattr(self, name)
            if value % rollout:
                lower = max(rollout, value - value % rollout)
                raise ValueError(
                    f"{name} {value} must be a multiple of the rollout size n_steps * n_envs = "
                    f"{rollout}; e.g. {lower} or {lower + rollout}"
                )
        clash = [key for key in _NUDGE_ENV_KEYS if key in self.env_overrides]
        if clash:
            raise ValueError(f"env_overrides sets {clash}: configure them in nudge_actions")
        if self.windows is None and not self.data.fixed:
            raise ValueError("give the months: data.train_months / validation_months / "
                             "test_months, or windows")
        if self.windows is not None and (self.data.fixed or self.data.purge_days):
            raise ValueError("windows and data's month lists (or data.purge_days) are "
                             "alternatives: set one (purge_days goes in windows)")
        return self

    @property
    def rollout_size(self) -> int:
        """Transitions per PPO rollout, n_steps * n_envs."""
        return self.ppo.n_steps * self.n_envs

    def env_settings(self, exclude_column: str | None) -> dict[str, Any]:
        """The env preset mapping for :func:`tradecore_lib.env.make_vec_env`.

        ``exclude_column`` is the feature table's warm-up marker: rows it flags never enter an
        episode or an observation window.
        """
        settings: dict[str, Any] = {"preset": self.env_preset, **self.env_overrides}
        settings.update(self.nudge_actions.env_overrides())
        if exclude_column is not None:
            settings["exclude_column"] = exclude_column
        return settings

    # -- walk-forward ------------------------------------------------------------------------
    def folds(self, available: list[Month]) -> list[Fold]:
        """The folds to train, oldest first (the last one is the newest, the one promoted).

        ``available`` are the complete months with features of the market. Fixed month lists
        give one fold. Windows give ``windows.folds`` folds: the newest ends its test at the
        anchor, each older one is shifted back by one validation length.

        Raises:
            TrainConfigError: a month a fold needs is not available, saying how many months are
                needed and how many are available.
        """
        have = sorted(set(available))
        if self.windows is None:
            fold = Fold(0, self.data.months("train"), self.data.months("validation"),
                        self.data.months("test"), self.data.train_end_ms)
            missing = [m for m in fold.months if m not in have]
            if missing:
                raise TrainConfigError(
                    f"training preset {self.name!r}: months {[str(m) for m in missing]} of its "
                    f"data window have no features; available: {_describe(have)}")
            return [fold]
        return _walk_forward(self.name, self.windows, have)

    def fold_overrides(self, fold: Fold) -> dict[str, Any]:
        """The overrides that turn this config into ``fold``'s (fixed month lists, the purge,
        no windows); empty for a fixed-month config. What a launcher passes to the training
        process so that it trains exactly :meth:`for_fold`."""
        if self.windows is None:
            return {}
        return {"windows": None, "data": {
            "train_months": [str(m) for m in fold.train],
            "validation_months": [str(m) for m in fold.validation],
            "test_months": [str(m) for m in fold.test],
            "purge_days": self.windows.purge_days,
        }}

    def for_fold(self, fold: Fold) -> TrainConfig:
        """This config with ``fold``'s months as fixed lists (and its purge): what one fold's
        run trains, stores as config.json and is identified by."""
        overrides = self.fold_overrides(fold)
        if not overrides:
            return self
        return _validated(deep_merge(self.model_dump(mode="json"), overrides),
                          f"training preset {self.name!r}, fold {fold.index}")

    # -- identity ----------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """The canonical form of what is trained, hashed into the run id.

        Everything but :data:`NON_TRAINING_FIELDS`, with sections under the names runs were
        first identified by (:data:`IDENTITY_NAMES`) and fields added since left out while
        they hold their neutral value (:data:`ADDED_FIELDS`), so a run's id is stable across
        renames and additions. The ``gpu`` section counts only when it searches n_envs (see
        :class:`GpuSettings`): the id of such a run is the same whatever n_envs it chose.
        """
        dumped = self.model_dump(mode="json", exclude=set(NON_TRAINING_FIELDS))
        for path, neutral in ADDED_FIELDS.items():
            parent = dumped
            for part in path[:-1]:
                parent = parent[part]
            if parent.get(path[-1], neutral) == neutral:
                parent.pop(path[-1], None)
        # The gpu section (added later) leaves the id while the search is off: the thermal
        # guard does not change what is trained. With the search on, n_envs and
        # ppo.batch_size are its result (measured, so not deterministic): the id names the
        # search instead, and the minibatches per rollout that it keeps.
        dumped.pop("gpu", None)
        if self.gpu.search_n_envs:
            dumped.pop("n_envs")
            dumped["ppo"].pop("batch_size")
            dumped["gpu"] = {"search_n_envs": True, "max_n_envs": self.gpu.max_n_envs,
                             "search_min_gain": self.gpu.search_min_gain,
                             "minibatches": self.rollout_size // self.ppo.batch_size}
        return {IDENTITY_NAMES.get(key, key): value for key, value in dumped.items()}


def _describe(months: list[Month]) -> str:
    if not months:
        return "none"
    return f"{len(months)} month(s), {months[0]} .. {months[-1]}"


def _fold_layout(spec: WindowSpec, anchor: Month) -> list[Fold]:
    """The folds of ``spec`` whose newest test ends at ``anchor``, oldest first."""
    folds = []
    for back in range(spec.folds):
        test = _span(_shift(anchor, -back * spec.validation_months), spec.test_months)
        validation = _span(_shift(test[0], -1), spec.validation_months)
        train = _train_months(validation[0], spec.purge_days, spec.train_months)
        folds.append(Fold(spec.folds - 1 - back, train, validation, test,
                          _train_end_ms(validation[0], spec.purge_days)))
    return folds[::-1]


def _walk_forward(name: str, spec: WindowSpec, have: list[Month]) -> list[Fold]:
    where = f"training preset {name!r}: windows"
    shape = (f"{spec.folds} fold(s) of {spec.train_months} train + {spec.validation_months} "
             f"validation + {spec.test_months} test months"
             + (f" (purge {spec.purge_days} days)" if spec.purge_days else ""))
    if spec.anchor != "latest":
        anchor = Month.parse(spec.anchor)
    elif have:
        anchor = have[-1]
    else:
        span = _fold_layout(spec, Month(2000, 1))
        needed = _index(span[-1].test[-1]) - _index(span[0].train[0]) + 1
        raise TrainConfigError(f"{where}: {shape} need {needed} months with features; none "
                               "are available yet")
    folds = _fold_layout(spec, anchor)
    first, last = folds[0].train[0], folds[-1].test[-1]
    needed = sorted({m for fold in folds for m in fold.months})
    missing = [m for m in needed if m not in have]
    if missing:
        usable = [m for m in have if first <= m <= last]
        raise TrainConfigError(
            f"{where}: {shape} need {_index(last) - _index(first) + 1} months with features, "
            f"{first} .. {last}; {len(usable)} of them are available ({_describe(have)} in all); "
            f"missing: {', '.join(str(m) for m in missing)}")
    return folds


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: nested mappings merge, everything else replaces.

    ``env_overrides`` is one mapping of env keys, so it merges key by key too.
    """
    merged = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _migrate(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``raw`` with the deprecated keys of earlier releases read as their successors."""
    out = rename_deprecated_keys(raw, LEGACY_KEYS, where, error=TrainConfigError)
    promotion = out.get("promotion")
    if isinstance(promotion, Mapping):
        promotion = rename_deprecated_keys(
            {k: v for k, v in promotion.items()
             if not (k in LEGACY_PROMOTION_KEYS and v is None)},
            LEGACY_PROMOTION_KEYS, f"{where}: promotion", error=TrainConfigError)
        retired = [key for key in RETIRED_PROMOTION_KEYS if key in promotion]
        if retired:
            deprecated(f"{where}: promotion {retired} are no longer gate rules (the gate judges "
                       "validation: net return, Sharpe vs buy-and-hold, matched random, kill "
                       "switch, guardrails, champion); ignored")
        out["promotion"] = {k: v for k, v in promotion.items() if k not in retired}
    return out


def _validated(raw: Mapping[str, Any], where: str) -> TrainConfig:
    return validate(TrainConfig, _migrate(raw, where), where, error=TrainConfigError)


def _check_references(cfg: TrainConfig, where: str) -> None:
    """Resolve the presets ``cfg`` names: the env preset with its overrides (validated as the
    env would build it) and the feature preset."""
    from tradecore_lib.env.config import load_env_config
    from tradecore_lib.features.presets import load_feature_preset

    check_reference("env", cfg.env_preset, "env_preset", where, error=TrainConfigError)
    settings = cfg.env_settings(None)
    settings.pop("preset")
    try:
        load_env_config(cfg.env_preset, settings)
    except ConfigError as exc:
        raise TrainConfigError(f"{where}: env_preset {cfg.env_preset!r}: {exc}") from None
    if cfg.data.feature_preset is not None:
        check_reference("tools", cfg.data.feature_preset, "data.feature_preset", where,
                        error=TrainConfigError)
        load_feature_preset(cfg.data.feature_preset)


def load_train_config(preset: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Resolve preset ``preset`` plus ``overrides`` into a validated :class:`TrainConfig`,
    with the env and feature presets it names resolved too.

    Raises:
        TrainConfigError: naming the preset file, the field path (``ppo.ent_coef``), the bad
            value and what is allowed, one line per problem; an unknown preset name gets a
            did-you-mean.
    """
    where = f"training preset {preset!r} ({preset_file('train', preset)})"
    raw = _migrate(read_json_preset("train", preset, "training preset", error=TrainConfigError),
                   where)
    if overrides:
        where += " with overrides"
        raw = deep_merge(raw, _migrate(overrides, where))
    raw["name"] = preset
    cfg = _validated(raw, where)
    _check_references(cfg, where)
    return cfg


def parse_train_config(raw: Mapping[str, Any], where: str) -> TrainConfig:
    """Validate a resolved config mapping, e.g. a run's stored ``config.json`` (written by any
    release since the first: deprecated keys are read as their successors)."""
    return _validated(raw, where)
