"""Speculative decoding: what the drafter proposes (no model), and on the real default
model, that drafted outputs are the greedy outputs with fewer decodes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from taskloom.chat.llama.host import ModelHost
from taskloom.chat.llama.speculate import (
    MAX_DRAFT,
    Drafter,
    Lookup,
    Templates,
    draft_size,
    lookup_limit,
    skeleton_template,
    span_end,
    template_of,
)
from taskloom.tools import run_task
from tests.chat.agreement import FIELDS_AGREE, attribution, fields_agreeing, reply
from tests.chat.test_host import chat

DATA = Path(__file__).parent.parent / "tools" / "data" / "extract_texts.json"
ANSWER = ' { "name": "Tom Baker", "city": null, "order_id": "96304" }'
SOURCE = "Hi, Tom Baker from Seattle here. Order 96304 still hasn't arrived."


def chars(text: str) -> list[int]:
    """A stand-in tokenizer: one token per character."""
    return [ord(c) for c in text]


def drafter(template: dict[str | None, str], prompt: str = SOURCE) -> Drafter:
    return Drafter(SOURCE, template, chars, Lookup(chars(prompt)))


def text_of(tokens: list[int]) -> str:
    return "".join(map(chr, tokens))


def test_the_template_is_the_text_between_values_of_the_last_answer() -> None:
    assert template_of(ANSWER) == {
        None: ' { "name": "',
        "name": ', "city": ',
        "city": ', "order_id": "',
        "order_id": " }",
    }


def test_nested_answers_have_no_template() -> None:
    assert template_of('{"a": {"b": "c"}}') == {}
    assert template_of('{"a": ["b"]}') == {}


def test_the_skeleton_follows_the_grammars_key_order() -> None:
    schema = {"properties": {"a": {}, "b": {}}, "required": ["b"]}
    assert skeleton_template(schema) == {None: '{"b": "', "b": ', "a": "', "a": "}"}
    assert skeleton_template({"type": "string"}) == {}


@pytest.mark.parametrize(
    ("rest", "expected"),
    [
        (" Baker from Seattle", " Baker"),
        ("uki Tanaka here", "uki Tanaka"),
        ("6304 still", "6304"),
        ("rakow.", "rakow"),
        (" O'Brien-Smith and", " O'Brien-Smith"),
        (" from Seattle", ""),
    ],
)
def test_a_copied_value_likely_ends_before_a_lowercase_word_or_punctuation(
    rest: str, expected: str
) -> None:
    assert span_end(rest) == expected


def test_between_values_the_template_is_drafted() -> None:
    d = drafter(template_of(ANSWER))
    assert text_of(d.propose([], b' { "name": "Ann",', 40)) == ' "city": '
    assert text_of(d.propose([], b" ", 40)) == '{ "name": "'


def test_inside_a_value_the_input_is_drafted_to_the_likely_end_and_closed() -> None:
    d = drafter(template_of(ANSWER))
    drafted = text_of(d.propose([], b' { "name": "Tom', 40))
    assert drafted == ' Baker", "city": '
    assert text_of(d.propose([], b' { "name": "Tom', 3)) == " Ba"  # at most n tokens


def test_of_several_places_the_longest_likely_span_is_drafted_the_latest_of_equals() -> None:
    template = template_of(ANSWER)
    earlier = Drafter("Tom Baker wrote. Later Tom said so.", template, chars, Lookup([]))
    assert text_of(earlier.propose([], b' { "name": "Tom', 40)) == ' Baker", "city": '
    later = Drafter("Tom Ng wrote. Tom Lee said so.", template, chars, Lookup([]))
    assert text_of(later.propose([], b' { "name": "Tom', 40)) == ' Lee", "city": '
    overlapping = Drafter("AAA-1", template, chars, Lookup([]))  # "AA" at 0 and 1
    assert text_of(overlapping.propose([], b' { "name": "AA', 40)) == 'A-1", "city": '


def test_a_value_not_yet_begun_or_not_a_string_is_not_drafted_from_the_examples() -> None:
    prompt = 'Example answer: { "name": "Ann Lee", "city": null, "order_id": 12 }'
    d = drafter(template_of(ANSWER), prompt=prompt)
    start = ' { "name": "'
    lookup = Lookup(chars(prompt))
    assert text_of(lookup.propose(chars(start), 7)) == "Ann Lee"  # what it drafted before
    assert d.propose(chars(start), start.encode(), 40) == []
    number = ' { "name": "Tom", "city": null, "order_id": 1'
    assert d.propose(chars(number), number.encode(), 40) == []


def test_a_value_not_in_the_input_and_a_style_the_template_lacks_draft_nothing() -> None:
    d = drafter(template_of(ANSWER), prompt="")
    assert d.propose([], b' { "name": "Zed', 40) == []
    assert d.propose([], b' { "name": "Ann" ,', 40) == []


def test_without_a_template_prompt_lookup_drafts() -> None:
    d = drafter({})
    out = chars("Order 9")
    assert text_of(d.propose(out, b"Order 9", 5)) == "6304 "


def test_on_a_cpu_prompt_lookup_drafts_two_tokens_and_the_shape_drafts_in_full() -> None:
    assert lookup_limit(on_gpu=True) == MAX_DRAFT
    drafters = Templates(chars, lookup_limit(on_gpu=False))
    d = drafters.drafter([{"role": "user", "content": SOURCE}], chars(SOURCE), None)
    assert text_of(d.propose(chars("Order 9"), b"Order 9", 5)) == "63"
    schema = {"type": "object", "properties": {"name": {}, "city": {}}, "required": ["name"]}
    d = drafters.drafter([{"role": "user", "content": SOURCE}], chars(SOURCE), schema)
    assert text_of(d.propose([], b'{"name": "Tom', MAX_DRAFT)) == " Baker"


def test_drafts_shrink_as_the_batch_fills() -> None:
    sizes = [draft_size(16, n) for n in (1, 2, 4, 8, 16)]
    assert sizes == [MAX_DRAFT, min(MAX_DRAFT, 7), 3, 1, 0]
    assert draft_size(16, 0) == 0


# -- on the real model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(default_model_path: str) -> Any:
    host = ModelHost(default_model_path, n_ctx=4096, speculate=False)
    yield host
    host.close()


@pytest.fixture(scope="module")
def drafting(default_model_path: str) -> Any:
    """A fresh host with speculation on: the same cache history as `plain`, not the
    session host's (a prefix cached in another decode has other last bits)."""
    host = ModelHost(default_model_path, n_ctx=4096, speculate=True)
    yield host
    host.close()


@pytest.mark.model
@pytest.mark.timeout(600)
def test_drafted_outputs_are_the_greedy_outputs_with_fewer_decodes(
    drafting: ModelHost, plain: ModelHost
) -> None:
    data = json.loads(DATA.read_text())
    prompts = [chat(case["text"]) for case in data["cases"]]
    on = [reply(drafting, m, data["schema"]) for m in prompts]
    off = [reply(plain, m, data["schema"]) for m in prompts]
    same = sum(a.text == b.text for a, b in zip(on, off, strict=True))
    decodes_on = sum(u.decodes or 0 for u in on)
    decodes_off = sum(u.decodes or 0 for u in off)
    print(f"identical {same}/{len(on)}; decodes {decodes_on} vs {decodes_off}")
    # A verify decode of up to 1 + MAX_DRAFT tokens computes each row bit for bit as a
    # one-token decode does, so the picks are the same: not one near-tie may flip.
    assert same == len(on)
    assert all(u.drafted == 0 and u.draft_accepted == 0 for u in off)
    assert decodes_off >= sum(u.completion_tokens - 1 for u in off)  # a decode a token
    assert decodes_on < decodes_off / 2
    assert all(0 < (u.draft_accepted or 0) <= (u.drafted or 0) for u in on)


@pytest.mark.model
@pytest.mark.timeout(600)
def test_a_whole_step_with_its_review_is_the_same_with_drafts(
    drafting: ModelHost, plain: ModelHost
) -> None:
    """The review starts from the answer's cached keys and values, which a drafted
    decode computed: they must be the one-token decode's, bit for bit."""
    data = json.loads(DATA.read_text())
    schema = data["schema"]
    for case in data["cases"]:
        on = run_task("extract", {"text": case["text"]}, output=schema, model=drafting)
        off = run_task("extract", {"text": case["text"]}, output=schema, model=plain)
        assert on.value == off.value, case["text"]
        assert on.usage.drafted > 0 and off.usage.drafted == 0


@pytest.mark.model
@pytest.mark.timeout(600)
def test_drafts_change_nothing_with_several_threads_on_a_long_prompt(
    default_model_path: str,
) -> None:
    """Decoding one token on several threads over 512 or more cached tokens, llama.cpp's
    CPU attention splits the cache between the threads and rounds otherwise than for
    several rows; the host pads such a decode to two rows, drafted or not."""
    data = json.loads(DATA.read_text())
    policy = " ".join(f"Rule {i}: quote names, cities and order ids as written." for i in range(60))
    prompts = [chat(case["text"], system=policy) for case in data["cases"][:6]]
    hosts = [ModelHost(default_model_path, n_threads=2, speculate=s) for s in (True, False)]
    try:
        assert len(hosts[0].prompt_tokens(prompts[0])) > 600
        on, off = ([reply(h, m, data["schema"]).text for m in prompts] for h in hosts)
    finally:
        for host in hosts:
            host.close()
    assert on == off


@pytest.mark.model
@pytest.mark.timeout(600)
def test_a_batched_step_drafts_too_and_agrees_with_the_sequential_host(
    default_model_path: str, plain: ModelHost
) -> None:
    data = json.loads(DATA.read_text())
    prompts = [chat(case["text"]) for case in data["cases"]]
    batched = ModelHost(default_model_path, n_ctx=2048, concurrency=4)
    try:
        used = [reply(batched, m, data["schema"]) for m in prompts]
    finally:
        batched.close()
    texts = [u.text for u in used]
    reference = [reply(plain, m, data["schema"]).text for m in prompts]
    assert fields_agreeing(texts, reference) >= FIELDS_AGREE
    assert min(attribution([(plain, m) for m in prompts], texts)) > 0
    assert all(0 < (u.draft_accepted or 0) <= (u.drafted or 0) for u in used)
    assert sum(u.decodes or 0 for u in used) < sum(u.completion_tokens for u in used) / 2
