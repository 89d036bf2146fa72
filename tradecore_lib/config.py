"""The one configuration layer: typed pydantic models for every configuration file.

``configs/markets.yaml`` (with each venue's ``source`` options and ``gap_tolerance``), the env
presets, the training presets and the indicator presets are all models derived from
:class:`ConfigModel` and read through :func:`validate`/:func:`load_json_preset`. Unknown keys are
refused with the valid keys and a "did you mean"; wrong types and out-of-range values are named
with the file, the market or preset, and the field path. Everything is validated when the code
location loads.
"""

from __future__ import annotations

import difflib
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from tradecore_lib.errors import ConfigError
from tradecore_lib.paths import config_dir

M = TypeVar("M", bound=BaseModel)


class ConfigModel(BaseModel):
    """Base of every configuration model: unknown keys refused, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _submodel(model: type[BaseModel] | None, part: str | int) -> type[BaseModel] | None:
    """The model class found at one step of an error location (None when not a model)."""
    if model is None or not isinstance(part, str) or part not in model.model_fields:
        return None
    annotation = model.model_fields[part].annotation
    candidates = [annotation]
    while candidates:
        current = candidates.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            return current
        if get_origin(current) in (Union, types.UnionType, list, tuple, dict):
            candidates.extend(get_args(current))
    return None


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):  # list index: stay on the element model
            continue
        nxt = _submodel(current, part)
        if nxt is None:
            return None
        current = nxt
    return current


def _valid_keys(model: type[BaseModel]) -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        keys.append(field.alias or name)
    return sorted(keys)


def describe_errors(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """One line per problem: field path, what is wrong, the value, valid keys, did-you-mean."""
    problems = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        field = ".".join(str(part) for part in loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            parent = _model_at(model, loc[:-1])
            line = f"{field}: unknown key"
            if parent is not None:
                valid = _valid_keys(parent)
                close = difflib.get_close_matches(str(loc[-1]), valid, n=1)
                if close:
                    line += f"; did you mean {close[0]!r}?"
                line += f" Valid keys: {', '.join(valid)}"
            problems.append(line)
            continue
        message = error["msg"].removeprefix("Value error, ")
        shown = ""
        if error["type"] != "missing" and not isinstance(error.get("input"), Mapping):
            shown = f" (got {error.get('input')!r})"
        problems.append(f"{field}: {message}{shown}")
    return problems


def validate(model: type[M], raw: Any, where: str) -> M:
    """``raw`` validated as ``model``; :class:`ConfigError` naming ``where`` and each field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        lines = describe_errors(model, exc)
        raise ConfigError(f"{where}: invalid configuration:\n" +
                          "\n".join(f"  - {line}" for line in lines)) from None


def preset_file(kind: str, name: str) -> Path:
    """``configs/<kind>/<name>.json``."""
    return config_dir() / kind / f"{name}.json"


def preset_names(kind: str) -> list[str]:
    """Names of the presets in ``configs/<kind>/``."""
    return sorted(p.stem for p in (config_dir() / kind).glob("*.json"))


def read_json_preset(kind: str, name: str, what: str) -> dict[str, Any]:
    """The JSON object of preset ``name`` of ``configs/<kind>/``; a missing name gets a
    did-you-mean among the presets that exist."""
    path = preset_file(kind, name)
    if not path.is_file():
        names = preset_names(kind)
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{what} {name!r} not found at {path}{hint} Available: "
                          f"{', '.join(names)}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {name!r} ({path}) is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} {name!r} ({path}) must hold a JSON object")
    return raw


def check_reference(kind: str, name: str, field: str, where: str) -> None:
    """Refuse a preset name ``field`` of ``where`` that names no file in ``configs/<kind>/``."""
    names = preset_names(kind)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{where}: {field} {name!r} names no preset in configs/{kind}/"
                          f"{hint} Available: {', '.join(names)}")
