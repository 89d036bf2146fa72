"""The Makefile respects the user's environment: their own DAGSTER_HOME is used and never
written into, and the instance it creates itself has run monitoring."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

REPO = Path(__file__).resolve().parents[1]
PRINT_HOME = ["make", "-s", "--no-print-directory", "--eval",
              "print-home: ; @echo $$DAGSTER_HOME", "print-home"]


def _make(args: list[str], **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    return subprocess.run(args, cwd=REPO, env={**base, **env}, capture_output=True, text=True,
                          timeout=60, check=True)


def test_the_users_dagster_home_is_kept_and_never_written(tmp_path):
    home = tmp_path / "mine"
    assert _make(PRINT_HOME, DAGSTER_HOME=str(home)).stdout.strip() == str(home)
    assert _make(PRINT_HOME).stdout.strip() == str(REPO / ".dagster_home")
    planned = _make(["make", "-n", "demo", "ui"], DAGSTER_HOME=str(home)).stdout
    assert "dagster.yaml" not in planned and str(home) not in planned
    assert not home.exists()


def test_the_instance_the_makefile_creates_has_run_monitoring(tmp_path):
    home = tmp_path / "created"
    _make(["make", "-s", f"DEFAULT_DAGSTER_HOME={home}", f"{home}/dagster.yaml"])
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_settings["max_resume_run_attempts"] == 0
        # the "training" pool of ppo_agent: one training (one RunPod pod) at a time
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        assert not instance.telemetry_enabled
