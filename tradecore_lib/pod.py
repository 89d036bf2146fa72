"""The pod side of RunPod compute: the launcher, its watchdog, and Dagster Pipes through the volume.

A pod's start command is ``python -m tradecore_lib.pod -- <training command...>``:

* **Launcher.** Runs the command as a child process (same env, its own process group) and,
  when it ends on its own, writes ``{"exit_code": int, "finished_at": epoch s}`` to
  ``<mount>/<TRADECORE_EXIT_KEY>`` atomically (temporary file + rename). It then idles until the
  pod is terminated: a container whose command exits may be restarted by RunPod, and a
  restarted launcher that finds the exit key does not run the command again. SIGTERM / SIGINT
  are forwarded to the child's process group; a launcher that received one (the pod is being
  stopped, preempted or terminated) writes no exit key (the command did not finish: a
  restarted container runs it again and training resumes from its checkpoint) and exits with
  128 + the signal number once the child is gone.
* **Watchdog** (a thread of the launcher, polling every ``min(5, limit / 4)`` s). Terminates
  the pod when the orchestrator's heartbeat ``<mount>/<TRADECORE_HEARTBEAT_KEY>`` has not
  changed for ``TRADECORE_HEARTBEAT_LIMIT_S`` seconds (on the pod's own clock, so a skewed
  orchestrator clock does not matter; a heartbeat not yet present counts from the launcher's
  start), or when ``TRADECORE_POD_DEADLINE`` (epoch s) has passed. It stops the child first
  (SIGTERM, SIGKILL after 10 s: the last checkpoint is then the one on the volume), writes the
  exit key with ``killed_by``, then calls ``runpod.terminate_pod(RUNPOD_POD_ID)`` with the
  pod-scoped ``RUNPOD_API_KEY`` RunPod injects, retried until it succeeds (and again each
  minute should the pod still live). The key is never logged.
* **Pipes through the volume.** :class:`PipesVolumeContextLoader` reads the context the
  orchestrator put at ``s3://<volume>/<key>`` as the file ``<mount>/<key>``;
  :class:`PipesVolumeMessageWriter` writes message chunks ``<mount>/<key_prefix>/<n>.json``,
  which the orchestrator's ``PipesS3MessageReader`` reads as ``s3://<volume>/<key_prefix>/
  <n>.json``. No S3 secret enters the pod. :func:`tradecore_lib.train.reporting.open_reporter`
  uses them when ``TRADECORE_POD_VOLUME`` is set.

Every volume path comes from ``TRADECORE_POD_VOLUME`` (default ``/workspace``) and the keys in
the environment; nothing here assumes a mount path. Imports only the standard library and
``dagster_pipes`` (``runpod`` is imported by the watchdog's thread), so the command starts at
once.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from dagster_pipes import (
    DagsterPipesError,
    PipesBlobStoreMessageWriter,
    PipesBufferedFilesystemMessageWriterChannel,
    PipesContextData,
    PipesContextLoader,
    PipesExtras,
    PipesParams,
)

from tradecore_lib.errors import ConfigError

VOLUME_ENV = "TRADECORE_POD_VOLUME"
DEFAULT_VOLUME = "/workspace"
POD_NAME_ENV = "TRADECORE_POD_NAME"
HEARTBEAT_KEY_ENV = "TRADECORE_HEARTBEAT_KEY"
HEARTBEAT_LIMIT_ENV = "TRADECORE_HEARTBEAT_LIMIT_S"
DEADLINE_ENV = "TRADECORE_POD_DEADLINE"
EXIT_KEY_ENV = "TRADECORE_EXIT_KEY"
PIPES_INTERVAL_ENV = "TRADECORE_PIPES_INTERVAL_S"
POD_ID_ENV = "RUNPOD_POD_ID"
API_KEY_ENV = "RUNPOD_API_KEY"  # the pod-scoped key RunPod injects, never the orchestrator's
DEFAULT_PIPES_INTERVAL_S = 10.0
# Seconds the child has between SIGTERM and SIGKILL when the watchdog stops it.
CHILD_GRACE_S = 10.0
# Seconds between terminate calls once one succeeded and the pod still lives.
RETERMINATE_S = 60.0
# How long the context loader waits for the context file to appear on the volume.
CONTEXT_WAIT_S = 60.0
_PREFIX = "tradecore.pod:"


class PodConfigError(ConfigError):
    """The pod's environment is missing or malformed (the message names the variable)."""


def _log(message: str) -> None:
    # The container's log (RunPod's console): the launcher's own lines, prefixed.
    print(f"{_PREFIX} {message}", file=sys.stderr, flush=True)


def volume_path(mount: str, key: str) -> str:
    """The file of volume key ``key`` (``s3://<volume>/<key>``) under ``mount``.

    Raises:
        PodConfigError: ``key`` leaves the volume (``..`` parts).
    """
    path = os.path.normpath(os.path.join(mount, key.lstrip("/")))
    if os.path.commonpath([path, os.path.normpath(mount)]) != os.path.normpath(mount):
        raise PodConfigError(f"volume key {key!r} leaves the volume mounted at {mount}")
    return path


def write_json_atomically(path: str, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` through a temporary file and a rename: a reader sees
    the old file or the whole new one, never half of it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(document, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


# -- Dagster Pipes through the volume ---------------------------------------------------------
class PipesVolumeContextLoader(PipesContextLoader):
    """Reads the Pipes context that dagster-aws' ``PipesS3ContextInjector`` put at
    ``s3://<volume>/<key>``: the file ``<mount>/<key>`` (the params' bucket is the volume).

    Waits up to ``wait_s`` seconds for the file (the orchestrator writes it through the
    volume's S3 API just before creating the pod).
    """

    def __init__(self, mount: str, *, wait_s: float = CONTEXT_WAIT_S) -> None:
        self.mount = mount
        self.wait_s = wait_s

    @contextmanager
    def load_context(self, params: PipesParams) -> Iterator[PipesContextData]:
        key = params.get("key")
        if not isinstance(key, str) or not key:
            raise DagsterPipesError(f"{type(self).__name__}: the context params carry no "
                                    f"'key' (got {sorted(params)}); the orchestrator must use "
                                    "PipesS3ContextInjector with the volume as bucket")
        path = volume_path(self.mount, key)
        deadline = time.monotonic() + self.wait_s
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.5)
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except FileNotFoundError:
            raise DagsterPipesError(f"Pipes context {path} (s3://{params.get('bucket')}/{key}) "
                                    f"did not appear on the volume in {self.wait_s:g} s") from None
        yield data


class _AtomicFilesystemChannel(PipesBufferedFilesystemMessageWriterChannel):
    """The filesystem chunk channel, each chunk written to a temporary name and renamed: the
    orchestrator's S3 reader takes ``<n>.json`` as soon as it exists and never reads it again,
    so it must never see half a chunk."""

    def upload_messages_chunk(self, payload: IO, index: int) -> None:
        path = os.path.join(self._path, f"{index}.json")
        temporary = os.path.join(self._path, f".{index}.json.tmp")
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(payload.read())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)


class PipesVolumeMessageWriter(PipesBlobStoreMessageWriter):
    """Writes Pipes message chunks where dagster-aws' ``PipesS3MessageReader`` (bucket = the
    volume) reads them: ``<mount>/<key_prefix>/<n>.json``, every ``interval`` seconds and at
    the end. stdout and stderr travel as messages when the reader asks for them
    (``include_stdio_in_messages``)."""

    def __init__(self, mount: str, *, interval: float = DEFAULT_PIPES_INTERVAL_S) -> None:
        super().__init__(interval=interval)
        self.mount = mount

    def make_channel(self, params: PipesParams) -> PipesBufferedFilesystemMessageWriterChannel:
        prefix = params.get("key_prefix")
        if not isinstance(prefix, str) or not prefix:
            raise DagsterPipesError(f"{type(self).__name__}: the messages params carry no "
                                    f"'key_prefix' (got {sorted(params)}); the orchestrator "
                                    "must use PipesS3MessageReader with the volume as bucket")
        path = volume_path(self.mount, prefix)
        os.makedirs(path, exist_ok=True)
        return _AtomicFilesystemChannel(path, interval=self.interval)

    def get_opened_extras(self) -> PipesExtras:
        # Reaches the orchestrator in the "opened" message: which pod is talking.
        return {key: os.environ[var] for key, var in
                (("runpod_pod_id", POD_ID_ENV), ("pod_name", POD_NAME_ENV)) if var in os.environ}


def volume_pipes(mount: str, *, interval: float = DEFAULT_PIPES_INTERVAL_S) -> dict[str, Any]:
    """The ``open_dagster_pipes`` keyword arguments of a pod whose volume is at ``mount``."""
    return {"context_loader": PipesVolumeContextLoader(mount),
            "message_writer": PipesVolumeMessageWriter(mount, interval=interval)}


def pipes_interval_from_env(environ: Mapping[str, str]) -> float:
    """``TRADECORE_PIPES_INTERVAL_S`` (seconds between message chunks), default 10."""
    return _float_env(environ, PIPES_INTERVAL_ENV, DEFAULT_PIPES_INTERVAL_S, minimum=0.0)


def _float_env(environ: Mapping[str, str], name: str, default: float | None,
               minimum: float | None = None) -> float | None:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise PodConfigError(f"{name}={text!r} is not a number") from None
    if minimum is not None and value < minimum:
        raise PodConfigError(f"{name}={text!r} must be at least {minimum:g}")
    return value


# -- settings ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodSettings:
    """What the launcher and its watchdog read from the pod's environment.

    Attributes:
        mount: the network volume's mount path.
        exit_path: the file of the exit key.
        heartbeat_path: the file of the orchestrator's heartbeat (None: no heartbeat guard).
        heartbeat_limit_s: seconds without a new heartbeat before the pod ends itself.
        deadline: epoch seconds after which the pod ends itself (None: no deadline).
        pod_id: ``RUNPOD_POD_ID`` (None outside RunPod: the watchdog cannot terminate).
    """

    mount: str
    exit_path: str
    heartbeat_path: str | None
    heartbeat_limit_s: float | None
    deadline: float | None
    pod_id: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> PodSettings:
        """Read the settings; the exit key defaults to ``tradecore/pods/<pod name>/exit.json``.

        Raises:
            PodConfigError: a variable is malformed, or neither the exit key nor the pod name
                is set.
        """
        mount = environ.get(VOLUME_ENV) or DEFAULT_VOLUME
        exit_key = environ.get(EXIT_KEY_ENV)
        if not exit_key:
            name = environ.get(POD_NAME_ENV)
            if not name:
                raise PodConfigError(f"set {EXIT_KEY_ENV} (or {POD_NAME_ENV}): the launcher "
                                     "records the command's exit there")
            exit_key = f"tradecore/pods/{name}/exit.json"
        heartbeat_key = environ.get(HEARTBEAT_KEY_ENV) or None
        limit = _float_env(environ, HEARTBEAT_LIMIT_ENV, None, minimum=0.01)
        if heartbeat_key and limit is None:
            raise PodConfigError(f"{HEARTBEAT_KEY_ENV} is set but {HEARTBEAT_LIMIT_ENV} is not")
        if limit is not None and not heartbeat_key:
            raise PodConfigError(f"{HEARTBEAT_LIMIT_ENV} is set but {HEARTBEAT_KEY_ENV} is not")
        return cls(
            mount=mount,
            exit_path=volume_path(mount, exit_key),
            heartbeat_path=volume_path(mount, heartbeat_key) if heartbeat_key else None,
            heartbeat_limit_s=limit,
            deadline=_float_env(environ, DEADLINE_ENV, None),
            pod_id=environ.get(POD_ID_ENV) or None,
        )

    @property
    def poll_s(self) -> float:
        """Seconds between watchdog checks: ``min(5, heartbeat limit / 4)``."""
        return 5.0 if self.heartbeat_limit_s is None else min(5.0, self.heartbeat_limit_s / 4)


# -- the watchdog -----------------------------------------------------------------------------
class Watchdog(threading.Thread):
    """Ends the pod when the orchestrator's heartbeat stops or the deadline passes.

    ``stop_child(reason)`` is called first (it returns once the child is gone); then
    ``runpod.terminate_pod`` is called until it succeeds.
    """

    def __init__(self, settings: PodSettings, environ: Mapping[str, str],
                 stop_child: Callable[[str], None], log: Callable[[str], None] = _log) -> None:
        super().__init__(name="tradecore-pod-watchdog", daemon=True)
        self.settings = settings
        self._api_key = environ.get(API_KEY_ENV) or None
        self._stop_child = stop_child
        self._log = log
        self._halt = threading.Event()
        self._born = time.monotonic()
        self._last_ts: Any = None
        self._last_change = self._born
        self.fired: str | None = None

    def halt(self) -> None:
        """Stop watching (the launcher is exiting)."""
        self._halt.set()

    def run(self) -> None:
        runpod = self._import_runpod()
        if self.settings.heartbeat_path is None and self.settings.deadline is None:
            self._log(f"WARNING: neither {HEARTBEAT_KEY_ENV} nor {DEADLINE_ENV} is set: this pod "
                      "never ends itself; only the orchestrator or the reaper terminates it")
            return
        while not self._halt.wait(self.settings.poll_s):
            reason = self.check()
            if reason is not None:
                self.fire(reason, runpod)
                return

    def check(self, now: float | None = None) -> str | None:
        """Why the pod must end now, or None."""
        wall = time.time() if now is None else now
        if self.settings.deadline is not None and wall > self.settings.deadline:
            return (f"deadline passed ({DEADLINE_ENV} {self.settings.deadline:.0f}, now "
                    f"{wall:.0f})")
        if self.settings.heartbeat_path is None or self.settings.heartbeat_limit_s is None:
            return None
        ts = self._read_heartbeat()
        monotonic = time.monotonic()
        if ts is not None and ts != self._last_ts:
            self._last_ts, self._last_change = ts, monotonic
        age = monotonic - self._last_change
        if age > self.settings.heartbeat_limit_s:
            seen = ("none seen" if self._last_ts is None
                    else f"last ts {self._last_ts}")
            return (f"orchestrator heartbeat unchanged for {age:.1f} s > limit "
                    f"{self.settings.heartbeat_limit_s:g} s ({seen})")
        return None

    def _read_heartbeat(self) -> Any:
        path = self.settings.heartbeat_path
        try:
            with open(path, encoding="utf-8") as handle:  # type: ignore[arg-type]
                return json.load(handle).get("ts")
        except (OSError, ValueError, AttributeError):
            # absent, or caught mid-write: the previous value stands
            return None

    def fire(self, reason: str, runpod: Any) -> None:
        """Stop the child, then terminate the pod (retried until the API accepts)."""
        self.fired = reason
        self._log(f"watchdog: {reason}: stopping the command and terminating the pod")
        try:
            self._stop_child(reason)
        except Exception as exc:  # the pod must still be terminated
            self._log(f"watchdog: stopping the command failed: {type(exc).__name__}: {exc}")
        if self.settings.pod_id is None or self._api_key is None or runpod is None:
            missing = [name for name, value in ((POD_ID_ENV, self.settings.pod_id),
                                                (API_KEY_ENV, self._api_key),
                                                ("the runpod package", runpod)) if value is None]
            self._log(f"watchdog: cannot terminate this pod: {', '.join(missing)} missing; the "
                      "orchestrator's runpod_reaper sensor must end it")
            return
        retry_s = min(5.0, self.settings.poll_s)
        while not self._halt.is_set():
            try:
                runpod.api_key = self._api_key
                runpod.terminate_pod(self.settings.pod_id)
            except Exception as exc:
                self._log(f"watchdog: terminate_pod({self.settings.pod_id}) failed "
                          f"({self._redact(f'{type(exc).__name__}: {exc}')}); retrying in "
                          f"{retry_s:g} s")
                self._halt.wait(retry_s)
                continue
            self._log(f"watchdog: terminate_pod({self.settings.pod_id}) accepted")
            # RunPod now kills the container; should it still live, ask again.
            self._halt.wait(RETERMINATE_S)

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "***") if self._api_key else text

    def _import_runpod(self) -> Any:
        # In the thread: the SDK takes seconds to import and the command need not wait.
        try:
            import runpod
        except ImportError as exc:
            self._log(f"WARNING: cannot import runpod ({exc}): the watchdog could not "
                      "terminate this pod")
            return None
        return runpod


# -- the launcher -----------------------------------------------------------------------------
class Launcher:
    """Runs the pod's command once, records its exit on the volume, then idles."""

    def __init__(self, command: list[str], settings: PodSettings,
                 environ: Mapping[str, str]) -> None:
        self.command = command
        self.settings = settings
        self.environ = environ
        self.child: subprocess.Popen[bytes] | None = None
        self.signalled: int | None = None
        self._idle = threading.Event()
        self._killed_by: str | None = None
        self._lock = threading.Lock()
        self.watchdog = Watchdog(settings, environ, self._stop_child)

    def run(self) -> int:
        """The launcher's life; returns its exit status (only reached when signalled)."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._forward)
        try:
            if os.path.exists(self.settings.exit_path):
                self.watchdog.start()
                _log(f"{self.settings.exit_path} exists ({self._read_exit()}): the command "
                     "already ran in this pod; not running it again")
            else:
                code = self._run_child()
                if self.signalled is not None:
                    _log(f"the command ended ({code}) after {signal.Signals(self.signalled).name}"
                         "; no exit record (it did not finish: a restart runs it again)")
                    return 128 + self.signalled
                self._write_exit(code)
            _log("idling until the pod is terminated")
            while not self._idle.wait(3600):
                pass
            return 0 if self.signalled is None else 128 + self.signalled
        finally:
            self.watchdog.halt()

    def _run_child(self) -> int:
        _log(f"running: {' '.join(self.command[:3])} ...")
        # Started before the watchdog thread: the fork happens with no other thread alive
        # (preexec_fn is only safe then).
        try:
            self.child = subprocess.Popen(self.command, start_new_session=True,
                                          preexec_fn=_die_with_parent())
        except OSError as exc:
            _log(f"cannot start the command: {exc}")
            self.watchdog.start()
            return 127  # the shell's "command not found"
        self.watchdog.start()
        code = self.child.wait()
        return code if code >= 0 else 128 - code

    def _write_exit(self, code: int) -> None:
        record: dict[str, Any] = {"exit_code": code, "finished_at": time.time()}
        if self._killed_by is not None:
            record["killed_by"] = f"watchdog: {self._killed_by}"
        try:
            write_json_atomically(self.settings.exit_path, record)
        except OSError as exc:
            # Still idle (never exit by ourselves): the orchestrator's max runtime, the
            # watchdog or the reaper ends the pod.
            _log(f"command exited with {code}; cannot record it in {self.settings.exit_path}: "
                 f"{exc}")
            return
        _log(f"command exited with {code}; recorded in {self.settings.exit_path}")

    def _read_exit(self) -> str:
        try:
            with open(self.settings.exit_path, encoding="utf-8") as handle:
                return f"exit code {json.load(handle).get('exit_code')}"
        except (OSError, ValueError, AttributeError):
            return "unreadable"

    def _forward(self, signum: int, _frame: Any) -> None:
        self.signalled = signum
        child = self.child
        if child is not None and child.poll() is None:
            _log(f"{signal.Signals(signum).name}: forwarding it to the command")
            _signal_group(child, signum)
        self._idle.set()

    def _stop_child(self, reason: str) -> None:
        """The watchdog's first act: SIGTERM the command's group, SIGKILL after the grace."""
        with self._lock:
            self._killed_by = reason
            child = self.child
        if child is None or child.poll() is not None:
            return
        _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + CHILD_GRACE_S
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if child.poll() is None:
            _log(f"the command outlived {CHILD_GRACE_S:g} s after SIGTERM: SIGKILL")
            _signal_group(child, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a ``preexec_fn`` making the child get SIGKILL when the launcher dies: the
    child has its own session, so a kill -9 of the launcher (or of its process group, as a
    local stand-in for a pod does) must not leave training running without it. None
    elsewhere (a container's end kills every process anyway)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the child
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(128 + signal.SIGKILL)

    return preexec


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except ProcessLookupError:
        pass


def main(argv: list[str] | None = None) -> int:
    """``python -m tradecore_lib.pod -- CMD...``; 2 on a usage or environment error."""
    args = sys.argv[1:] if argv is None else argv
    command = args[1:] if args[:1] == ["--"] else args
    if not command:
        _log("usage: python -m tradecore_lib.pod -- COMMAND [ARGS...]")
        return 2
    try:
        settings = PodSettings.from_env(os.environ)
    except PodConfigError as exc:
        _log(f"cannot start: {exc}")
        return 2
    return Launcher(command, settings, os.environ).run()


if __name__ == "__main__":
    sys.exit(main())
