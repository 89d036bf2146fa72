"""Runs whose worker process died are marked failed instead of staying ``STARTED`` forever.

Dagster's ``DefaultRunLauncher`` reports no worker health, so run monitoring (switched on in
the ``dagster.yaml`` the Makefile writes) enforces only start and cancel timeouts. The missing
piece is here:

- :func:`record_run_worker` tags a run with its worker process, ``tradecore/run_worker =
  <host>:<pid>:<start ticks>``. It runs at the start of every step that uses the ``lake``
  resource (every TradeCore asset and check does; see
  :meth:`~tradecore_pipelines.resources.LakeResource.setup_for_execution`). The worker is the
  process that orchestrates the run: under the multiprocess executor the step runs in a child
  of it, so it is the step process's parent; in process, the step's own process.
- :func:`build_run_worker_sensor` looks at the ``STARTED`` runs of this host every minute and
  reports a run failed when its recorded worker is gone (no such process, a zombie, or the pid
  reused by a process started later), naming the pid.

A worker on another host is never judged from here (the pid means nothing on this machine).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
from dataclasses import dataclass

import dagster as dg

RUN_WORKER_TAG = "tradecore/run_worker"


@dataclass(frozen=True)
class RunWorker:
    """A run's worker process: host name, pid, and its start time in clock ticks since boot
    (Linux ``/proc/<pid>/stat`` field 22; None where there is no ``/proc``)."""

    host: str
    pid: int
    start_ticks: int | None

    def tag(self) -> str:
        return f"{self.host}:{self.pid}:{'' if self.start_ticks is None else self.start_ticks}"

    @classmethod
    def parse(cls, tag: str) -> RunWorker | None:
        """The worker of a tag written by :meth:`tag`, or None for an absent or foreign tag."""
        parts = tag.rsplit(":", 2)
        try:
            host, pid, ticks = parts
            return cls(host, int(pid), int(ticks) if ticks else None)
        except ValueError:
            return None

    def alive(self) -> bool:
        """Whether the process still runs here (a zombie, or another process now holding the
        pid, is not the worker)."""
        state = _proc_state(self.pid)
        if state is not None:
            status, ticks = state
            return status != "Z" and (self.start_ticks is None or ticks == self.start_ticks)
        if os.path.isdir("/proc"):
            return False  # /proc lists every process: no entry, no process
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # someone else's process, alive
        return True


def _proc_state(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of ``pid`` from ``/proc``, or None when not available."""
    try:
        with open(f"/proc/{pid}/stat") as stat_file:
            text = stat_file.read()
    except OSError:
        return None
    # "pid (comm) state ppid ..." - comm may hold spaces and parentheses: split at the last ")".
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[19])


def current_run_worker() -> RunWorker:
    """The worker of the run this process executes a step of (see the module docstring)."""
    parent = multiprocessing.parent_process()
    pid = parent.pid if parent is not None and parent.pid is not None else os.getpid()
    state = _proc_state(pid)
    return RunWorker(socket.gethostname(), pid, state[1] if state else None)


def record_run_worker(instance: dg.DagsterInstance, run_id: str) -> None:
    """Tag run ``run_id`` with the worker process executing it (idempotent per worker)."""
    tag = current_run_worker().tag()
    run = instance.get_run_by_id(run_id)
    if run is not None and run.tags.get(RUN_WORKER_TAG) != tag:
        instance.add_run_tags(run_id, {RUN_WORKER_TAG: tag})


def build_run_worker_sensor(
    *,
    minimum_interval_seconds: int = 60,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """The sensor marking ``STARTED`` runs of this host failed when their worker is gone."""

    @dg.sensor(
        name="dead_run_worker_sensor",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Marks a STARTED run failed when the worker process recorded in its "
        f"{RUN_WORKER_TAG} tag is gone (killed, out of memory, machine restarted).",
    )
    def dead_run_worker_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        instance = context.instance
        host = socket.gethostname()
        marked = []
        started = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        for run in started:
            worker = RunWorker.parse(run.tags.get(RUN_WORKER_TAG, ""))
            if worker is None or worker.host != host or worker.alive():
                continue
            current = instance.get_run_by_id(run.run_id)
            if current is None or current.status != dg.DagsterRunStatus.STARTED:
                continue  # it finished between the two looks
            message = (f"run worker process {worker.pid} on {host} is gone (killed or crashed) "
                       "while the run was STARTED; marked failed by dead_run_worker_sensor. "
                       "Re-execute the run (or its failed steps) to finish the work.")
            instance.report_run_failed(current, message=message)
            context.log.warning(f"run {run.run_id}: {message}")
            marked.append(run.run_id)
        if marked:
            return dg.SkipReason(f"marked {len(marked)} run(s) failed: {', '.join(marked)}")
        return dg.SkipReason(f"all {len(started)} STARTED run(s) have a live worker or none here")

    return dead_run_worker_sensor
