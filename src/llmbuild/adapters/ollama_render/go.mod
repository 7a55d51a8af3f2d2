module llmbuild/ollama_render

go 1.19
