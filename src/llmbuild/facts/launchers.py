"""Where stages run (config group `launcher`), and the job resources a cluster launcher takes, under
hydra-submitit-launcher's names so that a Hydra user's settings carry over."""

from __future__ import annotations

LOCAL, SLURM, SUBMITIT_LOCAL = "local", "slurm", "submitit_local"
LAUNCHERS = {LOCAL: "this machine: doit's own tasks",
             SLURM: "a Slurm job per stage that takes minutes (submitit)",
             SUBMITIT_LOCAL: "those jobs as processes on this machine (submitit's local executor)"}
RESOURCES = ("partition", "gpus_per_node", "cpus_per_task", "mem_gb", "timeout_min", "account", "qos",
             "constraint", "setup", "additional_parameters")
