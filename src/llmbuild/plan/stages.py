"""What each stage reads, what it depends on and which tools it calls: the facts keys are made of.

Pure data. A stage's key changes exactly when one of these changes: a config key it reads, an
upstream key, a template file it renders, its `version` (bump it when the stage's output changes
for the same inputs), or the version of a tool it calls.

A stage runs with exactly what its key covers: its config is the `reads` slice that was hashed
(plus `uses`, values it reads that change no byte of its output, and `checks`, values of later
stages it checks so that a build they cannot finish stops early), and its templates are the files
of `templates`; reading anything else fails the build (plan/view.py, files/templates.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..facts.chat_families import CHAT_TEMPLATE_FILE, OLLAMA_TEMPLATE_FILE
from ..facts.layout import HF_CARD_TEMPLATE, MODELFILE_TEMPLATE, REPORT_TEMPLATES, VLLM_SCHEME, VLLM_SERVE_TEMPLATE

SCHEME = VLLM_SCHEME


@dataclass(frozen=True)
class StageSpec:
    name: str
    doc: str                                # first line of `doit list`
    reads: tuple[str, ...] = ()             # config keys (a group name means all of it); see config/derived.py
    uses: tuple[str, ...] = ()              # config keys read but not hashed: each changes how, never what, is built
    checks: tuple[str, ...] = ()            # later stages' keys, read only to refuse early what they cannot build
    upstream_reads: tuple[str, ...] = ()    # config keys read that an upstream stage's key covers (tests check)
    upstream: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()             # Python distributions whose versions enter the key
    # (config key, distribution): its version too, when the key is set; ("key=prefix", distribution):
    # when the key's value starts with prefix
    tools_if: tuple[tuple[str, str], ...] = ()
    templates: tuple[str, ...] = ()         # files under templates/, "{family}" filled in
    version: str = "1"
    target: str | None = None               # a deploy target: the stage exists only when target.<name> is set
    enabled_by: str | None = None           # a boolean config key: the stage exists only when it is true
    quant_ladder: bool = False              # also depends on a quantize node per type in eval.quants
    optional_upstream: tuple[str, ...] = ()  # upstream stages used when they exist in the plan
    chat: bool = False                      # exists only when the last training stage makes a chat model
    earlier_models: bool = False            # also depends on the merged model of each earlier training stage
    per_scheme: bool = False                # one node per vLLM scheme built (vllm_quant@<scheme>), keyed with it
    vllm_schemes: str | None = None         # also depends on vLLM scheme nodes: "all" of them, or the "served" one
    job: bool = False                       # takes minutes: with a cluster launcher, a job of its own (the
                                            # stages that take seconds run where the command was typed)
    tool_env: str | None = None             # an environment of its own (facts/tool_envs.py) whose versions enter
                                            # the key: always for a per_scheme stage, else when schemes are built


STAGES: dict[str, StageSpec] = {s.name: s for s in (
    StageSpec(
        "base", "Import the base model as an HF folder (local folder, hub id, or GGUF with its own tokenizer)",
        reads=("model.path", "model.hub_id", "model.revision", "model.trust_remote_code"),
        tools=("transformers", "gguf", "tokenizers", "torch"),
        job=True,
    ),
    StageSpec(
        "data", "Check the dataset as the training method's kind of data; hold rows out for eval",
        reads=("dataset", "train.stage"),
        version="3",  # 2: held-out split; 3: text, preference and labelled data, one plain form
    ),
    StageSpec(
        "train", "Train a LoRA adapter with llamafactory-cli train (SFT, continued pretraining, DPO, ORPO, SimPO, KTO)",
        # train_devices: train.devices as a number, `auto` counted when planned (config/derived.py)
        reads=("lora", "train", "model.chat_format", "prompt.template", "prompt.system", "model.trust_remote_code",
               "train_devices"),
        upstream_reads=("model.path",),
        upstream=("base", "data"),
        tools=("llamafactory", "transformers", "peft", "trl", "datasets", "accelerate", "torch"),
        tools_if=(("lora.quantization_bit", "bitsandbytes"), ("train.distributed=deepspeed", "deepspeed"),
                  ("train.liger_kernel=True", "liger-kernel"),
                  # Liger's kernels are Triton's, and inductor writes its kernels in Triton on a GPU
                  ("train.liger_kernel=True", "triton"), ("train.compile=layers", "triton"),
                  ("train.compile=model", "triton")),
        templates=(CHAT_TEMPLATE_FILE,),
        version="7",  # 2: the conversations written by the chat template (the model's own); tokens/s logged;
                      # 3: training methods (train.stage), samples of each kind of data;
                      # 4: train.auto_batch, liger_kernel and neat_packing (the choice in the manifest);
                      # 5: packed rows' tokens counted whole (the non-padding count summed their 4-D mask);
                      # 6: train.compile (layers: llmbuild's launcher), no fused loss sized for preference stages;
                      # 7: neat_packing null packs samples longer than cutoff_len too (LLaMA-Factory cuts them)
        # a system prompt the smoke test's or eval's context cannot hold fails before training
        checks=("smoke.questions", "smoke.max_tokens", "smoke.n_ctx",
                "eval.enabled", "eval.n_ctx", "eval.max_new_tokens", "target.vllm.quants", "target.vllm.serve",
                "target.vllm.max_model_len"),
        job=True,
    ),
    StageSpec(
        "merge", "Merge the adapter into the base with llamafactory-cli export; write the chat template",
        reads=("model.chat_format", "prompt.template", "prompt.system"),
        upstream_reads=("model.trust_remote_code",),
        upstream=("base", "train"),
        tools=("llamafactory", "transformers", "peft", "torch", "jinja2"),
        templates=(CHAT_TEMPLATE_FILE,),
        version="5",  # 2: non-ASCII system prompts written as characters (astral ones broke as surrogates);
                      # 3: the model's own chat template, and chat.json; 4: SentencePiece
                      # tokenizer.model and added tokens kept for the converter; 5: without
                      # LLaMA-Factory's own Modelfile (its TEMPLATE drops the format's tokens)
        job=True,
    ),
    StageSpec(
        "convert", "Convert the merged model to GGUF with llama.cpp's convert_hf_to_gguf.py",
        reads=("quant.convert_type", "model.name"),
        upstream=("merge",),
        tools=("llama_cpp_python", "torch", "transformers", "numpy", "sentencepiece"),
        version="2",  # 2: general.name is model.name (Phi-3's whitespace rule: llama_cpp.gguf_name)
        job=True,
    ),
    StageSpec(
        "parity", "Check that training, the merged model and the GGUF format a conversation suite identically",
        upstream=("base", "merge", "convert"),
        tools=("llamafactory", "transformers", "llama_cpp_python", "jinja2"),
        version="4",  # 2: emoji and rare scripts in the conversation suite; 3: the model's own template, reasoning;
                      # 4: training's tokens compared with the text's own
    ),
    StageSpec(
        "imatrix", "Compute an importance matrix with llama.cpp's llama-imatrix on the training samples as trained",
        # quant.imatrix=<file>: the user's own file, keyed by its content alone (plan/graph.py); auto: the
        # training samples as the chat template wrote them, then the quant.calibration files
        reads=("quant.imatrix", "quant.imatrix_ctx", "quant.imatrix_chunks"),
        uses=("quant.nthread",),
        upstream=("convert", "train"),
        tools=("llama_cpp_python",),   # llama-imatrix is compiled from its llama.cpp
        job=True,
    ),
    StageSpec(
        "quantize", "Quantize the GGUF with llama.cpp's llama-quantize (an importance matrix where the type reads one)",
        # the importance matrix is an input only for the types that read one (plan/graph.py: quant_inputs)
        reads=("quant.type", "model.name", "quant.tensor_types", "quant.output_tensor_type",
               "quant.token_embedding_type"),
        uses=("quant.nthread",),  # threads change the quantizer's speed, not its bytes (tests/test_e2e_tiny.py)
        upstream_reads=("quant.convert_type",),
        upstream=("convert",),
        tools=("llama_cpp_python",),
        version="3",  # 2: quantize.json and quantize.log; 3: llama-quantize, importance matrix, per-tensor types
        job=True,
    ),
    StageSpec(
        "vllm_quant", "Quantize the merged model for vLLM with llm-compressor (compressed-tensors FP8, INT8, INT4)",
        # SCHEME is set per node by the plan (vllm_quant@fp8, ...), as the eval ladder sets quant.type
        reads=(SCHEME, "target.vllm.calibration_samples", "target.vllm.calibration_max_len"),
        upstream=("merge", "train"),   # the merged model, and the training samples as trained (calibration)
        tools=("jinja2",),
        tool_env="quant",
        per_scheme=True,
        target="vllm",
        job=True,
    ),
    StageSpec(
        "split", "Write the quantized GGUF as llama.cpp split files of at most quant.split_max_size",
        reads=("quant.split_max_size", "quant.type", "model.name"),
        upstream=("quantize",),
        tools=("gguf",),
        enabled_by="quant.split_max_size",
    ),
    StageSpec(
        "lora_gguf", "Convert the adapter to a LoRA GGUF and the base model to a GGUF, for Ollama's FROM + ADAPTER",
        reads=("quant.type", "quant.convert_type", "model.name"),
        uses=("quant.nthread",),  # as in quantize
        upstream=("base", "train"),
        tools=("llama_cpp_python", "torch", "transformers", "numpy", "sentencepiece"),
        enabled_by="target.ollama.adapter",
        version="2",  # 2: the base quantized by llama-quantize (compiled at install), not llama-cpp-python's library
        job=True,
    ),
    StageSpec(
        "ollama", "Render the Ollama Modelfile (TEMPLATE, SYSTEM, PARAMETERs) beside the quantized GGUF",
        reads=("chat_format", "prompt.temperature", "prompt.top_p", "prompt.top_k",
               "prompt.repeat_penalty", "prompt.num_ctx", "prompt.num_predict", "prompt.stop", "target.ollama",
               "model.license", "model.name"),
        upstream=("merge", "quantize"),
        optional_upstream=("lora_gguf",),
        tools=("jinja2",),
        templates=(OLLAMA_TEMPLATE_FILE, MODELFILE_TEMPLATE),
        version="9",  # 2: stop at EOS and EOT as llama.cpp resolves them; 3: quoting Ollama reads back; 4: Go parity;
                      # 5: emoji and rare scripts in the conversation suite; 6: the template's own SYSTEM, reasoning;
                      # 7: the header names the build's chat format (continued pretraining trains none);
                      # 8: the BOS a template writes, when the tokenizer does not add it; 9: a BOS token
                      # that is the format's turn marker (SmolLM2's <|im_start|>) is no BOS
        target="ollama",
    ),
    StageSpec(
        "vllm", "Write the vLLM serving folder: chat template file and the vLLM server's command line",
        reads=("target.vllm.served_model_name", "target.vllm.max_model_len", "target.vllm.tool_call_parser",
               "target.vllm.port", "target.vllm.extra_args", "target.vllm.serve", "model.name"),
        upstream=("merge",),
        tools=("jinja2",),
        templates=(VLLM_SERVE_TEMPLATE,),
        version="3",  # 2: the tool-call parser of the family merge recorded; 3: serves a scheme, python -m vllm
        target="vllm",
        vllm_schemes="served",
    ),
    StageSpec(
        "hf", "Write the HF model folder with a model card (recipe, stage keys, training metrics)",
        reads=("model.name", "model.license", "model.hub_id", "model.path", "lora", "train", "dataset.name",
               "target.hf"),
        upstream=("train", "merge"),
        templates=(HF_CARD_TEMPLATE,),
        target="hf",
    ),
    StageSpec(
        "smoke", "Chat with the quantized GGUF in llama.cpp: answers and tokens/s",
        reads=("smoke", "prompt.system"),
        upstream=("quantize",),
        tools=("llama_cpp_python",),
        chat=True,   # continued pretraining alone makes no chat model to chat with
        job=True,
    ),
    StageSpec(
        "eval", "Evaluate base, fine-tuned, every GGUF and vLLM checkpoint on held-out rows: NLL, KLD, answers, speed",
        reads=("eval", "prompt.system", "model.name", "quant.type", "quant.convert_type", "train.stage",
               "train.pref_beta"),
        upstream_reads=("dataset.holdout", "dataset.holdout_seed"),
        upstream=("base", "data", "merge", "convert", "quantize"),
        tools=("llama_cpp_python", "transformers", "torch"),
        enabled_by="eval.enabled",
        quant_ladder=True,
        earlier_models=True,   # a pipeline's earlier stages are evaluated too (the reference of preference tuning)
        vllm_schemes="all",    # and every vLLM checkpoint, in the quant environment's transformers
        tool_env="quant",
        version="5",  # 2: each worker's own peak memory (VmHWM), quantize records; 3: text perplexity,
                      # preference accuracy and reward margins, earlier pipeline stages; 4: vLLM checkpoints;
                      # 5: 95% intervals, eval.kld_text, quants without their importance matrix
        job=True,
    ),
    StageSpec(
        "report", "Write report.md and a self-contained report.html: config, timings, loss, quant ladder, answers",
        # the report shows the resolved config: every group it shows is part of its key (tests check
        # that this is every group of the schema; keys that build nothing, schema.NOT_BUILT, are left out)
        reads=("model", "dataset", "lora", "train", "pipeline", "quant", "prompt", "target", "smoke", "eval"),
        upstream=("train", "eval"),
        optional_upstream=("smoke",),   # no smoke test after continued pretraining alone
        tools=("matplotlib", "jinja2"),
        templates=REPORT_TEMPLATES,
        enabled_by="eval.enabled",
        version="7",  # 2: quantizer fallbacks, the f16 reference never recommended; 3: config shown = config keyed;
                      # 4: training methods, pipelines, preference and text metrics; 5: vLLM checkpoints, the
                      # train stage's batch and padding choices; 6: the metrics table as before; 7: 95%
                      # intervals (recommended by the upper bound), bits per weight, the imatrix gain
    ),
)}

ORDER = tuple(STAGES)
