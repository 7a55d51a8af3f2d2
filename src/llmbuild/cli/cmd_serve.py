"""`doit serve`: build what is stale, then serve the GGUF over an OpenAI-compatible API."""

from __future__ import annotations

from ..adapters import llama_cpp_server
from ..config.schema import LlamacppTarget
from ..plan import outputs
from .cmd_base import GraphCommand


class Serve(GraphCommand):
    name = "serve"
    doc_purpose = "build the configured model if needed, then serve its GGUF over an OpenAI-compatible API"
    doc_usage = "[overrides]"
    doc_description = ("Starts llama-cpp-python's server on loopback (target.llamacpp.host/port, default\n"
                       "127.0.0.1:8080) with the quantized GGUF and its own chat template, e.g.\n"
                       "  doit serve quant=q8_0 target.llamacpp.port=8081\n"
                       "Then: OpenAI(base_url='http://127.0.0.1:8080/v1', api_key='none').")

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result != 0 or not self.plans:
            return result
        (plan,) = self.plans
        settings = plan.composed.cfg.target.llamacpp or LlamacppTarget()
        alias = settings.model_alias or outputs.ollama_name(plan)
        gguf = outputs.quantized_gguf(plan)
        print(f"\nserving {gguf.name} as model '{alias}' on http://{settings.host}:{settings.port}/v1 (Ctrl-C stops)")
        return llama_cpp_server.serve(llama_cpp_server.command(
            gguf, alias, settings.host, settings.port, settings.n_ctx, settings.n_gpu_layers))
