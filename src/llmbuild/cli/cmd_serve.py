"""`doit serve`: build what is stale, then serve the build over an OpenAI-compatible API: vLLM (from its
own environment) when target.vllm is configured, else the GGUF in llama-cpp-python's server."""

from __future__ import annotations

from ..adapters import llama_cpp_server, ports, tool_env, vllm_server
from ..config.schema import LlamacppTarget
from ..errors import ToolError
from ..facts.tool_envs import VLLM
from ..plan import outputs
from .cmd_base import GraphCommand


class Serve(GraphCommand):
    name = "serve"
    doc_purpose = "build the configured model if needed, then serve it over an OpenAI-compatible API"
    doc_usage = "[overrides]"
    doc_description = ("Starts llama-cpp-python's server on loopback (target.llamacpp.host/port, default\n"
                       "127.0.0.1:8080) with the quantized GGUF and its own chat template, e.g.\n"
                       "  doit serve quant=q8_0 target.llamacpp.port=8081\n"
                       "With target.vllm configured, starts vLLM instead (its own environment, see README),\n"
                       "on 127.0.0.1:target.vllm.port with the format target.vllm.serve names, e.g.\n"
                       "  doit serve target=vllm target.vllm.quants=[fp8] target.vllm.serve=fp8\n"
                       "Then: OpenAI(base_url='http://127.0.0.1:8080/v1', api_key='none').")

    def execute(self, params, args):
        result = self.run_graph(params, args)
        if result != 0 or not self.plans:
            return result
        (plan,) = self.plans
        cfg = plan.composed.cfg
        if cfg.target.vllm is not None:
            return self._vllm(plan)
        settings = cfg.target.llamacpp or LlamacppTarget()
        alias = settings.model_alias or outputs.ollama_name(plan)
        gguf = outputs.quantized_gguf(plan)
        print(f"\nserving {gguf.name} as model '{alias}' on http://{settings.host}:{settings.port}/v1 (Ctrl-C stops)")
        return llama_cpp_server.serve(llama_cpp_server.command(
            gguf, alias, settings.host, settings.port, settings.n_ctx, settings.n_gpu_layers))

    def check_plans(self, plans) -> None:
        """vLLM's environment is there, and the server's port is free, before anything is built for it."""
        for plan in plans:
            cfg = plan.composed.cfg
            if cfg.target.vllm is not None:
                tool_env.python(VLLM, plan.root)
                where, setting = ("127.0.0.1", cfg.target.vllm.port), "target.vllm.port"
            else:
                settings = cfg.target.llamacpp or LlamacppTarget()
                where, setting = (settings.host, settings.port), "target.llamacpp.port"
            if ports.in_use(*where):
                raise ToolError(f"port {where[1]} on {where[0]} is in use (another server listens there): stop it, "
                                f"or serve on another port, e.g. {setting}={where[1] + 1}")

    def _vllm(self, plan) -> int:
        cfg = plan.composed.cfg
        settings = cfg.target.vllm
        python = tool_env.python(VLLM, plan.root)
        name = settings.served_model_name or cfg.model.name
        print(f"\nserving {name} ({settings.serve}) with vLLM on http://127.0.0.1:{settings.port}/v1 "
              f"(OpenAI base URL; Ctrl-C stops)")
        return vllm_server.serve(python, outputs.artifact(plan, "vllm"))
