"""A real one-node Slurm cluster on this machine for the launcher tests: Debian's slurm-wlm and munge
(README "Set up" installs them), started as root without systemd, stopped by pid. Accounting is
off (llmbuild reads job states from squeue, which needs none). A requeued job waits cred_expire
seconds before it may start again (5 here, Slurm's default 120) and then for the schedulers' next
pass (every second here; by default 30 s for backfill, 60 s for the main one); a cancelled job's
processes get SIGKILL 2 s after SIGTERM (KillWait, 30 s by default)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SLURM_CONF = Path("/etc/slurm/slurm.conf")
MUNGE_PID = Path("/run/munge/munged.pid")


def missing() -> str | None:
    """Why a cluster cannot be started here, or None."""
    absent = [name for name in ("slurmctld", "slurmd", "sbatch", "squeue", "munged")
              if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists()]
    if absent:
        return f"{', '.join(absent)} not installed (apt-get install slurm-wlm munge, README 'Set up')"
    if os.geteuid() != 0:
        return "the one-node cluster is started as root"
    return None


def _conf(state: Path) -> str:
    host = socket.gethostname().split(".")[0]
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2000
    return f"""ClusterName=llmbuildtest
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=5
SchedulerParameters=bf_interval=1,sched_interval=1
KillWait=2
StateSaveLocation={state}/state
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/log/slurmctld.log
SlurmdLogFile={state}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobRequeue=1
NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


def start(state: Path) -> None:
    for folder in ("state", "spool", "log"):
        (state / folder).mkdir(parents=True, exist_ok=True)
    SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
    SLURM_CONF.write_text(_conf(state))
    if not _alive(MUNGE_PID):   # started here: stopped here too
        subprocess.run(["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", "/run/munge"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", _sbin("munged")], check=True)
        (state / "munged.started").write_text(MUNGE_PID.read_text())
    subprocess.run([_sbin("slurmctld")], check=True)
    subprocess.run([_sbin("slurmd")], check=True)
    host = socket.gethostname().split(".")[0]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        shown = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True).stdout
        if shown.strip() == "idle":
            return
        if "drain" in shown:   # a step that outlived an earlier cluster's daemons reported its kill failed
            subprocess.run(["scontrol", "update", f"nodename={host}", "state=resume"], capture_output=True)
        time.sleep(0.2)
    raise RuntimeError(f"slurm did not come up: {(state / 'log' / 'slurmctld.log').read_text()[-2000:]}")


def stop(state: Path) -> None:
    """Cancel every job, wait for their steps to end (a step whose daemons are gone cannot report
    its end, and leaves the node drained), then stop the daemons."""
    subprocess.run(["scancel", "--user=root"], capture_output=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h"], capture_output=True, text=True).stdout.strip()
        steps = subprocess.run(["pgrep", "-x", "slurmstepd"], capture_output=True, text=True).stdout.strip()
        if not queued and not steps:
            break
        time.sleep(0.5)
    for pid_file in (state / "slurmd.pid", state / "slurmctld.pid", state / "munged.started"):
        _kill(pid_file)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def _kill(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
