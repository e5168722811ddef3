"""The cascade that learns: escalated answers are banked, `learn` turns them into a
lesson, and later runs of the same task use it.

The small model is the shipped scripted fake (it answers right only when the prompt
shows a learned example), the LLM the real `openai` client against the scripted server.
The real model's path is in test_cli_learn.py and tests/adapters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from taskloom import calibration
from taskloom.adapters.train import Recipe
from taskloom.agents.budget import Budget
from taskloom.agents.escalate import EscalatingDispatcher
from taskloom.api.learn import (
    _audited,
    _finished,
    _Trial,
    _weigh_adapters,
    banked,
    learn,
    planned_runs,
    split,
)
from taskloom.bank import ExampleBank, Source, slm_answer
from taskloom.calibration import Calibration, KindCalibration, coverage_at, sigmoid
from taskloom.chat import Message, OpenAIChatModel, ScriptedChatModel
from taskloom.config import Settings
from taskloom.dispatch.inline import InlineDispatcher
from taskloom.errors import ConfigError, InputError
from taskloom.labelled import (
    ADAPTER_SIGNALS,
    Graded,
    Labelled,
    adapter_weights,
    graded_audit,
    graded_live,
)
from taskloom.lessons import Learned, Lesson, Lessons, fixed_examples, judge, teach
from taskloom.plan import Step
from taskloom.step import StepJob, StepResult, StepStatus
from taskloom.testing.server import Reply, ScriptedServer
from taskloom.tools.confidence import FEATURES, Signals
from taskloom.views.learning import lessons_table

SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": ["string", "null"], "description": "the order number"}},
    "required": ["order_id"],
}
ORDERS = [f"Q-{n}" for n in range(100, 124)]


def text_of(order: str) -> str:
    return f"Hello, my parcel for order {order} never came."


def job(order: str) -> StepJob:
    return StepJob(
        run_id="r1",
        step_id="contact",
        kind="extract",
        inputs={"text": text_of(order), "absence": False},
        output=SCHEMA,
    )


def learner(messages: Sequence[Message], schema: dict[str, Any] | None) -> dict[str, Any]:
    """A small model that gets the id right only once a prompt shows it an example of it."""
    system, user = messages[0]["content"], messages[-1]["content"]
    order = next(w.strip(".") for w in user.split() if w.startswith("Q-"))
    return {"order_id": order if "Q-" in system else order + "0"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", escalate_below=0.0, retry_backoff_s=0.01)


@pytest.fixture
def teacher() -> Iterator[ScriptedServer]:
    """The LLM: reads the id off the text, as a large model would."""

    def respond(body: dict[str, Any]) -> Reply:
        user = body["messages"][-1]["content"]
        order = next(w.strip(".") for w in user.split() if w.startswith("Q-"))
        return Reply(text={"order_id": order})

    with ScriptedServer() as server:
        server.respond = respond
        yield server


def cascade(settings: Settings, slm: ScriptedChatModel, llm: str | None) -> EscalatingDispatcher:
    inner = InlineDispatcher(model=slm, settings=settings)
    model = OpenAIChatModel(base_url=llm, settings=settings) if llm else None
    return EscalatingDispatcher(inner, llm=model, budget=Budget(), settings=settings)


def test_escalated_answers_are_banked_learned_and_used_by_later_runs(
    settings: Settings, teacher: ScriptedServer
) -> None:
    slm = ScriptedChatModel(respond=learner, name="slm")
    # 1. Every answer is flagged (no threshold accepts the fake's), so each escalates,
    #    and the LLM's answer is banked.
    first = cascade(settings, slm, teacher.url)
    for order in ORDERS[:16]:
        result = first.dispatch(job(order))
        assert result.value["order_id"] == order and result.model == "gpt-4o-mini"
    bank = ExampleBank(settings.examples_path)
    [(sig, lines)] = bank.signatures().items()
    first_banked = bank.examples(sig)[0]
    assert lines == 16 and first_banked.expected == {"order_id": "Q-100"}
    # beside the label, what the small model had answered, and how it was judged
    assert first_banked.slm is not None
    assert first_banked.slm["value"] == {"order_id": "Q-1000"}
    assert first_banked.slm["as_written"] is True and first_banked.slm["threshold"] is None
    assert first_banked.slm["sampled"] is True  # no threshold: it escalated whatever it said

    # 2. learn: held back, the step as written is wrong; with the lesson, right.
    [found] = learn(banked(settings), settings=settings, model=slm)
    lesson = found.lesson
    assert lesson is not None and lesson.signature == sig
    assert lesson.held_back == 5 and lesson.trained_on == 11
    assert lesson.before["accuracy"] == 0.0 and lesson.after["accuracy"] == 1.0
    assert Lessons(settings.examples_path / "learned").get(sig) == lesson

    # 3. A later run, no LLM: the lesson's examples are in the prompt, the answer right.
    later = cascade(settings, slm, None)
    result = later.dispatch(job("Q-900"))
    assert result.value["order_id"] == "Q-900" and result.meta["lesson"] == sig
    system = slm.calls[-1][0][0]["content"]
    assert any(text_of(o) in system for o in ORDERS[:16])

    # 4. --no-learned: run as written.
    plain = cascade(settings.model_copy(update={"learned": False}), slm, None)
    assert plain.dispatch(job("Q-901")).value["order_id"] == "Q-9010"


def test_no_bank_when_turned_off(settings: Settings, teacher: ScriptedServer) -> None:
    settings = settings.model_copy(update={"bank_answers": False})
    slm = ScriptedChatModel(respond=learner, name="slm")
    cascade(settings, slm, teacher.url).dispatch(job("Q-1"))
    assert ExampleBank(settings.examples_path).signatures() == {}


def labelled(order: str) -> Labelled:
    step = Step(id="contact", kind="extract", inputs=job(order).inputs, output=SCHEMA)
    return Labelled(step=step, expected={"order_id": order})


def test_learn_refuses_when_no_signature_has_enough_to_hold_back(settings: Settings) -> None:
    with pytest.raises(InputError, match=r"too few examples to learn: .* needs at least 8"):
        learn([labelled(o) for o in ORDERS[:7]], settings=settings, model=ScriptedChatModel())


def test_an_empty_bank_says_how_it_fills(settings: Settings) -> None:
    with pytest.raises(InputError, match="has no examples of any signature; escalations"):
        banked(settings)


def test_the_split_is_stable_and_holds_back_at_least_five() -> None:
    group = [labelled(o) for o in ORDERS[:10]]
    train, held = split(group, 0.3)
    assert len(held) == 5 and len(train) == 5
    assert split(list(reversed(group)), 0.3) == (train, held)


def test_fixed_examples_show_a_value_and_a_null_shortest_first() -> None:
    pool = [
        {"input": {"text": "a long text with order Q-1 in it"}, "output": {"order_id": "Q-1"}},
        {"input": {"text": "short Q-2"}, "output": {"order_id": "Q-2"}},
        {"input": {"text": "no order here"}, "output": {"order_id": None}},
    ]
    assert fixed_examples(pool, 2) == [pool[1], pool[2]]


def test_nearest_examples_follow_the_input() -> None:
    examples = [
        {"input": {"text": "invoice from Acme for March"}, "output": {"order_id": None}},
        {"input": {"text": "parcel for order Q-7 lost"}, "output": {"order_id": "Q-7"}},
    ]
    lesson = Lesson(signature="s", kind="extract", examples=examples, choose="nearest", shots=1)
    assert lesson.shown({"text": "my parcel for order Q-9 is lost"}) == [examples[1]]
    fixed = lesson.model_copy(update={"choose": "fixed"})
    assert fixed.shown({"text": "my parcel for order Q-9 is lost"}) == [examples[0]]


def result_with(confidences: dict[str, float]) -> StepResult:
    fields = {n: {"value": "x", "confidence": c, "accepted": False} for n, c in confidences.items()}
    return StepResult(
        run_id="r",
        step_id="s",
        status=StepStatus.DONE,
        value={n: "x" for n in confidences},
        accepted=False,
        meta={"fields": fields},
    )


def test_the_lessons_threshold_accepts_fields_at_or_above_it() -> None:
    lesson = Lesson(signature="s", kind="extract", examples=[], threshold=0.8)
    judged = judge(result_with({"a": 0.9, "b": 0.8}), lesson)
    assert judged.accepted is True
    judged = judge(result_with({"a": 0.9, "b": 0.7}), lesson)
    assert judged.accepted is False
    assert [f["accepted"] for f in judged.meta["fields"].values()] == [True, False]
    none = lesson.model_copy(update={"threshold": None})
    assert judge(result_with({"a": 0.99}), none).accepted is False


def signals(*, lp_min: float) -> dict[str, Any]:
    """A present value's signals as the review records them."""
    return Signals(
        is_null=False, has_margin=False, margin=0.0, lp_min=lp_min, lp_first=lp_min,
        override=0.0, n_tokens=3, is_duplicate=False, wants_digits=False, has_digits=False,
    ).describe()  # fmt: skip


def test_a_lessons_weights_rescore_each_field_from_its_signals() -> None:
    result = result_with({"sure": 0.1, "unsure": 0.1})
    result.meta["fields"]["sure"]["signals"] = signals(lp_min=-0.01)
    result.meta["fields"]["unsure"]["signals"] = signals(lp_min=-9.0)
    weights = [3.0, 0.0, 1.0] + [0.0] * (len(FEATURES) - 3)  # bias, null, lp_min
    lesson = Lesson(signature="s", kind="extract", examples=[], threshold=0.9)
    assert judge(result, lesson).accepted is False  # the calibration's 0.1 stands
    judged = judge(result, lesson.model_copy(update={"weights": weights}))
    fields = judged.meta["fields"]
    assert fields["sure"]["confidence"] == pytest.approx(sigmoid(3.0 - 0.01), abs=1e-4)
    assert fields["unsure"]["confidence"] == pytest.approx(sigmoid(3.0 - 9.0), abs=1e-4)
    assert [f["accepted"] for f in fields.values()] == [True, False]
    assert judged.confidence == fields["unsure"]["confidence"]  # the step's: the least


def graded_answers(n: int, *, wrong_every: int) -> list[Graded]:
    """Answers whose lp_min separates the wrong ones (every `wrong_every`-th) from the rest."""
    found = []
    for i in range(n):
        right = i % wrong_every != 0
        said = Signals.from_meta(signals(lp_min=-0.2 if right else -4.0 - i % 3))
        found.append(
            Graded("extract", "sig", i // 3, f"f{i % 3}", "x", "x", 0.5, right, said.vector())
        )
    return found


def test_adapter_weights_are_fitted_on_enough_answers_and_rescore_them_out_of_fold() -> None:
    base = calibration.load()
    answers = graded_answers(150, wrong_every=5)
    weights, rescored = adapter_weights("extract", answers, base)
    assert weights is not None and weights != base.of("extract").weights
    assert len(weights) == len(ADAPTER_SIGNALS) < len(FEATURES)
    sure = [g.confidence or 0.0 for g in rescored]
    right = [g.is_right for g in rescored]
    pairs = list(zip(sure, right, strict=True))
    assert min(c for c, ok in pairs if ok) > max(c for c, ok in pairs if not ok)
    assert coverage_at(sure, right) >= 0.8
    assert coverage_at([g.confidence or 0.0 for g in answers], right) == 0  # all tied at 0.5


def test_adapter_weights_leave_the_rival_signals_unweighed() -> None:
    weights, _ = adapter_weights("extract", graded_answers(150, wrong_every=5), calibration.load())
    assert weights is not None
    own = Calibration(kinds={"extract": KindCalibration(weights=weights)})
    plain = Signals.from_meta(signals(lp_min=-0.2))
    rivalled = replace(plain, rival=6.0)  # the question prefers another span by 6 nats
    assert rivalled.vector() != plain.vector()
    assert own.field_confidence("extract", rivalled.vector()) == pytest.approx(
        own.field_confidence("extract", plain.vector())
    )


def test_too_few_answers_keep_the_calibrations_weights() -> None:
    answers = graded_answers(60, wrong_every=5)
    assert adapter_weights("extract", answers, calibration.load()) == (None, answers)


def test_too_few_answers_take_the_calibrations_adapted_weights(tmp_path: Path) -> None:
    """An adapter's lessons with too few held-back answers to fit weights of their own
    are ranked by the calibration's `adapted_weights`, where it has them, and keep them
    for later runs; without them, the answers stay as the review scored them."""
    answers = graded_answers(60, wrong_every=5)
    adapted = [3.0, 0.0, 1.0] + [0.0] * (len(ADAPTER_SIGNALS) - 3)  # bias, null, lp_min

    def trial() -> _Trial:
        lesson = Lesson(signature="sig", kind="extract", examples=[], adapter="a.gguf")
        return _Trial(lesson, trained_on=100, held_back=60, before=answers, after=answers)

    flat = KindCalibration(weights=[0.0] * len(FEATURES))
    taught = trial()
    _weigh_adapters([taught], Calibration(kinds={"extract": flat}))
    assert taught.lesson.weights is None
    assert [g.confidence for g in taught.after] == [0.5] * 60

    with_adapted = flat.model_copy(update={"adapted_weights": adapted})
    taught = trial()
    _weigh_adapters([taught], Calibration(kinds={"extract": with_adapted}))
    assert taught.lesson.weights == adapted and taught.lesson.weights_from == "calibration"
    sure = {g.is_right: g.confidence for g in taught.after}
    assert sure[True] == pytest.approx(sigmoid(3.0 - 0.2), abs=1e-4)
    assert sure[False] is not None and sure[False] < 0.5
    scores = {"accuracy": 0.8, "coverage": 0.0}
    shown = taught.lesson.model_copy(update={"before": scores, "after": scores})
    table = lessons_table(
        [Learned(kind="extract", signature="sig", examples=100, lesson=shown)], where=tmp_path
    )
    assert "the calibration's adapted weights" in table and "its own weights" not in table


def test_an_adapters_lessons_choose_one_threshold_on_their_pooled_answers() -> None:
    """30 right answers a signature cannot pass the 95% bound (it takes 45); the 60 of
    the two signatures one adapter serves can, and steps without an adapter stay alone."""
    base = calibration.load()

    def trial(sig: str, adapter: str | None) -> _Trial:
        after = [Graded("extract", sig, i, "f", "x", "x", 0.9, True, None) for i in range(30)]
        lesson = Lesson(signature=sig, kind="extract", examples=[], adapter=adapter)
        return _Trial(lesson, trained_on=70, held_back=30, before=after, after=after)

    served = [trial("a", "adapter.gguf"), trial("b", "adapter.gguf")]
    alone = trial("c", None)
    _weigh_adapters([*served, alone], base)
    assert [_finished(t, base).threshold for t in served] == [0.9, 0.9]
    assert _finished(alone, base).threshold is None
    assert [{g.signature for g in t.after} for t in served] == [{"a"}, {"b"}]  # its scores'


def test_a_corrupt_lesson_names_its_file(tmp_path: Path) -> None:
    (tmp_path / "abc.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"lesson .*abc.json is unreadable .* run taskloom learn"):
        Lessons(tmp_path).get("abc")


def test_a_person_label_in_the_bank_wins_over_the_llm_for_learning(settings: Settings) -> None:
    bank = ExampleBank(settings.examples_path)
    step = labelled("Q-1").step
    bank.add(step, {"order_id": "Q-1"}, source=Source.PERSON)
    bank.add(step, {"order_id": "1"}, source=Source.LLM)
    [example] = banked(settings)
    assert example.expected == {"order_id": "Q-1"}


def test_a_lesson_with_an_adapter_names_its_file_on_the_job(tmp_path: Path) -> None:
    lesson = Lesson(
        signature="abc", kind="extract", method="adapter", adapter="adapter-extract-1.gguf",
        examples=[],
    )  # fmt: skip
    plain = StepJob(run_id="r", step_id="s", kind="extract", inputs={"text": "hi"})
    taught = teach(plain, lesson, tmp_path / "learned")
    assert taught.adapter == str(tmp_path / "learned" / "adapter-extract-1.gguf")
    assert taught.inputs == plain.inputs  # no examples shown: the adapter learned them
    trusting = teach(plain, lesson.model_copy(update={"trust_nulls": True}), tmp_path)
    assert trusting.inputs == {"text": "hi", "absence": False}
    as_written = lesson.model_copy(update={"adapter": None, "method": "examples"})
    assert teach(plain, as_written, tmp_path) is plain


def test_planned_runs_counts_the_adapters_training_steps() -> None:
    group = [
        Labelled(step=Step(id="s", kind="extract", inputs={"text": f"t{i}"}), expected={})
        for i in range(12)
    ]
    plain = planned_runs(group, choose="fixed")
    with_adapter = planned_runs(group, adapter=Recipe(epochs=2))
    held = len(split(group, 0.3)[1])
    assert plain == 2 * held
    # before, the adapter, the adapter trusting its nulls; then 2 passes of training
    assert with_adapter == 3 * held + 2 * (12 - held)


def test_adapter_weights_refuse_signals_that_are_not_the_first() -> None:
    with pytest.raises(ValueError, match="first of FEATURES"):
        adapter_weights("extract", [], calibration.load(), signals=["bias", "rivalled"])


def banked_line(slm: dict[str, Any] | None, expected: str = "Q-1") -> Labelled:
    return labelled(expected).model_copy(update={"slm": slm, "line": 7})


def slm_said(value: str, *, lp_min: float = -0.01, **how: Any) -> dict[str, Any]:
    """A banked small-model answer, as the dispatcher writes it (`bank.slm_answer`)."""
    fields = {"order_id": {"value": value, "signals": signals(lp_min=lp_min)}}
    result = StepResult(
        run_id="r", step_id="contact", status=StepStatus.DONE, value={"order_id": value},
        accepted=False, meta={"fields": fields, "threshold": how.pop("threshold", None)},
    )  # fmt: skip
    return slm_answer(result, as_written=how.pop("as_written", True), **how)


def test_a_banked_small_model_answer_is_graded_live_under_the_calibration() -> None:
    base = calibration.load()
    [right] = graded_live(banked_line(slm_said("Q-1")), base)
    [wrong] = graded_live(banked_line(slm_said("Q-10", lp_min=-3.0)), base)
    assert right.is_right and not wrong.is_right and right.field == "order_id"
    assert right.line == 7 and right.evidence == Signals.from_meta(signals(lp_min=-0.01)).vector()
    assert right.confidence == base.field_confidence("extract", right.evidence)
    assert wrong.confidence is not None and right.confidence is not None
    assert wrong.confidence < right.confidence


@pytest.mark.parametrize(
    "slm",
    [
        None,  # a person's or a file's label: no small-model answer
        slm_said("Q-1", threshold=0.9),  # only its flagged answers escalated: biased
        slm_said("Q-1", as_written=False),  # a lesson's examples or adapter ran
        slm_said("Q-1", flagged_escalate=False),  # only those under escalate_below went
        {"value": {"order_id": "Q-1"}, "as_written": True},  # judged before it was recorded
        {"value": "not an object", "as_written": True, "sampled": True},
    ],
)
def test_only_unbiased_answers_of_the_step_as_written_are_graded_live(
    slm: dict[str, Any] | None,
) -> None:
    assert graded_live(banked_line(slm), calibration.load()) == []


def test_an_as_written_threshold_is_chosen_on_its_live_answers_too() -> None:
    """5 held-back answers cannot pass the 95% bound; with 50 live ones they can."""
    base = calibration.load()
    held = [Graded("extract", "s", i, "f", "x", "x", 0.9, True, None) for i in range(5)]
    live = [Graded("extract", "s", 100 + i, "f", "x", "x", 0.9, True, None) for i in range(50)]
    lesson = Lesson(signature="s", kind="extract", examples=[])
    alone = _Trial(lesson, trained_on=50, held_back=5, before=held, after=held)
    assert _finished(alone, base).threshold is None
    pooled = _finished(replace(alone, live=live), base)
    assert pooled.threshold == 0.9 and pooled.live == 50
    assert pooled.after["answers"] == 5  # its scores stay the held-back answers'
    table = lessons_table([Learned("s", "extract", 55, lesson=pooled)], where=Path("x"))
    assert "threshold also on 50 live answers" in table


@pytest.mark.model
def test_the_real_models_escalated_answer_is_banked_and_graded_live(
    settings: Settings, teacher: ScriptedServer, model_host: Any
) -> None:
    """On the default model: the shipped calibration sets no threshold, so the step
    escalates whatever its confidence; its answer is banked with each field's signals
    and grades against the LLM's label with a confidence in (0, 1)."""
    inner = InlineDispatcher(model=model_host, settings=settings)
    llm = OpenAIChatModel(base_url=teacher.url, settings=settings)
    dispatcher = EscalatingDispatcher(inner, llm=llm, budget=Budget(), settings=settings)
    result = dispatcher.dispatch(job("Q-117"))
    assert result.value["order_id"] == "Q-117" and result.model == "gpt-4o-mini"
    [example] = banked(settings)
    assert example.slm is not None and example.slm["sampled"] is True
    assert example.slm["as_written"] is True and set(example.slm["fields"]) == {"order_id"}
    [graded] = graded_live(example, calibration.load())
    assert graded.value == example.slm["value"]["order_id"]
    assert graded.is_right == (graded.value == "Q-117")
    assert graded.confidence is not None and 0.0 < graded.confidence < 1.0

    # A lesson that accepts every answer, and an audit of all of them: the real model's
    # accepted answer still goes to the LLM, and is banked as audited under that lesson.
    sig = calibration.signature("extract", job("Q-118").inputs, SCHEMA)
    lesson = Lesson(signature=sig, kind="extract", examples=[], threshold=0.0, at=42.0)
    Lessons(settings.examples_path / "learned").save(lesson)
    audit = settings.model_copy(update={"audit_share": 1.0})
    auditing = EscalatingDispatcher(inner, llm=llm, budget=Budget(), settings=audit)
    result = auditing.dispatch(job("Q-118"))
    assert result.value["order_id"] == "Q-118"
    assert auditing.escalations[0]["reason"].startswith("audit")
    [audited] = graded_audit(banked(settings), 42.0)
    assert audited.is_right == (audited.value == "Q-118")


def test_prune_deletes_old_adapters_no_lesson_names_but_the_newest(tmp_path: Path) -> None:
    store = Lessons(tmp_path)
    store.save(Lesson(signature="s", kind="extract", examples=[], adapter="adapter-extract-a.gguf"))
    now = 1_000_000.0
    ages = {"a": 50_000, "b": 40_000, "c": 30_000, "d": 20_000, "e": 100}  # seconds old
    for name, age in ages.items():
        path = tmp_path / f"adapter-extract-{name}.gguf"
        path.write_bytes(b"GGUF")
        os.utime(path, (now - age, now - age))
    (tmp_path / "notes.gguf").write_bytes(b"GGUF")  # not an adapter taskloom wrote
    # a is named; e is the newest unnamed (kept), d the next; b and c go
    deleted = store.prune(2, now=now)
    assert sorted(p.name for p in deleted) == ["adapter-extract-b.gguf", "adapter-extract-c.gguf"]
    left = sorted(p.name for p in tmp_path.glob("*.gguf"))
    assert left == [f"adapter-extract-{n}.gguf" for n in "ade"] + ["notes.gguf"]
    # keeping none: d goes, e stays (written within the hour), a stays (named)
    assert [p.name for p in store.prune(0, now=now)] == ["adapter-extract-d.gguf"]
    assert store.prune(0, now=now) == []


class Sure:
    """A small model's dispatcher whose every answer the lesson's threshold accepts (or
    that answers at `confidence`, judged `accepted` as a worker would)."""

    def __init__(self, value: str, confidence: float = 0.99, accepted: bool = True) -> None:
        self.value, self.confidence, self.accepted = value, confidence, accepted

    def dispatch(self, job: StepJob) -> StepResult:
        said = signals(lp_min=-0.01)
        fields = {"order_id": {"value": self.value, "confidence": self.confidence, "signals": said}}
        return StepResult(
            run_id=job.run_id, step_id=job.step_id, status=StepStatus.DONE,
            value={"order_id": self.value}, confidence=self.confidence, accepted=self.accepted,
            meta={"fields": fields, "threshold": None},
        )  # fmt: skip

    def close(self) -> None:
        pass


def test_an_audited_accepted_answer_goes_to_the_llm_and_is_banked_as_audited(
    settings: Settings, teacher: ScriptedServer
) -> None:
    store = Lessons(settings.examples_path / "learned")
    sig = calibration.signature("extract", job("Q-1").inputs, SCHEMA)
    store.save(Lesson(signature=sig, kind="extract", examples=[], threshold=0.9, at=123.5))
    llm = OpenAIChatModel(base_url=teacher.url, settings=settings)

    def dispatcher(share: float) -> EscalatingDispatcher:
        audit = settings.model_copy(update={"audit_share": share})
        return EscalatingDispatcher(Sure("Q-19"), llm=llm, budget=Budget(), settings=audit)

    kept = dispatcher(0.0).dispatch(job("Q-1"))  # accepted, and no audit: the SLM's stands
    assert kept.value == {"order_id": "Q-19"} and kept.accepted is True
    assert ExampleBank(settings.examples_path).signatures() == {}

    audits = dispatcher(1.0)
    checked = audits.dispatch(job("Q-1"))
    assert checked.value == {"order_id": "Q-1"} and checked.model == "gpt-4o-mini"
    assert audits.escalations[0]["reason"].startswith("audit")
    [line] = banked(settings)
    assert line.slm is not None and line.slm["audited"] is True
    assert line.slm["lesson_at"] == 123.5 and line.slm["sampled"] is False
    assert graded_live(line, calibration.load()) == []  # accepted answers: no fair sample
    [graded] = graded_audit([line], 123.5)
    assert graded.value == "Q-19" and not graded.is_right
    assert graded_audit([line], None) == []  # another lesson's audit


def test_learn_reports_the_audit_of_the_lesson_it_replaces(tmp_path: Path) -> None:
    store = Lessons(tmp_path)
    store.save(Lesson(signature="s", kind="extract", examples=[], threshold=0.9, at=7.0))

    def audited_line(value: str, lesson_at: float | None) -> Labelled:
        said = slm_said(value, threshold=0.9, audited=True, lesson_at=lesson_at)
        return banked_line(said)

    group = [audited_line("Q-1", 7.0), audited_line("Q-2", 7.0), audited_line("Q-1", 6.0)]
    assert _audited(group, store, "s") == (1, 2)
    assert _audited(group, store, "unlearned") is None  # no lesson: audits of none


@pytest.mark.parametrize(
    ("audited", "says", "below"),
    [((40, 40), "40 of 40 accepted answers right (100%; at 90%, ≥ 94%)", False),
     ((30, 40), "30 of 40 accepted answers right (75%; at 90%, ≥ 64%)", True)],
)  # fmt: skip
def test_the_table_says_what_the_audit_measured(
    audited: tuple[int, int], says: str, below: bool
) -> None:
    table = lessons_table(
        [Learned("s", "extract", 3, skipped="3 examples, needs 8", audited=audited)],
        where=Path("x"),
    )
    assert says in table
    assert ("below the 95% target" in table) == below


def test_a_runs_target_precision_judges_the_workers_answers_again(
    settings: Settings, tmp_path: Path
) -> None:
    """A run that asks for another precision (`--precision`) judges each SLM answer by
    the threshold its calibration's frontier gives for it, whatever the worker was told."""
    conf = [1 - i / 200 for i in range(200)]
    right = [i < 120 or i % 3 == 0 for i in range(200)]
    fitted = KindCalibration(
        **calibration.judged(calibration.frontier(conf, right), len(conf), target=0.95, level=0.9)
    )
    path = tmp_path / "calibration.json"
    path.write_text(Calibration(kinds={"extract": fitted}).model_dump_json())
    lower = calibration.load(path, target=0.8).threshold("extract")
    assert lower is not None and fitted.threshold is not None and lower < fitted.threshold
    flagged = Sure("Q-19", confidence=(lower + fitted.threshold) / 2, accepted=False)

    def run(target: float | None) -> StepResult:
        at = settings.model_copy(update={"calibration": str(path), "target_precision": target})
        return EscalatingDispatcher(flagged, llm=None, budget=Budget(), settings=at).dispatch(
            job("Q-1")
        )

    assert run(None).accepted is False  # the worker's judgement stands
    for target, accepted in ((0.8, True), (0.95, False)):
        judged = run(target)
        assert judged.accepted is accepted and judged.meta["threshold"] <= fitted.threshold
        assert judged.meta["fields"]["order_id"]["accepted"] is accepted


def test_a_runs_target_precision_moves_a_lessons_threshold_on_its_frontier(
    settings: Settings,
) -> None:
    conf = [1 - i / 200 for i in range(200)]
    right = [i < 120 or i % 3 == 0 for i in range(200)]
    points = calibration.frontier(conf, right)
    chosen = calibration.judged(points, 200, target=0.95, level=0.9)["threshold"]
    sig = calibration.signature("extract", job("Q-1").inputs, SCHEMA)
    lesson = Lesson(
        signature=sig, kind="extract", examples=[], threshold=chosen, frontier=points,
        judged_on=200,
    )  # fmt: skip
    Lessons(settings.examples_path / "learned").save(lesson)
    lower = lesson.judging_at(0.8, 0.9).threshold
    assert lower is not None and chosen is not None and lower < chosen
    flagged = Sure("Q-19", confidence=(lower + chosen) / 2, accepted=False)

    def run(target: float | None) -> StepResult:
        at = settings.model_copy(update={"target_precision": target})
        cascade = EscalatingDispatcher(flagged, llm=None, budget=Budget(), settings=at)
        return cascade.dispatch(job("Q-1"))

    assert run(None).accepted is False and run(None).meta["lesson"] == sig
    assert run(0.8).accepted is True and run(0.8).meta["threshold"] == lower
    older = Lesson(signature=sig, kind="extract", examples=[], threshold=0.9)  # no frontier
    assert older.judging_at(0.8, 0.9).threshold == 0.9
    assert older.judging_at(0.99, 0.9).threshold is None


def test_a_lesson_too_small_for_a_threshold_inherits_its_kinds_unless_its_answers_refute_it() -> (
    None
):
    """At 90%, `extract` has a threshold (0.855) but 5 answers cannot choose one of their
    own (it takes 22): a lesson on the calibration's confidences inherits the kind's,
    unless its answers above it show a precision below the target; an adapter's
    confidences are its own, and at 95% the kind has no threshold to inherit."""
    at_90, at_95 = calibration.load(target=0.9), calibration.load()

    def trial(right: Sequence[bool], adapter: str | None = None) -> _Trial:
        held = [
            Graded("extract", "s", i, "f", "x", "x", 0.9, ok, None) for i, ok in enumerate(right)
        ]
        lesson = Lesson(signature="s", kind="extract", examples=[], adapter=adapter)
        return _Trial(lesson, trained_on=20, held_back=len(held), before=held, after=held)

    sure = _finished(trial([True] * 5), at_90)
    assert sure.threshold is None and sure.inherits
    assert sure.judged_by(at_90) == at_90.threshold("extract") == 0.855
    assert sure.judged_by(None) is None and sure.judged_by(at_95) is None
    # 6 of 10 right: the upper bound of their precision at 0.9 is below 90%
    assert not _finished(trial([True, False] * 3 + [True] * 4), at_90).inherits
    assert _finished(trial([True] * 9 + [False]), at_90).inherits  # 9 of 10 may be 90%
    assert not _finished(trial([True] * 5, adapter="a.gguf"), at_90).inherits
    assert not _finished(trial([True] * 5), at_95).inherits
    table = lessons_table([Learned("s", "extract", 25, lesson=sure)], where=Path("x"))
    assert "inherited" in table


def test_an_inheriting_lesson_judges_by_the_runs_calibration(settings: Settings) -> None:
    """A lesson without a threshold of its own flags every answer, unless it inherits:
    then a run at 90% accepts by `extract`'s threshold there, as without the lesson."""
    sig = calibration.signature("extract", job("Q-1").inputs, SCHEMA)
    store = Lessons(settings.examples_path / "learned")
    flagged = Sure("Q-19", confidence=0.9, accepted=False)

    def run(target: float | None, *, inherits: bool) -> StepResult:
        store.save(Lesson(signature=sig, kind="extract", examples=[], inherits=inherits))
        at = settings.model_copy(update={"target_precision": target})
        return EscalatingDispatcher(flagged, llm=None, budget=Budget(), settings=at).dispatch(
            job("Q-1")
        )

    judged = run(0.9, inherits=True)
    assert judged.accepted is True and judged.meta["threshold"] == 0.855
    assert run(0.9, inherits=False).accepted is False
    assert run(None, inherits=True).accepted is False  # the shipped file has none at 95%
