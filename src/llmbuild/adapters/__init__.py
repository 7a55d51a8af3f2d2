"""Adapters: the only code that runs foreign tools (LLaMA-Factory, llama.cpp, transformers, gguf-py, Go,
the hub, servers). They take plain values, never a config, and translate a tool's failure into one
ToolError or StageError naming the tool, its last error line and its log."""
