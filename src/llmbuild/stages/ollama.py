"""ollama: the Ollama folder: the quantized GGUF beside a Modelfile whose TEMPLATE, stop tokens and
SYSTEM come from the same chat family the adapter was trained with. The parity suite is then
rendered through that TEMPLATE with Go's text/template, as an Ollama server would, and compared
with the GGUF's own chat template (which the parity stage proved equal to training)."""

from __future__ import annotations

from ..adapters import go_template, llama_cpp
from ..adapters.llama_cpp_vocab import read_metadata
from ..chat import modelfile, parity
from ..chat.source import default_system
from ..chat.templates import ollama_template
from ..errors import StageError
from ..facts import layout
from ..facts.chat_families import FAMILIES, builtin
from ..files.links import link_or_copy
from . import chat, ggufs
from .context import StageContext


def run(ctx: StageContext) -> None:
    cfg = ctx.cfg
    setup = chat.recorded(ctx.inputs["merge"])
    family = setup.chat_family
    if family is None:
        raise StageError(f"the model's chat template is of no family llmbuild has an Ollama TEMPLATE for "
                         f"({', '.join(FAMILIES)}), so an Ollama Modelfile cannot prompt it as it was trained. "
                         f"Build without the ollama target (e.g. target=[llamacpp] or target=[vllm]), or set "
                         f"prompt.template to one of {', '.join(builtin())} to train with llmbuild's template.")
    merged = ggufs.gguf(ctx.inputs["quantize"])
    meta = read_metadata(merged)  # the trained chat template and end tokens, whichever file Ollama loads
    template_text = meta.get("tokenizer.chat_template") or ""
    reference = llama_cpp.chat_formatter(template_text, meta.bos_token, meta.end_tokens[0] if meta.end_tokens else "")
    # SYSTEM: the build's system prompt, else the one the template itself puts in front
    system = setup.system if setup.system is not None else default_system(reference)
    gguf, adapter = merged, None
    if "lora_gguf" in ctx.inputs:  # target.ollama.adapter: FROM the base, ADAPTER the LoRA
        gguf, adapter = ggufs.gguf(ctx.inputs["lora_gguf"]), ggufs.gguf(ctx.inputs["lora_gguf"], "lora")
        link_or_copy(adapter, ctx.out / adapter.name)
    link_or_copy(gguf, ctx.out / gguf.name)
    end_tokens = list(meta.end_tokens)
    stop = list(dict.fromkeys([*family.stop, *end_tokens, *cfg.prompt.stop]))
    prompt = cfg.prompt
    ollama = cfg.target.ollama
    name = (ollama.model_name if ollama else None) or "<name>"  # the artifact is shared: it names no variant
    bos = _bos_left_to_template(reference, meta)
    spec = modelfile.Modelfile(
        gguf_file=gguf.name,
        adapter=adapter.name if adapter else None,
        template=bos + ollama_template(ctx.templates.text(family.ollama_template),
                                       eos_token=end_tokens[0] if end_tokens else "", name=family.ollama_template),
        header=[f"Ollama Modelfile: {cfg.model.name} fine-tuned by llmbuild (ollama key {ctx.key}).",
                f"  ollama create {name} -f Modelfile",
                f"  ollama run {name}",
                f"TEMPLATE is the {family.name} chat format of the build (its chat template, as merged)"
                + (f", and writes {bos} itself: the tokenizer does not add it." if bos else ".")],
        system=system or "",
        parameters=[("temperature", prompt.temperature), ("top_p", prompt.top_p), ("top_k", prompt.top_k),
                    ("repeat_penalty", prompt.repeat_penalty), ("num_ctx", prompt.num_ctx),
                    *([("num_predict", prompt.num_predict)] if prompt.num_predict != -1 else []),
                    *(("stop", token) for token in stop)],
        messages=[(m.role, m.content) for m in (ollama.messages if ollama else [])],
        license=cfg.model.license,
    )
    try:
        text = modelfile.render(spec, ctx.templates)
    except modelfile.ModelfileError as err:
        raise StageError(str(err)) from None
    checked = (_check_template(ctx, family, spec, _without_bos(reference, meta), stop, end_tokens)
               if ollama is None or ollama.verify_template else "")
    (ctx.out / layout.MODELFILE).write_text(text, encoding="utf-8")
    ctx.say(f"Modelfile: {family.name} TEMPLATE, stop {stop}, temperature {prompt.temperature}{checked}")


def _check_template(ctx: StageContext, family, spec: modelfile.Modelfile, reference, stop: list[str],
                    end_tokens: list[str]) -> str:
    """The parity suite through the Modelfile as Ollama runs it; what it found, for the result line."""
    fewshot = [{"role": role, "content": content} for role, content in spec.messages]
    render_ollama = go_template.request_renderer(spec.template, spec.system or "", fewshot)
    trained = list(dict.fromkeys([*family.stop, *end_tokens]))   # where the train stage ends answers
    checks = parity.ollama_checks(parity.suite(family.tools, family.reasoning), reference, render_ollama, fewshot,
                                  stop, trained)
    (ctx.out / layout.OLLAMA_PARITY).write_text(parity.ollama_report(checks), encoding="utf-8")
    differing = [c for c in checks if c.status == "DIFFER"]
    if differing:
        raise StageError(f"Ollama would prompt the model differently from training for {len(differing)} of "
                         f"{len(checks)} conversations; fix templates/{family.ollama_template}. First, "
                         f"'{differing[0].conversation}':\n{differing[0].diff()}")
    reformatted = [c.conversation for c in checks if c.status != "agree"]
    return (f"; Ollama (Go text/template): {len(checks) - len(reformatted)} of {len(checks)} prompts as trained, "
            f"answers end at a stop"
            + (f" ({', '.join(reformatted)}: same JSON, Go's formatting; ollama_parity.md)" if reformatted else ""))


def _writes_bos(render, bos: str) -> bool:
    """Whether the chat template writes `bos` as a BOS: once, in front of the conversation. A model whose
    BOS token is also its turn marker (SmolLM2's is <|im_start|>) writes it before every turn: that is
    the format's text, which the TEMPLATE writes itself."""
    probe = render([{"role": "user", "content": "Hi"}], [], True)
    return bool(bos) and probe.startswith(bos) and probe.count(bos) == 1


def _bos_left_to_template(render, meta) -> str:
    """The BOS text the TEMPLATE must write: the chat template writes one (DeepSeek-R1's and Gemma's
    do) and the tokenizer does not add it (llama.cpp's add_bos for the GGUF), so Ollama's runner would
    prompt without it. "" otherwise (the families' TEMPLATEs leave the BOS to the runner)."""
    bos = meta.bos_token
    if not bos or meta.adds_bos:
        return ""
    return bos if _writes_bos(render, bos) else ""


def _without_bos(render, meta):
    """The GGUF's prompts as Ollama's TEMPLATE writes them: Ollama's runner adds the BOS token while
    tokenizing (llama.cpp's add_bos for the GGUF: its add_bos_token, else llama.cpp's default for the
    vocabulary), so a template's leading BOS text is not the TEMPLATE's."""
    bos = meta.bos_token if meta.adds_bos and _writes_bos(render, meta.bos_token) else ""

    def rendered(messages: list, tools: list, add_generation_prompt: bool) -> str:
        text = render(messages, tools, add_generation_prompt)
        return text[len(bos):] if bos and text.startswith(bos) else text
    return rendered
