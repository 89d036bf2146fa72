"""RunPod, in one place: the pod specification, its presets, and the API calls TradeCore makes.

Every RunPod quirk lives here (the freqtrade habit: one exchange, one module):

* The official ``runpod`` SDK (1.12) builds its GraphQL by string interpolation without
  escaping. :func:`graphql_text` encodes every string value before it reaches the SDK (GraphQL
  string escapes are JSON's), env names are checked, and enum values are refused unless they
  are one of RunPod's: a query is never sent broken, and a quote in an env value arrives as
  that quote.
* ``runpod.create_pod`` makes on-demand pods only; an interruptible (spot) pod is the
  ``podRentInterruptable`` mutation, built here with the same encoding and sent through the
  SDK's own GraphQL runner (:func:`runpod.api.graphql.run_graphql_query`).
* The SDK reads no API key from the environment and takes none on ``create_pod`` or
  ``terminate_pod``: :class:`RunPodApi` sets ``runpod.api_key`` for each call, under a lock.
  ``RUNPOD_API_BASE_URL`` (read by the SDK on each call) points it at another API, e.g. a
  loopback fake in tests.
* Errors are sorted by whether a retry can help: a capacity refusal (:class:`NoCapacity`,
  try the next GPU type), an outage (HTTP 5xx answered with HTML, which the SDK meets as a
  JSON decoding error; a dropped connection: :class:`RunPodUnavailable`, retried a bounded
  number of times), a refused key or a malformed request (:class:`RunPodRequestError`,
  permanent).

Secrets: the API key is held by :class:`RunPodApi` only and never appears in a message; the
SDK's ``QueryError`` carries the whole query (env values included), so it is never chained.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

from pydantic import Field, model_validator

from tradecore_lib.config import ConfigModel, read_json_preset, validate
from tradecore_lib.errors import ConfigError, TradeCoreError, TransientError
from tradecore_lib.train.config import deep_merge

CloudType = Literal["ALL", "SECURE", "COMMUNITY"]
# What RunPod answers when no machine with the requested GPU is free.
_CAPACITY_MESSAGES = ("no longer any instances available", "not enough free gpus",
                      "no instances available", "could not find any pods with required specs")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
T = TypeVar("T")


class RunPodError(TradeCoreError):
    """A RunPod request failed (the message names the call, never the key or the query)."""


class RunPodRequestError(RunPodError):
    """RunPod refused the request (a bad key, an unknown GPU type, a malformed value): permanent."""


class NoCapacity(RunPodError):
    """No machine with the requested GPU type is free right now (try another type, or later)."""

    retryable = True


class RunPodUnavailable(TransientError, RunPodError):
    """RunPod's API did not answer (5xx, timeout, dropped connection): a retry can help."""


class PodConfigError(ConfigError):
    """A pod specification is invalid."""


# -- the pod specification -------------------------------------------------------------------
class PodSpec(ConfigModel):
    """One training pod on RunPod and the guards that cap what it can cost.

    Presets live in ``configs/runpod/<name>.json``; the launchpad overrides any field.
    """

    image: str = Field(description="Container image holding TradeCore (see docker/runpod."
                       "Dockerfile), e.g. ghcr.io/you/tradecore-runpod:<commit>.")
    gpu_type_ids: list[str] = Field(min_length=1, description="RunPod GPU type ids in order of "
                                    "preference; the next is tried when one has no capacity or "
                                    "costs more than max_hourly_price.")
    gpu_count: int = Field(default=1, ge=1, le=8, description="GPUs per pod.")
    cloud_type: CloudType = Field(default="SECURE", description="SECURE (RunPod's data "
                                  "centres), COMMUNITY (hosts of the community cloud) or ALL.")
    interruptible: bool = Field(default=False, description="Rent a spot pod (cheaper; RunPod "
                                "may stop it at any time: the client relaunches and training "
                                "resumes from its last checkpoint on the volume).")
    bid_per_gpu: float | None = Field(default=None, gt=0, description="Spot bid in USD per GPU "
                                      "hour; null bids the GPU type's minimum bid price.")
    max_preemptions: int = Field(default=3, ge=0, description="Relaunches after a spot pod is "
                                 "preempted before giving up (or falling back to on-demand).")
    on_demand_fallback: bool = Field(default=False, description="After max_preemptions, relaunch "
                                     "once more as an on-demand pod instead of failing.")
    container_disk_in_gb: int = Field(default=20, ge=5, description="Container disk (GB): the "
                                      "image's scratch space; the data lives on the volume.")
    min_vcpu_count: int = Field(default=4, ge=1, description="Minimum vCPUs of the machine (the "
                                "PPO rollouts run on the CPU).")
    min_memory_in_gb: int = Field(default=16, ge=1, description="Minimum RAM of the machine (GB).")
    volume_mount_path: str = Field(default="/workspace", pattern=r"^/[A-Za-z0-9._/-]+$",
                                   description="Where the network volume is mounted in the pod.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables of "
                                "the pod (never secrets: RunPod shows a pod's env in its console).")
    start_timeout_s: float = Field(default=900.0, gt=0, description="Seconds a pod may take to "
                                   "start (image pull included) before it is terminated.")
    max_runtime_s: float = Field(default=6 * 3600.0, gt=0, description="Seconds a pod may run "
                                 "in all before it is terminated (the pod also stops itself "
                                 "shortly after this deadline).")
    max_hourly_price: float = Field(default=1.5, gt=0, description="USD per hour the pod may cost "
                                    "(all its GPUs); dearer GPU types are skipped and a pod "
                                    "billed above it is terminated at once.")
    max_pods: int = Field(default=1, ge=1, description="TradeCore pods that may run at once in "
                          "the account; a launch beyond it is refused.")

    @model_validator(mode="after")
    def _check(self) -> PodSpec:
        for name in self.env:
            if not _ENV_NAME.match(name):
                raise ValueError(f"env name {name!r} is not a valid variable name "
                                 "(letters, digits, underscores; not starting with a digit)")
        if self.bid_per_gpu is not None and self.bid_per_gpu * self.gpu_count > \
                self.max_hourly_price:
            raise ValueError(f"bid_per_gpu {self.bid_per_gpu} x gpu_count {self.gpu_count} is "
                             f"above max_hourly_price {self.max_hourly_price}")
        return self


def load_pod_spec(preset: str, overrides: Mapping[str, Any] | None = None) -> PodSpec:
    """Preset ``configs/runpod/<preset>.json`` with ``overrides`` deep-merged over it.

    Raises:
        PodConfigError: naming the preset, the field and what is allowed.
    """
    raw = read_json_preset("runpod", preset, "RunPod pod preset", error=PodConfigError)
    where = f"RunPod pod preset {preset!r}" + (" with overrides" if overrides else "")
    return validate(PodSpec, deep_merge(raw, overrides or {}), where,
                    error=PodConfigError)


# -- encoding for RunPod's interpolated GraphQL ------------------------------------------------
def graphql_text(value: str) -> str:
    """The characters of a GraphQL string literal meaning ``value`` (without the quotes), for
    the SDK's ``"{value}"`` interpolation: quotes, backslashes and control characters escaped.

    GraphQL's string escapes (``\\" \\\\ \\n \\uXXXX``...) are JSON's, so JSON's encoder
    writes them; non-ASCII characters stay as they are (valid GraphQL source characters).
    """
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return json.dumps(value, ensure_ascii=False)[1:-1]


def graphql_value(value: Any) -> str:
    """A GraphQL input value literal for ``value`` (str, bool, int, float, None, lists)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not (value == value and abs(value) != float("inf")):
            raise ValueError(f"cannot send {value!r} to RunPod")
        return repr(value)
    if isinstance(value, str):
        return f'"{graphql_text(value)}"'
    if isinstance(value, Sequence):
        return "[" + ", ".join(graphql_value(v) for v in value) + "]"
    raise TypeError(f"no GraphQL literal for {type(value).__name__}")


def env_items(env: Mapping[str, str]) -> str:
    """RunPod's ``env`` input: ``[{ key: "K", value: "V" }, ...]`` with encoded values."""
    for name in env:
        if not _ENV_NAME.match(name):
            raise PodConfigError(f"pod env name {name!r} is not a valid variable name")
    return "[" + ", ".join(f"{{ key: {graphql_value(k)}, value: {graphql_value(str(v))} }}"
                           for k, v in env.items()) + "]"


_POD_FIELDS = "id imageName env machineId costPerHr desiredStatus machine { podHostId }"


def interruptible_pod_mutation(*, name: str, image: str, gpu_type_id: str, gpu_count: int,
                               bid_per_gpu: float, cloud_type: str, network_volume_id: str,
                               data_center_id: str | None, volume_mount_path: str,
                               container_disk_in_gb: int, min_vcpu_count: int,
                               min_memory_in_gb: int, docker_args: str,
                               env: Mapping[str, str]) -> str:
    """The ``podRentInterruptable`` mutation (a spot pod), every value encoded."""
    if cloud_type not in ("ALL", "SECURE", "COMMUNITY"):
        raise PodConfigError(f"cloud_type {cloud_type!r} is not ALL, SECURE or COMMUNITY")
    fields = {
        "bidPerGpu": float(bid_per_gpu), "cloudType": None, "gpuCount": gpu_count,
        "volumeInGb": 0, "containerDiskInGb": container_disk_in_gb,
        "minVcpuCount": min_vcpu_count, "minMemoryInGb": min_memory_in_gb,
        "gpuTypeId": gpu_type_id, "name": name, "imageName": image, "dockerArgs": docker_args,
        "volumeMountPath": volume_mount_path, "networkVolumeId": network_volume_id,
        "dataCenterId": data_center_id, "startSsh": False, "supportPublicIp": False,
    }
    body = ", ".join(f"{key}: {cloud_type if key == 'cloudType' else graphql_value(value)}"
                     for key, value in fields.items())
    return (f"mutation {{ podRentInterruptable(input: {{ {body}, env: {env_items(env)} }}) "
            f"{{ {_POD_FIELDS} }} }}")


# -- the API ------------------------------------------------------------------------------------
class RunPodApi:
    """The RunPod calls TradeCore makes, through the official SDK, with one account key.

    Each call is retried on :class:`RunPodUnavailable` up to ``attempts`` times with a doubling
    pause from ``backoff_s``; other errors are raised at once.
    """

    _lock = threading.Lock()  # runpod.api_key is module-global in the SDK

    def __init__(self, api_key: str, *, attempts: int = 4, backoff_s: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not api_key:
            raise ConfigError("RunPod compute needs an API key: set RUNPOD_API_KEY (RunPod "
                              "console > Settings > API Keys) in the orchestrator's environment")
        self._api_key = api_key
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._sleep = sleep

    def __repr__(self) -> str:  # never the key
        return "RunPodApi(<key hidden>)"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                with self._lock:
                    import runpod

                    runpod.api_key = self._api_key
                    try:
                        return fn()
                    finally:
                        runpod.api_key = None
            except RunPodUnavailable:
                if attempt == self.attempts:
                    raise
            except Exception as exc:  # noqa: BLE001 - sorted into our three kinds below
                error = _classify(what, exc)
                if not isinstance(error, RunPodUnavailable) or attempt == self.attempts:
                    raise error from None
            self._sleep(delay)
            delay *= 2
        raise AssertionError("unreachable")

    def gpu_type(self, gpu_type_id: str) -> dict[str, Any]:
        """RunPod's record of a GPU type (prices per GPU hour by cloud, minimum spot bid)."""
        import runpod

        return self._call(f"get GPU type {gpu_type_id!r}", lambda: runpod.get_gpu(gpu_type_id))

    def create_on_demand(self, *, name: str, image: str, gpu_type_id: str, gpu_count: int,
                         cloud_type: str, network_volume_id: str, data_center_id: str | None,
                         volume_mount_path: str, container_disk_in_gb: int,
                         min_vcpu_count: int, min_memory_in_gb: int, docker_args: str,
                         env: Mapping[str, str]) -> dict[str, Any]:
        """An on-demand pod through ``runpod.create_pod`` (string values encoded first)."""
        import runpod

        env_items(env)  # refuse a bad name before anything is sent
        return self._call(f"create pod {name!r}", lambda: runpod.create_pod(
            name=graphql_text(name), image_name=graphql_text(image),
            gpu_type_id=graphql_text(gpu_type_id), gpu_count=gpu_count, cloud_type=cloud_type,
            support_public_ip=False, start_ssh=False,
            data_center_id=None if data_center_id is None else graphql_text(data_center_id),
            network_volume_id=graphql_text(network_volume_id),
            volume_mount_path=graphql_text(volume_mount_path),
            container_disk_in_gb=container_disk_in_gb, min_vcpu_count=min_vcpu_count,
            min_memory_in_gb=min_memory_in_gb, docker_args=graphql_text(docker_args),
            env={k: graphql_text(str(v)) for k, v in env.items()}))

    def create_interruptible(self, **kwargs: Any) -> dict[str, Any]:
        """A spot pod (``podRentInterruptable``); see :func:`interruptible_pod_mutation`."""
        from runpod.api.graphql import run_graphql_query

        query = interruptible_pod_mutation(**kwargs)
        return self._call(f"rent spot pod {kwargs['name']!r}",
                          lambda: run_graphql_query(query)["data"]["podRentInterruptable"])

    def volume_data_center(self, network_volume_id: str) -> str | None:
        """The data centre of a network volume (a pod using it must be there), None if unknown."""
        import runpod

        user = self._call("get the account's network volumes", runpod.get_user)
        for volume in user.get("networkVolumes") or []:
            if volume.get("id") == network_volume_id:
                return volume.get("dataCenterId")
        raise RunPodRequestError(f"network volume {network_volume_id!r} is not in this RunPod "
                                 "account (RunPod console > Storage)")

    def pod(self, pod_id: str) -> dict[str, Any] | None:
        """A pod's state (``desiredStatus``, ``runtime``, ``costPerHr``...), None once gone."""
        import runpod

        return self._call(f"get pod {pod_id}", lambda: runpod.get_pod(pod_id))

    def pods(self) -> list[dict[str, Any]]:
        """Every pod of the account."""
        import runpod

        return self._call("list pods", runpod.get_pods) or []

    def terminate(self, pod_id: str) -> None:
        """Terminate a pod (its container and disk are deleted; the network volume stays)."""
        import runpod

        self._call(f"terminate pod {pod_id}", lambda: runpod.terminate_pod(pod_id))


def _classify(what: str, exc: Exception) -> RunPodError:
    """One of our three kinds for an SDK failure, with a message free of key and query."""
    import requests
    from runpod import error as sdk

    if isinstance(exc, sdk.AuthenticationError):
        return RunPodRequestError(f"RunPod refused the API key ({what}): check RUNPOD_API_KEY")
    if isinstance(exc, sdk.QueryError):
        message = str(exc.args[0]) if exc.args else "query error"
        if any(text in message.lower() for text in _CAPACITY_MESSAGES):
            return NoCapacity(f"{what}: {message}")
        return RunPodRequestError(f"RunPod refused the request ({what}): {message}")
    if isinstance(exc, requests.exceptions.JSONDecodeError | requests.exceptions.ConnectionError
                  | requests.exceptions.Timeout):
        return RunPodUnavailable(f"RunPod's API did not answer ({what}): "
                                 f"{type(exc).__name__}")
    if isinstance(exc, ValueError):  # the SDK's own checks (an unknown GPU type id)
        return RunPodRequestError(f"{what}: {exc}")
    return RunPodError(f"{what}: {type(exc).__name__}: {exc}")


def is_running(pod: Mapping[str, Any] | None) -> bool:
    """Whether RunPod reports the pod's container as started (a ``runtime`` is present)."""
    return bool(pod) and pod.get("desiredStatus") == "RUNNING" and pod.get("runtime") is not None


def hourly_price(gpu: Mapping[str, Any], spec: PodSpec, interruptible: bool) -> float | None:
    """What a pod of ``spec`` on GPU type ``gpu`` costs per hour (USD, all its GPUs); None if
    RunPod lists no price for that cloud.

    A spot pod bids ``spec.bid_per_gpu``, else the cloud's spot price (RunPod's minimum bid
    there; ``lowestPrice.minimumBidPrice`` is the cheapest over all clouds, so it serves only
    ``ALL``)."""
    if interruptible and spec.bid_per_gpu is not None:
        return spec.bid_per_gpu * spec.gpu_count
    secure, community = (("secureSpotPrice", "communitySpotPrice") if interruptible
                         else ("securePrice", "communityPrice"))
    by_cloud = {"SECURE": [gpu.get(secure)], "COMMUNITY": [gpu.get(community)],
                "ALL": [gpu.get(secure), gpu.get(community)]}[spec.cloud_type]
    prices = [float(p) for p in by_cloud if p]
    if not prices and interruptible and spec.cloud_type == "ALL":
        prices = [float(p) for p in [(gpu.get("lowestPrice") or {}).get("minimumBidPrice")] if p]
    return min(prices) * spec.gpu_count if prices else None
