"""The parts of Hydra's private API that llmbuild uses, in one place. Pinned by pyproject.toml
(hydra-core==1.3.8) and exercised by tests/test_private_apis.py, so that an upgrade that moves one
of them fails there, with the name of what moved.

Why private: Hydra's compose API composes one configuration per call (about 0.2 s). A sweep
composes the defaults list once per distinct group selection and applies value overrides with the
same code a full compose uses; expanding a sweep uses the basic sweeper's own cartesian product.
"""

from __future__ import annotations

from hydra._internal.config_loader_impl import ConfigLoaderImpl
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import DictConfig

HYDRA_VERSION = "1.3.8"   # the version these calls are tested with


def apply_overrides(overrides: list, cfg: DictConfig) -> None:
    """Value overrides (parsed `key=value`, `+key=value`, `~key`) applied to a composed config,
    exactly as Hydra's compose applies them."""
    ConfigLoaderImpl._apply_overrides_to_config(overrides, cfg)


def selects_group(override, loader) -> bool:
    """Whether a parsed override picks a config group option (`quant=q8_0`) rather than a value."""
    return override.package is not None or loader.repository.group_exists(override.key_or_group)


def cartesian_product(overrides: list) -> list[list[str]]:
    """One override list per sweep job: the cartesian product of the swept overrides, as Hydra's
    basic sweeper runs them."""
    return BasicSweeper.split_arguments(overrides, max_batch_size=None)[0]
