"""Which cluster job builds which artifact: `<store>/.jobs/<stage>-<key>.json`, written when the job
is submitted, so that any later command, on any host that shares the store, submits nothing for an
artifact a job is building and can say where it is. submitit's own files (the pickled job, its log,
its result) are in `<store>/.jobs/submitit/`."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..facts.layout import JOBS_DIR
from ..files.atomic import write_atomic
from .artifacts import Store

SUBMITIT_DIR = "submitit"


@dataclass(frozen=True)
class JobRecord:
    stage: str
    key: str
    cluster: str          # adapters/cluster_jobs: slurm or local
    job_id: str
    log: str              # the job's output
    variant: str          # a variant that needs it (the first submitted for)
    submitted_from: str   # the host that submitted it
    submitted: str        # when


def folder(store: Store) -> Path:
    return store.root / JOBS_DIR


def submitit_folder(store: Store) -> Path:
    return folder(store) / SUBMITIT_DIR


def _path(store: Store, stage: str, key: str) -> Path:
    return folder(store) / f"{stage}-{key}.json"


def record(store: Store, stage: str, key: str, cluster: str, job_id: str, log: Path, variant: str) -> JobRecord:
    entry = JobRecord(stage, key, cluster, job_id, str(log), variant, socket.gethostname(),
                      time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _path(store, stage, key).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(_path(store, stage, key), json.dumps(asdict(entry), indent=2) + "\n")
    return entry


def read(store: Store, stage: str, key: str) -> JobRecord | None:
    try:
        return JobRecord(**json.loads(_path(store, stage, key).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None


def forget(store: Store, stage: str, key: str) -> None:
    """The record of a job that was cancelled before it ran."""
    _path(store, stage, key).unlink(missing_ok=True)
