"""Sizing arithmetic: parameter counts, LoRA trainable parameters, and memory estimates for LoRA and
QLoRA training (LLaMA-Factory + PEFT on one GPU) and for llama.cpp inference.

Pure functions over a `ModelShape`: no I/O, no torch. `shape.py` finds the shape; the
`doit size` report (`report.py`) prints what these functions return.

Decoders covered: llama, mistral and qwen2 style (RMSNorm, rotary positions, grouped-query
attention, SwiGLU MLP); qwen2 adds biases to the q, k and v projections. Module names are the HF
ones that LLaMA-Factory's `lora_target` and PEFT's `target_modules` use.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, replace

from ..errors import ConfigError
from ..facts.distributed import STRATEGIES
from ..facts.quant_types import QUANT_TYPES

GIB = 1024**3
MODEL_TYPES = ("llama", "mistral", "qwen2")
DECODER_LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
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
    every linear layer of the decoder blocks (not lm_head); otherwise the names as given."""
    targets = [str(t) for t in targets]
    if targets == ["all"]:
        return DECODER_LINEARS
    if "all" in targets:
        raise ConfigError(
            f"{key} = {targets}: LLaMA-Factory reads 'all' only when it stands alone (with other names it "
            f"looks for a module called 'all'). Use [all], or list the modules: {', '.join(LORA_TARGETS)}.")
    for name in targets:
        if name not in LORA_TARGETS:
            close = difflib.get_close_matches(name, LORA_TARGETS, n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"{key} = {targets}: '{name}' is not a linear module of a llama/mistral/qwen2 decoder. "
                f"{hint}Valid: all, {', '.join(LORA_TARGETS)}.")
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


# -- training memory ---------------------------------------------------------------------------
#
# What is counted, per GPU, for LLaMA-Factory + PEFT + the HF Trainer (memory = weights +
# trainable state + activations), checked on an H100 with bench/train_memory.py
# (random-initialised Qwen2.5-7B and Llama-3.2-1B shapes, PEFT, bf16 autocast, SDPA): the estimate
# less the fixed overhead was within 1% of torch's measured peak in all eight configurations.
#
# weights   16-bit (2 bytes) for LoRA: on a GPU LLaMA-Factory loads bf16/fp16 whether or not
#           train.bf16 is set. QLoRA (bitsandbytes NF4 with double quantization, LLaMA-Factory's
#           default) stores the decoder's linear layers in 4.127 bits per weight (4 bits, an 8-bit
#           absmax per 64 weights, an fp32 constant per 256 absmax); embeddings, lm_head and norms
#           stay 16-bit. 8-bit (LLM.int8) is counted as 1 byte per linear weight.
# trainable LLaMA-Factory casts trainable parameters to fp32: 4 bytes weight + 4 bytes gradient +
#           8 bytes AdamW state (m and v in fp32; 2 bytes for 8-bit optimizers such as adamw_8bit).
# activations, per token of the batch (every sample counted at cutoff_len: the worst case, as
#           batches are padded to their longest sample), what autograd keeps for backward in one
#           decoder block with SDPA attention (transformers' default; no seq x seq matrix):
#             both RMSNorm inputs, upcast to fp32 (2 x 4h); q, k, v and the attention output for
#             SDPA's backward (4q + 4kv); gate, SiLU(gate) and up in the MLP (3 x 2i); and for each
#             adapted module a 16-bit copy of its input (2 x in_features: PEFT casts the input to
#             the fp32 adapter dtype and autocast casts it back, so modules sharing an input do not
#             share the copy), plus its dropout mask (1 x in_features) when lora.dropout > 0.
#           Frozen layers keep none of their inputs. With padding in a batch, transformers repeats
#           k and v to every head (+4(q - kv) per layer), left out with the padding itself.
#           QLoRA keeps the same, except that PEFT's 4-bit and 8-bit LoRA layers do not cast their
#           input under autocast, so without dropout the modules reading one tensor (q, k and v;
#           gate and up) share one copy of it. bitsandbytes' frozen matmuls keep no input. Checked
#           like LoRA, bitsandbytes 0.50.2 on the H100: four QLoRA configurations within 2%.
# loss      12 bytes x vocabulary per token: the fp32 log-softmax that cross-entropy keeps, and at
#           the start of backward the fp32 gradients of its output and input. For a 150k vocabulary
#           this outweighs all the layers' activations at short cutoffs.
# checkpointing (per decoder layer) keeps each layer's 16-bit input (2h) instead; one layer at a
#           time is recomputed in backward, after the loss's tensors are freed, so the peak holds
#           the larger of the two.
# overhead  1 GiB: the CUDA context and libraries (0.75 GiB measured) and some allocator slack.
#           PyTorch's caching allocator reserved 4-20% above the peak in the runs above; it frees
#           that cache and retries before it reports out of memory, but leave some headroom.
# Liger     (train.liger_kernel) fuses lm_head and the cross-entropy: the logits exist only in chunks
#           of about tokens x hidden / vocabulary rows, and what stays is the gradient of the loss's
#           input (2h) and one chunk (up to 4h in fp32). Counted as 12h per token instead of 12 x
#           vocabulary: conservative. Its RMSNorm and SwiGLU keep less than the activations above (no
#           fp32 copy of the norm input, no SiLU(gate)); that saving is not counted, so the estimate
#           stays above the peak (bench/gpu_train.py prints both).
# packing   LLaMA-Factory's packing fills every row to cutoff_len, so batch x cutoff_len tokens is
#           then exact rather than the worst case; its block-diagonal mask (bsz x 1 x cutoff x cutoff,
#           16-bit) is counted.
# several GPUs (train.devices, train.distributed: facts/distributed.py), per GPU, N of them; the
#           ZeRO paper's arithmetic on the terms above, not measured (no multi-GPU machine was at
#           hand when it was written):
#   ddp       what one GPU holds, plus DDP's gradient buckets: a second fp32 copy of the trainable
#             gradients, which the all-reduce reads.
#   deepspeed-zero2  the trainable fp32 weights on every GPU; their gradients and optimizer states
#             split N ways. The base weights whole on every GPU.
#   deepspeed-zero3  all of the trainable state and the base weights split N ways, plus the weights
#             gathered to run: a module's before it runs and the next one's prefetched, counted as
#             two decoder blocks or the embeddings with the output head, the larger, in 16 bits.
#   fsdp      as ZeRO-3, but with bf16/fp16 the shards of a 16-bit base are fp32 (accelerate
#             upcasts the model under mixed precision): twice ZeRO-3's shards.
#   Activations and the loss are each GPU's own batch's: unchanged. NCCL's buffers (a few hundred
#   MiB per GPU) are not counted.
# Not modelled: DoRA's extra activations, CPU offload.

OVERHEAD_BYTES = 1 * GIB
NF4_BITS = 4 + 8 / 64 + 32 / (64 * 256)
ADAM_STATE_BYTES = 8
ADAM_8BIT_STATE_BYTES = 2


@dataclass(frozen=True)
class TrainSetup:
    batch_size: int                     # per device
    cutoff_len: int
    gradient_checkpointing: bool
    quantization_bit: int | None = None   # None: 16-bit LoRA; 4: QLoRA; 8: LLM.int8 LoRA
    gradient_accumulation_steps: int = 1  # no effect on memory; kept so remedies keep the effective batch
    lora_dropout: float = 0.0
    optimizer_state_bytes: float = ADAM_STATE_BYTES
    fused_loss: bool = False              # Liger's fused linear cross-entropy (train.liger_kernel)
    block_mask: bool = False              # neat packing: a 4-D block-diagonal attention mask per row
    devices: int = 1                      # GPUs training together (train.devices as a number)
    strategy: str = "ddp"                 # train.distributed: what they split

    @property
    def tokens(self) -> int:
        return self.batch_size * self.cutoff_len

    @property
    def label(self) -> str:
        return {None: "bf16 LoRA", 4: "QLoRA 4-bit", 8: "LoRA 8-bit"}[self.quantization_bit]


@dataclass(frozen=True)
class TrainMemory:
    weights: int
    trainable_state: int     # fp32 weights + gradients + optimizer states of the trainable parameters
    activations: int
    loss: int                # log-softmax and its gradients over the vocabulary
    overhead: int = OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.trainable_state + self.activations + self.loss + self.overhead


def optimizer_state_bytes(optim: str) -> float:
    """Bytes of optimizer state per trainable parameter for a HF Trainer `optim` name."""
    return ADAM_8BIT_STATE_BYTES if "8bit" in optim else ADAM_STATE_BYTES


def weight_bytes(shape: ModelShape, quantization_bit: int | None) -> int:
    counts = parameter_count(shape)
    if quantization_bit is None:
        return 2 * counts.total
    linear_weights = shape.num_hidden_layers * sum(m.in_features * m.out_features
                                                   for m in decoder_linears(shape).values())
    bits = NF4_BITS if quantization_bit == 4 else 8
    return round(linear_weights * bits / 8) + 2 * (counts.total - linear_weights)


# Modules that read the same tensor: QLoRA without dropout keeps one copy of it for all of them.
_SHARED_INPUT = {"q_proj": "attention", "k_proj": "attention", "v_proj": "attention",
                 "gate_proj": "mlp", "up_proj": "mlp"}


def layer_activation_bytes(shape: ModelShape, modules: tuple[str, ...], dropout: float,
                           quantized: bool = False) -> int:
    """Bytes one decoder block keeps for backward, per token (see the notes above)."""
    h, q, kv, i = shape.hidden_size, shape.q_dim, shape.kv_dim, shape.intermediate_size
    linears = decoder_linears(shape)
    inputs = {_SHARED_INPUT.get(name, name) if quantized and not dropout else name: linears[name].in_features
              for name in modules if name in linears}
    return 8 * h + 4 * q + 4 * kv + 6 * i + (3 if dropout > 0 else 2) * sum(inputs.values())


def loss_bytes(shape: ModelShape, modules: tuple[str, ...], dropout: float, fused: bool = False) -> int:
    """Bytes per token at the loss, at the start of backward (with LoRA on lm_head, its input copy too).
    `fused`: Liger's fused linear cross-entropy, which never holds the whole logits."""
    head = (3 if dropout > 0 else 2) * shape.hidden_size if "lm_head" in modules else 0
    return (12 * shape.hidden_size if fused else 12 * shape.vocab_size) + head


def train_memory(shape: ModelShape, modules: tuple[str, ...], trainable: int, setup: TrainSetup) -> TrainMemory:
    layer = layer_activation_bytes(shape, modules, setup.lora_dropout, quantized=setup.quantization_bit is not None)
    loss = loss_bytes(shape, modules, setup.lora_dropout, fused=setup.fused_loss)
    final_norm = 4 * shape.hidden_size  # its fp32 input
    if setup.gradient_checkpointing:  # the recomputed layer counts where it exceeds the loss's tensors
        per_token = shape.num_hidden_layers * 2 * shape.hidden_size + final_norm + max(layer - loss, 0)
    else:
        per_token = shape.num_hidden_layers * layer + final_norm
    weights, state = _per_device(shape, trainable, setup)
    return TrainMemory(
        weights=weights,
        trainable_state=state,
        activations=per_token * setup.tokens + (_block_mask_bytes(setup) if setup.block_mask else 0),
        loss=loss * setup.tokens,
    )


def _block_mask_bytes(setup: TrainSetup) -> int:
    """LLaMA-Factory's 4-D block-diagonal mask for packed rows: batch x cutoff x cutoff, 16-bit."""
    return 2 * setup.batch_size * setup.cutoff_len ** 2


@dataclass(frozen=True)
class BatchChoice:
    """The per-device batch, accumulation and checkpointing chosen for a GPU (`choose_batch`)."""

    setup: TrainSetup
    memory: TrainMemory
    budget: int              # bytes the estimate may use: the GPU's memory less the headroom
    reason: str              # why, for people: the estimate, the budget and what did not fit


def choose_batch(shape: ModelShape, modules: tuple[str, ...], trainable: int, setup: TrainSetup,
                 gpu_bytes: int, headroom: float) -> BatchChoice:
    """The largest per-device batch that fits `gpu_bytes` less `headroom` (a fraction) and divides
    the effective batch (setup's batch x accumulation, kept through accumulation); gradient
    checkpointing only when not even batch 1 fits without it. The one function that decides it:
    `doit size`, `doit plan` and the train stage call it."""
    effective = setup.batch_size * setup.gradient_accumulation_steps
    budget = int(gpu_bytes * (1 - headroom))
    where = f"{_gib(budget)} GiB ({_gib(gpu_bytes)} GiB less {headroom:.0%} headroom)"
    tried: list[str] = []
    for checkpointing in (False, True):
        for batch in (b for b in range(effective, 0, -1) if effective % b == 0):
            chosen = replace(setup, batch_size=batch, gradient_accumulation_steps=effective // batch,
                             gradient_checkpointing=checkpointing)
            memory = train_memory(shape, modules, trainable, chosen)
            if memory.total <= budget:
                how = "gradient checkpointing" if checkpointing else "no gradient checkpointing"
                why = f"; {tried[-1]}" if tried else ""
                return BatchChoice(chosen, memory, budget,
                                   f"batch {batch} x accumulation {effective // batch} (effective {effective}), {how}: "
                                   f"about {_gib(memory.total)} GiB of {where}{why}")
            if not tried or batch == 1:
                tried.append(f"batch {batch}{' with checkpointing' if checkpointing else ''} would need "
                             f"{_gib(memory.total)} GiB")
    raise ConfigError(
        f"train.gpu_memory_gib={gpu_bytes / GIB:g}: {tried[-1]}, more than {where}, so no batch fits. Lower "
        f"train.cutoff_len, train on a 4-bit base (lora.quantization_bit=4) or on a larger GPU.")


def _gib(n: float) -> str:
    return f"{n / GIB:.1f}"


def gathered_bytes(shape: ModelShape) -> int:
    """16-bit weights a sharded GPU holds whole at once: two decoder blocks (the running one, the
    prefetched next), or the embeddings with the output head, whichever is larger."""
    counts = parameter_count(shape)
    return 2 * max(2 * counts.per_block, counts.embeddings + counts.output_head)


def _per_device(shape: ModelShape, trainable: int, setup: TrainSetup) -> tuple[int, int]:
    """(base weights, trainable weights + gradients + optimizer states) on each GPU (notes above)."""
    weights = weight_bytes(shape, setup.quantization_bit)
    fp32_weights, rest = 4 * trainable, trainable * (4 + setup.optimizer_state_bytes)
    n, strategy = setup.devices, STRATEGIES[setup.strategy]
    if n == 1:
        return weights, round(fp32_weights + rest)
    if not strategy.shards_state:   # DDP: its buckets hold another copy of the gradients
        return weights, round(fp32_weights + rest + 4 * trainable)
    if not strategy.shards_weights:
        return weights, round(fp32_weights + rest / n)
    upcast = 2 if strategy.fp32_shards and setup.quantization_bit is None else 1
    return round(weights * upcast / n) + gathered_bytes(shape), round((fp32_weights + rest) / n)


@dataclass(frozen=True)
class Remedy:
    change: str              # Hydra overrides that apply it
    why: str                 # the remedy in words
    setup: TrainSetup
    memory: TrainMemory


def remedies(shape: ModelShape, modules: tuple[str, ...], trainable: int, setup: TrainSetup,
             budget: int) -> list[Remedy]:
    """The usual out-of-memory remedies (shorter samples, smaller batches with the same effective
    batch, gradient checkpointing, a 4-bit base) that apply to `setup`, each alone, then those that keep
    the samples whole all together, with the memory each would need. A shorter cutoff is halved
    until it fits (down to 128 tokens)."""
    def estimate(s: TrainSetup) -> TrainMemory:
        return train_memory(shape, modules, trainable, s)

    cutoff = max(setup.cutoff_len // 2, 1)
    while cutoff > 128 and estimate(replace(setup, cutoff_len=cutoff)).total > budget:
        cutoff //= 2
    out = [Remedy(f"train.cutoff_len={cutoff}", "shorter samples: longer ones are truncated",
                  replace(setup, cutoff_len=cutoff), estimate(replace(setup, cutoff_len=cutoff)))]
    whole: list[tuple[str, str, dict]] = []
    if setup.batch_size > 1:
        accumulation = setup.gradient_accumulation_steps * setup.batch_size
        whole.append((f"train.per_device_train_batch_size=1 train.gradient_accumulation_steps={accumulation}",
                      "smaller batches, the same effective batch through gradient accumulation",
                      {"batch_size": 1, "gradient_accumulation_steps": accumulation}))
    if not setup.gradient_checkpointing:
        whole.append(("train.gradient_checkpointing=true", "recompute activations during backward, ~30% slower",
                      {"gradient_checkpointing": True}))
    if setup.quantization_bit != 4:
        whole.append(("lora.quantization_bit=4", "QLoRA: the frozen base in 4 bits (bitsandbytes)",
                      {"quantization_bit": 4}))
    if setup.devices > 1 and not STRATEGIES[setup.strategy].shards_weights:
        whole.append(("train.distributed=deepspeed-zero3",
                      f"the base weights split across the {setup.devices} GPUs too", {"strategy": "deepspeed-zero3"}))
    for change, why, fields in whole:
        out.append(Remedy(change, why, replace(setup, **fields), estimate(replace(setup, **fields))))
    if len(whole) > 1:
        fields = {k: v for _, _, f in whole for k, v in f.items()}
        out.append(Remedy(" ".join(change for change, _, _ in whole), "all of these together",
                          replace(setup, **fields), estimate(replace(setup, **fields))))
    return out


# -- inference memory in llama.cpp -----------------------------------------------------------------
#
# weights   parameters x the quant type's bits per weight (quant_types.QUANT_TYPES: llama.cpp's
#           published figures for a 7-8B model, whole file, so the higher-precision embeddings and
#           output tensor of the K-quant mixes are included). Models whose row sizes are not
#           multiples of 256 (SmolLM2's 576) fall back to other types for some tensors.
# KV cache  K and V, f16 (llama.cpp's default cache type), for every layer and every position
#           of the context: 2 x layers x n_ctx x kv_dim x 2 bytes.
# Not modelled: llama.cpp's compute buffers (typically a few hundred MiB) and the process itself.

KV_CACHE_BYTES = 2  # f16


def kv_cache_bytes(shape: ModelShape, n_ctx: int) -> int:
    return 2 * shape.num_hidden_layers * n_ctx * shape.kv_dim * KV_CACHE_BYTES


@dataclass(frozen=True)
class InferenceMemory:
    quant: str
    bits: float
    weights: int
    kv_cache: int

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache


def inference_memory(shape: ModelShape, n_ctx: int) -> list[InferenceMemory]:
    total, kv = parameter_count(shape).total, kv_cache_bytes(shape, n_ctx)
    types = sorted(QUANT_TYPES.values(), key=lambda q: -q.bits)
    return [InferenceMemory(q.name, q.bits, round(total * q.bits / 8), kv) for q in types]
