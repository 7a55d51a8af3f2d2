"""PEP 517 build backend: setuptools, plus llama.cpp's HF -> GGUF converter.

llama-cpp-python installs only shared libraries, yet the converter must be the same llama.cpp as
the quantizer. Its sdist carries `vendor/llama.cpp/convert_hf_to_gguf.py` and what that imports, so
installing llmbuild downloads the pinned sdist with pip (the user's index, proxy and cache settings
apply) and unpacks those files into `src/llmbuild/_llama_cpp/`. Nothing fetched is committed; a
later offline build finds them there.

It also unpacks llama.cpp's test data beside them (`models/`): the publishers' chat templates of
many model families and real tokenizers (`ggml-vocab-*.gguf`) with llama.cpp's expected token ids
(`.inp`/`.out`). Tests build tiny models of each family from them; wheels leave the tokenizers out.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from setuptools import build_meta as _setuptools

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "src" / "llmbuild" / "_llama_cpp"
# what convert_hf_to_gguf.py and convert_lora_to_gguf.py import, relative to vendor/llama.cpp/
WANTED = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion/", "gguf-py/gguf/", "LICENSE",
          "models/templates/", "models/ggml-vocab-")
STAMP = "\n".join(WANTED)   # a new file set unpacks again


def _pinned_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"llama-cpp-python(?:\[[^\]]*\])?==([^"]+)"', text)
    if not match:
        raise RuntimeError("pyproject.toml must pin llama-cpp-python with '=='")
    return match.group(1)


def _unpack_converter() -> None:
    version = _pinned_version()
    stamp = TARGET / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == f"{version}\n{STAMP}":
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(f"llmbuild: fetching llama.cpp's converter from llama-cpp-python=={version} (sdist)", file=sys.stderr)
        # this hook's own backend settings must not leak into pip's build of the sdist's metadata
        env = {k: v for k, v in os.environ.items() if not k.startswith(("_PYPROJECT_HOOKS_", "PEP517_"))}
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={version}", "--dest", tmp],
            check=True, env=env,
        )
        (sdist,) = Path(tmp).glob("llama_cpp_python-*.tar.gz")
        staging = Path(tmp) / "staging"
        with tarfile.open(sdist) as tar:
            prefix = f"{tar.getnames()[0].split('/')[0]}/vendor/llama.cpp/"
            members = [m for m in tar.getmembers()
                       if m.name.startswith(prefix) and m.name[len(prefix):].startswith(WANTED)]
            for member in members:
                member.name = member.name[len(prefix):]
            tar.extractall(staging, members=members, filter="data")
        (staging / "VERSION").write_text(f"{version}\n{STAMP}\n")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), TARGET)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _unpack_converter()
    return _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _unpack_converter()
    return _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)


build_sdist = _setuptools.build_sdist
get_requires_for_build_wheel = _setuptools.get_requires_for_build_wheel
get_requires_for_build_editable = _setuptools.get_requires_for_build_editable
get_requires_for_build_sdist = _setuptools.get_requires_for_build_sdist
prepare_metadata_for_build_wheel = _setuptools.prepare_metadata_for_build_wheel
prepare_metadata_for_build_editable = _setuptools.prepare_metadata_for_build_editable
