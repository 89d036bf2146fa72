"""How a training run is asked for and launched: overrides, the command line, the child env.

* :func:`overrides_model` derives an "every field optional" model from :class:`TrainConfig`
  (nested sections included): the shape of a launchpad request. The Dagster layer only
  passes ``dagster.Config`` as its base.
* :class:`TrainRequest` is one training run to launch (market, preset, overrides, lake root,
  warm start); :meth:`TrainRequest.argv` and :func:`parse_request` are the two directions
  of the one command line ``python -m tradecore_lib.train.ppo_train``, defined together here.
  :func:`plan_folds` resolves a request into one request per walk-forward fold, each with its
  months fixed, so the child trains exactly the fold the orchestrator planned even if data
  lands meanwhile.
* :func:`s3_env` / :func:`s3_options_from_env` are the one mapping between the lake's S3
  settings and environment variables: credentials reach a child process or a pod as env
  vars, never on its command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, Field, create_model

from tradecore_lib.errors import ConfigError
from tradecore_lib.features import feature_key
from tradecore_lib.lake import Lake, S3Options, candle_key
from tradecore_lib.markets import Market
from tradecore_lib.months import Month, months_between
from tradecore_lib.train.config import Fold, TrainConfig, deep_merge, load_train_config

ENTRY_POINT = "tradecore_lib.train.ppo_train"

# S3Options field -> environment variable (the AWS SDK names where there is one).
S3_ENV_VARS = {
    "endpoint_url": "TRADECORE_S3_ENDPOINT_URL",
    "region": "AWS_REGION",
    "access_key": "AWS_ACCESS_KEY_ID",
    "secret_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}
# Fields whose value is a free mapping, not a section: an empty one is still a value.
_MAPPING_FIELDS = frozenset({"env_overrides"})


# -- launchpad overrides ---------------------------------------------------------------------
def overrides_model(model: type[BaseModel], base: type[BaseModel] = BaseModel,
                    exclude: frozenset[str] = frozenset({"name"}),
                    **extra: Any) -> type[BaseModel]:
    """``model`` with every field optional (default None), nested sections likewise, titles
    and descriptions kept; ``extra`` adds fields (``name=(type, Field(...))``).

    ``Literal`` choices become ``str`` (also inside lists; the full model validates them when
    the overrides are merged over a preset), so a UI form can offer a free text box.
    """
    fields: dict[str, Any] = {
        name: (_optional_type(field.annotation, base) | None,
               Field(default=None, title=field.title, description=field.description))
        for name, field in model.model_fields.items()
        if name not in exclude
    }
    return create_model(f"{model.__name__}Overrides", __base__=base, **extra, **fields)


def _optional_type(annotation: Any, base: type[BaseModel]) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return overrides_model(annotation, base, exclude=frozenset())
    origin = get_origin(annotation)
    if origin is Literal:
        return str
    if origin is list:  # list[Literal[...]] -> list[str], list[Model] -> list[ModelOverrides]
        (item,) = get_args(annotation)
        return list[_optional_type(item, base)]
    if origin in (Union, types.UnionType):
        (inner,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _optional_type(inner, base)
    return annotation


def drop_unset(values: Mapping[str, Any]) -> dict[str, Any]:
    """A dumped overrides model without its unset (None) fields and empty sections: the
    overrides to deep-merge over a preset."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and key not in _MAPPING_FIELDS:
            value = drop_unset(value)
            if not value:
                continue
        out[key] = value
    return out


# -- the command line ------------------------------------------------------------------------
class TrainRequest(BaseModel):
    """One training run to launch; the child resolves and validates the same config."""

    market: str
    preset: str
    overrides: dict[str, Any] = Field(default_factory=dict)
    lake_root: str | None = None
    warm_start_from: str | None = Field(
        default=None, description="Run id of the champion (same market) to start from."
    )

    def argv(self, python: str = sys.executable) -> list[str]:
        """The command that runs this request (no credentials in it: see :func:`s3_env`)."""
        command = [python, "-m", ENTRY_POINT, "--market", self.market, "--preset", self.preset]
        if self.overrides:
            command += ["--overrides", json.dumps(self.overrides, sort_keys=True)]
        if self.lake_root:
            command += ["--lake-root", self.lake_root]
        if self.warm_start_from:
            command += ["--warm-start-from", self.warm_start_from]
        return command


    def config(self) -> TrainConfig:
        """The resolved, validated config (what the child trains)."""
        return load_train_config(self.preset, self.overrides)

    def for_fold(self, cfg: TrainConfig, fold: Fold) -> TrainRequest:
        """This request with ``fold``'s months as fixed lists (a no-op for fixed-month
        presets): the child resolves it to ``cfg.for_fold(fold)``."""
        if cfg.windows is None:
            return self
        overrides = deep_merge(self.overrides, cfg.fold_overrides(fold))
        return self.model_copy(update={"overrides": overrides})


def plan_folds(lake: Lake, market: Market, request: TrainRequest, now_ms: int
               ) -> tuple[TrainConfig, list[tuple[Fold, TrainRequest]]]:
    """The request's config and one request per fold, oldest first (the newest is promoted).

    Folds are resolved against the complete months (before the month of ``now_ms``) that have
    candles and the run's features in ``lake``.

    Raises:
        TrainConfigError: a month a fold needs has no features (named, with what is there).
    """
    cfg = request.config()
    feature_preset = cfg.data.feature_preset or market.feature_preset
    if cfg.windows is None:
        candidates = sorted({m for split in ("train", "validation", "test")
                             for m in cfg.data.months(split)})
    else:
        candidates = months_between(market.first_month, Month.of_ms(now_ms).previous())
    available = [m for m in candidates
                 if lake.exists(candle_key(market, m))
                 and lake.exists(feature_key(feature_preset, market, m))]
    return cfg, [(fold, request.for_fold(cfg, fold)) for fold in cfg.folds(available)]


def request_parser(description: str) -> argparse.ArgumentParser:
    """The entry point's argument parser (the inverse of :meth:`TrainRequest.argv`)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--market", required=True, help="market name from configs/markets.yaml")
    parser.add_argument("--preset", help="training preset in configs/train/ (default: the "
                        "market's train_preset)")
    parser.add_argument("--overrides", default="{}", help="JSON object deep-merged over the "
                        "preset, e.g. '{\"seed\": 1}'")
    parser.add_argument("--lake-root", default=None, help="lake root (default: "
                        "TRADECORE_LAKE_ROOT or data/lake)")
    parser.add_argument("--warm-start-from", default=None, help="run id of the champion (same "
                        "market) to start from; the orchestrator sets it when warm_start is on")
    return parser


def parse_request(argv: list[str] | None, description: str, default_preset: Any
                  ) -> TrainRequest:
    """Parse the entry point's arguments; ``default_preset(market)`` names the preset when
    ``--preset`` is omitted.

    Raises:
        ConfigError: ``--overrides`` is not a JSON object.
    """
    args = request_parser(description).parse_args(argv)
    try:
        overrides = json.loads(args.overrides)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--overrides is not valid JSON: {exc}") from None
    if not isinstance(overrides, dict):
        raise ConfigError(f"--overrides must be a JSON object, got {args.overrides!r}")
    return TrainRequest(market=args.market, preset=args.preset or default_preset(args.market),
                        overrides=overrides, lake_root=args.lake_root,
                        warm_start_from=args.warm_start_from)


# -- the child's environment -----------------------------------------------------------------
def s3_env(options: S3Options) -> dict[str, str]:
    """The environment variables carrying ``options`` (unset ones left out)."""
    return {var: value for attr, var in S3_ENV_VARS.items()
            if (value := getattr(options, attr))}


def s3_options_from_env(environ: Mapping[str, str]) -> S3Options:
    """The inverse of :func:`s3_env` (``AWS_DEFAULT_REGION`` also names the region)."""
    values = {attr: environ.get(var) or None for attr, var in S3_ENV_VARS.items()}
    values["region"] = values["region"] or environ.get("AWS_DEFAULT_REGION") or None
    return S3Options(**values)
