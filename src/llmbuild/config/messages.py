"""Hydra's and OmegaConf's composition errors, turned into one line for people: the key, the
file or override it came from, the nearest valid key, and the fix."""

from __future__ import annotations

import difflib
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from ..errors import ConfigError
from ..facts import layout
from ..facts.secrets import redact_override
from . import schema

RECIPE_GROUP = layout.RECIPES_DIR   # the recipes folder is the config group of that name
PRIMARY = f"{layout.CONF_DIR}/{layout.PRIMARY_CONFIG}"


def source_hint(root: Path, choices: dict[str, Any], overrides: tuple[str, ...]):
    """Return a function naming the file a key most likely came from, for error messages."""

    def hint(key: str) -> str:
        typed = _override_for(key, overrides)
        if typed:
            return typed
        group = key.split(".")[0]
        candidates = []
        recipe = choices.get(RECIPE_GROUP)
        if recipe:
            candidates.append(root / RECIPE_GROUP / f"{recipe}.yaml")
        if group in choices and choices[group] and not isinstance(choices[group], list):
            candidates.append(root / layout.CONF_DIR / group / f"{choices[group]}.yaml")
        for path in candidates:
            if path.is_file() and _mentions(path, key, group, path.parent.name == RECIPE_GROUP):
                return str(path.relative_to(root))
        return f"{PRIMARY} or the command line"

    return hint


def _mentions(path: Path, key: str, group: str, is_global: bool) -> bool:
    try:
        node = OmegaConf.load(path)
    except Exception:
        return False
    dotted = key if is_global else key[len(group) + 1:]
    return bool(dotted) and OmegaConf.select(node, dotted, default=None) is not None


def explain(err: Exception, root: Path, overrides: tuple[str, ...]) -> ConfigError:
    """Turn Hydra/OmegaConf errors into one message: the key, where it came from, the fix. Read
    from the exceptions' fields (Hydra's missing config file and options, OmegaConf's full key),
    never from their wording."""
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        return ConfigError(_missing_option_message(err.missing_cfg_file, root))
    cause = _omegaconf_cause(err)
    full_key = getattr(cause, "full_key", None) if cause is not None else None
    if not full_key:
        return ConfigError(f"configuration error: {first_line(str(err))}")
    where = _where(full_key, root, overrides)
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)):
        return unknown_key(full_key, where)
    if isinstance(cause, MissingMandatoryValue):
        return ConfigError(f"config key '{full_key}' has no value ({where}): set it, e.g. `doit build {full_key}=...`")
    return ConfigError(f"bad value for config key '{full_key}' in {where}: {first_line(str(cause))}")


def unknown_key(full_key: str, where: str) -> ConfigError:
    """A key the schema does not have: where it came from, the nearest valid key, all valid keys."""
    parent, _, leaf = full_key.rpartition(".")
    valid = _schema_fields(parent)
    close = [schema.FAMILIAR_NAMES[leaf]] if schema.FAMILIAR_NAMES.get(leaf) in valid else \
        difflib.get_close_matches(leaf, valid, n=1)
    suggestion = f" Did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""
    listing = f" Valid keys under '{parent or '(top level)'}': {', '.join(valid)}." if valid else ""
    open_maps = f" `+key=value` adds keys only under {', '.join(schema.OPEN_MAPS)}." if "+" in where else ""
    return ConfigError(f"unknown config key '{full_key}' in {where}.{suggestion}{listing}{open_maps}")


def keys_outside_schema(cfg: Any, kind: Any = schema.BuildConfig, prefix: str = "") -> list[str]:
    """Dotted keys of a composed config that its schema does not declare (`+key=value` adds them:
    Hydra opens the struct to append). Open maps (`Dict` fields such as train.extra) take any key."""
    if not is_dataclass(kind) or not OmegaConf.is_dict(cfg) or cfg._is_none():
        return []
    known = {f.name for f in fields(kind)}
    out = []
    for key in cfg.keys():
        full = f"{prefix}{key}"
        if key not in known:
            out.append(full)
        elif typing.get_origin(typing.get_type_hints(kind)[key]) in (dict, typing.Dict):
            node = cfg._get_node(key)   # a map of groups (pipeline): each entry has the value's schema
            if full not in schema.OPEN_MAPS and OmegaConf.is_dict(node) and not node._is_none():
                for name in node.keys():
                    out += keys_outside_schema(node._get_node(name), _field_type(kind, key), f"{full}.{name}.")
        else:
            out += keys_outside_schema(cfg._get_node(key), _field_type(kind, key), f"{full}.")
    return out


def where(full_key: str, root: Path, overrides: tuple[str, ...]) -> str:
    return _where(full_key, root, overrides)


def _omegaconf_cause(err: BaseException) -> OmegaConfBaseException | None:
    """The OmegaConf error behind a Hydra one (Hydra re-raises them inside its own)."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, OmegaConfBaseException):
        cause = cause.__cause__ or cause.__context__
    return cause


def _override_for(full_key: str, overrides: tuple[str, ...]) -> str | None:
    group = full_key.split(".")[0]
    for item in reversed(overrides):  # the last one wins, as in Hydra
        name = item.lstrip("+~").split("=", 1)[0]
        if name == full_key or full_key.startswith((name + ".", name + "[")) or name == group:
            return f"the command-line override '{redact_override(item)}'"
    return None


def _where(full_key: str, root: Path, overrides: tuple[str, ...]) -> str:
    typed = _override_for(full_key, overrides)
    if typed:
        return typed
    group = full_key.split(".")[0]
    files = []
    for path in sorted((root / layout.CONF_DIR / group).glob("*.yaml")) + sorted((root / RECIPE_GROUP).glob("*.yaml")):
        if _mentions(path, full_key, group, path.parent.name == RECIPE_GROUP):
            files.append(str(path.relative_to(root)))
    if files:
        return " or ".join(files)
    return PRIMARY


def explain_yaml(err: yaml.YAMLError, root: Path) -> ConfigError:
    mark = getattr(err, "problem_mark", None)
    if mark is None:
        return ConfigError(f"a config file is not valid YAML: {err}")
    try:
        name = str(Path(mark.name).resolve().relative_to(root))
    except ValueError:
        name = mark.name
    problem = getattr(err, "problem", None) or "not valid YAML"
    context = getattr(err, "context_mark", None)
    earlier = f" (see also line {context.line + 1})" if context is not None and context.name == mark.name else ""
    return ConfigError(f"{name} line {mark.line + 1}, column {mark.column + 1}: {problem}{earlier}. Fix the YAML.")


def _missing_option_message(missing: str, root: Path) -> str:
    """`missing` is Hydra's missing config path, `group/option`."""
    group, _, option = missing.strip("/").rpartition("/")
    if not group:
        return f"no config '{option}' (looked for {layout.CONF_DIR}/{option}.yaml)."
    folder = root / (layout.CONF_DIR if group != RECIPE_GROUP else "") / group
    files = (p.stem for p in folder.glob("*.yaml") if not p.name.endswith(layout.LOCK_SUFFIX))
    available = sorted({*files, *schema.GENERATED_OPTIONS.get(group, ())})
    close = difflib.get_close_matches(option, available, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    shown_group = "recipe" if group == RECIPE_GROUP else group
    looked = f"looked for {folder.relative_to(root)}/{option}.yaml"
    if group in schema.GENERATED_OPTIONS:
        looked = f"not one of llmbuild's {group} types, and no {folder.relative_to(root)}/{option}.yaml"
    return f"no config '{option}' in group '{shown_group}' ({looked}).{hint} Available: {', '.join(available)}."


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _schema_fields(dotted_parent: str) -> list[str]:
    node: Any = schema.BuildConfig
    parts = [p for p in dotted_parent.split(".") if p]
    while parts:
        part = parts.pop(0)
        if not is_dataclass(node):
            return []
        match = {f.name: f for f in fields(node)}.get(part)
        if match is None:
            return []
        if typing.get_origin(typing.get_type_hints(node)[part]) in (dict, typing.Dict) and parts:
            parts.pop(0)   # a map of groups (pipeline.<stage>): the entry's name, then its schema's keys
        node = _field_type(node, match.name)
    return [f.name for f in fields(node)] if is_dataclass(node) else []


def no_pipeline_stage(stage: str, stages: list[str], override: str) -> ConfigError:
    """A command-line override under `pipeline.<stage>` that names no stage of the recipe's pipeline."""
    close = difflib.get_close_matches(stage, stages, n=1)
    known = (f" Its stages: {', '.join(f'pipeline.{s}' for s in stages)}." if stages else
             " This recipe has no pipeline: its stages come from the recipe (pipeline: in recipes/<name>.yaml).")
    return ConfigError(f"config key 'pipeline.{stage}' in the command-line override '{redact_override(override)}': "
                       f"the pipeline has no stage '{stage}'." + (f" Did you mean 'pipeline.{close[0]}'?" if close
                                                                   else "") + known)


def _field_type(cls: type, name: str) -> Any:
    hint = typing.get_type_hints(cls)[name]
    for arg in (*getattr(hint, "__args__", ()), hint):
        if is_dataclass(arg):
            return arg
    return hint


def include_loop(overrides: tuple[str, ...]) -> str:
    """The message for a defaults list that includes its own file (directly or through others)."""
    recipe = next((o.split("=", 1)[1] for o in overrides if o.startswith(f"{RECIPE_GROUP}=")), None)
    where = (f"{RECIPE_GROUP}/{recipe}.yaml (recipe={recipe})" if recipe
             else f"the recipe {layout.CONF_DIR}/config.yaml selects")
    return (f"a config file includes itself through its defaults list: {where}, or a file its defaults name, "
            f"names itself again, so Hydra would include it without end. Remove that entry from the defaults list")
