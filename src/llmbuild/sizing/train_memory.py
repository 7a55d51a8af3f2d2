"""Training memory per GPU for LoRA and QLoRA in LLaMA-Factory + PEFT + the HF Trainer: weights,
trainable state, activations, the loss, and what several GPUs split (the notes below say what is
counted and how it was checked against measured peaks).

Pure functions over a `ModelShape` and a `TrainSetup`: no I/O, no torch. choice.py picks a batch
with them, remedies.py finds what else would fit, report.py prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts.distributed import STRATEGIES
from .params import ModelShape, decoder_linears, parameter_count

GIB = 1024**3


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
