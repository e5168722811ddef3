"""The llama.cpp backend: a resident GGUF model (`host`), its sample-then-check decoder
(`decoder`), the continuous batch that decodes many calls at once (`batch`) and the
JSON-schema grammar compiler with its cache (`grammar`)."""
