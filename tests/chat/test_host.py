"""The model host: loading, grammars, sample-first decoding, prefix reuse and scoring.

Tests marked `model` run on the real default GGUF model, loaded once per session
(the `model_host` fixture). The rest need no model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
import numpy as np
import pytest

from taskloom.chat import ChatModel, Message
from taskloom.chat.llama.grammar import schema_to_gbnf, span_rules
from taskloom.chat.llama.host import ModelHost
from taskloom.errors import ModelFileError, SchemaError, TaskInputError
from taskloom.tools import run_task
from taskloom.tools.base import with_copy

CONTACT = {
    "type": "object",
    "properties": {
        "name": {"type": ["string", "null"]},
        "order_id": {"type": ["string", "null"]},
        "email": {"type": ["string", "null"]},
    },
    "required": ["name", "order_id", "email"],
}
SUPPORT = (
    "Extract the fields from the text as JSON.\n\n"
    'Text: Tom Baker here, order 5521 is late.\nAnswer: {"name": "Tom Baker", '
    '"order_id": "5521", "email": null}'
)


def chat(text: str, system: str = SUPPORT) -> list[Message]:
    return [{"role": "system", "content": system}, {"role": "user", "content": f"Text: {text}"}]


# --- no model needed ----------------------------------------------------------------


def test_a_missing_model_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelFileError, match=f"{missing} does not exist"):
        ModelHost(missing)


def test_a_file_that_is_not_gguf_names_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"PK\x03\x04 definitely a zip")
    with pytest.raises(ModelFileError, match=f"{bad} is not a GGUF file"):
        ModelHost(bad)


def test_a_truncated_gguf_is_a_model_file_error(tmp_path: Path) -> None:
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00")
    with pytest.raises(ModelFileError, match=f"{bad} could not be loaded"):
        ModelHost(bad)


def test_a_schema_the_converter_cannot_handle_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="the grammar compiler can't handle this schema"):
        schema_to_gbnf({"not": {"type": "string"}})


def test_copy_turns_free_strings_into_spans_and_leaves_enums_alone() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": ["string", "null"]},
            "kind": {"type": "string", "enum": ["a", "b"]},
        },
    }
    gbnf = schema_to_gbnf(with_copy(schema, "to Paris"))
    assert "answer-city ::= copy-span | null" in gbnf
    assert 'answer-kind ::= "\\"a\\"" | "\\"b\\""' in gbnf
    assert 'copy-s0 ::= "to" (" " copy-s1)?' in gbnf


def test_strings_cannot_hold_raw_control_characters() -> None:
    gbnf = schema_to_gbnf({"type": "object", "properties": {"t": {"type": "string"}}})
    assert r'char ::= [^"\\\x00-\x1F\x7F]' in gbnf


def test_span_rules_escape_json_and_keep_the_texts_own_spacing() -> None:
    rules = span_rules('say "hi"\nnow')
    assert rules["copy-s1"] == '"\\\\\\"" (copy-s2)?'  # the quote, JSON-escaped: \"
    assert rules["copy-s3"] == '"\\\\\\"" ("\\\\n" copy-s4)?'  # newline gap, as JSON \n
    assert span_rules("") == {"copy-span": '"\\"\\"" space'}


# --- the real model ---------------------------------------------------------------


@pytest.mark.model
def test_the_host_is_a_chat_model_and_reports_its_load(model_host: ModelHost) -> None:
    assert isinstance(model_host, ChatModel)
    stats = model_host.stats()
    assert stats["load_s"] > 0 and stats["model_mb"] > 100
    assert model_host.name == "gemma-3-270m-q4_k_m"


@pytest.mark.model
def test_constrained_output_conforms_and_is_accounted(model_host: ModelHost) -> None:
    c = model_host.complete(chat("Hi, Ann Lee, order 7710"), schema=CONTACT, max_tokens=64)
    jsonschema.validate(json.loads(c.text), CONTACT)
    assert c.model == model_host.name
    assert c.prompt_tokens > 20 and 5 < c.completion_tokens < 64 and c.run_ms > 0


@pytest.mark.model
def test_sample_first_gives_the_same_greedy_output_as_masking_everything(
    model_host: ModelHost,
) -> None:
    messages = chat("Where is order 123? - Bo Li, bo@li.cn")
    fast = model_host.complete(messages, schema=CONTACT, max_tokens=48)
    slow = model_host.complete(messages, schema=CONTACT, max_tokens=48, grammar_first=True)
    assert fast.text.strip() == slow.text.strip()


@pytest.mark.model
def test_a_shared_prefix_is_evaluated_once(model_host: ModelHost) -> None:
    model_host.reset_cache()
    first = model_host.complete(chat("Hi, Ann Lee, order 7710"), schema=CONTACT, max_tokens=48)
    second = model_host.complete(chat("Order 99 - Cy Ong"), schema=CONTACT, max_tokens=48)
    assert first.prompt_tokens_evaluated == first.prompt_tokens
    assert second.prompt_tokens_evaluated is not None
    assert second.prompt_tokens_evaluated < second.prompt_tokens * 0.3


@pytest.mark.model
def test_a_short_scoring_probe_does_not_evict_the_shared_prefix(model_host: ModelHost) -> None:
    model_host.reset_cache()
    model_host.complete(chat("Hi, Ann Lee, order 7710"), schema=CONTACT, max_tokens=40)
    model_host.score([{"role": "user", "content": "Ann Lee is"}], [" a name", " a number"])
    other = "Classify the text: refund or shipping.\n\nText: where is my box\nAnswer: shipping"
    model_host.complete(chat("Where is it?", system=other), max_tokens=4)
    again = model_host.complete(chat("Order 99 - Cy Ong"), schema=CONTACT, max_tokens=40)
    assert again.prompt_tokens_evaluated is not None
    assert again.prompt_tokens_evaluated < again.prompt_tokens * 0.3


@pytest.mark.model
def test_copy_constrained_strings_are_spans_of_the_text(model_host: ModelHost) -> None:
    text = "Hello, this is Dana Scully. Order 4471 never came. dana@fbi.gov"
    schema = with_copy(CONTACT, text)
    value = json.loads(model_host.complete(chat(text), schema=schema, max_tokens=64).text)
    strings = [v for v in value.values() if isinstance(v, str)]
    assert strings and all(v in text for v in strings)


@pytest.mark.model
def test_score_ranks_a_likely_continuation_first(model_host: ModelHost) -> None:
    messages: list[Message] = [{"role": "user", "content": "The capital of France is"}]
    paris, banana = model_host.score(messages, [" Paris", " banana"])
    assert paris < 0 and banana < paris


@pytest.mark.model
def test_calls_from_threads_are_serialised(model_host: ModelHost) -> None:
    texts = ["Order 1 - Al Bo", "Order 2 - Cy Di"]
    alone = [model_host.complete(chat(t), schema=CONTACT, max_tokens=40).text for t in texts]
    results: dict[int, str] = {}

    def call(i: int) -> None:
        results[i] = model_host.complete(chat(texts[i]), schema=CONTACT, max_tokens=40).text

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[0], results[1]] == alone


@pytest.mark.model
def test_a_text_longer_than_the_context_fails_naming_the_kind(model_host: ModelHost) -> None:
    text = "word " * (model_host.n_ctx + 100)
    with pytest.raises(TaskInputError, match=r"extract: the prompt has \d+ tokens .* n_ctx"):
        run_task("extract", {"text": text}, output=CONTACT, model=model_host)


@pytest.mark.model
def test_an_unsupported_schema_fails_naming_the_kind(model_host: ModelHost) -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"x": {"not": {"type": "null"}}}}
    with pytest.raises(SchemaError, match="extract output schema: the grammar compiler can't"):
        run_task("extract", {"text": "x"}, output=schema, model=model_host)


@pytest.mark.model
def test_greedy_generation_does_not_loop_into_max_tokens(model_host: ModelHost) -> None:
    # Unchecked, greedy decoding repeats "I am sorry to hear that..." until max_tokens;
    # no 8-token run may now repeat, and the text comes back on the first call.
    inputs = {
        "instruction": "Draft a short reply to Maria Lopez",
        "context": {"order_id": "A-1042", "problem": "arrived broken"},
        "max_tokens": 200,
    }
    out = run_task("generate", inputs, model=model_host)
    assert out.usage.calls == 1 and out.value["text"]
    words = out.value["text"].split()
    runs = [" ".join(words[i : i + 8]) for i in range(len(words) - 7)]
    assert len(runs) == len(set(runs))


@pytest.mark.model
def test_two_prompts_in_turn_keep_their_slots_after_other_traffic(model_host: ModelHost) -> None:
    # A step alternates between its answer's prompt and its review's; earlier steps of
    # other kinds left prompts in the other slots, some longer than the step's own.
    model_host.reset_cache()
    long_other = "Summarise the ticket for the team.\n\n" + "Ticket text. " * 60
    model_host.complete(chat("Where is it?", system=long_other), max_tokens=2)
    model_host.complete(chat("Hi, Ann Lee, order 7710"), schema=CONTACT, max_tokens=2)
    review = "Is the name in the text? Text: Hi, Ann Lee, order 7710"
    model_host.complete([{"role": "user", "content": review}], max_tokens=2)
    again = model_host.complete(chat("Hi, Ann Lee, order 7710"), schema=CONTACT, max_tokens=2)
    review_again = model_host.complete([{"role": "user", "content": review}], max_tokens=2)
    for c in (again, review_again):
        assert c.prompt_tokens_evaluated is not None
        assert c.prompt_tokens_evaluated <= 2  # the cache held the prompt


@pytest.mark.model
def test_a_review_reuses_the_instructions_the_last_steps_review_cached(
    model_host: ModelHost,
) -> None:
    # Each step's review has the same instructions and a new text, so it shares less than
    # half its prompt with the last step's review; that part is still not evaluated again.
    instruction = (
        "Answer the question about the text with words copied from the text,"
        " as a JSON string, or null if the text does not say."
    )

    def review(text: str) -> list[Message]:
        question = f"Text: {text}\nQuestion: What is the name?\nAnswer:"
        return [{"role": "system", "content": instruction}, {"role": "user", "content": question}]

    texts = [
        "Hi, Ann Lee here, order 7710 from Lyon is late; it was due on Friday morning.",
        "Hello, Tom Baker writing about order 5521, shipped to Seattle on Monday, still missing.",
    ]
    model_host.reset_cache()
    for text in texts:
        model_host.complete(chat(text), schema=CONTACT, max_tokens=2)
        last = model_host.complete(review(text), max_tokens=2)
    first, second = (model_host.prompt_tokens(review(t)) for t in texts)
    shared = next(i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b)
    assert 4 * shared >= len(second) > 2 * shared  # a real part, but under half
    assert last.prompt_tokens_evaluated == len(second) - shared


@pytest.mark.model
def test_scores_match_each_continuation_decoded_alone_in_fewer_decodes(
    model_host: ModelHost, decodes: Callable[[], int]
) -> None:
    decoder = model_host._decoder
    prompt = decoder.tokenize("The capital of France is", special=False)
    texts = [" Paris", " the city of Paris", " a banana split", " Rome, Italy"]
    conts = [decoder.tokenize(t, special=False) for t in texts]
    alone = []
    for cont in conts:  # the reference: prompt and continuation in one plain decode
        decoder.reset()
        decoder._decode([*prompt, *cont[:-1]], logits_from=0)
        rows = [decoder.logits(len(prompt) - 1 + j) for j in range(len(cont))]
        alone.append(sum(float(log_softmax(r)[t]) for r, t in zip(rows, cont, strict=True)))
    decodes()  # counted from here
    decoder.reset()
    scores, evaluated = decoder.score(prompt, conts)
    # Batch shapes differ: from 8 rows on, llama.cpp's CPU kernels round otherwise (the
    # same position's log-probability moved 0.14 nats here), which a wrong row would
    # exceed by far (these scores lie 2 to 30 nats apart).
    assert scores == pytest.approx(alone, abs=0.5)
    assert sorted(range(4), key=scores.__getitem__) == sorted(range(4), key=alone.__getitem__)
    # The first long continuation rode in the prompt's decode; the other two had one each.
    assert decodes() == 3
    assert evaluated == len(prompt) + sum(len(c) - 1 for c in conts)


@pytest.mark.model
def test_a_reviews_scores_come_from_one_decode_sharing_the_answer_so_far(
    model_host: ModelHost, decodes: Callable[[], int]
) -> None:
    # The absence check's calls: one prompt, the answer up to each field, null against
    # the value. Each is scored as a plain decode of its own would score it.
    decoder = model_host._decoder
    prompt = model_host.prompt_tokens(chat("Hi, Ann Lee here, order A-7710 from Lyon is late."))
    fields = [
        (' {"name":', ' "Ann Lee"'),
        (' {"name": "Ann Lee", "order_id":', ' "A-7710"'),
        (' {"name": "Ann Lee", "order_id": "A-7710", "email":', ' "Lyon"'),
    ]
    tokens = [
        [decoder.tokenize(t, special=False) for t in (before, " null", value)]
        for before, value in fields
    ]
    calls = [(prompt + before, [null, value]) for before, null, value in tokens]
    alone = []
    for full, conts in calls:
        scored = []
        for cont in conts:
            decoder.reset()
            decoder._decode([*full, *cont[:-1]], logits_from=0)
            rows = [decoder.logits(len(full) - 1 + j) for j in range(len(cont))]
            scored.append(sum(float(log_softmax(r)[t]) for r, t in zip(rows, cont, strict=True)))
        alone.append(scored)
    decodes()  # counted from here
    decoder.reset()
    got = decoder.score_many(calls)
    assert decodes() == 1
    for (scores, _), reference in zip(got, alone, strict=True):
        # Batch shapes differ (see the test above); the two lie 1 to 15 nats apart here.
        assert scores == pytest.approx(reference, abs=0.5)
        assert (scores[0] > scores[1]) == (reference[0] > reference[1])
    # The prompt and the answer's shared start were evaluated once, not once a field.
    evaluated = sum(n for _, n in got)
    alone_evaluated = sum(len(full) + sum(len(c) - 1 for c in conts) for full, conts in calls)
    assert len(calls[-1][0]) <= evaluated < alone_evaluated - 2 * len(prompt)
    # The branches left the cache: a plain call after them sees only the slots.
    for seq in range(3, llama_cpp.llama_n_seq_max(model_host._ctx.ctx)):
        assert llama_cpp.llama_memory_seq_pos_max(decoder._mem, seq) == -1


@pytest.mark.model
def test_more_branches_than_a_decode_holds_are_scored_one_call_at_a_time(
    model_host: ModelHost,
) -> None:
    decoder = model_host._decoder
    prompt = model_host.prompt_tokens(chat("Hi, Ann Lee here, order A-7710 from Lyon is late."))
    null = decoder.tokenize(" null", special=False)
    words = [" Ann", " Lee", " order", " Lyon", " late", " here", " from", " is"] * 3
    calls = [(prompt, [decoder.tokenize(w, special=False), null]) for w in words]
    assert 2 * len(calls) > decoder._branches
    many = decoder.score_many(calls)
    one_by_one = [decoder.score(p, c) for p, c in calls]
    for (a, _), (b, _) in zip(many, one_by_one, strict=True):
        assert a == pytest.approx(b, abs=0.5)


def log_softmax(logits: Any) -> Any:
    x = logits.astype(np.float64)
    return x - (x.max() + np.log(np.exp(x - x.max()).sum()))
