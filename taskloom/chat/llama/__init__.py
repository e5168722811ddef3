"""The llama.cpp backend: a resident GGUF model (`host`), its sample-then-check decoder
(`decoder`) and the JSON-schema grammar compiler with its cache (`grammar`)."""
