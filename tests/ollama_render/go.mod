module discmed/ollama_render

go 1.19
