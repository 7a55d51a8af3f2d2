"""The prompt-format domain: chat templates rendered for each consumer, the Ollama Modelfile, the
parity suite that proves every rendering identical, and OpenAI-style conversation helpers. Pure:
the renderers that run a tool (transformers, llama.cpp, LLaMA-Factory, Go) are in adapters/."""
