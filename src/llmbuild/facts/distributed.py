"""Training on several GPUs of one host: `train.devices` and `train.distributed`.

LLaMA-Factory's own launcher does the launching: `llamafactory-cli train` with FORCE_TORCHRUN=1
starts `torchrun --nproc_per_node $NPROC_PER_NODE` (llamafactory/launcher.py), and NNODES,
NODE_RANK, MASTER_ADDR and MASTER_PORT, read from the environment, spread one run over several
hosts. The strategy is a line in LLaMA-Factory's YAML (the HF Trainer's `deepspeed` or `fsdp`
arguments) naming a config file written beside it.

Every GPU trains on its own `per_device_train_batch_size` samples, so one optimizer step sees
per_device_train_batch_size x gradient_accumulation_steps x devices (x NNODES) samples.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import DEEPSPEED_ZERO2_CONFIG, DEEPSPEED_ZERO3_CONFIG, FSDP_CONFIG

AUTO = "auto"       # train.devices=auto: every GPU visible when the build is planned
DEFAULT = "ddp"


@dataclass(frozen=True)
class Strategy:
    name: str                  # train.distributed
    what: str                  # for people: what each GPU holds
    shards_weights: bool       # the frozen base is split across the GPUs (gathered a block at a time)
    shards_state: bool         # gradients and optimizer states of the trainable weights are split
    zero_stage: int | None = None    # DeepSpeed's ZeRO stage; None: not DeepSpeed
    config_file: str | None = None   # written into the train artifact, named by llamafactory.yaml
    # FSDP with bf16/fp16 mixed precision keeps its shards in fp32 (accelerate upcasts the whole
    # model, "following DeepSpeed's strategy"); DeepSpeed keeps the frozen weights in 16 bits
    fp32_shards: bool = False

    @property
    def deepspeed(self) -> bool:
        return self.zero_stage is not None


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    Strategy("ddp", "DDP: every GPU holds the whole model and its optimizer; gradients are averaged",
             shards_weights=False, shards_state=False),
    Strategy("deepspeed-zero2", "DeepSpeed ZeRO-2: gradients and optimizer states split across the GPUs, "
             "the weights on every GPU", shards_weights=False, shards_state=True, zero_stage=2,
             config_file=DEEPSPEED_ZERO2_CONFIG),
    Strategy("deepspeed-zero3", "DeepSpeed ZeRO-3: weights, gradients and optimizer states split across "
             "the GPUs", shards_weights=True, shards_state=True, zero_stage=3, config_file=DEEPSPEED_ZERO3_CONFIG),
    Strategy("fsdp", "PyTorch FSDP2 full shard: weights, gradients and optimizer states split across the GPUs",
             shards_weights=True, shards_state=True, config_file=FSDP_CONFIG, fp32_shards=True),
)}

# the launcher's multi-host settings: read from the environment, passed through, in no key
MULTI_NODE_ENV = ("NNODES", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT")

# NVLink multicast (NVLS) off in every training process: the lent GPU hosts cannot use it, and
# NCCL, torch's symmetric memory and NVSHMEM each try it by default. A value the user set stays.
NO_MULTICAST = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "NVSHMEM_DISABLE_NVLS": "1"}

DEEPSPEED_DISTRIBUTION = "deepspeed"
