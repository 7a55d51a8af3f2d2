"""Jobs on a cluster through submitit (the library under Hydra's submitit launcher): submit a callable
as a Slurm job (`slurm`) or as a process on this machine (`local`, submitit's local executor), with
Slurm dependencies (`afterok`), and ask what became of a job later, from any process.

Resources use hydra-submitit-launcher's names (partition, gpus_per_node, cpus_per_task, mem_gb,
timeout_min, account, qos, constraint, setup, additional_parameters). A job's state is read from
Slurm's queue (`squeue`, which needs no accounting) or, for a local job, its process; its outcome
from the result file submitit writes when the callable returns or raises."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ..errors import ToolError
from ..facts.launchers import RESOURCES

SLURM, LOCAL = "slurm", "local"
PENDING, RUNNING, ENDED = "pending", "running", "ended"

# hydra-submitit-launcher's resource names -> submitit's AutoExecutor parameters
_PARAMETERS = {"partition": "slurm_partition", "gpus_per_node": "gpus_per_node", "cpus_per_task": "cpus_per_task",
               "mem_gb": "mem_gb", "timeout_min": "timeout_min", "account": "slurm_account", "qos": "slurm_qos",
               "constraint": "slurm_constraint", "setup": "slurm_setup",
               "additional_parameters": "slurm_additional_parameters"}
assert tuple(_PARAMETERS) == RESOURCES


@dataclass(frozen=True)
class Submitted:
    job_id: str
    log: Path        # the job's output (stdout and stderr)


def available(cluster: str) -> str | None:
    """Why jobs cannot be submitted here, or None."""
    if cluster == SLURM and shutil.which("sbatch") is None:
        return "sbatch is not on PATH (not a Slurm login node)"
    return None


def submit(cluster: str, folder: Path, name: str, work: Callable[[], Any], resources: Mapping[str, Any],
           after: list[str]) -> Submitted:
    """Submit `work` (picklable) as one job; `after`: job ids it waits for (Slurm: afterok, and a job
    whose input failed is cancelled rather than left pending). Slurm's refusal is one ToolError with
    Slurm's own words."""
    import submitit
    from submitit.core.utils import FailedJobError

    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    given = {_PARAMETERS[name]: value for name, value in resources.items()
             if name in _PARAMETERS and value not in (None, [], {}) and not (name == "gpus_per_node" and value == 0)}
    if cluster == SLURM:
        extra = dict(given.pop("slurm_additional_parameters", {}) or {})
        if after:
            extra.update(dependency=f"afterok:{':'.join(after)}", kill_on_invalid_dep="yes")
        given["slurm_additional_parameters"] = extra
        given.setdefault("slurm_setup", [])
    else:
        given = {key: value for key, value in given.items() if not key.startswith("slurm_")}
    executor.update_parameters(name=name, **given)
    try:
        job = executor.submit(work)
    except FailedJobError as err:
        raise ToolError(f"sbatch refused the job: {' '.join(str(err).split())}") from None
    except subprocess.CalledProcessError as err:
        said = (err.stderr or err.output or b"")
        said = said.decode(errors="replace") if isinstance(said, bytes) else str(said)
        raise ToolError(f"sbatch refused the job: {' '.join(said.split()) or err}") from None
    except FileNotFoundError as err:
        raise ToolError(f"cannot submit: {err}") from None
    return Submitted(str(job.job_id), Path(job.paths.stdout))


def state(cluster: str, job_id: str) -> tuple[str, str]:
    """(pending | running | ended, where): what the queue says of the job now; `where` is the node
    it runs on or Slurm's reason for waiting."""
    if cluster == LOCAL:
        try:
            os.kill(int(job_id), 0)
        except (ProcessLookupError, ValueError):
            return ENDED, ""
        except PermissionError:
            pass
        return RUNNING, "this machine"
    try:
        done = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T|%N|%r"], capture_output=True, text=True)
    except OSError:   # no Slurm client on this machine: nothing known to be queued
        return ENDED, ""
    line = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else ""
    if not line:
        return ENDED, ""
    slurm_state, node, reason = (line.split("|") + ["", ""])[:3]
    if slurm_state in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "SUSPENDED"):
        return PENDING, reason if reason not in ("None", "") else slurm_state.lower()
    if slurm_state in ("RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"):
        return RUNNING, node
    return ENDED, ""


def outcome(folder: Path, job_id: str) -> tuple[bool, str] | None:
    """(succeeded, the error's last line) from the result submitit wrote; None when it wrote none (the
    job is waiting or running, or it was killed, cancelled or lost with its node)."""
    result = Path(folder) / f"{job_id}_0_result.pkl"
    try:
        with open(result, "rb") as handle:
            kind, value = pickle.load(handle)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, AttributeError, ImportError):
        return None
    if kind == "success":
        return True, ""
    lines = [line.strip() for line in str(value).splitlines() if line.strip()]
    errors = [line for line in lines if re.match(r"^[\w.]+(Error|Exception|Failed)\b", line)]
    return False, (errors or lines or ["failed"])[-1][:500]


def cancel(cluster: str, job_ids: list[str]) -> None:
    if not job_ids:
        return
    if cluster == SLURM:
        subprocess.run(["scancel", *job_ids], capture_output=True)
    else:
        for job_id in job_ids:
            try:
                os.kill(int(job_id), 15)
            except (ProcessLookupError, ValueError):
                pass

