"""Option dataclasses built from configuration mappings (``source:`` in markets.yaml)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def options_from_mapping(cls: type[T], raw: Mapping[str, Any], what: str) -> T:
    """Build the dataclass ``cls`` from ``raw``, naming unknown keys and the valid ones."""
    known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"unknown {what} option(s) {sorted(unknown)}; valid: {sorted(known)}")
    return cls(**raw)
