"""Compose a build configuration with Hydra's compose API, and explain failures to people.

Overrides arrive exactly as Hydra's command line takes them (`quant=q8_0`, `lora.r=16`,
`+train.extra.foo=1`, `~smoke`); `recipe=NAME` selects `recipes/NAME.yaml`.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..errors import ConfigError
from ..facts import layout
from . import messages, schema
from .cache import CompositionCache
from .hydra_private import apply_overrides, cartesian_product, selects_group
from .validate import validate

RECIPE_GROUP = messages.RECIPE_GROUP


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
    """`recipe=NAME` is the user's spelling of the `recipes` config group; `recipe=none` builds from
    the group defaults alone."""
    out = []
    for item in overrides:
        if item.lstrip("+~").startswith("="):
            raise ConfigError(f"'{item}' has no key: write key=value, e.g. quant=q8_0 or lora.r=16")
        if item in ("recipe=none", "recipe=null"):   # no recipe: the group defaults alone, a clean start
            out.append(f"~{RECIPE_GROUP}")
            continue
        out.append(re.sub(r"^recipe=", f"{RECIPE_GROUP}=", item))
    return tuple(out)


def as_typed(override: str) -> str:
    """The spelling `normalise_overrides` took an override from, for commands shown back to users:
    `recipes=demo-pt` -> `recipe=demo-pt`, `~recipes` -> `recipe=none`."""
    if override == f"~{RECIPE_GROUP}":
        return "recipe=none"
    return re.sub(rf"^{RECIPE_GROUP}=", "recipe=", override)


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
        with initialize_config_dir(config_dir=str(root / layout.CONF_DIR), version_base="1.3", job_name="llmbuild"):
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
                    groups = tuple(o.input_line for o in parsed if selects_group(o, loader))
                    if groups not in by_groups:
                        by_groups[groups] = cache.get(groups) or _compose_groups(groups, cache)
                    base, choices = by_groups[groups]
                    cfg = copy.deepcopy(base)
                    for override in (o for o in parsed if not selects_group(o, loader)):
                        _check_pipeline_stage(override, cfg)
                        _apply(override, cfg)
                except (HydraException, OmegaConfBaseException) as err:
                    raise messages.explain(err, root, overrides) from None
                except RecursionError:   # Hydra follows a defaults list that names its own file without end
                    raise ConfigError(messages.include_loop(overrides)) from None
                results.append(_finish(cfg, choices, overrides, root))
    except yaml.YAMLError as err:
        raise messages.explain_yaml(err, root) from None
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
        with initialize_config_dir(config_dir=str(root / layout.CONF_DIR), version_base="1.3", job_name="llmbuild"):
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            parsed = parser.parse_overrides(list(normalise_overrides(overrides)))
            swept = [o.input_line for o in parsed if o.is_sweep_override()]
            # glob() lists the group's options, so expand while Hydra is initialised
            expanded = [_Expanded(o) for o in parsed]
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"cannot parse the overrides: {messages.first_line(str(err))}") from None
    finally:
        GlobalHydra.instance().clear()
    variants = [tuple(job) for job in cartesian_product(expanded)]
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


def _check_pipeline_stage(override, cfg: DictConfig) -> None:
    """`pipeline.<stage>.<key>=...` sets a key of a stage the recipe declares; a mistyped stage name
    is one message naming the stages (Hydra would report the schema's keys of a stage instead)."""
    parts = (override.key_or_group or "").split(".")
    if parts[0] != "pipeline" or len(parts) < 2:
        return
    stages = list(cfg.pipeline.keys()) if OmegaConf.is_dict(cfg.get("pipeline")) else []
    if parts[1] not in stages:
        raise messages.no_pipeline_stage(parts[1], stages, override.input_line)


def _apply(override, cfg: DictConfig) -> None:
    """Hydra's own override code; it asserts (no message) when the key is under a null node."""
    try:
        apply_overrides([override], cfg)
    except AssertionError:
        parent = override.key_or_group.rsplit(".", 1)[0]
        raise ConfigError(f"'{override.input_line}': '{parent}' is not selected (it is null), so it has no keys to "
                          f"set. Select it first, e.g. target=[ollama,llamacpp] for target.llamacpp.") from None


def _compose_groups(groups: tuple[str, ...], cache: CompositionCache) -> tuple[DictConfig, dict[str, Any]]:
    full = hydra_compose(config_name="config", overrides=list(groups), return_hydra_config=True)
    picked = OmegaConf.to_container(full.hydra.runtime.choices)
    choices = {k: v for k, v in picked.items() if not k.startswith("hydra/")}
    with open_dict(full):
        del full["hydra"]
    cache.put(groups, full, choices)
    return full, choices


def _finish(cfg: DictConfig, choices: dict[str, Any], overrides: tuple[str, ...], root: Path) -> Composed:
    extra = messages.keys_outside_schema(cfg)
    if extra:
        raise messages.unknown_key(extra[0], messages.where(extra[0], root, overrides))
    try:
        OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as err:
        raise messages.explain(err, root, overrides) from None
    OmegaConf.resolve(cfg)
    OmegaConf.set_readonly(cfg, True)
    composed = Composed(cfg=cfg, choices=choices, overrides=overrides)
    validate(composed.cfg, messages.source_hint(root, choices, overrides), root)
    return composed
