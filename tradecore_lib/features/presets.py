"""Indicator presets ("Drink Menu"): JSON files in ``configs/tools/`` or inline run config.

A preset file looks like::

    {
      "description": "VWAP and z-score",
      "indicators": [
        {"name": "vwap", "params": {"window": 60}},
        {"name": "zscore"}
      ]
    }

Omitted parameters take their defaults. :func:`parse_preset` validates everything before
any work starts and reports every problem at once, each naming the entry, the parameter, the
bad value and the valid choices. Files are found and read by the configuration layer
(:mod:`tradecore_lib.config`); each indicator's parameters are typed by its schema in the
registry (:class:`~tradecore_lib.features.registry.ParamSpec`), so the preset model is the list
of (indicator, typed parameters) that :class:`Preset` holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tradecore_lib.features.indicators  # noqa: F401  (registers the catalog)
from tradecore_lib.config import closest, preset_file, preset_names
from tradecore_lib.errors import ConfigError
from tradecore_lib.features.registry import REGISTRY, Indicator, ParamError, ParamValue

# One previous month always holds at least 28 days of minutes (February), so a preset whose
# warm-up fits in 40,320 bars is fully warmed by the previous month's candles.
MAX_LOOKBACK = 28 * 24 * 60
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_PRESET_KEYS = ("description", "indicators")
_ENTRY_KEYS = ("name", "params")


class PresetError(ConfigError):
    """A preset is malformed; ``problems`` lists every finding, each naming where it is."""

    def __init__(self, where: str, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        super().__init__(
            f"{where}: invalid indicator preset:\n" + "\n".join(f"  - {p}" for p in problems)
        )


@dataclass(frozen=True)
class IndicatorChoice:
    """One indicator of a preset with validated parameters (defaults filled in)."""

    name: str
    params: dict[str, ParamValue]

    @property
    def indicator(self) -> Indicator:
        return REGISTRY[self.name]

    @property
    def outputs(self) -> list[str]:
        return self.indicator.outputs(self.params)

    @property
    def lookback(self) -> int:
        return self.indicator.lookback(self.params)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()},
        }


@dataclass(frozen=True)
class Preset:
    """A validated list of indicators.

    Attributes:
        name: names the lake folder ``features/<name>/...``.
        description: free text for people.
        indicators: the choices in file order (column order follows it).
        source: where it came from (file path or ``inline run config``), for messages.
    """

    name: str
    description: str
    indicators: tuple[IndicatorChoice, ...]
    source: str

    @property
    def columns(self) -> list[str]:
        """Feature column names in output order."""
        return [column for choice in self.indicators for column in choice.outputs]

    @property
    def lookback(self) -> int:
        """Bars of history before every column is settled (the longest indicator's)."""
        return max((choice.lookback for choice in self.indicators), default=0)

    def to_dict(self) -> dict[str, Any]:
        """Canonical JSON form (defaults filled in), stored with every feature table."""
        return {
            "name": self.name,
            "description": self.description,
            "indicators": [choice.to_dict() for choice in self.indicators],
        }

    def digest(self) -> str:
        """sha256 of the indicator list: equal for presets computing the same columns."""
        body = json.dumps(self.to_dict()["indicators"], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()


def _choices(names: list[str]) -> str:
    return ", ".join(sorted(names))


def _suggest(value: str, names: list[str]) -> str:
    match = closest(value, names)
    return f" (did you mean {match!r}?)" if match else ""


def _unknown_keys(raw: dict, valid: tuple[str, ...]) -> list[str]:
    return [f"unknown key {key!r}{_suggest(str(key), list(valid))}; valid keys: "
            f"{', '.join(valid)}" for key in raw if key not in valid]


def _parse_entry(index: int, raw: Any, problems: list[str]) -> IndicatorChoice | None:
    where = f"indicators[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where} must be an object like {{\"name\": \"rsi\"}}, got {raw!r}")
        return None
    problems.extend(f"{where}: {problem}" for problem in _unknown_keys(raw, _ENTRY_KEYS))
    name = raw.get("name")
    if name not in REGISTRY:
        names = list(REGISTRY)
        hint = _suggest(name, names) if isinstance(name, str) else ""
        problems.append(
            f"{where}: unknown indicator {name!r}{hint}; valid choices: {_choices(names)}"
        )
        return None
    indicator = REGISTRY[name]
    where = f"{where} ({name})"
    given = raw.get("params", {})
    if not isinstance(given, dict):
        problems.append(f"{where}: params must be an object, got {given!r}")
        return None
    params = indicator.defaults()
    before = len(problems)
    valid = [spec.name for spec in indicator.params]
    for key, value in given.items():
        spec = indicator.param(key)
        if spec is None:
            problems.append(
                f"{where}: unknown parameter {key!r}{_suggest(key, valid)}; valid parameters: "
                + (_choices(valid) if valid else "none (this indicator takes no parameters)")
            )
            continue
        try:
            params[key] = spec.coerce(value)
        except ParamError as exc:
            problems.append(f"{where}: parameter {key!r} {exc}; valid: {spec.describe()}")
    if len(problems) > before:
        return None
    if indicator.check is not None:
        rule_problems = indicator.check(params)
        problems.extend(f"{where}: {problem}" for problem in rule_problems)
        if rule_problems:
            return None
    return IndicatorChoice(name, params)


def parse_preset(raw: Any, *, name: str, source: str) -> Preset:
    """Validate a preset document (parsed JSON) into a :class:`Preset`.

    Raises :class:`PresetError` listing every problem, prefixed by ``source``.
    """
    problems: list[str] = []
    if not _NAME_RE.match(name):
        problems.append(f"preset name {name!r} must match {_NAME_RE.pattern} (it names a folder)")
    if not isinstance(raw, dict):
        raise PresetError(source, [*problems, f"expected a JSON object, got {type(raw).__name__}"])
    problems.extend(f"top level: {problem}" for problem in _unknown_keys(raw, _PRESET_KEYS))
    entries = raw.get("indicators")
    if not isinstance(entries, list) or not entries:
        problems.append(
            "'indicators' must be a non-empty list of {\"name\": ..., \"params\": {...}}"
        )
        raise PresetError(source, problems)
    description = raw.get("description", "")
    if not isinstance(description, str):
        problems.append(f"'description' must be a string, got {description!r}")
    parsed = [_parse_entry(i, entry, problems) for i, entry in enumerate(entries)]
    choices = [(i, choice) for i, choice in enumerate(parsed) if choice is not None]
    producers: dict[str, str] = {}
    for i, choice in choices:
        for column in choice.outputs:
            if column in producers:
                problems.append(
                    f"column {column!r} is produced twice, by {producers[column]} and "
                    f"indicators[{i}] ({choice.name}); give one of them different parameters"
                )
            producers[column] = f"indicators[{i}] ({choice.name})"
    for i, choice in choices:
        if choice.lookback > MAX_LOOKBACK:
            problems.append(
                f"indicators[{i}] ({choice.name}) needs {choice.lookback} bars of warm-up; at "
                f"most {MAX_LOOKBACK} (28 days) fit in the previous month: use shorter windows"
            )
    if problems:
        raise PresetError(source, problems)
    return Preset(name, str(description), tuple(choice for _, choice in choices), source)


def _is_path(name_or_path: str) -> bool:
    return name_or_path.endswith(".json") or "/" in name_or_path or "\\" in name_or_path


def load_feature_preset(name_or_path: str) -> Preset:
    """A preset by name (``configs/tools/<name>.json``) or from a JSON file path."""
    if _is_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_file():
            raise PresetError(str(path), ["file not found"])
    else:
        path = preset_file("tools", name_or_path)
        if not path.is_file():
            names = preset_names("tools")
            raise PresetError(
                name_or_path,
                [
                    f"unknown preset {name_or_path!r}{_suggest(name_or_path, names)}; "
                    f"presets in {path.parent}: {_choices(names)} "
                    "(or give the path of a JSON file)"
                ],
            )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PresetError(str(path), [f"not valid JSON: {exc}"]) from None
    return parse_preset(raw, name=path.stem, source=str(path))


def inline_preset(indicators: list[dict[str, Any]], description: str = "") -> Preset:
    """A custom mix from run config; named ``custom-<digest>`` so it never overwrites the
    tables of a named preset, and equal mixes share one folder."""
    raw = {"description": description, "indicators": indicators}
    preset = parse_preset(raw, name="custom", source="inline run config")
    return Preset(f"custom-{preset.digest()[:10]}", description, preset.indicators, preset.source)
