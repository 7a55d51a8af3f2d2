"""Stage keys: a short hash of everything that decides a stage's output. Pure and fast: no model
file is read (input files are fingerprinted through the size/mtime digest cache)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters.gguf_split import shards_of
from ..config.schema import SIZING_KEYS
from ..config.validate import chat_family
from ..errors import ConfigError
from ..store import DigestCache
from .stages import StageSpec

KEY_LENGTH = 16

# values derived from several keys, read under these names: `prompt.template: null` and an
# explicit `prompt.template: chatml` on a ChatML model are the same build
DERIVED = {"chat_format": chat_family}


def config_slice(cfg: DictConfig, reads: tuple[str, ...], plain: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of `reads`; `plain` is the same config as a dict, when the caller has it."""
    plain = plain if plain is not None else OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    out = {}
    for key in reads:
        if key in DERIVED:
            out[key] = DERIVED[key](cfg)
            continue
        value: Any = plain
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        out[key] = _without_sizing_keys(key, value)
    return out


def _without_sizing_keys(key: str, value: Any) -> Any:
    """A group read whole, less the keys only `doit size` reads (schema.SIZING_KEYS)."""
    hidden = {k.split(".", 1)[1] for k in SIZING_KEYS if k.startswith(f"{key}.")}
    if not hidden or not isinstance(value, dict):
        return value
    return {k: v for k, v in value.items() if k not in hidden}


@lru_cache(maxsize=None)
def tool_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def make_key(payload: dict[str, Any]) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:KEY_LENGTH]


def payload(spec: StageSpec, cfg: DictConfig, upstream: dict[str, str], inputs: dict[str, str],
            templates: dict[str, str], plain: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "stage": spec.name,
        "version": spec.version,
        "config": config_slice(cfg, spec.reads, plain),
        "upstream": dict(upstream),
        "inputs": dict(inputs),
        "templates": dict(templates),
        "tools": {name: tool_version(name) for name in spec.tools + tuple(
            tool for key, tool in spec.tools_if if OmegaConf.select(cfg, key) is not None)},
    }


def resolve_model_path(value: str, root: Path) -> Path:
    """`pkg:<module>/<file>` -> the file inside an installed package (found without importing it)."""
    if value.startswith("pkg:"):
        module, _, relative = value[4:].partition("/")
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise ConfigError(f"model.path = {value!r}: the Python package '{module}' is not installed. "
                              f"Install it (pip install {module.replace('_', '-')}) or point model.path at a file.")
        return Path(list(spec.submodule_search_locations)[0]) / relative
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path


def input_fingerprints(stage: str, cfg: DictConfig, root: Path, digests: DigestCache,
                       strict: bool = True) -> dict[str, str]:
    """Digests of the files a stage reads from outside the store. Not strict: a missing file is
    fingerprinted as missing (for locks and diffs of recipes whose data is not here yet)."""
    if stage == "base" and cfg.model.path:
        path = resolve_model_path(cfg.model.path, root)
        if not path.exists() and not strict:
            return {"model": "missing"}
        if not path.exists():
            raise ConfigError(
                f"model.path = {cfg.model.path!r}: {path} does not exist. Point model.path at an HF model "
                f"folder (config.json + weights + tokenizer) or a .gguf file.")
        shards = shards_of(path)
        if shards:  # a split GGUF: every file of it is an input
            return {p.name: digests.fingerprint(p) if p.exists() else "missing" for p in shards}
        return {"model": digests.fingerprint(path)}
    if stage == "data":
        path = root / cfg.dataset.path if not Path(cfg.dataset.path).is_absolute() else Path(cfg.dataset.path)
        if not path.is_file() and not strict:
            return {"dataset": "missing"}
        if not path.is_file():
            raise ConfigError(
                f"dataset.path = {cfg.dataset.path!r}: no such file ({path}). Put the dataset there or set "
                f"dataset.path to a JSON/JSONL file.")
        return {"dataset": digests.digest(path)}
    return {}
