"""The artifact layout: what each stage writes inside its artifact folder, `<store>/<stage>/<key>/`,
and the names of a variant's readable outputs under `<store>/out/<variant>/`.

The one owner of these names: stages write them, later stages, links, reports and tests read them
through here. GGUF files follow the GGUF naming convention
(<BaseName>-<SizeLabel>-<FineTune>-<Encoding>.gguf: the model name carries the first three).
"""

from __future__ import annotations

from pathlib import Path

from .names import sanitize

MANIFEST = "manifest.json"           # every artifact: inputs, config slice, tool versions, file digests
STAGE_LOG = "stage.log"              # every artifact: what the libraries in the stage's process printed

# data: the checked rows to train on and the held-out rows eval reads, one per line in the plain
# form of their kind (dataset/kinds.py)
TRAIN_ROWS = "train.jsonl"
HELDOUT = "heldout.jsonl"
SPLIT_RECORD = "split.json"          # which rows were held out, and the seed

# train and merge: LLaMA-Factory runs on a YAML written into the artifact
LLAMAFACTORY_YAML = "llamafactory.yaml"
# where a "Run by hand" line (the YAML's header) has LLaMA-Factory write, so that the artifact stays as built
# (its output folder replaced on the command line; a shell expands $HOME)
BY_HAND_OUTPUT = "$HOME/llmbuild-by-hand/{stage}-{key}"
DATASET_DIR = "dataset"              # train: LLaMA-Factory's dataset_dir (TRAIN_SAMPLES + DATASET_INFO)
DATASET_INFO = "dataset_info.json"
ADAPTER = "adapter"                  # train: the PEFT adapter folder (+ trainer_log.jsonl, train_results.json)
MERGED = "merged"                    # merge: the merged HF model
CHAT_TEMPLATE = "chat_template.jinja"  # merge and vllm: the chat template as written into the model
CHAT_SETUP = "chat.json"             # merge: the chat family, template and system prompt it trained and wrote
TRAIN_SAMPLES = "samples.json"       # train: the conversations as the chat template writes them, in pieces

CONVERT_LOG = "convert.log"          # convert: llama.cpp's converter's output
PARITY_REPORT = "parity.md"          # parity: each conversation's renderings, compared
PARITY_RECORD = "parity.json"        # parity: the same as data
RECORDED_FILES = "files"             # convert, quantize, lora_gguf: the manifest's record names the GGUFs written
QUANTIZE_RECORD = "quantize.json"    # quantize: file names and tensor types written, and llama.cpp's fallbacks
QUANTIZE_LOG = "quantize.log"
LORA_CONVERT_LOG = "convert_lora.log"        # lora_gguf: the adapter's conversion
LORA_BASE_CONVERT_LOG = "convert_base.log"   # lora_gguf: the base model's conversion
LORA_BASE_QUANTIZE_LOG = "quantize_base.log"
LLMCOMPRESSOR_LOG = "llmcompressor.log"      # vllm_quant
MODELFILE = "Modelfile"              # ollama
OLLAMA_PARITY = "ollama_parity.md"   # ollama: the parity suite through Go's text/template
SERVE_SCRIPT = "serve.sh"            # vllm
VLLM_COMMAND = "vllm_command.json"   # vllm: the same command line as JSON
HF_MODEL = "model"                   # hf: the merged model with its model card
SMOKE_ANSWERS = "answers.json"       # smoke
SMOKE_MARKDOWN = "answers.md"
SMOKE_LOG = "chat.log"               # smoke: llama.cpp's output as it answered
EVAL_RESULTS = "eval.json"           # eval: evaluation/results.py owns its format
EVAL_ANSWERS = "answers.md"
REPORT_MD = "report.md"              # report
REPORT_HTML = "report.html"

# <store>/out/<variant>/: links into the store, the resolved config and the stage keys
OUT_DIR = "out"
OUT_RECORD = "keys.json"
OUT_CONFIG = "config.yaml"
# the link names there (the GGUFs keep their file names; an optional stage's artifact is linked
# under the stage's name)
OUT_BASE, OUT_DATASET, OUT_ADAPTER, OUT_MERGED, OUT_SMOKE = "base", "dataset", "adapter", "merged", "smoke.md"
SWEEPS_DIR = "sweeps"                # <store>/sweeps/<sweep>/: a sweep's summary and report
SWEEP_SUMMARY_MD = "summary.md"      # one row per variant: its overrides and results
SWEEP_SUMMARY_CSV = "summary.csv"
SWEEP_CHART = "perplexity.png"       # the sweep report's chart, beside report.md

# the project: the config groups, the recipes (overlays), the templates stages render, and the
# store and doit's state when `store` is not set
CONF_DIR = "conf"
PRIMARY_CONFIG = "config.yaml"       # conf/config.yaml: the primary config that lists the groups
RECIPES_DIR = "recipes"
LOCK_SUFFIX = ".lock.yaml"           # recipes/<recipe>.lock.yaml
TEMPLATES_DIR = "templates"
DATA_DIR = "data"                    # the demo recipes' datasets (a project's own, by convention)
DEFAULT_STORE = "build"
JOBS_DIR = ".jobs"                   # <store>/.jobs/: which cluster job builds which artifact, and their logs


def gguf_file(model_name: str, encoding: str) -> str:
    """`SmolLM2-135M-Instruct-Q4_K_M.gguf`: the model name made file-safe, then the encoding."""
    return f"{sanitize(model_name)}-{encoding.upper()}.gguf"


def converted_gguf(artifact: Path, model_name: str, convert_type: str) -> Path:
    """convert: the 16/32-bit GGUF that every quantization starts from."""
    return Path(artifact) / gguf_file(model_name, convert_type)


def quantized_gguf(artifact: Path, model_name: str, quant_type: str) -> Path:
    """quantize: the GGUF at `quant_type`."""
    return Path(artifact) / gguf_file(model_name, quant_type)


LORA_BASE_PART = "base"   # file name part that tells lora_gguf's base GGUF from the merged one


def lora_base_gguf(model_name: str, quant_type: str) -> str:
    """lora_gguf: the un-merged base model at `quant_type` (Ollama's FROM)."""
    return gguf_file(f"{model_name}-{LORA_BASE_PART}", quant_type)


def lora_adapter_gguf(model_name: str) -> str:
    """lora_gguf: the LoRA adapter as a GGUF (Ollama's ADAPTER)."""
    return gguf_file(f"{model_name}-LoRA", "f16")


# A plan slot is a stage name, or "quantize@<type>" for a quant of the eval ladder: an ordinary
# quantize artifact that eval compares with the shipped one.
def ladder_slot(quant_type: str, imatrix: bool = True) -> str:
    """A quant of the eval ladder; `imatrix` False: the same type built without its importance matrix
    (eval.compare_imatrix), named `<type>-no-imatrix` in the ladder."""
    return f"quantize@{quant_type}" if imatrix else f"quantize@{quant_type}{NO_IMATRIX}"


NO_IMATRIX = "-no-imatrix"
IMATRIX_FILE = "imatrix.gguf"             # imatrix: the importance matrix (llama-imatrix's GGUF form)
IMATRIX_OWN = "imatrix"                   # ... the user's own file, as given (.gguf or .dat), with its suffix
CALIBRATION_TEXT = "calibration.txt"      # imatrix: the text it was computed on
IMATRIX_RECORD = "imatrix.json"           # imatrix: chunks, tokens, sources, seconds
IMATRIX_LOG = "imatrix.log"


# vLLM checkpoints: "vllm_quant@<scheme>", one per scheme of target.vllm.quants and target.vllm.serve;
# the scheme is the value VLLM_SCHEME of the node's config (plan/stages.py)
VLLM_SCHEME = "vllm_scheme"
QUANTIZED_MODEL = "model"                  # vllm_quant: the compressed-tensors HF folder vLLM loads
VLLM_QUANT_RECORD = "vllm_quant.json"      # vllm_quant: scheme, recipe, calibration, sizes and time


def vllm_slot(scheme: str) -> str:
    return f"vllm_quant@{scheme}"


def stage_of(slot: str) -> str:
    """The stage a plan slot builds (a quant of the eval ladder is a quantize artifact)."""
    return slot.partition("@")[0]


def ladder(quants, shipped: str) -> list[str]:
    """The extra quant types eval compares with the shipped one: `quants` in order, once each,
    without `shipped`."""
    return [t for t in dict.fromkeys(quants) if t != shipped]


# files under templates/ that stages render (each stage's key hashes the ones it declares);
# the chat families' own templates are named in facts/chat_families.py
MODELFILE_TEMPLATE = "Modelfile.j2"
VLLM_SERVE_TEMPLATE = "vllm/serve.sh.j2"
HF_CARD_TEMPLATE = "hf/README.md.j2"
REPORT_TEMPLATES = ("report/report.md.j2", "report/report.html.j2")
SWEEP_REPORT_TEMPLATES = ("report/sweep.md.j2", "report/sweep.html.j2")

# train on several GPUs (train.distributed): the launcher's config, written beside llamafactory.yaml,
# which names it relatively (facts/distributed.py)
DEEPSPEED_ZERO2_CONFIG = "ds_zero2.json"
DEEPSPEED_ZERO3_CONFIG = "ds_zero3.json"
FSDP_CONFIG = "fsdp_config.json"
