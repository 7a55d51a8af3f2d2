"""A decoder's parameters from its shape: the whole count, and what LoRA trains.

Pure functions over a `ModelShape` (shape.py finds it): no I/O, no torch. Decoders covered:
llama, mistral and qwen2 style (RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP);
qwen2 adds biases to the q, k and v projections. Module names are the HF ones that
LLaMA-Factory's `lora_target` and PEFT's `target_modules` use.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from ..errors import ConfigError
from ..facts.lora_targets import ALL, DECODER_LINEARS, all_not_alone, means_all

MODEL_TYPES = ("llama", "mistral", "qwen2")
LORA_TARGETS = (*DECODER_LINEARS, "lm_head")  # "all" = the seven projections, never lm_head (LLaMA-Factory)
WHOLE_MODULES = ("embed_tokens", "lm_head")   # what `additional_target` (PEFT modules_to_save) trains in full


@dataclass(frozen=True)
class ModelShape:
    """The numbers of an HF config.json that decide a decoder's size (same names)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool = False
    head_dim: int | None = None         # None: hidden_size // num_attention_heads
    model_type: str = "llama"           # qwen2: q, k and v projections have biases
    attention_bias: bool = False        # llama's flag: biases on q, k, v and o
    mlp_bias: bool = False

    @property
    def head_size(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def q_dim(self) -> int:
        return self.num_attention_heads * self.head_size

    @property
    def kv_dim(self) -> int:
        return self.num_key_value_heads * self.head_size

    @property
    def qkv_bias(self) -> bool:
        return self.model_type == "qwen2" or self.attention_bias


@dataclass(frozen=True)
class Linear:
    in_features: int
    out_features: int
    bias: bool = False

    @property
    def parameters(self) -> int:
        return self.in_features * self.out_features + (self.out_features if self.bias else 0)


def decoder_linears(shape: ModelShape) -> dict[str, Linear]:
    """The linear layers of one decoder block, by module name."""
    h, i = shape.hidden_size, shape.intermediate_size
    return {
        "q_proj": Linear(h, shape.q_dim, shape.qkv_bias),
        "k_proj": Linear(h, shape.kv_dim, shape.qkv_bias),
        "v_proj": Linear(h, shape.kv_dim, shape.qkv_bias),
        "o_proj": Linear(shape.q_dim, h, shape.attention_bias),
        "gate_proj": Linear(h, i, shape.mlp_bias),
        "up_proj": Linear(h, i, shape.mlp_bias),
        "down_proj": Linear(i, h, shape.mlp_bias),
    }


def lm_head(shape: ModelShape) -> Linear:
    return Linear(shape.hidden_size, shape.vocab_size)


@dataclass(frozen=True)
class ParameterCount:
    embeddings: int        # embed_tokens (also the output head when tied)
    output_head: int       # lm_head; 0 when tied to the embeddings
    per_block: int         # one decoder block: its seven projections (biases included) and two RMSNorms
    blocks: int            # how many
    final_norm: int

    @property
    def total(self) -> int:
        return self.embeddings + self.output_head + self.per_block * self.blocks + self.final_norm


def parameter_count(shape: ModelShape) -> ParameterCount:
    per_block = sum(m.parameters for m in decoder_linears(shape).values()) + 2 * shape.hidden_size
    return ParameterCount(
        embeddings=shape.vocab_size * shape.hidden_size,
        output_head=0 if shape.tie_word_embeddings else lm_head(shape).parameters,
        per_block=per_block, blocks=shape.num_hidden_layers, final_norm=shape.hidden_size)


def lora_modules(targets: list[str] | tuple[str, ...], key: str = "lora.target") -> tuple[str, ...]:
    """The modules LoRA adapts for a `lora_target` list, in LLaMA-Factory's reading: `all` alone is
    every linear layer of the decoder blocks (not lm_head); otherwise the names as given. The rule
    for `all` is facts/lora_targets.py's, the one config validation applies."""
    targets = [str(t) for t in targets]
    if means_all(targets):
        return DECODER_LINEARS
    broken = all_not_alone(targets)
    if broken:
        rule, fix = broken
        raise ConfigError(f"{key} = {targets}: {rule}. {fix}")
    for name in targets:
        if name not in LORA_TARGETS:
            close = difflib.get_close_matches(name, LORA_TARGETS, n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"{key} = {targets}: '{name}' is not a linear module of a llama/mistral/qwen2 decoder. "
                f"{hint}Valid: {ALL}, {', '.join(LORA_TARGETS)}.")
    return tuple(dict.fromkeys(targets))


def whole_modules(names: list[str] | tuple[str, ...], key: str = "train.extra.additional_target") -> tuple[str, ...]:
    """Modules trained in full beside the adapter (LLaMA-Factory's `additional_target`)."""
    for name in names:
        if name not in WHOLE_MODULES:
            raise ConfigError(f"{key} = {list(names)}: sizing knows {', '.join(WHOLE_MODULES)} as fully "
                              f"trained modules, not '{name}'.")
    return tuple(dict.fromkeys(names))


def lora_parameters(shape: ModelShape, modules: tuple[str, ...], r: int, dora: bool = False,
                    whole: tuple[str, ...] = ()) -> int:
    """Trainable parameters: A (r x in) and B (out x r) per adapted module, a magnitude vector
    (out) per module with DoRA, plus every parameter of the modules trained in full."""
    linears = decoder_linears(shape)

    def adapter(m: Linear) -> int:
        return r * (m.in_features + m.out_features) + (m.out_features if dora else 0)

    count = shape.num_hidden_layers * sum(adapter(linears[name]) for name in modules if name in linears)
    if "lm_head" in modules:
        count += adapter(lm_head(shape))
    full = {"embed_tokens": shape.vocab_size * shape.hidden_size, "lm_head": lm_head(shape).parameters}
    return count + sum(full[name] for name in whole)
