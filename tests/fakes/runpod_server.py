"""A loopback RunPod API: the GraphQL the ``runpod`` SDK sends, pods that really run, faults.

:class:`FakeRunPod` serves ``POST /graphql`` on 127.0.0.1 (point ``RUNPOD_API_BASE_URL`` at
:attr:`FakeRunPod.url`), independently of the client under test:

- **GraphQL, parsed for real.** Every query goes through ``graphql-core``'s parser, so a query
  broken by unescaped interpolation gets the syntax error RunPod's server (Apollo) answers:
  HTTP 400 ``{"errors": [{"message": "Syntax Error: ...", "extensions": {"code":
  "GRAPHQL_PARSE_FAILED"}}]}``. The document is then checked against a small schema of the
  types the SDK uses (unknown fields, arguments and input fields, duplicate input fields, wrong
  literal kinds, missing required values: HTTP 400, ``GRAPHQL_VALIDATION_FAILED``, graphql-js
  wording). A resolver's refusal (capacity, unknown pod) is HTTP 200 with ``errors`` and
  ``data: {<field>: null}``. Only the selected fields are returned.
- **Operations** (the SDK's shapes): ``gpuTypes`` (with or without ``input: {id}``, with
  ``lowestPrice(input: {gpuCount})``), ``myself { id pubKey networkVolumes pods }``,
  ``pod(input: {podId})`` (``null`` once terminated), ``podFindAndDeployOnDemand``,
  ``podRentInterruptable`` (``bidPerGpu``), ``podStop``, ``podTerminate``.
- **Keys.** ``Authorization: Bearer <key>`` must be the account key or a live pod's pod-scoped
  key (HTTP 401 otherwise, as RunPod). A pod-scoped key may only read, stop or terminate its own
  pod; anything else is a ``FORBIDDEN`` GraphQL error.
- **Pods run.** ``start_delay_s`` after creation a pod gets its ``runtime`` and its
  ``dockerArgs`` (``shlex.split``) run as a local process in a new session, with the pod's env,
  ``RUNPOD_POD_ID``, a pod-scoped ``RUNPOD_API_KEY``, ``RUNPOD_API_BASE_URL`` (this fake),
  ``PATH`` with the test interpreter's folder first and ``base_env``. The volume mount path is
  bound to a local folder: every occurrence of the mount path at a path boundary in argv items
  and env values is replaced by the folder (a network volume's folder, else a per-pod one). A
  process that exits leaves the pod RUNNING and billing (RunPod restarts a container whose
  command ends; the fake does not restart it but keeps the pod live, so a client that forgets to
  terminate is caught by :meth:`FakeRunPod.live_pods`). Stopping, preempting or terminating a
  pod ends its container as Docker does: SIGTERM to the process group, then SIGKILL to every
  process of the container (its session and all descendants, even ones in their own process
  group) after ``kill_grace_s``.
- **Network volumes and their S3 API are one store.** With ``s3_endpoint``, each volume's
  folder and the bucket named after the volume id are mirrored both ways every
  ``link_interval_s`` (see :class:`VolumeLink`); a pod's volume is also synced just before its
  process starts, so objects written before the create are there as on a real volume.
- **Faults** from the test (Python calls, not HTTP): :meth:`~FakeRunPod.refuse_capacity`,
  :meth:`~FakeRunPod.stick_next_pods`, :meth:`~FakeRunPod.fail_requests`,
  :meth:`~FakeRunPod.preempt`, :meth:`~FakeRunPod.preempt_after`.
- **Accounting**: :meth:`~FakeRunPod.live_pods`, :attr:`~FakeRunPod.created`,
  :attr:`~FakeRunPod.terminated`, :attr:`~FakeRunPod.terminated_by`,
  :attr:`~FakeRunPod.requests`, :meth:`~FakeRunPod.wait_until`, pod logs.

Messages for refusals RunPod documents nowhere (an unknown pod, a bid under the minimum) are
the fake's own wording; the capacity refusal is RunPod's.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from graphql import GraphQLSyntaxError, parse, print_ast
from graphql.language import (
    BooleanValueNode,
    DocumentNode,
    EnumValueNode,
    FieldNode,
    FloatValueNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)
from graphql.utilities import value_from_ast_untyped

T = TypeVar("T")

CAPACITY_ERROR = ("There are no longer any instances available with the requested "
                  "specifications. Please refresh and try again.")
DEFAULT_MOUNT_PATH = "/workspace"  # RunPod mounts a network volume here unless told otherwise
TEMP_PATTERNS = ("*.tmp*",)  # names the volume link never mirrors (files being written)


# ------------------------------------------------------------------------------ GPU catalogue
@dataclass(frozen=True)
class GpuType:
    """One RunPod GPU type. Prices are USD per GPU per hour; ``None``: not offered there."""

    id: str
    display_name: str
    memory_in_gb: int
    secure_price: float | None
    community_price: float | None
    secure_spot_price: float | None
    community_spot_price: float | None
    max_gpu_count: int = 8
    manufacturer: str = "Nvidia"
    cuda_cores: int = 0

    def on_demand_price(self, cloud_type: str) -> float | None:
        """The per-GPU hourly price RunPod charges for ``cloud_type`` (ALL: the cheaper cloud)."""
        return _cheapest(self._by_cloud(cloud_type, self.secure_price, self.community_price))

    def spot_price(self, cloud_type: str) -> float | None:
        """The minimum per-GPU hourly bid for an interruptible pod in ``cloud_type``."""
        return _cheapest(self._by_cloud(cloud_type, self.secure_spot_price,
                                        self.community_spot_price))

    @staticmethod
    def _by_cloud(cloud_type: str, secure: float | None, community: float | None) -> list:
        return {"SECURE": [secure], "COMMUNITY": [community], "ALL": [secure, community]}[
            cloud_type]


def _cheapest(prices: Sequence[float | None]) -> float | None:
    offered = [p for p in prices if p is not None]
    return min(offered) if offered else None


# Roughly RunPod's 2025 list prices; tests should read prices from the fake, not from here.
DEFAULT_GPU_TYPES: tuple[GpuType, ...] = (
    GpuType("NVIDIA GeForce RTX 4090", "RTX 4090", 24, 0.69, 0.34, 0.35, 0.20,
            cuda_cores=16384),
    GpuType("NVIDIA RTX A5000", "RTX A5000", 24, 0.27, 0.16, 0.14, 0.11, cuda_cores=8192),
    GpuType("NVIDIA A40", "A40", 48, 0.40, None, 0.20, None, cuda_cores=10752),
    GpuType("NVIDIA H100 80GB HBM3", "H100 SXM", 80, 2.69, 1.99, 1.75, 1.25,
            cuda_cores=16896),
)


# --------------------------------------------------------------------------------- the schema
# Output types: field -> type name. Scalars are the names not in this table. Lists are not
# marked: the resolver's value decides (a list is projected item by item).
_OBJECT_TYPES: dict[str, dict[str, str]] = {
    "Query": {"gpuTypes": "GpuType", "myself": "User", "pod": "Pod"},
    "Mutation": {"podFindAndDeployOnDemand": "Pod", "podRentInterruptable": "Pod",
                 "podStop": "Pod", "podTerminate": "Void"},
    "GpuType": {"id": "String", "displayName": "String", "manufacturer": "String",
                "memoryInGb": "Int", "cudaCores": "Int", "secureCloud": "Boolean",
                "communityCloud": "Boolean", "securePrice": "Float", "communityPrice": "Float",
                "oneMonthPrice": "Float", "threeMonthPrice": "Float", "oneWeekPrice": "Float",
                "secureSpotPrice": "Float", "communitySpotPrice": "Float",
                "maxGpuCount": "Int", "maxGpuCountSecureCloud": "Int",
                "maxGpuCountCommunityCloud": "Int", "lowestPrice": "LowestPrice"},
    "LowestPrice": {"gpuName": "String", "gpuTypeId": "String", "minimumBidPrice": "Float",
                    "uninterruptablePrice": "Float", "stockStatus": "String",
                    "minVcpu": "Float", "minMemory": "Float"},
    "User": {"id": "String", "pubKey": "String", "email": "String",
             "networkVolumes": "NetworkVolume", "pods": "Pod"},
    "NetworkVolume": {"id": "String", "name": "String", "size": "Int",
                      "dataCenterId": "String"},
    "Pod": {"id": "String", "name": "String", "imageName": "String", "env": "String",
            "machineId": "String", "machine": "PodMachine", "desiredStatus": "String",
            "costPerHr": "Float", "adjustedCostPerHr": "Float", "containerDiskInGb": "Int",
            "dockerArgs": "String", "dockerId": "String", "gpuCount": "Int",
            "lastStatusChange": "String", "memoryInGb": "Float", "podType": "String",
            "port": "Int", "ports": "String", "uptimeSeconds": "Int", "vcpuCount": "Float",
            "volumeInGb": "Int", "volumeMountPath": "String", "networkVolumeId": "String",
            "networkVolume": "NetworkVolume", "runtime": "PodRuntime"},
    "PodMachine": {"podHostId": "String", "gpuDisplayName": "String", "gpuTypeId": "String",
                   "dataCenterId": "String", "location": "String"},
    "PodRuntime": {"uptimeInSeconds": "Int", "ports": "PodRuntimePort",
                   "gpus": "PodRuntimeGpu", "container": "PodRuntimeContainer"},
    "PodRuntimePort": {"ip": "String", "isIpPublic": "Boolean", "privatePort": "Int",
                       "publicPort": "Int", "type": "String"},
    "PodRuntimeGpu": {"id": "String", "gpuUtilPercent": "Int", "memoryUtilPercent": "Int"},
    "PodRuntimeContainer": {"cpuPercent": "Int", "memoryPercent": "Int"},
}
# (parent type, field) -> argument -> input type ("!" = required).
_FIELD_ARGS: dict[tuple[str, str], dict[str, str]] = {
    ("Query", "gpuTypes"): {"input": "GpuTypeFilter"},
    ("Query", "pod"): {"input": "PodFilter!"},
    ("GpuType", "lowestPrice"): {"input": "GpuLowestPriceInput"},
    ("Mutation", "podFindAndDeployOnDemand"): {"input": "PodFindAndDeployOnDemandInput"},
    ("Mutation", "podRentInterruptable"): {"input": "PodRentInterruptableInput!"},
    ("Mutation", "podStop"): {"input": "PodStopInput!"},
    ("Mutation", "podTerminate"): {"input": "PodTerminateInput!"},
}
_CREATE_FIELDS = {
    "name": "String", "imageName": "String", "cloudType": "CloudTypeEnum",
    "gpuTypeId": "String", "gpuCount": "Int", "startSsh": "Boolean",
    "startJupyter": "Boolean", "supportPublicIp": "Boolean", "volumeInGb": "Int",
    "containerDiskInGb": "Int", "minVcpuCount": "Int", "minMemoryInGb": "Int", "minDisk": "Int",
    "minDownload": "Int", "minUpload": "Int", "dataCenterId": "String", "countryCode": "String",
    "dockerArgs": "String", "ports": "String", "port": "Int", "volumeMountPath": "String",
    "volumeKey": "String", "env": "[EnvironmentVariableInput]", "templateId": "String",
    "networkVolumeId": "String", "allowedCudaVersions": "[String]", "cudaVersion": "String",
}
_INPUT_TYPES: dict[str, dict[str, str]] = {
    "GpuTypeFilter": {"id": "String"},
    "GpuLowestPriceInput": {"gpuCount": "Int", "minDisk": "Int", "minMemoryInGb": "Int",
                            "minVcpuCount": "Int", "secureCloud": "Boolean"},
    "PodFilter": {"podId": "String!"},
    "PodStopInput": {"podId": "String!", "incrementVersion": "Boolean"},
    "PodTerminateInput": {"podId": "String!"},
    "EnvironmentVariableInput": {"key": "String!", "value": "String!"},
    "PodFindAndDeployOnDemandInput": {**_CREATE_FIELDS, "deployCost": "Float"},
    "PodRentInterruptableInput": {**_CREATE_FIELDS, "bidPerGpu": "Float!"},
}
_ENUMS: dict[str, tuple[str, ...]] = {"CloudTypeEnum": ("ALL", "SECURE", "COMMUNITY")}


class GraphQLFailure(Exception):
    """A GraphQL error as RunPod returns it: ``{"message", "extensions": {"code"}}``."""

    def __init__(self, message: str, code: str = "INTERNAL_SERVER_ERROR") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


# ---------------------------------------------------------------------------------- pod state
@dataclass
class FakePod:
    """One pod's state. Read it from tests; the fake's threads own every change."""

    id: str
    name: str
    operation: str  # "podFindAndDeployOnDemand" or "podRentInterruptable"
    input: dict[str, Any]  # the create's input as decoded from the query
    gpu: GpuType
    gpu_count: int
    cloud_type: str
    cost_per_hr: float  # USD per hour for the whole pod
    bid_per_gpu: float | None  # interruptible pods only
    env: dict[str, str]  # as sent (RunPod returns it as "K=V" strings)
    image_name: str
    docker_args: str
    mount_path: str
    volume_id: str | None
    volume_dir: Path  # the local folder bound at mount_path
    api_key: str = field(repr=False)  # the pod-scoped key RunPod injects as RUNPOD_API_KEY
    log_path: Path = field(repr=False, default=Path())
    created_at: float = 0.0
    start_at: float = 0.0  # when the container starts (monotonic seconds)
    stuck: bool = False  # never starts: runtime stays null
    desired_status: str = "RUNNING"  # RUNNING, EXITED (stopped/preempted), TERMINATED
    started_at: float | None = None  # monotonic; runtime is not null exactly while set
    started_count: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)
    process_env: dict[str, str] = field(default_factory=dict, repr=False)
    process_argv: list[str] = field(default_factory=list)
    exit_code: int | None = None  # of the pod's command, once it ended by itself
    preempt_at: float | None = None
    preempted: bool = False
    stopped: bool = False
    members: dict[int, int] = field(default_factory=dict, repr=False)  # pid -> start time

    @property
    def interruptible(self) -> bool:
        return self.operation == "podRentInterruptable"

    @property
    def live(self) -> bool:
        """Not terminated, whatever its status (a stopped or preempted pod still exists)."""
        return self.desired_status != "TERMINATED"

    @property
    def running(self) -> bool:
        """What a client sees as running: desiredStatus RUNNING and a runtime."""
        return self.desired_status == "RUNNING" and self.started_at is not None


# ------------------------------------------------------------------- processes of a container
def _proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """``(state, ppid, session id, start time in clock ticks)`` of a process, None if gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = data[data.rindex(")") + 2:].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[3]), int(fields[19])


def _alive(pid: int, start: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[3] == start and stat[0] not in ("Z", "X")


def _process_table() -> dict[int, tuple[str, int, int, int]]:
    """Every live (not zombie) process: pid -> :func:`_proc_stat`."""
    table: dict[int, tuple[str, int, int, int]] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and (stat := _proc_stat(int(entry))) and stat[0] not in ("Z", "X"):
            table[int(entry)] = stat
    return table


def _container_members(root_pid: int, known: Mapping[int, int],
                       table: Mapping[int, tuple[str, int, int, int]] | None = None,
                       ) -> dict[int, int]:
    """Every live process (pid -> start time) of a container started as session ``root_pid``:
    the session's processes, the previously known members, and all their descendants (a child
    may start its own process group or session; it stays in the container, as in a PID
    namespace, so the fake keeps following it)."""
    table = _process_table() if table is None else table
    members = {pid: start for pid, start in known.items()
               if pid in table and table[pid][3] == start}
    if root_pid in table:
        members[root_pid] = table[root_pid][3]
    changed = True
    while changed:
        changed = False
        for pid, (_, ppid, sid, start) in table.items():
            if pid not in members and (sid == root_pid or ppid in members):
                members[pid] = start
                changed = True
    return members


# -------------------------------------------------------------------------------- volume link
@dataclass
class _Side:
    """What the link last saw of one key on each side: file (size, mtime_ns) and ETag."""

    file: tuple[int, int] | None
    etag: str | None


class VolumeLink:
    """A volume folder and the S3 bucket named after the volume: one store, mirrored both ways.

    Each :meth:`sync` compares both sides with what each had after the previous sync (file size
    and mtime, object ETag), so a change is copied once and never bounced back. A file modified
    less than ``settle_s`` ago is left for a later pass (it may be half written) and names
    matching :data:`TEMP_PATTERNS` are never mirrored. Deleting on one side deletes on the
    other. When both sides changed, the newer one wins. Downloads are atomic (temp + rename).
    """

    def __init__(self, volume_id: str, folder: Path, client: Any) -> None:
        self.bucket = volume_id
        self.folder = folder
        self.client = client
        self._known: dict[str, _Side] = {}
        self._lock = threading.Lock()

    def ensure_bucket(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception:  # noqa: BLE001 - boto's 404 ClientError: create it
            self.client.create_bucket(Bucket=self.bucket)

    def sync(self, settle_s: float) -> None:
        """One pass over both sides; files modified in the last ``settle_s`` seconds wait."""
        with self._lock:
            files, busy = self._files(settle_s)
            objects = self._objects()
            for key in sorted(set(files) | set(objects) | set(self._known)):
                if key not in busy:
                    self._sync_key(key, files.get(key), objects.get(key))

    @staticmethod
    def _ignored(key: str) -> bool:
        name = key.rsplit("/", 1)[-1]
        return key.endswith("/") or any(fnmatch.fnmatch(name, p) for p in TEMP_PATTERNS)

    def _files(self, settle_s: float) -> tuple[dict[str, tuple[int, int]], set[str]]:
        files: dict[str, tuple[int, int]] = {}
        busy: set[str] = set()
        now_ns = time.time_ns()
        for root, _, names in os.walk(self.folder):
            for name in names:
                path = Path(root, name)
                key = path.relative_to(self.folder).as_posix()
                if self._ignored(key):
                    continue
                try:
                    st = path.stat()
                except FileNotFoundError:  # removed while we walked
                    continue
                if now_ns - st.st_mtime_ns < settle_s * 1e9:
                    busy.add(key)
                else:
                    files[key] = (st.st_size, st.st_mtime_ns)
        return files, busy

    def _objects(self) -> dict[str, tuple[str, float]]:
        """key -> (ETag, last-modified epoch seconds)."""
        objects: dict[str, tuple[str, float]] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for obj in page.get("Contents", []):
                if not self._ignored(obj["Key"]):
                    objects[obj["Key"]] = (obj["ETag"], obj["LastModified"].timestamp())
        return objects

    def _sync_key(self, key: str, file: tuple[int, int] | None,
                  obj: tuple[str, float] | None) -> None:
        etag = obj[0] if obj else None
        known = self._known.get(key)
        if known is None or (file != known.file and etag != known.etag):
            # First sight, or both sides changed since the last pass: keep the newer content.
            if file is None and etag is None:
                self._known.pop(key, None)
            elif etag is None:
                self._upload(key, file)
            elif file is None:
                self._download(key)
            elif self._md5(key) == etag.strip('"'):
                self._known[key] = _Side(file, etag)
            elif file[1] / 1e9 >= obj[1]:
                self._upload(key, file)
            else:
                self._download(key)
        elif file != known.file:
            self._upload(key, file) if file is not None else self._delete_object(key)
        elif etag != known.etag:
            self._download(key) if etag is not None else self._delete_file(key)

    def _md5(self, key: str) -> str:
        return hashlib.md5((self.folder / key).read_bytes()).hexdigest()  # noqa: S324 - ETag

    def _upload(self, key: str, file: tuple[int, int]) -> None:
        path = self.folder / key
        try:
            data = path.read_bytes()
            st = path.stat()
        except FileNotFoundError:
            return
        if (st.st_size, st.st_mtime_ns) != file:  # changed while read: next pass
            return
        etag = self.client.put_object(Bucket=self.bucket, Key=key, Body=data)["ETag"]
        self._known[key] = _Side(file, etag)

    def _download(self, key: str) -> None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:  # deleted since the listing
            return
        path = self.folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-link-{secrets.token_hex(4)}")
        tmp.write_bytes(response["Body"].read())
        os.replace(tmp, path)
        st = path.stat()
        self._known[key] = _Side((st.st_size, st.st_mtime_ns), response["ETag"])

    def _delete_object(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)
        self._known.pop(key, None)

    def _delete_file(self, key: str) -> None:
        (self.folder / key).unlink(missing_ok=True)
        self._known.pop(key, None)


# ------------------------------------------------------------------------------------ helpers
def _type_parts(type_ref: str) -> tuple[str, bool, bool]:
    """``"[Env]!"`` -> (base name, is list, required)."""
    required = type_ref.endswith("!")
    base = type_ref.rstrip("!")
    is_list = base.startswith("[")
    return base.strip("[]!"), is_list, required


def _bind_mount(text: str, mount: str, folder: Path) -> str:
    """``text`` with every mount path at a path boundary replaced by the local folder."""
    pattern = re.compile(r"(?<![\w./+-])" + re.escape(mount.rstrip("/")) + r"(?![\w.+-])")
    return pattern.sub(lambda _: str(folder), text)


def _html_error(status: int) -> bytes:
    reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
              504: "Gateway Timeout"}.get(status, "Error")
    return (f"<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n"
            f"<center><h1>{status} {reason}</h1></center>\r\n<hr><center>cloudflare</center>"
            "\r\n</body>\r\n</html>\r\n").encode()


# ------------------------------------------------------------------------------------ the fake
class FakeRunPod:
    """A loopback RunPod API and the pods it runs (see the module docstring).

    Use as a context manager (or :meth:`start` / :meth:`stop`); :meth:`stop` ends every pod's
    processes and every thread the fake started.
    """

    def __init__(
        self,
        *,
        api_key: str,
        workdir: Path,
        gpu_types: Sequence[GpuType] = DEFAULT_GPU_TYPES,
        volumes: Mapping[str, Path] | None = None,
        data_center_id: str = "EU-RO-1",
        s3_endpoint: str | None = None,
        s3_credentials: Mapping[str, str] | None = None,
        s3_region: str = "us-east-1",
        base_env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        start_delay_s: float = 0.3,
        kill_grace_s: float = 2.0,
        link_interval_s: float = 0.2,
        settle_s: float = 0.2,
    ) -> None:
        """
        :param api_key: the account key (``Authorization: Bearer <api_key>``).
        :param workdir: folder for pod logs (``<workdir>/pods/<id>.log``), per-pod volumes,
            homes and working directories.
        :param gpu_types: the catalogue ``gpuTypes`` answers and pods are priced from.
        :param volumes: network volume id -> local folder (created if missing); every volume
            is in ``data_center_id``.
        :param s3_endpoint: an S3 API (e.g. moto) where each volume's bucket (named after the
            volume id, created if missing) is linked to its folder; None: no link.
        :param s3_credentials: ``aws_access_key_id`` / ``aws_secret_access_key`` for it.
        :param base_env: the image's environment: the base of every pod process's env
            (e.g. ``PYTHONPATH``, ``HOME``); the pod's env and RunPod's variables go on top.
        :param cwd: the working directory of pod processes (default: a folder per pod).
        :param start_delay_s: seconds from create to a running container.
        :param kill_grace_s: seconds between SIGTERM and SIGKILL when a container is ended.
        :param link_interval_s: seconds between volume link passes.
        :param settle_s: a file modified less than this many seconds ago is not yet mirrored.
        """
        self.api_key = api_key
        self.workdir = Path(workdir)
        self.gpu_types = {gpu.id: gpu for gpu in gpu_types}
        self.volumes = {vid: Path(folder) for vid, folder in (volumes or {}).items()}
        self.data_center_id = data_center_id
        self.base_env = dict(base_env or {})
        self.cwd = cwd
        self.start_delay_s = start_delay_s
        self.kill_grace_s = kill_grace_s
        self.link_interval_s = link_interval_s
        self.settle_s = settle_s
        self._s3 = (s3_endpoint, dict(s3_credentials or {}), s3_region)
        self.links: dict[str, VolumeLink] = {}

        # Accounting (read from tests).
        self.pods: dict[str, FakePod] = {}  # every pod ever created, terminated ones too
        self.created: list[dict[str, Any]] = []  # every create's decoded input, refused too
        self.terminated: list[str] = []  # pod ids, in order
        self.terminated_by: dict[str, str] = {}  # pod id -> "account" | "pod" (its own key)
        self.requests: list[str] = []  # root field names of every parsed request, in order
        self.failed_requests = 0  # requests answered by fail_requests
        self.link_errors: list[str] = []
        self.internal_errors: list[str] = []  # the fake's own failures (answered HTTP 500)

        # Faults.
        self._refusals: dict[str, int | None] = {}  # gpu type id -> remaining (None: always)
        self._stick = 0
        self._fail: tuple[int, int] = (0, 500)
        self._preempt_plan: list[list[float]] = []  # [[seconds after start, pods left]]

        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._counter = 0
        self._threads: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._server: _Server | None = None

    # -------------------------------------------------------------------------- lifecycle
    @property
    def url(self) -> str:
        """The API base URL (``RUNPOD_API_BASE_URL``; the SDK appends ``/graphql``)."""
        if self._server is None:
            raise RuntimeError("FakeRunPod is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeRunPod:
        (self.workdir / "pods").mkdir(parents=True, exist_ok=True)
        for folder in self.volumes.values():
            folder.mkdir(parents=True, exist_ok=True)
        endpoint, credentials, region = self._s3
        if endpoint is not None:
            import boto3
            from botocore.config import Config

            client = boto3.client("s3", endpoint_url=endpoint, region_name=region,
                                  config=Config(retries={"max_attempts": 2},
                                                connect_timeout=5, read_timeout=20),
                                  **credentials)
            for volume_id, folder in self.volumes.items():
                link = VolumeLink(volume_id, folder, client)
                link.ensure_bucket()
                self.links[volume_id] = link
        self._server = _Server(self)
        self._spawn("fake-runpod-http", lambda: self._server.serve_forever(poll_interval=0.05))
        self._spawn("fake-runpod-pods", self._pods_loop)
        if self.links:
            self._spawn("fake-runpod-link", self._link_loop)
        return self

    def stop(self) -> None:
        """End every pod's container, then the API, then the link (after a last pass)."""
        self._stopping.set()
        with self._lock:
            pods = [p for p in self.pods.values() if p.process is not None]
        self._end_containers(pods)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()  # joins the request threads
        for thread in self._threads:
            thread.join(timeout=30)
        for thread in self._workers:  # after the pods loop: it may start one in its last tick
            thread.join(timeout=30)
        self._threads.clear()
        self._workers.clear()
        for link in self.links.values():  # what the pods wrote last reaches S3 too
            self._sync_link(link, 0.0)

    def __enter__(self) -> FakeRunPod:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[[], None], *, worker: bool = False) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        (self._workers if worker else self._threads).append(thread)
        thread.start()

    # ------------------------------------------------------------------------------ faults
    def refuse_capacity(self, gpu_type_id: str, times: int | None = None) -> None:
        """Refuse creates of ``gpu_type_id`` with RunPod's capacity error: the next ``times``
        ones, or every one when ``times`` is None (until :meth:`restore_capacity`)."""
        with self._lock:
            self._refusals[gpu_type_id] = times

    def restore_capacity(self, gpu_type_id: str) -> None:
        with self._lock:
            self._refusals.pop(gpu_type_id, None)

    def stick_next_pods(self, n: int) -> None:
        """The next ``n`` created pods never start: RUNNING with a null runtime forever."""
        with self._lock:
            self._stick += n

    def fail_requests(self, n: int, status: int = 502) -> None:
        """The next ``n`` HTTP requests (any key, any body) get ``status`` with an HTML body,
        as the proxy in front of RunPod answers during an outage."""
        with self._lock:
            self._fail = (n, status)

    def preempt(self, pod_id: str) -> None:
        """Preempt an interruptible pod now: its container is killed, ``desiredStatus`` becomes
        EXITED and ``runtime`` null; the pod still exists (and is live) until terminated."""
        with self._lock:
            pod = self._pod_or_raise(pod_id)
            if not pod.interruptible:
                raise ValueError(f"pod {pod_id} is on-demand: only interruptible pods are "
                                 "preempted")
            if not pod.live:
                raise ValueError(f"pod {pod_id} is terminated")
            self._halt(pod, preempted=True)
        self._end_containers([pod])

    def preempt_after(self, seconds: float, times: int = 1) -> None:
        """Preempt each of the next ``times`` interruptible pods that start, ``seconds`` after
        its container starts."""
        with self._lock:
            self._preempt_plan.append([seconds, times])

    # ---------------------------------------------------------------------------- accounting
    def live_pods(self) -> list[FakePod]:
        """Pods not terminated, whatever their status (these are what RunPod bills)."""
        with self._lock:
            return [pod for pod in self.pods.values() if pod.live]

    def pod(self, pod_id: str) -> FakePod:
        """A pod's state, terminated ones included."""
        with self._lock:
            return self._pod_or_raise(pod_id)

    def pod_log(self, pod_id: str) -> str:
        """What the pod's processes wrote to stdout and stderr."""
        path = self.pod(pod_id).log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        """Every pod's log, one after the other (print it when a test fails)."""
        with self._lock:
            pods = list(self.pods.values())
        return "\n".join(f"===== pod {p.id} ({p.name}, {p.desired_status}, exit "
                         f"{p.exit_code}) =====\n{self.pod_log(p.id)}" for p in pods)

    def volume_dir(self, volume_id: str) -> Path:
        return self.volumes[volume_id]

    def sync_now(self, settle_s: float = 0.0) -> None:
        """One volume link pass now, for every volume. By default every file counts as
        settled (the test knows its writes are done); pass ``settle_s`` to keep the window."""
        for link in self.links.values():
            self._sync_link(link, settle_s)

    def wait_until(self, predicate: Callable[[], T], timeout: float = 10.0,
                   interval: float = 0.05, what: str | None = None) -> T:
        """Poll ``predicate`` until it returns something truthy (returned); AssertionError
        naming ``what`` (or the predicate) after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"not true after {timeout} s: {what or predicate}")
            time.sleep(interval)

    # ---------------------------------------------------------------------- background loops
    def _pods_loop(self) -> None:
        last_track = 0.0
        while not self._stopping.wait(0.05):
            now = time.monotonic()
            with self._lock:
                live = [p for p in self.pods.values() if p.live]
                due = [p for p in live if p.desired_status == "RUNNING" and not p.stuck
                       and p.started_at is None and p.started_count == 0 and now >= p.start_at]
                preempt = [p for p in live if p.preempt_at is not None and now >= p.preempt_at
                           and p.desired_status == "RUNNING"]
            for pod in due:
                self._start_container(pod)
            for pod in preempt:
                with self._lock:
                    pod.preempt_at = None
                    self._halt(pod, preempted=True)
                self._spawn(f"fake-runpod-preempt-{pod.id}",
                            lambda pod=pod: self._end_containers([pod]), worker=True)
            with self._lock:
                for pod in live:
                    if pod.process is not None and pod.exit_code is None and \
                            pod.desired_status == "RUNNING" and pod.process.poll() is not None:
                        pod.exit_code = pod.process.returncode
            if now - last_track >= 0.2:  # follow children that leave the process group
                last_track = now
                table = _process_table()
                for pod in live:
                    if pod.process is not None and pod.desired_status == "RUNNING":
                        pod.members = _container_members(pod.process.pid, pod.members, table)

    def _link_loop(self) -> None:
        while not self._stopping.wait(self.link_interval_s):
            for link in self.links.values():
                self._sync_link(link, self.settle_s)

    def _sync_link(self, link: VolumeLink, settle_s: float) -> None:
        try:
            link.sync(settle_s)
        except Exception as exc:  # noqa: BLE001 - recorded for the test; the link goes on
            with self._lock:
                self.link_errors.append(f"{link.bucket}: {type(exc).__name__}: {exc}")
                del self.link_errors[:-50]

    # ----------------------------------------------------------------------------- containers
    def _start_container(self, pod: FakePod) -> None:
        if pod.volume_id in self.links:  # objects written before the create are on the volume
            self._sync_link(self.links[pod.volume_id], self.settle_s)
        with self._lock:
            if not pod.live or pod.desired_status != "RUNNING" or self._stopping.is_set():
                return
            pod.started_at = time.monotonic()
            pod.started_count += 1
            for plan in self._preempt_plan:
                if pod.interruptible and plan[1] > 0:
                    plan[1] -= 1
                    pod.preempt_at = pod.started_at + plan[0]
                    break
            argv = shlex.split(pod.docker_args)
            if not argv:  # the image's own command: nothing runs here, the pod just idles
                return
            mount = pod.mount_path
            pod.process_argv = [_bind_mount(a, mount, pod.volume_dir) for a in argv]
            root = self.workdir / "pods" / pod.id
            (root / "home").mkdir(parents=True, exist_ok=True)
            env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable),
                                            os.environ.get("PATH", os.defpath)]),
                   "HOME": str(root / "home"), **self.base_env}
            env.update({k: _bind_mount(v, mount, pod.volume_dir) for k, v in pod.env.items()})
            env.update({"RUNPOD_POD_ID": pod.id, "RUNPOD_API_KEY": pod.api_key,
                        "RUNPOD_API_BASE_URL": self.url,
                        "RUNPOD_GPU_COUNT": str(pod.gpu_count)})
            pod.process_env = env
            cwd = self.cwd or root
            with pod.log_path.open("ab") as log:
                try:
                    pod.process = subprocess.Popen(
                        pod.process_argv, env=env, cwd=cwd, stdout=log,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        start_new_session=True)
                except OSError as exc:  # e.g. no such executable: the container's command fails
                    log.write(f"fake runpod: cannot start {pod.process_argv!r}: {exc}\n".encode())
                    pod.exit_code = 127
                    return
            pod.members = {}

    def _halt(self, pod: FakePod, *, preempted: bool = False) -> None:
        """Mark a pod stopped (EXITED, no runtime); the caller then ends its container."""
        pod.desired_status = "EXITED"
        pod.started_at = None
        pod.preempt_at = None
        pod.preempted = pod.preempted or preempted
        pod.stopped = not preempted

    def _end_containers(self, pods: Sequence[FakePod]) -> None:
        """End the containers of ``pods`` as ``docker stop`` does: SIGTERM to each command's
        process group, SIGKILL to every process of the container after the grace period."""
        running = [p for p in pods if p.process is not None]
        for pod in running:
            pod.members = _container_members(pod.process.pid, pod.members)
            if pod.process.poll() is None:
                try:
                    os.killpg(pod.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + self.kill_grace_s
        while running and time.monotonic() < deadline:
            for pod in running:
                pod.process.poll()  # reap the command so it stops counting as alive
                pod.members = _container_members(pod.process.pid, pod.members)
            if not any(pod.members for pod in running):
                break
            time.sleep(0.05)
        for pod in running:
            for pid, start in _container_members(pod.process.pid, pod.members).items():
                if _alive(pid, start):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            pod.process.wait(timeout=10)
            pod.members = {}

    # ---------------------------------------------------------------------------------- HTTP
    def _handle_http(self, path: str, authorization: str | None,
                     body: bytes) -> tuple[int, bytes, str]:
        """One HTTP request -> (status, body, content type)."""
        with self._lock:
            remaining, status = self._fail
            if remaining > 0:
                self._fail = (remaining - 1, status)
                self.failed_requests += 1
                return status, _html_error(status), "text/html"
        if urlsplit(path).path.rstrip("/") != "/graphql":
            return 404, b"Not Found", "text/plain"
        principal = self._authenticate(authorization)
        if principal is None:
            return 401, json.dumps({"errors": [{"message": "Unauthorized"}]}).encode(), \
                "application/json"
        try:
            request = json.loads(body or b"null")
            query = request.get("query") if isinstance(request, dict) else None
        except ValueError:
            return self._json(400, {"errors": [{"message": "POST body sent invalid JSON.",
                                                "extensions": {"code": "BAD_REQUEST"}}]})
        if not isinstance(query, str) or not query.strip():
            return self._json(400, {"errors": [{
                "message": "GraphQL operations must contain a non-empty `query` or a "
                           "`persistedQuery` extension.", "extensions": {"code": "BAD_REQUEST"}}]})
        variables = request.get("variables") or {}
        try:
            document = parse(query)
        except GraphQLSyntaxError as exc:
            return self._json(400, {"errors": [{
                **exc.formatted, "extensions": {"code": "GRAPHQL_PARSE_FAILED"}}]})
        return self._json(*self._execute(document, request.get("operationName"), variables,
                                         principal))

    @staticmethod
    def _json(status: int, payload: Any) -> tuple[int, bytes, str]:
        return status, json.dumps(payload).encode(), "application/json"

    def _authenticate(self, authorization: str | None) -> str | FakePod | None:
        """"account", the pod whose pod-scoped key it is, or None (unauthorized)."""
        if not authorization or not authorization.startswith("Bearer "):
            return None
        key = authorization[len("Bearer "):]
        if secrets.compare_digest(key.encode(), self.api_key.encode()):
            return "account"
        with self._lock:
            for pod in self.pods.values():
                if pod.live and secrets.compare_digest(key.encode(), pod.api_key.encode()):
                    return pod
        return None

    # ------------------------------------------------------------------------------ GraphQL
    def _execute(self, document: DocumentNode, operation_name: str | None,
                 variables: dict[str, Any], principal: str | FakePod) -> tuple[int, Any]:
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        message = None
        if len(operations) != len(document.definitions):
            message = "The fake RunPod API takes no fragments."
        elif operation_name is not None:
            operations = [op for op in operations if op.name and op.name.value == operation_name]
            if not operations:
                message = f'Unknown operation named "{operation_name}".'
        elif len(operations) > 1:
            message = "Must provide operation name if query contains multiple operations."
        if message is not None:
            return 400, {"errors": [{"message": message,
                                     "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}
        operation = operations[0]
        root = {"query": "Query", "mutation": "Mutation"}.get(operation.operation.value)
        if root is None:
            return 400, {"errors": [{"message": "Subscriptions are not supported.",
                                     "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}
        with self._lock:
            self.requests.extend(sel.name.value for sel in operation.selection_set.selections
                                 if isinstance(sel, FieldNode))
        errors: list[str] = []
        args: dict[int, dict[str, Any]] = {}
        _validate_selection(root, operation.selection_set, variables, errors, args)
        if errors:
            return 400, {"errors": [{"message": m,
                                     "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
                                    for m in errors]}
        data: dict[str, Any] = {}
        failures: list[dict[str, Any]] = []
        for selection in operation.selection_set.selections:
            assert isinstance(selection, FieldNode)
            name = selection.name.value
            key = selection.alias.value if selection.alias else name
            if name == "__typename":
                data[key] = root
                continue
            try:
                value = self._resolve(name, args[id(selection)], principal)
            except GraphQLFailure as exc:
                data[key] = None
                failures.append({"message": exc.message, "path": [key],
                                 "extensions": {"code": exc.code}})
                continue
            data[key] = _project(value, _OBJECT_TYPES[root][name], selection.selection_set,
                                 args)
        return 200, ({"errors": failures, "data": data} if failures else {"data": data})

    def _resolve(self, name: str, args: dict[str, Any], principal: str | FakePod) -> Any:
        inp = args.get("input") or {}
        if name in ("pod", "podTerminate", "podStop"):
            pod_id = inp.get("podId")
            if not isinstance(pod_id, str):
                raise GraphQLFailure(f"{name} needs input.podId, a string.", "BAD_USER_INPUT")
            self._require_own(principal, pod_id)
            if name == "podTerminate":
                return self._terminate(pod_id, principal)
            if name == "podStop":
                return self._stop(pod_id)
            with self._lock:
                pod = self.pods.get(pod_id)
                return self._pod_value(pod) if pod is not None and pod.live else None
        if principal != "account":
            raise GraphQLFailure("A pod-scoped API key may only read, stop or terminate its "
                                 "own pod.", "FORBIDDEN")
        if name == "gpuTypes":
            wanted = inp.get("id")
            return [self._gpu_value(gpu) for gpu in self.gpu_types.values()
                    if wanted is None or gpu.id == wanted]
        if name == "myself":
            return {"id": "user_fake0001", "pubKey": "", "email": "fake@example.invalid",
                    "networkVolumes": [{"id": vid, "name": vid, "size": 50,
                                        "dataCenterId": self.data_center_id}
                                       for vid in self.volumes],
                    "pods": lambda _: [self._pod_value(p) for p in self.live_pods()]}
        return self._create(name, inp)

    @staticmethod
    def _require_own(principal: str | FakePod, pod_id: str) -> None:
        if principal != "account" and principal.id != pod_id:  # type: ignore[union-attr]
            raise GraphQLFailure("A pod-scoped API key may only read, stop or terminate its "
                                 "own pod.", "FORBIDDEN")

    def _pod_or_raise(self, pod_id: str) -> FakePod:
        if pod_id not in self.pods:
            raise KeyError(f"no pod {pod_id!r} in the fake RunPod (pods: {sorted(self.pods)})")
        return self.pods[pod_id]

    def _create(self, operation: str, inp: dict[str, Any]) -> Any:
        with self._lock:
            self.created.append(copy.deepcopy(inp))
            gpu_id = inp.get("gpuTypeId")
            if gpu_id is None:
                raise GraphQLFailure("gpuTypeId is required to deploy a GPU pod.", "BAD_USER_INPUT")
            gpu = self.gpu_types.get(gpu_id)
            if gpu is None:
                raise GraphQLFailure(f"GPU type {gpu_id!r} does not exist.", "BAD_USER_INPUT")
            if gpu_id in self._refusals:
                remaining = self._refusals[gpu_id]
                if remaining is not None:
                    if remaining <= 1:
                        del self._refusals[gpu_id]
                    else:
                        self._refusals[gpu_id] = remaining - 1
                raise GraphQLFailure(CAPACITY_ERROR)
            cloud_type = inp.get("cloudType") or "ALL"
            gpu_count = inp.get("gpuCount") or 1
            if gpu_count > gpu.max_gpu_count:
                raise GraphQLFailure(CAPACITY_ERROR)
            bid = None
            if operation == "podRentInterruptable":
                minimum = gpu.spot_price(cloud_type)
                if minimum is None:
                    raise GraphQLFailure(CAPACITY_ERROR)
                bid = float(inp["bidPerGpu"])
                if bid < minimum:
                    raise GraphQLFailure(f"Your bid of ${bid:.3f}/hr per GPU is below the "
                                         f"minimum bid of ${minimum:.3f}/hr for {gpu_id}.",
                                         "BAD_USER_INPUT")
                cost = bid * gpu_count
            else:
                price = gpu.on_demand_price(cloud_type)
                if price is None:
                    raise GraphQLFailure(CAPACITY_ERROR)
                cost = price * gpu_count
            volume_id = inp.get("networkVolumeId")
            if volume_id is not None:
                if volume_id not in self.volumes:
                    raise GraphQLFailure(f"Network volume {volume_id!r} not found.",
                                         "BAD_USER_INPUT")
                if inp.get("dataCenterId") not in (None, self.data_center_id):
                    raise GraphQLFailure(f"Network volume {volume_id!r} is in data center "
                                         f"{self.data_center_id}, not {inp['dataCenterId']}.",
                                         "BAD_USER_INPUT")
            self._counter += 1
            pod_id = hashlib.sha256(f"fake-runpod-{self._counter}".encode()).hexdigest()[:14]
            stuck = self._stick > 0
            if stuck:
                self._stick -= 1
            now = time.monotonic()
            pod = FakePod(
                id=pod_id, name=inp.get("name") or "", operation=operation,
                input=copy.deepcopy(inp),
                gpu=gpu, gpu_count=gpu_count, cloud_type=cloud_type, cost_per_hr=round(cost, 4),
                bid_per_gpu=bid,
                env={item["key"]: item["value"] for item in inp.get("env") or []},
                image_name=inp.get("imageName") or "", docker_args=inp.get("dockerArgs") or "",
                mount_path=inp.get("volumeMountPath") or DEFAULT_MOUNT_PATH, volume_id=volume_id,
                volume_dir=(self.volumes[volume_id] if volume_id is not None
                            else self.workdir / "pods" / pod_id / "volume"),
                api_key=f"rpa_POD{secrets.token_hex(16).upper()}",
                log_path=self.workdir / "pods" / f"{pod_id}.log",
                created_at=now, start_at=now + self.start_delay_s, stuck=stuck)
            pod.volume_dir.mkdir(parents=True, exist_ok=True)
            self.pods[pod_id] = pod
            return self._pod_value(pod)

    def _stop(self, pod_id: str) -> Any:
        with self._lock:
            pod = self.pods.get(pod_id)
            if pod is None or not pod.live:
                raise GraphQLFailure(f"Pod {pod_id!r} not found.", "BAD_USER_INPUT")
            self._halt(pod)
        self._end_containers([pod])
        return self._pod_value(pod)

    def _terminate(self, pod_id: str, principal: str | FakePod) -> None:
        with self._lock:
            pod = self.pods.get(pod_id)
            if pod is None or not pod.live:
                raise GraphQLFailure(f"Pod {pod_id!r} not found.", "BAD_USER_INPUT")
            pod.desired_status = "TERMINATED"
            pod.started_at = None
            pod.preempt_at = None
            self.terminated.append(pod_id)
            self.terminated_by[pod_id] = "account" if principal == "account" else "pod"
        # The answer goes after the container is gone (a pod terminating itself never reads it).
        self._end_containers([pod])
        return None

    # ---------------------------------------------------------------------------- values
    def _gpu_value(self, gpu: GpuType) -> dict[str, Any]:
        def lowest(args: dict[str, Any]) -> dict[str, Any]:
            count = (args.get("input") or {}).get("gpuCount") or 1
            in_stock = count <= gpu.max_gpu_count and gpu.id not in self._refusals
            return {"gpuName": gpu.display_name, "gpuTypeId": gpu.id,
                    "minimumBidPrice": gpu.spot_price("ALL"),
                    "uninterruptablePrice": gpu.on_demand_price("ALL"),
                    "stockStatus": "High" if in_stock else None, "minVcpu": 2.0,
                    "minMemory": 15.0}

        price = gpu.on_demand_price("ALL")
        return {
            "id": gpu.id, "displayName": gpu.display_name, "manufacturer": gpu.manufacturer,
            "memoryInGb": gpu.memory_in_gb, "cudaCores": gpu.cuda_cores,
            "secureCloud": gpu.secure_price is not None,
            "communityCloud": gpu.community_price is not None,
            "securePrice": gpu.secure_price, "communityPrice": gpu.community_price,
            "secureSpotPrice": gpu.secure_spot_price,
            "communitySpotPrice": gpu.community_spot_price,
            "oneWeekPrice": None if price is None else round(price * 0.95, 3),
            "oneMonthPrice": None if price is None else round(price * 0.9, 3),
            "threeMonthPrice": None if price is None else round(price * 0.85, 3),
            "maxGpuCount": gpu.max_gpu_count,
            "maxGpuCountSecureCloud": gpu.max_gpu_count if gpu.secure_price else 0,
            "maxGpuCountCommunityCloud": gpu.max_gpu_count if gpu.community_price else 0,
            "lowestPrice": lowest,
        }

    def _pod_value(self, pod: FakePod) -> dict[str, Any]:
        running = pod.started_at is not None
        uptime = int(time.monotonic() - pod.started_at) if running else 0
        volume = ({"id": pod.volume_id, "name": pod.volume_id, "size": 50,
                   "dataCenterId": self.data_center_id} if pod.volume_id else None)
        changed = time.strftime("%a %b %d %Y %H:%M:%S GMT+0000 (Coordinated Universal Time)",
                                time.gmtime(time.time()))
        return {
            "id": pod.id, "name": pod.name, "imageName": pod.image_name,
            "env": [f"{k}={v}" for k, v in pod.env.items()],
            "machineId": f"m{pod.id[:11]}", "desiredStatus": pod.desired_status,
            "costPerHr": pod.cost_per_hr, "adjustedCostPerHr": pod.cost_per_hr,
            "containerDiskInGb": pod.input.get("containerDiskInGb"),
            "dockerArgs": pod.docker_args, "dockerId": None, "gpuCount": pod.gpu_count,
            "lastStatusChange": f"Rented by User: {changed}",
            "memoryInGb": float(pod.input.get("minMemoryInGb") or 15),
            "podType": "INTERRUPTABLE" if pod.interruptible else "RESERVED",
            "port": None, "ports": pod.input.get("ports") or "", "uptimeSeconds": uptime,
            "vcpuCount": float(pod.input.get("minVcpuCount") or 2),
            "volumeInGb": pod.input.get("volumeInGb") or 0,
            "volumeMountPath": pod.mount_path, "networkVolumeId": pod.volume_id,
            "networkVolume": volume,
            "machine": {"podHostId": f"{pod.id}-64410f1e", "gpuDisplayName":
                        pod.gpu.display_name, "gpuTypeId": pod.gpu.id,
                        "dataCenterId": self.data_center_id, "location": self.data_center_id},
            "runtime": None if not running else {
                "uptimeInSeconds": uptime, "ports": [],
                "gpus": [{"id": f"GPU-{pod.id[:8]}-{i}", "gpuUtilPercent": 0,
                          "memoryUtilPercent": 0} for i in range(pod.gpu_count)],
                "container": {"cpuPercent": 0, "memoryPercent": 0}},
        }


# ------------------------------------------------------------------- validation and projection
def _validate_selection(type_name: str, selection_set: SelectionSetNode | None,
                        variables: dict[str, Any], errors: list[str],
                        args: dict[int, dict[str, Any]]) -> None:
    """Check a selection set against the schema (graphql-js messages); decode arguments into
    ``args`` keyed by ``id(field node)``."""
    for selection in selection_set.selections if selection_set else ():
        if not isinstance(selection, FieldNode):
            errors.append("The fake RunPod API takes no fragments.")
            continue
        name = selection.name.value
        if name == "__typename":
            continue
        fields = _OBJECT_TYPES[type_name]
        if name not in fields:
            errors.append(f'Cannot query field "{name}" on type "{type_name}".')
            continue
        args[id(selection)] = _arguments(type_name, selection, variables, errors)
        field_type = fields[name]
        if field_type in _OBJECT_TYPES:
            if selection.selection_set is None:
                errors.append(f'Field "{name}" of type "{field_type}" must have a selection of '
                              f'subfields. Did you mean "{name} {{ ... }}"?')
            else:
                _validate_selection(field_type, selection.selection_set, variables, errors,
                                    args)
        elif selection.selection_set is not None:
            errors.append(f'Field "{name}" must not have a selection since type "{field_type}" '
                          "has no subfields.")


def _arguments(type_name: str, selection: FieldNode, variables: dict[str, Any],
               errors: list[str]) -> dict[str, Any]:
    spec = _FIELD_ARGS.get((type_name, selection.name.value), {})
    where = f"{type_name}.{selection.name.value}"
    values: dict[str, Any] = {}
    for argument in selection.arguments:
        name = argument.name.value
        if name not in spec:
            errors.append(f'Unknown argument "{name}" on field "{where}".')
        elif name in values:
            errors.append(f'There can be only one argument named "{name}".')
        else:
            _check_value(argument.value, spec[name], errors)
            values[name] = value_from_ast_untyped(argument.value, variables)
    for name, type_ref in spec.items():
        if type_ref.endswith("!") and name not in values:
            errors.append(f'Field "{selection.name.value}" argument "{name}" of type '
                          f'"{type_ref}" is required, but it was not provided.')
    return values


def _check_value(node: ValueNode, type_ref: str, errors: list[str]) -> None:
    """Check a literal against an input type: graphql-js's messages for what it refuses."""
    if isinstance(node, VariableNode):  # a variable's value is the client's to type
        return
    base, is_list, required = _type_parts(type_ref)
    if isinstance(node, NullValueNode):
        if required:
            errors.append(f'Expected value of type "{type_ref}", found null.')
        return
    if is_list:
        for item in node.values if isinstance(node, ListValueNode) else (node,):
            _check_value(item, base, errors)
        return
    shown = print_ast(node)
    if base in _INPUT_TYPES:
        if not isinstance(node, ObjectValueNode):
            errors.append(f'Expected value of type "{base}", found {shown}.')
            return
        spec = _INPUT_TYPES[base]
        seen: set[str] = set()
        for item in node.fields:
            name = item.name.value
            if name in seen:
                errors.append(f'There can be only one input field named "{name}".')
            elif name not in spec:
                errors.append(f'Field "{name}" is not defined by type "{base}".')
            else:
                _check_value(item.value, spec[name], errors)
            seen.add(name)
        for name, field_ref in spec.items():
            if field_ref.endswith("!") and name not in seen:
                errors.append(f'Field "{base}.{name}" of required type "{field_ref}" was not '
                              "provided.")
        return
    if base in _ENUMS:
        if not isinstance(node, EnumValueNode):
            errors.append(f'Enum "{base}" cannot represent non-enum value: {shown}.')
        elif node.value not in _ENUMS[base]:
            errors.append(f'Value "{node.value}" does not exist in "{base}" enum.')
        return
    accepted = {"String": (StringValueNode,), "Int": (IntValueNode,),
                "Float": (IntValueNode, FloatValueNode), "Boolean": (BooleanValueNode,)}[base]
    if not isinstance(node, accepted):
        errors.append({"String": f"String cannot represent a non string value: {shown}",
                       "Int": f"Int cannot represent non-integer value: {shown}",
                       "Float": f"Float cannot represent non numeric value: {shown}",
                       "Boolean": f"Boolean cannot represent a non boolean value: {shown}"}[base])


def _project(value: Any, type_name: str, selection_set: SelectionSetNode | None,
             args: dict[int, dict[str, Any]]) -> Any:
    """Only the selected fields of ``value`` (a resolver's dict; a callable field value is
    called with the field's arguments)."""
    if value is None or type_name not in _OBJECT_TYPES:
        return value
    if isinstance(value, list):
        return [_project(item, type_name, selection_set, args) for item in value]
    out: dict[str, Any] = {}
    for selection in selection_set.selections if selection_set else ():
        assert isinstance(selection, FieldNode)
        name = selection.name.value
        key = selection.alias.value if selection.alias else name
        if name == "__typename":
            out[key] = type_name
            continue
        item = value.get(name)
        if callable(item):
            item = item(args.get(id(selection), {}))
        out[key] = _project(item, _OBJECT_TYPES[type_name][name], selection.selection_set, args)
    return out


# --------------------------------------------------------------------------------- the server
class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads
    timeout = 15  # a client that connects and sends nothing does not hold a thread forever

    def log_message(self, *_: Any) -> None:  # keep pytest output quiet
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake = self.server.fake
        try:
            status, payload, content_type = fake._handle_http(
                self.path, self.headers.get("Authorization"), body)
        except Exception as exc:  # noqa: BLE001 - a bug of the fake: visible, never a hang
            with fake._lock:
                fake.internal_errors.append(f"{type(exc).__name__}: {exc}")
            status, content_type = 500, "application/json"
            payload = json.dumps({"errors": [{"message": f"fake RunPod failed: {exc!r}",
                                              "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
                                             ]}).encode()
        self._send(status, payload, content_type)

    def do_GET(self) -> None:  # noqa: N802
        self._send(405, b"Method Not Allowed: POST GraphQL to /graphql", "text/plain")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # e.g. a pod that terminated itself
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the request threads: none outlives stop()
    block_on_close = True

    def __init__(self, fake: FakeRunPod) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
