"""The one configuration layer: typed pydantic models for every configuration file.

``configs/markets.yaml`` (with each venue's ``source`` options and ``gap_tolerance``), the env
presets (``configs/env/``), the training presets (``configs/train/``) and the indicator presets
(``configs/tools/``) are models derived from :class:`ConfigModel`, read through
:func:`read_json_preset` and checked by :func:`validate`. Unknown keys are refused with the valid
keys and a "did you mean"; wrong types and out-of-range values are named with the file, the
market or preset, and the field path (``ppo.ent_coef``, ``indicators[2].params``). A preset name
given in another file (``env_preset``, ``feature_preset``, ``train_preset``) is resolved with
:func:`check_reference`. Everything reachable from ``configs/markets.yaml`` is validated when the
code location loads (:func:`tradecore_lib.markets.load_markets`).

The folder is ``configs/`` of the repository, or ``TRADECORE_CONFIG_DIR`` when set
(:func:`tradecore_lib.paths.config_dir`), so tests and deployments can point at another one.
"""

from __future__ import annotations

import difflib
import json
import logging
import types
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from tradecore_lib.errors import ConfigError
from tradecore_lib.paths import config_dir

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]

log = logging.getLogger("tradecore.config")


class ConfigModel(BaseModel):
    """Base of every configuration model: unknown keys refused, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields the loader fills in (a preset's name from its file name), not written in files.
    loader_fields: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def field_model(cls, name: str, raw: Mapping[str, Any]) -> type[BaseModel] | None:
        """The model validating field ``name`` when its annotation cannot say (``raw`` is this
        model's input); used to list valid keys in error messages. None: read the annotation.
        """
        return None

    @classmethod
    def describe_location(cls, loc: Loc) -> str:
        """How an error location reads in a message: ``ppo.ent_coef``, ``indicators[2]``."""
        return format_location(loc)


def format_location(loc: Loc) -> str:
    """``("indicators", 2, "params")`` -> ``indicators[2].params``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def closest(value: str, choices: Iterable[str]) -> str | None:
    """The choice ``value`` most likely meant (a typo of it), or None."""
    match = difflib.get_close_matches(value, list(choices), n=1)
    return match[0] if match else None


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'seed'?"`` when ``value`` looks like a typo of a choice, else ``""``."""
    match = closest(value, choices)
    return f"; did you mean {match!r}?" if match else ""


def _annotation_model(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation]
    while candidates:
        current = candidates.pop()
        if isinstance(current, type) and issubclass(current, BaseModel):
            return current
        if get_origin(current) in (Union, types.UnionType, list, tuple, dict):
            # dict[str, Model]: the value model (keys are names, not fields)
            candidates.extend(get_args(current))
    return None


def _step(model: type[BaseModel] | None, raw: Any, part: str | int
          ) -> tuple[type[BaseModel] | None, Any]:
    """The model and the raw input one step down an error location."""
    if isinstance(part, int) or model is None:
        inner = raw[part] if isinstance(raw, list) and isinstance(part, int) and part < len(
            raw) else None
        return model, inner
    inner = raw.get(part) if isinstance(raw, Mapping) else None
    if part not in model.model_fields:
        # a key of a dict[str, Model] field: stay on the value model
        return model, inner
    dynamic = model.field_model(part, raw) if issubclass(model, ConfigModel) and isinstance(
        raw, Mapping) else None
    return dynamic or _annotation_model(model.model_fields[part].annotation), inner


def _model_at(model: type[BaseModel], raw: Any, loc: Loc) -> type[BaseModel] | None:
    current: type[BaseModel] | None = model
    for part in loc:
        current, raw = _step(current, raw, part)
        if current is None:
            return None
    return current


def valid_keys(model: type[BaseModel]) -> list[str]:
    """The keys a file may give for ``model``, sorted (fields its loader sets are left out)."""
    set_by_loader = model.loader_fields if issubclass(model, ConfigModel) else frozenset()
    return sorted(field.alias or name for name, field in model.model_fields.items()
                  if name not in set_by_loader)


def describe_errors(model: type[BaseModel], exc: ValidationError, raw: Any = None) -> list[str]:
    """One line per problem: field path, what is wrong, the value, valid keys, did-you-mean.

    ``raw`` is the validated input; with it, a field whose model depends on the input (a
    market's ``source`` by venue) still gets its valid keys listed. A required field missing
    next to an unknown key that looks like it is reported on both lines.
    """
    errors = exc.errors()
    unknown: dict[Loc, list[str]] = {}
    for error in errors:
        if error["type"] == "extra_forbidden":
            loc = tuple(error["loc"])
            unknown.setdefault(loc[:-1], []).append(str(loc[-1]))
    where = model.describe_location if issubclass(model, ConfigModel) else format_location
    problems = []
    for error in errors:
        loc = tuple(error["loc"])
        field = where(loc)
        if error["type"] == "extra_forbidden":
            parent = _model_at(model, raw, loc[:-1])
            line = f"{field}: unknown key"
            if parent is not None:
                keys = valid_keys(parent)
                meant = closest(str(loc[-1]), keys)
                line += (f"; did you mean {meant!r}? Valid keys: " if meant else "; valid keys: ")
                line += ", ".join(keys)
            problems.append(line)
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            typo = closest(str(loc[-1]), unknown.get(loc[:-1], []))
            if typo is not None:
                message += f" (the unknown key {typo!r} looks like a typo of {loc[-1]!r})"
            problems.append(f"{field}: {message}")
            continue
        value = error.get("input")
        shown = "" if isinstance(value, Mapping) else f" (got {value!r})"
        problems.append(f"{field}: {message}{shown}")
    return problems


def validate(model: type[M], raw: Any, where: str, *, error: type[ConfigError] = ConfigError
             ) -> M:
    """``raw`` validated as ``model``; ``error`` (a :class:`ConfigError`) naming ``where`` and
    every problem, one per line."""
    if not isinstance(raw, Mapping):
        raise error(f"{where}: expected a mapping of keys, got {type(raw).__name__}")
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        lines = describe_errors(model, exc, raw)
        raise error(f"{where}: invalid configuration:\n"
                    + "\n".join(f"  - {line}" for line in lines)) from None


def rename_deprecated_keys(raw: Mapping[str, Any], renames: Mapping[str, str], where: str,
                           *, error: type[ConfigError] = ConfigError) -> dict[str, Any]:
    """``raw`` with each deprecated key of ``renames`` (old -> new) moved to its new name.

    Each rename is announced by a :class:`DeprecationWarning` and a warning log line naming
    the old and the new key; giving both is refused.
    """
    out = dict(raw)
    for old, new in renames.items():
        if old not in out:
            continue
        if new in out:
            raise error(f"{where}: both {old!r} (deprecated) and {new!r} are set; keep {new!r}")
        deprecated(f"{where}: key {old!r} is deprecated, read as {new!r}; rename it")
        out[new] = out.pop(old)
    return out


def deprecated(message: str) -> None:
    """Announce a deprecated configuration: a :class:`DeprecationWarning` (for tests and
    ``-W error``) and a warning log line (DeprecationWarnings are hidden by default)."""
    warnings.warn(message, DeprecationWarning, stacklevel=3)
    log.warning(message)


# -- preset files: configs/<kind>/<name>.json ---------------------------------------------------
def preset_file(kind: str, name: str) -> Path:
    """``configs/<kind>/<name>.json``."""
    return config_dir() / kind / f"{name}.json"


def preset_names(kind: str) -> list[str]:
    """Names of the presets in ``configs/<kind>/`` (``env``, ``train``, ``tools``)."""
    return sorted(p.stem for p in (config_dir() / kind).glob("*.json"))


def unknown_preset_message(kind: str, name: str, what: str) -> str:
    """``<what> 'x' not found at <path>; did you mean 'y'? Available: a, b``."""
    names = preset_names(kind)
    return (f"{what} {name!r} not found at {preset_file(kind, name)}{did_you_mean(name, names)} "
            f"Available: {', '.join(names)}")


def read_json_file(path: Path, what: str, *, error: type[ConfigError] = ConfigError
                   ) -> dict[str, Any]:
    """The JSON object in ``path``; ``error`` naming ``what`` when unreadable or not an object."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} ({path}): file not found") from None
    except json.JSONDecodeError as exc:
        raise error(f"{what} ({path}) is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise error(f"{what} ({path}) must hold a JSON object, got {type(raw).__name__}")
    return raw


def read_json_preset(kind: str, name: str, what: str, *, error: type[ConfigError] = ConfigError
                     ) -> dict[str, Any]:
    """The JSON object of preset ``name`` of ``configs/<kind>/``; a missing name gets a
    did-you-mean among the presets that exist."""
    path = preset_file(kind, name)
    if not path.is_file():
        raise error(unknown_preset_message(kind, name, what))
    return read_json_file(path, f"{what} {name!r}", error=error)


def check_reference(kind: str, name: str, field: str, where: str, *,
                    error: type[ConfigError] = ConfigError) -> None:
    """Refuse a preset name ``field`` of ``where`` that names no file in ``configs/<kind>/``."""
    names = preset_names(kind)
    if name not in names:
        raise error(f"{where}: {field} {name!r} names no preset in {config_dir() / kind}"
                    f"{did_you_mean(name, names)} Available: {', '.join(names)}")
