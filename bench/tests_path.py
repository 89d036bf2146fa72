"""Put the repository root on ``sys.path``: benchmarks build their data with the helpers in
``tests/`` (``tests.frames``, ``tests.lakes``), which are not part of the installed package.

Import it before any ``tests.*`` import (``import tests_path  # noqa: F401``).
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
