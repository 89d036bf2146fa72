"""The loopback RunPod (tests/fakes/runpod_server.py) as the real ``runpod`` SDK and boto3 see it.

Every call goes through the SDK's own code (``runpod.create_pod``, ``get_pod``, ``terminate_pod``,
``run_graphql_query``) to the fake over loopback HTTP, and every S3 call through boto3 to the
moto server: these tests pin what the scenario tests of the RunPod Pipes client rely on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
import threading
import time
from pathlib import Path

import boto3
import pytest
import requests
import runpod
from runpod.api.graphql import run_graphql_query
from runpod.error import AuthenticationError, QueryError

from tests.conftest import S3_CREDENTIALS
from tests.fakes.runpod_server import CAPACITY_ERROR, DEFAULT_GPU_TYPES, FakeRunPod

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_KEY = "rpa_TESTACCOUNT0000000000000000000000"
GPU = DEFAULT_GPU_TYPES[0].id  # RTX 4090: secure and community, on-demand and spot
OTHER_GPU = DEFAULT_GPU_TYPES[1].id
THIRD_GPU = DEFAULT_GPU_TYPES[2].id
START_DELAY_S = 0.2


def gql(value: str) -> str:
    """A value encoded for a GraphQL string literal (GraphQL's string escapes are JSON's)."""
    return json.dumps(value)[1:-1]


def process_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


@pytest.fixture
def volume_id(request: pytest.FixtureRequest) -> str:
    """A network volume id (and S3 bucket name) of this test only: moto lives for the session."""
    return "vol" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]


@pytest.fixture
def s3(s3_endpoint: str):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **S3_CREDENTIALS)


@pytest.fixture
def fake(tmp_path: Path, s3_endpoint: str, volume_id: str, monkeypatch: pytest.MonkeyPatch):
    server = FakeRunPod(api_key=ACCOUNT_KEY, workdir=tmp_path / "runpod",
                        volumes={volume_id: tmp_path / "volume"}, s3_endpoint=s3_endpoint,
                        s3_credentials=S3_CREDENTIALS, base_env={"PYTHONPATH": str(REPO)},
                        start_delay_s=START_DELAY_S, kill_grace_s=1.0)
    with server:
        monkeypatch.setattr(runpod, "api_key", ACCOUNT_KEY)
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        try:
            yield server
        finally:
            print(server.logs())  # pytest shows it when the test failed
    for pod in server.pods.values():  # stop() left no process behind
        assert pod.process is None or pod.process.poll() is not None, pod.id
    assert server.link_errors == [] and server.internal_errors == []


def create(volume_id: str, *, docker_args: str = "sleep 30", gpu: str = GPU,
           env: dict[str, str] | None = None) -> dict:
    """An on-demand pod through ``runpod.create_pod`` on the test's network volume."""
    return runpod.create_pod(name="tradecore-test", image_name="runpod/pytorch:2.4.0",
                             gpu_type_id=gpu, cloud_type="SECURE", network_volume_id=volume_id,
                             volume_mount_path="/workspace", docker_args=docker_args,
                             env=env or {})


def rent(volume_id: str, bid: float, *, docker_args: str = "sleep 30") -> dict:
    """An interruptible pod: the ``podRentInterruptable`` mutation through the SDK's runner."""
    query = (f'mutation {{ podRentInterruptable(input: {{ bidPerGpu: {bid}, cloudType: SECURE, '
             f'gpuCount: 1, gpuTypeId: "{GPU}", name: "tradecore-spot", imageName: "img", '
             f'dockerArgs: "{gql(docker_args)}", volumeMountPath: "/workspace", '
             f'networkVolumeId: "{volume_id}", dataCenterId: null, env: [] }}) '
             "{ id costPerHr desiredStatus podType machine { podHostId } } }")
    return run_graphql_query(query)["data"]["podRentInterruptable"]


def wait_running(fake: FakeRunPod, pod_id: str) -> dict:
    return fake.wait_until(lambda: (p := runpod.get_pod(pod_id)) and p["runtime"] and p,
                           timeout=10, what=f"pod {pod_id} running")


def test_create_get_terminate_round_trip(fake: FakeRunPod, volume_id: str):
    created = create(volume_id, env={"A": "1"})
    assert set(created) == {"id", "imageName", "env", "machineId", "machine"}
    assert created["env"] == ["A=1"] and created["imageName"] == "runpod/pytorch:2.4.0"
    assert set(created["machine"]) == {"podHostId"}
    # create_pod validates the GPU, looks the volume's data centre up, then deploys.
    assert fake.requests == ["gpuTypes", "myself", "podFindAndDeployOnDemand"]
    assert fake.created[0]["gpuTypeId"] == GPU and fake.created[0]["cloudType"] == "SECURE"
    assert fake.created[0]["env"] == [{"key": "A", "value": "1"}]
    assert fake.created[0]["dataCenterId"] == fake.data_center_id

    pod_id = created["id"]
    state = runpod.get_pod(pod_id)
    assert state["runtime"] is None and state["desiredStatus"] == "RUNNING"  # starting
    assert state["costPerHr"] == fake.gpu_types[GPU].secure_price
    assert state["machine"] == {"gpuDisplayName": fake.gpu_types[GPU].display_name}
    assert state["volumeMountPath"] == "/workspace" and state["podType"] == "RESERVED"

    state = wait_running(fake, pod_id)
    assert state["runtime"] == {"ports": []}  # only the selected fields come back
    assert [p["id"] for p in runpod.get_pods()] == [pod_id]
    process = fake.pod(pod_id).process
    assert process is not None and process.poll() is None

    assert runpod.terminate_pod(pod_id) is None
    assert runpod.get_pod(pod_id) is None
    assert process.poll() is not None
    assert fake.live_pods() == [] and runpod.get_pods() == []
    assert fake.terminated == [pod_id] and fake.terminated_by == {pod_id: "account"}
    with pytest.raises(QueryError, match="not found"):
        runpod.terminate_pod(pod_id)


def test_the_pods_command_runs_with_its_env_and_the_volume_bound(fake: FakeRunPod, volume_id,
                                                                  s3):
    volume = fake.volume_dir(volume_id)
    (volume / "tools").mkdir()
    (volume / "tools" / "report.py").write_text(
        "import json, os, sys\n"
        "out = os.environ['OUT_PATH']\n"
        "os.makedirs(os.path.dirname(out), exist_ok=True)\n"
        "with open(out + '.tmp', 'w') as f:\n"
        "    json.dump({'argv': sys.argv[1:], 'executable': sys.executable,\n"
        "               'cwd': os.getcwd(), 'env': dict(os.environ)}, f)\n"
        "os.replace(out + '.tmp', out)\n")
    tricky = 'say "hi" \\ C:\\dir\n\ttab, é, 😀, ${HOME} }{ value: "x"'
    argv = ["python", "/workspace/tools/report.py", "--lake-root=/workspace/lake", "/workspace"]
    pod_id = create(volume_id, docker_args=gql(shlex.join(argv)), env={
        "OUT_PATH": "/workspace/out/report.json", "TRICKY": gql(tricky),
        "NOT_THE_MOUNT": "/workspacefoo/x"})["id"]

    # Written by the pod under its mount, read back through the bucket: one store.
    body = fake.wait_until(lambda: _object(s3, volume_id, "out/report.json"), timeout=15,
                           what="the pod's report in S3")
    report = json.loads(body)
    assert report["argv"] == [f"--lake-root={volume}/lake", str(volume)]
    assert Path(report["executable"]).parent == Path(sys.executable).parent  # the venv's python
    env = report["env"]
    assert env["OUT_PATH"] == f"{volume}/out/report.json"
    assert env["TRICKY"] == tricky  # escaped on the way in, the exact value in the pod
    assert env["NOT_THE_MOUNT"] == "/workspacefoo/x"
    assert env["RUNPOD_POD_ID"] == pod_id and env["RUNPOD_API_BASE_URL"] == fake.url
    assert env["RUNPOD_API_KEY"] == fake.pod(pod_id).api_key != ACCOUNT_KEY
    assert ACCOUNT_KEY not in json.dumps(env)
    assert env["PYTHONPATH"] == str(REPO)
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    listing = s3.list_objects_v2(Bucket=volume_id)["Contents"]
    assert sorted(o["Key"] for o in listing) == ["out/report.json", "tools/report.py"]  # no .tmp

    # The command has ended; the pod stays RUNNING and billing until terminated.
    fake.wait_until(lambda: fake.pod(pod_id).exit_code == 0, what="the command's exit")
    state = runpod.get_pod(pod_id)
    assert state["desiredStatus"] == "RUNNING" and state["runtime"] is not None
    assert f"TRICKY={tricky}" in state["env"]
    assert [p.id for p in fake.live_pods()] == [pod_id]
    runpod.terminate_pod(pod_id)
    assert fake.live_pods() == []


def _object(s3, bucket: str, key: str) -> bytes | None:
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def test_the_volume_folder_and_its_bucket_are_one_store(fake: FakeRunPod, volume_id, s3):
    volume = fake.volume_dir(volume_id)
    # Through S3 -> in the folder; in the folder -> through S3 (the link thread, both ways).
    s3.put_object(Bucket=volume_id, Key="ctx/context.json", Body=b'{"run": 1}')
    fake.wait_until(lambda: (volume / "ctx/context.json").is_file(), what="S3 -> folder")
    assert (volume / "ctx/context.json").read_bytes() == b'{"run": 1}'
    (volume / "msgs").mkdir()
    (volume / "msgs/1.json").write_bytes(b"chunk one")
    fake.wait_until(lambda: _object(s3, volume_id, "msgs/1.json") == b"chunk one",
                    what="folder -> S3")

    # Nothing bounces back: after several passes neither side was rewritten.
    etags = {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=volume_id)["Contents"]}
    mtimes = {k: (volume / k).stat().st_mtime_ns for k in etags}
    time.sleep(4 * fake.link_interval_s + fake.settle_s)
    assert {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=volume_id)["Contents"]} \
        == etags
    assert {k: (volume / k).stat().st_mtime_ns for k in etags} == mtimes

    # Updates travel too.
    s3.put_object(Bucket=volume_id, Key="ctx/context.json", Body=b'{"run": 2}')
    fake.wait_until(lambda: (volume / "ctx/context.json").read_bytes() == b'{"run": 2}',
                    what="an S3 update in the folder")
    (volume / "msgs/1.json").write_bytes(b"chunk one, rewritten")
    fake.wait_until(lambda: _object(s3, volume_id, "msgs/1.json") == b"chunk one, rewritten",
                    what="a file update in S3")

    # A file being written waits: temp names never travel, a fresh file waits for settling.
    (volume / "msgs/2.json.tmp81").write_bytes(b"partial")
    fake.sync_now()
    assert _object(s3, volume_id, "msgs/2.json.tmp81") is None
    os.replace(volume / "msgs/2.json.tmp81", volume / "msgs/2.json")
    (volume / "late.json").write_bytes(b"just written")
    fake.sync_now(settle_s=60.0)
    assert _object(s3, volume_id, "late.json") is None
    fake.sync_now()
    assert _object(s3, volume_id, "late.json") == b"just written"
    assert _object(s3, volume_id, "msgs/2.json") == b"partial"

    # Deleting on either side deletes on the other.
    s3.delete_object(Bucket=volume_id, Key="ctx/context.json")
    fake.wait_until(lambda: not (volume / "ctx/context.json").exists(), what="S3 delete")
    (volume / "msgs/1.json").unlink()
    fake.wait_until(lambda: _object(s3, volume_id, "msgs/1.json") is None, what="file delete")


def test_a_wrong_or_missing_key_is_refused_with_401(fake: FakeRunPod, monkeypatch):
    monkeypatch.setattr(runpod, "api_key", "rpa_WRONG")
    with pytest.raises(AuthenticationError):
        runpod.get_gpus()
    response = requests.post(f"{fake.url}/graphql", json={"query": "{ myself { id } }"},
                             timeout=5)
    assert response.status_code == 401
    assert fake.requests == []  # refused before the query was read


def test_a_capacity_refusal_is_a_query_error_and_creates_nothing(fake: FakeRunPod, volume_id):
    fake.refuse_capacity(GPU, times=1)
    with pytest.raises(QueryError) as refused:
        create(volume_id)
    assert str(refused.value) == CAPACITY_ERROR
    assert fake.live_pods() == []
    first = create(volume_id)["id"]  # the one refusal is spent

    fake.refuse_capacity(OTHER_GPU)  # every time, until restored
    for _ in range(2):
        with pytest.raises(QueryError, match="no longer any instances available"):
            create(volume_id, gpu=OTHER_GPU)
    fallback = create(volume_id, gpu=THIRD_GPU)["id"]
    assert [c["gpuTypeId"] for c in fake.created] == [GPU, GPU, OTHER_GPU, OTHER_GPU, THIRD_GPU]
    assert sorted(p.id for p in fake.live_pods()) == sorted([first, fallback])
    # A GPU type a cloud does not offer is refused the same way (the A40 is secure-cloud only).
    with pytest.raises(QueryError, match="no longer any instances available"):
        runpod.create_pod(name="x", image_name="img", gpu_type_id=THIRD_GPU,
                          cloud_type="COMMUNITY")
    for pod_id in (first, fallback):
        runpod.terminate_pod(pod_id)
    assert fake.live_pods() == []


def test_an_api_outage_reaches_the_sdk_as_a_json_decoding_error(fake: FakeRunPod):
    """A 5xx from the proxy in front of RunPod carries an HTML page. The SDK checks only for
    401 and then calls ``response.json()``, so an outage surfaces as requests'
    ``JSONDecodeError`` (a ``ValueError``), not as a ``runpod.error`` class."""
    fake.fail_requests(2, status=502)
    for _ in range(2):
        with pytest.raises(requests.exceptions.JSONDecodeError):
            runpod.get_gpus()
    assert [g["id"] for g in runpod.get_gpus()] == list(fake.gpu_types)
    fake.fail_requests(1, status=503)
    response = requests.post(f"{fake.url}/graphql", json={"query": "{ gpuTypes { id } }"},
                             headers={"Authorization": f"Bearer {ACCOUNT_KEY}"}, timeout=5)
    assert response.status_code == 503 and response.headers["Content-Type"] == "text/html"
    assert "503 Service Unavailable" in response.text
    assert fake.failed_requests == 3 and fake.requests == ["gpuTypes"]


def test_a_stuck_pod_never_gets_a_runtime(fake: FakeRunPod, volume_id):
    fake.stick_next_pods(1)
    stuck = create(volume_id)["id"]
    started = create(volume_id)["id"]
    wait_running(fake, started)
    time.sleep(5 * START_DELAY_S)
    state = runpod.get_pod(stuck)
    assert state["desiredStatus"] == "RUNNING" and state["runtime"] is None
    assert fake.pod(stuck).process is None
    assert len(fake.live_pods()) == 2  # it bills all the same
    for pod_id in (stuck, started):
        runpod.terminate_pod(pod_id)
    assert fake.live_pods() == []


def test_preemption_exits_an_interruptible_pod_that_stays_live(fake: FakeRunPod, volume_id):
    minimum = fake.gpu_types[GPU].secure_spot_price
    with pytest.raises(QueryError, match="below the minimum bid"):
        rent(volume_id, bid=minimum / 2)
    spot = rent(volume_id, bid=0.4)
    assert spot["costPerHr"] == 0.4 and spot["podType"] == "INTERRUPTABLE"
    wait_running(fake, spot["id"])
    process = fake.pod(spot["id"]).process
    fake.preempt(spot["id"])
    state = runpod.get_pod(spot["id"])
    assert state["desiredStatus"] == "EXITED" and state["runtime"] is None
    assert process.poll() is not None
    assert [p.id for p in fake.live_pods()] == [spot["id"]]  # exists until terminated
    runpod.terminate_pod(spot["id"])

    on_demand = create(volume_id)["id"]
    with pytest.raises(ValueError, match="on-demand"):
        fake.preempt(on_demand)
    runpod.terminate_pod(on_demand)

    fake.preempt_after(0.3, times=1)  # the next interruptible pod only
    first, second = rent(volume_id, bid=0.4)["id"], rent(volume_id, bid=0.4)["id"]
    fake.wait_until(lambda: fake.pod(first).preempted, timeout=5, what="timed preemption")
    assert runpod.get_pod(first)["desiredStatus"] == "EXITED"
    wait_running(fake, second)
    time.sleep(0.6)
    assert runpod.get_pod(second)["desiredStatus"] == "RUNNING"
    assert not fake.pod(second).preempted
    for pod_id in (first, second):
        runpod.terminate_pod(pod_id)
    assert fake.live_pods() == []


def test_a_raw_quote_breaks_the_query_and_an_escaped_one_round_trips(fake: FakeRunPod,
                                                                      volume_id):
    with pytest.raises(QueryError, match="Syntax Error"):
        create(volume_id, env={"NOTE": 'say "hi"'})
    with pytest.raises(QueryError, match="Syntax Error"):
        create(volume_id, docker_args='python -c "print(1)"')
    # A quote that keeps the query parseable injects a field; the duplicate is refused.
    with pytest.raises(QueryError, match='only one input field named "key"'):
        create(volume_id, env={"NOTE": 'x", key: "INJECTED", value: "y'})
    assert fake.created == [] and fake.live_pods() == []

    value = 'say "hi" \\ C:\\dir\n\ttab é 😀 }{ $x'
    pod_id = create(volume_id, env={"NOTE": gql(value)})["id"]
    assert fake.created[0]["env"] == [{"key": "NOTE", "value": value}]
    assert fake.pod(pod_id).env == {"NOTE": value}
    assert runpod.get_pod(pod_id)["env"] == [f"NOTE={value}"]
    runpod.terminate_pod(pod_id)


def test_unknown_fields_and_operations_are_refused_as_runpod_does(fake: FakeRunPod):
    with pytest.raises(QueryError, match='Cannot query field "podResume" on type "Mutation"'):
        runpod.resume_pod("abc", 1)
    with pytest.raises(QueryError, match='Field "gpuTypeIds" is not defined'):
        run_graphql_query('mutation { podFindAndDeployOnDemand(input: {gpuTypeIds: ["x"]}) '
                          "{ id } }")
    with pytest.raises(QueryError, match="Enum \"CloudTypeEnum\" cannot represent"):
        run_graphql_query('mutation { podFindAndDeployOnDemand(input: {cloudType: "SECURE"}) '
                          "{ id } }")
    with pytest.raises(QueryError, match='bidPerGpu" of required type "Float!" was not provided'):
        run_graphql_query(f'mutation {{ podRentInterruptable(input: {{gpuTypeId: "{GPU}"}}) '
                          "{ id } }")
    assert fake.created == []


def test_live_pods_counts_every_pod_not_terminated(fake: FakeRunPod, volume_id):
    sleeping = create(volume_id)["id"]
    exiting = create(volume_id, docker_args="python -V")["id"]
    stopped = create(volume_id)["id"]
    fake.wait_until(lambda: fake.pod(exiting).exit_code == 0, what="python -V done")
    assert runpod.get_pod(exiting)["runtime"] is not None  # ended command, pod still up
    wait_running(fake, stopped)
    assert runpod.stop_pod(stopped) == {"id": stopped, "desiredStatus": "EXITED"}
    assert fake.pod(stopped).process.poll() is not None
    assert runpod.get_pod(stopped)["runtime"] is None
    assert len(fake.live_pods()) == 3
    for left, pod_id in ((2, sleeping), (1, exiting), (0, stopped)):
        runpod.terminate_pod(pod_id)
        assert len(fake.live_pods()) == left


def test_a_pod_scoped_key_reaches_only_its_own_pod(fake: FakeRunPod, volume_id):
    own, other = create(volume_id)["id"], create(volume_id)["id"]
    key = fake.pod(own).api_key
    assert runpod.get_pod(own, api_key=key)["id"] == own
    with pytest.raises(QueryError, match="pod-scoped"):
        runpod.get_pod(other, api_key=key)
    with pytest.raises(QueryError, match="pod-scoped"):
        runpod.get_gpus(api_key=key)

    # A pod terminates itself with the SDK and the key RunPod put in its env (the watchdog way).
    (fake.volume_dir(volume_id) / "self_terminate.py").write_text(
        "import os, runpod\n"
        "runpod.api_key = os.environ['RUNPOD_API_KEY']\n"
        "runpod.terminate_pod(os.environ['RUNPOD_POD_ID'])\n")
    itself = create(volume_id, docker_args="python /workspace/self_terminate.py")["id"]
    fake.wait_until(lambda: not fake.pod(itself).live, timeout=20, what="self-termination")
    assert fake.terminated_by[itself] == "pod"
    # Gone from the API at once; its container ends while the request is answered.
    fake.wait_until(lambda: fake.pod(itself).process.poll() is not None, timeout=5,
                    what="the self-terminated pod's process ended")

    for pod_id in (own, other):
        runpod.terminate_pod(pod_id)
    with pytest.raises(AuthenticationError):  # a terminated pod's key is dead
        runpod.get_pod(own, api_key=key)
    assert fake.live_pods() == []


FAMILY = """\
import json, os, signal, subprocess, sys, time
sleeper = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
session = subprocess.Popen([sys.executable, "-c", sleeper], start_new_session=True)
group = subprocess.Popen([sys.executable, "-c", sleeper], process_group=0)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "w") as f:
    json.dump([os.getpid(), session.pid, group.pid], f)
time.sleep(60)
"""


def test_ending_a_pod_kills_every_process_of_its_container(fake: FakeRunPod, volume_id):
    """Children in their own session or process group, all ignoring SIGTERM, still end: as a
    container's processes do when it is removed."""
    volume = fake.volume_dir(volume_id)
    (volume / "family.py").write_text(FAMILY)
    pod_id = create(volume_id, docker_args="python /workspace/family.py /workspace/pids.json")["id"]
    pids = fake.wait_until(lambda: (volume / "pids.json").is_file()
                           and json.loads((volume / "pids.json").read_text()),
                           what="the family's pids")
    time.sleep(0.3)  # the tracker has seen the children
    assert all(process_running(pid) for pid in pids)
    started = time.monotonic()
    runpod.terminate_pod(pod_id)
    assert time.monotonic() - started >= fake.kill_grace_s  # SIGTERM ignored: SIGKILL after grace
    assert fake.wait_until(lambda: not any(process_running(pid) for pid in pids), timeout=5,
                           what="every process of the container gone")


def test_stop_ends_every_pod_and_thread(tmp_path: Path, monkeypatch):
    before = set(threading.enumerate())
    server = FakeRunPod(api_key=ACCOUNT_KEY, workdir=tmp_path / "runpod", start_delay_s=0.05)
    with server:
        monkeypatch.setattr(runpod, "api_key", ACCOUNT_KEY)
        monkeypatch.setenv("RUNPOD_API_BASE_URL", server.url)
        pod_id = runpod.create_pod(name="left-running", image_name="img", gpu_type_id=GPU,
                                   docker_args="sleep 60")["id"]
        wait_running(server, pod_id)
        process = server.pod(pod_id).process
        assert server.pod(pod_id).volume_dir == tmp_path / "runpod" / "pods" / pod_id / "volume"
    assert process.poll() is not None
    assert set(threading.enumerate()) - before == set()
