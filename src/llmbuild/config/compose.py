"""Compose a build configuration with Hydra's compose API, and explain failures to people.

Overrides arrive exactly as Hydra's command line takes them (`quant=q8_0`, `lora.r=16`,
`+train.extra.foo=1`, `~smoke`); `recipe=NAME` selects `recipes/NAME.yaml`.
"""

from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from . import schema
from .cache import CompositionCache
from .validate import validate

RECIPE_GROUP = "recipes"


@dataclass(frozen=True)
class Composed:
    """A resolved configuration and how it was chosen."""

    cfg: DictConfig               # resolved, read-only, schema-typed
    choices: dict[str, Any]       # config group -> option picked (after defaults and overrides)
    overrides: tuple[str, ...]    # what the user typed, normalised

    @property
    def recipe(self) -> str:
        return str(self.choices.get(RECIPE_GROUP) or "none")

    def to_container(self) -> dict[str, Any]:
        return OmegaConf.to_container(self.cfg, resolve=True, enum_to_str=True)


def normalise_overrides(overrides: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`recipe=NAME` is the user's spelling of the `recipes` config group."""
    out = []
    for item in overrides:
        out.append(re.sub(r"^recipe=", f"{RECIPE_GROUP}=", item))
    return tuple(out)


def compose(root: Path, overrides: list[str] | tuple[str, ...] = ()) -> Composed:
    """Compose `conf/config.yaml` + recipe + overrides into a validated configuration."""
    return compose_many(root, [tuple(overrides)])[0]


def compose_many(root: Path, variants: list[tuple[str, ...]]) -> list[Composed]:
    """Compose several override lists (a sweep) in one Hydra session.

    Hydra recomposes the defaults list only once per distinct config-group selection; value
    overrides are applied to a copy of that composition with Hydra's own override code, exactly
    as a full compose would apply them. Planning a sweep stays fast this way.
    """
    root = Path(root).resolve()
    schema.register()
    GlobalHydra.instance().clear()
    results = []
    try:
        with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3", job_name="llmbuild"):
            loader = GlobalHydra.instance().config_loader()
            parser = OverridesParser.create(config_loader=loader)
            by_groups: dict[tuple[str, ...], tuple[DictConfig, dict[str, Any]]] = {}
            cache = CompositionCache(root)
            for variant in variants:
                overrides = normalise_overrides(variant)
                try:
                    parsed = parser.parse_overrides(list(overrides))
                    swept = [o.input_line for o in parsed if o.is_sweep_override()]
                    if swept:
                        raise ConfigError(f"{' '.join(swept)} is a sweep, which names several configurations; "
                                          f"here it must be one value (use `doit sweep` or `doit plan` to sweep)")
                    groups = tuple(o.input_line for o in parsed if _selects_group(o, loader))
                    if groups not in by_groups:
                        by_groups[groups] = cache.get(groups) or _compose_groups(groups, cache)
                    base, choices = by_groups[groups]
                    cfg = copy.deepcopy(base)
                    for override in (o for o in parsed if not _selects_group(o, loader)):
                        _apply(override, cfg)
                except (HydraException, OmegaConfBaseException) as err:
                    raise _explain(err, root, overrides) from None
                results.append(_finish(cfg, choices, overrides, root))
    except yaml.YAMLError as err:
        raise _explain_yaml(err, root) from None
    finally:
        GlobalHydra.instance().clear()
    return results


def expand_sweep(root: Path, overrides: list[str] | tuple[str, ...]) -> tuple[list[str], list[tuple[str, ...]]]:
    """The swept overrides (`lora.r=8,16`, `range(...)`, `glob(...)`) and one override list per
    variant, through Hydra's override parser and basic sweeper (cartesian product of swept keys)."""
    root = Path(root).resolve()
    schema.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3", job_name="llmbuild"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            parsed = parser.parse_overrides(list(normalise_overrides(overrides)))
            swept = [o.input_line for o in parsed if o.is_sweep_override()]
            # glob() lists the group's options, so expand while Hydra is initialised
            expanded = [_Expanded(o) for o in parsed]
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot parse the overrides: {_first_line(str(err))}") from None
    finally:
        GlobalHydra.instance().clear()
    variants = [tuple(job) for job in BasicSweeper.split_arguments(expanded, max_batch_size=None)[0]]
    return swept, variants


class _Expanded:
    """An override whose sweep values were listed while Hydra was initialised."""

    def __init__(self, override):
        self._key = override.get_key_element()
        self._sweep = override.is_sweep_override()
        if self._sweep and not override.is_discrete_sweep():
            raise ConfigError(f"'{override.input_line}': interval sweeps need a sweeper that samples; "
                              f"use a list, range(...) or choice(...)")
        self._values = list(override.sweep_string_iterator()) if self._sweep else [override.get_value_element_as_str()]

    def is_sweep_override(self) -> bool:
        return self._sweep

    def is_discrete_sweep(self) -> bool:
        return True

    def get_key_element(self) -> str:
        return self._key

    def sweep_string_iterator(self):
        return iter(self._values)

    def get_value_element_as_str(self) -> str:
        return self._values[0]


def _apply(override, cfg: DictConfig) -> None:
    """Hydra's own override code; it asserts (no message) when the key is under a null node."""
    try:
        ConfigLoaderImpl._apply_overrides_to_config([override], cfg)
    except AssertionError:
        parent = override.key_or_group.rsplit(".", 1)[0]
        raise ConfigError(f"'{override.input_line}': '{parent}' is not selected (it is null), so it has no keys to "
                          f"set. Select it first, e.g. target=[ollama,llamacpp] for target.llamacpp.") from None


def _selects_group(override, loader) -> bool:
    return override.package is not None or loader.repository.group_exists(override.key_or_group)


def _compose_groups(groups: tuple[str, ...], cache: CompositionCache) -> tuple[DictConfig, dict[str, Any]]:
    full = hydra_compose(config_name="config", overrides=list(groups), return_hydra_config=True)
    choices = {k: v for k, v in OmegaConf.to_container(full.hydra.runtime.choices).items() if not k.startswith("hydra/")}
    with _open_struct(full):
        del full["hydra"]
    cache.put(groups, full, choices)
    return full, choices


def _finish(cfg: DictConfig, choices: dict[str, Any], overrides: tuple[str, ...], root: Path) -> Composed:
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise _explain(err, root, overrides) from None
    OmegaConf.resolve(cfg)
    OmegaConf.set_readonly(cfg, True)
    composed = Composed(cfg=cfg, choices=choices, overrides=overrides)
    validate(composed.cfg, root, _source_hint(root, choices, overrides))
    return composed


class _open_struct:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self):
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, True)


def _source_hint(root: Path, choices: dict[str, Any], overrides: tuple[str, ...]):
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
            candidates.append(root / "conf" / group / f"{choices[group]}.yaml")
        for path in candidates:
            if path.is_file() and _mentions(path, key, group, path.parent.name == RECIPE_GROUP):
                return str(path.relative_to(root))
        return "conf/config.yaml or the command line"

    return hint


def _mentions(path: Path, key: str, group: str, is_global: bool) -> bool:
    try:
        node = OmegaConf.load(path)
    except Exception:
        return False
    dotted = key if is_global else key[len(group) + 1:]
    return bool(dotted) and OmegaConf.select(node, dotted, default=None) is not None


def _explain(err: Exception, root: Path, overrides: tuple[str, ...]) -> ConfigError:
    """Turn Hydra/OmegaConf errors into one message: the key, where it came from, the fix."""
    cause = err
    while not isinstance(cause, OmegaConfBaseException) and (cause.__cause__ or cause.__context__):
        cause = cause.__cause__ or cause.__context__
    text = str(err).strip()
    if isinstance(err, MissingConfigException) or "Could not find" in text or "could not be found" in text:
        return ConfigError(_missing_option_message(text, root, overrides))
    full_key = getattr(cause, "full_key", None) or _key_from_text(text)
    if not full_key:
        return ConfigError(f"configuration error: {_first_line(text)}")
    where = _where(full_key, root, overrides, _file_named_by_hydra(text, root))
    problem = _first_line(str(cause))
    if "not in" in problem or "Could not override" in text and "No match" in text:
        parent, _, leaf = full_key.rpartition(".")
        valid = _schema_fields(parent)
        close = [schema.FAMILIAR_NAMES[leaf]] if schema.FAMILIAR_NAMES.get(leaf) in valid else \
            difflib.get_close_matches(leaf, valid, n=1)
        suggestion = f" Did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""
        listing = f" Valid keys under '{parent or '(top level)'}': {', '.join(valid)}." if valid else ""
        return ConfigError(f"unknown config key '{full_key}' in {where}.{suggestion}{listing}")
    if "Missing mandatory value" in problem:
        return ConfigError(f"config key '{full_key}' has no value ({where}): set it, e.g. `doit build {full_key}=...`")
    return ConfigError(f"bad value for config key '{full_key}' in {where}: {problem}")


def _override_for(full_key: str, overrides: tuple[str, ...]) -> str | None:
    group = full_key.split(".")[0]
    for item in reversed(overrides):  # the last one wins, as in Hydra
        name = item.lstrip("+~").split("=", 1)[0]
        if name == full_key or full_key.startswith(name + ".") or name == group:
            return f"the command-line override '{item}'"
    return None


def _file_named_by_hydra(text: str, root: Path) -> str | None:
    """Hydra prefixes composition errors with "In 'group/option'": the file being merged."""
    match = re.match(r"In '([^']+)'", text)
    if not match:
        return None
    for candidate in (root / "conf" / f"{match.group(1)}.yaml", root / f"{match.group(1)}.yaml"):
        if candidate.is_file():  # conf/recipes links to the top-level recipes/
            return str(candidate.resolve().relative_to(root.resolve()))
    return None


def _where(full_key: str, root: Path, overrides: tuple[str, ...], named: str | None = None) -> str:
    typed = _override_for(full_key, overrides)
    if typed:
        return typed
    if named:
        return named
    group = full_key.split(".")[0]
    files = []
    for path in sorted((root / "conf" / group).glob("*.yaml")) + sorted((root / RECIPE_GROUP).glob("*.yaml")):
        if _mentions(path, full_key, group, path.parent.name == RECIPE_GROUP):
            files.append(str(path.relative_to(root)))
    if files:
        return " or ".join(files)
    return "conf/config.yaml"


def _explain_yaml(err: yaml.YAMLError, root: Path) -> ConfigError:
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


def _missing_option_message(text: str, root: Path, overrides: tuple[str, ...]) -> str:
    match = re.search(r"Could not find '([^']+)/([^']+)'", text) or re.search(r"In '[^']*': Could not load '([^']+)/([^']+)'", text)
    if match:
        group, option = match.groups()
        group = group.strip("/")
        folder = root / ("conf" if group != RECIPE_GROUP else "") / group
        available = sorted(p.stem for p in folder.glob("*.yaml") if not p.name.endswith(".lock.yaml"))
        close = difflib.get_close_matches(option, available, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        shown_group = "recipe" if group == RECIPE_GROUP else group
        return (f"no config '{option}' in group '{shown_group}' (looked for {folder.relative_to(root)}/{option}.yaml)."
                f"{hint} Available: {', '.join(available)}.")
    return f"configuration error: {_first_line(text)}"


def _key_from_text(text: str) -> str | None:
    match = re.search(r"full_key: ([\w.\[\]-]+)", text) or re.search(r"Key '([\w.-]+)'", text)
    return match.group(1) if match else None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text


def _schema_fields(dotted_parent: str) -> list[str]:
    node: Any = schema.BuildConfig
    for part in [p for p in dotted_parent.split(".") if p]:
        if not is_dataclass(node):
            return []
        match = {f.name: f for f in fields(node)}.get(part)
        if match is None:
            return []
        node = _field_type(node, match.name)
    return [f.name for f in fields(node)] if is_dataclass(node) else []


def _field_type(cls: type, name: str) -> Any:
    import typing

    hint = typing.get_type_hints(cls)[name]
    for arg in (*getattr(hint, "__args__", ()), hint):
        if is_dataclass(arg):
            return arg
    return hint
