"""Helpers turning library results into Dagster metadata values."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import dagster as dg
import pyarrow as pa

from tradecore_lib.months import iso_utc


def markdown_table(table: pa.Table) -> dg.MetadataValue:
    """A small table (a preview) as markdown."""
    header = "| " + " | ".join(table.column_names) + " |"
    rule = "| " + " | ".join("---" for _ in table.column_names) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row.values()) + " |" for row in table.to_pylist()]
    return dg.MetadataValue.md("\n".join([header, rule, *rows]))


def records_table(records: list[dict[str, Any]],
                  descriptions: Mapping[str, str | None] | None = None) -> dg.MetadataValue:
    """A list of flat dicts (same keys) as a Dagster table with a typed schema; the UI shows
    ``descriptions[column]`` on a column's header."""
    if not records:
        return dg.MetadataValue.md("_(none)_")
    described = descriptions or {}
    columns = [dg.TableColumn(name, _column_type(records[0][name]),
                              description=described.get(name))
               for name in records[0]]
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: _plain(v) for k, v in r.items()}) for r in records],
        schema=dg.TableSchema(columns=columns),
    )


def timestamp_or_dash(ts_ms: int | None) -> dg.MetadataValue:
    """A UTC epoch-ms time as a Dagster timestamp value; ``-`` when there is none."""
    if ts_ms is None:
        return dg.MetadataValue.text("-")
    return dg.MetadataValue.timestamp(ts_ms / 1000)


def png_markdown(png: bytes, alt: str) -> dg.MetadataValue:
    """A PNG image inline in markdown metadata (the UI renders it on the asset page)."""
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode()})")


def _column_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "string"


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else str(value)


def _cell(value: Any) -> str:
    return iso_utc(value) if isinstance(value, datetime) else str(value)
