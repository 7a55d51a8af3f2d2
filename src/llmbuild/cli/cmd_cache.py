"""`doit push` and `doit pull`: copy a build's artifacts to and from the remote cache (cache.url) by
hand. A build does both by itself; these fill a cache from a store built without it, or fetch a
build's artifacts before going offline."""

from __future__ import annotations

from doit.cmd_base import Command
from doit.exceptions import InvalidCommand

from ..errors import LlmbuildError
from ..plan.graph import Plan
from ..store import locks, remote
from ..store.artifacts import Store
from . import remote_cache, session
from .cluster import distinct_nodes
from .cmd_base import project_root


def _plans(args) -> list[Plan]:
    remote_cache.reset()
    try:
        plans = session.make_plans(project_root(), session.overrides(args))
    except LlmbuildError as err:
        raise InvalidCommand(str(err)) from None
    if any(plan.composed.cfg.cache.url is None for plan in plans):
        raise InvalidCommand("no cache: set cache.url (s3://bucket/prefix, file:///path), e.g. in conf/config.yaml")
    return plans


def _nodes(plans: list[Plan]):
    """(plan, stage, key) of every artifact of the plans, each once."""
    return ((plan, node.stage, node.key) for plan, _, node in distinct_nodes(plans))


class Push(Command):
    name = "push"
    doc_purpose = "send a build's finished artifacts to the cache (cache.url) that it lacks"
    doc_usage = "[overrides or sweep]"
    doc_description = ("Example: doit push cache.url=s3://team-bucket/llmbuild   |   doit push lora.r=8,16\n"
                       "A build sends what it builds by itself (cache.push); this sends what was built without\n"
                       "the cache. Artifacts that link files on this disk (a base model from a local folder) stay.")

    def execute(self, params, args):
        sent = there = kept = 0
        size = 0
        try:
            for plan, stage, key in _nodes(_plans(args)):
                store = Store(plan.store)
                if not store.is_complete(stage, key):
                    continue
                if remote_cache.objects(plan) is None:
                    raise InvalidCommand(f"the cache {plan.composed.cfg.cache.url} cannot be reached: nothing sent")
                count = remote_cache.send(plan, stage, key)
                if count is not None:
                    sent, size = sent + 1, size + count
                elif not remote.portable(store.path(stage, key)):
                    kept += 1
                else:
                    there += 1
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        print(f"sent {sent} artifact(s) ({size / 2**20:.1f} MiB); {there} in the cache already"
              + (f"; {kept} not sent (they link files on this disk)" if kept else ""))
        return 0


class Pull(Command):
    name = "pull"
    doc_purpose = "take a build's artifacts from the cache (cache.url) into the store"
    doc_usage = "[overrides or sweep]"
    doc_description = ("Example: doit pull cache.url=s3://team-bucket/llmbuild   |   doit pull quant=q8_0\n"
                       "A build takes what the cache has by itself; this fetches them before a build (to work\n"
                       "offline later). Then `doit build` with the same overrides links them and builds the rest.")

    def execute(self, params, args):
        taken = missing = 0
        try:
            for plan, stage, key in _nodes(_plans(args)):
                store = Store(plan.store)
                if store.is_complete(stage, key):
                    continue
                if remote_cache.objects(plan) is None:
                    raise InvalidCommand(f"the cache {plan.composed.cfg.cache.url} cannot be reached: nothing taken")
                locks.building_in(store)
                with locks.artifact(store, stage, key):
                    if store.is_complete(stage, key) or remote_cache.take(plan, stage, key):
                        taken += 1
                    else:
                        missing += 1
        except LlmbuildError as err:
            raise InvalidCommand(str(err)) from None
        finally:
            locks.release_all()
        print(f"took {taken} artifact(s) from the cache; {missing} not in it (a build makes them)")
        return 0
