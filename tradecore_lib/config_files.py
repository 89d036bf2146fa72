"""JSON preset files under ``configs/<kind>/<name>.json`` (env and training presets)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tradecore_lib.paths import config_dir


def preset_file(kind: str, name: str) -> Path:
    """``configs/<kind>/<name>.json``."""
    return config_dir() / kind / f"{name}.json"


def preset_names(kind: str) -> list[str]:
    """Names of the presets in ``configs/<kind>/``."""
    return sorted(p.stem for p in (config_dir() / kind).glob("*.json"))


def read_preset_file(kind: str, name: str, what: str, error: type[Exception]) -> dict[str, Any]:
    """The JSON object of preset ``name``; ``error`` names the file and the choices."""
    path = preset_file(kind, name)
    if not path.is_file():
        raise error(f"{what} {name!r} not found at {path}; available: {preset_names(kind)}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{what} {name!r} ({path}) is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise error(f"{what} {name!r} ({path}) must hold a JSON object")
    return raw
