"""Where `doit size` finds the model's shape, first that exists:

1. model.path is an HF folder: its config.json;
2. model.path is a .gguf file (or the first of a split one): the GGUF header, metadata and tensor list;
3. the built base model in the store (build/base/<key>/config.json);
4. the `model.shape` block of the model config (the big hub models carry their published shape);

otherwise a ConfigError naming model.path. Nothing here loads weights or imports torch,
transformers or llama.cpp: the GGUF header is read directly (gguf-py's GGUFReader builds an object
per token, about 5 s for a 49k vocabulary; skipping the token arrays takes milliseconds).
"""

from __future__ import annotations

import json
import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from .adapters.gguf_split import shards_of
from .errors import ConfigError
from .plan.keys import resolve_model_path
from .sizing import MODEL_TYPES, ModelShape

# GGUF architectures -> HF model_type (llama.cpp converts Mistral 7B to "llama")
GGUF_ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}


@dataclass(frozen=True)
class ShapeSource:
    shape: ModelShape
    source: str                      # where it came from, for people
    file_parameters: int | None = None  # the parameters a GGUF actually holds (sum over its tensors)


def find_shape(model: DictConfig, root: Path, base_dir: Path | None) -> ShapeSource:
    """The shape of `model` (a composed `model` config group); `base_dir` is this configuration's
    base artifact folder in the store, built or not."""
    path = resolve_model_path(model.path, root) if model.path else None
    if path is not None and (path / "config.json").is_file():
        return ShapeSource(from_hf_config(path / "config.json"), f"{path / 'config.json'}")
    if path is not None and path.is_file() and path.suffix == ".gguf":
        return from_gguf(path)
    if base_dir is not None and (base_dir / "config.json").is_file():
        return ShapeSource(from_hf_config(base_dir / "config.json"), f"{base_dir / 'config.json'} (built base model)")
    if model.get("shape") is not None:
        return ShapeSource(from_config(model.shape), "model.shape in the model config")
    if not model.path:
        where = f"model.path is unset (hub_id {model.hub_id!r})"
    elif not path.exists():
        where = f"model.path = {model.path!r} does not exist ({path})"
    else:
        where = f"model.path = {model.path!r} is neither an HF folder with config.json nor a .gguf file"
    raise ConfigError(
        f"cannot size {model.name}: {where}, the base model is not built yet, and there is no model.shape. "
        f"Point model.path at an HF folder or a .gguf file, or add a model.shape block (hidden_size, "
        f"intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, vocab_size, "
        f"tie_word_embeddings) as conf/model/qwen2.5-7b-instruct.yaml does.")


def _checked(values: dict[str, Any], where: str) -> ModelShape:
    model_type = values.get("model_type") or "llama"
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{where}: model_type {model_type!r} is not a decoder that sizing knows. "
                          f"Supported: {', '.join(MODEL_TYPES)}.")
    required = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size")
    missing = [k for k in required if not isinstance(values.get(k), int)]
    if missing:
        raise ConfigError(f"{where}: {', '.join(missing)} missing or not a whole number. Copy them from the "
                          f"model's config.json.")
    heads = values["num_attention_heads"]
    return ModelShape(
        hidden_size=values["hidden_size"], intermediate_size=values["intermediate_size"],
        num_hidden_layers=values["num_hidden_layers"], num_attention_heads=heads,
        num_key_value_heads=values.get("num_key_value_heads") or heads, vocab_size=values["vocab_size"],
        tie_word_embeddings=bool(values.get("tie_word_embeddings", False)),  # False is the llama/mistral/qwen2 default
        head_dim=values.get("head_dim") or None, model_type=model_type,
        attention_bias=bool(values.get("attention_bias", False)), mlp_bias=bool(values.get("mlp_bias", False)))


def from_hf_config(path: Path) -> ModelShape:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read it as JSON ({err})") from None
    return _checked(values, str(path))


def from_config(shape: DictConfig) -> ModelShape:
    missing = [k for k in shape if OmegaConf.is_missing(shape, k)]
    if missing:
        raise ConfigError(f"model.shape: {', '.join(missing)} not set. Copy them from the model's config.json.")
    return _checked(OmegaConf.to_container(shape), "model.shape")


def from_gguf(path: Path) -> ShapeSource:
    files = shards_of(path) or [path]
    metadata, tensors = read_gguf_header(files[0])
    for shard in files[1:]:  # tensors are spread over the shards; metadata is in the first
        tensors.update(read_gguf_header(shard)[1])
    arch = metadata.get("general.architecture")
    if arch not in GGUF_ARCHITECTURES:
        raise ConfigError(f"{path}: GGUF architecture {arch!r} is not a decoder that sizing knows. "
                          f"Supported: {', '.join(GGUF_ARCHITECTURES)} (Mistral 7B converts to llama).")

    def meta(name: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{name}", default)

    embedding = tensors.get("token_embd.weight")
    if embedding is None:
        raise ConfigError(f"{path}: no token_embd.weight tensor; is it a complete GGUF model?")
    values = {
        "model_type": GGUF_ARCHITECTURES[arch],
        "hidden_size": meta("embedding_length"),
        "intermediate_size": meta("feed_forward_length"),
        "num_hidden_layers": meta("block_count"),
        "num_attention_heads": meta("attention.head_count"),
        "num_key_value_heads": meta("attention.head_count_kv"),
        "vocab_size": embedding[1],  # GGUF dims are innermost first: (hidden, vocab)
        "tie_word_embeddings": "output.weight" not in tensors,
        "head_dim": meta("attention.key_length"),
        "attention_bias": "blk.0.attn_output.bias" in tensors,
        "mlp_bias": "blk.0.ffn_up.bias" in tensors,
    }
    files_label = path.name if len(files) == 1 else f"{path.name} and {len(files) - 1} more shard(s)"
    return ShapeSource(_checked(values, str(path)), f"{path.parent}/{files_label} (GGUF header)",
                       sum(math.prod(dims) for dims in tensors.values()))


# -- GGUF header ---------------------------------------------------------------------------------
# The layout (gguf-py's constants.py, llama.cpp's gguf.cpp): "GGUF", version u32, tensor count u64,
# key-value count u64, the key-value pairs, then per tensor: name, n_dims u32, dims u64 each, type
# u32, offset u64. Little-endian; strings are a u64 length and UTF-8 bytes.

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_gguf_header(path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The scalar metadata (arrays such as the vocabulary are skipped) and every tensor's dims."""
    try:
        with open(path, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(data, path)
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read its GGUF header ({err})") from None
    except struct.error:
        raise ConfigError(f"{path}: the GGUF header is truncated") from None


def _parse(data: mmap.mmap, path: Path) -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    if data[:4] != b"GGUF":
        raise ConfigError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", data, 4)
    if version not in (2, 3):
        raise ConfigError(f"{path}: GGUF version {version} (big-endian or too old); llama.cpp writes version 3")
    pos = 24

    def string() -> str:
        nonlocal pos
        (length,) = struct.unpack_from("<Q", data, pos)
        text = data[pos + 8:pos + 8 + length].decode("utf-8", "replace")
        pos += 8 + length
        return text

    def skip(kind: int) -> None:
        nonlocal pos
        if kind == _STRING:
            (length,) = struct.unpack_from("<Q", data, pos)
            pos += 8 + length
        elif kind == _ARRAY:
            inner, count = struct.unpack_from("<IQ", data, pos)
            pos += 12
            if inner in _SCALARS:
                pos += count * struct.calcsize(_SCALARS[inner])
            else:
                for _ in range(count):
                    skip(inner)
        else:
            pos += struct.calcsize(_SCALARS[kind])

    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = string()
        (kind,) = struct.unpack_from("<I", data, pos)
        pos += 4
        if kind == _STRING:
            metadata[key] = string()
        elif kind in _SCALARS:
            (metadata[key],) = struct.unpack_from(_SCALARS[kind], data, pos)
            pos += struct.calcsize(_SCALARS[kind])
        elif kind == _ARRAY:
            skip(kind)
        else:
            raise ConfigError(f"{path}: unknown GGUF value type {kind} for key {key!r}")
    tensors: dict[str, tuple[int, ...]] = {}
    for _ in range(n_tensors):
        name = string()
        (n_dims,) = struct.unpack_from("<I", data, pos)
        tensors[name] = struct.unpack_from(f"<{n_dims}Q", data, pos + 4)
        pos += 4 + 8 * n_dims + 4 + 8
    return metadata, tensors
