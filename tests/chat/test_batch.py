"""Continuous batching on the real default model: many calls decode together.

Every test here is marked `model`. `batched` is a host at concurrency 4; `model_host`
(the session's host, concurrency 1) is the sequential reference.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from taskloom.chat import Message
from taskloom.chat.cancel import cancel_scope
from taskloom.chat.llama.host import ModelHost
from taskloom.deadline import step_deadline
from taskloom.errors import RunCancelledError, StepTimeoutError, TaskInputError
from taskloom.tools import run_task
from taskloom.tools.base import with_copy
from tests.chat.agreement import FIELDS_AGREE, attribution, fields_agreeing, reply
from tests.chat.test_host import CONTACT, chat

pytestmark = pytest.mark.model

DATA = Path(__file__).parent.parent / "tools" / "data" / "extract_texts.json"
CITY = {
    "type": "object",
    "properties": {"city": {"type": ["string", "null"]}},
    "required": ["city"],
}
MOOD = {
    "type": "object",
    "properties": {"mood": {"enum": ["angry", "happy", "neutral"]}},
    "required": ["mood"],
}
COUNT = {
    "type": "object",
    "properties": {"items": {"type": "integer"}},
    "required": ["items"],
}
STORY: list[Message] = [{"role": "user", "content": "Write a long story about a lighthouse."}]


@pytest.fixture(scope="module")
def batched(default_model_path: str) -> Iterator[ModelHost]:
    host = ModelHost(default_model_path, n_ctx=2048, concurrency=4)
    yield host
    host.close()


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls on threads released at once; each result, or the error it raised."""
    gate = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def go(i: int) -> None:
        gate.wait()
        try:
            out[i] = calls[i]()
        except Exception as e:
            out[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def steps_of(host: ModelHost) -> int:
    assert host._batch is not None
    return host._batch.steps


def test_distinct_schemas_decode_in_one_batch(batched: ModelHost) -> None:
    text = "Ann Lee from Porto here: order 7710, 3 items, arrived broken. I am furious."
    schemas = [CONTACT, CITY, MOOD, COUNT]
    before = steps_of(batched)
    results = together(
        *[lambda s=s: batched.complete(chat(text), schema=s, max_tokens=48) for s in schemas]
    )
    for schema, c in zip(schemas, results, strict=True):
        jsonschema.validate(json.loads(c.text), schema)  # each kept its own grammar
    decoded = sum(c.completion_tokens for c in results)
    assert steps_of(batched) - before < decoded * 0.6  # shared decodes, not one per token


def test_a_shared_prefix_is_evaluated_once_for_the_batch(batched: ModelHost) -> None:
    batched.reset_cache()
    texts = ["Order 1 - Al Bo", "Order 2 - Cy Di", "Order 3 - Ed Fo", "Order 4 - Gu Ha"]
    results = together(
        *[lambda t=t: batched.complete(chat(t), schema=CONTACT, max_tokens=40) for t in texts]
    )
    prompt = max(c.prompt_tokens for c in results)
    evaluated = sum(c.prompt_tokens_evaluated or 0 for c in results)
    assert evaluated < prompt * 1.5  # the examples once, then each text's own tail


def test_a_prompt_with_little_to_share_spares_the_cached_ones(batched: ModelHost) -> None:
    # A step's answer prompt, then its review's (sharing only the chat template's
    # start), then the next answer: the first prompt must still be cached.
    batched.reset_cache()
    answer = chat("Hi, Ann Lee, order 7710")
    batched.complete(answer, schema=CONTACT, max_tokens=2)
    review: list[Message] = [{"role": "user", "content": "Is the name in the text? Hi, Ann Lee"}]
    batched.complete(review, max_tokens=2)
    again = batched.complete(answer, schema=CONTACT, max_tokens=2)
    assert again.prompt_tokens_evaluated is not None
    assert again.prompt_tokens_evaluated <= 2


def test_a_copy_step_decodes_beside_a_free_one(batched: ModelHost) -> None:
    text = "Hello, this is Dana Scully. Order 4471 never came. dana@fbi.gov"
    copy, free = together(
        lambda: batched.complete(chat(text), schema=with_copy(CONTACT, text), max_tokens=64),
        lambda: batched.complete(chat(text), schema=CITY, max_tokens=32),
    )
    strings = [v for v in json.loads(copy.text).values() if isinstance(v, str)]
    assert strings and all(v in text for v in strings)
    jsonschema.validate(json.loads(free.text), CITY)


def test_a_step_joins_a_running_batch_and_leaves_first(batched: ModelHost) -> None:
    done: dict[str, float] = {}

    def story() -> None:
        batched.complete(STORY, max_tokens=150)
        done["story"] = time.monotonic()

    long_one = threading.Thread(target=story)
    long_one.start()
    start = steps_of(batched)
    deadline = time.monotonic() + 30
    while steps_of(batched) < start + 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "story" not in done  # still generating when the next step arrives
    joined = batched.complete(chat("Order 99 - Cy Ong"), schema=CONTACT, max_tokens=40)
    done["joined"] = time.monotonic()
    long_one.join(timeout=60)
    assert done["joined"] < done["story"]  # it joined mid-batch and finished first
    alone = batched.complete(chat("Order 99 - Cy Ong"), schema=CONTACT, max_tokens=40)
    assert json.loads(joined.text) == json.loads(alone.text)


def test_a_cancelled_sequence_stops_and_the_others_go_on(batched: ModelHost) -> None:
    cancel = threading.Event()

    def cancelled() -> Any:
        with cancel_scope(cancel):
            return batched.complete(STORY, max_tokens=200)

    def cancel_soon() -> Any:
        time.sleep(0.5)
        cancel.set()
        return batched.complete(chat("Order 2 - Cy Di"), schema=CONTACT, max_tokens=40)

    stopped, other = together(cancelled, cancel_soon)
    assert isinstance(stopped, RunCancelledError)
    jsonschema.validate(json.loads(other.text), CONTACT)


def test_a_sequence_past_its_deadline_fails_alone(batched: ModelHost) -> None:
    def late() -> Any:
        with step_deadline(0.3, step_id="late"):
            return batched.complete(STORY, max_tokens=200)

    def free() -> Any:
        return batched.complete(chat("Order 3 - Ed Fo"), schema=CONTACT, max_tokens=40)

    failed, ok = together(late, free)
    assert isinstance(failed, StepTimeoutError) and failed.step_id == "late"
    jsonschema.validate(json.loads(ok.text), CONTACT)


def test_a_prompt_that_does_not_fit_fails_clearly(batched: ModelHost) -> None:
    text = "word " * (batched.n_ctx + 100)
    with pytest.raises(TaskInputError, match=r"extract: the prompt has \d+ tokens .* n_ctx"):
        run_task("extract", {"text": text}, output=CONTACT, model=batched)


def test_scoring_kinds_batch_and_agree_with_sequential(
    batched: ModelHost, model_host: ModelHost
) -> None:
    inputs = {
        "text": "My parcel never arrived, where is it?",
        "labels": ["refund", "shipping", "other"],
    }
    one = run_task("classify", inputs, model=model_host).value
    many = run_task("classify", inputs, model=batched).value
    assert many["label"] == one["label"]
    # Not exact: a prefix reused from the cache was computed in another batch, which
    # moves log-probabilities by up to ~0.1 nats (measured on the sequential host too).
    assert abs(many["confidence"] - one["confidence"]) < 0.1
    passages = ["Parcels ship in 2 days.", "Refunds take a week.", "Our shop opens at 9."]
    query = {"query": "when will my parcel ship", "passages": passages}
    kept = [run_task("filter", query, model=m).value for m in (batched, model_host)]
    scores = [dict(zip(k["kept"], k["scores"], strict=True)) for k in kept]
    # The same passages, their scores as close as the label's confidence above; two
    # near-equal scores may swap places (0.72 and 0.77 here).
    assert scores[0].keys() == scores[1].keys()
    assert all(abs(scores[0][p] - scores[1][p]) < 0.1 for p in scores[0])


def test_batched_greedy_replies_agree_with_sequential_and_belong_to_their_calls(
    batched: ModelHost, model_host: ModelHost
) -> None:
    data = json.loads(DATA.read_text())
    prompts = [chat(case["text"]) for case in data["cases"]]

    def text(host: ModelHost, messages: list[Message]) -> str:
        return reply(host, messages, data["schema"]).text

    model_host.reset_cache()
    batched.reset_cache()  # the same cache history on both sides
    alone = [text(model_host, m) for m in prompts]
    # One at a time, the batched host differs only in its larger KV buffer; together, in
    # the shapes of the batch. Either may flip a near-tie (see agreement), no more.
    one_by_one = [text(batched, m) for m in prompts]
    at_once = together(*[lambda m=m: text(batched, m) for m in prompts])
    calls = [(model_host, m) for m in prompts]
    for how, replies in (("one by one", one_by_one), ("together", at_once)):
        same = sum(a == b for a, b in zip(alone, replies, strict=True))
        print(f"{how}: {same} of {len(prompts)} replies the sequential host's")
        assert fields_agreeing(replies, alone) >= FIELDS_AGREE
        assert min(attribution(calls, replies)) > 0
    # The control: replies shifted by one call, as a mix-up of sequences would give.
    assert max(attribution(calls, at_once[1:] + at_once[:1])) < 0
