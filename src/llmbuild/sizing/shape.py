"""Where `doit size` finds the model's shape, first that exists:

1. model.path is an HF folder (files/model_path.py says what a model.path is): its config.json;
2. the built base model in the store (build/base/<key>/config.json);
3. model.path is a .gguf file (or the first of a split one): its metadata and tensor list (gguf-py);
4. the `model.shape` block of the model config (the big hub models carry their published shape);

otherwise a ConfigError naming model.path. Nothing here loads weights or imports torch,
transformers or llama.cpp.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..adapters.gguf_header import read_gguf_header
from ..errors import ConfigError
from ..facts.gguf_files import shards_of
from ..files.model_path import GGUF, HF_FOLDER, inspect_model_path
from ..files.paths import resolve_model_path
from .params import MODEL_TYPES, ModelShape

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
    found = inspect_model_path(resolve_model_path(model.path, root)) if model.path else None
    if found is not None and found.kind == HF_FOLDER:
        return ShapeSource(from_hf_config(found.path / "config.json"), f"{found.path / 'config.json'}")
    if base_dir is not None and (base_dir / "config.json").is_file():
        return ShapeSource(from_hf_config(base_dir / "config.json"), f"{base_dir / 'config.json'} (built base model)")
    if found is not None and found.kind == GGUF:
        return from_gguf(found.path)
    if model.get("shape") is not None:
        return ShapeSource(from_config(model.shape), "model.shape in the model config")
    if found is None:
        where = f"model.path is unset (hub_id {model.hub_id!r})"
    elif not found.exists:
        where = f"model.path = {model.path!r} does not exist ({found.path})"
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
