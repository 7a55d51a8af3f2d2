"""The private APIs of Hydra and doit that llmbuild uses, each in one module, against the versions
pinned in pyproject.toml: an upgrade that moves one fails here, naming it."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from llmbuild.cli import doit_private
from llmbuild.config import hydra_private, schema

ROOT = Path(__file__).resolve().parent.parent


def pinned(distribution: str) -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.search(rf'"{re.escape(distribution)}==([^"]+)"', text)[1]


def test_the_pinned_versions_are_the_tested_ones():
    assert pinned("hydra-core") == hydra_private.HYDRA_VERSION == importlib.metadata.version("hydra-core")
    assert pinned("doit") == doit_private.DOIT_VERSION == importlib.metadata.version("doit")


def test_hydras_override_application_group_test_and_sweep_product():
    schema.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3", job_name="test"):
            loader = GlobalHydra.instance().config_loader()
            parser = OverridesParser.create(config_loader=loader)
            group, value, added = parser.parse_overrides(["quant=q8_0", "lora.r=16", "+train.extra.x=1"])
            assert hydra_private.selects_group(group, loader) and not hydra_private.selects_group(value, loader)
            cfg = OmegaConf.create({"lora": {"r": 8}, "train": {"extra": {}}})
            hydra_private.apply_overrides([value, added], cfg)
            assert cfg.lora.r == 16 and cfg.train.extra.x == 1
            swept = parser.parse_overrides(["lora.r=8,16", "quant=q4_k_m,q8_0"])
    finally:
        GlobalHydra.instance().clear()

    class Expanded:   # the interface the basic sweeper reads
        def __init__(self, override):
            self.override = override

        def __getattr__(self, name):
            return getattr(self.override, name)

    jobs = hydra_private.cartesian_product([Expanded(o) for o in swept])
    assert sorted(map(tuple, jobs)) == sorted([("lora.r=8", "quant=q4_k_m"), ("lora.r=8", "quant=q8_0"),
                                               ("lora.r=16", "quant=q4_k_m"), ("lora.r=16", "quant=q8_0")])


def test_doits_command_line_variables_in_order():
    code = ("from doit.doit_cmd import DoitMain; from llmbuild.cli import doit_private;"
            "DoitMain().process_args(['build', 'quant=q8_0', '-n', '2', 'lora.r=16', '~smoke']);"
            "print(list(doit_private.command_line_variables().items()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[('quant', 'q8_0'), ('lora.r', '16')]"
