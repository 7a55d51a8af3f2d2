"""PEP 517 build backend: setuptools, plus llama.cpp's HF -> GGUF converter.

llama-cpp-python installs only shared libraries, yet the converter must be the same llama.cpp as
the quantizer. Its sdist carries `vendor/llama.cpp/convert_hf_to_gguf.py` and what that imports, so
installing llmbuild downloads the pinned sdist with pip (the user's index, proxy and cache settings
apply) and unpacks those files into `src/llmbuild/_llama_cpp/`. Nothing fetched is committed; a
later offline build finds them there.

It also unpacks llama.cpp's test data beside them (`models/`): the publishers' chat templates of
many model families and real tokenizers (`ggml-vocab-*.gguf`) with llama.cpp's expected token ids
(`.inp`/`.out`). Tests build tiny models of each family from them; wheels leave the tokenizers out.

And it compiles two of llama.cpp's programs from the same sources into `bin/` beside them
(`llama-imatrix`, which computes an importance matrix, and `llama-quantize`, which quantizes with
one and with per-tensor types): llama-cpp-python ships neither. CMake builds them once per
llama.cpp version, compiler and CPU (a few minutes on two cores) into the user's cache
(`~/.cache/llmbuild/`, or `$XDG_CACHE_HOME`); later installs copy them from there.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import platform
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
TOOLS = ("llama-imatrix", "llama-quantize")   # compiled into TARGET/bin (CMake targets of llama.cpp)
STAMP = "\n".join((*WANTED, *TOOLS))   # a new file set unpacks again
# llama.cpp as a static build of only what the tools need (no server, tests or HTTPS downloads)
CMAKE_OPTIONS = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                 "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF",
                 "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_BUILD_COMMON=ON", "-DLLAMA_OPENSSL=OFF")


def _pinned_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"llama-cpp-python(?:\[[^\]]*\])?==([^"]+)"', text)
    if not match:
        raise RuntimeError("pyproject.toml must pin llama-cpp-python with '=='")
    return match.group(1)


def _unpack_converter() -> None:
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    # the tool environments install this checkout at the same time as .venv: one unpacks, the others wait
    with open(TARGET.parent / ".llama_cpp.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _unpack_locked()


def _unpack_locked() -> None:
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
            sources = Path(tmp) / "sources"
            tar.extractall(sources, filter="data")
        _tools(sources / prefix, staging / "bin", version)
        (staging / "VERSION").write_text(f"{version}\n{STAMP}\n")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), TARGET)


def _tools(llama_cpp: Path, bin_dir: Path, version: str) -> None:
    """TOOLS compiled from `llama_cpp` (the sdist's vendor/llama.cpp) into `bin_dir`, through the cache."""
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else platform.processor()
    flags = sorted({line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("flags")})
    compiler = subprocess.run(["c++", "--version"], capture_output=True, text=True).stdout.split("\n", 1)[0]
    recipe = "\n".join((version, platform.machine(), compiler, *flags, *CMAKE_OPTIONS, *TOOLS))
    cache = (Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "llmbuild" / "llama.cpp-tools"
             / f"{version}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}")
    if not all((cache / tool).is_file() for tool in TOOLS):
        print(f"llmbuild: compiling llama.cpp's {' and '.join(TOOLS)} from llama-cpp-python=={version} "
              f"(once per version; a few minutes)", file=sys.stderr)
        build = llama_cpp / "build"
        subprocess.run(["cmake", "-S", str(llama_cpp), "-B", str(build), *CMAKE_OPTIONS], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", str(build), "--target", *TOOLS, "--parallel", str(os.cpu_count() or 1)],
                       check=True, stdout=subprocess.DEVNULL)
        staged = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
        staged.mkdir(parents=True, exist_ok=True)
        for tool in TOOLS:
            shutil.copy2(build / "bin" / tool, staged / tool)
        shutil.rmtree(cache, ignore_errors=True)
        staged.rename(cache)
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in TOOLS:
        shutil.copy2(cache / tool, bin_dir / tool)


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
