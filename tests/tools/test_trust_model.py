"""Trust on the real default model: calibrated field confidences, the signals they come
from, grounded replies, and `taskloom calibrate` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from taskloom.calibration import Calibration
from taskloom.chat.grounding import Grounding
from taskloom.chat.llama.host import ModelHost
from taskloom.chat.llama.picker import Draft
from taskloom.tools import generate, run_task
from taskloom.tools.base import Usage, ask_until_valid, build_messages, check_schema, parse_inputs
from taskloom.tools.generate import Inputs, source
from tests.test_cli import cli

pytestmark = pytest.mark.model

CONTACT = {
    "type": "object",
    "properties": {
        "person": {"type": ["string", "null"], "description": "the name of the person writing"},
        "company": {"type": ["string", "null"], "description": "the company"},
        "order_id": {"type": ["string", "null"], "description": "the order number"},
    },
    "required": ["person", "company", "order_id"],
}
TEXT = "hi, Ines from Lakeside Bikes here. order #SO-2291 never showed up. thx"


def test_every_field_gets_a_calibrated_confidence_from_its_signals(model_host: ModelHost) -> None:
    out = run_task("extract", {"text": TEXT, "copy": True}, output=CONTACT, model=model_host)
    fields = out.meta["fields"]
    assert set(fields) == {"person", "company", "order_id"}
    for f in fields.values():
        assert 0.0 < f["confidence"] < 1.0
        assert isinstance(f["accepted"], bool)
        signals = f["signals"]
        assert signals["null"] == (f["value"] is None)
        if f["value"] is not None:
            assert signals["tokens"] >= 1 and signals["lp_min"] <= 0.0  # read from decoding
            # every span of this text has words around it: the second view weighed them
            assert isinstance(signals["rival"], float)
    assert out.confidence == min(f["confidence"] for f in fields.values())
    assert out.accepted == all(f["accepted"] for f in fields.values())


def test_a_grounded_reply_invents_no_id(model_host: ModelHost) -> None:
    # The kind's default example replies about "order B-311": a free model copies it.
    inputs = {
        "instruction": "Draft a short reply to Ines about her missing order",
        "context": [{"name": "Ines", "order_id": "SO-2291"}, ["Lost parcels are re-sent."]],
        "max_tokens": 96,
    }
    out = run_task("generate", inputs, model=model_host)
    text = out.value["text"]
    assert Grounding(source(Inputs.model_validate(inputs))).invented(text) == [], text
    assert out.accepted is True and out.meta["invented"] == []


def test_a_stopped_run_is_not_spelled_on_in_letters(model_host: ModelHost) -> None:
    # The warm-cache path of the main job: "refund B-" then "311" turned down, then the
    # model's next choices were letters, "B-A-A-A-D-D-…", until the budget ran out.
    decoder = model_host._decoder
    draft = Draft(grammar=None, temperature=0.0, rng=np.random.default_rng(0))
    draft.grounding = Grounding("Reply to Maria about order A-1042")
    draft.text = b"about refund B-"
    want = [decoder.tokenize(p, special=False)[0] for p in ("3", "A", "D", " A")]
    logits = np.full(decoder.n_vocab, -10.0, dtype=np.single)
    logits[want] = [9.0, 8.0, 7.0, 6.0]  # the model's order of preference
    token = decoder.picker.advance(draft, logits)
    assert decoder.piece(token) == b" A", "neither the invented digit nor a letter after B-"
    assert draft.ungrounded == 1 and not draft.is_halted  # a space closed the run


def test_a_turned_down_number_is_not_replaced_by_a_byte_of_a_character(
    model_host: ModelHost,
) -> None:
    # "bank transfers take" + an invented number turned down: a byte token reads as no
    # digit, but strung together they spell characters of no language.
    decoder = model_host._decoder
    byte = next(t for t in range(decoder.n_vocab) if decoder.piece(t) == b"\xef")
    draft = Draft(grammar=None, temperature=0.0, rng=np.random.default_rng(0))
    draft.grounding = Grounding("Refunds go back to the original payment method.")
    draft.text = b"bank transfers take "
    number, about = (decoder.tokenize(p, special=False)[0] for p in ("5", "about"))
    logits = np.full(decoder.n_vocab, -10.0, dtype=np.single)
    logits[[number, byte, about]] = [9.0, 8.0, 7.0]
    assert decoder.piece(decoder.picker.advance(draft, logits)) == b"about"


def test_a_json_escapes_hex_digits_are_not_held_to_the_source(model_host: ModelHost) -> None:
    # bench_grounding, r010: "take \u" + "2" (of \u20ac, "€") was turned down, and the
    # hex letters left spelled "\ufcbc" + "e" + "\ufcbc"…, characters of no language.
    decoder = model_host._decoder
    draft = Draft(grammar=None, temperature=0.0, rng=np.random.default_rng(0))
    draft.grounding = Grounding("Refunds go back to the original payment method.")
    draft.text = b"bank transfers take \\u"
    two, fc = (decoder.tokenize(p, special=False)[0] for p in ("2", "fc"))
    logits = np.full(decoder.n_vocab, -10.0, dtype=np.single)
    logits[[two, fc]] = [9.0, 8.0]
    assert decoder.piece(decoder.picker.advance(draft, logits)) == b"2"
    assert draft.ungrounded == 0


def test_a_reply_its_token_budget_cuts_is_closed_not_reasked(model_host: ModelHost) -> None:
    inputs = parse_inputs(generate, "generate", {"instruction": "Draft a short reply to Ines"})
    long_text = {**generate.schema(inputs, None), "properties": {"text": {"type": "string"}}}
    usage = Usage()
    value = ask_until_valid(
        model_host,
        "generate",
        build_messages(generate, inputs, long_text),
        constraint=long_text,
        validator=check_schema(long_text, "generate"),
        max_tokens=6,
        output_retries=2,
        usage=usage,
        parse=generate.parse,
    )
    assert usage.calls == 1 and usage.completion_tokens == 6
    raw = usage.raw_outputs[0]
    assert not raw.rstrip().endswith("}"), raw  # the budget did cut it
    assert raw.lstrip().startswith('{"text": "')
    assert value["text"] and value["text"] in raw


@pytest.mark.slow
def test_calibrate_on_the_real_model_writes_thresholds(
    tmp_path: Path, taskloom_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {
            "step": {"kind": "extract", "inputs": {"text": t, "copy": True}, "output": CONTACT},
            "expected": e,
        }
        for t, e in [
            (TEXT, {"person": "Ines", "company": "Lakeside Bikes", "order_id": "#SO-2291"}),
            ("Order 5521 is late. Tom", {"person": "Tom", "company": None, "order_id": "5521"}),
            (
                "Hello, this is Ana Ruiz from Ruiz Cafe.",
                {"person": "Ana Ruiz", "company": "Ruiz Cafe", "order_id": None},
            ),
        ]
    ]
    path = tmp_path / "examples.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines))
    out = tmp_path / "cal.json"
    code, stdout, err = cli(capsys, "calibrate", "--examples", str(path), "--out", str(out))
    assert code == 0, err
    written = Calibration.model_validate_json(out.read_text())
    assert written.kinds["extract"].examples == 9
    assert "extract: 9 answers" in stdout
