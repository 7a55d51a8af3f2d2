"""A composed configuration -> its build graph: one node (stage, key) per stage. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.compose import Composed
from ..config.derived import chat_family
from ..config.schema import NOT_BUILT
from ..errors import ConfigError
from ..facts.chat_families import FAMILIES, OLLAMA_TEMPLATE_FILE
from ..facts.layout import VLLM_SCHEME, ladder, ladder_slot, vllm_slot
from ..facts.names import digest, sanitize, shorten
from ..facts.quant_types import IMATRIX_REQUIRED, QUANT_TYPES, own_imatrix, uses_imatrix
from ..facts.secrets import is_secret
from ..facts.tool_envs import ENVS
from ..facts.train_methods import TEXT, method
from ..facts.vllm_schemes import MERGED, SCHEMES, built
from ..files import envs
from ..files.paths import project_path
from ..files.templates import FOLDER as TEMPLATES_FOLDER
from ..store.digests import DigestCache
from . import pipeline
from .keys import input_fingerprints, make_key, payload
from .stages import ORDER, STAGES

MAX_VARIANT_NAME = 120


@dataclass(frozen=True)
class Node:
    stage: str
    key: str
    payload: dict[str, Any]
    overrides: tuple[tuple[str, Any], ...] = ()   # config values this node builds with instead of the variant's
    sources: tuple[tuple[str, str], ...] = ()     # input name -> the slot that builds it, where they differ
    cfg: DictConfig | None = field(default=None, compare=False, repr=False)  # a pipeline stage's config

    @property
    def task_name(self) -> str:
        return f"{self.stage}:{self.key[:8]}"

    @property
    def inputs(self) -> dict[str, str]:
        """Input name (as the stage reads ctx.inputs) -> the plan slot that builds it."""
        named = dict(self.sources)
        return {name: named.get(name, name) for name in self.payload["upstream"]}


@dataclass(frozen=True)
class Plan:
    variant: str
    composed: Composed
    nodes: dict[str, Node]       # slot -> node, in build order; a slot is a stage name,
                                 # "quantize@<type>" for a quant of the eval ladder, "vllm_quant@<scheme>"
                                 # for a vLLM checkpoint, "train@<step>" for a pipeline's earlier stage
    root: Path
    store: Path
    digests: DigestCache = field(repr=False, compare=False)


def variant_name(composed: Composed) -> str:
    """`name=...` when given; else a readable, stable name: the recipe, then the user's overrides
    (`demo_quant-q8_0`). A path value shows its last part. When the name cannot show an override
    exactly (characters a file name cannot hold, a path cut to its last part), a digest of the
    overrides ends it, so that two configurations never share a name. Overrides that build nothing
    (schema.NOT_BUILT) and credentials are left out: a name never shows a secret."""
    if composed.cfg.name:
        return composed.cfg.name
    parts, named, lossy = [composed.recipe], [], False
    for item in composed.overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if key == "recipes" or key.startswith(tuple(NOT_BUILT)) or is_secret(key):
            continue
        named.append(item.lstrip("+"))
        value = item.split("=", 1)[1] if "=" in item else None
        shown = Path(value).name or value if value is not None and "/" in value else value
        readable = f"no-{key}" if item.startswith("~") else key if value is None else f"{key}-{shown}"
        part = sanitize(readable)
        lossy = lossy or part != readable or shown != value
        parts.append(part)
    name = "_".join(parts)
    if lossy:
        name = f"{name}-{digest(chr(0).join(named))}"
    return shorten(name, MAX_VARIANT_NAME)  # stays a valid, unique file name


def template_digests(stage: str, family: str | None, root: Path, digests: DigestCache) -> dict[str, str]:
    """The digests of the stage's template files. `family` None: the model's own template decides
    the family when the build runs, so a family's file counts for every family."""
    out = {}
    for pattern in STAGES[stage].templates:
        if "{family}" not in pattern or family:
            names = [family]
        else:   # llmbuild's own chat templates serve only a named family; Ollama's serve the detected one
            names = sorted(FAMILIES) if pattern == OLLAMA_TEMPLATE_FILE else []
        for name in names:
            relative = pattern.format(family=name)
            path = root / TEMPLATES_FOLDER / relative
            out[relative] = digests.digest(path) if path.is_file() else "missing"
    return out


def ladder_types(cfg) -> list[str]:
    """The extra quant types eval compares with the shipped one (eval.quants, minus quant.type)."""
    return ladder(cfg.eval.quants, cfg.quant.type) if cfg.eval.enabled else []


def quant_types(cfg) -> list[str]:
    """Every GGUF type a configuration quantizes: quant.type, then the eval ladder's."""
    return [cfg.quant.type, *ladder_types(cfg)]


def imatrix_wanted(cfg) -> bool:
    """Whether a type the configuration quantizes reads the importance matrix."""
    return any(uses_imatrix(quant_type, cfg.quant.imatrix) for quant_type in quant_types(cfg))


def compared_without_imatrix(cfg) -> list[str]:
    """eval.compare_imatrix: the types also built without their importance matrix (those llmbuild builds
    only with one, the i-quants and q2_k, are not)."""
    if not (cfg.eval.enabled and cfg.eval.compare_imatrix):
        return []
    return [quant_type for quant_type in quant_types(cfg)
            if uses_imatrix(quant_type, cfg.quant.imatrix) and QUANT_TYPES[quant_type].imatrix != IMATRIX_REQUIRED]


def quant_inputs(nodes, cfg, quant_type: str, imatrix: bool = True) -> dict[str, str]:
    """A quantize node's inputs: the converted GGUF, and the importance matrix when the type reads one
    (a q8_0 is the same file whatever quant.imatrix says, and shares its key)."""
    upstream = {up: nodes[up].key for up in STAGES["quantize"].upstream}
    if imatrix and uses_imatrix(quant_type, cfg.quant.imatrix):
        upstream["imatrix"] = nodes["imatrix"].key
    return upstream


def _ladder_quant(nodes, cfg, plain, quant_type, digests, root, family, strict, imatrix: bool = True) -> Node:
    """The quantize node a variant with quant=<quant_type> would have: same key, so a sweep over
    quant types and an eval ladder share their artifacts (`imatrix` False: as with quant.imatrix=none)."""
    spec = STAGES["quantize"]
    plain = {**plain, "quant": {**plain["quant"], "type": quant_type}}
    body = payload(spec, cfg, quant_inputs(nodes, cfg, quant_type, imatrix),
                   input_fingerprints("quantize", cfg, root, digests, strict),
                   template_digests("quantize", family, root, digests), plain)
    return Node("quantize", make_key(body), body, (("quant.type", quant_type),))


def _own_imatrix(cfg, plain, digests, root, strict) -> Node:
    """quant.imatrix=<file>: the user's importance matrix, keyed by its content alone (not its path,
    and not the model or calibration settings, which it does not depend on)."""
    spec = STAGES["imatrix"]
    plain = {**plain, "quant": {**plain["quant"], "imatrix": "own file", "imatrix_ctx": None,
                                "imatrix_chunks": None}}
    body = payload(spec, cfg, {}, input_fingerprints("imatrix", cfg, root, digests, strict), {}, plain)
    return Node("imatrix", make_key(body), body)


def schemes(cfg) -> list[str]:
    """The vLLM checkpoints a configuration builds (target.vllm.quants and the served one)."""
    settings = cfg.target.vllm
    return built(settings.quants, settings.serve) if settings is not None else []


def _env_tools(spec, cfg, root: Path, strict: bool) -> dict[str, Any] | None:
    """The versions in the stage's own tool environment, when it runs tools there. Strict: a missing
    environment is an error before anything is built."""
    if spec.tool_env is None or not (spec.per_scheme or schemes(cfg)):
        return None
    env = ENVS[spec.tool_env]
    if strict and not envs.available(env, root):
        raise ConfigError(f"target.vllm builds {', '.join(schemes(cfg))} (target.vllm.quants, target.vllm.serve): "
                          f"{envs.missing_message(env, root)}")
    return {name: version or "not installed" for name, version in envs.versions(env, root).items()
            if name in env.versions}


def _scheme_node(nodes, cfg, plain, scheme: str, digests, root, family, strict) -> Node:
    """The checkpoint of one scheme: keyed with the scheme, and with the calibration settings only when
    the scheme calibrates (an fp8 checkpoint is the same whatever they say)."""
    spec = STAGES["vllm_quant"]
    settings = dict(plain["target"]["vllm"])
    if not SCHEMES[scheme].calibrated:
        settings.update(calibration_samples=None, calibration_max_len=None)
    plain = {**plain, "target": {**plain["target"], "vllm": settings}, VLLM_SCHEME: scheme}
    body = payload(spec, cfg, {up: nodes[up].key for up in spec.upstream},
                   input_fingerprints("vllm_quant", cfg, root, digests, strict),
                   template_digests("vllm_quant", family, root, digests), plain,
                   _env_tools(spec, cfg, root, strict))
    return Node("vllm_quant", make_key(body), body, ((VLLM_SCHEME, scheme),))


# stages that start from the model the training before them made: in a pipeline, the merged model
# of the previous training stage stands in for the base (and the base, as "origin", gives the chat
# template the whole pipeline trains and deploys with)
TRAINS_ON_MODEL = ("train", "merge", "lora_gguf")
ORIGIN = "origin"


def _sources(upstream: tuple[str, ...], trained_on: str | None) -> dict[str, str]:
    """Input name -> slot, for the inputs that a pipeline redirects."""
    if trained_on is None:
        return {}
    return {"base": trained_on, ORIGIN: "base"} if "base" in upstream else {}


def _step_node(nodes, stage: str, step: pipeline.Step, trained_on: str | None, digests, root, family,
               strict) -> Node:
    """The node of `stage` for an earlier training stage of the pipeline: keyed with that stage's
    own dataset, lora and train, its own data node and the model it starts from."""
    spec = STAGES[stage]
    sources = {name: pipeline.slot(name, step.name) for name in spec.upstream if name in pipeline.STEP_STAGES}
    sources.update(_sources(spec.upstream, trained_on))
    upstream = {name: nodes[sources.get(name, name)].key for name in (*spec.upstream, *sources)}
    body = payload(spec, step.cfg, upstream, input_fingerprints(stage, step.cfg, root, digests, strict),
                   template_digests(stage, family, root, digests), step.plain)
    return Node(stage, make_key(body), body, sources=tuple(sources.items()), cfg=step.cfg)


def build_plan(composed: Composed, root: Path, digests: DigestCache | None = None, strict: bool = True) -> Plan:
    save_digests = digests is None
    root = Path(root).resolve()
    cfg = composed.cfg
    store = project_path(cfg.store, root)
    digests = digests or DigestCache(store / ".cache" / "digests.json")
    family = chat_family(cfg)
    plain = composed.to_container()
    nodes: dict[str, Node] = {}
    trained_on: str | None = None   # the slot of the model the next training stage starts from (None: base)
    for stage in ORDER:
        spec = STAGES[stage]
        if spec.target and cfg.target[spec.target] is None:
            continue  # a deploy target this configuration does not ask for
        if spec.enabled_by and not OmegaConf.select(cfg, spec.enabled_by):
            continue  # e.g. eval.enabled=false
        if spec.chat and method(cfg.train.stage).data == TEXT:
            continue  # the smoke test chats; a model only pretrained further on text is no chat model
        if stage == "imatrix" and not imatrix_wanted(cfg):
            continue  # no type built reads one (q8_0, or quant.imatrix=none)
        if stage == "imatrix" and own_imatrix(cfg.quant.imatrix):
            nodes[stage] = _own_imatrix(cfg, plain, digests, root, strict)
            continue
        if stage == pipeline.STEP_STAGES[0]:
            for step in pipeline.earlier_steps(cfg, plain):
                for step_stage in pipeline.STEP_STAGES:
                    nodes[pipeline.slot(step_stage, step.name)] = _step_node(
                        nodes, step_stage, step, trained_on, digests, root, family, strict)
                trained_on = pipeline.slot("merge", step.name)
        if spec.per_scheme:
            for scheme in schemes(cfg):
                nodes[vllm_slot(scheme)] = _scheme_node(nodes, cfg, plain, scheme, digests, root, family, strict)
            continue
        sources = _sources(spec.upstream, trained_on) if stage in TRAINS_ON_MODEL else {}
        upstream = {name: nodes[sources.get(name, name)].key for name in (*spec.upstream, *sources)}
        upstream.update({name: nodes[name].key for name in spec.optional_upstream if name in nodes})
        if stage == "quantize":
            upstream = quant_inputs(nodes, cfg, cfg.quant.type)
        if spec.earlier_models:
            upstream.update({slot: node.key for slot, node in nodes.items() if node.stage == "merge" and "@" in slot})
        if spec.quant_ladder:
            for quant_type in ladder_types(cfg):
                slot = ladder_slot(quant_type)
                nodes[slot] = _ladder_quant(nodes, cfg, plain, quant_type, digests, root, family, strict)
                upstream[slot] = nodes[slot].key
            for quant_type in compared_without_imatrix(cfg):
                slot = ladder_slot(quant_type, imatrix=False)
                nodes[slot] = _ladder_quant(nodes, cfg, plain, quant_type, digests, root, family, strict, False)
                upstream[slot] = nodes[slot].key
        if spec.vllm_schemes:
            wanted = schemes(cfg) if spec.vllm_schemes == "all" else [
                s for s in [cfg.target.vllm.serve] if s != MERGED]
            upstream.update({vllm_slot(s): nodes[vllm_slot(s)].key for s in wanted})
        body = payload(spec, cfg, upstream, input_fingerprints(stage, cfg, root, digests, strict),
                       template_digests(stage, family, root, digests), plain, _env_tools(spec, cfg, root, strict))
        nodes[stage] = Node(stage, make_key(body), body, sources=tuple(sources.items()))
    if save_digests:
        digests.save()
    return Plan(variant_name(composed), composed, nodes, root, store, digests)
