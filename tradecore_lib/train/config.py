"""The training configuration: a typed, validated PPO run (presets in ``configs/train/``).

A preset is a JSON object with the fields of :class:`TrainConfig`; omitted fields take the
defaults below. Run config (the Dagster launchpad, or ``--overrides`` on the command line) is a
partial object deep-merged over the preset. Every field carries a description a researcher
reads in the launchpad; the friendly knob names are the fields' titles:

* **Brain Shampoo** (``brain_shampoo``): VecNormalize of observations and/or rewards.
* **Safety Scissors** (``ppo.clip_range_vf``): clipping of the value-function update.
* **Mood Stabilizer** (``ppo.normalize_advantage``): per-batch advantage normalization.
* **Explorer Boost** (``ppo.ent_coef``): entropy bonus.
* **Piggy Bank Weight** (``ppo.vf_coef``): weight of the value loss.
* **Nudge Bars** (``nudge_bars``): stop-loss / take-profit adjustment actions and bounds.

This module imports only pydantic, so the Dagster code location can build its launchpad
config from it without loading torch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tradecore_lib.config_files import preset_file, preset_names, read_preset_file
from tradecore_lib.months import Month

# Sections that do not change what is trained: excluded from the run id so that changing a
# promotion threshold re-judges a finished run instead of training it again.
NON_TRAINING_FIELDS = frozenset({"description", "evaluation", "promotion"})
# Env preset keys owned by the Nudge Bars knob; setting them in env_overrides is ambiguous.
_NUDGE_ENV_KEYS = ("nudge", "nudge_step_bps", "stop_loss_bounds_bps", "take_profit_bounds_bps")


class TrainConfigError(ValueError):
    """A training preset or override is missing, malformed or out of range (message says where)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataWindow(_Section):
    """Time-based split: months of feature partitions, strictly ordered train < val < test."""

    train_months: list[str] = Field(
        min_length=1, description="Months (YYYY-MM) the agent trains on."
    )
    validation_months: list[str] = Field(
        min_length=1,
        description="Months (YYYY-MM) of the out-of-sample validation backtest; all strictly "
        "after the last train month.",
    )
    test_months: list[str] = Field(
        min_length=1,
        description="Months (YYYY-MM) of the out-of-sample test backtest the promotion gate "
        "judges; all strictly after the last validation month.",
    )
    feature_preset: str | None = Field(
        default=None,
        description="Indicator preset (configs/tools/) of the feature partitions to train on; "
        "null takes the market's feature_preset.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> DataWindow:
        parsed = {}
        for name in ("train_months", "validation_months", "test_months"):
            months = []
            for text in getattr(self, name):
                try:
                    months.append(Month.parse(text))
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
            if months != sorted(set(months)):
                raise ValueError(f"{name} must be sorted and without repeats, got {months}")
            parsed[name] = months
        train, val, test = parsed["train_months"], parsed["validation_months"], parsed[
            "test_months"]
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
        return self

    def months(self, split: str) -> list[Month]:
        """The parsed months of ``split`` ("train", "validation" or "test")."""
        return [Month.parse(m) for m in getattr(self, f"{split}_months")]


class PPOParams(_Section):
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

    @model_validator(mode="after")
    def _layers(self) -> PPOParams:
        if any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch layer sizes must be >= 1, got {self.net_arch}")
        return self


class BrainShampoo(_Section):
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
    def on(self) -> bool:
        return self.normalize_obs or self.normalize_reward


class NudgeBars(_Section):
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
        """The env preset keys this knob sets."""
        if not self.enabled:
            return {"nudge": False}
        return {
            "nudge": True,
            "nudge_step_bps": self.step_bps,
            "stop_loss_bounds_bps": list(self.stop_loss_bounds_bps),
            "take_profit_bounds_bps": list(self.take_profit_bounds_bps),
        }


class EvaluationSettings(_Section):
    """How the checkpoint is backtested and how signals are produced."""

    random_baseline_seed: int = Field(
        default=0, ge=0, description="Seed of the random-action baseline policy."
    )
    signal_bars: int = Field(
        default=1440, ge=1, description="Newest decisions written by signals/<market> (bars)."
    )


class PromotionGate(_Section):
    """Thresholds the test backtest must meet for the model to become the champion.

    A null threshold is not checked.
    """

    min_sharpe_margin_vs_buy_and_hold: float | None = Field(
        default=0.0, description="Agent's annualized test Sharpe minus buy-and-hold's must be "
        ">= this."
    )
    max_drawdown: float | None = Field(
        default=0.2, gt=0, le=1, description="Agent's test max drawdown (fraction) must be <= "
        "this."
    )
    min_trades: int | None = Field(
        default=10, ge=0, description="Agent's number of test trades (round trips) must be >= "
        "this."
    )
    min_total_return: float | None = Field(
        default=None, description="Agent's test total return (fraction) must be >= this."
    )


class TrainConfig(BaseModel):
    """One PPO training run on one market, resolved from a preset plus overrides."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Preset name (recorded in the run id and lineage).")
    description: str = Field(default="", description="What this preset is for.")
    data: DataWindow = Field(description="Train / validation / test months.")
    env_preset: str = Field(
        default="default", description="Env preset (configs/env/) the agent trades in."
    )
    env_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Env preset keys to override (fees, stops, window, episode_length...); "
        "Nudge Bars keys go in nudge_bars instead.",
    )
    ppo: PPOParams = Field(default_factory=PPOParams, description="PPO hyper-parameters.")
    brain_shampoo: BrainShampoo = Field(
        default_factory=BrainShampoo, title="Brain Shampoo",
        description="Brain Shampoo: VecNormalize of observations and rewards (on/off each).",
    )
    nudge_bars: NudgeBars = Field(
        default_factory=NudgeBars, title="Nudge Bars",
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
        default=1, ge=1, description="CPU threads torch may use (1 is fastest for small nets "
        "and keeps runs reproducible)."
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
        default_factory=PromotionGate, description="Promotion gate thresholds on the test "
        "backtest."
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
            raise ValueError(f"env_overrides sets {clash}: configure them in nudge_bars")
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
        settings.update(self.nudge_bars.env_overrides())
        if exclude_column is not None:
            settings["exclude_column"] = exclude_column
        return settings

    def identity(self) -> dict[str, Any]:
        """The fields that determine what is trained (everything but NON_TRAINING_FIELDS)."""
        return self.model_dump(mode="json", exclude=set(NON_TRAINING_FIELDS))


def available_presets() -> list[str]:
    """Names of the training presets in ``configs/train/``."""
    return preset_names("train")


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


def load_train_config(preset: str, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Resolve preset ``name`` plus ``overrides`` into a validated :class:`TrainConfig`.

    Raises:
        TrainConfigError: naming the preset, the field path (``ppo.ent_coef``), the bad value
            and what is allowed, one line per problem.
    """
    raw = deep_merge(read_preset_file("train", preset, "training preset", TrainConfigError),
                     overrides or {})
    raw["name"] = preset
    where = f"training preset {preset!r} ({preset_file('train', preset)})"
    return config_from_mapping(raw, where=where + (" with overrides" if overrides else ""))


def config_from_mapping(raw: Mapping[str, Any], where: str) -> TrainConfig:
    """Validate a resolved mapping (e.g. a stored ``config.json``)."""
    try:
        return TrainConfig.model_validate(dict(raw))
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "(config)"
            message = error["msg"].removeprefix("Value error, ")
            shown = "" if error["type"] == "missing" else f" (got {error['input']!r})"
            if isinstance(error["input"], Mapping):
                shown = ""
            problems.append(f"  - {field}: {message}{shown}")
        raise TrainConfigError(f"{where}: invalid training config:\n" + "\n".join(problems)) \
            from None
