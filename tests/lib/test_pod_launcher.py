"""The pod launcher and its watchdog as real processes, against a loopback RunPod GraphQL API.

The launcher (``python -m tradecore_lib.pod -- CMD``) runs with a volume folder standing for
the network volume; the watchdog's ``runpod.terminate_pod`` (the real SDK) reaches a tiny
loopback server through ``RUNPOD_API_BASE_URL`` that answers the ``podTerminate`` mutation,
records it and can fail on purpose first. Pipes through the volume: a script under the
launcher opens the training's reporter and its messages land as chunk files.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dagster_pipes import encode_param

from tests.conftest import free_port

POD_ID = "pod-abc123"
POD_KEY = "rpa_POD_SCOPED_SECRET_0123456789"
EXIT_KEY = "tradecore/pods/tradecore-1234abcd-train-a1/exit.json"
HEARTBEAT_KEY = "tradecore/heartbeats/tradecore-1234abcd-train-a1.json"


@dataclass
class RunPodApi:
    """Loopback GraphQL endpoint: records each request; the first ``failures`` terminate
    calls fail (a 500, then a GraphQL error, alternately)."""

    failures: int = 0
    calls: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def terminations(self) -> list[dict]:
        with self.lock:
            return [call for call in self.calls if call["ok"]]


@pytest.fixture
def api() -> Iterator[RunPodApi]:
    state = RunPodApi()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            query = body["query"]
            match = re.search(r'podTerminate\(input:\s*\{\s*podId:\s*"([^"]*)"\s*\}\)', query)
            with state.lock:
                attempt = len(state.calls)
                ok = match is not None and attempt >= state.failures
                state.calls.append({"pod_id": match and match.group(1), "ok": ok,
                                    "auth": self.headers.get("Authorization"),
                                    "at": time.time()})
            if match is None:
                self._send(400, {"errors": [{"message": "unknown operation"}]})
            elif not ok and attempt % 2 == 0:
                self._send(500, None)
            elif not ok:
                self._send(200, {"errors": [{"message": "Something went wrong. Please try "
                                             "again later."}]})
            else:
                self._send(200, {"data": {"podTerminate": None}})

        def _send(self, status: int, document: dict | None) -> None:
            data = b"internal error" if document is None else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()


@dataclass
class Pod:
    """A launcher process with its volume folder and its log."""

    process: subprocess.Popen
    volume: Path
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def exit_record(self) -> dict:
        return json.loads((self.volume / EXIT_KEY).read_text())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@pytest.fixture
def launch(tmp_path, api) -> Iterator[Callable[..., Pod]]:
    pods: list[Pod] = []
    volume = tmp_path / "volume"
    volume.mkdir()

    def start(command: list[str], **env: str) -> Pod:
        log_path = tmp_path / f"launcher-{len(pods)}.log"
        environ = {**os.environ, "TRADECORE_POD_VOLUME": str(volume),
                   "TRADECORE_EXIT_KEY": EXIT_KEY, "RUNPOD_POD_ID": POD_ID,
                   "RUNPOD_API_KEY": POD_KEY, "RUNPOD_API_BASE_URL": api.url, **env}
        with log_path.open("w") as log:
            process = subprocess.Popen([sys.executable, "-m", "tradecore_lib.pod", "--",
                                        *command], env=environ, stdout=log, stderr=log)
        pods.append(Pod(process, volume, log_path))
        return pods[-1]

    yield start
    for pod in pods:
        if pod.process.poll() is None:
            pod.process.kill()
            pod.process.wait()


def _wait(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def _trapping_sleeper(marker: Path) -> list[str]:
    """A command that records the SIGTERM it gets, then exits 0."""
    return _python(
        "import signal, sys, time\n"
        f"def on_term(*_):\n    open({str(marker)!r}, 'w').write('SIGTERM')\n    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term)\n"
        "time.sleep(120)\n")


class Heartbeat:
    """The orchestrator's heartbeat, rewritten every 0.2 s while running."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(json.dumps({"ts": time.time(), "run_id": "r", "pod": "p"}))
            temporary.replace(self.path)
            self._stop.wait(0.2)


def test_exit_is_recorded_and_a_restarted_container_does_not_run_again(launch, api) -> None:
    pod = launch(_python("import sys; sys.exit(3)"))
    _wait(lambda: (pod.volume / EXIT_KEY).exists(), what="the exit record")
    record = pod.exit_record()
    assert record["exit_code"] == 3 and abs(record["finished_at"] - time.time()) < 30
    assert "killed_by" not in record
    assert sorted(p.name for p in (pod.volume / EXIT_KEY).parent.iterdir()) == ["exit.json"]
    time.sleep(0.5)
    assert pod.process.poll() is None, "the launcher must idle after its command ended"
    assert pod.stop() == 128 + signal.SIGTERM

    counter = pod.volume / "runs.txt"
    again = launch(_python(f"open({str(counter)!r}, 'a').write('ran')"))
    _wait(lambda: "not running it again" in again.log, what="the restart's log line")
    time.sleep(0.5)
    assert not counter.exists(), "the command ran again after a restart"
    assert again.process.poll() is None
    assert again.stop() == 128 + signal.SIGTERM
    assert again.exit_record() == record
    assert api.calls == []


def test_stale_heartbeat_stops_the_command_and_terminates_the_pod(launch, api,
                                                                  tmp_path) -> None:
    api.failures = 2  # a 500, then a GraphQL error: the watchdog retries
    marker = tmp_path / "term.txt"
    # The heartbeat was written once and never again (the orchestrator died).
    heartbeat = tmp_path / "volume" / HEARTBEAT_KEY
    heartbeat.parent.mkdir(parents=True)
    heartbeat.write_text(json.dumps({"ts": time.time(), "run_id": "r", "pod": "p"}))
    pod = launch(_trapping_sleeper(marker), TRADECORE_HEARTBEAT_KEY=HEARTBEAT_KEY,
                 TRADECORE_HEARTBEAT_LIMIT_S="1.0")
    _wait(lambda: api.terminations(), what="podTerminate")
    assert [call["pod_id"] for call in api.calls] == [POD_ID] * 3
    assert {call["auth"] for call in api.calls} == {f"Bearer {POD_KEY}"}
    _wait(lambda: (pod.volume / EXIT_KEY).exists(), what="the exit record")
    record = pod.exit_record()
    assert "heartbeat unchanged" in record["killed_by"]
    assert record["exit_code"] == 0  # the command handled its SIGTERM and exited cleanly
    assert marker.read_text() == "SIGTERM"
    # the server records the call before it answers: the launcher's log line follows
    _wait(lambda: "terminate_pod(pod-abc123) accepted" in pod.log, what="the accepted line")
    log = pod.log
    assert log.count("retrying") == 2
    assert POD_KEY not in log
    pod.stop()


def test_a_heartbeat_never_written_counts_from_the_launchers_start(launch, api,
                                                                    tmp_path) -> None:
    marker = tmp_path / "term.txt"
    started = time.time()
    pod = launch(_trapping_sleeper(marker), TRADECORE_HEARTBEAT_KEY=HEARTBEAT_KEY,
                 TRADECORE_HEARTBEAT_LIMIT_S="1.0")
    _wait(lambda: api.terminations(), what="podTerminate")
    assert api.terminations()[0]["at"] - started >= 1.0
    assert marker.read_text() == "SIGTERM"
    _wait(lambda: (pod.volume / EXIT_KEY).exists(), what="the exit record")
    assert "none seen" in pod.exit_record()["killed_by"]
    pod.stop()


def test_deadline_terminates_the_pod_whatever_the_heartbeat(launch, api, tmp_path) -> None:
    marker = tmp_path / "term.txt"
    deadline = time.time() + 3.0
    with Heartbeat(tmp_path / "volume" / HEARTBEAT_KEY):
        pod = launch(_trapping_sleeper(marker), TRADECORE_HEARTBEAT_KEY=HEARTBEAT_KEY,
                     TRADECORE_HEARTBEAT_LIMIT_S="2.0", TRADECORE_POD_DEADLINE=str(deadline))
        _wait(lambda: api.terminations(), what="podTerminate")
    assert api.terminations()[0]["at"] >= deadline
    assert marker.read_text() == "SIGTERM"
    _wait(lambda: (pod.volume / EXIT_KEY).exists(), what="the exit record")
    assert "deadline passed" in pod.exit_record()["killed_by"]
    pod.stop()


def test_a_fresh_heartbeat_keeps_the_pod_until_it_stops(launch, api, tmp_path) -> None:
    with Heartbeat(tmp_path / "volume" / HEARTBEAT_KEY):
        pod = launch(_python("import time; time.sleep(2)"), TRADECORE_HEARTBEAT_KEY=HEARTBEAT_KEY,
                     TRADECORE_HEARTBEAT_LIMIT_S="1.0")
        _wait(lambda: (pod.volume / EXIT_KEY).exists(), what="the exit record")
        assert pod.exit_record()["exit_code"] == 0 and "killed_by" not in pod.exit_record()
        time.sleep(1.2)  # idling, heartbeat still fresh
        assert api.calls == []
        stopped_at = time.time()
    # The orchestrator is gone: the idle pod ends itself within the limit (+ a poll).
    _wait(lambda: api.terminations(), timeout=10, what="podTerminate")
    assert api.terminations()[0]["at"] - stopped_at < 1.0 + 0.25 + 1.0
    pod.stop()


def test_sigterm_is_forwarded_and_leaves_no_exit_record(launch, api, tmp_path) -> None:
    marker = tmp_path / "term.txt"
    pod = launch(_trapping_sleeper(marker))
    _wait(lambda: "running:" in pod.log, what="the command's start")
    time.sleep(0.5)
    pod.process.send_signal(signal.SIGTERM)
    assert pod.process.wait(timeout=20) == 128 + signal.SIGTERM
    assert marker.read_text() == "SIGTERM"
    # Stopped, preempted or terminated: the command did not finish, a restart runs it again.
    assert not (pod.volume / EXIT_KEY).exists()
    assert api.calls == []


def test_pipes_messages_reach_the_volume_as_chunks(launch, api, tmp_path) -> None:
    volume = tmp_path / "volume"
    context_key = "tradecore/pipes/abc/context.json"
    (volume / context_key).parent.mkdir(parents=True)
    (volume / context_key).write_text(json.dumps({
        "asset_keys": ["synthetic_btc_usd/ppo_agent"], "code_version_by_asset_key": None,
        "provenance_by_asset_key": None, "partition_key": None, "partition_key_range": None,
        "partition_time_window": None, "run_id": "run-1", "job_name": "train",
        "retry_number": 0, "extras": {}}))
    script = ("from tradecore_lib.train.reporting import open_reporter\n"
              "with open_reporter() as report:\n"
              "    report.info('hello from the pod')\n"
              "    print('a plain stdout line', flush=True)\n"
              "    report.result({'answer': 42})\n")
    pod = launch(_python(script), TRADECORE_PIPES_INTERVAL_S="0.5",
                 TRADECORE_POD_NAME="tradecore-1234abcd-train-a1",
                 DAGSTER_PIPES_CONTEXT=encode_param({"bucket": "vol-1", "key": context_key}),
                 DAGSTER_PIPES_MESSAGES=encode_param({"bucket": "vol-1",
                                                      "key_prefix": "tradecore/pipes/abc/msgs",
                                                      "include_stdio_in_messages": True}))
    _wait(lambda: (volume / EXIT_KEY).exists(), timeout=60, what="the exit record")
    assert pod.exit_record()["exit_code"] == 0, pod.log
    chunks = volume / "tradecore/pipes/abc/msgs"
    names = sorted(p.name for p in chunks.iterdir())
    assert names == [f"{n}.json" for n in range(1, len(names) + 1)]  # no temporary left
    messages = [json.loads(line) for n in range(1, len(names) + 1)
                for line in (chunks / f"{n}.json").read_text().splitlines()]
    # stdout/stderr chunks may follow "closed" (the stdio capture flushes last)
    methods = [m["method"] for m in messages if m["method"] != "log_external_stream"]
    assert methods[0] == "opened" and methods[-1] == "closed" and methods.count("closed") == 1
    assert messages[0]["params"]["extras"] == {"runpod_pod_id": POD_ID,
                                               "pod_name": "tradecore-1234abcd-train-a1"}
    logs = [m["params"]["message"] for m in messages if m["method"] == "log"]
    assert "hello from the pod" in logs
    (result,) = [m["params"] for m in messages if m["method"] == "report_asset_materialization"]
    assert result["metadata"]["answer"]["raw_value"] == 42
    stdout = "".join(m["params"]["text"] for m in messages
                     if m["method"] == "log_external_stream" and m["params"]["stream"] == "stdout")
    assert "a plain stdout line" in stdout
    (closed,) = [m["params"] for m in messages if m["method"] == "closed"]
    assert closed.get("exception") is None
    pod.stop()


def test_the_command_dies_with_a_killed_launcher(launch, api, tmp_path) -> None:
    # A pod's end kills every process of its container; a launcher killed alone (kill -9)
    # must not leave training running either, though it runs in its own session.
    pid_file = tmp_path / "child.pid"
    pod = launch(_python(f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid()))"
                         "; time.sleep(120)"))
    _wait(lambda: pid_file.exists() and pid_file.read_text(), what="the command's pid")
    child = int(pid_file.read_text())
    pod.process.kill()
    pod.process.wait()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        # a zombie until its new parent reaps it: dead all the same
        with open(f"/proc/{child}/stat") as stat:
            return stat.read().split(") ", 1)[1].startswith("Z")

    _wait(gone, timeout=10, what="the command to die with its launcher")


def test_a_command_that_cannot_start_is_recorded_as_127(launch, api, tmp_path) -> None:
    pod = launch([str(tmp_path / "no-such-program")])
    _wait(lambda: (pod.volume / EXIT_KEY).exists(), what="the exit record")
    assert pod.exit_record()["exit_code"] == 127
    assert "cannot start the command" in pod.log
    assert pod.process.poll() is None  # idles all the same
    pod.stop()
