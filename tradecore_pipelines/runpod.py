"""``PipesRunPodClient``: run a command in a RunPod GPU pod through Dagster Pipes, and never
leave a pod billing.

How the pieces meet (the pod side is :mod:`tradecore_lib.pod`)::

    orchestrator (this client)                 network volume (S3 API = files in the pod)
    context.json  --put_object---------------> tradecore/pipes/<random>/context.json
    heartbeat     --put_object, every poll---> tradecore/heartbeats/<pod>.json
    create pod (env: Pipes bootstrap, TRADECORE_POD_*); the pod runs
        python -m tradecore_lib.pod -- CMD   (reads context, writes messages as files)
    PipesS3MessageReader <--get_object-------- <prefix>/<n>.json (logs, stdio, the result)
    exit code     <--get_object--------------- tradecore/pods/<pod>/exit.json
    terminate pod (finally, every ending)

The pod reads and writes only its mounted volume, so no S3 secret enters its env (RunPod
shows a pod's env in its console); the orchestrator reaches the same store through the
volume's S3 API (any S3-compatible store in tests: a moto server linked to the fake's folder).

Every ending terminates the pod: success, the command failing, a pod that never starts,
the runtime limit, a cancelled run (Dagster raises ``DagsterExecutionInterruptedError`` in
the step), a spot pod preempted (terminated, then relaunched), and any error of the client
itself (``finally``). When the orchestrator itself dies, two guards remain: the pod's own
watchdog terminates it once the heartbeat is older than ``heartbeat_limit_s`` (or past its
deadline), and the ``runpod_reaper`` sensor terminates any ``tradecore-`` pod whose heartbeat
is that old.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError
from dagster_aws.pipes import PipesS3ContextInjector, PipesS3MessageReader
from dagster_aws.s3 import S3Resource
from pydantic import Field

from tradecore_lib.errors import ConfigError
from tradecore_lib.paths import config_dir
from tradecore_lib.runpod import (
    NoCapacity,
    PodSpec,
    RunPodApi,
    RunPodError,
    RunPodRequestError,
    hourly_price,
    is_running,
)
from tradecore_lib.train.gpu import THERMAL_STOP_EXIT_CODE

POD_PREFIX = "tradecore-"
HEARTBEATS = "tradecore/heartbeats"


class PodFailure(dg.Failure):
    """The pod's work failed or could not run (the message says which and where)."""


@dataclass
class Attempt:
    """One pod launched for a run: what it was and how it ended."""

    number: int
    pod_id: str | None = None
    name: str = ""
    gpu_type_id: str | None = None
    interruptible: bool = False
    cost_per_hr: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    outcome: str = "launching"  # succeeded | failed | preempted | ...
    refusals: list[str] = field(default_factory=list)

    @property
    def pod_seconds(self) -> float:
        if self.started_at is None:
            return 0.0
        return max(0.0, (self.ended_at or time.time()) - self.started_at)


class PipesRunPodClient(dg.ConfigurableResource, dg.PipesClient):
    """Runs a command in a RunPod GPU pod through Dagster Pipes (logs, progress and results
    stream into the run), on the official ``runpod`` SDK and dagster-aws's S3 Pipes plumbing.

    The deployment's settings are here; what a pod is (image, GPU types, spot or on-demand,
    cost guards) is a :class:`~tradecore_lib.runpod.PodSpec` given to :meth:`run`.
    """

    api_key: str | None = Field(default=None, description="RunPod API key; set through "
                                "EnvVar('RUNPOD_API_KEY'), never in plain config.")
    network_volume_id: str | None = Field(default=None, description="RunPod network volume "
                                          "holding the run's data, checkpoints and Pipes "
                                          "messages; its id is also its S3 bucket.")
    volume_s3: S3Resource = Field(default_factory=S3Resource, description="The volume's S3 API "
                                  "(endpoint https://s3api-<datacenter>.runpod.io/, region = the "
                                  "data centre id; keys from the RunPod console > Settings > S3 "
                                  "API Keys through EnvVar).")
    poll_interval_s: float = Field(default=15.0, gt=0, description="Seconds between two looks "
                                   "at the pod (and heartbeat refreshes).")
    heartbeat_limit_s: float = Field(default=600.0, gt=0, description="A pod whose orchestrator "
                                     "heartbeat is older than this terminates itself, and the "
                                     "reaper terminates it.")
    pipes_interval_s: float = Field(default=10.0, gt=0, description="Seconds between two "
                                    "uploads of the pod's Pipes messages (and reads of them).")
    closed_grace_s: float = Field(default=120.0, gt=0, description="Seconds to wait, after the "
                                  "command ended, for its last Pipes messages.")
    deadline_grace_s: float = Field(default=300.0, ge=0, description="The pod stops itself this "
                                    "long after its max_runtime_s (if nothing stopped it).")
    api_attempts: int = Field(default=4, ge=1, description="Tries of one RunPod API call on an "
                                                           "outage (5xx, timeout).")
    api_backoff_s: float = Field(default=2.0, ge=0, description="First pause between two tries "
                                 "of an API call; doubles each time.")

    # -- the deployment's pieces -----------------------------------------------------------
    def api(self) -> RunPodApi:
        """The RunPod API with this deployment's key (ConfigError naming RUNPOD_API_KEY if none)."""
        return RunPodApi(self.api_key or "", attempts=self.api_attempts,
                         backoff_s=self.api_backoff_s)

    def volume(self) -> str:
        if not self.network_volume_id:
            raise ConfigError("RunPod compute needs a network volume: set "
                              "TRADECORE_RUNPOD_VOLUME_ID (RunPod console > Storage) and its S3 "
                              "API endpoint TRADECORE_RUNPOD_S3_ENDPOINT_URL")
        return self.network_volume_id

    def s3_client(self) -> Any:
        """A boto3 S3 client of the volume's S3 API (the bucket is the volume id)."""
        return self.volume_s3.get_client()

    def check_ready(self) -> None:
        """Fail at once, with what to set, when RunPod compute cannot work here."""
        self.api()
        self.volume()

    # -- PipesClient ----------------------------------------------------------------------
    def run(self, *, context: dg.AssetExecutionContext | dg.OpExecutionContext,
            command: Sequence[str], spec: PodSpec, env: Mapping[str, str] | None = None,
            extras: dict[str, Any] | None = None) -> dg.PipesClientCompletedInvocation:
        """Run ``command`` in a pod of ``spec`` and return the Pipes results of the attempt that
        finished (a preempted spot pod is relaunched; each attempt is its own Pipes session).

        ``command`` runs under the pod launcher (``python -m tradecore_lib.pod -- ...``); paths
        in it that start with ``spec.volume_mount_path`` are on the network volume.

        Raises:
            PodFailure: the command failed in the pod, the pod never started, the runtime
                limit passed, or the preemptions ran out (metadata names the pods).
            ConfigError: no API key or volume.
            NoCapacity: no GPU type of the spec had a free machine (a later retry can help).
        """
        api = self.api()
        volume = self.volume()
        s3 = self.s3_client()
        data_center = api.volume_data_center(volume)
        attempts: list[Attempt] = []
        preemptions = 0
        started = time.time()
        while True:
            interruptible = spec.interruptible and preemptions <= spec.max_preemptions
            attempt = Attempt(number=len(attempts) + 1, interruptible=interruptible)
            attempts.append(attempt)
            invocation = self._run_attempt(context, api, s3, volume, data_center, spec, command,
                                           dict(env or {}), extras, attempt, started)
            if invocation is not None:
                return dg.PipesClientCompletedInvocation(
                    invocation, metadata=_attempts_metadata(attempts, preemptions))
            preemptions += 1
            context.log.warning(f"pod {attempt.pod_id} ({attempt.gpu_type_id}) was preempted "
                                f"({preemptions} so far)")
            if preemptions > spec.max_preemptions and not (
                    spec.on_demand_fallback and preemptions == spec.max_preemptions + 1):
                raise PodFailure(
                    description=f"the spot pod was preempted {preemptions} times "
                    f"(max_preemptions {spec.max_preemptions}, on_demand_fallback "
                    f"{spec.on_demand_fallback}); the checkpoint on the volume is kept, a "
                    "re-run resumes it",
                    metadata=_attempts_metadata(attempts, preemptions))

    def _run_attempt(self, context: Any, api: RunPodApi, s3: Any, volume: str,
                     data_center: str | None, spec: PodSpec, command: Sequence[str],
                     env: dict[str, str], extras: dict[str, Any] | None, attempt: Attempt,
                     started: float) -> Any:
        """One pod: its Pipes session if it finished, None if it was preempted."""
        step = getattr(context, "op_execution_context", context).op.name
        attempt.name = pod_name(context.run.run_id, step, attempt.number)
        heartbeat_key = f"{HEARTBEATS}/{attempt.name}.json"
        exit_key = f"tradecore/pods/{attempt.name}/exit.json"
        mount = spec.volume_mount_path
        with dg.open_pipes_session(
            context=context, extras=extras,
            context_injector=PipesS3ContextInjector(bucket=volume, client=s3,
                                                    key_prefix="tradecore/pipes/"),
            message_reader=PipesS3MessageReader(bucket=volume, client=s3,
                                                interval=self.pipes_interval_s,
                                                include_stdio_in_messages=True),
        ) as session:
            pod_env = {
                **spec.env, **env, **session.get_bootstrap_env_vars(),
                "TRADECORE_POD_VOLUME": mount,
                "TRADECORE_POD_NAME": attempt.name,
                "TRADECORE_HEARTBEAT_KEY": heartbeat_key,
                "TRADECORE_HEARTBEAT_LIMIT_S": str(self.heartbeat_limit_s),
                "TRADECORE_POD_DEADLINE": str(started + spec.max_runtime_s
                                              + self.deadline_grace_s),
                "TRADECORE_EXIT_KEY": exit_key,
                "TRADECORE_PIPES_INTERVAL_S": str(self.pipes_interval_s),
                **({"RUNPOD_API_BASE_URL": os.environ["RUNPOD_API_BASE_URL"]}
                   if os.environ.get("RUNPOD_API_BASE_URL") else {}),
            }
            docker_args = shlex.join(["python", "-m", "tradecore_lib.pod", "--", *command])
            try:
                write_heartbeat(s3, volume, heartbeat_key, context.run.run_id, attempt.name)
                self._create(context, api, spec, attempt, volume, data_center, docker_args,
                             pod_env)
                session.report_launched({"extras": {"runpod_pod_id": attempt.pod_id}})
                outcome = self._watch(context, api, s3, volume, spec, attempt, session,
                                      heartbeat_key, exit_key, started)
            except DagsterExecutionInterruptedError:
                attempt.outcome = "cancelled"
                context.log.warning(f"run cancelled: terminating pod {attempt.pod_id}")
                raise
            except BaseException:
                if attempt.outcome == "launching":
                    attempt.outcome = "failed"
                raise
            finally:
                attempt.ended_at = time.time()
                if attempt.pod_id is not None:
                    self._terminate(context, api, attempt.pod_id)
                _delete(s3, volume, heartbeat_key)
            if outcome == "preempted":
                return None
            return session

    def _create(self, context: Any, api: RunPodApi, spec: PodSpec, attempt: Attempt,
                volume: str, data_center: str | None, docker_args: str,
                env: Mapping[str, str]) -> None:
        """Create the pod on the first GPU type of the spec that has capacity at its price."""
        running = [p for p in api.pods() if str(p.get("name", "")).startswith(POD_PREFIX)
                   and p.get("desiredStatus") == "RUNNING"]
        if len(running) >= spec.max_pods:
            raise PodFailure(description=f"{len(running)} TradeCore pods are already running "
                             f"({', '.join(str(p['id']) for p in running)}); max_pods is "
                             f"{spec.max_pods}. Wait for them, or let runpod_reaper clean up "
                             "pods whose orchestrator died.")
        for gpu_type_id in spec.gpu_type_ids:
            price = hourly_price(api.gpu_type(gpu_type_id), spec, attempt.interruptible)
            if price is None or price > spec.max_hourly_price:
                attempt.refusals.append(f"{gpu_type_id}: price {price} USD/h above "
                                        f"max_hourly_price {spec.max_hourly_price}")
                context.log.info(f"skipping {gpu_type_id}: {attempt.refusals[-1]}")
                continue
            kwargs = dict(name=attempt.name, image=spec.image, gpu_type_id=gpu_type_id,
                          gpu_count=spec.gpu_count, cloud_type=spec.cloud_type,
                          network_volume_id=volume, data_center_id=data_center,
                          volume_mount_path=spec.volume_mount_path,
                          container_disk_in_gb=spec.container_disk_in_gb,
                          min_vcpu_count=spec.min_vcpu_count,
                          min_memory_in_gb=spec.min_memory_in_gb, docker_args=docker_args,
                          env=env)
            try:
                if attempt.interruptible:
                    pod = api.create_interruptible(bid_per_gpu=price / spec.gpu_count, **kwargs)
                else:
                    pod = api.create_on_demand(**kwargs)
            except NoCapacity as exc:
                attempt.refusals.append(f"{gpu_type_id}: {exc}")
                context.log.warning(f"no capacity for {gpu_type_id}; trying the next GPU type")
                continue
            attempt.pod_id, attempt.gpu_type_id = str(pod["id"]), gpu_type_id
            attempt.started_at = time.time()
            context.log.info(f"created {'spot' if attempt.interruptible else 'on-demand'} pod "
                             f"{attempt.pod_id} ({attempt.name}) on {gpu_type_id}, "
                             f"{spec.image}, about {price:.3f} USD/h")
            return
        raise NoCapacity("no GPU type of the pod spec could be rented: "
                         + "; ".join(attempt.refusals))

    def _watch(self, context: Any, api: RunPodApi, s3: Any, volume: str, spec: PodSpec,
               attempt: Attempt, session: Any, heartbeat_key: str, exit_key: str,
               started: float) -> str:
        """Poll the pod until its command ends: ``"succeeded"`` or ``"preempted"``; raises
        :class:`PodFailure` for every other ending."""
        created = time.monotonic()
        running = False
        while True:
            write_heartbeat(s3, volume, heartbeat_key, context.run.run_id, attempt.name)
            pod = api.pod(attempt.pod_id)
            if pod is None:
                return self._lost(attempt, "the pod is gone (terminated outside TradeCore)")
            if not running and is_running(pod):
                running = True
                attempt.cost_per_hr = _float(pod.get("costPerHr"))
                context.log.info(f"pod {attempt.pod_id} is running "
                                 f"({(pod.get('machine') or {}).get('gpuDisplayName', '?')}, "
                                 f"{attempt.cost_per_hr} USD/h)")
                if attempt.cost_per_hr is not None and \
                        attempt.cost_per_hr > spec.max_hourly_price:
                    attempt.outcome = "over_price"
                    raise PodFailure(description=f"pod {attempt.pod_id} is billed "
                                     f"{attempt.cost_per_hr} USD/h, above max_hourly_price "
                                     f"{spec.max_hourly_price}; terminated")
            if running and pod.get("desiredStatus") != "RUNNING":
                return self._lost(attempt, f"the pod stopped ({pod.get('desiredStatus')})")
            finished = _read_json(s3, volume, exit_key)
            if finished is not None:
                return self._finished(context, attempt, session, int(finished["exit_code"]))
            if not running and time.monotonic() - created > spec.start_timeout_s:
                attempt.outcome = "start_timeout"
                raise PodFailure(description=f"pod {attempt.pod_id} ({attempt.gpu_type_id}) did "
                                 f"not start within start_timeout_s={spec.start_timeout_s:g} s; "
                                 "terminated")
            if time.time() - started > spec.max_runtime_s:
                attempt.outcome = "max_runtime"
                raise PodFailure(description=f"the run exceeded max_runtime_s="
                                 f"{spec.max_runtime_s:g} s on pod {attempt.pod_id}; terminated "
                                 "(its last checkpoint on the volume is kept: a re-run resumes)")
            time.sleep(self.poll_interval_s)

    def _lost(self, attempt: Attempt, why: str) -> str:
        if attempt.interruptible:
            attempt.outcome = "preempted"
            return "preempted"
        attempt.outcome = "lost"
        raise PodFailure(description=f"on-demand pod {attempt.pod_id}: {why} before its "
                         "command finished")

    def _finished(self, context: Any, attempt: Attempt, session: Any, exit_code: int) -> str:
        """The command ended with ``exit_code``: wait for its last messages, then judge it."""
        deadline = time.monotonic() + self.closed_grace_s
        while not session.message_handler.received_closed_message and \
                time.monotonic() < deadline:
            time.sleep(min(1.0, self.pipes_interval_s / 4))
        if exit_code == 0:
            if not session.message_handler.received_closed_message:
                context.log.warning("the command succeeded but its last Pipes messages did not "
                                    f"arrive within {self.closed_grace_s:g} s")
            attempt.outcome = "succeeded"
            return "succeeded"
        attempt.outcome = "stopped_by_thermal_guard" if exit_code == THERMAL_STOP_EXIT_CODE \
            else "failed"
        raise PodFailure(description=(
            f"the command in pod {attempt.pod_id} was stopped by the thermal guard (exit code "
            f"{exit_code}); its checkpoint is on the volume and a re-run resumes it"
            if exit_code == THERMAL_STOP_EXIT_CODE else
            f"the command in pod {attempt.pod_id} failed with exit code {exit_code} (its "
            "stderr and exception are in this step's logs above)"))

    def _terminate(self, context: Any, api: RunPodApi, pod_id: str) -> None:
        """Terminate, and check it is gone; never raises (the reaper is the last resort)."""
        try:
            api.terminate(pod_id)
            context.log.info(f"terminated pod {pod_id}")
        except RunPodError as exc:
            context.log.error(f"could not terminate pod {pod_id}: {exc}; the pod's watchdog "
                              "and the runpod_reaper sensor will")


def pod_name(run_id: str, step: str, attempt: int) -> str:
    """``tradecore-<8 of run id>-<step>-a<attempt>``: the prefix the reaper looks for."""
    step = re.sub(r"[^a-z0-9-]+", "-", step.lower()).strip("-")[:40]
    return f"{POD_PREFIX}{run_id[:8]}-{step}-a{attempt}"


def write_heartbeat(s3: Any, bucket: str, key: str, run_id: str, pod: str) -> None:
    """The orchestrator's heartbeat of ``pod``: ``{"ts": epoch seconds, ...}``."""
    body = json.dumps({"ts": time.time(), "run_id": run_id, "pod": pod}).encode()
    s3.put_object(Bucket=bucket, Key=key, Body=body)


def heartbeat_age_s(s3: Any, bucket: str, pod: str, now: float) -> float | None:
    """Seconds since ``pod``'s heartbeat (None when it has none)."""
    beat = _read_json(s3, bucket, f"{HEARTBEATS}/{pod}.json")
    return None if beat is None else now - float(beat["ts"])


def _read_json(s3: Any, bucket: str, key: str) -> dict[str, Any] | None:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    return json.loads(body)


def _delete(s3: Any, bucket: str, key: str) -> None:
    try:
        s3.delete_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - a leftover heartbeat is harmless once the pod is gone
        pass


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _attempts_metadata(attempts: list[Attempt], preemptions: int) -> dict[str, Any]:
    cost = sum((a.cost_per_hr or 0.0) * a.pod_seconds / 3600 for a in attempts)
    return {
        "compute": "runpod",
        "runpod_attempts": len(attempts),
        "runpod_preemptions": preemptions,
        "runpod_pods": dg.MetadataValue.json([
            {"attempt": a.number, "pod_id": a.pod_id, "gpu_type": a.gpu_type_id,
             "spot": a.interruptible, "usd_per_hour": a.cost_per_hr,
             "seconds": round(a.pod_seconds, 1), "outcome": a.outcome,
             "refusals": a.refusals} for a in attempts]),
        "runpod_estimated_cost_usd": round(cost, 4),
    }


# -- staging the configs the pod resolves presets from ----------------------------------------
def config_files() -> Iterator[tuple[str, bytes]]:
    """The orchestrator's ``configs/`` folder as (relative path, bytes), sorted."""
    root = config_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        yield path.relative_to(root).as_posix(), path.read_bytes()


def stage_configs(s3: Any, bucket: str) -> str:
    """Copy ``configs/`` to ``tradecore/configs/<digest>/`` on the volume (once per content);
    returns that volume-relative folder."""
    files = list(config_files())
    digest = hashlib.sha256(b"".join(p.encode() + b"\0" + data for p, data in files)).hexdigest()
    folder = f"tradecore/configs/{digest[:12]}"
    if _read_json(s3, bucket, f"{folder}/.complete") is None:
        for rel, data in files:
            s3.put_object(Bucket=bucket, Key=f"{folder}/{rel}", Body=data)
        s3.put_object(Bucket=bucket, Key=f"{folder}/.complete", Body=b"{}")
    return folder


# -- the reaper -------------------------------------------------------------------------------
def reap(api: RunPodApi, s3: Any, bucket: str, limit_s: float, now: float
         ) -> list[tuple[str, str, str]]:
    """Terminate every ``tradecore-`` pod whose heartbeat is older than ``limit_s`` (or has
    none and was created longer ago than that); returns (pod id, name, why) of each."""
    reaped = []
    for pod in api.pods():
        name = str(pod.get("name") or "")
        if not name.startswith(POD_PREFIX):
            continue
        age = heartbeat_age_s(s3, bucket, name, now)
        if age is None:
            uptime = pod.get("uptimeSeconds")
            if uptime is None or float(uptime) <= limit_s:
                continue
            why = f"no heartbeat, up {float(uptime):.0f} s"
        elif age > limit_s:
            why = f"heartbeat {age:.0f} s old"
        else:
            continue
        api.terminate(str(pod["id"]))
        reaped.append((str(pod["id"]), name, why))
    return reaped


def build_runpod_reaper(minimum_interval_seconds: int = 120,
                        default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING
                        ) -> dg.SensorDefinition:
    """The ``runpod_reaper`` sensor: terminates TradeCore pods whose orchestrator is gone (a
    run left STARTED by a dead worker does not keep its pod alive: only the heartbeat counts)."""

    @dg.sensor(name="runpod_reaper", minimum_interval_seconds=minimum_interval_seconds,
               default_status=default_status,
               description="Terminates RunPod pods named tradecore-* whose orchestrator "
               "heartbeat on the network volume is older than the client's heartbeat_limit_s. "
               "Skips when RunPod compute is not configured (no RUNPOD_API_KEY).")
    def runpod_reaper(context: dg.SensorEvaluationContext, runpod: PipesRunPodClient
                      ) -> dg.SkipReason:
        if not runpod.api_key or not runpod.network_volume_id:
            return dg.SkipReason("RunPod compute is not configured (RUNPOD_API_KEY / "
                                 "TRADECORE_RUNPOD_VOLUME_ID unset)")
        try:
            reaped = reap(runpod.api(), runpod.s3_client(), runpod.network_volume_id,
                          runpod.heartbeat_limit_s, time.time())
        except (RunPodError, RunPodRequestError) as exc:
            return dg.SkipReason(f"RunPod API: {exc}")
        for pod_id, name, why in reaped:
            context.log.warning(f"terminated orphaned pod {pod_id} ({name}): {why}")
        return dg.SkipReason(f"terminated {len(reaped)} orphaned pod(s)" if reaped
                             else "no orphaned TradeCore pod")

    return runpod_reaper


def default_runpod_client() -> PipesRunPodClient:
    """The deployment's client: key and S3 keys through EnvVar (hidden in the UI), volume and
    endpoint from ``TRADECORE_RUNPOD_VOLUME_ID`` / ``TRADECORE_RUNPOD_S3_ENDPOINT_URL``."""
    env = os.environ

    def secret(name: str) -> Any:
        return dg.EnvVar(name) if env.get(name) else None

    return PipesRunPodClient(
        api_key=secret("RUNPOD_API_KEY"),
        network_volume_id=env.get("TRADECORE_RUNPOD_VOLUME_ID") or None,
        volume_s3=S3Resource(
            endpoint_url=env.get("TRADECORE_RUNPOD_S3_ENDPOINT_URL") or None,
            region_name=env.get("TRADECORE_RUNPOD_S3_REGION") or None,
            aws_access_key_id=secret("TRADECORE_RUNPOD_S3_ACCESS_KEY_ID"),
            aws_secret_access_key=secret("TRADECORE_RUNPOD_S3_SECRET_ACCESS_KEY"),
        ),
    )
