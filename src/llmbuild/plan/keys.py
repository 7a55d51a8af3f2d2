"""Stage keys: a short hash of everything that decides a stage's output. Pure and fast: no model
file is read (input files are fingerprinted through the size/mtime digest cache)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config.derived import DERIVED
from ..config.schema import NOT_BUILT
from ..errors import ConfigError
from ..facts.quant_types import OWN_IMATRIX, own_imatrix
from ..facts.secrets import is_secret
from ..files.model_path import ACCEPTED, inspect_model_path
from ..files.paths import project_path, resolve_model_path
from ..store.digests import DigestCache
from .stages import StageSpec

KEY_LENGTH = 16


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
        out[key] = _without_unbuilt_keys(key, value)
    return out


def _without_unbuilt_keys(key: str, value: Any) -> Any:
    """A group read whole, less the keys that change no artifact (schema.NOT_BUILT) and the
    credentials (a tool gets those through its environment: facts/secrets.py)."""
    if not isinstance(value, dict):
        return value
    hidden = {k.split(".", 1)[1] for k in NOT_BUILT if k.startswith(f"{key}.")}
    return {k: _without_unbuilt_keys(f"{key}.{k}", v) for k, v in value.items()
            if k.split(".")[0] not in hidden and not is_secret(str(k))}


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
            templates: dict[str, str], plain: dict[str, Any] | None = None,
            env_tools: dict[str, Any] | None = None) -> dict[str, Any]:
    """`env_tools`: the versions of the tools the stage runs in an environment of their own."""
    body = {
        "stage": spec.name,
        "version": spec.version,
        "config": config_slice(cfg, spec.reads, plain),
        "upstream": dict(upstream),
        "inputs": dict(inputs),
        "templates": dict(templates),
        "tools": {name: tool_version(name) for name in stage_tools(spec, cfg)},
    }
    if env_tools:
        body["env_tools"] = dict(env_tools)
    return body


def stage_tools(spec: StageSpec, cfg: DictConfig) -> tuple[str, ...]:
    """The tools whose versions are part of the stage's key under `cfg`: its own, and those of its
    `tools_if` conditions that hold."""
    return spec.tools + tuple(tool for key, tool in spec.tools_if if _wanted(cfg, key))


def _wanted(cfg: DictConfig, condition: str) -> bool:
    """A `tools_if` condition: the key is set, or ("key=prefix") its value starts with prefix."""
    key, _, prefix = condition.partition("=")
    value = OmegaConf.select(cfg, key)
    return value is not None and str(value).startswith(prefix)


def input_files(stage: str, cfg: DictConfig, root: Path) -> dict[str, Path]:
    """The files a stage reads from outside the store, by name: the model for `base`, the
    dataset for `data`. The stage gets exactly these; their digests are part of its key."""
    if stage == "base" and cfg.model.path:
        return {"model": resolve_model_path(cfg.model.path, root)}
    if stage == "data":
        return {"dataset": project_path(cfg.dataset.path, root)}
    if stage == "imatrix":   # text files of the user's, named by their config key, in its order
        if own_imatrix(cfg.quant.imatrix):
            return {OWN_IMATRIX: project_path(cfg.quant.imatrix, root)}
        return _listed("quant.calibration", cfg.quant.calibration, root)
    if stage == "eval":
        return _listed("eval.kld_text", cfg.eval.kld_text, root)
    return {}


def _listed(key: str, paths, root: Path) -> dict[str, Path]:
    return {f"{key}[{index}]": project_path(path, root) for index, path in enumerate(paths)}


def input_fingerprints(stage: str, cfg: DictConfig, root: Path, digests: DigestCache,
                       strict: bool = True) -> dict[str, str]:
    """Digests of `input_files`. Not strict: a missing file is fingerprinted as missing (for
    locks and diffs of recipes whose data is not here yet)."""
    files = input_files(stage, cfg, root)
    if "model" in files:
        model = inspect_model_path(files["model"])
        if not model.exists and not strict:
            return {"model": "missing"}
        if not model.exists:
            raise ConfigError(f"model.path = {cfg.model.path!r}: {model.problem}. Point model.path at {ACCEPTED}.")
        if model.problem:
            raise ConfigError(f"model.path = {cfg.model.path!r}: {model.problem}")
        if model.split:  # every file of it is an input
            return {p.name: digests.fingerprint(p) if p.exists() else "missing" for p in model.files}
        return {"model": digests.fingerprint(model.path)}
    if "dataset" in files:
        path = files["dataset"]
        if not path.is_file() and not strict:
            return {"dataset": "missing"}
        if path.is_dir():
            raise ConfigError(f"dataset.path = {cfg.dataset.path!r} is a folder ({path}); name the JSON or JSONL "
                              f"file in it")
        if not path.is_file():
            raise ConfigError(
                f"dataset.path = {cfg.dataset.path!r}: no such file ({path}). Put the dataset there or set "
                f"dataset.path to a JSON/JSONL file.")
        return {"dataset": digests.digest(path)}
    out = {}
    for key, path in files.items():   # the user's text files (calibration, an imatrix, KLD text), by config key
        if not path.is_file() and not strict:
            out[key] = "missing"
            continue
        if not path.is_file():
            raise ConfigError(f"{key}: no such file ({path}). Put the file there or change {key}.")
        out[key] = digests.digest(path)
    return out
