"""A password in TRADECORE_KRAKEN_SPOT_URL never leaves the process: a failing request through
the loopback fake Kraken, materialized by the ``dagster`` CLI on a fresh DAGSTER_HOME, leaves
no trace of it in stdout/stderr, the event log, the compute logs or ``dagster debug export``."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef
from dagster._serdes import serialize_value

REPO = Path(__file__).resolve().parents[2]
SECRET = "secretpass"
DAGSTER = str(Path(sys.executable).parent / "dagster")


def test_url_credentials_leak_nowhere_when_a_request_fails(make_kraken, tmp_path):
    server = make_kraken()
    home = tmp_path / "home"
    home.mkdir()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "TRADECORE_LAKE_ROOT": str(tmp_path / "lake"),
        "TRADECORE_DATA_DIR": str(tmp_path / "data"),
        # A wrong path: Kraken answers 404, whose error quotes the URL it was sent to.
        "TRADECORE_KRAKEN_SPOT_URL": server.url.replace("http://", f"http://user:{SECRET}@")
        + "/wrongpath",
    }
    run = subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "tradecore_pipelines.definitions",
         "--select", "kraken_spot_btc_usd/candles", "--partition", "2024-03-01"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert server.fake.requests, "the request with credentials must have reached the fake"
    assert "***@127.0.0.1" in output and "404" in output  # the failure is still explained

    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
        (dagster_run,) = instance.get_runs()
        events = instance.all_logs(dagster_run.run_id)
        assert any(e.is_dagster_event and e.dagster_event.is_step_failure for e in events)
        event_log = "\n".join(serialize_value(e) for e in events)
    export = tmp_path / "export.gz"
    exported = subprocess.run([DAGSTER, "debug", "export", dagster_run.run_id, str(export)],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert exported.returncode == 0, exported.stderr[-3000:]
    compute_logs = [p for p in (home / "storage").rglob("*") if p.is_file()]
    assert compute_logs, "the CLI run captures compute logs"

    assert SECRET not in output
    assert SECRET not in event_log
    assert SECRET not in gzip.decompress(export.read_bytes()).decode()
    # Every file of the instance: run and event-log databases, compute logs, anything else.
    leaks = [p for p in home.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert leaks == []
