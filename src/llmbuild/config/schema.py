"""Structured-config schemas: one dataclass per config group, registered in Hydra's ConfigStore.

Struct mode stays on, so a misspelt key or a wrong type stops composition; `validate` adds the
rules a type cannot say. Field comments are what users read when they open this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from ..facts import layout
from ..facts.quant_types import KLD_TOKENS, QUANT_TYPES, RECOMMEND_KLD


class DatasetFormat(str, Enum):
    alpaca = "alpaca"      # {"instruction", "input", "output", "system"?, "history"?}
    # {"conversations": [{"from": "human"|"gpt"|"function_call"|"observation", "value"}], "system"?, "tools"?}
    sharegpt = "sharegpt"
    openai = "openai"      # {"messages": [{"role", "content", "tool_calls"?}], "tools"?}
    text = "text"          # raw text for train.stage=pt: a text file (documents apart by blank lines), or {"text"}
# preference data (train.stage dpo, orpo, simpo) adds "chosen" and "rejected" answers to a prompt in
# any of the chat formats, KTO data a boolean "label" to a conversation: dataset/kinds.py


@dataclass
class ModelShapeConfig:
    # the numbers of the model's HF config.json that decide its size, under the same names; read by
    # `doit size` only when model.path holds no config.json or GGUF and nothing is built yet
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_hidden_layers: int = MISSING
    num_attention_heads: int = MISSING
    num_key_value_heads: Optional[int] = None   # None: num_attention_heads (no grouped-query attention)
    vocab_size: int = MISSING
    tie_word_embeddings: bool = False   # true: lm_head shares the embedding matrix
    head_dim: Optional[int] = None      # None: hidden_size / num_attention_heads
    model_type: str = "llama"           # llama, mistral or qwen2 (qwen2 has q/k/v biases)
    attention_bias: bool = False        # llama's flag: biases on q, k, v and o
    mlp_bias: bool = False


@dataclass
class ModelConfig:
    name: str = MISSING                 # readable model name, used in GGUF file names: SmolLM2-135M-Instruct
    path: Optional[str] = None          # local HF folder, a .gguf file (first shard if split), or pkg:<module>/<file>
    hub_id: Optional[str] = None        # Hugging Face id, used when `path` is unset and the hub is reachable
    revision: Optional[str] = None      # hub revision (commit, tag); pin it so the cache key means one thing
    # the model's chat family (facts/chat_families.py); None: detected from the chat template the model
    # ships. Set it for a model that ships none; a model that ships one is checked against it
    chat_format: Optional[str] = None
    license: Optional[str] = None       # licence text or SPDX id, carried into the Modelfile's LICENSE
    trust_remote_code: bool = False
    # for `doit size` when the model is not on disk (conf/model/qwen2.5-7b-instruct.yaml)
    shape: Optional[ModelShapeConfig] = None


@dataclass
class DatasetConfig:
    name: str = MISSING                 # name registered in LLaMA-Factory's dataset_info.json
    path: str = MISSING                 # JSON, JSONL (or, for format text, .txt) file; relative to the project root
    format: DatasetFormat = DatasetFormat.openai
    max_samples: Optional[int] = None   # use only the first N rows (quick experiments)
    holdout: float = 0.1                # kept out of training for eval: a fraction (< 1) or a row count (>= 1); 0: none
    holdout_seed: int = 0               # which rows are held out; changing it changes the training data


@dataclass
class LoraConfig:
    r: int = 8                          # rank: higher is more capacity, more memory, more overfitting
    alpha: Optional[int] = None         # scaling; None lets LLaMA-Factory use 2 * r (conf/lora says so explicitly)
    dropout: float = 0.0
    target: List[str] = field(default_factory=lambda: ["all"])  # module names, or ["all"] for every linear layer
    rslora: bool = False                # rank-stabilised scaling alpha / sqrt(r)
    dora: bool = False
    quantization_bit: Optional[int] = None  # 4 or 8: QLoRA through bitsandbytes (NF4 or LLM.int8 base)


@dataclass
class TrainConfig:
    # the training method (facts/train_methods.py): sft, pt (continued pretraining on raw text),
    # dpo, orpo, simpo (preference pairs) or kto (answers labelled good or bad)
    stage: str = "sft"
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1   # effective batch = batch size x accumulation x devices
    learning_rate: float = 1.0e-4
    num_train_epochs: float = 3.0
    max_steps: int = -1                 # > 0 overrides num_train_epochs
    warmup_steps: int = 0
    warmup_ratio: float = 0.0           # used when warmup_steps is 0
    lr_scheduler_type: str = "cosine"
    optim: str = "adamw_torch"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 42
    cutoff_len: int = 1024              # tokens per sample; longer samples are truncated
    logging_steps: int = 10
    save_steps: int = 500
    gradient_checkpointing: bool = False  # less activation memory, about 30% slower
    # memory of the training GPU: `doit size` checks the estimate against it and lists remedies; None: not checked.
    # With auto_batch it decides the per-device batch, so it is in the train key
    gpu_memory_gib: Optional[float] = None
    # the per-device batch chosen from the memory model (sizing/choice.py, choose_batch): the largest that
    # fits gpu_memory_gib less gpu_memory_headroom and divides the effective batch (per_device_train_batch_size
    # x gradient_accumulation_steps, kept through accumulation); gradient checkpointing only when nothing fits
    # without it. Needs gpu_memory_gib
    auto_batch: bool = False
    gpu_memory_headroom: float = 0.1    # the share of gpu_memory_gib that auto_batch leaves free
    liger_kernel: bool = False          # Liger's Triton kernels (LLaMA-Factory's enable_liger_kernel); CUDA only
    # torch.compile (inductor), facts/compile_modes.py: none; layers (each decoder layer, with Liger's fused
    # loss when liger_kernel is on); model (the whole model, LLaMA-Factory's torch_compile; not with Liger).
    # It fuses the norms, activations, rotary embeddings and LoRA's scale-and-add around each adapted
    # projection; the first steps compile (10-20 s for a 7B model on an H200)
    compile: str = "none"
    # where compiled code rounds bf16 (facts/compile_modes.py, ROUNDINGS): eager (as eager PyTorch: the
    # eager run's loss curve) or kernel (once per fused kernel: closer to fp32, another curve)
    compile_rounding: str = "eager"
    # LLaMA-Factory's neat_packing (sft only): samples packed into cutoff_len rows that attend only within
    # themselves; a sample longer than cutoff_len - 1 is cut to it. None: packed when that pads less
    # (sizing/padding.py, packing_choice; the train log says which)
    neat_packing: Optional[bool] = False
    bf16: bool = False                  # Ampere or newer GPUs
    fp16: bool = False
    preprocessing_num_workers: Optional[int] = None
    # packing samples into cutoff_len blocks; None: LLaMA-Factory's default (on for pt, off otherwise)
    packing: Optional[bool] = None
    # preference tuning (dpo, orpo, simpo, kto), as LLaMA-Factory names them
    pref_beta: float = 0.1              # how far the tuned model may move from the reference (DPO's beta)
    pref_loss: str = "sigmoid"          # dpo only: sigmoid (DPO), hinge or ipo
    pref_ftx: float = 0.0               # weight of an added SFT loss on the chosen answers
    dpo_label_smoothing: float = 0.0    # robust DPO (sigmoid loss only): 0 to 0.5
    simpo_gamma: float = 0.5            # simpo: the target reward margin
    kto_chosen_weight: float = 1.0      # kto: weight of desirable answers
    kto_rejected_weight: float = 1.0    # kto: weight of undesirable answers
    extra: Dict[str, Any] = field(default_factory=dict)  # any other LLaMA-Factory argument, passed through
    # GPUs of this host to train on (LLaMA-Factory's launcher: torchrun), or `auto` for every visible
    # one, counted when the build is planned (the count is in the key). More GPUs: a larger global
    # batch, batch size x accumulation x devices; keep it by dividing gradient_accumulation_steps
    devices: Any = 1
    # how several GPUs share the work: ddp (each holds the whole model), deepspeed-zero2 (gradients
    # and optimizer states split), deepspeed-zero3 or fsdp (the weights split too: models larger than
    # one GPU). Ignored with one device. DeepSpeed is installed apart: pip install deepspeed
    distributed: str = "ddp"


@dataclass
class PipelineStage:
    # one training stage that runs before the one in dataset/lora/train: its own data, LoRA and
    # training settings (each a whole group: conf/dataset, conf/lora, conf/train options fit)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class QuantConfig:
    type: str = "q4_k_m"                # llama.cpp file type, lower case: f16, bf16, q8_0, q6_k, q5_k_m, q4_k_m, ...
    convert_type: str = "f16"           # what convert_hf_to_gguf.py writes before quantizing: f16, bf16 or f32
    nthread: int = 0                    # 0: all cores
    split_max_size: Optional[str] = None  # e.g. 2G: also write the quantized GGUF as llama.cpp split files
    # an importance matrix (llama.cpp's llama-imatrix) weighs each weight's rounding error by how much the
    # model uses it. auto: computed from the fine-tune's own training samples (plus quant.calibration) and
    # used by every type whose quantizer reads one (facts/quant_types.py); none: never (the i-quants and
    # q2_k then cannot be built); or the path of an imatrix file of your own (.gguf or .dat)
    imatrix: str = "auto"
    calibration: List[str] = field(default_factory=list)  # text files added to the calibration text
    imatrix_ctx: int = 512              # tokens per calibration chunk (llama-imatrix -c), as llama.cpp's own default
    imatrix_chunks: Optional[int] = None  # at most this many chunks (None: all of the calibration text)
    # per-tensor types over the file type's own choice: llama.cpp's --tensor-type rules, a regular
    # expression searched in each tensor's name -> a ggml type, e.g. {attn_v: q6_k, ffn_down: q5_k}
    tensor_types: Dict[str, str] = field(default_factory=dict)
    output_tensor_type: Optional[str] = None     # output.weight's type (e.g. q8_0)
    token_embedding_type: Optional[str] = None   # token_embd.weight's type


@dataclass
class PromptConfig:
    # llmbuild's template of a family (chatml, qwen, llama3, gemma, alpaca) instead of the model's own
    template: Optional[str] = None
    # the system message of every conversation that has none, in training and in every deployed template
    # (the Modelfile's SYSTEM); None: as the model's template does it (its default system prompt, or none)
    system: Optional[str] = None
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    repeat_penalty: float = 1.1
    num_ctx: int = 2048
    num_predict: int = -1               # -1: until a stop token
    stop: List[str] = field(default_factory=list)  # extra stop strings; the template's own are always added


@dataclass
class FewShotMessage:
    role: str = MISSING                 # system, user or assistant
    content: str = MISSING


@dataclass
class OllamaTarget:
    model_name: Optional[str] = None    # name for `ollama create`; default: the variant name
    messages: List[FewShotMessage] = field(default_factory=list)  # MESSAGE turns: a few-shot start of every chat
    verify_template: bool = True        # render the parity suite through Go's text/template as Ollama does (needs `go`)
    adapter: bool = False               # FROM the base GGUF + ADAPTER a LoRA GGUF instead of FROM the merged GGUF


@dataclass
class LlamacppTarget:
    host: str = "127.0.0.1"            # loopback: nothing outside this machine can reach it
    port: int = 8080
    n_ctx: int = 4096
    n_gpu_layers: int = 0               # -1: all layers on the GPU (a GPU build of llama-cpp-python)
    model_alias: Optional[str] = None   # the `model` name clients send; default: the variant name


@dataclass
class VllmTarget:
    served_model_name: Optional[str] = None   # the `model` clients send; default: model.name
    max_model_len: Optional[int] = None       # default: the model's own context length
    tool_call_parser: Optional[str] = None    # default from the chat family: qwen -> hermes, llama3 -> llama3_json
    port: int = 8000
    extra_args: List[str] = field(default_factory=list)  # any other flags of vLLM's server, passed as written
    # GPU checkpoints for vLLM (compressed-tensors, by llm-compressor), each built and evaluated beside the
    # GGUF ladder: fp8, w8a8, w4a16, w4a16-awq (facts/vllm_schemes.py)
    quants: List[str] = field(default_factory=list)
    serve: str = "merged"                     # what serve.sh serves: merged (the merged model) or a scheme
    calibration_samples: int = 64             # training samples that calibrate w8a8 and the w4a16 schemes
    calibration_max_len: int = 512            # tokens of each calibration sample (longer ones are cut)


@dataclass
class HfTarget:
    repo_id: Optional[str] = None             # where you mean to publish it; only written into the model card
    tags: List[str] = field(default_factory=list)


@dataclass
class TargetConfig:
    ollama: Optional[OllamaTarget] = None
    llamacpp: Optional[LlamacppTarget] = None
    vllm: Optional[VllmTarget] = None
    hf: Optional[HfTarget] = None


@dataclass
class SmokeConfig:
    questions: List[str] = field(default_factory=list)  # asked of the quantized GGUF after every build
    max_tokens: int = 96
    n_ctx: int = 1024


@dataclass
class EvalConfig:
    enabled: bool = True                # false: build without eval and report
    # the quant ladder: llama.cpp types quantized and compared besides quant.type (size, KLD, perplexity)
    quants: List[str] = field(default_factory=list)
    max_rows: int = 32                  # held-out rows evaluated (the first N of the split); time grows linearly
    max_new_tokens: int = 64            # greedy answer length per held-out prompt
    base: bool = True                   # also evaluate the base model: the "was the fine-tune worth it" baseline
    n_ctx: int = 2048                   # context for llama.cpp; longer held-out conversations are cut from the left
    n_gpu_layers: int = 0               # GGUF layers on the GPU (-1: all) with a GPU build of llama-cpp-python
    recommend_kld: float = RECOMMEND_KLD  # report: the smallest quant whose KLD's 95% upper bound is below this
    # KLD, top-1 agreement and perplexity of every GGUF over at least this many held-out tokens (each with
    # a 95% interval): the held-out rows whole, then eval.kld_text, in chunks of eval.n_ctx tokens
    kld_tokens: int = KLD_TOKENS
    kld_text: List[str] = field(default_factory=list)   # text files never trained on, when held-out rows run short
    compare_imatrix: bool = False       # also quantize each ladder type without its importance matrix, side by side


@dataclass
class JobsConfig:
    # with `doit -n N`, how many trainings may run at once; each already uses every CPU core or
    # the whole GPU, so more than one only pays off with spare devices. Not part of any key.
    train_at_once: int = 1


@dataclass
class CacheConfig:
    # a remote artifact cache shared by machines: s3://bucket/prefix, file:///shared/cache (any fsspec URL).
    # Credentials come from the environment only (AWS_ACCESS_KEY_ID, ~/.aws; AWS_ENDPOINT_URL for an
    # S3-compatible server). None: no cache. Not part of any key.
    url: Optional[str] = None
    required: bool = False              # a cache that cannot be reached fails the build (default: a warning)
    push: bool = True                   # send what this machine builds; false: only take from the cache
    options: Dict[str, Any] = field(default_factory=dict)   # fsspec storage options (endpoint_url, ...)


@dataclass
class LauncherConfig:
    # where stale stages run: local (this machine: doit's own tasks), slurm (a job per stage that takes
    # minutes, through submitit), submitit_local (those jobs as processes here). Not part of any key.
    name: str = "local"
    wait: bool = True                   # wait for the jobs, showing progress; false: return once submitted
    poll_s: float = 10.0                # how often the queue is read while waiting
    # every job's resources, hydra-submitit-launcher's names; `stages` sets a stage's own over them
    partition: Optional[str] = None
    gpus_per_node: int = 0
    cpus_per_task: Optional[int] = None
    mem_gb: Optional[int] = None
    timeout_min: int = 720
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    setup: List[str] = field(default_factory=list)          # shell lines before the job (module load ...)
    additional_parameters: Dict[str, Any] = field(default_factory=dict)   # any other sbatch option
    stages: Dict[str, Dict[str, Any]] = field(default_factory=dict)      # {train: {gpus_per_node: 1}}


@dataclass
class BuildConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # training stages before the one above, in order, by name (pipeline.sft, pipeline.pt): each trains
    # on the merged model of the one before it (the first on the base model), and the stage in
    # dataset/lora/train trains on the last one's. Empty: one training stage
    pipeline: Dict[str, PipelineStage] = field(default_factory=dict)
    quant: QuantConfig = field(default_factory=QuantConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    target: TargetConfig = field(default_factory=TargetConfig)
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    store: str = layout.DEFAULT_STORE   # artifact store; relative paths start at the project root
    name: Optional[str] = None          # the variant's name (build/out/<name>/, the Ollama model); None: from overrides


# keys that change where, how fast or how a build is served, never what an artifact holds: no
# stage key covers them and no artifact shows them (a stage that reads a whole group, such as the
# report, sees the group without them). Each with the reason it cannot change an artifact.
NOT_BUILT = {
    "name": "names the build/out folder and the Ollama model, not what is in them",
    "store": "where the artifacts live",
    "jobs": "how many builds run at once",
    "launcher": "where and on which resources the stages run (a cluster's jobs or this machine)",
    "cache": "where finished artifacts are copied to and taken from (a copy is the same artifact)",
    "quant.nthread": "the quantizer's threads change its speed, not its bytes",
    "target.llamacpp": "read by `doit serve` only",
    "model.shape": "read by `doit size` only, for a model that is not on disk",
}

# maps that take any key (`+train.extra.neftune_noise_alpha=5`): passed through to a tool as written
OPEN_MAPS = ("train.extra", "quant.tensor_types", "cache.options", "launcher.additional_parameters", "launcher.stages")

# names users bring from LLaMA-Factory / PEFT / Unsloth -> the key here, for "did you mean"
FAMILIAR_NAMES = {
    "rank": "r", "lora_rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout", "lora_target": "target",
    "target_modules": "target", "use_rslora": "rslora", "use_dora": "dora", "load_in_4bit": "quantization_bit",
    "batch_size": "per_device_train_batch_size", "lr": "learning_rate", "epochs": "num_train_epochs",
    "max_seq_length": "cutoff_len", "random_state": "seed", "quantization_method": "type",
    "torch_compile": "compile", "enable_liger_kernel": "liger_kernel",
}

# Resolvers usable in config files: `${times:2,${.r}}` (LoRA's alpha = 2 x r, whatever r is)
RESOLVERS = {"times": lambda factor, value: factor * value}

_registered = False


# config groups whose options are registered from facts rather than written as files under conf/:
# group -> option names (`quant=q4_k_m` is llama.cpp's file type of that name)
GENERATED_OPTIONS = {"quant": tuple(QUANT_TYPES)}


def register() -> None:
    global _registered
    if not _registered:
        store = ConfigStore.instance()
        store.store(name="schema", node=BuildConfig)
        for name in GENERATED_OPTIONS["quant"]:
            store.store(group="quant", name=name, node={"type": name})
        for name, function in RESOLVERS.items():
            OmegaConf.register_new_resolver(name, function, replace=True)
        _registered = True
