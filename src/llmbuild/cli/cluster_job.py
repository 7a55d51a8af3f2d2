"""What a cluster job runs: one node of a variant's plan, built by llmbuild's own code against the
same store (the project and the store on a disk every node mounts, one environment on every node).

The job composes the variant again from its overrides, in the project folder, and builds the node
as `doit build` would (its key's lock, the remote cache, the resume folder); a key that differs from
the one submitted (the project's config changed meanwhile) builds nothing. Preempted or out of time,
Slurm signals the job and submitit requeues it (`checkpoint`): the requeued job finds the
checkpoints the training saved in the key's resume folder and goes on from there."""

from __future__ import annotations

import os
from pathlib import Path

from doit.exceptions import TaskFailed

from ..errors import LlmbuildError

IN_JOB = "LLMBUILD_CLUSTER_JOB"   # set inside a job: the scheduler placed it, so no per-host train slot


class NodeJob:
    def __init__(self, root: Path, overrides: tuple[str, ...], slot: str, key: str):
        self.root, self.overrides, self.slot, self.key = str(root), tuple(overrides), slot, key

    def __call__(self) -> str:
        from . import session, tasks

        os.environ[IN_JOB] = "1"
        os.chdir(self.root)
        plan = session.make_plans(Path(self.root), list(self.overrides), session.SINGLE)[0]
        node = plan.nodes.get(self.slot)
        if node is None or node.key != self.key:
            raise LlmbuildError(f"{self.slot}: the project's config changed since this job was submitted (its key "
                                f"is now {node.key[:8] if node else 'gone'}, was {self.key[:8]}): nothing built. "
                                f"Run the command again to submit what it needs now")
        try:
            failed = tasks.run_stage(plan, self.slot)
        finally:
            from ..store import locks

            locks.release_all()
        if isinstance(failed, TaskFailed):
            raise LlmbuildError(failed.message)
        return self.key

    def checkpoint(self, *args, **kwargs):
        """submitit: on preemption or time-out, requeue this same job."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)
