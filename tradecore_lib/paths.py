"""Where the repository's configuration and default data folders are."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def config_dir() -> Path:
    """The ``configs/`` folder (``TRADECORE_CONFIG_DIR`` overrides it)."""
    return Path(os.environ.get("TRADECORE_CONFIG_DIR", REPO_ROOT / "configs"))


def data_dir() -> Path:
    """The ``data/`` folder holding the default lake, manifests and the landing folder."""
    return Path(os.environ.get("TRADECORE_DATA_DIR", REPO_ROOT / "data"))


def default_lake_root() -> str:
    """``TRADECORE_LAKE_ROOT`` or ``data/lake``."""
    return os.environ.get("TRADECORE_LAKE_ROOT") or str(data_dir() / "lake")
