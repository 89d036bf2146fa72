"""``ppo_agent`` with ``compute: runpod``: the real ``runpod`` SDK, boto3 and dagster-aws's S3
Pipes plumbing against a loopback RunPod (:mod:`tests.fakes.runpod_server`, whose pods really
run the training entry point) and a loopback S3 (moto) linked to the fake's volume folder.

Every scenario ends with no live pod in the fake's account, whatever went wrong.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from tests.conftest import S3_CREDENTIALS
from tests.fakes.runpod_server import FakeRunPod
from tests.pipelines.chain import MARKET, reconstructable_chain, resources
from tradecore_lib.errors import ConfigError
from tradecore_lib.paths import REPO_ROOT
from tradecore_lib.train.checkpoints import MODEL, RunStore
from tradecore_pipelines.runpod import PipesRunPodClient, build_runpod_reaper, write_heartbeat
from tradecore_pipelines.training_compute import default_compute

KEY = "rp-account-key-for-tests"
VOLUME = "vol-tradecore"
HEARTBEAT_LIMIT_S = 6.0
RANGE = {
    "dagster/asset_partition_range_start": "2024-01-01",
    "dagster/asset_partition_range_end": "2024-03-01",
}
TINY = {"total_timesteps": 512, "checkpoint_every_steps": 512}
POD = {"image": "tradecore/runpod:test", "start_timeout_s": 60, "max_runtime_s": 300}
STEP = f"{MARKET.name}__ppo_agent"
AGENT = dg.AssetKey([MARKET.name, "ppo_agent"])


def client_settings(s3_endpoint: str, **changes) -> dict:
    """The PipesRunPodClient fields of these tests (fast polls, a short heartbeat limit)."""
    return {"api_key": KEY, "network_volume_id": VOLUME,
            "volume_s3": {"endpoint_url": s3_endpoint, "region_name": "us-east-1",
                          **S3_CREDENTIALS},
            "poll_interval_s": 0.5, "heartbeat_limit_s": HEARTBEAT_LIMIT_S,
            "pipes_interval_s": 0.5, "closed_grace_s": 20.0, "api_backoff_s": 0.1,
            "deadline_grace_s": 5.0, **changes}


@pytest.fixture(scope="module")
def fake(tmp_path_factory, s3_endpoint):
    work = tmp_path_factory.mktemp("runpod")
    with pytest.MonkeyPatch.context() as env, FakeRunPod(
            api_key=KEY, workdir=work, volumes={VOLUME: work / "volume"},
            s3_endpoint=s3_endpoint, s3_credentials=S3_CREDENTIALS,
            base_env={"HOME": str(work / "home"), "PYTHONPATH": str(REPO_ROOT)},
            cwd=REPO_ROOT) as server:
        env.setenv("RUNPOD_API_BASE_URL", server.url)
        yield server


@pytest.fixture(scope="module")
def chain(tmp_path_factory, fake, s3_endpoint):
    """Instance (on disk: child processes open it too), the job with a RunPod client on the
    fake, and the lake; candles and features of 2024-01..03 materialized."""
    root = tmp_path_factory.mktemp("chain")
    settings = client_settings(s3_endpoint)
    job = reconstructable_chain(str(root), settings)
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        for layer in ("candles", "features"):
            assert dg.execute_job(job, instance, tags=RANGE,
                                  asset_selection=[dg.AssetKey([MARKET.name, layer])]).success
        yield job, instance, resources(str(root))[0].get_lake(), root, settings


@pytest.fixture(autouse=True)
def no_pod_left(fake):
    """After every scenario: no live pod (waiting a little for pods ending on their own)."""
    yield
    left = fake.wait_until(lambda: not fake.live_pods(), timeout=HEARTBEAT_LIMIT_S + 30)
    assert left, f"pods left running: {[p.id for p in fake.live_pods()]}\n{fake.logs()}"


def agent_config(pod: dict | None = None, **train) -> dict:
    config = {**TINY, **train}
    if pod is not None:
        config.update(compute="runpod", runpod={**POD, **pod})
    return {"ops": {STEP: {"config": config}}}


def train(chain, pod: dict | None, **overrides) -> dg.ExecuteJobResult:
    job, instance, *_ = chain
    return dg.execute_job(job, instance, asset_selection=[AGENT],
                          run_config=agent_config(pod, **overrides), raise_on_error=False)


def metadata(result: dg.ExecuteJobResult) -> dict:
    (event,) = [e for e in result.all_events
                if e.event_type_value == "ASSET_MATERIALIZATION" and e.step_key == STEP]
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def failure(result: dg.ExecuteJobResult) -> str:
    assert not result.success
    (event,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = event.event_specific_data.error
    return f"{error.message} {error.cause.message if error.cause else ''}"


def training_rows(store: RunStore) -> list[dict]:
    """metrics.jsonl without the wall-clock columns (what determinism can promise)."""
    return [{k: v for k, v in row.items() if k not in ("wall_s", "fps")}
            for row in store.read_metrics()]


def network(data: bytes) -> dict[str, bytes]:
    """The trained weights and optimizer state in an SB3 model zip (its ``data`` member also
    holds wall-clock fields, and ``system_info.txt`` the host)."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()
                if name.endswith(".pth")}


def test_a_pod_run_gives_the_local_run_its_checkpoint_and_metadata(chain, fake):
    _, _, lake, *_ = chain
    local = train(chain, None)
    assert local.success
    expected = metadata(local)
    store = RunStore(lake, MARKET.name, expected["run_id"])
    rows, model = training_rows(store), network(store.read_bytes(MODEL))

    quoted = 'say "hi" \\ and {braces}, \n a newline'
    remote = train(chain, {"env": {"NOTE": quoted}})
    assert remote.success, fake.logs()
    got = metadata(remote)
    # The same run (a digest of market, config and data), its checkpoint back in the lake,
    # trained to the same numbers.
    for name in ("run_id", "checkpoint", "config_digest", "lineage_digest", "timesteps",
                 "ep_rew_mean", "value_loss", "train_months", "preset", "eligible_for_promotion",
                 "checkpoint_uri", "model_uri"):
        assert got[name] == expected[name], name
    assert training_rows(store) == rows
    assert network(store.read_bytes(MODEL)) == model
    assert got["compute"] == "runpod" and expected["compute"] == "local"
    assert got["runpod_attempts"] == 1 and got["runpod_preemptions"] == 0
    (pod,) = got["runpod_pods"]
    assert pod["outcome"] == "succeeded" and pod["gpu_type"] == POD_GPU
    # The quote reached the pod as itself; the account key never entered its env.
    created = fake.created[-1]
    env = {item["key"]: item["value"] for item in created["env"]}
    assert env["NOTE"] == quoted
    assert KEY not in json.dumps(created)
    assert fake.terminated_by[pod["pod_id"]] == "account"


POD_GPU = "NVIDIA GeForce RTX 4090"


def test_a_capacity_refusal_and_api_outages_fall_back_to_the_next_gpu_type(chain, fake):
    fake.refuse_capacity(POD_GPU, times=1)
    fake.fail_requests(2, status=502)
    result = train(chain, {}, seed=3)
    assert result.success, fake.logs()
    (pod,) = metadata(result)["runpod_pods"]
    assert pod["gpu_type"] == "NVIDIA RTX A5000"
    assert any(POD_GPU in refusal and "no longer any instances" in refusal
               for refusal in pod["refusals"])


def test_a_command_failing_in_the_pod_fails_the_step_and_ends_the_pod(chain, fake):
    # Valid for the orchestrator; the pod has no CUDA device, so training refuses to start.
    result = train(chain, {}, device="cuda", seed=4)
    message = failure(result)
    assert "failed with exit code 1" in message
    assert "stderr and exception are in this step's logs" in message


def test_a_pod_that_never_starts_is_terminated_at_the_start_timeout(chain, fake):
    fake.stick_next_pods(1)
    result = train(chain, {"start_timeout_s": 2}, seed=5)
    assert "did not start within start_timeout_s=2 s" in failure(result)


def test_the_max_runtime_ends_the_pod(chain, fake):
    result = train(chain, {"max_runtime_s": 4}, total_timesteps=199_680, seed=6)
    assert "exceeded max_runtime_s=4 s" in failure(result)


def test_a_preempted_spot_pod_is_relaunched_and_training_resumes(chain, fake):
    _, _, lake, *_ = chain
    checkpoints = fake.volume_dir(VOLUME) / "tradecore/lake/models" / MARKET.name

    def preempt_after_first_checkpoint() -> None:
        fake.wait_until(lambda: any(checkpoints.glob("*/checkpoints/latest.json")), timeout=120)
        (pod,) = fake.live_pods()
        fake.preempt(pod.id)

    thread = threading.Thread(target=preempt_after_first_checkpoint, daemon=True)
    thread.start()
    result = train(chain, {"interruptible": True, "max_preemptions": 2},
                   total_timesteps=2048, checkpoint_every_steps=512, seed=7)
    thread.join(timeout=5)
    assert result.success, fake.logs()
    got = metadata(result)
    assert (got["runpod_attempts"], got["runpod_preemptions"]) == (2, 1)
    assert [p["outcome"] for p in got["runpod_pods"]] == ["preempted", "succeeded"]
    assert all(p["spot"] for p in got["runpod_pods"])
    # The same final step count as an uninterrupted run, resumed from the volume's checkpoint.
    assert got["timesteps"] == 2048
    # the second pod's own report, streamed through Pipes into the run's log
    _, instance, *_ = chain
    assert any(f"resuming run {got['run_id']} from its checkpoint at step" in e.user_message
               for e in instance.all_logs(result.run_id))
    assert RunStore(lake, MARKET.name, got["run_id"]).is_complete()


def _orchestrator(chain, config: dict) -> subprocess.Popen:
    """A run worker in its own process: ``execute_job`` on the chain's on-disk instance (it
    turns SIGINT into Dagster's interruption of the step, as a cancelled run gets)."""
    _, _, _, root, settings = chain
    script = (
        "import json, sys, dagster as dg\n"
        "from dagster._core.instance.ref import InstanceRef\n"
        "from tests.pipelines.chain import reconstructable_chain\n"
        "root, settings, config = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
        "with dg.DagsterInstance.from_ref(InstanceRef.from_dir(root + '/home')) as instance:\n"
        "    r = dg.execute_job(reconstructable_chain(root, settings), instance,\n"
        f"        asset_selection=[dg.AssetKey({AGENT.path!r})], run_config=config,\n"
        "        raise_on_error=False)\n"
        "    print('RUN', r.run_id, r.success, flush=True)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script, str(root), json.dumps(settings),
                             json.dumps(config)], cwd=REPO_ROOT, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_training(fake, before: set[Path]) -> str:
    """The pod of a run whose training has written its first metrics row to the volume."""
    fake.wait_until(lambda: set(_metrics_files(fake)) - before and fake.live_pods(),
                    timeout=120, what="a new run's first metrics row on the volume")
    (pod,) = fake.live_pods()
    return pod.id


def _metrics_files(fake) -> list[Path]:
    return list((fake.volume_dir(VOLUME) / "tradecore/lake/models").glob("*/*/metrics.jsonl"))


def test_a_cancelled_run_terminates_its_pod(chain, fake):
    before = set(_metrics_files(fake))
    worker = _orchestrator(chain, agent_config({}, total_timesteps=499_712, seed=8))
    pod = _wait_for_training(fake, before)
    worker.send_signal(signal.SIGINT)
    output, _ = worker.communicate(timeout=120)
    assert fake.wait_until(lambda: pod in fake.terminated, timeout=30), output
    assert fake.terminated_by[pod] == "account"  # by the client, not the pod's watchdog
    (line,) = [line for line in output.splitlines() if line.startswith("RUN ")]
    _, run_id, success = line.split()
    _, instance, *_ = chain
    assert success == "False"
    assert any(f"run cancelled: terminating pod {pod}" in e.user_message
               for e in instance.all_logs(run_id)), output


def test_a_killed_orchestrator_leaves_the_pod_to_its_watchdog(chain, fake):
    before = set(_metrics_files(fake))
    worker = _orchestrator(chain, agent_config({}, total_timesteps=499_712, seed=9))
    pod = _wait_for_training(fake, before)
    worker.kill()  # kill -9: no finally, no cancellation, the heartbeat just stops
    worker.communicate(timeout=30)
    assert fake.wait_until(lambda: pod in fake.terminated, timeout=HEARTBEAT_LIMIT_S + 30), \
        fake.pod_log(pod)
    assert fake.terminated_by[pod] == "pod"  # the pod's own key: its watchdog


def test_the_reaper_terminates_tradecore_pods_whose_heartbeat_is_stale(chain, fake):
    *_, settings = chain
    client = PipesRunPodClient(**{**settings, "volume_s3": S3Resource(**settings["volume_s3"])})
    api, s3 = client.api(), client.s3_client()
    sleeper = ["python", "-c", "import time; time.sleep(600)"]

    def create(name: str) -> str:
        return str(api.create_on_demand(
            name=name, image="img", gpu_type_id="NVIDIA RTX A5000", gpu_count=1,
            cloud_type="SECURE", network_volume_id=VOLUME, data_center_id=None,
            volume_mount_path="/workspace", container_disk_in_gb=10, min_vcpu_count=1,
            min_memory_in_gb=1, docker_args=" ".join(sleeper), env={})["id"])

    orphan, alive, foreign = (create("tradecore-deadbeef-orphan-a1"),
                              create("tradecore-cafecafe-alive-a1"), create("someone-else"))
    write_heartbeat(s3, VOLUME, "tradecore/heartbeats/tradecore-deadbeef-orphan-a1.json",
                    "deadbeef", "tradecore-deadbeef-orphan-a1")
    stale = json.dumps({"ts": time.time() - 3600}).encode()
    s3.put_object(Bucket=VOLUME, Key="tradecore/heartbeats/tradecore-deadbeef-orphan-a1.json",
                  Body=stale)
    write_heartbeat(s3, VOLUME, "tradecore/heartbeats/tradecore-cafecafe-alive-a1.json",
                    "cafecafe", "tradecore-cafecafe-alive-a1")
    sensor = build_runpod_reaper()
    with dg.build_sensor_context(resources={"runpod": client}) as context:
        outcome = sensor(context)
    assert "terminated 1 orphaned pod" in outcome.skip_message
    assert orphan in fake.terminated and alive not in fake.terminated
    assert foreign not in fake.terminated
    for pod in (alive, foreign):
        api.terminate(pod)


def test_runpod_without_a_key_fails_at_once_and_a_bad_compute_at_load(chain, fake,
                                                                      monkeypatch):
    _, instance, _, root, settings = chain
    created = len(fake.created)
    keyless = reconstructable_chain(str(root), {**settings, "api_key": None})
    result = dg.execute_job(keyless, instance, asset_selection=[AGENT], raise_on_error=False,
                            run_config=agent_config({}))
    assert "RUNPOD_API_KEY" in failure(result)
    assert len(fake.created) == created
    monkeypatch.setenv("TRADECORE_TRAINING_COMPUTE", "gpu-cloud")
    with pytest.raises(ConfigError, match="TRADECORE_TRAINING_COMPUTE='gpu-cloud'"):
        default_compute()


HOT_GPU = "tests.lib.test_train_gpu:rising_probe"  # 60, 65, 70 ... degrees C, one per rollout


def test_the_thermal_guard_in_a_pod_fails_the_step_saying_so(chain, fake):
    result = train(chain, {"env": {"TRADECORE_GPU_PROBE": HOT_GPU}}, seed=10,
                   total_timesteps=4096, gpu={"max_temperature_c": 66})
    message = failure(result)
    assert "stopped by the thermal guard (exit code 75)" in message
    assert "a re-run resumes it" in message


def test_the_thermal_guard_in_a_local_run_fails_the_step_without_retries(chain, monkeypatch):
    monkeypatch.setenv("TRADECORE_GPU_PROBE", HOT_GPU)
    result = train(chain, None, seed=11, total_timesteps=4096, gpu={"max_temperature_c": 66})
    assert "stopped by the thermal guard" in failure(result)
    _, _, lake, *_ = chain
    stopped = list(Path(lake.root, "models", MARKET.name).glob("*/stopped.json"))
    assert [json.loads(p.read_text())["reason"] for p in stopped] == ["thermal_guard"]


def test_preemptions_beyond_the_limit_fall_back_to_an_on_demand_pod(chain, fake):
    fake.preempt_after(1.0, times=1)
    result = train(chain, {"interruptible": True, "max_preemptions": 0,
                           "on_demand_fallback": True}, seed=12)
    assert result.success, fake.logs()
    got = metadata(result)
    assert [(p["spot"], p["outcome"]) for p in got["runpod_pods"]] == \
        [(True, "preempted"), (False, "succeeded")]
    assert got["runpod_preemptions"] == 1


def test_preemptions_beyond_the_limit_fail_without_a_fallback(chain, fake):
    fake.preempt_after(1.0, times=1)
    result = train(chain, {"interruptible": True, "max_preemptions": 0}, seed=13)
    assert "preempted 1 times (max_preemptions 0, on_demand_fallback False)" in failure(result)
