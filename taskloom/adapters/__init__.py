"""Adapters: small LoRA weights, learned from a task's labelled answers, that a worker
applies on top of its GGUF model for the steps of that task.

- `data`: labelled answers as training pairs, the prompt exactly as a step builds it;
- `train`: trains a LoRA on them (torch and peft, the `learn` extra);
- `file`: writes and checks llama.cpp's LoRA GGUF, the file workers load.

`taskloom learn --adapter` ties them together (`api/learn.py`), and a lesson names the
adapter its signature's steps run with (`lessons.py`).
"""
