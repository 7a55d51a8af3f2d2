"""A composed configuration -> its build graph: one node (stage, key) per stage. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..config.compose import Composed
from ..config.derived import chat_family
from ..config.schema import RUNTIME_KEYS
from ..facts.chat_families import FAMILIES, OLLAMA_TEMPLATE_FILE
from ..facts.layout import ladder, ladder_slot
from ..facts.names import digest, sanitize, shorten
from ..facts.secrets import is_secret
from ..files.paths import project_path
from ..files.templates import FOLDER as TEMPLATES_FOLDER
from ..store.digests import DigestCache
from .keys import input_fingerprints, make_key, payload
from .stages import ORDER, STAGES

MAX_VARIANT_NAME = 120


@dataclass(frozen=True)
class Node:
    stage: str
    key: str
    payload: dict[str, Any]
    overrides: tuple[tuple[str, Any], ...] = ()   # config values this node builds with instead of the variant's

    @property
    def task_name(self) -> str:
        return f"{self.stage}:{self.key[:8]}"


@dataclass(frozen=True)
class Plan:
    variant: str
    composed: Composed
    nodes: dict[str, Node]       # slot -> node, in build order; a slot is a stage name, or
                                 # "quantize@<type>" for a quant of the eval ladder
    root: Path
    store: Path
    digests: DigestCache = field(repr=False, compare=False)


def variant_name(composed: Composed) -> str:
    """`name=...` when given; else a readable, stable name: the recipe, then the user's overrides
    (`demo_quant-q8_0`). A path value shows its last part. When the name cannot show an override
    exactly (characters a file name cannot hold, a path cut to its last part), a digest of the
    overrides ends it, so that two configurations never share a name. Overrides that build nothing
    (RUNTIME_KEYS) and credentials are left out: a name never shows a secret."""
    if composed.cfg.name:
        return composed.cfg.name
    parts, named, lossy = [composed.recipe], [], False
    for item in composed.overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if key == "recipes" or key.startswith(RUNTIME_KEYS) or is_secret(key):
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


def _ladder_quant(nodes, cfg, plain, quant_type, digests, root, family, strict) -> Node:
    """The quantize node a variant with quant=<quant_type> would have: same key, so a sweep over
    quant types and an eval ladder share their artifacts."""
    spec = STAGES["quantize"]
    plain = {**plain, "quant": {**plain["quant"], "type": quant_type}}
    body = payload(spec, cfg, {up: nodes[up].key for up in spec.upstream},
                   input_fingerprints("quantize", cfg, root, digests, strict),
                   template_digests("quantize", family, root, digests), plain)
    return Node("quantize", make_key(body), body, (("quant.type", quant_type),))


def build_plan(composed: Composed, root: Path, digests: DigestCache | None = None, strict: bool = True) -> Plan:
    save_digests = digests is None
    root = Path(root).resolve()
    cfg = composed.cfg
    store = project_path(cfg.store, root)
    digests = digests or DigestCache(store / ".cache" / "digests.json")
    family = chat_family(cfg)
    plain = composed.to_container()
    nodes: dict[str, Node] = {}
    for stage in ORDER:
        spec = STAGES[stage]
        if spec.target and cfg.target[spec.target] is None:
            continue  # a deploy target this configuration does not ask for
        if spec.enabled_by and not OmegaConf.select(cfg, spec.enabled_by):
            continue  # e.g. eval.enabled=false
        upstream = {name: nodes[name].key for name in spec.upstream}
        upstream.update({name: nodes[name].key for name in spec.optional_upstream if name in nodes})
        if spec.quant_ladder:
            for quant_type in ladder_types(cfg):
                slot = ladder_slot(quant_type)
                nodes[slot] = _ladder_quant(nodes, cfg, plain, quant_type, digests, root, family, strict)
                upstream[slot] = nodes[slot].key
        body = payload(spec, cfg, upstream, input_fingerprints(stage, cfg, root, digests, strict),
                       template_digests(stage, family, root, digests), plain)
        nodes[stage] = Node(stage, make_key(body), body)
    if save_digests:
        digests.save()
    return Plan(variant_name(composed), composed, nodes, root, store, digests)
