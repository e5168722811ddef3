"""Adapters: small LoRA weights, learned from a task's labelled answers, that a worker
applies on top of its GGUF model for the steps of that task.

- `train`: trains a LoRA on training pairs (torch and peft, the `learn` extra), which
  `lessons.training_pairs` builds from labelled answers;
- `file`: writes and checks llama.cpp's LoRA GGUF, the file workers load.

`taskloom learn --adapter` ties them together (`api/learn.py`), and a lesson names the
adapter its signature's steps run with (`lessons.py`).
"""
