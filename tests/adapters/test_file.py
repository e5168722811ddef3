"""The adapter file: llama.cpp's LoRA GGUF, written and checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from taskloom.adapters.file import architecture, check_adapter, gguf_name, write_lora
from taskloom.errors import ConfigError

gguf = pytest.importorskip("gguf")  # the learn extra


@pytest.mark.parametrize(
    ("peft_key", "name"),
    [
        ("base_model.model.model.layers.3.self_attn.q_proj.lora_A.default.weight",
         "blk.3.attn_q.weight.lora_a"),
        ("base_model.model.model.layers.17.mlp.down_proj.lora_B.default.weight",
         "blk.17.ffn_down.weight.lora_b"),
        ("model.layers.0.self_attn.o_proj.lora_B.weight", "blk.0.attn_output.weight.lora_b"),
    ],
)  # fmt: skip
def test_peft_keys_become_llama_cpp_tensor_names(peft_key: str, name: str) -> None:
    assert gguf_name(peft_key) == name


def test_a_key_of_no_known_projection_is_refused() -> None:
    with pytest.raises(ValueError, match="not a LoRA weight"):
        gguf_name("model.layers.0.self_attn.rotary.lora_A.weight")


def test_content_named_files_change_name_with_their_weights(tmp_path: Path) -> None:
    """Workers load an adapter once per path: retrained weights must get a new name,
    and the same weights keep theirs."""

    def write(value: float) -> Path:
        weights = {
            "blk.0.attn_q.weight.lora_a": np.full((8, 16), value, dtype=np.float32),
            "blk.0.attn_q.weight.lora_b": np.ones((32, 8), dtype=np.float32),
        }  # fmt: skip
        return write_lora(
            weights, tmp_path / "adapter-extract.gguf", alpha=16, arch="gemma3",
            meta={"kind": "extract"}, content_named=True,
        )  # fmt: skip

    first, again, retrained = write(1.0), write(1.0), write(2.0)
    assert first == again != retrained
    for path in (first, retrained):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert path.name == f"adapter-extract-{digest}.gguf" and check_adapter(path) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, retrained.name])


def test_the_written_file_is_an_adapter_llama_cpp_reads(tmp_path: Path) -> None:
    a = np.arange(8 * 16, dtype=np.float32).reshape(8, 16)  # rank × in
    b = np.ones((32, 8), dtype=np.float32)  # out × rank
    path = write_lora(
        {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b},
        tmp_path / "learned" / "adapter.gguf",
        alpha=16,
        arch="gemma3",
        meta={"kind": "extract"},
    )
    assert check_adapter(path) == path and not list(tmp_path.rglob("*.tmp"))
    reader = gguf.GGUFReader(str(path))

    def text(key: str) -> str:
        field = reader.fields[key]
        return bytes(field.parts[field.data[0]]).decode()

    assert text("general.type") == "adapter" and text("adapter.type") == "lora"
    assert text("general.architecture") == "gemma3" and text("taskloom.kind") == "extract"
    assert float(reader.fields["adapter.lora.alpha"].parts[-1][0]) == 16.0
    tensors = {t.name: t for t in reader.tensors}
    # llama.cpp's shapes: ne[0] is the input side, as it checks against the base weight
    assert list(tensors["blk.0.attn_q.weight.lora_a"].shape) == [16, 8]
    assert list(tensors["blk.0.attn_q.weight.lora_b"].shape) == [8, 32]
    assert np.array_equal(tensors["blk.0.attn_q.weight.lora_a"].data, a)


@pytest.mark.parametrize(
    ("content", "says"), [(None, "can't be read"), (b"not a model", "is not a GGUF file")]
)
def test_a_missing_or_foreign_adapter_file_says_what_to_do(
    tmp_path: Path, content: bytes | None, says: str
) -> None:
    path = tmp_path / "adapter.gguf"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=says) as raised:
        check_adapter(path)
    assert "run taskloom learn again" in raised.value.message


def test_the_architecture_is_read_past_keys_of_every_kind(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(str(path), arch="gemma3")
    del writer.kv_data[0]["general.architecture"]  # written last, after keys to skip
    writer.add_uint32("general.quantization_version", 2)
    writer.add_array("tokenizer.ggml.tokens", ["<pad>", "hello", "wörld"])
    writer.add_array("tokenizer.ggml.scores", [0.0, -1.5, -2.5])
    writer.add_bool("general.flag", True)
    writer.add_string("general.architecture", "gemma3")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    assert architecture(path) == "gemma3"


def test_a_file_with_no_architecture_is_refused_in_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.gguf"
    foreign.write_text("not a model")
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(b"GGUF\x03\x00\x00\x00\x00")  # the header stops short
    for path, why in ((foreign, "not a GGUF file"), (cut, "can't read the architecture")):
        with pytest.raises(ConfigError, match=why):
            architecture(path)
