"""Instructor-style validators: a pydantic output model's validators run inside the
re-ask loop, and their messages go back to the model."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, field_validator

from taskloom import Flow, InlineDispatcher, ScriptedChatModel, Settings, run, workflow
from taskloom.errors import OutputValidationError
from taskloom.tools import ToolRegistry, run_task
from taskloom.tools.registry import OUTPUT_MODEL_KEY

RULE = "the name starts with a capital letter"


class Person(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def capitalised(cls, value: str) -> str:
        if not value[:1].isupper():
            raise ValueError(RULE)
        return value.strip()


SCHEMA = {**Person.model_json_schema(), OUTPUT_MODEL_KEY: "Person"}


def extract(model: ScriptedChatModel, tools: ToolRegistry | None, retries: int = 2) -> Any:
    return run_task(
        "extract",
        {"text": "maria here", "absence": False},
        output=SCHEMA,
        model=model,
        tools=tools,
        output_retries=retries,
        is_reviewed=False,
    )


def registry() -> ToolRegistry:
    tools = ToolRegistry()
    assert tools.add_model(Person) == "Person"
    return tools


def test_a_validator_message_goes_back_to_the_model_which_fixes_its_answer() -> None:
    model = ScriptedChatModel([{"name": "maria"}, {"name": "Maria "}])
    outcome = extract(model, registry())
    assert outcome.value == {"name": "Maria"}  # the model's own validation, applied
    assert outcome.usage.calls == 2
    first, second = (messages for messages, _ in model.calls)
    assert RULE not in str(first)
    assert second[: len(first)] == first
    assert second[-2] == {"role": "assistant", "content": '{"name": "maria"}'}
    assert RULE in second[-1]["content"] and "name:" in second[-1]["content"]


def test_an_answer_that_never_passes_fails_with_the_validators_message() -> None:
    model = ScriptedChatModel([{"name": "maria"}] * 3)
    with pytest.raises(OutputValidationError) as e:
        extract(model, registry())
    assert RULE in e.value.message and "after 3 attempts" in e.value.message


def test_where_the_model_is_not_registered_only_the_schema_is_checked() -> None:
    model = ScriptedChatModel([{"name": "maria"}])
    assert extract(model, ToolRegistry()).value == {"name": "maria"}


def test_a_flow_step_with_a_pydantic_output_runs_its_validators_inline() -> None:
    @workflow
    def who(flow: Flow, text: str) -> Any:
        return flow.extract(text, output=Person, absence=False)

    model = ScriptedChatModel([{"name": "maria"}, {"name": "Maria"}])
    settings = Settings(retry_backoff_s=0.01)
    dispatcher = InlineDispatcher(model=model, tools=who.tools, settings=settings)
    record = run(who, {"text": "maria here"}, dispatcher=dispatcher, settings=settings)
    assert record.output == {"name": "Maria"}
    assert RULE in str(model.calls[1][0])


def test_a_tools_module_registers_the_output_models_it_defines(tmp_path: Any) -> None:
    from taskloom.workflows.target import collect, load_tools

    module = tmp_path / "models_mod.py"
    module.write_text(
        "from pydantic import BaseModel, field_validator\n"
        "from taskloom.plan import Plan  # imported: not registered\n"
        "class Invoice(BaseModel):\n    total: float\n"
    )
    assert set(load_tools([str(module)]).models) == {"Invoice"}
    assert set(collect([str(module)])[0].models) == {"Invoice"}


class Shouting(BaseModel):
    name: str

    @field_validator("name")
    @classmethod
    def upper(cls, value: str) -> str:
        if value != value.upper() or not value.strip():
            raise ValueError("write the name in capital letters")
        return value


@pytest.mark.model
def test_the_real_model_is_re_asked_with_the_validators_message(model_host: Any) -> None:
    from taskloom.chat.llama.host import ModelHost

    assert isinstance(model_host, ModelHost)
    tools = ToolRegistry()
    tools.add_model(Shouting)
    schema = {**Shouting.model_json_schema(), OUTPUT_MODEL_KEY: "Shouting"}
    try:
        outcome = run_task(
            "extract",
            {"text": "Hello, this is Maria Lopez.", "absence": False},
            output=schema,
            model=model_host,
            tools=tools,
            output_retries=2,
            is_reviewed=False,
        )
    except OutputValidationError as e:  # never in capitals: each try was sent back
        assert "write the name in capital letters" in e.message and "3 attempts" in e.message
    else:  # it passed the validator, on the first try or after being told why not
        assert Shouting.model_validate(outcome.value).name.isupper()
